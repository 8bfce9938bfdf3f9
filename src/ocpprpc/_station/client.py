"""The charging-station side: open a WebSocket to a CSMS and run a session on it."""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio

from .._engine.rules import Role
from .._options.model import SessionOptions, WebSocketOptions
from .._options.policies import Keepalive
from .._options.table import merge_options, split_session_extras
from .._rpc.protocols import ValidationArg, check_protocols, session_parts
from .._rpc.router import Router
from .._rpc.session import Session
from .._typed.quirks import QuirksArg
from .._ws.handshake import (
    DEFAULT_CONNECT_TIMEOUT,
    HeadersArg,
    WsCodecName,
    open_websocket_with,
)
from .._ws.keepalive import keepalive as _keepalive
from .._ws.tcp import TcpStreamName
from .._ws.websocket import DEFAULT_CLOSE_TIMEOUT, DEFAULT_SEND_TIMEOUT, WebSocketStream
from .._ws.wsproto_codec import DEFAULT_MAX_MESSAGE_SIZE

__all__ = ["connect", "station_session"]

log = logging.getLogger("ocpprpc.client")


@asynccontextmanager
async def connect(
    url: str,
    identity: str,
    *,
    protocols: Sequence[str] = ("ocpp1.6",),
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
    router: Router | None = None,
    validation: ValidationArg = False,
    max_outstanding_calls: int | None = None,
    detailed_errors: bool = False,
    max_bad_messages: int | None = None,
    keepalive: Keepalive | None = None,
    max_queued_calls: int | None = 256,
    send_timeout: float | None = DEFAULT_SEND_TIMEOUT,
    quirks: QuirksArg = None,
    websocket: WebSocketOptions | None = None,
    session: SessionOptions | None = None,
    **session_options: Any,
) -> AsyncIterator[Session]:
    """Connect as charging station *identity* and run a session until the block ends.

    ::

        async with ocpprpc.connect("ws://csms.example/ocpp", "CP001", protocols=["ocpp1.6"]) as station:
            answer = await station.call("Heartbeat", {})

    :param url: the CSMS endpoint without the identity (``ws://`` or ``wss://``).
    :param identity: the station identity, appended to the path percent-encoded.
    :param protocols: OCPP versions to offer, most preferred first; the one the
        CSMS picked is :attr:`Session.protocol`.
    :param password: Basic-auth password (security profiles 1 and 2).
    :param ssl_context: TLS settings for ``wss://`` (profile 3: load the client
        certificate into it; :func:`client_ssl_context` makes one).
    :param headers: extra HTTP headers for the upgrade request.
    :param query: extra query parameters.
    :param connect_timeout: bound on TCP connect, TLS and the upgrade.
    :param compression: ask for permessage-deflate.
    :param max_message_size: largest message accepted from the CSMS.
    :param close_timeout: bound on the WebSocket close handshake.
    :param ws_codec: the WebSocket frame codec, ``"websockets"`` or ``"wsproto"``;
        default ``"auto"``: websockets if installed (docs: "WebSocket codec").
    :param tcp_stream: the TCP byte stream, ``"asyncio"`` (ocpprpc's own, asyncio
        only), ``"socket"`` (raw socket, trio only) or ``"anyio"``; default
        ``"auto"``: the own one on asyncio, the raw one on trio (docs: "TCP byte stream").
    :param router: handlers for the CALLs the CSMS sends.
    :param validation: strict schema validation (see :class:`ValidationPolicy`):
        ``False`` (default), ``True``, or a policy.
    :param max_outstanding_calls: our CALLs awaiting an answer at once (OCPP: 1).
    :param detailed_errors: put handler exception text into ``InternalError``
        descriptions (off: it may leak internals to the peer).
    :param max_bad_messages: close with 1002 after this many malformed messages
        in a row (each is answered as OCPP-J says meanwhile); ``None``: never.
    :param keepalive: WebSocket pings to the CSMS (:class:`Keepalive`); a CSMS
        that stops answering is dropped (1006) and the session ends, as for a
        :class:`Station` (which also reconnects).  ``None`` (default): no pings.
    :param max_queued_calls: the CSMS's CALLs that may wait for a busy handler
        before the session stops reading (see :class:`Session`); ``None``: no bound.
    :param send_timeout: seconds the CSMS gets to take our bytes once more than
        64 KiB wait for it, before the link is dropped (1006, "peer stopped
        reading"); ``None``: no limit.
    :param quirks: vendor quirk profiles repairing the CSMS's non-conformant
        payloads before validation (docs: quirks).
    :param websocket: the transport settings as one :class:`WebSocketOptions`,
        instead of ``connect_timeout``, ``compression``, ``max_message_size``,
        ``close_timeout``, ``send_timeout``, ``ws_codec``, ``tcp_stream`` and
        ``keepalive`` (docs: options); setting one of those too is a ``TypeError``.
    :param session: the session settings as one :class:`SessionOptions`,
        instead of ``max_outstanding_calls``, ``detailed_errors``,
        ``max_bad_messages``, ``max_queued_calls`` and the settings among
        *session_options*; setting one of those too is a ``TypeError``.
    :param session_options: further :class:`Session` options (``call_timeout``,
        ``max_concurrent_handlers``, ``ordered_handlers``, ``on_message``, ...).

    Leaving the block closes the connection gracefully (1000); an exception
    leaving it closes with 1011 and is re-raised (a lone exception unwrapped
    from its group, as everywhere in ocpprpc).
    """
    check_protocols(protocols, validation)
    # Every setting is validated here, once, before any byte goes out.
    transport = merge_options(
        "connect",
        "websocket",
        websocket,
        WebSocketOptions(
            connect_timeout=connect_timeout,
            compression=compression,
            max_message_size=max_message_size,
            close_timeout=close_timeout,
            send_timeout=send_timeout,
            ws_codec=ws_codec,
            tcp_stream=tcp_stream,
            keepalive=keepalive,
        ),
    )
    settings, extras = split_session_extras(session_options)
    behaviour = merge_options(
        "connect",
        "session",
        session,
        SessionOptions(
            max_outstanding_calls=max_outstanding_calls,
            detailed_errors=detailed_errors,
            max_bad_messages=max_bad_messages,
            max_queued_calls=max_queued_calls,
            **settings,
        ),
    )
    stream = await open_websocket_with(
        url,
        identity,
        transport,
        protocols=protocols,
        password=password,
        ssl_context=ssl_context,
        headers=headers,
        query=query,
    )
    stream.send_timeout = transport.send_timeout
    try:
        station = station_session(
            stream,
            identity=identity,
            router=router,
            validation=validation,
            options=behaviour,
            quirks=quirks,
            **extras,
        )
    except BaseException:
        await anyio.aclose_forcefully(stream)
        raise
    log.info("connected to %s as %s, speaking %s", url, identity, station.protocol)
    if transport.keepalive is None:
        async with station:  # no keepalive context manager: it costs memory per connection
            yield station
    else:
        async with station, _keepalive(stream, transport.keepalive):
            yield station


