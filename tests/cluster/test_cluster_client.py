"""A ClusterClient (a caller holding no station) reaches stations on two Servers (memory and real Redis)."""

from __future__ import annotations

from contextlib import AsyncExitStack

import anyio
import pytest

import ocpprpc
from ocpprpc import ClusterClient, OCPPError, SendStatus, StationNotConnected, v16
from ocpprpc._rpc.session import CallTimeout
from ocpprpc.cluster.adapter import ClusterUnavailable, Kind, NodeUnavailable, envelope
from ocpprpc.cluster.ops_open import ClientChoice
from tests.cluster.redis_server import RedisServer, command
from tests.cluster.test_adapter import MEDIA, Cluster, Medium
from tests.cluster.test_cluster_delivery import node, present, station_router
from tests.csms.helpers import ws_url

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(params=MEDIA, ids=str)
def medium(request: pytest.FixtureRequest) -> Medium:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def anyio_backend(medium: Medium) -> str:
    return medium.backend


REDIS_MEDIA = [medium for medium in MEDIA if medium.client is not None]


def client_choice(medium: Medium) -> ClientChoice:
    assert medium.client is not None
    return medium.client


async def client_of(c: Cluster, name: str = "api") -> ClusterClient:
    """Entered: on Redis from a URL (the client runs its own adapter); on memory over a node of the medium."""
    if c.medium.client is None:
        client = ClusterClient(await c.start(name), call_timeout=10.0, grace=0.5)
    else:
        client = ClusterClient(
            c.server.url, namespace=c.ns, prefer=client_choice(c.medium), call_timeout=10.0, grace=0.5
        )
    return await c.stack.enter_async_context(client)


async def test_a_client_reaches_stations_on_two_servers(
    medium: Medium, redis_server: RedisServer, ns: str
) -> None:
    async with AsyncExitStack() as stack:
        c = Cluster(medium, redis_server, ns, stack)
        a, da = await stack.enter_async_context(node(c, "a"))
        b, _ = await stack.enter_async_context(node(c, "b"))
        client = await client_of(c)
        await stack.enter_async_context(ocpprpc.connect(ws_url(a), "CP1", router=station_router()))
        await stack.enter_async_context(ocpprpc.connect(ws_url(b), "CP2", router=station_router()))
        await present(da, "CP1", "a")
        await present(da, "CP2", "b")

        assert (await client.where("CP1"), await client.where("CP404")) == (
            await da.adapter.presence("CP1"),
            None,
        )
        where = await client.where_many(["CP1", "CP2", "CP404"])
        assert {k: (v.node if v else None) for k, v in where.items()} == {
            "CP1": "a",
            "CP2": "b",
            "CP404": None,
        }
        assert await client.is_connected("CP2") and not await client.is_connected("CP404")

        assert await client.send_to_client("CP1", "Reset", {"type": "Soft"}) == {"status": "Accepted"}
        typed = await client.send_to_client("CP2", v16.ResetRequest(type=v16.ResetType.SOFT))
        assert typed == v16.ResetResponse(status=v16.GenericStatus.ACCEPTED)
        with pytest.raises(OCPPError) as refused:
            await client.send_to_client("CP2", "Reset", {"type": "Hard"})
        assert (refused.value.code.value, dict(refused.value.details)) == ("NotSupported", {"why": "policy"})
        with pytest.raises(CallTimeout):
            await client.send_to_client("CP1", "DataTransfer", {"vendorId": "x", "data": "2"}, timeout=0.2)
        with pytest.raises(StationNotConnected):
            await client.send_to_client("CP404", "Reset", {"type": "Soft"})

        outcome = await client.try_send_to_client("CP404", "Reset", {"type": "Soft"})
        assert outcome.status is SendStatus.NOT_CONNECTED and isinstance(outcome.error, StationNotConnected)
        refusal = await client.try_send_to_client("CP1", "Reset", {"type": "Hard"})
        assert refusal.status is SendStatus.ERROR
        outcomes = await client.broadcast(
            ["CP1", "CP2", "CP404", "CP1"], "Reset", {"type": "Soft"}, concurrency=2
        )
        assert {k: o.status for k, o in outcomes.items()} == {
            "CP1": SendStatus.OK,
            "CP2": SendStatus.OK,
            "CP404": SendStatus.NOT_CONNECTED,
        }
        # Many at once from the one client: every call answered.
        answers = await client.broadcast([f"CP{1 + i % 2}" for i in range(2)] * 1, "Reset", {"type": "Soft"})
        assert all(o.ok for o in answers.values())

        async def one(results: list[object]) -> None:
            results.append(await client.send_to_client("CP2", "Reset", {"type": "Soft"}))

        results: list[object] = []
        async with anyio.create_task_group() as group:
            for _ in range(50):
                group.start_soon(one, results)
        assert results == [{"status": "Accepted"}] * 50


