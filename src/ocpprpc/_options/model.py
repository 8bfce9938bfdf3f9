"""The option groups: every plain setting of a connection, in three frozen objects.

:func:`~ocpprpc.connect`, :class:`~ocpprpc.Station` and :class:`~ocpprpc.Server`
take these settings as keyword arguments (the friendly front door) or as one
object per group (``websocket=``, ``session=``, ``csms=``); either way they
build the objects here once, at setup, and pass the objects down.  A setting
is validated once, in ``__post_init__``, whichever door it came through.

Only plain values live here (numbers, flags, names, :class:`Keepalive`): the
objects with behaviour that a connection also takes (a router, a validation
policy, quirk profiles, middleware, an admission policy, rate limits) belong
to the parts that define them, and this part imports no other.
:func:`~ocpprpc._options.table.option_table` lists both kinds.

Each field carries its documentation and whether a running server may change
it (``live``: it applies to the connections accepted, or calls made, from then
on) in its metadata.
"""

# ruff: noqa: RUF009  (every field is made by _option(), a documented dataclasses.field)
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal, get_args

from .policies import Keepalive

__all__ = [
    "CsmsOptions",
    "DuplicateName",
    "SessionOptions",
    "TcpStreamName",
    "WebSocketOptions",
    "WsCodecName",
]

# The same literals as ocpprpc._ws (which this part may not import); tests/options
# checks that the two stay equal.
WsCodecName = Literal["auto", "ocpprpc", "websockets", "wsproto"]
TcpStreamName = Literal["auto", "asyncio", "anyio", "socket"]
DuplicateName = Literal["evict", "refuse"]

_WS_CODECS: tuple[str, ...] = get_args(WsCodecName)
_TCP_STREAMS: tuple[str, ...] = get_args(TcpStreamName)
_DUPLICATES: tuple[str, ...] = get_args(DuplicateName)


def _option(default: Any, doc: str, *, live: bool) -> Any:
    """A dataclass field whose metadata documents it (read by ``option_table()``)."""
    return field(default=default, metadata={"doc": doc, "live": live})


def _at_least_one(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"{name} must be at least 1 (or None for no bound), got {value!r}")


def _positive(name: str, value: int) -> None:
    if value < 1:
        raise ValueError(f"{name} must be positive, got {value!r}")


def _not_negative(name: str, value: float | None) -> None:
    if value is not None and value < 0:
        raise ValueError(f"{name} must not be negative, got {value!r}")


def _one_of(name: str, what: str, value: str | None, allowed: tuple[str, ...]) -> None:
    if value is not None and value not in allowed:
        raise ValueError(f"unknown {what} {value!r} for {name}: use {', '.join(map(repr, allowed))}")


@dataclass(frozen=True, slots=True)
class WebSocketOptions:
    """How a WebSocket connection is opened, framed, kept alive and closed (station and CSMS)."""

    connect_timeout: float = _option(
        10.0, "Station: bound on TCP connect, TLS and the HTTP upgrade together (seconds).", live=True
    )
    compression: bool | None = _option(
        None,
        "Offer (CSMS) or ask for (station) permessage-deflate.  ``None``: the side's default,"
        " off for a station, on for a CSMS (OCPP 2.x requires a CSMS to offer it).",
        live=True,
    )
    max_message_size: int = _option(
        64 * 1024, "Largest message accepted from the peer, in bytes (inflated).", live=True
    )
    close_timeout: float = _option(
        10.0, "Bound on the close handshake (and the default grace of a shutdown), seconds.", live=True
    )
    send_timeout: float | None = _option(
        60.0,
        "Seconds a peer that stopped reading gets once more than 64 KiB wait for it, before"
        " the link is dropped (1006); ``None``: no limit.",
        live=True,
    )
    ws_codec: WsCodecName | None = _option(
        None,
        "The frame codec, ``ocpprpc``, ``websockets`` or ``wsproto``; ``None``/``auto``: ``ocpprpc``.",
        live=False,
    )
    tcp_stream: TcpStreamName | None = _option(
        None,
        "The TCP byte stream, ``asyncio``, ``socket`` or ``anyio``; ``None``/``auto``: ocpprpc's"
        " own on asyncio, the raw-socket one on trio.  A CSMS's listener keeps the one it opened with.",
        live=False,
    )
    keepalive: Keepalive | None = _option(
        None, "WebSocket pings that find a dead peer (:class:`Keepalive`); ``None``: no pings.", live=True
    )

    def __post_init__(self) -> None:
        _not_negative("connect_timeout", self.connect_timeout)
        _positive("max_message_size", self.max_message_size)
        _not_negative("close_timeout", self.close_timeout)
        _not_negative("send_timeout", self.send_timeout)
        _one_of("ws_codec", "WebSocket codec", self.ws_codec, _WS_CODECS)
        _one_of("tcp_stream", "TCP stream", self.tcp_stream, _TCP_STREAMS)

    def compresses(self, *, server: bool) -> bool:
        """Whether this side offers permessage-deflate (``compression=None`` resolved)."""
        return server if self.compression is None else self.compression


