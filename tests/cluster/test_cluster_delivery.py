"""Two Servers in one process, one cluster: any server reaches any station (memory and real Redis)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import pytest

import ocpprpc
from ocpprpc import CallContext, OCPPError, Router, SendStatus, StationNotConnected, v16
from ocpprpc._csms.cluster_caller import ClusterCaller, _Routes, error_from_reply
from ocpprpc._csms.cluster_delivery import ClusterDelivery, cluster_delivery
from ocpprpc._rpc.session import CallTimeout, InvalidResponseError
from ocpprpc._ws.transport import ConnectionLost
from ocpprpc.cluster.adapter import ClusterError, Envelope, Kind, NodeUnavailable, Presence, envelope
from ocpprpc.cluster.memory import MemoryCluster
from tests.cluster.redis_server import RedisServer
from tests.cluster.test_adapter import MEDIA, Cluster, Medium
from tests.csms.helpers import eventually, ws_url

pytestmark = pytest.mark.timeout(120)
PROMPT = 5.0


@pytest.fixture(params=MEDIA, ids=str)
def medium(request: pytest.FixtureRequest) -> Medium:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def anyio_backend(medium: Medium) -> str:
    return medium.backend


def station_router() -> Router:
    router = Router()

    @router.on("Reset")
    async def reset(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        if request["type"] == "Hard":
            raise OCPPError("NotSupported", "no hard resets", {"why": "policy"})
        return {"status": "Accepted"}

    @router.on("DataTransfer")
    async def slow(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        await anyio.sleep(float(request.get("data", "0")))
        return {"status": "Accepted"}

    return router


@asynccontextmanager
async def node(c: Cluster, name: str) -> AsyncIterator[tuple[ocpprpc.Server, ClusterDelivery]]:
    async with (
        ocpprpc.serve() as server,
        c.adapter(name) as adapter,
        cluster_delivery(server, adapter, call_timeout=10.0, grace=0.5) as delivery,
    ):
        yield server, delivery


async def present(delivery: ClusterDelivery, identity: str, node_id: str) -> None:
    async def check() -> bool:
        found = await delivery.adapter.presence(identity)
        return found is not None and found.node == node_id

    with anyio.fail_after(PROMPT):
        while not await check():  # noqa: ASYNC110 (the claim is another task's write)
            await anyio.sleep(0.01)


async def test_a_server_calls_a_station_held_by_another(
    medium: Medium, redis_server: RedisServer, ns: str
) -> None:
    async with AsyncExitStack() as stack:
        c = Cluster(medium, redis_server, ns, stack)
        a, da = await stack.enter_async_context(node(c, "a"))
        b, _ = await stack.enter_async_context(node(c, "b"))
        await stack.enter_async_context(ocpprpc.connect(ws_url(b), "CP1", router=station_router()))
        await stack.enter_async_context(ocpprpc.connect(ws_url(a), "CP2", router=station_router()))
        await present(da, "CP1", "b")
        await present(da, "CP2", "a")
        assert "CP1" not in a.clients

        assert await a.send_to_client("CP1", "Reset", {"type": "Soft"}) == {"status": "Accepted"}
        typed = await a.send_to_client("CP1", v16.ResetRequest(type=v16.ResetType.SOFT))
        assert typed == v16.ResetResponse(status=v16.GenericStatus.ACCEPTED)
        with pytest.raises(OCPPError) as refused:
            await a.send_to_client("CP1", "Reset", {"type": "Hard"})
        assert (refused.value.code.value, refused.value.description) == ("NotSupported", "no hard resets")
        assert dict(refused.value.details) == {"why": "policy"}
        with pytest.raises(CallTimeout):
            await a.send_to_client("CP1", "DataTransfer", {"vendorId": "x", "data": "2"}, timeout=0.2)
        with pytest.raises(StationNotConnected):
            await a.send_to_client("CP404", "Reset", {"type": "Soft"})

        outcomes = await b.broadcast(["CP1", "CP2", "CP404"], "Reset", {"type": "Soft"})
        assert [o.status for o in outcomes.values()] == [
            SendStatus.OK,
            SendStatus.OK,
            SendStatus.NOT_CONNECTED,
        ]


async def test_a_node_dying_mid_call_fails_the_caller_fast(
    medium: Medium, redis_server: RedisServer, ns: str
) -> None:
    """Every call waiting on the node fails fast; and again when it comes back and dies once more."""
    async with AsyncExitStack() as stack:
        c = Cluster(medium, redis_server, ns, stack)
        a, da = await stack.enter_async_context(node(c, "a"))

        async def run_b(
            scope: anyio.CancelScope, *, task_status: anyio.abc.TaskStatus[ocpprpc.Server]
        ) -> None:
            with scope:
                async with node(c, "b") as (b, _):
                    task_status.started(b)
                    await anyio.sleep_forever()

        async def caller(identity: str, failure: list[BaseException]) -> None:
            try:
                await a.send_to_client(identity, "DataTransfer", {"vendorId": "x", "data": "30"}, timeout=20)
            except NodeUnavailable as exc:
                failure.append(exc)

        for life in range(2):  # the second life is watched anew (the first watcher has ended)
            failure: list[BaseException] = []
            b_scope = anyio.CancelScope()
            # Other stations each life: the restarted b drains what the first life left
            # unacked, and may serve those calls again (their outcome was "unknown").
            first, second = f"CP{2 * life + 1}", f"CP{2 * life + 2}"
            async with anyio.create_task_group() as group:
                b = await group.start(run_b, b_scope)
                async with (
                    ocpprpc.connect(ws_url(b), first, router=station_router()),
                    ocpprpc.connect(ws_url(b), second, router=station_router()),
                ):
                    await present(da, first, "b")
                    await present(da, second, "b")
                    if life:  # alive again: calls go through
                        assert await a.send_to_client(first, "Reset", {"type": "Soft"}) == {
                            "status": "Accepted"
                        }
                    group.start_soon(caller, first, failure)
                    group.start_soon(caller, second, failure)
                    await eventually(lambda: len(da.caller.pending) == 2)
                    b_scope.cancel()  # node b goes away with the calls in flight
                    with anyio.fail_after(3):  # far below the calls' 20 s
                        while len(failure) < 2:  # noqa: ASYNC110
                            await anyio.sleep(0.01)
            assert all("outcome unknown" in str(exc) for exc in failure)


async def test_a_caller_needs_its_owner_serving() -> None:
    """Without the owner's task group for node watchers, a call says so instead of waiting unwatched."""
    cluster = MemoryCluster()
    async with cluster.node("a") as a, cluster.node("b"):
        caller = ClusterCaller(a, call_timeout=1.0)
        with pytest.raises(RuntimeError, match="not started"):
            await caller.call("CP1", "Reset", {}, None, presence=Presence("b", "c1", 1))
        assert caller.pending == {}


