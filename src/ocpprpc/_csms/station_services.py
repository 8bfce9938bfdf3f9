"""What a server keeps per station beyond a connection: registry, command buffer, session state.

One mechanism, many faces: all three observe the server through hooks it
already has, and nothing else.

* The security-event hub's :class:`StationConnected` and
  :class:`StationDisconnected` (a plain subscriber, run inline when the event
  is emitted) say who is connected: the session state is handed out and
  kept, the command buffer learns who is back, and the registry's
  ``connected``/``node`` are written (by :meth:`StationServices.run`, in the
  order they happened, coalesced per identity).
* :class:`StationObserver`, a message middleware (the outermost layer), sees
  BootNotification, StatusNotification, StartTransaction, StopTransaction,
  TransactionEvent and Heartbeat from the stations, with the answer the CSMS
  gave: the registry records them, and an accepted BootNotification tells the
  command buffer the station is ready.  No other message pays for it, and a
  server with neither a registry nor a command buffer has no such layer.

A station connected twice at once (a reconnect that evicts the old link)
counts as connected until both connections ended.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any, Final

import anyio
import anyio.abc
import msgspec

from .._engine.errors import OCPPError
from .._ops.registry import MemoryRegistryStore, StationRegistry
from .._rpc.middleware import CallNext, MessageContext
from .._rpc.session import Session
from .command_buffer import CommandBuffer
from .security_events import SecurityEvent, SecurityEvents, StationConnected, StationDisconnected
from .session_state import SessionStates

__all__ = ["StationObserver", "StationServices", "default_node", "station_services"]

log = logging.getLogger("ocpprpc.server")

#: The stations' CALLs the registry (and, for the boot, the command buffer) learn from.
OBSERVED: Final = frozenset(
    {
        "BootNotification",
        "StatusNotification",
        "StartTransaction",
        "StopTransaction",
        "TransactionEvent",
        "Heartbeat",
    }
)


def default_node() -> str:
    """This process, as the registry names the node a station is connected to."""
    return f"{socket.gethostname()}:{os.getpid()}"


class StationObserver:
    """The middleware that feeds the registry and the command buffer from the stations' CALLs."""

    def __init__(self, registry: StationRegistry | None, buffer: CommandBuffer | None) -> None:
        self.registry = registry
        self.buffer = buffer
        #: The memory store writes without suspending: plain handlers may then stay in the
        #: session's reader (:func:`~ocpprpc.never_waits`); a store doing I/O (SQLite) waits.
        self.never_waits = registry is None or isinstance(registry.store, MemoryRegistryStore)

    async def __call__(self, ctx: MessageContext, call_next: CallNext, /) -> Any:
        if ctx.direction != "in" or ctx.kind != "call" or ctx.action not in OBSERVED:
            return await call_next(ctx)
        request = ctx.payload  # as the station sent it: inner layers may replace ctx.payload
        try:
            result = await call_next(ctx)
        except OCPPError:
            # Refused (the boot gate, a handler's verdict): a sign of life, and nothing it says.
            await self._observe(ctx, None, None)
            raise
        await self._observe(ctx, request, result)
        return result

    async def _observe(self, ctx: MessageContext, request: Any, result: Any) -> None:
        identity = ctx.identity
        if identity is None:
            return
        answer = result if isinstance(result, Mapping | msgspec.Struct) else None  # not NO_REPLY
        if self.registry is not None:
            await self.registry.observe_call(identity, ctx.protocol, ctx.action, request, answer)
        # Last, with no checkpoint after it: the station's boot answer is written before
        # the command buffer's task can write its first command.
        if ctx.action == "BootNotification" and self.buffer is not None and answer is not None:
            self.buffer.station_booted(identity, _status(answer) == "Accepted")

    def __repr__(self) -> str:
        return f"<StationObserver registry={self.registry!r} buffer={self.buffer!r}>"


