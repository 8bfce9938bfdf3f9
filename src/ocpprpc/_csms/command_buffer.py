"""The command buffer: commands for stations that are away, sent once they are back and booted.

Opt-in: ``Server(command_buffer=CommandBuffer(...))``, then
``send_to_client(identity, request, queue=True)`` (waits for the answer, raises
like ``call()``) or ``try_send_to_client(..., queue=True, wait=False)`` (returns
at once, status ``QUEUED``, with a :class:`QueuedCommand` to await or cancel).

When a station is ready
-----------------------
A buffered command is sent when its station is *ready*: connected to this
process, and the latest BootNotification of it the CSMS knows of was answered
``Accepted``.  That is a BootNotification accepted on this connection or, for a
station that reconnects without booting (one that only lost its link does not
boot again, OCPP 2.0.1 B01), a boot accepted before: seen by this buffer, in
the boot gate's ``boot_registry``, or in the station registry (whose SQLite
store keeps it across a CSMS restart).  A station that boots again and is
answered Pending or Rejected is not ready until a boot of it is accepted.  The
buffer learns this through the server's existing hooks: the security-event
hub's StationConnected and StationDisconnected, and the station observer
middleware that sees BootNotification answered (:mod:`.station_services`).

Guarantees
----------
* Per station, commands leave in the order they were buffered, one at a time:
  the next is sent once the previous one is answered (or failed).
* Each command is sent at most once (OCPP commands such as Reset are not
  idempotent).  A command whose connection is lost while it awaits its answer
  ends ``CONNECTION_LOST``; it is not sent again.  Only a command that was not
  written at all (the station left just before) goes back to the front.
* Bounded: at most ``max_per_station`` commands per station and ``max_total``
  in all; one more ends ``BUFFER_FULL`` at once.
* Every command has a deadline (``default_deadline`` seconds unless given):
  if it is still buffered then, it ends ``EXPIRED`` and is never sent.
* A waiting caller that is cancelled takes its command out of the buffer (if
  it was not sent yet).

The commands go through the server's :class:`~ocpprpc._csms.delivery.Delivery`,
so a clustered delivery takes them over without a change here.  The buffer
runs in :meth:`CommandBuffer.run` (``Server.serve`` starts it).
"""

from __future__ import annotations

import enum
import heapq
import logging
import math
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import anyio
import anyio.abc

from .delivery import Delivery, SendOutcome, SendStatus, StationNotConnected, try_send

__all__ = [
    "CommandBuffer",
    "CommandBufferFull",
    "CommandCancelled",
    "CommandExpired",
    "CommandState",
    "QueuedCommand",
]

log = logging.getLogger("ocpprpc.server")


class CommandExpired(StationNotConnected):
    """A buffered command's deadline passed before its station was back and booted."""

    def __init__(self, identity: str) -> None:
        LookupError.__init__(
            self, f"station {identity!r} was not back and booted before the command's deadline"
        )
        self.identity = identity


class CommandBufferFull(StationNotConnected):
    """The command buffer holds as many commands as it may (for the station, or in all)."""

    def __init__(self, identity: str, reason: str) -> None:
        LookupError.__init__(self, f"station {identity!r} is not connected and {reason}")
        self.identity = identity


class CommandCancelled(Exception):
    """A buffered command was cancelled before it was sent (or the buffer stopped)."""


class CommandState(enum.StrEnum):
    """Where a buffered command is."""

    QUEUED = "queued"
    #: Written to the station (or about to be); its answer is awaited.
    SENDING = "sending"
    DONE = "done"