async def test_a_station_moving_to_another_node_is_evicted_there(
    medium: Medium, redis_server: RedisServer, ns: str
) -> None:
    async with AsyncExitStack() as stack:
        c = Cluster(medium, redis_server, ns, stack)
        a, da = await stack.enter_async_context(node(c, "a"))
        b, _ = await stack.enter_async_context(node(c, "b"))
        await stack.enter_async_context(ocpprpc.connect(ws_url(b), "CP1", router=station_router()))
        await present(da, "CP1", "b")
        await stack.enter_async_context(ocpprpc.connect(ws_url(a), "CP1", router=station_router()))
        await present(da, "CP1", "a")
        await eventually(lambda: "CP1" not in b.clients)  # kicked across nodes
        assert await b.send_to_client("CP1", "Reset", {"type": "Soft"}) == {"status": "Accepted"}


async def test_hostile_envelopes_are_answered_and_harm_nobody(
    medium: Medium, redis_server: RedisServer, ns: str
) -> None:
    async with AsyncExitStack() as stack:
        c = Cluster(medium, redis_server, ns, stack)
        a, da = await stack.enter_async_context(node(c, "a"))
        b, _ = await stack.enter_async_context(node(c, "b"))
        raw = await c.start("raw")  # a bare node: sends what it likes, reads the replies
        await stack.enter_async_context(ocpprpc.connect(ws_url(b), "CP1", router=station_router()))
        await present(da, "CP1", "b")

        async def ask(dst: str, action: str, payload: Any) -> Envelope:
            env = envelope(Kind.CALL, "raw", dst, timeout=5, m=action, p=payload)
            await raw.deliver("b", env)
            with anyio.fail_after(PROMPT):
                reply = await raw.received.receive()
            assert reply.corr == env.id
            return reply

        assert (await ask("CP404", "Reset", {"type": "Soft"})).p == {"kind": "not_connected"}
        unknown = await ask("CP1", "NoSuchAction", {})
        assert (unknown.k, unknown.p["kind"], unknown.p["code"]) == (Kind.ERROR, "ocpp", "NotImplemented")
        for payload in ("not an object", [1, 2], 7):
            junk = await ask("CP1", "Reset", payload)
            assert junk.k is Kind.ERROR and junk.p["kind"] in {"ocpp", "failed"}
        assert (await ask("CP1", "", {})).k is Kind.ERROR
        # Expired, stray results and kicks for connections nobody has: no answer, no harm.
        await raw.deliver("b", envelope(Kind.CALL, "raw", "CP1", timeout=-1, m="Reset", p={"type": "Soft"}))
        await raw.deliver("b", envelope(Kind.RESULT, "raw", "CP1", timeout=5, corr="nobody", p={}))
        await raw.deliver("b", envelope(Kind.KICK, "raw", "CP1", timeout=5, conn="not-its-connection"))
        with anyio.move_on_after(0.3):
            stray = await raw.received.receive()
            pytest.fail(f"unexpected reply {stray}")
        assert "CP1" in b.clients  # still connected, still served
        assert await a.send_to_client("CP1", "Reset", {"type": "Soft"}) == {"status": "Accepted"}


