"""The cluster adapter contract, on the in-memory cluster and on Redis (every client, both backends)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import pytest

from ocpprpc.cluster.adapter import (
    Claim,
    ClaimStatus,
    ClusterAdapter,
    Envelope,
    Kind,
    NodeUnavailable,
    Presence,
    decode,
    encode,
    envelope,
)
from ocpprpc.cluster.memory import MemoryCluster
from ocpprpc.cluster.ops_open import ClientChoice
from ocpprpc.cluster.redis_adapter import RedisAdapter
from tests.cluster.redis_server import RedisServer

PROMPT = 5.0
# Liveness TTL 0.75 s: short enough for the node-death tests, long enough that a loaded CI
# machine (a burst of 150 calls on one event loop beside another test worker) does not stall a
# heartbeat past it (at 0.1 s it did: a live node was reported dead mid-burst).
HEARTBEAT = 0.25
# For a node whose refresh() results a test asserts: a heartbeat that stalls past the liveness
# TTL makes the watchdog repair (renew every claim) first.
QUIET = 60.0


@dataclass(frozen=True)
class Medium:
    backend: str
    client: ClientChoice | None  # None: the in-memory cluster

    def __str__(self) -> str:
        return f"{self.backend}+{self.client or 'memory'}"


MEDIA = [
    Medium("asyncio", None),
    Medium("trio", None),
    Medium("asyncio", "redis-py"),
    Medium("asyncio", "coredis"),
    Medium("trio", "coredis"),
]


@pytest.fixture(params=MEDIA, ids=str)
def medium(request: pytest.FixtureRequest) -> Medium:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def anyio_backend(medium: Medium) -> str:
    return medium.backend


class Cluster:
    """Starts nodes on the medium under test (all on one MemoryCluster, or one Redis namespace)."""

    def __init__(self, medium: Medium, server: RedisServer, ns: str, stack: AsyncExitStack) -> None:
        self.medium, self.server, self.ns, self.stack = medium, server, ns, stack
        self.memory = MemoryCluster()

    def adapter(self, node_id: str, **options: Any) -> Any:
        if self.medium.client is None:
            return self.memory.node(node_id)
        return RedisAdapter(
            self.server.url,
            node_id=node_id,
            namespace=self.ns,
            prefer=self.medium.client,
            **{"heartbeat": HEARTBEAT, "block": 0.2, **options},
        )

    async def start(self, node_id: str, **options: Any) -> ClusterAdapter:
        adapter: ClusterAdapter = await self.stack.enter_async_context(self.adapter(node_id, **options))
        return adapter


@asynccontextmanager
async def cluster(medium: Medium, server: RedisServer, ns: str) -> AsyncIterator[Cluster]:
    async with AsyncExitStack() as stack:
        yield Cluster(medium, server, ns, stack)


async def next_envelope(adapter: ClusterAdapter) -> Envelope:
    with anyio.fail_after(PROMPT):
        return await adapter.received.receive()


def call(src: str, dst: str, *, timeout: float = 30.0, **fields: Any) -> Envelope:
    return envelope(Kind.CALL, src, dst, timeout=timeout, m="Reset", p={"type": "Soft"}, **fields)


async def test_deliver_to_a_node(medium: Medium, redis_server: RedisServer, ns: str) -> None:
    async with cluster(medium, redis_server, ns) as c:
        a, b = await c.start("a"), await c.start("b")
        env = call("a", "CP1")
        await a.deliver("b", env)
        assert await next_envelope(b) == env
        reply = envelope(Kind.RESULT, "b", "CP1", timeout=30, corr=env.id, p={"status": "Accepted"})
        await b.deliver("a", reply)
        assert await next_envelope(a) == reply
        assert (await a.metrics()).sent == 1
        assert (await b.metrics()).received == 1


async def test_a_node_that_is_not_running_fails_at_once(
    medium: Medium, redis_server: RedisServer, ns: str
) -> None:
    async with cluster(medium, redis_server, ns) as c:
        a = await c.start("a")
        with anyio.fail_after(PROMPT), pytest.raises(NodeUnavailable, match="outcome unknown"):
            await a.deliver("never-started", call("a", "CP1"))
        async with c.adapter("b") as b:
            assert await a.node_alive("b")
            assert b.node_id == "b"
        assert not await a.node_alive("b")  # left cleanly: dead at once, not after a TTL
        with pytest.raises(NodeUnavailable) as caught:
            await a.deliver("b", call("a", "CP1"))
        assert caught.value.node == "b"
        assert (await a.metrics()).node_unavailable == 2


async def test_wait_node_down(medium: Medium, redis_server: RedisServer, ns: str) -> None:
    async with cluster(medium, redis_server, ns) as c:
        a = await c.start("a")
        async with c.adapter("b"):
            down = anyio.Event()

            async def watch() -> None:
                await a.wait_node_down("b")
                down.set()

            async with anyio.create_task_group() as group:
                group.start_soon(watch)
                await anyio.sleep(HEARTBEAT * 3)
                assert not down.is_set()  # alive and beating: not reported down
                group.cancel_scope.cancel()
            group2 = anyio.create_task_group()
        async with group2:
            group2.start_soon(watch)
            with anyio.fail_after(PROMPT):
                await down.wait()
        with anyio.fail_after(PROMPT):
            await a.wait_node_down("never-started")


async def test_duplicates_and_expired_envelopes_are_not_handed_out(
    medium: Medium, redis_server: RedisServer, ns: str
) -> None:
    async with cluster(medium, redis_server, ns) as c:
        a, b = await c.start("a"), await c.start("b")
        first = call("a", "CP1")
        await a.deliver("b", first)
        await a.deliver("b", first)  # a producer's retry after an ambiguous failure
        await a.deliver("b", call("a", "CP1", timeout=-1))  # its caller gave up already
        last = call("a", "CP2")
        await a.deliver("b", last)
        assert await next_envelope(b) == first
        assert await next_envelope(b) == last
        metrics = await b.metrics()
        assert (metrics.received, metrics.duplicates, metrics.expired) == (2, 1, 1)


async def test_presence_is_fenced_per_connection(medium: Medium, redis_server: RedisServer, ns: str) -> None:
    async with cluster(medium, redis_server, ns) as c:
        a, b = await c.start("a", heartbeat=QUIET), await c.start("b")
        assert await a.presence("CP1") is None
        first = await a.claim("CP1", "conn-1")
        assert first == Claim(ClaimStatus.CLAIMED, first.holder)
        assert (first.holder.node, first.holder.conn) == ("a", "conn-1")
        assert await b.presence("CP1") == first.holder
        assert (await a.claim("CP1", "conn-1")).status is ClaimStatus.KEPT
        assert await a.refresh() == []

        # The station reconnects to b: b takes over, a must evict its stale connection.
        second = await b.claim("CP1", "conn-2")
        assert second.status is ClaimStatus.TAKEN_OVER
        assert second.previous == first.holder
        assert second.holder.token > first.holder.token  # fencing: the newer claim is greater
        lost = await a.claim("CP1", "conn-1", takeover=False)
        assert (lost.status, lost.holder) == (ClaimStatus.LOST, second.holder)
        await a.claim("CP9", "conn-9")
        assert await a.refresh() == []  # CP1 is no longer a's; CP9 still is
        assert not await a.release("CP1", "conn-1")  # a stale connection cannot remove b's claim
        assert await b.presence("CP1") == second.holder
        assert dict(await a.presences(["CP1", "CP9", "CP0", "CP1"])) == {
            "CP1": second.holder,
            "CP9": (await a.presence("CP9")),
            "CP0": None,
        }
        assert await b.release("CP1", "conn-2")
        assert await a.presence("CP1") is None
        assert not await b.release("CP1", "conn-2")


async def test_refresh_reports_a_claim_lost_to_another_connection(
    medium: Medium, redis_server: RedisServer, ns: str
) -> None:
    async with cluster(medium, redis_server, ns) as c:
        a, b = await c.start("a", heartbeat=QUIET), await c.start("b")
        await a.claim("CP1", "conn-1")
        await a.claim("CP2", "conn-2")
        await b.claim("CP1", "conn-3")  # behind a's back
        assert await a.refresh() == ["CP1"]
        if medium.client is not None:  # over Redis the node also hears it as a kick
            kick = await next_envelope(a)
            assert (kick.k, kick.dst, kick.conn) == (Kind.KICK, "CP1", "conn-1")
        assert await a.refresh() == []


async def test_broadcast_reaches_every_other_node(medium: Medium, redis_server: RedisServer, ns: str) -> None:
    async with cluster(medium, redis_server, ns) as c:
        a, b, d = await c.start("a"), await c.start("b"), await c.start("d")
        env = envelope(Kind.BROADCAST, "a", "*", timeout=30, m="ChangeAvailability", p={})
        await a.broadcast(env)
        assert await next_envelope(b) == env
        assert await next_envelope(d) == env
        with anyio.move_on_after(0.2):
            await a.received.receive()
            pytest.fail("the sender received its own broadcast")
        assert (await a.metrics()).broadcasts_sent == 1


def test_envelopes_round_trip_and_reject_junk() -> None:
    env = call("a", "CP1")
    assert decode(encode(env)) == env
    with pytest.raises(ValueError):
        decode(b'{"id": 1}')
    assert Presence.decode(b"a|conn|x") is None
    assert Presence.decode("a|c|o|n|n|7") == Presence("a", "c|o|n|n", 7)


def test_bad_node_ids(redis_server: RedisServer) -> None:
    with pytest.raises(ValueError, match="node id"):
        MemoryCluster().node("a|b")
    for bad in ("", "a|b", "a{b}", "a\nb"):
        with pytest.raises(ValueError, match="node_id"):
            RedisAdapter(redis_server.url, node_id=bad)
    with pytest.raises(ValueError, match="exactly one"):
        RedisAdapter(node_id="a")
    with pytest.raises(ValueError, match="positive"):
        RedisAdapter(redis_server.url, node_id="a", heartbeat=0)
