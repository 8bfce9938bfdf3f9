"""The Redis adapter under faults: crashes before hand-off, dead nodes, Redis restarted empty, junk."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest

from ocpprpc.cluster.adapter import ClusterUnavailable, Envelope, Kind, NodeUnavailable, envelope
from ocpprpc.cluster.ops import Eval, RedisCommandError, RedisUnavailable
from ocpprpc.cluster.ops_open import open_ops
from ocpprpc.cluster.redis_adapter import RedisAdapter
from ocpprpc.cluster.redis_scripts import GROUP, REFRESH, REFRESH_BATCH
from tests.cluster.conftest import Flavour
from tests.cluster.redis_server import RedisServer

PROMPT = 5.0
HEARTBEAT = 0.25  # liveness TTL 0.75 s: a loaded CI machine stalled a 0.3 s one (see test_adapter)


@pytest.fixture
def anyio_backend(flavour: Flavour) -> str:
    return flavour.backend


def node(server: RedisServer, flavour: Flavour, ns: str, node_id: str, **options: Any) -> RedisAdapter:
    return RedisAdapter(
        server.url,
        node_id=node_id,
        namespace=ns,
        prefer=flavour.client,
        heartbeat=HEARTBEAT,
        block=0.2,
        **options,
    )


def call(src: str, dst: str = "CP1", *, timeout: float = 30.0) -> Envelope:
    return envelope(Kind.CALL, src, dst, timeout=timeout, m="Reset", p={"type": "Hard"})


async def until(check: Callable[[], Any], timeout: float = PROMPT) -> Any:  # noqa: ASYNC109
    """Poll *check* (sync or async) until it returns a true value or stops raising; return that."""
    with anyio.fail_after(timeout):
        while True:
            try:
                value = check()
                if hasattr(value, "__await__"):
                    value = await value
                if value:
                    return value
            except (ClusterUnavailable, NodeUnavailable):
                pass
            await anyio.sleep(0.02)


async def test_a_node_that_died_before_hand_off_gets_its_entry_after_restart(
    redis_server: RedisServer, flavour: Flavour, ns: str
) -> None:
    async with node(redis_server, flavour, ns, "a") as a:
        env = call("a")
        async with node(redis_server, flavour, ns, "b") as b:
            await a.deliver("b", env)
            # b's consumer has read it and waits to hand it off; nobody takes it: b stops.
            await until(lambda: b.metrics())
            await until(lambda: _pending(b))
        async with node(redis_server, flavour, ns, "b") as b:  # same node id: drains what was pending
            with anyio.fail_after(PROMPT):
                assert await b.received.receive() == env
            await until(lambda: _no_pending(b))


async def _pending(adapter: RedisAdapter) -> bool:
    return (await adapter.metrics()).inbox_pending == 1


async def _no_pending(adapter: RedisAdapter) -> bool:
    metrics = await adapter.metrics()
    return metrics.inbox_pending == 0 and metrics.inbox_lag == 0 and metrics.oldest_pending_ms is None


async def test_a_crashed_node_is_reported_down_within_its_liveness_ttl(
    redis_server: RedisServer, flavour: Flavour, ns: str
) -> None:
    async with node(redis_server, flavour, ns, "a") as a:
        async with node(redis_server, flavour, ns, "b") as b:
            ttl_ms = b.liveness_ttl_ms
        # A crash leaves the liveness key behind until it expires (a clean exit deletes it).
        await a.ops.set(a.alive_key("b"), b"crashed-run", px=ttl_ms)
        await a.deliver("b", call("a"))  # accepted: b looks alive for now
        with anyio.fail_after(ttl_ms / 1000 + HEARTBEAT * 5):
            await a.wait_node_down("b")
        with pytest.raises(NodeUnavailable):
            await a.deliver("b", call("a"))


async def test_redis_restarted_empty(own_redis: RedisServer, flavour: Flavour, ns: str) -> None:
    """Fail fast while Redis is away; then presence, the group and the subscription come back."""
    async with node(own_redis, flavour, ns, "a") as a, node(own_redis, flavour, ns, "b") as b:
        stations = [f"CP{i}" for i in range(50)]
        for identity in stations:
            await b.claim(identity, f"conn-{identity}")
        own_redis.kill()
        with anyio.fail_after(PROMPT), pytest.raises(ClusterUnavailable):
            await a.deliver("b", call("a"))
        with anyio.fail_after(PROMPT), pytest.raises(ClusterUnavailable):
            await a.presence("CP1")
        with anyio.fail_after(PROMPT):
            away = await b.metrics()  # the inbox figures unknown, never those of an earlier read
        assert (away.inbox_lag, away.inbox_pending, away.oldest_pending_ms) == (None, None, None)
        await anyio.to_thread.run_sync(own_redis.start)  # empty: no presence, no stream, no group

        async def all_present() -> bool:
            found = await a.presences(stations)
            return all(p is not None and (p.node, p.conn) == ("b", f"conn-{i}") for i, p in found.items())

        await until(all_present)
        env = call("a")

        async def delivered() -> bool:
            await a.deliver("b", env)  # NodeUnavailable until b's liveness key is back
            return True

        await until(delivered)
        with anyio.fail_after(PROMPT):
            assert await b.received.receive() == env

        # The broadcast subscription is back too (the coredis-on-trio silent end is the hazard).
        async def broadcast_heard() -> bool:
            await a.broadcast(envelope(Kind.BROADCAST, "a", "*", timeout=30, m="Ping"))
            with anyio.move_on_after(0.1):
                return (await b.received.receive()).k is Kind.BROADCAST
            return False

        await until(broadcast_heard)
        # Polled: a read on a connection the restart broke says "unknown" (None), not the old figures.
        await until(lambda: _no_pending(b))
        metrics = await b.metrics()
        assert metrics.rehydrations >= 1
        assert metrics.unavailable >= 1


async def test_after_redis_restarts_empty_a_node_is_back_before_its_next_heartbeat(
    own_redis: RedisServer, flavour: Flavour, ns: str
) -> None:
    """The inbox read finding its group gone repairs at once: liveness, group and presence are back
    long before a (30 s) heartbeat would have noticed."""
    options: dict[str, Any] = {"namespace": ns, "prefer": flavour.client, "heartbeat": 30.0, "block": 0.2}
    async with (
        RedisAdapter(own_redis.url, node_id="a", **options) as a,
        RedisAdapter(own_redis.url, node_id="b", **options) as b,
    ):
        await b.claim("CP1", "conn-1")
        own_redis.kill()
        await anyio.to_thread.run_sync(own_redis.start)  # empty
        env = call("a")

        async def delivered() -> bool:
            await a.deliver("b", env)  # NodeUnavailable until b's liveness key is back
            return True

        await until(delivered)
        with anyio.fail_after(PROMPT):
            assert await b.received.receive() == env
        held = await until(lambda: a.presence("CP1"))
        assert (held.node, held.conn) == ("b", "conn-1")
        assert (await b.metrics()).rehydrations == 1


async def test_redis_refusing_writes_is_waited_out(own_redis: RedisServer, flavour: Flavour, ns: str) -> None:
    """READONLY (a primary turned replica, as in a failover): fail fast, keep running, resume."""
    async with node(own_redis, flavour, ns, "a") as a, node(own_redis, flavour, ns, "b") as b:
        await b.claim("CP1", "conn-1")
        assert own_redis.command("REPLICAOF", "127.0.0.1", "1").startswith(b"+OK")  # nothing there
        try:
            with anyio.fail_after(PROMPT), pytest.raises(ClusterUnavailable, match=r"(?i)read.only"):
                await a.deliver("b", call("a"))
            with pytest.raises(ClusterUnavailable):
                await a.claim("CP2", "conn-2")
            await until(lambda: _counted_failures(b))  # b's loops meet the refusals and go on
        finally:
            assert own_redis.command("REPLICAOF", "NO", "ONE").startswith(b"+OK")
        env = call("a")

        async def delivered() -> bool:
            await a.deliver("b", env)
            return True

        await until(delivered)
        with anyio.fail_after(PROMPT):
            assert await b.received.receive() == env
        assert (await a.presence("CP1")) is not None


async def _counted_failures(adapter: RedisAdapter) -> bool:
    return (await adapter.metrics()).unavailable > 0


async def test_junk_in_an_inbox_is_dropped_and_counted(
    redis_server: RedisServer, flavour: Flavour, ns: str
) -> None:
    async with node(redis_server, flavour, ns, "a") as a, node(redis_server, flavour, ns, "b") as b:
        inbox = b.inbox_key("b")
        for junk in (b"", b"not json", b'{"id": 1}', b"[" * 100_000, b'{"id":"x","k":"nope"}'):
            await a.ops.xadd(inbox, {"e": junk})
        await a.ops.xadd(inbox, {"other": b"field"})
        env = call("a")
        await a.deliver("b", env)
        with anyio.fail_after(PROMPT):
            assert await b.received.receive() == env  # the junk did not stop the consumer
        metrics = await b.metrics()
        assert metrics.malformed == 5
        await until(lambda: _no_pending(b))  # junk is acked too: it never comes back


async def test_cannot_start_without_redis(tmp_path: Any, flavour: Flavour, ns: str) -> None:
    down = RedisServer(tmp_path)  # never started: nothing listens on its port
    with anyio.fail_after(PROMPT), pytest.raises(ClusterUnavailable, match="Redis unavailable"):
        async with node(down, flavour, ns, "a"):
            pass


async def test_on_the_users_own_client(redis_server: RedisServer, flavour: Flavour, ns: str) -> None:
    async with open_ops(redis_server.url, prefer=flavour.client) as ops:
        async with (
            RedisAdapter(ops=ops, node_id="a", namespace=ns, heartbeat=HEARTBEAT) as a,
            RedisAdapter(ops=ops, node_id="b", namespace=ns, heartbeat=HEARTBEAT) as b,
        ):
            env = call("a")
            await a.deliver("b", env)
            with anyio.fail_after(PROMPT):
                assert await b.received.receive() == env
        assert [g.name for g in await ops.xinfo_groups(a.inbox_key("b"))] == [GROUP]
    with pytest.raises(RuntimeError, match="async with"):
        _ = a.ops


class _ClusterLike:
    """Real Redis below, but a multi-key script is refused as Redis Cluster refuses one across slots."""

    def __init__(self, ops: Any) -> None:
        self._ops = ops
        self.refused = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ops, name)

    async def pipeline(self, commands: Any) -> list[Any]:
        replies: list[Any] = await self._ops.pipeline(commands)
        for at, command in enumerate(commands):
            if isinstance(command, Eval) and command.script is REFRESH:
                self.refused += 1
                replies[at] = RedisCommandError("CROSSSLOT Keys in request don't hash to the same slot")
        return replies


@pytest.mark.parametrize("cluster_like", [False, True], ids=["batched", "per-key"])
async def test_refreshing_many_claims(
    redis_server: RedisServer, flavour: Flavour, ns: str, cluster_like: bool
) -> None:
    """More claims than one batch: kept, lost to another connection, or claimed again after expiry."""
    async with open_ops(redis_server.url, prefer=flavour.client) as real:
        ops: Any = _ClusterLike(real) if cluster_like else real
        async with (
            # A long heartbeat: a stall past the liveness TTL would make the watchdog renew first.
            RedisAdapter(ops=ops, node_id="a", namespace=ns, heartbeat=60) as a,
            RedisAdapter(ops=real, node_id="b", namespace=ns, heartbeat=HEARTBEAT) as b,
        ):
            identities = [f"CP{i}" for i in range(2 * REFRESH_BATCH + 7)]
            a._claims.update({identity: f"conn-{identity}" for identity in identities})
            assert await a.refresh() == []  # all free: claimed
            before = await a.presences(identities)
            await b.claim("CP3", "elsewhere")  # taken over behind a's back
            await b.claim(identities[-1], "elsewhere")
            await real.delete([a.presence_key("CP5")])  # expired
            assert sorted(await a.refresh()) == sorted(["CP3", identities[-1]])
            after = await a.presences(identities)
            for identity in identities:
                holder = after[identity]
                assert holder is not None
                if identity in ("CP3", identities[-1]):
                    assert holder.node == "b"
                elif identity == "CP5":  # claimed anew: a greater fencing token
                    assert holder.conn == "conn-CP5" and holder.token > before["CP5"].token  # type: ignore[union-attr]
                else:
                    assert holder == before[identity]
            kicks = {(await a.received.receive()).dst for _ in range(2)}
            assert kicks == {"CP3", identities[-1]}
            assert "CP3" not in a._claims and len(a._claims) == len(identities) - 2
        if cluster_like:
            assert ops.refused == 3  # once, then one CLAIM per identity from then on


async def test_concurrent_deliveries_share_the_outbox(
    redis_server: RedisServer, flavour: Flavour, ns: str
) -> None:
    """Many at once (pipelined together): each arrives once, a dead node's fail alone, none after close."""
    async with node(redis_server, flavour, ns, "a") as a, node(redis_server, flavour, ns, "b") as b:
        sent = [call("a", f"CP{i}") for i in range(300)]
        failures: list[BaseException] = []

        async def deliver(target: str, env: Envelope) -> None:
            try:
                await a.deliver(target, env)
            except NodeUnavailable as exc:
                failures.append(exc)

        async with anyio.create_task_group() as group:
            for i, env in enumerate(sent):
                group.start_soon(deliver, "b", env)
                if i % 100 == 0:
                    group.start_soon(deliver, "nobody", call("a"))
        assert len(failures) == 3 and all(exc.node == "nobody" for exc in failures)  # type: ignore[attr-defined]
        with anyio.fail_after(PROMPT):
            got = [await b.received.receive() for _ in sent]
        assert sorted(env.id for env in got) == sorted(env.id for env in sent)
        assert (await a.metrics()).sent == len(sent)
    with pytest.raises(ClusterUnavailable, match="closed"):
        await a.deliver("b", call("a"))


