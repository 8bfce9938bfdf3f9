"""The Redis operations interface, against a real redis-server: redis-py on asyncio, coredis on both."""

from __future__ import annotations

import anyio
import pytest

from ocpprpc.cluster.ops import (
    Delete,
    Eval,
    NoGroup,
    PExpire,
    RedisCommandError,
    RedisUnavailable,
    Script,
    Set,
    XAdd,
)
from ocpprpc.cluster.ops_coredis import CoredisOps
from ocpprpc.cluster.ops_open import open_ops
from ocpprpc.cluster.ops_redispy import RedisPyOps
from tests.cluster.conftest import Flavour
from tests.cluster.redis_server import RedisServer

PROMPT = 5.0


@pytest.fixture
def anyio_backend(flavour: Flavour) -> str:
    return flavour.backend


async def test_open_picks_the_client(redis_server: RedisServer, flavour: Flavour) -> None:
    async with open_ops(redis_server.url, prefer=flavour.client) as ops:
        assert isinstance(ops, RedisPyOps if flavour.client == "redis-py" else CoredisOps)
        await ops.ping()
    async with open_ops(redis_server.url) as ops:  # auto: redis-py on asyncio, coredis on trio
        assert isinstance(ops, RedisPyOps if flavour.backend == "asyncio" else CoredisOps)


async def test_strings(redis_server: RedisServer, flavour: Flavour, ns: str) -> None:
    async with open_ops(redis_server.url, prefer=flavour.client) as ops:
        key = f"{ns}:k"
        assert await ops.get(key) is None
        assert await ops.set(key, b"v1", px=10_000, nx=True) is True
        assert await ops.set(key, b"v2", px=10_000, nx=True) is False  # NX: taken
        assert await ops.get(key) == b"v1"
        assert await ops.set_get(key, b"v3", px=10_000) == b"v1"
        assert await ops.set_get(f"{ns}:new", b"x") is None
        assert await ops.mget([key, f"{ns}:missing", f"{ns}:new"]) == [b"v3", None, b"x"]
        assert await ops.mget([]) == []
        assert await ops.set(key, b"v4") is True
        assert await ops.pexpire(key, 1) is True
        assert await ops.pexpire(f"{ns}:missing", 1000) is False
        with anyio.fail_after(PROMPT):
            while await ops.get(key) is not None:  # noqa: ASYNC110 (expiry announces nothing)
                await anyio.sleep(0.005)
        assert await ops.delete([f"{ns}:new", f"{ns}:missing"]) == 1


async def test_streams_and_groups(redis_server: RedisServer, flavour: Flavour, ns: str) -> None:
    async with open_ops(redis_server.url, prefer=flavour.client) as ops:
        stream, group = f"{ns}:inbox", "rpc"
        with pytest.raises(NoGroup):
            await ops.xreadgroup(stream, group, "c1", ">", count=10)
        assert await ops.xgroup_create(stream, group) is True
        assert await ops.xgroup_create(stream, group) is False  # BUSYGROUP is not an error
        first = await ops.xadd(stream, {"e": b"one"}, maxlen=10_000)
        second = await ops.xadd(stream, {"e": b"two"})
        assert first < second or len(first) < len(second)
        assert (await ops.xinfo_groups(stream))[0].lag == 2

        got = await ops.xreadgroup(stream, group, "c1", ">", count=1)
        assert [(e.id, dict(e.fields)) for e in got] == [(first, {"e": b"one"})]
        assert await ops.xreadgroup(stream, group, "c1", "0", count=10) == got  # our pending entry
        rest = await ops.xreadgroup(stream, group, "c1", ">", count=10, block_ms=50)
        assert [e.fields["e"] for e in rest] == [b"two"]
        assert await ops.xreadgroup(stream, group, "c1", ">", count=10, block_ms=10) == []

        [info] = await ops.xinfo_groups(stream)
        assert (info.name, info.consumers, info.pending, info.lag, info.entries_read) == ("rpc", 1, 2, 0, 2)
        assert info.last_delivered_id == second
        pending = await ops.xpending(stream, group)
        assert (pending.count, pending.oldest_id, pending.newest_id) == (2, first, second)

        cursor, claimed = await ops.xautoclaim(stream, group, "c2", min_idle_ms=0, count=1)
        assert [e.id for e in claimed] == [first]
        assert cursor == second  # where to go on from
        assert await ops.xack(stream, group, [first, second]) == 2
        assert await ops.xack(stream, group, []) == 0
        assert (await ops.xpending(stream, group)).count == 0
        assert (await ops.xpending(stream, group)).oldest_id is None


async def test_ack_and_read_in_one_round_trip(redis_server: RedisServer, flavour: Flavour, ns: str) -> None:
    async with open_ops(redis_server.url, prefer=flavour.client) as ops:
        stream, group = f"{ns}:inbox", "rpc"
        with pytest.raises(NoGroup):  # a failed read raises as xreadgroup does
            await ops.xack_xreadgroup(stream, group, "c1", ">", ack=["1-1"], count=10)
        await ops.xgroup_create(stream, group)
        first = await ops.xadd(stream, {"e": b"one"})
        [got] = await ops.xreadgroup(stream, group, "c1", ">", count=10)
        second = await ops.xadd(stream, {"e": b"two"})
        acked, entries = await ops.xack_xreadgroup(
            stream, group, "c1", ">", ack=[got.id], count=10, block_ms=50
        )
        assert acked == 1 and [(e.id, e.fields["e"]) for e in entries] == [(second, b"two")]
        assert (await ops.xpending(stream, group)).oldest_id == second  # the first one is acked
        with anyio.fail_after(PROMPT):  # blocks until an entry comes (or block_ms passes)
            acked, entries = await ops.xack_xreadgroup(
                stream, group, "c1", ">", ack=[first], count=10, block_ms=20
            )
        assert (acked, entries) == (0, [])  # already acked: counted 0
        # A refused ack is returned in place; the read goes on.
        acked, entries = await ops.xack_xreadgroup(stream, group, "c1", "0", ack=["bogus"], count=10)
        assert isinstance(acked, RedisCommandError)
        assert [e.id for e in entries] == [second]