class QueuedCommand:
    """One command in the buffer: await its outcome, or cancel it while it waits.

    :attr:`id` names it (``buffer.get(id)``, ``buffer.cancel(id)``), so a caller
    that returned at once (``wait=False``) can keep the id instead of the object.
    """

    __slots__ = (
        "_buffer",
        "_done",
        "_raised",
        "deadline",
        "id",
        "identity",
        "outcome",
        "payload",
        "request",
        "state",
        "timeout",
    )

    def __init__(
        self,
        buffer: CommandBuffer,
        identity: str,
        request: Any,
        payload: Any,
        timeout: float | None,
        deadline: float,
    ) -> None:
        self._buffer = buffer
        self.id = uuid.uuid4().hex
        self.identity = identity
        self.request = request
        self.payload = payload
        self.timeout = timeout
        #: When it expires if still buffered (:func:`anyio.current_time`).
        self.deadline = deadline
        self.state = CommandState.QUEUED
        #: How it ended; ``None`` until it did.
        self.outcome: SendOutcome | None = None
        self._raised: BaseException | None = None
        self._done: anyio.Event | None = None

    @property
    def action(self) -> str:
        """The OCPP action of the command."""
        return _action(self.request)

    @property
    def done(self) -> bool:
        return self.state is CommandState.DONE

    async def wait(self) -> SendOutcome:
        """The outcome, once there is one (as ``try_send_to_client`` would return it).

        Raises what ``try_send_to_client`` would have raised (a bug, such as a
        request the middleware dropped), not an outcome.
        """
        if self.state is not CommandState.DONE:
            if self._done is None:
                self._done = anyio.Event()
            await self._done.wait()
        if self._raised is not None:
            raise self._raised
        assert self.outcome is not None
        return self.outcome

    def cancel(self) -> bool:
        """Take the command out of the buffer; ``False`` if it was already sent (or done)."""
        return self._buffer._cancel(self)

    def _finish(self, outcome: SendOutcome | None, raised: BaseException | None = None) -> None:
        self.state = CommandState.DONE
        self.outcome = outcome
        self._raised = raised
        if self._done is not None:
            self._done.set()

    def __repr__(self) -> str:
        return f"<QueuedCommand {self.id[:8]} {self.action} for {self.identity!r} {self.state.value}>"


