"""The Redis adapter on a real 3-primary Redis Cluster: redis-py on asyncio, coredis on both.

Every node is given the address of the first primary only; the keys of its tests live on
all three (a node's inbox and liveness key share a slot, a presence and its token share
another), so slot redirection is exercised throughout and checked where it matters.
"""

from __future__ import annotations

import json
import runpy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

import ocpprpc
from ocpprpc import ClusterClient, cluster_delivery
from ocpprpc.cluster.adapter import ClaimStatus, Kind, envelope
from ocpprpc.cluster.ops import RedisUnavailable
from ocpprpc.cluster.ops_coredis import CoredisOps
from ocpprpc.cluster.ops_open import open_ops
from ocpprpc.cluster.ops_redispy import RedisPyOps
from ocpprpc.cluster.redis_adapter import RedisAdapter
from ocpprpc.cluster.redis_scripts import REFRESH_BATCH
from tests.cluster.conftest import FLAVOURS, Flavour
from tests.cluster.redis_server import RedisClusterServers, RedisServer
from tests.cluster.test_cli_cluster import call as cli_call
from tests.cluster.test_cluster_delivery import present, station_router
from tests.cluster.test_redis_adapter import PROMPT, call, until
from tests.csms.helpers import ws_url

#: coredis 6.9's sharded subscription, ended by Redis (its connection killed, its slot moved),
#: leaves its pool's ``acquire`` generator unfinished (a ResourceWarning when collected):
#: theirs; the resubscription is ours.
pytestmark = pytest.mark.filterwarnings(
    r"ignore:Exception ignored in. <async_generator object ClusterConnectionPool.acquire"
    ":pytest.PytestUnraisableExceptionWarning"
)


@pytest.fixture
def anyio_backend(flavour: Flavour) -> str:
    return flavour.backend


def node(
    cluster: RedisClusterServers, flavour: Flavour, ns: str, node_id: str, **options: Any
) -> RedisAdapter:
    # A liveness TTL of 3 s: nothing here waits on a heartbeat, and a loaded machine stalls.
    options = {"heartbeat": 1.0, "block": 0.2, **options}
    return RedisAdapter(cluster.url, node_id=node_id, namespace=ns, prefer=flavour.client, **options)


def slot(cluster: RedisClusterServers, key: str) -> int:
    return int(cluster.nodes[0].command("CLUSTER", "KEYSLOT", key)[1:].strip())


def name_on(cluster: RedisClusterServers, owner: RedisServer, key_of: Callable[[str], str]) -> str:
    """A name whose key (``key_of(name)``) lives on *owner*."""
    return next(f"n{i}" for i in range(1000) if cluster.slot_owner(slot(cluster, key_of(f"n{i}"))) is owner)


async def test_cross_node_delivery_and_reply_through_slot_redirection(
    redis_cluster: RedisClusterServers, flavour: Flavour, ns: str
) -> None:
    first, third = redis_cluster.nodes[0], redis_cluster.nodes[2]
    probe = RedisAdapter(redis_cluster.url, node_id="probe", namespace=ns)
    a_name = name_on(redis_cluster, first, probe.inbox_key)
    b_name = name_on(redis_cluster, third, probe.inbox_key)  # a primary no node was told about
    async with (
        node(redis_cluster, flavour, ns, a_name) as a,
        node(redis_cluster, flavour, ns, b_name) as b,
    ):
        assert a.ops.cluster and isinstance(a.ops, RedisPyOps if flavour.client == "redis-py" else CoredisOps)
        request = call(a_name, "CP1")
        await a.deliver(b_name, request)
        with anyio.fail_after(PROMPT):
            assert await b.received.receive() == request
        reply = envelope(Kind.RESULT, b_name, a_name, timeout=30, corr=request.id, p={"status": "Accepted"})
        await b.deliver(a_name, reply)
        with anyio.fail_after(PROMPT):
            assert await a.received.receive() == reply
        # b's inbox and liveness key are on the third primary, which answered; the first redirects.
        assert third.command("XLEN", b.inbox_key(b_name)) == b":1\r\n"
        assert third.command("EXISTS", b.alive_key(b_name)) == b":1\r\n"
        assert first.command("XLEN", b.inbox_key(b_name)).startswith(b"-MOVED")
        assert await a.node_alive(b_name) and not await a.node_alive("nobody")


