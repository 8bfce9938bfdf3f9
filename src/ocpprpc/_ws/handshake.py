"""The WebSocket opening handshake for OCPP-J, client and server side.

Client: :func:`open_websocket` connects (TCP, TLS for ``wss://``), sends the
HTTP upgrade with the station identity percent-encoded onto the URL path
(OCPP-J 3.1.1: ``RDAM 123`` -> ``.../RDAM%20123``), the OCPP versions offered in
order, Basic credentials (username = identity) and any extra headers, and
returns a :class:`~ocpprpc._ws.websocket.WebSocketStream`.

Server: :func:`accept_websocket` reads one upgrade request from a byte stream
(after TLS, if given a context) under a handshake timeout, answers
non-WebSocket and malformed requests itself with a clear HTTP error, and hands
back a :class:`StationRequest` for the application to judge (password, client
certificate, known identity) before :meth:`StationRequest.accept` or
:meth:`StationRequest.reject`.

wsproto's ``H11Handshake`` does the HTTP/1.1 and RFC 6455 parts (h11 bounds the
request head to 16 KiB); this module adds OCPP's rules on top of it.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import ssl
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from types import EllipsisType
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import anyio
import anyio.abc
from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSAttribute, TLSStream
from wsproto.connection import ConnectionType
from wsproto.events import AcceptConnection, RejectConnection, RejectData, Request
from wsproto.extensions import Extension
from wsproto.handshake import H11Handshake
from wsproto.utilities import RemoteProtocolError

from .errors import HandshakeError, HandshakeRejected, HandshakeTimeout
from .tcp import TcpStreamName, check_tcp_stream, connect_tcp
from .tls import client_ssl_context
from .websocket import DEFAULT_CLOSE_TIMEOUT, WebSocketStream
from .wsproto_codec import DEFAULT_MAX_MESSAGE_SIZE, WebSocketCodec, WsprotoCodec, deflate_extension

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_WS_CODEC",
    "MAX_IDENTITY_LENGTH",
    "StationRequest",
    "IdentityCheck",
    "WsCodecName",
    "accept_websocket",
    "check_identity",
    "open_websocket",
    "resolve_ws_codec",
    "select_subprotocol",
]

log = logging.getLogger("ocpprpc._handshake")  # log name kept

#: Bound on TCP connect + TLS + HTTP upgrade for a station.
DEFAULT_CONNECT_TIMEOUT = 10.0
#: Bound on TLS + reading the upgrade request on the CSMS side: a slowloris
#: trickling its request head is dropped after this.
DEFAULT_HANDSHAKE_TIMEOUT = 10.0
#: OCPP 2.0.1 Part 4 3.1.1: the identity is an identifierString of at most 48 characters.
MAX_IDENTITY_LENGTH = 48
#: How much of a rejection body a client keeps (for the error message).
_MAX_REJECT_BODY = 64 * 1024
#: How long a server lingers after an HTTP error, so the client reads it before the reset.
_REJECT_LINGER = 1.0

HeadersArg = Mapping[str, str] | Iterable[tuple[str, str]] | None

#: Which frame codec runs the connection after the handshake (docs/client-server.rst,
#: "WebSocket codec"): ``"websockets"`` (websockets' sans-IO protocol, the faster one),
#: ``"wsproto"`` (the reference), or ``"auto"``: websockets when it can be imported, else wsproto.
WsCodecName = Literal["auto", "websockets", "wsproto"]
#: ``"auto"``, which picks websockets: per message it costs about a third of wsproto
#: (bench/README.md, "WebSocket codec").
DEFAULT_WS_CODEC: WsCodecName = "auto"


def resolve_ws_codec(name: str | None = None) -> Literal["websockets", "wsproto"]:
    """The codec ``name`` stands for on this installation (``None``: :data:`DEFAULT_WS_CODEC`).

    :raises ValueError: an unknown name.
    :raises ImportError: ``"websockets"`` asked for explicitly but not importable.
    """
    if name is None:
        name = DEFAULT_WS_CODEC
    if name == "wsproto":
        return "wsproto"
    if name not in ("auto", "websockets"):
        raise ValueError(f"unknown WebSocket codec {name!r}: use 'auto', 'websockets' or 'wsproto'")
    try:
        from . import websockets_codec as _websockets_codec  # noqa: F401
    except ImportError as exc:
        if name == "auto":
            return "wsproto"
        raise ImportError(f"ws_codec='websockets' needs the websockets package: {exc}") from exc
    return "websockets"


def _make_codec(
    name: Literal["websockets", "wsproto"],
    handshake: H11Handshake,
    extensions: Sequence[Extension],
    *,
    client: bool,
    max_message_size: int,
) -> WebSocketCodec:
    """The frame codec for a connection whose opening handshake ``handshake`` just completed."""
    connection = handshake.connection
    assert connection is not None
    if name == "wsproto":
        return WsprotoCodec(connection, max_message_size=max_message_size)
    from .websockets_codec import WebsocketsCodec, websockets_extensions

    # Frames that arrived in the same read as the end of the handshake: wsproto
    # already handed them to its own connection, which this codec replaces.  h11's
    # ``trailing_data`` is public; reaching it through wsproto is not (wsproto is
    # pinned below 2 for this and the bounded inflater).
    trailing: bytes = handshake._h11_connection.trailing_data[0]
    return WebsocketsCodec(
        client=client,
        max_message_size=max_message_size,
        extensions=websockets_extensions(extensions, client=client),
        initial_data=trailing,
    )


def select_subprotocol(offered: Sequence[str], supported: Sequence[str]) -> str | None:
    """The first subprotocol in the *client's* order that the server supports, or ``None``.

    The client's order wins because a station lists its versions by preference
    (OCPP-J 3.1.3, e.g. ``ocpp2.0.1, ocpp1.6``) and knows which one it implements
    best; this is also what ocpp-ws-io and other CSMS libraries do.  A CSMS that
    wants its own preference passes the version to :meth:`StationRequest.accept`.
    """
    wanted = set(supported)
    for protocol in offered:
        if protocol in wanted:
            return protocol
    return None


def _header_list(headers: HeadersArg) -> list[tuple[bytes, bytes]]:
    items = headers.items() if isinstance(headers, Mapping) else (headers or ())
    out = []
    for name, value in items:
        if any(c in name + value for c in "\r\n\0"):
            raise ValueError(f"invalid character in header {name!r}")
        out.append((name.encode("ascii"), value.encode("latin-1")))
    return out


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


async def _answer_and_close(stream: anyio.abc.ByteStream, response: bytes) -> None:
    """Write an HTTP error, then close without a reset eating it.

    Closing a socket whose receive buffer still holds unread bytes (the rest of a
    garbage request) makes the kernel send a reset, which can destroy the
    response before the client reads it; so half-close and discard for a moment.
    Shielded: a rejection goes out even when the caller is being cancelled.
    """
    with anyio.CancelScope(shield=True):
        with anyio.move_on_after(_REJECT_LINGER):
            try:
                await stream.send(response)
                await stream.send_eof()
                while True:
                    await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                pass
            except NotImplementedError:
                pass  # TLS: no half-close, just close
        await anyio.aclose_forcefully(stream)


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
    _ws_codec: Literal["websockets", "wsproto"] = field(default="wsproto", repr=False)
    _answered: bool = field(default=False, repr=False)

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
        handshake = self._handshake
        assert handshake is not None  # _claim() lets only one accept() or reject() through
        chosen = self.subprotocol if isinstance(subprotocol, EllipsisType) else subprotocol
        if chosen is not None and chosen not in self.proposed_subprotocols:
            await anyio.aclose_forcefully(self._stream)
            raise ValueError(f"subprotocol {chosen!r} was not offered by the station")
        try:
            data = handshake.send(
                AcceptConnection(
                    subprotocol=chosen, extensions=self._extensions, extra_headers=_header_list(headers)
                )
            )
            with anyio.fail_after(self._timeout):
                await self._stream.send(data)
        except BaseException as exc:
            await anyio.aclose_forcefully(self._stream)
            if isinstance(exc, TimeoutError):
                raise HandshakeTimeout("timed out sending the 101 response") from exc
            if isinstance(exc, (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)):
                raise HandshakeError(f"connection lost while accepting: {exc!r}") from exc
            raise
        compression = any(ext.enabled() for ext in self._extensions)
        try:
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
        self._handshake = None
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
    """
    codec_name = resolve_ws_codec(ws_codec)
    handshake = H11Handshake(ConnectionType.SERVER)
    request: Request | None = None
    try:
        with anyio.fail_after(handshake_timeout):
            if ssl_context is not None:
                try:
                    stream = await TLSStream.wrap(
                        stream, server_side=True, ssl_context=ssl_context, standard_compatible=False
                    )
                except (ssl.SSLError, anyio.BrokenResourceError, anyio.EndOfStream, OSError) as exc:
                    raise HandshakeError(f"TLS handshake failed: {exc!r}") from exc
            while request is None:
                try:
                    data = await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError, OSError) as exc:
                    raise HandshakeError("connection closed before a complete request") from exc
                try:
                    handshake.receive_data(data)
                    for event in handshake.events():
                        if isinstance(event, Request):
                            request = event
                except RemoteProtocolError as exc:
                    raise _refusal_for(exc) from exc
                except UnicodeError as exc:
                    # wsproto decodes the Host header as IDNA and lets the error escape
                    # (fuzzing found it: one such request ended the whole server).
                    raise _Refused(400, "malformed HTTP request (a header value is not ASCII)") from exc
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
        remote_address=stream.extra(SocketAttribute.remote_address, None),
        _stream=stream,
        _handshake=handshake,
        _supported=list(protocols),
        _extensions=extensions,
        _max_message_size=max_message_size,
        _timeout=handshake_timeout,
        _close_timeout=close_timeout,
        _ws_codec=codec_name,
    )


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


