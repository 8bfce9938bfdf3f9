"""Ready auth callbacks for :class:`~ocpprpc.Server`: passwords, client certificates, and both.

Each helper is an ``async (StationRequest) -> Accept | Reject | None`` callable,
so it goes straight into ``Server(auth=...)``; :func:`all_of` and :func:`any_of`
compose them (profile 3 with a password on top, say).

Passwords (security profiles 1 and 2) are kept as salted scrypt hashes
(:func:`hash_password`), compared in constant time, and checked in a worker
thread: a deliberately slow hash must not stall every other station on the
event loop.  An unknown identity is refused with the same 401 as a wrong
password after the same amount of hashing, so neither the answer nor its timing
tells a prober which identities exist.

Client certificates (profile 3): the TLS layer has already proved the station
holds a certificate from a trusted CA; :func:`certificate_identity` checks it
was issued to the identity the station claims (OCPP 2.0.1 A00.FR.417: the
subject CN carries the station's identity), not to another station of the same
operator.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, MutableMapping
from typing import Any

import anyio.to_thread

from .._ws.handshake import StationRequest
from .server import Accept, Reject

__all__ = [
    "CERTIFICATE_FIELDS",
    "PasswordTable",
    "all_of",
    "any_of",
    "certificate_identity",
    "certificate_names",
    "hash_password",
    "verify_password",
]

log = logging.getLogger("ocpprpc._auth")  # log name kept

AuthResult = Accept | Reject | None
AuthCallback = Callable[[StationRequest], Awaitable[AuthResult]]

# scrypt at n=2**14, r=8, p=1: 16 MiB and roughly 30-60 ms per check on a server
# core (hashlib's own example values; RFC 7914 section 2 suggests the same n for
# interactive logins).  OCPP station passwords are 16-40 random characters set by
# the CSMS (1.6 security whitepaper, 2.0.1 BasicAuthPassword), so the hash guards
# a leaked table rather than a weak password; raise n for a human-chosen secret.
_SCRYPT_N = 2**14
_SCRYPT_R = 8
_SCRYPT_P = 1
# OWASP's 2023 figure for PBKDF2-HMAC-SHA256, for builds of Python without scrypt.
_PBKDF2_ITERATIONS = 600_000
_SALT_BYTES = 16


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _secret_bytes(password: str | bytes) -> bytes:
    return password.encode() if isinstance(password, str) else password


def hash_password(
    password: str | bytes,
    *,
    method: str = "scrypt",
    n: int = _SCRYPT_N,
    r: int = _SCRYPT_R,
    p: int = _SCRYPT_P,
    iterations: int = _PBKDF2_ITERATIONS,
) -> str:
    """A salted hash of ``password`` to store in a :class:`PasswordTable`.

    ``"scrypt$n$r$p$salt$hash"`` (default) or, with ``method="pbkdf2_sha256"``,
    ``"pbkdf2_sha256$iterations$salt$hash"`` (salt and hash base64).  ``str`` is
    hashed as UTF-8, ``bytes`` as they are (1.6 passwords may be binary): the
    same bytes a station sends with ``password=``.
    """
    secret = _secret_bytes(password)
    salt = os.urandom(_SALT_BYTES)
    if method == "scrypt":
        digest = hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, maxmem=_scrypt_maxmem(n, r, p))
        return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"
    if method == "pbkdf2_sha256":
        digest = hashlib.pbkdf2_hmac("sha256", secret, salt, iterations)
        return f"pbkdf2_sha256${iterations}${_b64(salt)}${_b64(digest)}"
    raise ValueError(f"unknown password hash method {method!r}: use 'scrypt' or 'pbkdf2_sha256'")


def _scrypt_maxmem(n: int, r: int, p: int) -> int:
    # OpenSSL's default cap is 32 MiB; scrypt needs about 128 * n * r * p bytes.
    return 128 * n * r * (p + 1) + 1024 * 1024


class _Hash:
    """A parsed hash entry: recompute with :meth:`digest`, compare with the stored one."""

    __slots__ = ("expected", "method", "params", "salt")

    def __init__(self, entry: str) -> None:
        parts = entry.split("$")
        try:
            if parts[0] == "scrypt" and len(parts) == 6:
                self.params: tuple[int, ...] = (int(parts[1]), int(parts[2]), int(parts[3]))
            elif parts[0] == "pbkdf2_sha256" and len(parts) == 4:
                self.params = (int(parts[1]),)
            else:
                raise ValueError("unknown format")
            self.salt = base64.b64decode(parts[-2], validate=True)
            self.expected = base64.b64decode(parts[-1], validate=True)
        except (ValueError, binascii.Error):
            raise ValueError("not a password hash made by hash_password()") from None
        if not self.salt or not self.expected or min(self.params) < 1:
            raise ValueError("not a password hash made by hash_password()")
        self.method = parts[0]

    def digest(self, secret: bytes) -> bytes:
        if self.method == "scrypt":
            n, r, p = self.params
            size, maxmem = len(self.expected), _scrypt_maxmem(n, r, p)
            return hashlib.scrypt(secret, salt=self.salt, n=n, r=r, p=p, maxmem=maxmem, dklen=size)
        return hashlib.pbkdf2_hmac("sha256", secret, self.salt, self.params[0], dklen=len(self.expected))

    def matches(self, secret: bytes) -> bool:
        return hmac.compare_digest(self.digest(secret), self.expected)


def verify_password(password: str | bytes, entry: str) -> bool:
    """Whether ``password`` is the one ``entry`` (from :func:`hash_password`) was made from.

    Constant-time comparison; blocking (it runs the hash), so call it from a
    thread in async code (:class:`PasswordTable` does).

    :raises ValueError: ``entry`` is not such a hash.
    """
    return _Hash(entry).matches(_secret_bytes(password))


class PasswordTable(MutableMapping[str, "str | bytes"]):
    """Basic-auth check (profiles 1 and 2): identity -> password hash, usable as ``Server(auth=...)``.

    ::

        table = ocpprpc.PasswordTable({"CP001": ocpprpc.hash_password("a-long-random-password")})
        async with ocpprpc.serve(auth=table) as server: ...

    A station is accepted when its identity is in the table and its password
    matches; an unknown identity, a wrong password and a missing password all
    get the same 401.  Entries may be added and removed while serving
    (``table["CP002"] = hash_password(...)``, ``del table["CP001"]``).

    :param entries: identity -> hash from :func:`hash_password`.
    :param plaintext: store the passwords themselves instead (``str`` or
        ``bytes``), compared in constant time; for tests and migrations only: a
        leaked table then hands out every station's password.
    """

    def __init__(self, entries: Mapping[str, str | bytes] | None = None, *, plaintext: bool = False) -> None:
        self.plaintext = plaintext
        self._entries: dict[str, str | bytes] = {}
        self._parsed: dict[str, _Hash] = {}
        # The unknown-identity decoy: same work as a real check at the default cost.
        self._decoy = _Hash(hash_password(secrets.token_bytes(16))) if not plaintext else None
        for identity, entry in (entries or {}).items():
            self[identity] = entry

    def __setitem__(self, identity: str, entry: str | bytes) -> None:
        if self.plaintext:
            if not isinstance(entry, (str, bytes)):
                raise TypeError(f"password for {identity!r} must be str or bytes")
        elif not isinstance(entry, str):
            raise TypeError(f"entry for {identity!r} must be a hash from hash_password()")
        else:
            try:
                self._parsed[identity] = _Hash(entry)
            except ValueError:
                raise ValueError(
                    f"entry for {identity!r} is not a hash from hash_password(); store hashes, "
                    "or pass plaintext=True to keep plain passwords (not recommended)"
                ) from None
        self._entries[identity] = entry

    def set_password(self, identity: str, password: str | bytes) -> None:
        """Store ``password`` for ``identity`` (hashed, unless the table is ``plaintext``)."""
        self[identity] = password if self.plaintext else hash_password(password)

    def __getitem__(self, identity: str) -> str | bytes:
        return self._entries[identity]

    def __delitem__(self, identity: str) -> None:
        del self._entries[identity]
        self._parsed.pop(identity, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        # Never the entries: even hashes are for offline guessing.
        return f"<PasswordTable of {len(self)} stations{' (plaintext)' if self.plaintext else ''}>"

    async def __call__(self, request: StationRequest) -> Accept | Reject:
        """Accept ``request`` when its Basic-auth password matches its identity's entry, else 401."""
        if request.password is None:
            # Decided before the identity is looked up: the timing tells nothing about it.
            log.debug("station %r sent no password", request.identity)
            return Reject(401, method="basic")
        if await self._matches(request.identity, request.password):
            return Accept()
        log.info("station %r: wrong password or unknown identity", request.identity)
        return Reject(401, method="basic")

    async def _matches(self, identity: str, password: bytes) -> bool:
        if self.plaintext:
            entry = self._entries.get(identity)
            known = entry is not None
            expected = _secret_bytes(entry) if entry is not None else secrets.token_bytes(len(password) or 1)
            return hmac.compare_digest(password, expected) and known
        parsed = self._parsed.get(identity)
        if parsed is None:
            assert self._decoy is not None
            await anyio.to_thread.run_sync(self._decoy.matches, password)
            return False
        return await anyio.to_thread.run_sync(parsed.matches, password)


