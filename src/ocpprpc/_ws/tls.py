"""TLS contexts for OCPP security profiles 2 and 3.

Both OCPP security whitepapers require TLS 1.2 or newer (A00.FR.312/.416; 1.6
tolerates 1.0/1.1 only for stations that cannot do better) and no TLS
compression (A00.FR.320).  The contexts made here start from
:func:`ssl.create_default_context` (certificate and host name checks on,
compression off) and raise the floor to TLS 1.2.  A context passed in by the
user is used as given: a CSMS that must admit a legacy 1.6 station can.

The CSMS context offers exactly the TLS 1.2 suites OCPP names (2.0.1 Part 2
A00.FR.318, 1.6 security whitepaper): ECDHE-ECDSA with AES-GCM for an ECDSA
certificate and plain-RSA AES-GCM for an RSA one, plus ECDHE-RSA with AES-GCM
(forward secrecy for RSA stations that have it), forward-secret suites first;
TLS 1.3 keeps OpenSSL's suites.  Python's default list leaves the plain-RSA
suites out, so a station limited to what OCPP requires could not connect.
OpenSSL allows them at its default security level 2 (level 3 would refuse any
suite without forward secrecy), so the level is left as it is.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterable

__all__ = ["OCPP_TLS12_CIPHERS", "client_ssl_context", "server_ssl_context"]

StrPath = str | os.PathLike[str]
#: One more certificate for :func:`server_ssl_context`: ``(certfile, keyfile)``, or
#: ``(certfile, keyfile, password)``; ``keyfile`` ``None`` when the key is inside ``certfile``.
CertKey = tuple[StrPath, StrPath | None] | tuple[StrPath, StrPath | None, str | bytes | None]

#: The TLS 1.2 suites a CSMS offers, in its order of preference (OpenSSL names):
#: the four OCPP requires (TLS_ECDHE_ECDSA_WITH_AES_128/256_GCM_SHA256/384,
#: TLS_RSA_WITH_AES_128/256_GCM_SHA256/384) and ECDHE-RSA with AES-GCM.
OCPP_TLS12_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "AES128-GCM-SHA256",
        "AES256-GCM-SHA384",
    )
)


def client_ssl_context(
    *,
    cafile: StrPath | None = None,
    cadata: str | bytes | None = None,
    certfile: StrPath | None = None,
    keyfile: StrPath | None = None,
    password: str | bytes | None = None,
) -> ssl.SSLContext:
    """A charging station's context: verifies the CSMS certificate and host name, TLS >= 1.2.

    :param cafile: PEM file of the CA(s) to trust instead of the system store.
    :param cadata: the same, as PEM text.
    :param certfile: the station's certificate chain (security profile 3).
    :param keyfile: its private key, if not inside ``certfile``.
    :param password: the private key's password.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile, cadata=cadata)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if certfile is not None:
        context.load_cert_chain(certfile, keyfile, password)
    return context


def server_ssl_context(
    certfile: StrPath | None = None,
    keyfile: StrPath | None = None,
    *,
    password: str | bytes | None = None,
    extra_certs: Iterable[CertKey] = (),
    client_cafile: StrPath | None = None,
    client_cadata: str | bytes | None = None,
    ciphers: str | None = OCPP_TLS12_CIPHERS,
) -> ssl.SSLContext:
    """A CSMS context, TLS >= 1.2 with OCPP's suites; with a client CA it *requires* station certificates.

    One certificate per key type serves at once: give an RSA certificate and an
    ECDSA one (``certfile`` and ``extra_certs``) and OpenSSL presents the one
    each station's suites can use, so RSA-only and ECDSA-only stations connect
    to the same port.  (A second certificate of the same key type replaces the
    first.)

    :param certfile: the CSMS certificate chain (PEM); ``None`` to load it yourself.
    :param keyfile: its private key, if not inside ``certfile``.
    :param password: the private key's password.
    :param extra_certs: more certificates of other key types, each
        ``(certfile, keyfile)`` or ``(certfile, keyfile, password)``.
    :param client_cafile: PEM file of the CA(s) that sign station certificates;
        giving it (or ``client_cadata``) turns on ``CERT_REQUIRED`` (profile 3).
    :param client_cadata: the same, as PEM text.
    :param ciphers: the TLS 1.2 suites (OpenSSL cipher string); default
        :data:`OCPP_TLS12_CIPHERS`; ``None`` keeps Python's default list.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ciphers is not None:
        context.set_ciphers(ciphers)
    if certfile is not None:
        context.load_cert_chain(certfile, keyfile, password)
    for extra in extra_certs:
        cert, key, *rest = extra
        context.load_cert_chain(cert, key, rest[0] if rest else None)
    if client_cafile is not None or client_cadata is not None:
        context.load_verify_locations(cafile=client_cafile, cadata=client_cadata)
        context.verify_mode = ssl.CERT_REQUIRED
    return context