# -- client side ------------------------------------------------------------------


def _station_target(path: str, identity: str, url_query: str, query: HeadersArg) -> str:
    target = path.rstrip("/") + "/" + quote(identity, safe="")
    pairs = parse_qsl(url_query, keep_blank_values=True)
    if query is not None:
        pairs.extend(query.items() if isinstance(query, Mapping) else query)
    return target + "?" + urlencode(pairs) if pairs else target


async def open_websocket(
    url: str,
    identity: str,
    *,
    protocols: Sequence[str],
    password: str | bytes | None = None,
    ssl_context: ssl.SSLContext | None = None,
    headers: HeadersArg = None,
    query: HeadersArg = None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    compression: bool = False,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
    ws_codec: WsCodecName | None = None,
    tcp_stream: TcpStreamName | None = None,
) -> WebSocketStream:
    """Connect a charging station to a CSMS and return the open WebSocket.

    :param url: the CSMS endpoint, ``ws://`` or ``wss://``, without the identity.
    :param identity: the station identity, appended to the path percent-encoded.
    :param protocols: OCPP versions to offer, most preferred first; the server
        must pick one of them (:attr:`WebSocketStream.subprotocol`).
    :param password: Basic-auth password (profiles 1 and 2); the username is the
        identity.  ``str`` is sent as UTF-8, ``bytes`` as they are.
    :param ssl_context: TLS settings for ``wss://`` (CA, client certificate for
        profile 3); default: system CAs, TLS >= 1.2.
    :param headers: extra request headers.
    :param query: extra query parameters (added to any in ``url``).
    :param connect_timeout: bound on TCP connect + TLS + HTTP upgrade.
    :param compression: offer permessage-deflate.
    :param max_message_size: largest message accepted from the CSMS (bytes, inflated).
    :param close_timeout: bound on the close handshake.
    :param ws_codec: the frame codec after the handshake (:data:`WsCodecName`;
        ``None``: :data:`DEFAULT_WS_CODEC`).
    :param tcp_stream: the TCP byte stream (:data:`~ocpprpc._ws.tcp.TcpStreamName`;
        ``None``: ``"auto"``, ocpprpc's own on asyncio, the raw-socket one elsewhere).
    :raises HandshakeRejected: the server answered with an HTTP error.
    :raises HandshakeTimeout: it all took longer than ``connect_timeout``.
    :raises HandshakeError: TLS failed, the server broke the upgrade or picked no subprotocol.
    :raises OSError: the TCP connection could not be made.
    """
    codec_name = resolve_ws_codec(ws_codec)
    check_tcp_stream(tcp_stream)
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"not a ws:// or wss:// URL: {url!r}")
    if not identity:
        raise ValueError("the station identity must not be empty")
    secure = parts.scheme == "wss"
    if ssl_context is not None and not secure:
        raise ValueError("an ssl_context was given for a ws:// URL; use wss://")
    host = parts.hostname
    port = parts.port or (443 if secure else 80)
    target = _station_target(parts.path, identity, parts.query, query)
    extra = _header_list(headers)
    if password is not None:
        secret = password.encode() if isinstance(password, str) else password
        token = base64.b64encode(identity.encode() + b":" + secret)
        extra.append((b"Authorization", b"Basic " + token))
    extensions: list[Extension] = [deflate_extension(max_message_size)] if compression else []
    handshake = H11Handshake(ConnectionType.CLIENT)

    stream: anyio.abc.ByteStream | None = None
    try:
        with anyio.fail_after(connect_timeout):
            stream = await connect_tcp(host, port, tcp_stream=tcp_stream)
            if secure:
                try:
                    stream = await TLSStream.wrap(
                        stream,
                        server_side=False,
                        hostname=host,
                        ssl_context=ssl_context or client_ssl_context(),
                        standard_compatible=False,
                    )
                except (ssl.SSLError, anyio.BrokenResourceError, anyio.EndOfStream) as exc:
                    raise HandshakeError(f"TLS handshake with {host}:{port} failed: {exc!r}") from exc
            request = Request(
                host=parts.netloc.rpartition("@")[2],
                target=target,
                subprotocols=list(protocols),
                extensions=extensions,
                extra_headers=extra,
            )
            await stream.send(handshake.send(request))
            accepted = await _read_response(stream, handshake)
    except TimeoutError as exc:
        if stream is not None:
            await anyio.aclose_forcefully(stream)
        raise HandshakeTimeout(f"no WebSocket connection to {url} within {connect_timeout} s") from exc
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, ssl.SSLError) as exc:
        # ssl.SSLError here: a TLS 1.3 server refusing our certificate only says so
        # after the handshake, on the first read.
        assert stream is not None
        await anyio.aclose_forcefully(stream)
        raise HandshakeError(f"connection to {url} lost during the handshake: {exc!r}") from exc
    except BaseException:
        if stream is not None:
            await anyio.aclose_forcefully(stream)
        raise

    try:
        codec = _make_codec(
            codec_name, handshake, accepted.extensions, client=True, max_message_size=max_message_size
        )
    except BaseException:
        await anyio.aclose_forcefully(stream)
        raise
    ws = WebSocketStream(
        stream,
        codec,
        client=True,
        subprotocol=accepted.subprotocol,
        compression=any(ext.enabled() for ext in accepted.extensions),
        close_timeout=close_timeout,
        identity=identity,
    )
    if accepted.subprotocol is None and protocols:
        await ws.close(1002, "no subprotocol accepted")
        raise HandshakeError(f"the server at {url} accepted none of the subprotocols {list(protocols)}")
    return ws