def test_error_replies_become_the_local_exceptions() -> None:
    def error(detail: Any) -> Exception:
        return error_from_reply("CP1", "Reset", "id-1", 5.0, detail)

    ocpp = error({"kind": "ocpp", "code": "FormationViolation", "description": "bad", "details": {"a": 1}})
    assert isinstance(ocpp, OCPPError) and ocpp.description == "bad" and dict(ocpp.details) == {"a": 1}
    assert isinstance(error({"kind": "not_connected"}), StationNotConnected)
    assert isinstance(error({"kind": "timeout"}), CallTimeout)
    assert isinstance(error({"kind": "connection_lost", "description": "gone"}), ConnectionLost)
    invalid = error({"kind": "invalid_response", "code": "TypeConstraintViolation", "description": "x"})
    assert isinstance(invalid, InvalidResponseError)
    assert "could not make the call" in str(error({"kind": "failed", "description": "boom"}))
    garbage: list[Any] = [None, "text", [], {"kind": "ocpp", "code": "NoSuch"}, {"kind": "invalid_response"}]
    for detail in [*garbage, {}]:
        assert type(error(detail)) is ClusterError


async def test_a_burst_of_concurrent_cross_node_calls(
    medium: Medium, redis_server: RedisServer, ns: str
) -> None:
    """More callers at once than the client pools hold connections: every call is answered."""
    async with AsyncExitStack() as stack:
        c = Cluster(medium, redis_server, ns, stack)
        a, da = await stack.enter_async_context(node(c, "a"))
        b, _ = await stack.enter_async_context(node(c, "b"))
        await stack.enter_async_context(ocpprpc.connect(ws_url(b), "CP1", router=station_router()))
        await present(da, "CP1", "b")
        answers: list[Any] = []

        async def one() -> None:
            answers.append(await a.send_to_client("CP1", "Reset", {"type": "Soft"}))

        async with anyio.create_task_group() as group:
            for _ in range(150):
                group.start_soon(one)
        assert answers == [{"status": "Accepted"}] * 150


