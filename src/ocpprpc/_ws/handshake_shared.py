"""What both sides of the WebSocket opening handshake share (:mod:`ocpprpc._ws.handshake`).

The frame codec chosen for a connection once its handshake is done, the subprotocol choice,
and the header argument.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

from wsproto.connection import Connection, ConnectionType
from wsproto.extensions import Extension
from wsproto.handshake import H11Handshake

from .frame_codec import FrameCodec, deflate_params
from .wsproto_codec import WebSocketCodec, WsprotoCodec

__all__ = [
    "DEFAULT_WS_CODEC",
    "HeadersArg",
    "ResolvedCodec",
    "WsCodecName",
    "resolve_ws_codec",
    "select_subprotocol",
]


HeadersArg = Mapping[str, str] | Iterable[tuple[str, str]] | None

#: Which frame codec runs the connection after the handshake (docs/client-server.rst,
#: "WebSocket codec"): ``"ocpprpc"`` (our own, :mod:`.frame_codec`), ``"websockets"``
#: (websockets' sans-IO protocol), ``"wsproto"`` (the reference), or ``"auto"``.
WsCodecName = Literal["auto", "ocpprpc", "websockets", "wsproto"]
#: A codec name once ``"auto"`` is resolved.
ResolvedCodec = Literal["ocpprpc", "websockets", "wsproto"]
#: ``"auto"``, which picks ``"ocpprpc"``: per message it costs 0.2-0.4x of websockets' codec
#: (0.7-0.8x with permessage-deflate) and needs no other package (bench/README.md, "WebSocket codec").
DEFAULT_WS_CODEC: WsCodecName = "auto"


def resolve_ws_codec(name: str | None = None) -> ResolvedCodec:
    """The codec ``name`` stands for on this installation (``None``: :data:`DEFAULT_WS_CODEC`).

    :raises ValueError: an unknown name.
    :raises ImportError: ``"websockets"`` asked for but not importable.
    """
    if name is None:
        name = DEFAULT_WS_CODEC
    if name == "auto" or name == "ocpprpc":
        return "ocpprpc"
    if name == "wsproto":
        return "wsproto"
    if name != "websockets":
        raise ValueError(
            f"unknown WebSocket codec {name!r}: use 'auto', 'ocpprpc', 'websockets' or 'wsproto'"
        )
    try:
        from . import websockets_codec as _websockets_codec  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"ws_codec='websockets' needs the websockets package: {exc}") from exc
    return "websockets"


def _make_codec(
    name: ResolvedCodec,
    handshake: H11Handshake,
    extensions: Sequence[Extension],
    *,
    client: bool,
    max_message_size: int,
) -> WebSocketCodec:
    """The frame codec for a connection whose opening handshake ``handshake`` just completed."""
    connection = handshake.connection
    assert connection is not None
    # Frames that arrived in the same read as the end of the handshake.  A client's
    # wsproto connection already has them; a server's does not (wsproto drops what a
    # station sends right behind its request).  h11's ``trailing_data`` is public;
    # reaching it through wsproto is not (wsproto is pinned below 2 for this and the
    # bounded inflater).
    trailing: bytes = handshake._h11_connection.trailing_data[0]
    if name == "wsproto":
        if not client and trailing:
            connection.receive_data(trailing)
        return WsprotoCodec(connection, max_message_size=max_message_size)
    if name == "ocpprpc":
        return FrameCodec(
            client=client,
            max_message_size=max_message_size,
            deflate=deflate_params(extensions, client=client),
            initial_data=trailing,
        )
    from .websockets_codec import WebsocketsCodec, websockets_extensions

    return WebsocketsCodec(
        client=client,
        max_message_size=max_message_size,
        extensions=websockets_extensions(extensions, client=client),
        initial_data=trailing,
    )


def _fresh_codec(
    name: ResolvedCodec, *, client: bool, max_message_size: int, trailing: bytes
) -> WebSocketCodec:
    """The frame codec for a connection opened without extensions and without wsproto's handshake
    state (:mod:`ocpprpc._ws.upgrade_fast`); ``trailing``: frames that came with the request."""
    if name == "wsproto":
        role = ConnectionType.CLIENT if client else ConnectionType.SERVER
        return WsprotoCodec(Connection(role, trailing_data=trailing), max_message_size=max_message_size)
    if name == "ocpprpc":
        return FrameCodec(client=client, max_message_size=max_message_size, initial_data=trailing)
    from .websockets_codec import WebsocketsCodec

    return WebsocketsCodec(
        client=client, max_message_size=max_message_size, extensions=[], initial_data=trailing
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