# -- client certificates (profile 3) ----------------------------------------------------

#: The certificate fields :func:`certificate_identity` compares with the identity by
#: default: the subject's common name and the DNS and URI subject alternative names.
CERTIFICATE_FIELDS = ("CN", "DNS", "URI")

CertificateNames = Callable[[Mapping[str, Any]], Iterable[str]]


def certificate_names(
    certificate: Mapping[str, Any], fields: Iterable[str] = CERTIFICATE_FIELDS
) -> list[str]:
    """The names in a verified certificate (``getpeercert()`` form) of the given ``fields``.

    ``"CN"`` is every commonName in the subject; any other field is a subject
    alternative name type as Python reports it (``"DNS"``, ``"URI"``, ``"IP Address"``,
    ``"email"``).
    """
    wanted = set(fields)
    names: list[str] = []
    if "CN" in wanted:
        for rdn in certificate.get("subject", ()):
            names.extend(value for key, value in rdn if key == "commonName")
    names.extend(value for kind, value in certificate.get("subjectAltName", ()) if kind in wanted)
    return names


def certificate_identity(
    *,
    fields: Iterable[str] = CERTIFICATE_FIELDS,
    names: CertificateNames | None = None,
    status: int = 403,
) -> AuthCallback:
    """An auth callback for profile 3: the client certificate must name the station identity.

    Accepts when one of the certificate's names equals the identity exactly
    (case-sensitive, as OCPP identities are); refuses otherwise, and when the
    station sent no certificate (a server without ``client_cafile`` asks for none).

    :param fields: which names count: ``"CN"`` (subject common name) and subject
        alternative name types (``"DNS"``, ``"URI"``, ...); default :data:`CERTIFICATE_FIELDS`.
    :param names: your own mapping from the certificate (``getpeercert()`` form)
        to the identities it may use, e.g. a serial number looked up in a registry;
        replaces ``fields``.
    :param status: the HTTP status of a refusal; 403, because the station did
        authenticate, as someone else (a 401 would invite Basic credentials).
    """
    wanted = tuple(fields)
    for name in wanted:
        if not isinstance(name, str):
            raise TypeError(f"certificate fields are strings such as 'CN' or 'DNS', not {name!r}")

    async def check_certificate_identity(request: StationRequest) -> Accept | Reject:
        certificate = request.client_certificate
        if certificate is None:
            log.info("station %r sent no client certificate", request.identity)
            return Reject(status, "a client certificate is required", method="certificate")
        allowed = names(certificate) if names is not None else certificate_names(certificate, wanted)
        if request.identity in allowed:
            return Accept()
        log.info("station %r: client certificate issued to another identity", request.identity)
        return Reject(
            status,
            "the client certificate was not issued to this station identity",
            method="certificate",
            certificate_subject=_common_name(certificate) or "",
        )

    return check_certificate_identity