async def _read_response(stream: anyio.abc.ByteStream, handshake: H11Handshake) -> AcceptConnection:
    """Read the server's answer to the upgrade: the 101, or raise with its HTTP error."""
    rejection: RejectConnection | None = None
    body = bytearray()
    while True:
        try:
            data: bytes | None = await stream.receive()
        except anyio.EndOfStream:
            if rejection is None:
                raise HandshakeError("the server closed the connection during the handshake") from None
            data = None  # a rejection body delimited by the end of the connection
        try:
            handshake.receive_data(data)
            for event in handshake.events():
                if isinstance(event, AcceptConnection):
                    return event
                if isinstance(event, RejectConnection):
                    rejection = event
                    if not event.has_body:
                        raise _rejected(event, b"")
                elif isinstance(event, RejectData):
                    body += event.data[: _MAX_REJECT_BODY - len(body)]
                    if event.body_finished:
                        assert rejection is not None
                        raise _rejected(rejection, bytes(body))
        except RemoteProtocolError as exc:
            raise HandshakeError(f"invalid WebSocket upgrade response: {exc}") from exc
        if data is None:
            assert rejection is not None
            raise _rejected(rejection, bytes(body))


def _rejected(event: RejectConnection, body: bytes) -> HandshakeRejected:
    try:
        reason = HTTPStatus(event.status_code).phrase
    except ValueError:
        reason = ""
    headers = [(name.lower(), value) for name, value in event.headers]
    return HandshakeRejected(event.status_code, reason, body, headers)
