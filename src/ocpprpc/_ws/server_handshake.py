"""The server side of the opening handshake: :func:`accept_websocket` and :class:`StationRequest`.

Reads one upgrade request from a byte stream (after TLS, if given a context) under a handshake
timeout, answers non-WebSocket and malformed requests itself with a clear HTTP error, and hands
back a :class:`StationRequest` for the application to judge before it accepts or rejects it.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from types import EllipsisType
from typing import Any
from urllib.parse import parse_qsl, unquote

import anyio
import anyio.abc
from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSAttribute, TLSStream
from wsproto.connection import ConnectionType
from wsproto.events import AcceptConnection, RejectConnection, Request
from wsproto.extensions import Extension
from wsproto.handshake import H11Handshake
from wsproto.utilities import RemoteProtocolError

from .errors import HandshakeError, HandshakeTimeout
from .handshake_shared import (
    HeadersArg,
    ResolvedCodec,
    WsCodecName,
    _fresh_codec,
    _header_list,
    _make_codec,
    resolve_ws_codec,
    select_subprotocol,
)
from .http_plain import (
    PlainHttpAnswered,
    PlainHttpHandler,
    _answer_and_close,
    answer,
    parse_plain_request,
    response_bytes,
)
from .tcp import send_within
from .upgrade_fast import FastUpgrade, accept_response, parse_upgrade
from .websocket import DEFAULT_CLOSE_TIMEOUT, WebSocketStream
from .wsproto_codec import DEFAULT_MAX_MESSAGE_SIZE, deflate_extension

__all__ = [
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "MAX_IDENTITY_LENGTH",
    "IdentityCheck",
    "StationRequest",
    "accept_websocket",
    "check_identity",
]

log = logging.getLogger("ocpprpc._handshake")  # log name kept

#: Bound on TLS + reading the upgrade request on the CSMS side: a slowloris
#: trickling its request head is dropped after this.
DEFAULT_HANDSHAKE_TIMEOUT = 10.0
#: OCPP 2.0.1 Part 4 3.1.1: the identity is an identifierString of at most 48 characters.
MAX_IDENTITY_LENGTH = 48


def _http_response(status: int, body: bytes, headers: Iterable[tuple[bytes, bytes]] = ()) -> bytes:
    """A complete HTTP/1.1 response that closes the connection."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    head = [
        f"HTTP/1.1 {status} {phrase}".encode("ascii"),
        b"Content-Type: text/plain; charset=utf-8",
        b"Content-Length: " + str(len(body)).encode("ascii"),
        b"Connection: close",
    ]
    head.extend(name + b": " + value for name, value in headers)
    return b"\r\n".join(head) + b"\r\n\r\n" + body


# -- server side ------------------------------------------------------------------


