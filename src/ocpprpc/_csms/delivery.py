"""Commanding stations: the one way to reach a station by identity, and the seam clustering fills.

:meth:`Server.send_to_client <ocpprpc.Server.send_to_client>` calls one station and
raises like ``session.call()`` (plus :class:`StationNotConnected`);
:meth:`~ocpprpc.Server.try_send_to_client` never raises for the station's sake and
returns a :class:`SendOutcome`; :meth:`~ocpprpc.Server.broadcast` calls many with
bounded concurrency and one outcome each, and is cancelled as a whole by cancelling the
caller.

All three go through a :class:`Delivery`: where the station's session lives.  In one
process that is :class:`LocalDelivery` (the server's own sessions); the clustering
issue adds a delivery that reaches a station held by another process, and nothing
above this seam changes.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from .._engine.errors import OCPPError
from .._rpc.session import _DEFAULT, CallTimeout, InvalidResponseError, Session, _Default
from .._ws.transport import ConnectionLost
from ..cluster.adapter import ClusterError, NodeUnavailable

if TYPE_CHECKING:
    from .command_buffer import QueuedCommand

__all__ = ["Delivery", "LocalDelivery", "SendOutcome", "SendStatus", "StationNotConnected"]


class StationNotConnected(LookupError):
    """No session for that identity here (never connected, gone, or not yet admitted)."""

    def __init__(self, identity: str) -> None:
        super().__init__(f"station {identity!r} is not connected")
        self.identity = identity


class SendStatus(enum.StrEnum):
    """How one command to one station ended."""

    OK = "ok"
    #: The station answered a CALLERROR (``outcome.error`` is the :class:`~ocpprpc.OCPPError`).
    ERROR = "error"
    NOT_CONNECTED = "not_connected"
    TIMED_OUT = "timed_out"
    #: The connection ended while waiting: the station may or may not have acted.
    CONNECTION_LOST = "connection_lost"
    #: The station's answer failed validation (``outcome.error`` says why).
    INVALID_RESPONSE = "invalid_response"
    #: In the command buffer, to be sent once the station is back and booted
    #: (``outcome.command`` is the :class:`~ocpprpc.QueuedCommand` to await or cancel).
    QUEUED = "queued"
    #: Its deadline passed while it waited in the command buffer; it was never sent.
    EXPIRED = "expired"
    #: The command buffer was full (per station or in total); it was never queued.
    BUFFER_FULL = "buffer_full"
    #: Cancelled before it was sent (or the buffer stopped while it was in flight).
    CANCELLED = "cancelled"
    #: Clustering: the node holding the station is not alive, or died mid-call -- the outcome
    #: is unknown (``outcome.error`` is the :class:`~ocpprpc.NodeUnavailable`); never retried.
    NODE_UNAVAILABLE = "node_unavailable"
    #: Clustering: the cluster could not carry the call (Redis unreachable: nothing was sent;
    #: or the holding node could not make it); ``outcome.error`` is the :class:`~ocpprpc.ClusterError`.
    CLUSTER_ERROR = "cluster_error"


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """The result of one command to one station, whatever happened."""

    identity: str
    status: SendStatus
    #: The answer's payload when ``status`` is OK.
    result: Any = None
    #: What went wrong otherwise.
    error: BaseException | None = None
    #: The buffered command, for a command that went through the command buffer.
    command: QueuedCommand | None = None

    @property
    def ok(self) -> bool:
        return self.status is SendStatus.OK


#: Exceptions that are outcomes, not bugs: each becomes a status.
_STATUS_OF: tuple[tuple[type[BaseException], SendStatus], ...] = (
    (StationNotConnected, SendStatus.NOT_CONNECTED),
    (OCPPError, SendStatus.ERROR),
    (CallTimeout, SendStatus.TIMED_OUT),
    (ConnectionLost, SendStatus.CONNECTION_LOST),
    (InvalidResponseError, SendStatus.INVALID_RESPONSE),
    # A broadcast goes on past a dead node or a Redis outage: one outcome per station.
    (NodeUnavailable, SendStatus.NODE_UNAVAILABLE),
    (ClusterError, SendStatus.CLUSTER_ERROR),
)


class Delivery(Protocol):
    """Where a station's session lives: the seam between commanding and transport."""

    async def call(self, identity: str, request: Any, payload: Any, timeout: float | None) -> Any:  # noqa: ASYNC109 (bounds the answer, like call())
        """Call *identity*; raise :class:`StationNotConnected` if it is nowhere to be reached."""
        ...


class LocalDelivery:
    """The stations connected to this process (a server's ``clients``)."""

    def __init__(self, sessions: Callable[[], Mapping[str, Session]]) -> None:
        self._sessions = sessions

    async def call(self, identity: str, request: Any, payload: Any, timeout: float | None) -> Any:  # noqa: ASYNC109 (bounds the answer, like call())
        session = self._sessions().get(identity)
        if session is None:
            raise StationNotConnected(identity)
        # None: the session's own call timeout (what call() does when given none).
        bound: float | _Default = _DEFAULT if timeout is None else timeout
        if isinstance(request, str):
            return await session.call(request, payload, timeout=bound)
        return await session.call(request, timeout=bound)


async def try_send(
    delivery: Delivery,
    identity: str,
    request: Any,
    payload: Any,
    timeout: float | None,  # noqa: ASYNC109 (bounds the answer, like call())
) -> SendOutcome:
    """Call one station; every outcome a station can cause is returned, not raised."""
    try:
        result = await delivery.call(identity, request, payload, timeout)
    except Exception as exc:
        for kind, status in _STATUS_OF:
            if isinstance(exc, kind):
                return SendOutcome(identity, status, error=exc)
        raise
    return SendOutcome(identity, SendStatus.OK, result=result)


async def broadcast(
    delivery: Delivery,
    identities: Iterable[str],
    request: Any,
    payload: Any,
    *,
    concurrency: int,
    timeout: float | None,  # noqa: ASYNC109 (bounds each answer, like call())
) -> dict[str, SendOutcome]:
    """Call every station in *identities*, at most *concurrency* at a time; one outcome each."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    targets = list(dict.fromkeys(identities))  # each station once, in the order given
    outcomes: dict[str, SendOutcome] = {}
    pending = iter(targets)

    async def worker() -> None:
        # *concurrency* workers share one iterator: the task count stays bounded too.
        for identity in pending:
            outcomes[identity] = await try_send(delivery, identity, request, payload, timeout)

    async with anyio.create_task_group() as group:
        for _ in range(min(concurrency, len(targets))):
            group.start_soon(worker)
    return {identity: outcomes[identity] for identity in targets}