async def test_presence_claim_takeover_and_eviction(
    redis_cluster: RedisClusterServers, flavour: Flavour, ns: str
) -> None:
    async with (
        node(redis_cluster, flavour, ns, "a", heartbeat=60) as a,
        node(redis_cluster, flavour, ns, "b") as b,
    ):
        stations = [f"CP{i}" for i in range(30)]  # spread over all three primaries
        assert {id(redis_cluster.slot_owner(slot(redis_cluster, a.presence_key(s)))) for s in stations} == {
            id(server) for server in redis_cluster.nodes
        }
        for identity in stations:
            assert (await a.claim(identity, f"conn-{identity}")).status is ClaimStatus.CLAIMED
        found = await b.presences([*stations, "CP404"])  # one lookup across slots
        assert found["CP404"] is None
        assert all(p is not None and (p.node, p.conn) == ("a", f"conn-{i}") for i, p in found.items() if p)

        refused = await b.claim("CP1", "conn-b", takeover=False)
        assert refused.status is ClaimStatus.LOST and refused.holder.node == "a"
        taken = await b.claim("CP1", "conn-b")
        assert taken.status is ClaimStatus.TAKEN_OVER and taken.previous is not None
        assert taken.previous.node == "a" and taken.holder.token > taken.previous.token
        assert await a.release("CP1", "conn-CP1") is False  # fenced: b's claim stays
        assert (await a.presence("CP1")) == taken.holder

        assert await b.claim("CP2", "conn-b2") is not None  # a learns it on its next refresh
        a._claims["CP1"] = "conn-CP1"  # as if a had not released it: refreshing finds it lost too
        assert sorted(await a.refresh()) == ["CP1", "CP2"]
        kicks = {(await a.received.receive()).dst for _ in range(2)}
        assert kicks == {"CP1", "CP2"}
        assert await b.release("CP1", "conn-b") is True
        assert await a.presence("CP1") is None


async def test_broadcast_reaches_every_node_and_junk_is_dropped(
    redis_cluster: RedisClusterServers, flavour: Flavour, ns: str
) -> None:
    async with (
        node(redis_cluster, flavour, ns, "a") as a,
        node(redis_cluster, flavour, ns, "b") as b,
        node(redis_cluster, flavour, ns, "c") as c,
    ):
        await a.ops.publish(a.channel, b"not an envelope")  # sharded: SPUBLISH on the channel's shard
        message = envelope(Kind.BROADCAST, "a", "*", timeout=30, m="Ping")
        await a.broadcast(message)
        with anyio.fail_after(PROMPT):
            assert await b.received.receive() == message
            assert await c.received.receive() == message
        assert (await b.metrics()).malformed == 1 and (await c.metrics()).broadcasts_received == 1
        # The channel has one shard: a plain PUBLISH reaches no sharded subscriber.
        owner = redis_cluster.slot_owner(slot(redis_cluster, a.channel))
        assert owner.command("PUBSUB", "SHARDNUMSUB", a.channel).endswith(b":3\r\n")


async def test_a_lost_sharded_subscription_is_made_again(
    redis_cluster: RedisClusterServers, flavour: Flavour, ns: str
) -> None:
    async with node(redis_cluster, flavour, ns, "a") as a, node(redis_cluster, flavour, ns, "b") as b:
        owner = redis_cluster.slot_owner(slot(redis_cluster, a.channel))
        killed = owner.command("CLIENT", "KILL", "TYPE", "pubsub")
        assert int(killed[1:]) >= 2  # a's and b's (coredis may restore one itself, with its retry policy)

        async def heard() -> bool:
            await a.broadcast(envelope(Kind.BROADCAST, "a", "*", timeout=30, m="Ping"))
            with anyio.move_on_after(0.1):
                return (await b.received.receive()).k is Kind.BROADCAST
            return False

        await until(heard)