def station_session(
    stream: WebSocketStream,
    *,
    identity: str,
    router: Router | None,
    validation: ValidationArg,
    options: SessionOptions,
    quirks: QuirksArg = None,
    **extras: Any,
) -> Session:
    """The session a charging station runs on an open WebSocket: :func:`connect` and
    :class:`~ocpprpc.Station` both build theirs here, so they take the same options.

    *options* configure the engine and the session; *extras* are the
    :class:`Session` keywords that are objects rather than settings
    (``on_message``, ``middleware``, ``data``, a shared limiter, ...).
    """
    protocol = stream.subprotocol
    assert protocol is not None  # open_websocket refuses a server that picks none
    connection, parts = session_parts(
        Role.CHARGING_STATION,
        protocol,
        validation,
        max_outstanding_calls=options.max_outstanding_calls,
        detailed_errors=options.detailed_errors,
        max_bad_messages=options.max_bad_messages,
        quirks=quirks,
        identity=identity,
    )
    extras.setdefault("max_concurrent_handlers", options.max_concurrent_handlers)
    return Session(
        stream,
        connection,
        router=router,
        identity=identity,
        call_timeout=options.call_timeout,
        ordered_handlers=options.ordered_handlers,
        max_queued_calls=options.max_queued_calls,
        max_queued_bytes=options.max_queued_bytes,
        **parts,
        **extras,
    )
