"""URL routing of station connections (ocpprpc.Route): patterns, parameters, per-route settings, 404.

Every server test runs a real CSMS on a loopback port (both backends, both TCP
streams); stations are ``connect()`` sessions or raw HTTP peers sending
hostile request paths.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from typing import Any

import anyio
import pytest

import ocpprpc
from ocpprpc import (
    Accept,
    CallContext,
    HandshakeRejected,
    MessageContext,
    OnBreach,
    RateLimit,
    Route,
    Router,
    SecurityEvent,
    SecurityEvents,
    StationLimits,
    StationRequest,
    UpgradeContext,
)

from .helpers import PROMPT, eventually, raw_station

pytestmark = pytest.mark.timeout(30)

TENANT = "/ocpp/{tenant}/{identity}"


# -- patterns ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "complaint"),
    [
        ("ocpp/{identity}", "starts with '/'"),
        ("", "starts with '/'"),
        ("/ocpp/{tenant}", "must end with '/{identity}'"),
        ("/{identity}/ocpp", "must end with '/{identity}'"),
        ("/{identity}/{identity}", "appears twice"),
        ("/{tenant}/{tenant}/{identity}", "appears twice"),
        ("/ocpp//{identity}", "empty segment"),
        ("/ocpp/{identity}/", "empty segment"),
        ("/", "empty segment"),
        ("/{1st}/{identity}", "not a valid parameter name"),
        ("/{a-b}/{identity}", "not a valid parameter name"),
        ("/{}/{identity}", "not a valid parameter name"),
        ("/v{version}/{identity}", "whole segment"),
        ("/ocpp}/{identity}", "whole segment"),
        ("/../{identity}", "not a path segment"),
    ],
)
def test_bad_patterns_are_refused_at_construction(pattern: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint) as refused:
        Route(pattern)
    assert repr(pattern) in str(refused.value)


def test_route_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="protocols"):
        Route("/{identity}", protocols=[])
    with pytest.raises(ValueError, match="protocols"):
        Route("/{identity}", protocols="ocpp1.6")
    with pytest.raises(ValueError, match="max_message_size"):
        Route("/{identity}", max_message_size=0)
    with pytest.raises(TypeError, match="Route"):
        ocpprpc.Server(routes=["/ocpp/{identity}"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="no schemas"):
        ocpprpc.Server(routes=[Route("/{identity}", protocols=["vendor1"], validation=True)])
    route = Route(TENANT, protocols=["ocpp1.6"])
    assert route.parameters == ("tenant", "identity")
    assert route.name == TENANT and route.protocols == ("ocpp1.6",)
    assert Route("/x/{identity}", name="x").name == "x"


def test_matching_is_on_whole_percent_decoded_segments() -> None:
    route = Route("/ocpp/{tenant}/{identity}")
    assert route.match("/ocpp/acme/CP1") == {"tenant": "acme", "identity": "CP1"}
    assert route.match("/oc%70p/ac%20me/CP%201") == {"tenant": "ac me", "identity": "CP 1"}
    assert route.match("/ocpp/caf%C3%A9/CP1") == {"tenant": "café", "identity": "CP1"}
    for path in (
        "/ocpp/a%2Fb/CP1",  # an encoded slash is no separator, and no parameter holds one
        "/ocpp/a%5Cb/CP1",
        "/ocpp/../CP1",
        "/ocpp/%2E%2E/CP1",
        "/ocpp/./CP1",
        "/ocpp//CP1",
        "/ocpp/acme/",
        "/ocpp/acme",
        "/ocpp/acme/CP1/extra",
        "/OCPP/acme/CP1",
        "ocpp/acme/CP1",
        "*",
        "/ocpp/%FF/CP1",  # not UTF-8
        "/ocpp/%00/CP1",  # a control character
        "/ocpp/a%7Fb/CP1",
    ):
        assert route.match(path) is None, path


# -- a server with routes ------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.hub = SecurityEvents()
        self.events: list[SecurityEvent] = []
        self.hub.subscribe(self.events.append)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [json.loads(event.to_json()) for event in self.events if event.kind == kind]


async def status_of(url: str, identity: str, **options: Any) -> int:
    """101 for accepted, else the HTTP status the station was refused with."""
    try:
        async with ocpprpc.connect(url, identity, **options):
            return 101
    except HandshakeRejected as refused:
        assert refused.status is not None
        return refused.status


async def test_parameters_reach_auth_middleware_handlers_and_events() -> None:
    seen: dict[str, Any] = {}
    recorder = Recorder()

    async def auth(request: StationRequest) -> Accept:
        seen["auth"] = (request.route, dict(request.params), dict(request.state))
        return Accept(data={"tenant": request.params["tenant"]})

    async def upgrade(conn: UpgradeContext) -> None:
        seen["upgrade"] = (conn.route, dict(conn.params), conn.identity)
        conn.state["checked"] = True

    async def message_mw(ctx: MessageContext, call_next: Any) -> Any:
        seen["message_route"] = ctx.route
        return await call_next(ctx)

    router = Router()

    @router.on("Heartbeat")
    def heartbeat(request: Any, ctx: CallContext) -> dict[str, Any]:
        session = ctx.session
        seen["handler"] = (session.route, dict(session.params), dict(session.data))
        return {"currentTime": "2026-01-01T00:00:00Z"}

    route = Route(TENANT, connection_middleware=[upgrade], middleware=[message_mw])
    async with ocpprpc.serve(
        router=router, auth=auth, routes=[route], security_events=recorder.hub
    ) as server:
        url = f"ws://127.0.0.1:{server.port}/ocpp/acme"
        async with ocpprpc.connect(url, "CP1") as station:
            await station.call("Heartbeat", {})
            assert server.clients["CP1"].route == TENANT
        await eventually(lambda: bool(recorder.of("station_disconnected")))
    params = {"tenant": "acme", "identity": "CP1"}
    assert seen["upgrade"] == (route, params, "CP1")
    assert seen["auth"] == (route, params, {"checked": True})
    assert seen["handler"] == (TENANT, params, {"checked": True, "tenant": "acme"})
    assert seen["message_route"] == TENANT
    for kind in ("station_connected", "station_disconnected"):
        [event] = recorder.of(kind)
        assert event["route"] == TENANT, event


async def test_every_event_of_a_routed_connection_carries_the_route() -> None:
    recorder = Recorder()

    async def auth(request: StationRequest) -> None:
        if request.identity == "HANG":
            await anyio.sleep_forever()

    async with ocpprpc.serve(
        routes=[Route(TENANT)],
        auth=auth,
        max_bad_messages=2,
        handshake_timeout=1.0,
        security_events=recorder.hub,
    ) as server:
        url = f"ws://127.0.0.1:{server.port}/ocpp/acme"
        with pytest.raises(HandshakeRejected):
            async with ocpprpc.connect(url, "HANG"):
                pass
        async with ocpprpc.connect(url, "CP1"), ocpprpc.connect(url, "CP1"):  # the second evicts the first
            await eventually(lambda: bool(recorder.of("identity_evicted")))
        async with raw_station(server.port, "acme/CP2") as station:
            for _ in range(2):
                await station.send_text("not json")
            with anyio.fail_after(PROMPT):
                while (await station.close_code()) is None:
                    pass
        await eventually(lambda: bool(recorder.of("bad_message_flood")))
    kinds = {event.kind for event in recorder.events}
    assert kinds == {
        "auth_timed_out",
        "identity_evicted",
        "bad_message_flood",
        "station_connected",
        "station_disconnected",
    }
    assert {event.route for event in recorder.events} == {TENANT}


async def test_first_match_wins_and_a_path_nothing_matches_gets_404() -> None:
    recorder = Recorder()
    chosen: list[str | None] = []

    async def which(request: StationRequest) -> None:
        chosen.append(request.route.name)

    routes = [
        Route("/ocpp/special/{identity}", name="special"),
        Route(TENANT, name="tenant"),
        Route("/{identity}", name="bare"),
    ]
    async with ocpprpc.serve(auth=which, routes=routes, security_events=recorder.hub) as server:
        base = f"ws://127.0.0.1:{server.port}"
        assert await status_of(f"{base}/ocpp/special", "CP1") == 101
        assert await status_of(f"{base}/ocpp/acme", "CP1") == 101
        assert await status_of(base, "CP1") == 101
        assert chosen == ["special", "tenant", "bare"]
        assert await status_of(f"{base}/elsewhere/a/b", "CP1") == 404
        assert await status_of(f"{base}/ocpp", "CP1") == 404
        assert chosen == ["special", "tenant", "bare"]  # auth never asked about an unrouted request
    refused = recorder.of("connection_refused")
    assert [(e["refusal"], e["status"], e["identity"], e["route"]) for e in refused] == [
        ("no_route", 404, "CP1", None)
    ] * 2
    assert not recorder.of("station_connected")[3:]


async def test_without_routes_any_path_is_served_as_before() -> None:
    seen: list[tuple[Any, dict[str, str]]] = []

    async def auth(request: StationRequest) -> None:
        seen.append((request.route, dict(request.params)))

    recorder = Recorder()
    async with ocpprpc.serve(auth=auth, security_events=recorder.hub) as server:
        for path in ("", "/ocpp", "/a/b/c"):
            async with ocpprpc.connect(f"ws://127.0.0.1:{server.port}{path}", "CP1"):
                await eventually(lambda: "CP1" in server.clients)
                assert server.clients["CP1"].route is None
                assert server.clients["CP1"].params == {"identity": "CP1"}
            await eventually(lambda: "CP1" not in server.clients)
    assert seen == [(None, {"identity": "CP1"})] * 3
    assert {event.route for event in recorder.events} == {None}


async def test_inherited_settings_stay_live() -> None:
    """``server.auth`` and ``server.connection_middleware`` changed while serving apply to routes too."""

    async def refuse(request: StationRequest) -> ocpprpc.Reject:
        return ocpprpc.Reject(403)

    async def teapot(conn: UpgradeContext) -> ocpprpc.Reject:
        return ocpprpc.Reject(418)

    async with ocpprpc.serve(routes=[Route("/r/{identity}")]) as routed, ocpprpc.serve() as plain:
        routed_url, plain_url = f"ws://127.0.0.1:{routed.port}/r", f"ws://127.0.0.1:{plain.port}/r"
        assert await status_of(routed_url, "CP1") == await status_of(plain_url, "CP1") == 101
        routed.auth = plain.auth = refuse
        assert await status_of(routed_url, "CP1") == await status_of(plain_url, "CP1") == 403
        routed.connection_middleware = plain.connection_middleware = (teapot,)
        assert await status_of(routed_url, "CP1") == await status_of(plain_url, "CP1") == 418


def lax_and_strict() -> tuple[Router, Router, list[str]]:
    handled: list[str] = []
    lax, strict = Router(), Router()

    @lax.on("Heartbeat")
    def lax_heartbeat(request: Any, ctx: CallContext) -> dict[str, Any]:
        handled.append("lax")
        return {"currentTime": "2026-01-01T00:00:00Z"}

    @strict.on("Heartbeat")
    def strict_heartbeat(request: Any, ctx: CallContext) -> dict[str, Any]:
        handled.append("strict")
        return {"currentTime": "2026-01-01T00:00:00Z"}

    return lax, strict, handled


async def test_per_route_settings_really_differ() -> None:
    lax_router, strict_router, handled = lax_and_strict()
    recorder = Recorder()

    async def need_password(request: StationRequest) -> Accept | ocpprpc.Reject:
        if request.password != b"secret-password-1":
            return ocpprpc.Reject(401, method="basic")
        return Accept()

    strict = Route(
        "/strict/{identity}",
        router=strict_router,
        protocols=["ocpp2.0.1", "ocpp1.6"],
        auth=need_password,
        validation=True,
        rate_limits=StationLimits(global_=RateLimit.parse("1/1h"), on_breach=OnBreach.CALLERROR),
        max_message_size=2048,
    )
    lax = Route("/lax/{identity}", router=lax_router, protocols=["ocpp1.6"])
    async with ocpprpc.serve(routes=[strict, lax], security_events=recorder.hub) as server:
        base = f"ws://127.0.0.1:{server.port}"
        both = ["ocpp2.0.1", "ocpp1.6"]
        # auth: the strict route's callback, none on the lax one
        assert await status_of(f"{base}/strict", "CP1", protocols=both) == 401
        assert await status_of(f"{base}/lax", "CP1", protocols=both) == 101
        [failed] = recorder.of("auth_failed")
        assert failed["route"] == "/strict/{identity}"
        async with (
            ocpprpc.connect(f"{base}/strict", "S1", protocols=both, password="secret-password-1") as s,
            ocpprpc.connect(f"{base}/lax", "L1", protocols=both) as lx,
        ):
            # protocols: each route's own preference
            assert (s.protocol, lx.protocol) == ("ocpp2.0.1", "ocpp1.6")
            # validation: the strict route refuses a malformed request before its handler
            with pytest.raises(ocpprpc.OCPPError):
                await s.call("Heartbeat", {"unexpected": 1}, validate=False)
            assert await lx.call("Heartbeat", {"unexpected": 1}) == {"currentTime": "2026-01-01T00:00:00Z"}
            # router: each route's own handlers
            await s.call("Heartbeat", {})
            # rate limits: 1 per hour on the strict route (the malformed call never reached it)
            with pytest.raises(ocpprpc.OCPPError, match="limit"):
                await s.call("Heartbeat", {})
            for _ in range(5):
                await lx.call("Heartbeat", {})
            [limited] = recorder.of("rate_limited")
            assert (limited["route"], limited["identity"]) == ("/strict/{identity}", "S1")
            # max_message_size: 2048 on the strict route; the lax route takes the server's
            await lx.call("Heartbeat", {"pad": "x" * 5000})
            with pytest.raises(ocpprpc.ConnectionLost):
                await s.call("Heartbeat", {"pad": "x" * 5000}, validate=False)

            def gone_events() -> list[dict[str, Any]]:
                return [e for e in recorder.of("station_disconnected") if e["identity"] == "S1"]

            await eventually(lambda: bool(gone_events()))
            [gone] = gone_events()
            assert gone["code"] == 1009 and gone["route"] == "/strict/{identity}"
        assert handled == ["lax", "strict", *["lax"] * 6]


async def test_a_station_without_a_version_of_its_route_gets_none() -> None:
    routes = [
        Route("/old/{identity}", protocols=["ocpp1.6"]),
        Route("/new/{identity}", protocols=["ocpp2.1"]),
    ]
    async with ocpprpc.serve(routes=routes) as server:
        # The raw peer offers ocpp1.6 only: the new route completes the handshake without a
        # subprotocol and closes (OCPP-J 3.2), the old one speaks it.
        old = await exchange(server.port, upgrade(b"/old/CP1"))
        new = await exchange(server.port, upgrade(b"/new/CP1"))
        assert status(old) == status(new) == 101
        assert b"sec-websocket-protocol: ocpp1.6" in old.lower()
        assert b"sec-websocket-protocol" not in new.lower()
        async with ocpprpc.connect(
            f"ws://127.0.0.1:{server.port}/new", "CP2", protocols=["ocpp1.6", "ocpp2.1"]
        ) as st:
            assert st.protocol == "ocpp2.1"


async def test_route_middleware_runs_inside_the_servers() -> None:
    order: list[str] = []

    def layer(name: str) -> Any:
        async def mw(ctx: MessageContext, call_next: Any) -> Any:
            if ctx.direction == "in":
                order.append(name)
            return await call_next(ctx)

        return mw

    router = Router()
    router.on("Heartbeat")(lambda request, ctx: {"currentTime": "2026-01-01T00:00:00Z"})
    routes = [Route("/a/{identity}", middleware=[layer("route")]), Route("/b/{identity}")]
    async with ocpprpc.serve(router=router, middleware=[layer("server")], routes=routes) as server:
        for path, expected in (("/a", ["server", "route"]), ("/b", ["server"])):
            order.clear()
            async with ocpprpc.connect(f"ws://127.0.0.1:{server.port}{path}", "CP1") as station:
                await station.call("Heartbeat", {})
            assert order == expected


async def test_routes_share_the_boot_gate_and_the_servers_limits() -> None:
    lax_router, strict_router, handled = lax_and_strict()

    @strict_router.on("BootNotification")
    def boot(request: Any, ctx: CallContext) -> dict[str, Any]:
        return {"status": "Accepted", "currentTime": "2026-01-01T00:00:00Z", "interval": 300}

    routes = [Route("/own/{identity}", router=strict_router), Route("/server/{identity}")]
    async with ocpprpc.serve(
        router=lax_router,
        routes=routes,
        require_boot=True,
        rate_limits=StationLimits(global_=RateLimit.parse("4/1h"), on_breach=OnBreach.CALLERROR),
    ) as server:
        base = f"ws://127.0.0.1:{server.port}"
        async with ocpprpc.connect(f"{base}/own", "CP1") as station:
            with pytest.raises(ocpprpc.OCPPError) as gate:
                await station.call("Heartbeat", {})
            assert gate.value.code is ocpprpc.ErrorCode.SECURITY_ERROR
            booting = {"chargePointVendor": "V", "chargePointModel": "M"}
            boot_answer = await station.call("BootNotification", booting)
            assert boot_answer["status"] == "Accepted"
        # One boot registry: booted on one route is booted on the other.
        async with ocpprpc.connect(f"{base}/server", "CP1") as station:
            await station.call("Heartbeat", {})
            await station.call("Heartbeat", {})
        # One limiter keyed by identity: the fifth CALL, on either route, is over the limit.
        async with ocpprpc.connect(f"{base}/own", "CP1") as station:
            with pytest.raises(ocpprpc.OCPPError, match="limit"):
                await station.call("Heartbeat", {})
    assert handled == ["lax", "lax"]


# -- hostile paths -------------------------------------------------------------------------


def upgrade(target: bytes, *, extra: bytes = b"") -> bytes:
    key = base64.b64encode(os.urandom(16))
    return (
        b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Protocol: ocpp1.6\r\n" + extra + b"\r\n"
    )


async def exchange(port: int, request: bytes) -> bytes:
    """Send an upgrade request; the answer (a 101's head alone, an error's head and body)."""
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(request)
        received = bytearray()
        with anyio.fail_after(PROMPT):
            while not received.startswith(b"HTTP/1.1 101 ") or b"\r\n\r\n" not in received:
                try:
                    received += await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    break
        return bytes(received)


def status(answer: bytes) -> int:
    head = answer.split(b"\r\n", 1)[0]
    assert head.startswith(b"HTTP/1.1 "), answer[:200]
    return int(head.split()[1])


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (b"/ocpp/acme/CP1", 101),
        (b"/ocpp/acme/CP1?token=abc&x=%2F", 101),  # a query string is no part of the path
        (b"/ocpp/caf%C3%A9/CP1", 101),  # a percent-encoded UTF-8 tenant is a tenant
        (b"/ocpp/a%2Fb/CP1", 404),
        (b"/ocpp/a/b/CP1", 404),
        (b"/ocpp/../CP1", 404),
        (b"/ocpp/%2e%2e/CP1", 404),
        (b"/ocpp//CP1", 404),
        (b"//acme/CP1", 404),
        (b"/ocpp/acme/", 404),  # no identity: the handshake's own 404
        (b"/ocpp/%FF%FE/CP1", 404),
        (b"/ocpp/%00/CP1", 404),
        (b"/ocpp/" + b"a" * 8000 + b"/CP1", 101),  # long, but one segment within the head limit
        (b"/ocpp/" + b"a/" * 3000 + b"CP1", 404),
        (b"/ocpp/acme/CP%2F1", 400),  # the identity check
        (b"/ocpp/acme/%C3%A9", 400),
        (b"/ocpp/caf\xc3\xa9/CP1", 400),  # raw non-ASCII in the request line: h11 refuses
        (b"/ocpp/" + b"a" * 200_000 + b"/CP1", 431),  # far over h11's 16 KiB head
    ],
)
async def test_hostile_paths_get_a_clean_answer_and_spare_the_neighbour(target: bytes, expected: int) -> None:
    router = Router()
    router.on("Heartbeat")(lambda request, ctx: {"currentTime": "2026-01-01T00:00:00Z"})
    recorder = Recorder()
    async with ocpprpc.serve(router=router, routes=[Route(TENANT)], security_events=recorder.hub) as server:
        url = f"ws://127.0.0.1:{server.port}/ocpp/acme"
        async with ocpprpc.connect(url, "NEIGHBOUR") as neighbour:
            answer = await exchange(server.port, upgrade(target))
            got = status(answer)
            assert got == expected or (expected == 431 and got in (400, 413, 431)), answer[:300]
            if expected == 404:
                assert b"no route" in answer or b"no charging station identity" in answer
            assert await neighbour.call("Heartbeat", {}) == {"currentTime": "2026-01-01T00:00:00Z"}
            assert list(server.clients) == ["NEIGHBOUR"] or expected == 101


async def test_unrouted_requests_log_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "ocpprpc")
    async with ocpprpc.serve(routes=[Route(TENANT)]) as server:
        for _ in range(3):
            with anyio.fail_after(PROMPT):
                assert status(await exchange(server.port, upgrade(b"/x/CP1"))) == 404
    assert not [record for record in caplog.records if record.exc_info]