async def test_calls_from_other_nodes_beyond_the_concurrency_wait_their_turn(
    medium: Medium, redis_server: RedisServer, ns: str
) -> None:
    """At most *concurrency* served at once; the rest queue for a free worker, and every one is answered."""
    in_flight, peak = 0, 0
    router = Router()

    @router.on("DataTransfer")
    async def slow(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await anyio.sleep(0.05)
        in_flight -= 1
        return {"status": "Accepted"}

    async with AsyncExitStack() as stack:
        c = Cluster(medium, redis_server, ns, stack)
        a, da = await stack.enter_async_context(node(c, "a"))
        b = await stack.enter_async_context(ocpprpc.serve())
        await stack.enter_async_context(
            cluster_delivery(b, await stack.enter_async_context(c.adapter("b")), concurrency=2)
        )
        identities = [f"CP{i}" for i in range(5)]
        for identity in identities:
            await stack.enter_async_context(ocpprpc.connect(ws_url(b), identity, router=router))
            await present(da, identity, "b")
        answers: list[Any] = []

        async def one(identity: str) -> None:
            answers.append(await a.send_to_client(identity, "DataTransfer", {"vendorId": "x"}))

        for _ in range(2):  # the second round is served by the workers the first one left
            async with anyio.create_task_group() as group:
                for identity in identities:
                    group.start_soon(one, identity)
        assert answers == [{"status": "Accepted"}] * 10
        assert peak == 2
    with pytest.raises(ValueError, match="concurrency"):
        ClusterDelivery(b, da.adapter, concurrency=0)


def counting_router(calls: list[str], name: str) -> Router:
    """Answers Reset and records which connection answered."""
    router = Router()

    @router.on("Reset")
    async def reset(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        calls.append(name)
        return {"status": "Accepted"}

    return router


async def test_a_remembered_route_to_a_station_that_moved_is_asked_again(
    medium: Medium, redis_server: RedisServer, ns: str
) -> None:
    """The station moved to another node: answered there, and called exactly once per call."""
    async with AsyncExitStack() as stack:
        c = Cluster(medium, redis_server, ns, stack)
        a, da = await stack.enter_async_context(node(c, "a"))
        b, _ = await stack.enter_async_context(node(c, "b"))
        d, _ = await stack.enter_async_context(node(c, "d"))
        da.caller._routes = _Routes(3600)  # remembered for the whole test
        calls: list[str] = []
        on_b, on_d = counting_router(calls, "on b"), counting_router(calls, "on d")
        await stack.enter_async_context(ocpprpc.connect(ws_url(b), "CP1", router=on_b))
        await present(da, "CP1", "b")
        assert await a.send_to_client("CP1", "Reset", {"type": "Soft"}) == {"status": "Accepted"}
        await stack.enter_async_context(ocpprpc.connect(ws_url(d), "CP1", router=on_d))
        await present(da, "CP1", "d")
        await eventually(lambda: "CP1" not in b.clients)  # kicked across nodes
        # a still remembers b: b answers "not connected" without calling, a asks presence again.
        assert await a.send_to_client("CP1", "Reset", {"type": "Soft"}) == {"status": "Accepted"}
        assert await a.send_to_client("CP1", "Reset", {"type": "Soft"}) == {"status": "Accepted"}
        assert calls == ["on b", "on d", "on d"]


async def test_a_remembered_route_to_a_node_that_died_is_asked_again(
    medium: Medium, redis_server: RedisServer, ns: str
) -> None:
    async with AsyncExitStack() as stack:
        c = Cluster(medium, redis_server, ns, stack)
        a, da = await stack.enter_async_context(node(c, "a"))
        da.caller._routes = _Routes(3600)
        d, _ = await stack.enter_async_context(node(c, "d"))
        calls: list[str] = []
        async with (
            node(c, "b") as (b, _),
            ocpprpc.connect(ws_url(b), "CP1", router=counting_router(calls, "on b")),
        ):
            await present(da, "CP1", "b")
            assert await a.send_to_client("CP1", "Reset", {"type": "Soft"}) == {"status": "Accepted"}
        # b is gone (its liveness with it); the station comes back on d, a still remembers b.
        await stack.enter_async_context(
            ocpprpc.connect(ws_url(d), "CP1", router=counting_router(calls, "on d"))
        )
        await present(da, "CP1", "d")
        assert await a.send_to_client("CP1", "Reset", {"type": "Soft"}) == {"status": "Accepted"}
        assert calls == ["on b", "on d"]


@pytest.mark.parametrize("route_ttl", [0.0, 3600.0])
async def test_a_station_that_left_is_not_connected_remembered_or_not(
    medium: Medium, redis_server: RedisServer, ns: str, route_ttl: float
) -> None:
    async with AsyncExitStack() as stack:
        c = Cluster(medium, redis_server, ns, stack)
        a, da = await stack.enter_async_context(node(c, "a"))
        da.caller._routes = _Routes(route_ttl)
        b, _ = await stack.enter_async_context(node(c, "b"))
        async with ocpprpc.connect(ws_url(b), "CP1", router=station_router()):
            await present(da, "CP1", "b")
            assert await a.send_to_client("CP1", "Reset", {"type": "Soft"}) == {"status": "Accepted"}
        await eventually(lambda: "CP1" not in b.clients)
        for _ in range(2):  # the stale route is dropped; presence then says nobody
            with pytest.raises(StationNotConnected):
                await a.send_to_client("CP1", "Reset", {"type": "Soft"})


def test_routes_are_bounded_fenced_and_expire() -> None:
    routes = _Routes(60, size=2)
    one, two, three = (Presence(node, "conn", 1) for node in ("n1", "n2", "n3"))
    routes.put("CP1", one)
    routes.put("CP2", two)
    routes.put("CP3", three)  # the oldest goes
    assert (routes.get("CP1"), routes.get("CP2"), routes.get("CP3")) == (None, two, three)
    routes.forget("CP2", one)  # a newer route than the one that failed is kept
    assert routes.get("CP2") == two
    routes.forget("CP2", two)
    assert routes.get("CP2") is None
    routes._entries["CP3"] = (time.monotonic() - 1, three)  # expired
    assert routes.get("CP3") is None
    routes.forget("CP9", None)
    _Routes(0).put("CP1", one)