class CommandBuffer:
    """Commands for stations that are not ready yet, bounded, each with a deadline.

    ::

        server = ocpprpc.Server(command_buffer=ocpprpc.CommandBuffer(default_deadline=600))
        ...
        outcome = await server.try_send_to_client("CP1", "Reset", {"type": "Soft"}, queue=True, wait=False)
        if outcome.status is ocpprpc.SendStatus.QUEUED:
            later = await outcome.command.wait()

    :param max_per_station: commands buffered for one station at most.
    :param max_total: commands buffered for all stations together at most.
    :param default_deadline: seconds a command may wait for its station unless
        the caller gives a ``deadline``.
    :param remember_boots: stations whose last boot answer the buffer remembers
        (the least recently booted is forgotten first); a forgotten one falls
        back on the boot registry and the station registry.
    """

    def __init__(
        self,
        *,
        max_per_station: int = 100,
        max_total: int = 10_000,
        default_deadline: float = 3600.0,
        remember_boots: int = 100_000,
    ) -> None:
        for name, value in (
            ("max_per_station", max_per_station),
            ("max_total", max_total),
            ("remember_boots", remember_boots),
        ):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value!r}")
        if not default_deadline > 0:
            raise ValueError(f"default_deadline must be positive, got {default_deadline!r}")
        self.max_per_station = max_per_station
        self.max_total = max_total
        self.default_deadline = default_deadline
        self.remember_boots = remember_boots
        self._delivery: Callable[[], Delivery] | None = None
        self._booted_elsewhere: Callable[[str], bool] = lambda identity: False
        self._queues: dict[str, deque[QueuedCommand]] = {}
        self._by_id: dict[str, QueuedCommand] = {}
        self._total = 0
        # (deadline, sequence, command): the buffered commands by deadline; done ones are skipped.
        self._deadlines: list[tuple[float, int, QueuedCommand]] = []
        self._sequence = 0
        self._connected: set[str] = set()
        # identity -> the number of its latest connection (counting every connection of every station)
        self._connections: dict[str, int] = {}
        self._epoch = 0
        self._ready: set[str] = set()
        self._flushing: set[str] = set()
        self._boots: OrderedDict[str, bool] = OrderedDict()
        self._task_group: anyio.abc.TaskGroup | None = None
        self._wakeup: anyio.Event | None = None

    # -- what the server wires -----------------------------------------------------------------

    def bind(self, delivery: Callable[[], Delivery], booted_elsewhere: Callable[[str], bool]) -> None:
        """Attach the buffer to one server: where commands go, and what else knows of boots."""
        if self._delivery is not None:
            raise ValueError("this CommandBuffer already belongs to a server")
        self._delivery = delivery
        self._booted_elsewhere = booted_elsewhere

    @property
    def running(self) -> bool:
        """Whether :meth:`run` runs (buffered commands can be sent and expire)."""
        return self._task_group is not None

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Send the buffered commands and expire them, until cancelled.

        ``Server.serve`` runs it; an application embedding the server with
        :meth:`~ocpprpc.Server.handle` runs ``server.run_services`` instead.
        When it stops, every command still buffered ends ``CANCELLED``.
        """
        if self._delivery is None:
            raise RuntimeError("a CommandBuffer runs inside a server: Server(command_buffer=...)")
        if self.running:
            raise RuntimeError("CommandBuffer.run() is already running")
        try:
            async with anyio.create_task_group() as group:
                self._task_group = group
                task_status.started()
                while True:
                    self._expire(anyio.current_time())
                    self._wakeup = anyio.Event()
                    with anyio.move_on_at(self._deadlines[0][0] if self._deadlines else math.inf):
                        await self._wakeup.wait()
        finally:
            self._task_group = None
            self._wakeup = None
            self._ready.clear()
            self._connected.clear()
            self._connections.clear()
            for command in list(self._by_id.values()):
                self._drop(command, SendStatus.CANCELLED, CommandCancelled("the command buffer stopped"))

    # -- station state, as the server observes it ------------------------------------------------

    def station_connected(self, identity: str) -> None:
        """*identity* connected: ready at once if a boot of it was accepted before."""
        self._connected.add(identity)
        self._epoch += 1
        self._connections[identity] = self._epoch
        booted = self._boots.get(identity)
        if booted is None:
            booted = self._booted_elsewhere(identity)
        if booted:
            self._ready.add(identity)
            self._kick(identity)
        else:
            self._ready.discard(identity)

    def station_booted(self, identity: str, accepted: bool) -> None:
        """*identity*'s BootNotification was answered (``Accepted`` or not)."""
        self._boots[identity] = accepted
        self._boots.move_to_end(identity)
        while len(self._boots) > self.remember_boots:
            self._boots.popitem(last=False)
        if identity not in self._connected:
            return
        if accepted:
            self._ready.add(identity)
            self._kick(identity)
        else:
            self._ready.discard(identity)

    def station_disconnected(self, identity: str) -> None:
        """*identity* has no connection left here."""
        self._connected.discard(identity)
        self._connections.pop(identity, None)
        self._ready.discard(identity)

    def is_ready(self, identity: str) -> bool:
        """Whether buffered commands for *identity* would be sent now."""
        return identity in self._ready

    # -- reading -------------------------------------------------------------------------------

    def pending(self, identity: str | None = None) -> list[QueuedCommand]:
        """The commands still buffered (for *identity*, or all), in the order they will leave."""
        if identity is not None:
            return list(self._queues.get(identity, ()))
        return [command for queue in self._queues.values() for command in queue]

    def get(self, command_id: str) -> QueuedCommand | None:
        """A command buffered or being sent, by its :attr:`~QueuedCommand.id`."""
        return self._by_id.get(command_id)

    def cancel(self, command_id: str) -> bool:
        """Cancel a buffered command by id; ``False`` if it is unknown, sent or done."""
        command = self._by_id.get(command_id)
        return command is not None and command.cancel()

    def __len__(self) -> int:
        """How many commands are buffered (not counting those being sent)."""
        return self._total

    # -- sending -------------------------------------------------------------------------------

    def enqueue(
        self,
        identity: str,
        request: Any,
        payload: Any = None,
        *,
        timeout: float | None = None,
        deadline: float | None = None,
    ) -> SendOutcome:
        """Buffer a command: ``QUEUED`` with its :class:`QueuedCommand`, or ``BUFFER_FULL``.

        *deadline*: seconds it may wait for its station (default
        ``default_deadline``); *timeout* bounds the answer once it is sent.
        """
        if not self.running:
            raise RuntimeError(
                "the command buffer is not running: Server.serve() runs it "
                "(embedding with Server.handle(): run server.run_services)"
            )
        wait = self.default_deadline if deadline is None else deadline
        if not wait > 0:
            raise ValueError(f"deadline must be positive, got {deadline!r}")
        queue = self._queues.get(identity)
        queued = 0 if queue is None else len(queue)
        full = None
        if queued >= self.max_per_station:
            full = f"{queued} commands wait for it (max_per_station)"
        elif self._total >= self.max_total:
            full = f"the command buffer is full ({self._total} commands, max_total)"
        if full is not None:
            log.warning("command %s for station %r not buffered: %s", _action(request), identity, full)
            return SendOutcome(identity, SendStatus.BUFFER_FULL, error=CommandBufferFull(identity, full))
        command = QueuedCommand(self, identity, request, payload, timeout, anyio.current_time() + wait)
        self._queues.setdefault(identity, deque()).append(command)
        self._by_id[command.id] = command
        self._total += 1
        self._sequence += 1
        if len(self._deadlines) > 2 * len(self._by_id) + 64:
            # Commands sent or cancelled leave their entries behind: drop them now and then.
            self._deadlines = [entry for entry in self._deadlines if entry[2].state is CommandState.QUEUED]
            heapq.heapify(self._deadlines)
        heapq.heappush(self._deadlines, (command.deadline, self._sequence, command))
        if self._wakeup is not None and self._deadlines[0][2] is command:
            self._wakeup.set()  # an earlier deadline than the loop sleeps for
        self._kick(identity)
        return SendOutcome(identity, SendStatus.QUEUED, command=command)

    async def try_send(
        self,
        identity: str,
        request: Any,
        payload: Any = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 (bounds the answer once sent)
        deadline: float | None = None,
        wait: bool = True,
    ) -> SendOutcome:
        """Buffer a command and (with *wait*) return its outcome once it is answered or expired.

        Cancelling the caller takes the command out of the buffer if it was not sent.
        """
        queued = self.enqueue(identity, request, payload, timeout=timeout, deadline=deadline)
        command = queued.command
        if not wait or command is None:
            return queued
        try:
            return await command.wait()
        finally:
            if not command.done:
                command.cancel()

    async def send(
        self,
        identity: str,
        request: Any,
        payload: Any = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 (bounds the answer once sent)
        deadline: float | None = None,
    ) -> Any:
        """Buffer a command, wait for its answer and return it; raise like ``call()``.

        Besides what ``call()`` raises: :class:`CommandExpired` (deadline),
        :class:`CommandBufferFull`, :class:`CommandCancelled`.
        """
        outcome = await self.try_send(identity, request, payload, timeout=timeout, deadline=deadline)
        if outcome.status is SendStatus.OK:
            return outcome.result
        assert outcome.error is not None
        raise outcome.error

    # -- internals -----------------------------------------------------------------------------

    def _kick(self, identity: str) -> None:
        """Start sending *identity*'s commands if it is ready and nobody sends them yet."""
        if (
            identity in self._ready
            and identity in self._queues
            and identity not in self._flushing
            and self._task_group is not None
        ):
            self._flushing.add(identity)
            self._task_group.start_soon(self._flush, identity, name=f"ocpprpc command buffer {identity}")

    async def _flush(self, identity: str) -> None:
        """Send *identity*'s commands one at a time, in order, while it stays ready."""
        assert self._delivery is not None
        try:
            while identity in self._ready:
                queue = self._queues.get(identity)
                if not queue:
                    return
                command = queue.popleft()
                if not queue:
                    del self._queues[identity]
                self._total -= 1
                command.state = CommandState.SENDING
                connection = self._connections.get(identity)
                try:
                    outcome = await try_send(
                        self._delivery(), identity, command.request, command.payload, command.timeout
                    )
                except Exception as exc:  # not an outcome: what try_send_to_client would raise
                    log.error("buffered %s for station %r failed: %r", command.action, identity, exc)
                    del self._by_id[command.id]
                    command._finish(None, exc)
                    continue
                # (Cancelled while sending: run() ends it CANCELLED, being in _by_id still.)
                if outcome.status is SendStatus.NOT_CONNECTED:
                    # Never written: it keeps its place, at the front, until the station is back.
                    command.state = CommandState.QUEUED
                    self._queues.setdefault(identity, deque()).appendleft(command)
                    self._total += 1
                    self._ready.discard(identity)
                    return
                if (
                    outcome.status is SendStatus.CONNECTION_LOST
                    and self._connections.get(identity) == connection
                ):
                    # That connection is gone (whatever the hub says yet): the rest waits for the next.
                    self._ready.discard(identity)
                del self._by_id[command.id]
                command._finish(replace(outcome, command=command))
        finally:
            self._flushing.discard(identity)

    def _expire(self, now: float) -> None:
        while self._deadlines and self._deadlines[0][0] <= now:
            _, _, command = heapq.heappop(self._deadlines)
            if command.state is CommandState.QUEUED:
                log.info("buffered %s for station %r expired unsent", command.action, command.identity)
                self._drop(command, SendStatus.EXPIRED, CommandExpired(command.identity))

    def _cancel(self, command: QueuedCommand) -> bool:
        if command.state is not CommandState.QUEUED or command._buffer is not self:
            return False
        self._drop(command, SendStatus.CANCELLED, CommandCancelled("cancelled before it was sent"))
        return True

    def _drop(self, command: QueuedCommand, status: SendStatus, error: BaseException) -> None:
        """End a command that was not sent (or whose sending the buffer stopped)."""
        if command.state is CommandState.QUEUED:
            queue = self._queues[command.identity]
            queue.remove(command)
            if not queue:
                del self._queues[command.identity]
            self._total -= 1
        self._by_id.pop(command.id, None)
        command._finish(SendOutcome(command.identity, status, error=error, command=command))

    def __repr__(self) -> str:
        return f"<CommandBuffer commands={self._total} stations={len(self._queues)}>"


def _action(request: Any) -> str:
    return (
        request
        if isinstance(request, str)
        else str(getattr(request, "__ocpp_action__", type(request).__name__))
    )
