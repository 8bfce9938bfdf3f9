"""Commanding stations held by other processes: the :class:`~.delivery.Delivery` over a cluster adapter.

``async with cluster_delivery(server, adapter):`` makes the server's
``send_to_client`` / ``try_send_to_client`` / ``broadcast`` reach every station of the
cluster: a station connected here is called directly; otherwise its presence names
the node holding it, the call goes to that node's inbox, that node calls its session
and replies to ours.  Presence follows the server's own connection events (the
security-event hub), so nothing in the server changes.  Where a station is, once read,
is reused for :data:`~.cluster_caller.ROUTE_TTL` (calls in a burst skip the lookup's round trip).

Cluster health (:class:`~.stats.ClusterStats`: envelopes sent, received, dropped; the inbox's
lag and pending entries) is sampled from the adapter every ``stats_interval`` seconds, so
``server.stats().cluster`` and ``/metrics`` read the last sample without a round trip.

Outcomes stay those of a local call (the answer, :class:`~ocpprpc.OCPPError`,
:class:`~ocpprpc.CallTimeout`, ``ConnectionLost``, :class:`StationNotConnected`), plus
:class:`~ocpprpc.cluster.adapter.NodeUnavailable` when the holding node is dead or
dies mid-call: the outcome is unknown and nothing retries it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from .._engine.errors import OCPPError
from .._rpc.session import CallTimeout, InvalidResponseError, Session
from .._ws.transport import ConnectionLost
from ..cluster.adapter import (
    ClaimStatus,
    ClusterAdapter,
    ClusterError,
    ClusterMetrics,
    Envelope,
    Kind,
    NodeUnavailable,
    envelope,
    now_ms,
)
from .cluster_caller import ClusterCaller
from .delivery import LocalDelivery
from .security_events import SecurityEvent, StationConnected, StationDisconnected
from .stats import ClusterStats

if TYPE_CHECKING:
    from .server import Server

__all__ = ["ClusterDelivery", "cluster_delivery"]

log = logging.getLogger(__name__)

#: Close code for a connection another node now holds (the same as a local replacement).
_REPLACED = 1008
#: Idle workers kept waiting for calls from other nodes (more end after their call).
_KEEP_IDLE = 64


@dataclass(frozen=True)
class _Held:
    session: Session
    conn: str


class ClusterDelivery:
    """Local sessions first, else the node that holds the station (see the module docstring).

    :param call_timeout: used when ``send_to_client`` is given no timeout.
    :param grace: extra seconds a caller waits beyond the call's timeout for the reply to travel.
    :param concurrency: calls from other nodes served at once.
    :param stats_interval: seconds between two samples of the adapter's metrics
        (:meth:`stats`; with Redis each sample is two commands).
    """

    def __init__(
        self,
        server: Server,
        adapter: ClusterAdapter,
        *,
        call_timeout: float = 30.0,
        grace: float = 2.0,
        concurrency: int = 1000,
        stats_interval: float = 5.0,
    ) -> None:
        if not stats_interval > 0:
            raise ValueError(f"stats_interval must be positive, got {stats_interval!r}")
        self.server = server
        self.adapter = adapter
        self.grace = grace
        #: The caller half, shared with :class:`~.cluster_client.ClusterClient`.
        self.caller = ClusterCaller(adapter, call_timeout=call_timeout, grace=grace)
        self._local = LocalDelivery(lambda: server.clients)
        self._held: dict[str, _Held] = {}
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._concurrency = concurrency
        # Calls from other nodes are served by workers that stay for the next call (a task
        # per call costs more than handing a call to a waiting worker).
        self._calls, self._calls_out = anyio.create_memory_object_stream[Envelope](float("inf"))
        self._workers = 0
        #: Workers waiting for a call, less the calls queued for them (negative: calls wait).
        self._idle = 0
        self._changes, self._changes_out = anyio.create_memory_object_stream[tuple[str, bool]](float("inf"))
        self.stats_interval = stats_interval
        # Until the first sample: nothing counted yet, the inbox unknown.
        self._sample = ClusterMetrics(inbox_lag=None, inbox_pending=None)
        self._sampled_at = time.monotonic()

    @property
    def call_timeout(self) -> float:
        return self.caller.call_timeout

    # -- calling ------------------------------------------------------------------------
    async def call(self, identity: str, request: Any, payload: Any, timeout: float | None) -> Any:  # noqa: ASYNC109 (bounds the answer, like call())
        if identity in self.server.clients:
            return await self._local.call(identity, request, payload, timeout)
        return await self.caller.call(identity, request, payload, timeout)

    # -- health -------------------------------------------------------------------------
    def stats(self) -> ClusterStats:
        """The adapter's metrics as last sampled, and how old the sample is (no I/O)."""
        sample = self._sample
        return ClusterStats(
            node=self.adapter.node_id,
            age=time.monotonic() - self._sampled_at,
            sent=sample.sent,
            received=sample.received,
            duplicates=sample.duplicates,
            expired=sample.expired,
            malformed=sample.malformed,
            node_unavailable=sample.node_unavailable,
            broadcasts_sent=sample.broadcasts_sent,
            broadcasts_received=sample.broadcasts_received,
            subscriber_restarts=sample.subscriber_restarts,
            rehydrations=sample.rehydrations,
            unavailable=sample.unavailable,
            inbox_lag=sample.inbox_lag,
            inbox_pending=sample.inbox_pending,
            oldest_pending_ms=sample.oldest_pending_ms,
        )

    async def sample_stats(self) -> ClusterStats:
        """Sample the adapter's metrics now (what runs every ``stats_interval``); the new :meth:`stats`."""
        # A copy: an adapter may keep updating the object it returned.
        self._sample = dataclasses.replace(await self.adapter.metrics())
        self._sampled_at = time.monotonic()
        return self.stats()

    async def _sample_periodically(self) -> None:
        while True:
            try:
                await self.sample_stats()
            except Exception:  # an adapter of the user's: the sample ages, the node goes on
                log.exception("cluster metrics not sampled")
            await anyio.sleep(self.stats_interval)

    # -- serving ------------------------------------------------------------------------
    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve the cluster: presence of our stations, calls for them, replies to ours."""
        unsubscribe = self.server.security_events.subscribe(self._on_event)
        try:
            for identity in list(self.server.clients):  # connected before we started
                self._changes.send_nowait((identity, True))
            async with anyio.create_task_group() as group:
                with self.caller.serve(group):
                    group.start_soon(self._track_presence)
                    group.start_soon(self._sample_periodically)
                    task_status.started()
                    received = self.adapter.received
                    take_waiting = getattr(received, "receive_nowait", None)
                    async for env in received:
                        self._dispatch(env, group)
                        # Everything already waiting in this turn: one loop turn per batch, not per envelope.
                        with contextlib.suppress(anyio.WouldBlock, anyio.EndOfStream):
                            while take_waiting is not None:
                                self._dispatch(take_waiting(), group)
        finally:
            unsubscribe()

    def _on_event(self, event: SecurityEvent) -> None:
        if isinstance(event, (StationConnected, StationDisconnected)) and event.identity is not None:
            self._changes.send_nowait((event.identity, isinstance(event, StationConnected)))

    async def _track_presence(self) -> None:
        async for identity, connected in self._changes_out:
            try:
                if connected:
                    await self._claim(identity)
                else:
                    held = self._held.get(identity)
                    if held is not None and self.server.clients.get(identity) is not held.session:
                        del self._held[identity]
                        await self.adapter.release(identity, held.conn)
            except ClusterError as exc:
                log.warning("presence of %r not updated: %s", identity, exc)
            except Exception:  # never the end of presence tracking for every other station
                log.exception("presence of %r not updated", identity)

    async def _claim(self, identity: str) -> None:
        session = self.server.clients.get(identity)
        if session is None:
            return
        held = self._held.get(identity)
        if held is None or held.session is not session:
            held = self._held[identity] = _Held(session, uuid.uuid4().hex)
        claim = await self.adapter.claim(identity, held.conn)
        previous = claim.previous
        if claim.status is ClaimStatus.TAKEN_OVER and previous is not None:
            kick = envelope(Kind.KICK, self.adapter.node_id, identity, timeout=60, conn=previous.conn)
            with contextlib.suppress(NodeUnavailable):  # its connections are gone with it
                await self.adapter.deliver(previous.node, kick)

    def _dispatch(self, env: Envelope, group: anyio.abc.TaskGroup) -> None:
        if env.k is Kind.CALL:
            if self._idle <= 0 and self._workers < self._concurrency:
                self._workers += 1
                group.start_soon(self._worker, env)
            else:  # to a waiting worker, or queued for the next one free (at the limit)
                self._idle -= 1
                self._calls.send_nowait(env)
        elif env.k in (Kind.RESULT, Kind.ERROR):
            self.caller.on_reply(env)
        elif env.k is Kind.KICK:
            held = self._held.get(env.dst)
            if held is not None and held.conn == env.conn:
                group.start_soon(self._kick, held)

    async def _kick(self, held: _Held) -> None:
        await held.session.close(_REPLACED, "connected to another node", graceful=False)

    async def _worker(self, env: Envelope) -> None:
        """Serve *env*, then the calls handed or queued to it, until enough others wait idle."""
        try:
            while True:
                await self._serve_call(env)
                if self._idle >= _KEEP_IDLE:
                    return
                self._idle += 1
                env = await self._calls_out.receive()
        finally:
            self._workers -= 1

    async def _serve_call(self, env: Envelope) -> None:
        session = self.server.clients.get(env.dst)
        remaining = (env.dl - now_ms()) / 1000
        if remaining <= 0:
            return  # the caller has given up: never act late
        kind: Kind = Kind.RESULT
        answer: Any = None
        if session is None:
            kind, answer = Kind.ERROR, {"kind": "not_connected"}
        else:
            try:
                answer = await session.call(env.m, env.p, timeout=remaining)
            except OCPPError as exc:
                kind = Kind.ERROR
                answer = {"kind": "ocpp", "code": exc.code.value, "description": exc.description}
                answer |= {"details": dict(exc.details)}
            except CallTimeout:
                kind, answer = Kind.ERROR, {"kind": "timeout"}
            except ConnectionLost as exc:
                kind, answer = Kind.ERROR, {"kind": "connection_lost", "description": str(exc)}
            except InvalidResponseError as exc:
                kind = Kind.ERROR
                answer = {
                    "kind": "invalid_response",
                    "code": exc.code.value,
                    "description": exc.description,
                }
            except Exception as exc:  # a hostile or broken request: answered, never fatal here
                kind, answer = Kind.ERROR, {"kind": "failed", "description": str(exc) or repr(exc)}
        reply = envelope(kind, self.adapter.node_id, env.dst, timeout=self.grace, corr=env.id, p=answer)
        try:
            await self.adapter.deliver(env.src, reply)
        except ClusterError as exc:  # the caller's node is gone: nobody to tell
            log.info("reply to %s for %r not delivered: %s", env.src, env.dst, exc)


@asynccontextmanager
async def cluster_delivery(
    server: Server, adapter: ClusterAdapter, **options: Any
) -> AsyncIterator[ClusterDelivery]:
    """Make *server* command stations across the cluster for the duration of the block."""
    delivery = ClusterDelivery(server, adapter, **options)
    previous, previous_cluster = server.delivery, server._cluster
    async with anyio.create_task_group() as group:
        await group.start(delivery.run)
        server.delivery, server._cluster = delivery, delivery
        try:
            yield delivery
        finally:
            server.delivery, server._cluster = previous, previous_cluster
            group.cancel_scope.cancel()