@dataclass(eq=False)
class StationRequest:
    """A charging station's upgrade request, waiting for :meth:`accept` or :meth:`reject`.

    Exactly one of the two must be awaited; either releases the connection if it fails.
    """

    #: The station identity: the last URL path segment, percent-decoded.
    identity: str
    #: The request path as sent (percent-encoded), without the query.
    path: str
    #: The raw query string (without ``?``).
    query_string: str
    #: Request headers with lower-case names, as received (Sec-WebSocket-Protocol,
    #: -Extensions and Host are consumed by wsproto and not repeated here).  Not in
    #: the repr: the Authorization header carries the password.
    headers: list[tuple[bytes, bytes]] = field(repr=False)
    #: Host header value.
    host: str
    #: The subprotocols the station offered, in its order.
    proposed_subprotocols: list[str]
    #: What :func:`select_subprotocol` chose from them (``None``: nothing in common).
    subprotocol: str | None
    #: The Basic-auth password (bytes: OCPP 1.6 passwords may be binary), or
    #: ``None`` without credentials.  The username was already checked to equal the
    #: identity (OCPP A00.FR.204/.303); a mismatch was answered with 401.  Never in the repr.
    password: bytes | None = field(repr=False)
    #: The verified client certificate (``ssl.SSLSocket.getpeercert()`` form), profile 3.
    client_certificate: dict[str, Any] | None
    #: The same certificate in DER form.
    client_certificate_der: bytes | None
    #: The peer's address as reported by the stream (``(host, port)`` for TCP), if known.
    remote_address: Any
    _stream: anyio.abc.ByteStream = field(repr=False)
    #: Dropped once accepted: the request lives as long as the connection, h11's and
    #: wsproto's handshake state need not (the wsproto codec keeps only its Connection).
    _handshake: H11Handshake | None = field(repr=False)
    _supported: Sequence[str] = field(repr=False)
    _extensions: list[Extension] = field(repr=False)
    _max_message_size: int = field(repr=False)
    _timeout: float = field(repr=False)
    _close_timeout: float = field(repr=False)
    _ws_codec: ResolvedCodec = field(default="wsproto", repr=False)
    #: The request as the fast path read it (``_handshake`` is then ``None`` until needed);
    #: wsproto replays its bytes when the answer needs its negotiation.
    _fast: FastUpgrade | None = field(default=None, repr=False)
    _answered: bool = field(default=False, repr=False)
    #: The CSMS :class:`~ocpprpc.Route` the path matched (``None``: the server has no routes).
    route: Any = None
    #: The path parameters (the server fills them in: ``identity`` always, and a route's).
    params: dict[str, str] = field(default_factory=dict)
    #: What connection middleware left for the auth callback and ``session.data``.
    state: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def username(self) -> str | None:
        """The Basic-auth username (always the identity) when credentials were sent."""
        return None if self.password is None else self.identity

    def header(self, name: str) -> str | None:
        """The first value of a request header (case-insensitive), decoded as latin-1."""
        key = name.lower().encode("ascii")
        for header, value in self.headers:
            if header == key:
                return value.decode("latin-1")
        return None

    @property
    def query(self) -> dict[str, str]:
        """The query parameters (the last value wins for a repeated name)."""
        return dict(parse_qsl(self.query_string, keep_blank_values=True))

    def _retarget(self, protocols: Sequence[str], max_message_size: int) -> None:
        """Serve the request with other settings than it was read with (a CSMS route's)."""
        self._supported = list(protocols)
        self.subprotocol = select_subprotocol(self.proposed_subprotocols, protocols)
        if max_message_size != self._max_message_size:
            self._max_message_size = max_message_size
            if self._extensions:
                self._extensions = [deflate_extension(max_message_size)]

    async def accept(
        self, subprotocol: str | EllipsisType | None = ..., *, headers: HeadersArg = None
    ) -> WebSocketStream:
        """Complete the upgrade (HTTP 101) and return the open WebSocket.

        :param subprotocol: the version to speak; defaults to :attr:`subprotocol`.
            It must be one the station offered.
        :param headers: extra response headers.
        :raises HandshakeError: no subprotocol in common although the server has a
            list: as OCPP-J 3.2 demands, the handshake is completed without a
            subprotocol and the connection closed at once (1002).
        :raises ValueError: ``subprotocol`` was not offered by the station.
        """
        self._claim()
        handshake, fast = self._handshake, self._fast
        chosen = self.subprotocol if isinstance(subprotocol, EllipsisType) else subprotocol
        if chosen is not None and chosen not in self.proposed_subprotocols:
            await anyio.aclose_forcefully(self._stream)
            raise ValueError(f"subprotocol {chosen!r} was not offered by the station")
        try:
            extra = _header_list(headers)
            if fast is not None and (extra or (fast.offers_extensions and self._extensions)):
                handshake = self._replay()  # wsproto negotiates the extensions, writes the headers
            if handshake is None:
                assert fast is not None  # _claim() lets only one accept() or reject() through
                data = accept_response(fast.key, chosen)
            else:
                data = handshake.send(
                    AcceptConnection(subprotocol=chosen, extensions=self._extensions, extra_headers=extra)
                )
            await send_within(self._stream, data, self._timeout)
        except BaseException as exc:
            await anyio.aclose_forcefully(self._stream)
            if isinstance(exc, TimeoutError):
                raise HandshakeTimeout("timed out sending the 101 response") from exc
            if isinstance(exc, (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)):
                raise HandshakeError(f"connection lost while accepting: {exc!r}") from exc
            raise
        compression = any(ext.enabled() for ext in self._extensions)
        try:
            if handshake is None:
                assert fast is not None
                size, trailing = self._max_message_size, fast.trailing
                codec = _fresh_codec(self._ws_codec, client=False, max_message_size=size, trailing=trailing)
            else:
                codec = _make_codec(
                    self._ws_codec,
                    handshake,
                    self._extensions,
                    client=False,
                    max_message_size=self._max_message_size,
                )
        except BaseException:
            await anyio.aclose_forcefully(self._stream)
            raise
        self._handshake = self._fast = None
        ws = WebSocketStream(
            self._stream,
            codec,
            client=False,
            subprotocol=chosen,
            compression=compression,
            close_timeout=self._close_timeout,
            identity=self.identity,
        )
        if chosen is None and self._supported:
            await ws.close(1002, "no supported OCPP version offered")
            raise HandshakeError(
                f"station {self.identity!r} offered {self.proposed_subprotocols}, "
                f"none of {list(self._supported)}; closed after the handshake"
            )
        log.debug("accepted %r speaking %s (compression %s)", self.identity, chosen, compression)
        return ws

    async def reject(self, status: int = 403, body: bytes | str = b"", *, headers: HeadersArg = None) -> None:
        """Refuse the upgrade with an HTTP status (401 bad password, 404 unknown station, ...).

        A 401 carries ``WWW-Authenticate: Basic`` unless ``headers`` set one.
        """
        self._claim()
        if isinstance(body, str):
            body = body.encode()
        extra = _header_list(headers)
        if status == 401 and not any(name.lower() == b"www-authenticate" for name, _ in extra):
            extra.append((b"WWW-Authenticate", b'Basic realm="ocpp", charset="UTF-8"'))
        log.debug("rejecting %r with HTTP %s", self.identity, status)
        await _answer_and_close(self._stream, _http_response(status, body or _default_body(status), extra))

    def _replay(self) -> H11Handshake:
        """wsproto's handshake state for the request the fast path read (it accepts the same bytes)."""
        assert self._fast is not None
        handshake = H11Handshake(ConnectionType.SERVER)
        handshake.receive_data(self._fast.data)
        for _ in handshake.events():
            pass
        return handshake

    def _claim(self) -> None:
        if self._answered:
            raise RuntimeError("this request was already accepted or rejected")
        self._answered = True