class _AckFailsOnce:
    """Real Redis below; the first XACK (sent with the next read) is lost on the way."""

    def __init__(self, ops: Any) -> None:
        self._ops = ops
        self.failed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ops, name)

    async def xack_xreadgroup(
        self,
        key: str,
        group: str,
        consumer: str,
        start_id: str,
        *,
        ack: Any,
        count: int,
        block_ms: Any = None,
    ) -> tuple[int | Exception, list[Any]]:
        if not self.failed:  # the read goes through, the ack does not
            self.failed = True
            entries = await self._ops.xreadgroup(
                key, group, consumer, start_id, count=count, block_ms=block_ms
            )
            return RedisUnavailable("connection lost"), entries
        return await self._ops.xack_xreadgroup(  # type: ignore[no-any-return]
            key, group, consumer, start_id, ack=ack, count=count, block_ms=block_ms
        )


async def test_a_lost_ack_reads_the_entry_again_and_hands_it_out_once(
    redis_server: RedisServer, flavour: Flavour, ns: str
) -> None:
    async with open_ops(redis_server.url, prefer=flavour.client) as real:
        flaky = _AckFailsOnce(real)
        async with (
            RedisAdapter(ops=real, node_id="a", namespace=ns, heartbeat=HEARTBEAT) as a,
            RedisAdapter(ops=flaky, node_id="b", namespace=ns, heartbeat=HEARTBEAT, block=0.2) as b,
        ):
            env = call("a")
            await a.deliver("b", env)
            with anyio.fail_after(PROMPT):
                assert await b.received.receive() == env

            async def read_again_and_acked() -> bool:
                metrics = await b.metrics()
                return flaky.failed and metrics.duplicates >= 1 and metrics.inbox_pending == 0

            await until(read_again_and_acked)
            second = call("a")
            await a.deliver("b", second)
            with anyio.fail_after(PROMPT):
                assert await b.received.receive() == second  # the first never came out twice