@dataclass(frozen=True, slots=True)
class SessionOptions:
    """How one OCPP-J session calls, answers and bounds its peer (station and CSMS)."""

    call_timeout: float | None = _option(
        30.0,
        "Default seconds to wait for the answer to our CALL once written; ``None``: forever.",
        live=True,
    )
    max_outstanding_calls: int | None = _option(
        None, "Our CALLs awaiting an answer at once (OCPP: 1); ``None``: the engine's default.", live=True
    )
    detailed_errors: bool = _option(
        False,
        "Put handler exception text into ``InternalError`` descriptions (may leak internals).",
        live=True,
    )
    max_bad_messages: int | None = _option(
        None, "Close with 1002 after this many malformed messages in a row; ``None``: never.", live=True
    )
    max_queued_calls: int | None = _option(
        256,
        "Peer CALLs that may wait for a busy handler before the session stops reading; ``None``: no bound.",
        live=True,
    )
    max_queued_bytes: int | None = _option(
        256 * 1024, "The same bound in bytes of queued CALL text; ``None``: no bound.", live=True
    )
    max_concurrent_handlers: int = _option(
        16,
        "Inbound CALLs handled at once per session (more are queued, never refused).  A shared"
        " ``anyio.CapacityLimiter`` is an object, not a setting: pass it by keyword.",
        live=True,
    )
    ordered_handlers: bool = _option(
        False, "Handle inbound CALLs one at a time, in arrival order.", live=True
    )

    def __post_init__(self) -> None:
        _not_negative("call_timeout", self.call_timeout)
        _at_least_one("max_outstanding_calls", self.max_outstanding_calls)
        _at_least_one("max_bad_messages", self.max_bad_messages)
        _at_least_one("max_queued_calls", self.max_queued_calls)
        _at_least_one("max_queued_bytes", self.max_queued_bytes)
        _at_least_one("max_concurrent_handlers", self.max_concurrent_handlers)


@dataclass(frozen=True, slots=True)
class CsmsOptions:
    """How a CSMS admits stations and bounds them all together (the server only)."""

    handshake_timeout: float = _option(
        10.0,
        "One bound on TLS, the upgrade request and the ``auth`` callback together (slowloris guard).",
        live=True,
    )
    max_connections: int | None = _option(
        None, "Connections served at once, handshakes included; ``None``: no limit.", live=True
    )
    inbound_budget: int | None = _option(
        64 * 1024 * 1024,
        "Bytes of CALL text all stations together may hold queued or being handled; ``None``: no budget.",
        live=False,
    )
    duplicate: DuplicateName = _option(
        "evict",
        "An identity that connects again: ``evict`` closes the old connection, ``refuse`` answers 409.",
        live=True,
    )
    require_boot: bool = _option(
        False,
        "Refuse every CALL but BootNotification from a station whose boot was not accepted.",
        live=False,
    )

    def __post_init__(self) -> None:
        _not_negative("handshake_timeout", self.handshake_timeout)
        if self.max_connections is not None and self.max_connections < 1:
            # The message tests/csms asserts since max_connections was added.
            raise ValueError("max_connections must be at least 1 (or None: no limit)")
        _at_least_one("inbound_budget", self.inbound_budget)
        _one_of("duplicate", "duplicate policy", self.duplicate, _DUPLICATES)


#: Every option group, by the keyword that takes it whole.
GROUPS: dict[str, type[WebSocketOptions | SessionOptions | CsmsOptions]] = {
    "websocket": WebSocketOptions,
    "session": SessionOptions,
    "csms": CsmsOptions,
}


def field_names(group: type[WebSocketOptions | SessionOptions | CsmsOptions]) -> tuple[str, ...]:
    return tuple(f.name for f in fields(group))
