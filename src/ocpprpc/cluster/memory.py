"""The in-memory cluster: several nodes in one process share a :class:`MemoryCluster`.

The embedded default (one process needs no Redis), and the same adapter semantics
the Redis implementation has, so everything above the adapter is tested without Redis:
delivery to a node that is not running fails with :class:`~.adapter.NodeUnavailable`,
dedup by envelope id, deadlines, fenced presence, broadcast to the other nodes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Self

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectSendStream

from .adapter import (
    Claim,
    ClaimStatus,
    ClusterMetrics,
    Dedup,
    Envelope,
    NodeUnavailable,
    Presence,
    now_ms,
)

__all__ = ["MemoryAdapter", "MemoryCluster"]

#: Envelopes queued for one node before a sender waits.
INBOX_SIZE = 10_000


class MemoryCluster:
    """The medium nodes in one process share (what Redis is between processes)."""

    def __init__(self) -> None:
        self.inboxes: dict[str, MemoryObjectSendStream[Envelope]] = {}
        self.presence: dict[str, Presence] = {}
        self.tokens: dict[str, int] = {}
        self.down: dict[str, anyio.Event] = {}
        self._conns = itertools.count(1)

    def node(self, node_id: str) -> MemoryAdapter:
        return MemoryAdapter(self, node_id)


class MemoryAdapter:
    """One node of a :class:`MemoryCluster` (alive while entered)."""

    def __init__(self, cluster: MemoryCluster, node_id: str) -> None:
        if "|" in node_id or not node_id:
            raise ValueError(f"node id must be non-empty and without '|': {node_id!r}")
        self.cluster = cluster
        self.node_id = node_id
        self._metrics = ClusterMetrics()
        self._dedup = Dedup()
        self._claims: dict[str, str] = {}
        self._inbox_send, self._inbox = anyio.create_memory_object_stream[Envelope](INBOX_SIZE)
        self._send, self.received = anyio.create_memory_object_stream[Envelope](0)
        self._group: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> Self:
        if self.node_id in self.cluster.inboxes:
            raise RuntimeError(f"node {self.node_id!r} is already running")
        self._group = await anyio.create_task_group().__aenter__()
        self.cluster.inboxes[self.node_id] = self._inbox_send
        self.cluster.down.pop(self.node_id, None)
        self._group.start_soon(self._consume)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        assert self._group is not None
        if self.cluster.inboxes.get(self.node_id) is self._inbox_send:
            del self.cluster.inboxes[self.node_id]
        self.cluster.down.setdefault(self.node_id, anyio.Event()).set()
        self._group.cancel_scope.cancel()
        try:
            return await self._group.__aexit__(kind, exc, tb)
        finally:
            self._send.close()
            self._inbox_send.close()
            self._inbox.close()

    async def _consume(self) -> None:
        async for env in self._inbox:
            if not self._dedup.first_time(env.id):
                self._metrics.duplicates += 1
            elif env.dl < now_ms():
                self._metrics.expired += 1
            else:
                self._metrics.received += 1
                await self._send.send(env)

    async def deliver(self, node: str, env: Envelope) -> None:
        inbox = self.cluster.inboxes.get(node)
        if inbox is None:
            self._metrics.node_unavailable += 1
            raise NodeUnavailable(node)
        await inbox.send(env)
        self._metrics.sent += 1

    async def broadcast(self, env: Envelope) -> None:
        self._metrics.broadcasts_sent += 1
        for node, inbox in list(self.cluster.inboxes.items()):
            if node != self.node_id:
                inbox.send_nowait(env)  # at most once: a full inbox drops it, like pub/sub

    async def node_alive(self, node: str) -> bool:
        return node in self.cluster.inboxes

    async def wait_node_down(self, node: str) -> None:
        if node not in self.cluster.inboxes:
            return
        await self.cluster.down.setdefault(node, anyio.Event()).wait()

    async def presence(self, identity: str) -> Presence | None:
        return self.cluster.presence.get(identity)

    async def presences(self, identities: Iterable[str]) -> Mapping[str, Presence | None]:
        return {identity: self.cluster.presence.get(identity) for identity in identities}

    async def claim(self, identity: str, conn: str, *, takeover: bool = True) -> Claim:
        current = self.cluster.presence.get(identity)
        if current is not None and (current.node, current.conn) == (self.node_id, conn):
            self._claims[identity] = conn
            return Claim(ClaimStatus.KEPT, current)
        if current is not None and not takeover:
            self._claims.pop(identity, None)
            return Claim(ClaimStatus.LOST, current)
        token = self.cluster.tokens[identity] = self.cluster.tokens.get(identity, 0) + 1
        holder = self.cluster.presence[identity] = Presence(self.node_id, conn, token)
        self._claims[identity] = conn
        if current is None:
            return Claim(ClaimStatus.CLAIMED, holder)
        return Claim(ClaimStatus.TAKEN_OVER, holder, current)

    async def refresh(self) -> list[str]:
        lost = []
        for identity, conn in list(self._claims.items()):
            if (await self.claim(identity, conn, takeover=False)).status is ClaimStatus.LOST:
                lost.append(identity)
        return lost

    async def release(self, identity: str, conn: str) -> bool:
        if self._claims.get(identity) == conn:
            del self._claims[identity]
        current = self.cluster.presence.get(identity)
        if current is None or (current.node, current.conn) != (self.node_id, conn):
            return False
        del self.cluster.presence[identity]
        return True

    async def metrics(self) -> ClusterMetrics:
        self._metrics.inbox_lag = self._inbox.statistics().current_buffer_used
        return self._metrics