class _CountingMget:
    """Real Redis below; notes the keys of every MGET (the liveness checks of watched nodes)."""

    def __init__(self, ops: Any) -> None:
        self._ops = ops
        self.mgets: list[list[str]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ops, name)

    async def mget(self, keys: Any) -> Any:
        self.mgets.append(list(keys))
        return await self._ops.mget(keys)


async def test_a_watched_node_is_polled_closely_only_while_an_envelope_to_it_is_in_flight(
    redis_server: RedisServer, flavour: Flavour, ns: str
) -> None:
    """Idle: once a heartbeat (5 s here); with a call in flight: every WATCH_INTERVAL (0.25 s)."""
    async with open_ops(redis_server.url, prefer=flavour.client) as real:
        counting = _CountingMget(real)
        async with (
            RedisAdapter(ops=counting, node_id="a", namespace=ns, heartbeat=5.0) as a,
            node(redis_server, flavour, ns, "b"),
            anyio.create_task_group() as group,
        ):
            group.start_soon(a.wait_node_down, "b")

            def checks() -> int:
                return sum(a.alive_key("b") in keys for keys in counting.mgets)

            await anyio.sleep(1.0)  # four watch intervals, nothing in flight
            assert checks() == 0
            await a.deliver("b", call("a"))  # its deadline is 30 s away: b is watched closely
            await until(lambda: checks() >= 3)
            group.cancel_scope.cancel()