def _common_name(certificate: Mapping[str, Any]) -> str | None:
    """The subject's first common name, for the security event (``None`` without one)."""
    names = certificate_names(certificate, ("CN",))
    return names[0] if names else None


# -- combinators ------------------------------------------------------------------------


def all_of(*callbacks: AuthCallback) -> AuthCallback:
    """Accept only when every callback accepts (``None`` counts as accept); checked in order.

    The first refusal is the answer, and later callbacks are not asked.  The
    accepted session data is merged (later callbacks win a clashing key), and
    the last protocol a callback chose is used.
    """
    if not callbacks:
        raise ValueError("all_of() needs at least one auth callback")

    async def all_accept(request: StationRequest) -> Accept | Reject:
        data: dict[str, Any] = {}
        protocol: str | None = None
        for callback in callbacks:
            decision = await callback(request)
            if isinstance(decision, Reject):
                return decision
            if decision is not None:
                data.update(decision.data)
                protocol = decision.protocol if decision.protocol is not None else protocol
        return Accept(protocol=protocol, data=data)

    return all_accept


def any_of(*callbacks: AuthCallback) -> AuthCallback:
    """Accept as soon as one callback accepts (``None`` counts as accept); checked in order.

    When all refuse, the first refusal is the answer.
    """
    if not callbacks:
        raise ValueError("any_of() needs at least one auth callback")

    async def one_accepts(request: StationRequest) -> Accept | Reject:
        first: Reject | None = None
        for callback in callbacks:
            decision = await callback(request)
            if not isinstance(decision, Reject):
                return decision if decision is not None else Accept()
            first = first or decision
        assert first is not None
        return first

    return one_accepts