async def test_broadcast_follows_its_channel_when_the_slot_moves(
    redis_cluster: RedisClusterServers, flavour: Flavour, ns: str
) -> None:
    """The channel's slot is given to another primary: the subscriptions follow it (SUNSUBSCRIBE, anew)."""
    async with node(redis_cluster, flavour, ns, "a") as a, node(redis_cluster, flavour, ns, "b") as b:
        channel_slot = slot(redis_cluster, a.channel)
        source = redis_cluster.slot_owner(channel_slot)
        target = next(server for server in redis_cluster.nodes if server is not source)
        try:
            move_slot(redis_cluster, channel_slot, target)

            async def heard() -> bool:
                await a.broadcast(envelope(Kind.BROADCAST, "a", "*", timeout=30, m="Ping"))
                with anyio.move_on_after(0.1):
                    return (await b.received.receive()).k is Kind.BROADCAST
                return False

            await until(heard)
            assert target.command("PUBSUB", "SHARDNUMSUB", a.channel).endswith(b":2\r\n")
        finally:
            move_slot(redis_cluster, channel_slot, source)


def move_slot(cluster: RedisClusterServers, moved: int, to: RedisServer) -> None:
    """Give an empty slot to *to*: CLUSTER SETSLOT ... NODE on every primary, the new owner first."""
    owner_id = to.command("CLUSTER", "MYID").split(b"\r\n")[1].decode()
    for server in sorted(cluster.nodes, key=lambda server: server is not to):
        assert server.command("CLUSTER", "SETSLOT", str(moved), "NODE", owner_id).startswith(b"+OK")


async def test_refreshing_more_than_one_batch_of_claims(
    redis_cluster: RedisClusterServers, flavour: Flavour, ns: str
) -> None:
    async with (
        node(redis_cluster, flavour, ns, "a", heartbeat=60) as a,
        node(redis_cluster, flavour, ns, "b") as b,
    ):
        identities = [f"CP{i}" for i in range(REFRESH_BATCH + 7)]
        a._claims.update({identity: f"conn-{identity}" for identity in identities})
        assert await a.refresh() == []  # all free: claimed, one script per identity, pipelined
        before = await a.presences(identities)
        await b.claim("CP3", "elsewhere")
        await a.ops.delete([a.presence_key("CP5"), a.presence_key("CP6")])  # expired
        assert await a.refresh() == ["CP3"]
        after = await a.presences(identities)
        assert after["CP3"] is not None and after["CP3"].node == "b"
        assert after["CP5"] is not None and after["CP5"].token > before["CP5"].token  # type: ignore[union-attr]
        assert all(after[i] == before[i] for i in identities if i not in ("CP3", "CP5", "CP6"))
        with anyio.fail_after(PROMPT):
            assert (await a.received.receive()).dst == "CP3"


async def test_a_burst_of_lookups_waits_its_turn(
    redis_cluster: RedisClusterServers, flavour: Flavour, ns: str
) -> None:
    """More commands at once than a node's pool holds (64): they wait, none fails (redis-py's would)."""
    async with node(redis_cluster, flavour, ns, "a") as a:
        await a.claim("CP1", "conn-1")
        found: list[Any] = []

        async def lookup() -> None:
            found.append(await a.presence("CP1"))

        async with anyio.create_task_group() as group:
            for _ in range(300):
                group.start_soon(lookup)
        assert len(found) == 300 and all(p is not None and p.conn == "conn-1" for p in found)


async def test_a_redis_url_naming_a_cluster_node_is_opened_in_cluster_mode(
    redis_cluster: RedisClusterServers, flavour: Flavour, ns: str
) -> None:
    plain = redis_cluster.nodes[1].url  # redis://...: INFO cluster says cluster_enabled:1
    async with open_ops(plain, prefer=flavour.client) as ops:
        assert ops.cluster
        await ops.set(f"{ns}:{{x}}", b"1")
        assert await ops.mget([f"{ns}:{{x}}", f"{ns}:{{y}}", f"{ns}:{{z}}"]) == [b"1", None, None]


async def test_on_the_users_own_cluster_client(
    redis_cluster: RedisClusterServers, flavour: Flavour, ns: str
) -> None:
    seed = redis_cluster.nodes[0]
    if flavour.client == "redis-py":
        from redis.asyncio.cluster import RedisCluster

        client: Any = RedisCluster(host="127.0.0.1", port=seed.port)
    else:
        import coredis

        client = coredis.RedisCluster("127.0.0.1", seed.port)
        await client.__aenter__()
    try:
        async with (
            RedisAdapter(client=client, node_id="a", namespace=ns, heartbeat=1.0) as a,
            RedisAdapter(client=client, node_id="b", namespace=ns, heartbeat=1.0) as b,
        ):
            assert a.ops.cluster
            env = call("a")
            await a.deliver("b", env)
            with anyio.fail_after(PROMPT):
                assert await b.received.receive() == env
    finally:
        if flavour.client == "redis-py":
            await client.aclose()
        else:
            await client.__aexit__(None, None, None)