async def test_scripts_survive_a_forgotten_cache(
    redis_server: RedisServer, flavour: Flavour, ns: str
) -> None:
    script = Script("redis.call('SET', KEYS[1], ARGV[1]) return {KEYS[1], ARGV[1], 3}")
    async with open_ops(redis_server.url, prefer=flavour.client) as ops:
        assert await ops.run_script(script, [f"{ns}:s"], [b"x"]) == [f"{ns}:s".encode(), b"x", 3]
        assert await ops.run_script(script, [f"{ns}:s"], ["y"]) == [f"{ns}:s".encode(), b"y", 3]
        assert await ops.get(f"{ns}:s") == b"y"
        with pytest.raises(RedisCommandError, match=r"nope|Unknown"):
            await ops.run_script(Script("return redis.call('nope')"), [], [])


async def test_pipeline_one_round_trip_and_errors_in_place(
    redis_server: RedisServer, flavour: Flavour, ns: str
) -> None:
    async with open_ops(redis_server.url, prefer=flavour.client) as ops:
        script = Script("return redis.call('GET', KEYS[1])")
        results = await ops.pipeline(
            [
                Set(f"{ns}:a", b"1", px=10_000),
                Set(f"{ns}:a", b"2", get=True),
                XAdd(f"{ns}:s", {"e": b"x"}, maxlen=100),
                Eval(Script("return redis.call('nope')"), [], []),
                Eval(script, [f"{ns}:a"], []),
                PExpire(f"{ns}:a", 10_000),
                Delete([f"{ns}:s"]),
            ]
        )
        assert results[0] is True
        assert results[1] == b"1"
        assert isinstance(results[2], str) and "-" in results[2]
        assert isinstance(results[3], RedisCommandError)  # only that slot failed
        assert results[4:] == [b"2", True, 1]
        assert await ops.pipeline([]) == []


async def test_publish_and_subscribe(redis_server: RedisServer, flavour: Flavour, ns: str) -> None:
    async with open_ops(redis_server.url, prefer=flavour.client) as ops:
        assert await ops.publish(f"{ns}:b", b"nobody") == 0
        async with ops.subscribe(f"{ns}:b") as messages:
            assert await ops.publish(f"{ns}:b", b"hello") == 1  # subscribed once entered
            with anyio.fail_after(PROMPT):
                async for message in messages:
                    assert message == b"hello"
                    break


async def test_redis_down_fails_fast_and_recovers(own_redis: RedisServer, flavour: Flavour, ns: str) -> None:
    async with open_ops(own_redis.url, prefer=flavour.client) as ops:
        await ops.set(f"{ns}:k", b"v")
        own_redis.kill()
        with anyio.fail_after(PROMPT):
            with pytest.raises(RedisUnavailable):
                await ops.get(f"{ns}:k")
            with pytest.raises(RedisUnavailable):
                await ops.xadd(f"{ns}:s", {"e": b"x"})
        own_redis.start()  # empty again, same port
        with anyio.fail_after(PROMPT):
            while True:  # the first command may meet the dead pooled connection
                try:
                    assert await ops.get(f"{ns}:k") is None
                    break
                except RedisUnavailable:
                    await anyio.sleep(0.01)
        with pytest.raises(NoGroup):  # the group went with the data
            await ops.xreadgroup(f"{ns}:s", "rpc", "c", ">", count=1)


async def test_subscription_ends_when_redis_dies(own_redis: RedisServer, flavour: Flavour, ns: str) -> None:
    """The iterator must end or raise, never hang: the adapter's supervisor resubscribes on that."""
    async with open_ops(own_redis.url, prefer=flavour.client) as ops:
        with anyio.fail_after(PROMPT):
            with pytest.raises(Exception):  # noqa: B017 (the client's own error, any)
                async with ops.subscribe(f"{ns}:b") as messages:
                    own_redis.kill()
                    async for _ in messages:
                        pass
                    raise RedisUnavailable("ended")


async def test_a_user_client_is_used_and_left_open(
    redis_server: RedisServer, flavour: Flavour, ns: str
) -> None:
    if flavour.client == "redis-py":
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(redis_server.url)
        async with open_ops(client=client) as ops:
            assert isinstance(ops, RedisPyOps)
            await ops.set(f"{ns}:u", b"1")
        assert await client.get(f"{ns}:u") == b"1"  # still open
        await client.aclose()
        decoding = redis.asyncio.Redis.from_url(redis_server.url, decode_responses=True)
        with pytest.raises(ValueError, match="decode_responses"):
            async with open_ops(client=decoding):
                pass
        await decoding.aclose()
    else:
        import coredis

        async with coredis.Redis.from_url(redis_server.url) as core:
            async with open_ops(client=core) as ops:
                assert isinstance(ops, CoredisOps)
                await ops.set(f"{ns}:u", b"1")
            assert await core.get(f"{ns}:u") == b"1"


async def test_bad_arguments(flavour: Flavour) -> None:
    with pytest.raises(TypeError, match="client"):
        async with open_ops(client=object()):
            pass
    with pytest.raises(ValueError, match="URL"):
        async with open_ops():
            pass
    if flavour.backend == "trio":
        with pytest.raises(RuntimeError, match="asyncio only"):
            async with open_ops("redis://127.0.0.1:1/0", prefer="redis-py"):
                pass
