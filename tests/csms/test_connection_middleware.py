"""Connection middleware: checks during the HTTP upgrade, after admission and routing, before auth.

Real CSMS on loopback (both backends, both TCP streams): middleware that
rejects, adds state, raises, returns nonsense or hangs, each next to a
neighbour station that must not notice.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio
import pytest

import ocpprpc
from ocpprpc import (
    Accept,
    AdmissionPolicy,
    CallContext,
    HandshakeRejected,
    Reject,
    Route,
    Router,
    SecurityEvent,
    SecurityEvents,
    StationRequest,
    UpgradeContext,
)

from .helpers import eventually

pytestmark = pytest.mark.timeout(30)


class Recorder:
    def __init__(self) -> None:
        self.hub = SecurityEvents()
        self.events: list[SecurityEvent] = []
        self.hub.subscribe(self.events.append)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [json.loads(event.to_json()) for event in self.events if event.kind == kind]


def heartbeat_router() -> Router:
    router = Router()

    @router.on("Heartbeat")
    def heartbeat(request: Any, ctx: CallContext) -> dict[str, Any]:
        return {"currentTime": "2026-01-01T00:00:00Z"}

    return router


async def refused(url: str, identity: str, **options: Any) -> HandshakeRejected:
    with pytest.raises(HandshakeRejected) as caught:
        async with ocpprpc.connect(url, identity, **options):
            pass
    return caught.value


async def test_a_middleware_rejects_with_its_status_before_auth() -> None:
    asked: list[str] = []
    recorder = Recorder()

    async def need_token(conn: UpgradeContext) -> Reject | None:
        if conn.header("X-Api-Token") != "t0k3n":
            return Reject(403, "missing or wrong X-Api-Token")
        return None

    async def auth(request: StationRequest) -> None:
        asked.append(request.identity)

    async with ocpprpc.serve(
        router=heartbeat_router(), auth=auth, connection_middleware=[need_token], security_events=recorder.hub
    ) as server:
        url = f"ws://127.0.0.1:{server.port}/ocpp"
        async with ocpprpc.connect(url, "NEIGHBOUR", headers={"X-Api-Token": "t0k3n"}) as neighbour:
            rejection = await refused(url, "CP1")
            assert rejection.status == 403 and b"X-Api-Token" in rejection.body
            assert asked == ["NEIGHBOUR"]  # auth never saw the refused request
            assert await neighbour.call("Heartbeat", {})
    [event] = recorder.of("connection_refused")
    assert (event["refusal"], event["status"], event["identity"], event["peer"], event["route"]) == (
        "middleware",
        403,
        "CP1",
        "127.0.0.1",
        None,
    )
    assert event["reason"] == "missing or wrong X-Api-Token"


async def test_order_server_then_route_and_the_first_reject_ends_the_chain() -> None:
    calls: list[str] = []

    def recording(name: str, verdict: Reject | None = None) -> Any:
        async def mw(conn: UpgradeContext) -> Reject | None:
            calls.append(name)
            return verdict

        return mw

    routes = [
        Route("/deny/{identity}", connection_middleware=[recording("deny", Reject(451)), recording("never")]),
        Route("/{identity}", connection_middleware=[recording("route")]),
    ]
    recorder = Recorder()
    async with ocpprpc.serve(
        routes=routes,
        connection_middleware=[recording("server1"), recording("server2")],
        security_events=recorder.hub,
    ) as server:
        base = f"ws://127.0.0.1:{server.port}"
        async with ocpprpc.connect(base, "CP1"):
            pass
        assert calls == ["server1", "server2", "route"]
        calls.clear()
        assert (await refused(f"{base}/deny", "CP1")).status == 451
        assert calls == ["server1", "server2", "deny"]
        calls.clear()
        # Routing first: a path no route matches never reaches the middleware.
        assert (await refused(f"{base}/a/b", "CP1")).status == 404
        assert calls == []
    [event] = [e for e in recorder.of("connection_refused") if e["refusal"] == "middleware"]
    assert (event["status"], event["route"]) == (451, "/deny/{identity}")


async def test_admission_comes_first() -> None:
    calls: list[str] = []

    async def mw(conn: UpgradeContext) -> None:
        calls.append(conn.identity)

    policy = AdmissionPolicy(deny_ips=["127.0.0.0/8"])
    async with ocpprpc.serve(connection_middleware=[mw], admission=policy) as server:
        assert (await refused(f"ws://127.0.0.1:{server.port}", "CP1")).status == 403
    assert calls == []


async def test_state_reaches_auth_and_seeds_session_data() -> None:
    seen: dict[str, Any] = {}

    async def tenant_from_header(conn: UpgradeContext) -> None:
        seen["ctx"] = (conn.peer, conn.route, dict(conn.params), conn.identity)
        seen["headers"] = conn.headers
        conn.state["tenant"] = conn.header("x-tenant")
        conn.state["source"] = "middleware"

    async def auth(request: StationRequest) -> Accept:
        seen["auth_state"] = dict(request.state)
        return Accept(data={"source": "auth"})  # Accept.data wins on a conflict

    router = Router()

    @router.on("Heartbeat")
    def heartbeat(request: Any, ctx: CallContext) -> dict[str, Any]:
        seen["data"] = dict(ctx.session.data)
        return {"currentTime": "2026-01-01T00:00:00Z"}

    route = Route("/ocpp/{site}/{identity}")
    async with ocpprpc.serve(
        router=router, auth=auth, routes=[route], connection_middleware=[tenant_from_header]
    ) as server:
        url = f"ws://127.0.0.1:{server.port}/ocpp/north"
        async with ocpprpc.connect(url, "CP1", headers={"X-Tenant": "acme"}) as station:
            await station.call("Heartbeat", {})
    assert seen["ctx"] == ("127.0.0.1", route, {"site": "north", "identity": "CP1"}, "CP1")
    assert (b"x-tenant", b"acme") in seen["headers"]
    assert seen["auth_state"] == {"tenant": "acme", "source": "middleware"}
    assert seen["data"] == {"tenant": "acme", "source": "auth"}


@pytest.mark.parametrize("failure", ["raises", "returns nonsense"])
async def test_a_failing_middleware_costs_500_logged_once_and_spares_others(
    failure: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "ocpprpc.server")
    recorder = Recorder()

    async def buggy(conn: UpgradeContext) -> Any:
        if conn.identity == "NEIGHBOUR":
            return None
        if failure == "raises":
            raise KeyError("tenant")
        return "yes please"

    async with ocpprpc.serve(
        router=heartbeat_router(), connection_middleware=[buggy], security_events=recorder.hub
    ) as server:
        url = f"ws://127.0.0.1:{server.port}"
        async with ocpprpc.connect(url, "NEIGHBOUR") as neighbour:
            for _ in range(3):
                assert (await refused(url, "CP1")).status == 500
                assert await neighbour.call("Heartbeat", {})
            assert list(server.clients) == ["NEIGHBOUR"]
    failures = [r for r in caplog.records if r.getMessage().startswith("connection middleware")]
    assert [r.levelno for r in failures] == [logging.ERROR, logging.DEBUG, logging.DEBUG]
    assert failures[0].exc_info is not None
    events = recorder.of("connection_refused")
    assert [(e["refusal"], e["status"]) for e in events] == [("middleware", 500)] * 3
    assert "buggy" in events[0]["reason"]


async def test_a_hanging_middleware_is_bounded_by_the_handshake_timeout() -> None:
    recorder = Recorder()
    auth_asked: list[str] = []

    async def hangs(conn: UpgradeContext) -> None:
        if conn.identity != "NEIGHBOUR":
            await anyio.sleep_forever()

    async def auth(request: StationRequest) -> None:
        auth_asked.append(request.identity)

    async with ocpprpc.serve(
        router=heartbeat_router(),
        auth=auth,
        connection_middleware=[hangs],
        handshake_timeout=1.5,  # the neighbour's own handshake must fit in it on a loaded machine
        security_events=recorder.hub,
    ) as server:
        url = f"ws://127.0.0.1:{server.port}"
        async with ocpprpc.connect(url, "NEIGHBOUR") as neighbour:
            assert (await refused(url, "CP1")).status == 503
            assert await neighbour.call("Heartbeat", {})
            await eventually(lambda: server.connection_count == 1)
    assert auth_asked == ["NEIGHBOUR"]
    [event] = recorder.of("connection_refused")
    assert (event["refusal"], event["status"]) == ("middleware", 503)
    assert "handshake timeout" in event["reason"]


async def test_middleware_and_auth_share_one_deadline() -> None:
    async def slow(conn: UpgradeContext) -> None:
        await anyio.sleep(0.6)

    async def slow_auth(request: StationRequest) -> None:
        await anyio.sleep(0.6)

    recorder = Recorder()
    async with ocpprpc.serve(
        auth=slow_auth, connection_middleware=[slow], handshake_timeout=1.0, security_events=recorder.hub
    ) as server:
        # Each alone fits in the 1 s; together they do not: auth times out (503).
        assert (await refused(f"ws://127.0.0.1:{server.port}", "CP1")).status == 503
    assert [event.kind for event in recorder.events] == ["auth_timed_out"]
