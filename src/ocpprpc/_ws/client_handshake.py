"""The client side of the opening handshake: :func:`open_websocket`.

Connects (TCP, TLS for ``wss://``), sends the HTTP upgrade with the station identity
percent-encoded onto the URL path, the OCPP versions offered and Basic credentials, and
returns a :class:`~ocpprpc._ws.websocket.WebSocketStream` or raises why it could not.
"""

from __future__ import annotations

import base64
import logging
import ssl
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import anyio
import anyio.abc
from anyio.streams.tls import TLSStream
from wsproto.connection import ConnectionType
from wsproto.events import AcceptConnection, RejectConnection, RejectData, Request
from wsproto.extensions import Extension
from wsproto.handshake import H11Handshake
from wsproto.utilities import RemoteProtocolError

from .._options.model import WebSocketOptions
from .errors import HandshakeError, HandshakeRejected, HandshakeTimeout
from .handshake_shared import HeadersArg, WsCodecName, _header_list, _make_codec, resolve_ws_codec
from .tcp import TcpStreamName, check_tcp_stream, connect_tcp
from .tls import client_ssl_context
from .websocket import DEFAULT_CLOSE_TIMEOUT, WebSocketStream
from .wsproto_codec import DEFAULT_MAX_MESSAGE_SIZE, deflate_extension

__all__ = ["DEFAULT_CONNECT_TIMEOUT", "open_websocket", "open_websocket_with"]

log = logging.getLogger("ocpprpc._handshake")  # log name kept

#: Bound on TCP connect + TLS + HTTP upgrade for a station.
DEFAULT_CONNECT_TIMEOUT = 10.0
#: How much of a rejection body a client keeps (for the error message).
_MAX_REJECT_BODY = 64 * 1024

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
    options = WebSocketOptions(
        connect_timeout=connect_timeout,
        compression=compression,
        max_message_size=max_message_size,
        close_timeout=close_timeout,
        ws_codec=ws_codec,
        tcp_stream=tcp_stream,
    )
    return await open_websocket_with(
        url,
        identity,
        options,
        protocols=protocols,
        password=password,
        ssl_context=ssl_context,
        headers=headers,
        query=query,
    )


async def open_websocket_with(
    url: str,
    identity: str,
    options: WebSocketOptions,
    *,
    protocols: Sequence[str],
    password: str | bytes | None = None,
    ssl_context: ssl.SSLContext | None = None,
    headers: HeadersArg = None,
    query: HeadersArg = None,
) -> WebSocketStream:
    """:func:`open_websocket` with its transport settings in one :class:`WebSocketOptions`
    (how :func:`~ocpprpc.connect` and :class:`~ocpprpc.Station` call it).

    :raises HandshakeRejected: the server answered with an HTTP error.
    :raises HandshakeTimeout: it all took longer than ``connect_timeout``.
    :raises HandshakeError: TLS failed, the server broke the upgrade or picked no subprotocol.
    :raises OSError: the TCP connection could not be made.
    """
    connect_timeout = options.connect_timeout
    max_message_size = options.max_message_size
    compression = options.compresses(server=False)
    tcp_stream = options.tcp_stream
    codec_name = resolve_ws_codec(options.ws_codec)
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
        close_timeout=options.close_timeout,
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