class StationServices:
    """The registry, the command buffer and the session states of one server, wired to its hooks."""

    def __init__(
        self,
        *,
        hub: SecurityEvents,
        sessions: Callable[[], Mapping[str, Session]],
        registry: StationRegistry | None,
        buffer: CommandBuffer | None,
        states: SessionStates | None,
        boot_registry: MutableMapping[str, bool] | None,
        node: str,
    ) -> None:
        self.registry = registry
        self.buffer = buffer
        self.states = states
        self.node = node
        self._sessions = sessions
        self._boot_registry = boot_registry
        #: The message middleware, if anything needs the stations' messages.
        self.observer = (
            StationObserver(registry, buffer) if registry is not None or buffer is not None else None
        )
        # identity -> connections now (a reconnect that evicts overlaps the old one)
        self._live: dict[str, int] = {}
        # identity -> (protocol it connected with, or None; connected now): registry writes to make
        self._unwritten: dict[str, tuple[str | None, bool]] = {}
        self._wakeup: anyio.Event | None = None
        self._running = False
        hub.subscribe(self._on_event)

    @property
    def running(self) -> bool:
        return self._running

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Open the registry, run the command buffer, write connections, until cancelled."""
        if self._running:
            raise RuntimeError("the station services are already running")
        self._running = True
        try:
            if self.registry is not None:
                await self.registry.open()
            async with anyio.create_task_group() as group:
                if self.buffer is not None:
                    await group.start(self.buffer.run)
                task_status.started()
                if self.registry is None:
                    await anyio.sleep_forever()
                await self._write_connections()
        finally:
            self._running = False
            if self.registry is not None:
                with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                    await self._drain()  # the last disconnects of a shutdown
                    await self.registry.close()

    async def _write_connections(self) -> None:
        while True:
            await self._drain()
            self._wakeup = anyio.Event()
            await self._wakeup.wait()

    async def _drain(self) -> None:
        registry = self.registry
        assert registry is not None
        while self._unwritten:
            identity = next(iter(self._unwritten))
            protocol, connected = self._unwritten.pop(identity)
            try:
                if protocol is not None:
                    await registry.connected(identity, protocol, node=self.node)
                if not connected:
                    await registry.disconnected(identity)
            except Exception:
                log.exception("station registry: recording %r's connection failed", identity)

    def _on_event(self, event: SecurityEvent) -> None:
        """The hub's subscriber (inline, as the event is emitted)."""
        identity = event.identity
        if identity is None:
            return
        if isinstance(event, StationConnected):
            self._connected(identity, event.protocol)
        elif isinstance(event, StationDisconnected):
            self._disconnected(identity)

    def _connected(self, identity: str, protocol: str) -> None:
        session = self._sessions().get(identity)
        if session is None:
            # Not a session of this server (a hub shared with another one, an event made by hand):
            # the server registers the session before it says so.
            return
        self._live[identity] = self._live.get(identity, 0) + 1
        if self.states is not None:
            session.state = self.states.acquire(identity)
        if self.registry is not None:
            self._unwritten[identity] = (protocol, True)
            self._wake()
        if self.buffer is not None:
            self.buffer.station_connected(identity)

    def _disconnected(self, identity: str) -> None:
        if identity not in self._live:
            return
        if self.states is not None:
            self.states.release(identity)
        left = self._live[identity] - 1
        if left:
            self._live[identity] = left  # the connection that replaced it lives on
            return
        del self._live[identity]
        if self.registry is not None:
            protocol, _ = self._unwritten.get(identity, (None, False))
            self._unwritten[identity] = (protocol, False)
            self._wake()
        if self.buffer is not None:
            self.buffer.station_disconnected(identity)

    def _wake(self) -> None:
        """Tell :meth:`run` there are connections to write (if it runs yet)."""
        if self._wakeup is not None:
            self._wakeup.set()

    def booted_before(self, identity: str) -> bool:
        """Whether a boot of *identity* was accepted, per the boot registry or the station registry."""
        if self._boot_registry is not None and identity in self._boot_registry:
            return bool(self._boot_registry[identity])
        record = None if self.registry is None else self.registry.get(identity)
        return record is not None and record.boot is not None and record.boot.status == "Accepted"


def station_services(
    *,
    registry: StationRegistry | bool | None,
    command_buffer: CommandBuffer | None,
    session_state: SessionStates | bool | None,
    hub: SecurityEvents,
    sessions: Callable[[], Mapping[str, Session]],
    delivery: Callable[[], Any],
    boot_registry: MutableMapping[str, bool] | None,
) -> StationServices | None:
    """The services a server's options ask for (``None``: none, and nothing on any path)."""
    if registry is True:
        registry = StationRegistry(node=default_node())
    elif registry is False:
        registry = None
    if session_state is True:
        session_state = SessionStates()
    elif session_state is False:
        session_state = None
    for name, value, kind in (
        ("registry", registry, StationRegistry),
        ("command_buffer", command_buffer, CommandBuffer),
        ("session_state", session_state, SessionStates),
    ):
        if value is not None and not isinstance(value, kind):
            raise TypeError(f"{name} must be a {kind.__name__} (or True/None), not {value!r}")
    if registry is None and command_buffer is None and session_state is None:
        return None
    services = StationServices(
        hub=hub,
        sessions=sessions,
        registry=registry,
        buffer=command_buffer,
        states=session_state,
        boot_registry=boot_registry,
        node=(registry.node if registry is not None else None) or default_node(),
    )
    if command_buffer is not None:
        command_buffer.bind(delivery, services.booted_before)
    return services


def _status(answer: Any) -> str | None:
    if isinstance(answer, msgspec.Struct):
        answer = msgspec.to_builtins(answer)
    status = answer.get("status") if isinstance(answer, Mapping) else None
    return status if isinstance(status, str) else None
