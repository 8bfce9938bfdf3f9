"""Commanding stations from a :class:`~ocpprpc.Server`: call one, try one, broadcast to many.

Every command goes through the server's :class:`~ocpprpc.Delivery` (this
process's sessions, or the cluster's), or through its command buffer when the
caller asks to queue for a station that is away.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import anyio
import anyio.abc

from .command_buffer import CommandBuffer
from .delivery import SendOutcome, broadcast, try_send
from .server_base import _ServerBase


class _Commanding(_ServerBase):
    """The commanding half of a :class:`~ocpprpc.Server`: its calls to stations."""

    async def send_to_client(
        self,
        identity: str,
        request: Any,
        payload: Any = None,
        /,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 (bounds the answer, like call())
        queue: bool = False,
        deadline: float | None = None,
    ) -> Any:
        """Call the station *identity* wherever it is connected; return its answer.

        ``request`` is a typed request (``v16.ResetRequest(...)``) or an action name
        with *payload*, as for :meth:`Session.call`; it raises what ``call()``
        raises, and :class:`~ocpprpc.StationNotConnected` when no session has that
        identity.  *timeout*: ``None`` uses the session's call timeout.

        *queue* (needs ``command_buffer``): go through the command buffer, so a
        station that is away gets the command once it is back and booted; the
        await lasts until it answered, or raises :class:`~ocpprpc.CommandExpired`
        after *deadline* seconds (default: the buffer's ``default_deadline``).
        """
        if queue:
            return await self._buffer().send(identity, request, payload, timeout=timeout, deadline=deadline)
        return await self.delivery.call(identity, request, payload, timeout)

    async def try_send_to_client(
        self,
        identity: str,
        request: Any,
        payload: Any = None,
        /,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 (bounds the answer, like call())
        queue: bool = False,
        deadline: float | None = None,
        wait: bool = True,
    ) -> SendOutcome:
        """Like :meth:`send_to_client`, but every outcome is returned as a :class:`~ocpprpc.SendOutcome`.

        With *queue*, ``wait=False`` returns at once: ``QUEUED`` with
        ``outcome.command`` (a :class:`~ocpprpc.QueuedCommand` to await or
        cancel), or ``BUFFER_FULL``.
        """
        if queue:
            return await self._buffer().try_send(
                identity, request, payload, timeout=timeout, deadline=deadline, wait=wait
            )
        if not wait:
            raise ValueError("wait=False needs queue=True (a command buffer)")
        return await try_send(self.delivery, identity, request, payload, timeout)

    def _buffer(self) -> CommandBuffer:
        if self.command_buffer is None:
            raise RuntimeError("queue=True needs a command buffer: Server(command_buffer=CommandBuffer())")
        return self.command_buffer

    async def run_services(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the registry, command buffer and session-state wiring until cancelled.

        :meth:`serve` runs it; an application that only calls :meth:`handle`
        starts it in its task group (``await group.start(server.run_services)``),
        with ``security_events.run``.  Returns at once if none is configured.
        """
        if self._services is None:
            task_status.started()
            return
        await self._services.run(task_status=task_status)

    async def broadcast(
        self,
        identities: Iterable[str],
        request: Any,
        payload: Any = None,
        /,
        *,
        concurrency: int = 32,
        timeout: float | None = None,  # noqa: ASYNC109 (bounds each answer, like call())
    ) -> dict[str, SendOutcome]:
        """Call every station in *identities*, at most *concurrency* at once; one outcome each.

        Returns ``{identity: SendOutcome}`` in the order given (duplicates once).
        Cancelling the caller cancels every call still in flight.
        """
        return await broadcast(
            self.delivery, identities, request, payload, concurrency=concurrency, timeout=timeout
        )