async def test_a_node_that_is_gone_is_an_outcome_not_a_hang(
    medium: Medium, redis_server: RedisServer, ns: str
) -> None:
    """A presence naming a dead node: NodeUnavailable at once; in a broadcast, its own status."""
    async with AsyncExitStack() as stack:
        c = Cluster(medium, redis_server, ns, stack)
        a, da = await stack.enter_async_context(node(c, "a"))
        client = await client_of(c)
        await stack.enter_async_context(ocpprpc.connect(ws_url(a), "CP1", router=station_router()))
        await present(da, "CP1", "a")
        # A node that died holding CP9 (its presence outlives it until the TTL).
        ghost = c.adapter("ghost")
        async with ghost:
            await ghost.claim("CP9", "conn-1")
        with anyio.fail_after(3):
            with pytest.raises(NodeUnavailable, match="outcome unknown"):
                await client.send_to_client("CP9", "Reset", {"type": "Soft"})
            outcomes = await client.broadcast(["CP1", "CP9"], "Reset", {"type": "Soft"})
        assert outcomes["CP1"].ok and outcomes["CP9"].status is SendStatus.NODE_UNAVAILABLE
        assert not await client.is_connected("CP9")


async def test_a_call_addressed_to_a_client_is_refused_at_once(
    medium: Medium, redis_server: RedisServer, ns: str
) -> None:
    """A client holds no station: a CALL that reaches it anyway is answered 'not connected'."""
    async with AsyncExitStack() as stack:
        c = Cluster(medium, redis_server, ns, stack)
        raw = await c.start("raw")
        client = await client_of(c)
        call = envelope(Kind.CALL, "raw", "CP1", timeout=5, m="Reset", p={"type": "Soft"})
        await raw.deliver(client.node_id, call)
        await raw.deliver(client.node_id, envelope(Kind.RESULT, "raw", "CP1", timeout=5, corr="nobody", p={}))
        await raw.deliver(client.node_id, envelope(Kind.KICK, "raw", "CP1", timeout=5, conn="x"))
        with anyio.fail_after(5):
            reply = await raw.received.receive()
        assert (reply.k, reply.corr, reply.p) == (Kind.ERROR, call.id, {"kind": "not_connected"})


@pytest.mark.parametrize("medium", REDIS_MEDIA, ids=str)
async def test_a_url_client_leaves_nothing_in_redis(
    medium: Medium, redis_server: RedisServer, ns: str
) -> None:
    async with ClusterClient(redis_server.url, namespace=ns, prefer=client_choice(medium)) as client:
        assert not await client.is_connected("CP1")
        name = client.node_id
    keys = command(redis_server.port, "KEYS", f"*{ns}:{name}*")
    assert keys == b"*0\r\n"


@pytest.mark.parametrize("medium", REDIS_MEDIA, ids=str)
async def test_a_client_without_redis_fails_at_once(medium: Medium) -> None:
    with anyio.fail_after(10), pytest.raises(ClusterUnavailable):
        async with ClusterClient("redis://127.0.0.1:1/0", prefer=client_choice(medium)):
            pass  # pragma: no cover


def test_misuse_is_refused() -> None:
    from ocpprpc.cluster.memory import MemoryCluster

    with pytest.raises(ValueError, match="node_id"):
        ClusterClient(MemoryCluster().node("x"), node_id="y")
    with pytest.raises(ValueError, match="call_timeout"):
        ClusterClient("redis://127.0.0.1:1/0", call_timeout=0)
    with pytest.raises(RuntimeError, match="async with"):
        ClusterClient("redis://127.0.0.1:1/0").adapter  # noqa: B018