async def test_a_cluster_client_calls_a_station_on_a_server_node(
    redis_cluster: RedisClusterServers, flavour: Flavour, ns: str
) -> None:
    """ClusterClient from a ``redis+cluster://`` URL reaches a station on a server joined the same way."""
    async with (
        ocpprpc.serve() as server,
        node(redis_cluster, flavour, ns, "a") as adapter,
        cluster_delivery(server, adapter, call_timeout=10.0, grace=0.5) as delivery,
        ocpprpc.connect(ws_url(server), "CP1", router=station_router()),
        ClusterClient(redis_cluster.url, namespace=ns, prefer=flavour.client, call_timeout=10.0) as client,
    ):
        await present(delivery, "CP1", "a")
        assert await client.is_connected("CP1") and not await client.is_connected("CP404")
        assert await client.send_to_client("CP1", "Reset", {"type": "Soft"}) == {"status": "Accepted"}


@pytest.mark.parametrize("flavour", [FLAVOURS[-1]], ids=str, indirect=True)  # one subprocess is enough
async def test_the_call_cli_on_a_redis_cluster(
    redis_cluster: RedisClusterServers, flavour: Flavour, ns: str
) -> None:
    """``python -m ocpprpc call --cluster redis+cluster://...`` (asyncio: redis-py) to a trio+coredis node."""
    async with (
        ocpprpc.serve() as server,
        node(redis_cluster, flavour, ns, "a") as adapter,
        cluster_delivery(server, adapter, call_timeout=10.0, grace=0.5) as delivery,
        ocpprpc.connect(ws_url(server), "CP1", router=station_router()),
    ):
        await present(delivery, "CP1", "a")
        args = ["--cluster", redis_cluster.url, "--cluster-namespace", ns, "--backend", "asyncio"]
        answered = await cli_call(*args, "CP1", "Reset", '{"type": "Soft"}')
        assert (answered.returncode, json.loads(answered.stdout)) == (0, {"status": "Accepted"})


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+cluster://127.0.0.1:7000/3", "Redis Cluster has only database 0"),
        ("redis+cluster:///0", "names no host"),
        ("redis+clusters://127.0.0.1:7000", "expected redis://HOST:PORT"),
        ("redis+cluster://127.0.0.1:70000", "Port out of range"),
        ("redis+cluster://127.0.0.1:7000/#x", "has a #fragment"),
        ("redis+cluster://127.0.0.1:7000\n", "control characters"),
    ],
)
def test_a_bad_cluster_url_is_a_clear_value_error(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=f"not a usable Redis URL: .*{problem}"):
        RedisAdapter(url, node_id="a")
    with pytest.raises(ValueError, match=problem):
        ClusterClient(url)


async def test_an_unreachable_cluster_fails_the_start(flavour: Flavour, ns: str) -> None:
    from ocpprpc.cluster.adapter import ClusterUnavailable

    with anyio.fail_after(PROMPT), pytest.raises(ClusterUnavailable, match="Redis unavailable"):
        async with RedisAdapter(
            "redis+cluster://127.0.0.1:1", node_id="a", namespace=ns, prefer=flavour.client
        ):
            pass


async def test_the_docs_example(
    redis_cluster: RedisClusterServers, flavour: Flavour, ns: str, capsys: pytest.CaptureFixture[str]
) -> None:
    example = Path(__file__).parent.parent.parent / "docs" / "examples" / "redis_cluster.py"
    await runpy.run_path(str(example))["main"](redis_cluster.url, namespace=ns)
    assert capsys.readouterr().out == "CP1 is held by csms-1\nCP1 answered: Accepted\n"


async def test_url_options_on_a_coredis_cluster_are_refused_not_ignored(flavour: Flavour) -> None:
    url = "redis+cluster://127.0.0.1:1?ssl_cert_reqs=none"
    if flavour.client == "coredis":
        with pytest.raises(ValueError, match=r"URL options \(\?\.\.\.\) are not read"):
            async with open_ops(url, prefer=flavour.client):
                pass
    else:  # redis-py reads them (and finds nothing listening)
        with pytest.raises(RedisUnavailable):
            async with open_ops(url, prefer=flavour.client) as ops:
                await ops.ping()
