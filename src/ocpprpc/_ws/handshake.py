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

Each side has its module (:mod:`~ocpprpc._ws.server_handshake`,
:mod:`~ocpprpc._ws.client_handshake`), and what they share is in
:mod:`~ocpprpc._ws.handshake_shared`; this module gathers them under the one
import path the rest of the package, the tests and the fuzzers use.
(``DEFAULT_WS_CODEC`` is read where :func:`resolve_ws_codec` lives: a test that
changes it patches :mod:`~ocpprpc._ws.handshake_shared`.)
"""

from __future__ import annotations

from .client_handshake import DEFAULT_CONNECT_TIMEOUT, open_websocket, open_websocket_with
from .handshake_shared import (
    DEFAULT_WS_CODEC,
    HeadersArg,
    WsCodecName,
    resolve_ws_codec,
    select_subprotocol,
)
from .handshake_shared import _make_codec as _make_codec  # the codec tests build one by hand
from .server_handshake import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    MAX_IDENTITY_LENGTH,
    IdentityCheck,
    StationRequest,
    accept_websocket,
    check_identity,
)

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_WS_CODEC",
    "HeadersArg",
    "MAX_IDENTITY_LENGTH",
    "StationRequest",
    "IdentityCheck",
    "WsCodecName",
    "accept_websocket",
    "check_identity",
    "open_websocket",
    "open_websocket_with",
    "resolve_ws_codec",
    "select_subprotocol",
]