def _default_body(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode() + b"\n"
    except ValueError:
        return b""


class _Refused(Exception):
    """Internal: answer the request with this HTTP error."""

    def __init__(self, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or []


#: Judges a percent-decoded station identity: returns to accept, raises
#: :class:`ValueError` (its message goes into the 400 answer) to refuse.
IdentityCheck = Callable[[str], None]


def check_identity(identity: str) -> None:
    """OCPP's rules for a station identity; the default ``identity_check`` of a server.

    1 to 48 printable ASCII characters (space to ``~``), no ``/``, no ``\\``, and
    not ``.`` or ``..``; applied after percent-decoding, so ``%2F`` is a ``/`` too.
    OCPP 2.0.1 Part 2 A00 (identityString) and the 1.6 security whitepaper allow
    no more, and a handler that builds a file name, a URL or a log line from the
    identity never meets a path separator, a parent directory, a control
    character or a Unicode look-alike of another station's name.  ``\\`` and the
    dot names are refused because they are path hazards on some systems, though
    printable.

    :raises ValueError: with the reason, for the 400 answer.
    """
    if not 1 <= len(identity) <= MAX_IDENTITY_LENGTH:
        raise ValueError(f"must be 1 to {MAX_IDENTITY_LENGTH} characters long, not {len(identity)}")
    if not all(" " <= char <= "~" for char in identity):
        raise ValueError("must be printable ASCII (no control characters, no non-ASCII letters)")
    if "/" in identity or "\\" in identity:
        raise ValueError("must not contain '/' or '\\' (also not percent-encoded)")
    if identity in (".", ".."):
        raise ValueError("must not be '.' or '..'")


def _identity_from_path(path: str, check: IdentityCheck) -> str:
    raw = path.rsplit("/", 1)[-1]
    if not raw:
        raise _Refused(404, "no charging station identity at the end of the URL path")
    try:
        identity = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise _Refused(400, "the station identity is not valid percent-encoded UTF-8") from None
    try:
        check(identity)
    except ValueError as exc:
        raise _Refused(400, f"invalid station identity: it {exc}") from None
    except Exception:
        log.exception("the identity check raised something other than ValueError; answering 500")
        raise _Refused(500, "the station identity could not be checked") from None
    return identity


def _basic_password(headers: list[tuple[bytes, bytes]], identity: str) -> bytes | None:
    """The Basic-auth password for ``identity``, ``None`` without Basic credentials.

    The username must equal the identity (OCPP A00.FR.204/.303), so the split is
    made after the known ``identity:`` prefix: identities and passwords may both
    contain ``:`` and 1.6 passwords may be arbitrary bytes.
    """
    values = [value for name, value in headers if name == b"authorization"]
    if not values:
        return None
    scheme, _, token = values[0].strip().partition(b" ")
    if scheme.lower() != b"basic":
        return None
    try:
        credentials = base64.b64decode(token.strip(), validate=True)
    except binascii.Error:
        raise _Refused(400, "malformed Basic credentials (not base64)") from None
    prefix = identity.encode() + b":"
    if not credentials.startswith(prefix):
        raise _Refused(
            401,
            "the Basic-auth username must be the station identity",
            [(b"WWW-Authenticate", b'Basic realm="ocpp", charset="UTF-8"')],
        )
    return credentials[len(prefix) :]


#: What a failed read of the upgrade request raises (a closed or broken connection).
_READ_ERRORS = (anyio.EndOfStream, anyio.BrokenResourceError, OSError)


async def accept_websocket(
    stream: anyio.abc.ByteStream,
    *,
    protocols: Sequence[str],
    ssl_context: ssl.SSLContext | None = None,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    compression: bool = True,
    identity_check: IdentityCheck = check_identity,
    close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
    ws_codec: WsCodecName | None = None,
    http: PlainHttpHandler | None = None,
    peer_address: Any = None,
) -> StationRequest:
    """Read a station's upgrade request from ``stream`` and return it for judgement.

    Answers by itself, then raises :class:`HandshakeError` (``status`` = what was
    answered): garbage HTTP (400), a request that is not a WebSocket upgrade (426
    with ``Upgrade: websocket``, or 400), no identity in the path (404), an
    identity ``identity_check`` refuses (400), malformed credentials (400), a Basic-auth username other
    than the identity (401).  A peer that does not finish TLS and its request
    head within ``handshake_timeout`` is dropped with :class:`HandshakeTimeout`.
    ``stream`` is closed whenever this raises.

    :param stream: a freshly accepted connection (plain TCP, or already TLS).
    :param protocols: the OCPP versions this server speaks, e.g. ``["ocpp2.0.1", "ocpp1.6"]``.
    :param ssl_context: do the TLS handshake first, as server (profiles 2 and 3).
    :param handshake_timeout: bound on TLS + reading the request, and on writing the answer.
    :param max_message_size: largest message the WebSocket will accept (bytes, inflated).
    :param compression: accept permessage-deflate when the station offers it
        (OCPP 2.0.1 requires a CSMS to support it).
    :param identity_check: judges the percent-decoded identity (:data:`IdentityCheck`);
        default :func:`check_identity`, OCPP's rules.  A refusal is answered 400.
    :param close_timeout: bound on the close handshake of the resulting WebSocket.
    :param ws_codec: the frame codec after the handshake (:data:`WsCodecName`;
        ``None``: :data:`DEFAULT_WS_CODEC`).
    :param http: the side door: a request that is not an upgrade (one that
        would be answered 426, or a method other than GET) goes to it first;
        what it answers is sent and :class:`PlainHttpAnswered` raised, ``None``
        leaves the usual answer.
    :param peer_address: the stream's remote address, if the caller read it already
        (``None``: read it here; on trio each read is a ``getpeername()`` system call).
    """
    codec_name = resolve_ws_codec(ws_codec)
    handshake: H11Handshake | None = None
    request: Request | FastUpgrade | None = None
    head = bytearray()  # kept only for the side door: bounded by h11's 16 KiB head limit plus one read
    try:
        first: bytes | None = None
        wait: Awaitable[object] | None = None
        receive_now = getattr(stream, "receive_now", None) if ssl_context is None else None
        if receive_now is not None:
            # Most stations have sent their request by the time their task runs: over our own
            # streams it is read and parsed at once, and the deadline's cancel scope (with its
            # timer) is only made if something has to be waited for.
            try:
                got = receive_now()
            except _READ_ERRORS as exc:
                raise HandshakeError("connection closed before a complete request") from exc
            if isinstance(got, bytes):
                first = got
                request = parse_upgrade(got)
                if request is None:
                    handshake = H11Handshake(ConnectionType.SERVER)
            else:
                wait = got  # awaited under the deadline below
        if request is None:
            # A bare scope, not fail_after(): its generator costs 2% of a connection's setup.
            with anyio.CancelScope(deadline=anyio.current_time() + handshake_timeout) as scope:
                if wait is not None:
                    await wait
                if ssl_context is not None:
                    try:
                        stream = await TLSStream.wrap(
                            stream, server_side=True, ssl_context=ssl_context, standard_compatible=False
                        )
                    except (ssl.SSLError, anyio.BrokenResourceError, anyio.EndOfStream, OSError) as exc:
                        raise HandshakeError(f"TLS handshake failed: {exc!r}") from exc
                while request is None:
                    if first is not None:
                        data, first = first, None  # read above; not an upgrade_fast request: h11's turn
                    else:
                        try:
                            data = await stream.receive()
                        except _READ_ERRORS as exc:
                            raise HandshakeError("connection closed before a complete request") from exc
                    if handshake is None:
                        # The first read: a whole, well-formed upgrade request skips h11 (upgrade_fast).
                        request = parse_upgrade(data)
                        if request is not None:
                            break
                        handshake = H11Handshake(ConnectionType.SERVER)
                    if http is not None:
                        head += data
                    try:
                        handshake.receive_data(data)
                        for event in handshake.events():
                            if isinstance(event, Request):
                                request = event
                    except RemoteProtocolError as exc:
                        refusal = _refusal_for(exc)
                        if http is not None and (refusal.status == 426 or str(exc) == _NOT_GET):
                            await _side_door(stream, http, head)
                        raise refusal from exc
                    except UnicodeError as exc:
                        # wsproto decodes the Host header as IDNA and lets the error escape
                        # (fuzzing found it: one such request ended the whole server).
                        raise _Refused(400, "malformed HTTP request (a header value is not ASCII)") from exc
            if scope.cancelled_caught:
                raise TimeoutError
        assert request is not None
        _check_websocket_key(request.extra_headers)
        identity = _identity_from_path(request.target.partition("?")[0], identity_check)
        password = _basic_password(list(request.extra_headers), identity)
    except _Refused as refused:
        await _answer_and_close(
            stream, _http_response(refused.status, f"{refused}\n".encode(), refused.headers)
        )
        raise HandshakeError(f"HTTP {refused.status}: {refused}", status=refused.status) from None
    except TimeoutError as exc:
        await anyio.aclose_forcefully(stream)
        raise HandshakeTimeout(f"no complete handshake within {handshake_timeout} s") from exc
    except BaseException:
        await anyio.aclose_forcefully(stream)
        raise

    assert request is not None
    path, _, query_string = request.target.partition("?")
    offered = list(request.subprotocols)
    extensions: list[Extension] = [deflate_extension(max_message_size)] if compression else []
    fast = request if isinstance(request, FastUpgrade) else None
    certificate = stream.extra(TLSAttribute.peer_certificate, None) or None
    return StationRequest(
        identity=identity,
        path=path,
        query_string=query_string,
        headers=list(request.extra_headers),
        host=request.host,
        proposed_subprotocols=offered,
        subprotocol=select_subprotocol(offered, protocols),
        password=password,
        client_certificate=certificate,
        client_certificate_der=certificate and stream.extra(TLSAttribute.peer_certificate_binary, None),
        remote_address=(
            peer_address if peer_address is not None else stream.extra(SocketAttribute.remote_address, None)
        ),
        _stream=stream,
        _handshake=handshake,
        _fast=fast,
        _supported=list(protocols),
        _extensions=extensions,
        _max_message_size=max_message_size,
        _timeout=handshake_timeout,
        _close_timeout=close_timeout,
        _ws_codec=codec_name,
    )


#: wsproto's complaint about a method other than GET (HEAD, POST...): not an upgrade either.
_NOT_GET = "Request method must be GET"


async def _side_door(stream: anyio.abc.ByteStream, http: PlainHttpHandler, head: bytearray) -> None:
    """Answer a plain HTTP request through *http* and raise :class:`PlainHttpAnswered`; else return."""
    plain = parse_plain_request(bytes(head))
    if plain is None:  # pragma: no cover - wsproto's own h11 just parsed the same head
        return
    response = answer(http, plain)
    if response is None:
        return
    await _answer_and_close(stream, response_bytes(response, plain.method))
    raise PlainHttpAnswered(plain, response.status)


#: What h11 quotes from the request in its error messages: ``: b'...'``,
#: ``bytearray(b'...')`` and everything after.
_QUOTED = re.compile(r":? *(?:bytearray\()?b['\"].*", re.DOTALL)


def _withhold_quoted(message: str) -> str:
    """h11's complaint without the request bytes it quotes.

    h11 quotes the offending line ("illegal header line: b'Authorization Basic
    ...'"), which may be a password, a token or a session cookie; the answer and
    the log get what went wrong, never the line itself.
    """
    return _QUOTED.sub("", message)[:200]


def _refusal_for(exc: RemoteProtocolError) -> _Refused:
    """Turn wsproto's verdict on a bad request into the HTTP error to answer."""
    hint = exc.event_hint
    status = hint.status_code if isinstance(hint, RejectConnection) else 400
    message = str(exc)
    if message == "Bad HTTP message":
        # h11 refused the request head itself (garbage, or a head over 16 KiB).
        status = getattr(exc.__context__, "error_status_hint", 400)
        message = f"malformed HTTP request ({_withhold_quoted(str(exc.__context__))})"
        return _Refused(status, message)
    if "'Connection: Upgrade'" in message or "'Upgrade: websocket'" in message:
        return _Refused(
            426,
            "this is an OCPP-J WebSocket endpoint: connect with a WebSocket client "
            f"and the OCPP subprotocol ({message})",
            [(b"Upgrade", b"websocket"), (b"Sec-WebSocket-Version", b"13")],
        )
    headers = list(hint.headers) if isinstance(hint, RejectConnection) else []
    if message == "Missing header, 'Sec-WebSocket-Version'" and status == 426:
        # wsproto says "missing" for a version it does not speak, too (RFC 6455 4.4).
        if not any(name.lower() == b"sec-websocket-version" for name, _ in headers):
            headers.append((b"Sec-WebSocket-Version", b"13"))
        return _Refused(426, "unsupported Sec-WebSocket-Version: this server speaks version 13", headers)
    return _Refused(status, f"bad WebSocket upgrade request ({message})", headers)


def _check_websocket_key(headers: Iterable[tuple[bytes, bytes]]) -> None:
    """RFC 6455 4.2.1: the key is a base64-encoded 16-byte random value; wsproto takes any."""
    for name, value in headers:
        if name == b"sec-websocket-key":
            try:
                decoded = base64.b64decode(value.strip(), validate=True)
            except binascii.Error:
                decoded = b""
            if len(decoded) != 16:
                raise _Refused(400, "Sec-WebSocket-Key must be 16 bytes in base64 (RFC 6455 4.2.1)")
