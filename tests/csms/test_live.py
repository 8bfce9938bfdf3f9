"""Changing a running CSMS: reconfigure() and update_tls(), with stations connected."""

from __future__ import annotations

import json
import re
import ssl
from typing import Any

import pytest
import trustme

import ocpprpc
from ocpprpc import (
    CallContext,
    ConnectionLost,
    HandshakeError,
    HandshakeRejected,
    OnBreach,
    RateLimit,
    Router,
    SecurityEvent,
    SecurityEvents,
    StationLimits,
)
from ocpprpc._csms.live import live_server_options

from .helpers import eventually, ws_url
from .test_security import server_context, station_context

pytestmark = pytest.mark.timeout(30)


def router() -> Router:
    handlers = Router()

    @handlers.on("Heartbeat")
    def heartbeat(request: Any, ctx: CallContext) -> dict[str, Any]:
        return {"currentTime": "2024-01-01T00:00:00Z"}

    return handlers


def recorder() -> tuple[SecurityEvents, list[SecurityEvent]]:
    hub = SecurityEvents()
    events: list[SecurityEvent] = []
    hub.subscribe(events.append)
    return hub, events


async def test_rate_limits_switch_on_change_and_off_for_connected_stations() -> None:
    hub, events = recorder()
    async with (
        ocpprpc.serve(router=router(), security_events=hub) as server,
        ocpprpc.connect(ws_url(server), "CP1") as station,
    ):
        # The station stays connected through every change.
        for _ in range(3):
            await station.call("Heartbeat")  # no limits yet
        one_a_minute = StationLimits(
            per_action={"Heartbeat": RateLimit.parse("1/60")}, on_breach=OnBreach.CALLERROR
        )
        changed = server.reconfigure(rate_limits=one_a_minute)
        assert changed == {"rate_limits": "StationLimits"}
        await station.call("Heartbeat")
        with pytest.raises(ocpprpc.OCPPError, match="rate limit"):
            await station.call("Heartbeat")  # the connected station is held to it at once
        limiter = server.rate_limiter
        server.reconfigure(rate_limits=StationLimits(per_action={"Heartbeat": RateLimit.parse("100/1")}))
        assert server.rate_limiter is limiter  # changed in place: the same limiter, new rules
        await station.call("Heartbeat")  # and fresh buckets under them
        server.reconfigure(rate_limits=None)
        assert server.rate_limiter is None
        for _ in range(3):
            await station.call("Heartbeat")  # and off again
    reconfigured = [e for e in events if e.kind == "server_reconfigured"]
    assert len(reconfigured) == 3
    data = json.loads(reconfigured[0].to_json())
    assert data["changes"] == {"rate_limits": "StationLimits"} and data["severity"] == "info"
    assert data["reason"] == "changed rate_limits"


async def test_call_timeout_applies_to_connected_stations_and_new_ones() -> None:
    async with ocpprpc.serve(router=router()) as server, ocpprpc.connect(ws_url(server), "CP1"):
        await eventually(lambda: "CP1" in server.clients)
        server.reconfigure(call_timeout=0.5)
        assert server.clients["CP1"].call_timeout == 0.5
        async with ocpprpc.connect(ws_url(server), "CP2"):
            await eventually(lambda: "CP2" in server.clients)
            assert server.clients["CP2"].call_timeout == 0.5
            assert server.session_settings.call_timeout == 0.5


async def test_max_connections_applies_to_the_next_handshake_and_recovers() -> None:
    async with ocpprpc.serve(router=router()) as server, ocpprpc.connect(ws_url(server), "CP1") as first:
        await eventually(lambda: "CP1" in server.clients)
        server.reconfigure(max_connections=1)
        with pytest.raises(HandshakeRejected) as refused:
            async with ocpprpc.connect(ws_url(server), "CP2"):
                pass
        assert refused.value.status == 503
        await first.call("Heartbeat")  # the one already in is untouched
        server.reconfigure(max_connections=None)
        async with ocpprpc.connect(ws_url(server), "CP2") as second:
            await second.call("Heartbeat")


async def test_validation_turned_on_applies_to_new_connections_only() -> None:
    bad = {"chargePointVendor": "V" * 30, "chargePointModel": "M"}  # vendor: at most 20 characters

    boot_router = router()

    @boot_router.on("BootNotification")
    def boot(request: Any, ctx: CallContext) -> dict[str, Any]:
        return {"status": "Accepted", "currentTime": "2024-01-01T00:00:00Z", "interval": 300}

    async with (
        ocpprpc.serve(router=boot_router, protocols=["ocpp1.6"]) as server,
        ocpprpc.connect(ws_url(server), "OLD", protocols=["ocpp1.6"]) as old,
    ):
        # OLD's session is made before the change, NEW's after.
        await eventually(lambda: "OLD" in server.clients)  # its session was made before the change
        server.reconfigure(validation=True)
        assert (await old.call("BootNotification", bad))["status"] == "Accepted"  # lenient as it was
        async with ocpprpc.connect(ws_url(server), "NEW", protocols=["ocpp1.6"]) as new:
            with pytest.raises(ocpprpc.OCPPError) as refused:
                await new.call("BootNotification", bad)
    assert refused.value.code is ocpprpc.ErrorCode.PROPERTY_CONSTRAINT_VIOLATION


async def test_a_bad_change_changes_nothing() -> None:
    async with ocpprpc.serve(router=router()) as server:
        before = (server.session_settings, server.csms_options, server.websocket_options)
        with pytest.raises(ValueError, match="max_connections"):
            server.reconfigure(call_timeout=5, max_connections=0)
        with pytest.raises(TypeError, match="cannot change router, ws_codec"):
            server.reconfigure(ws_codec="wsproto", router=Router(), call_timeout=5)
        with pytest.raises(TypeError, match="cannot change nonsense"):
            server.reconfigure(nonsense=1)
        with pytest.raises(TypeError, match="auth must be callable"):
            server.reconfigure(auth="yes")
        with pytest.raises(TypeError, match="AdmissionPolicy"):
            server.reconfigure(admission={"allow": ["10.0.0.0/8"]})
        with pytest.raises(TypeError, match="StationLimits"):
            server.reconfigure(rate_limits="10/60")
        with pytest.raises(TypeError, match="identity_check"):
            server.reconfigure(identity_check=None)
        with pytest.raises(ValueError, match="DuplicatePolicy"):
            server.reconfigure(duplicate="ignore")
        with pytest.raises(TypeError, match="validation must be"):
            server.reconfigure(validation="very")
        assert (server.session_settings, server.csms_options, server.websocket_options) == before
        assert server.reconfigure() == {}


async def test_a_new_auth_callback_decides_the_next_handshake_and_is_not_logged_by_value() -> None:
    hub, events = recorder()

    async def refuse_all(request: ocpprpc.StationRequest) -> ocpprpc.Reject:
        return ocpprpc.Reject(401)

    async with (
        ocpprpc.serve(router=router(), security_events=hub) as server,
        ocpprpc.connect(ws_url(server), "CP1") as station,
    ):
        # Connected before the new callback.
        server.reconfigure(auth=refuse_all, handshake_timeout=5.0, duplicate="refuse")
        with pytest.raises(HandshakeRejected) as refused:
            async with ocpprpc.connect(ws_url(server), "CP2"):
                pass
        assert refused.value.status == 401
        await station.call("Heartbeat")
    [event] = [e for e in events if e.kind == "server_reconfigured"]
    assert event.as_dict()["changes"] == {
        "auth": "function",
        "handshake_timeout": "5.0",
        "duplicate": "'refuse'",
    }


async def test_the_live_options_are_the_tables_live_rows_the_server_takes() -> None:
    live = live_server_options()
    assert {"rate_limits", "admission", "auth", "validation", "call_timeout", "max_connections"} <= set(live)
    assert not {"router", "protocols", "ws_codec", "tcp_stream", "ssl_context", "connect_timeout"} & set(live)


def test_the_docs_say_when_each_live_option_applies() -> None:
    from pathlib import Path

    page = (Path(__file__).parents[2] / "docs" / "live.rst").read_text()
    table = page.split("What a change applies to", 1)[1].split("The other options", 1)[0]
    documented = set(re.findall(r"``(\w+)``", table)) - {"None"}
    assert documented == set(live_server_options())


# -- update_tls ---------------------------------------------------------------------------------


async def test_a_renewed_certificate_serves_new_stations_while_old_ones_stay_up(
    ca: trustme.CA, server_cert: trustme.LeafCert
) -> None:
    renewed_ca = trustme.CA()
    renewed = renewed_ca.issue_cert("127.0.0.1", "localhost")
    hub, events = recorder()
    async with ocpprpc.serve(
        router=router(), ssl_context=server_context(server_cert), security_events=hub
    ) as server:
        url = ws_url(server, secure=True)
        async with ocpprpc.connect(url, "OLD", ssl_context=station_context(ca)) as old:
            await old.call("Heartbeat")
            server.update_tls(server_context(renewed))
            async with ocpprpc.connect(url, "NEW", ssl_context=station_context(renewed_ca)) as new:
                await new.call("Heartbeat")  # verified against the renewed certificate's CA
            with pytest.raises(HandshakeError, match="CERTIFICATE_VERIFY_FAILED"):
                async with ocpprpc.connect(url, "STALE", ssl_context=station_context(ca)):
                    pass  # trusts only the old CA: the new certificate fails verification
            await old.call("Heartbeat")  # the connection made before the change is still up
            assert set(server.clients) == {"OLD"}
    [event] = [e for e in events if e.kind == "tls_updated"]
    assert event.as_dict()["listener"] is None and event.reason


async def test_update_tls_refuses_what_it_cannot_do() -> None:
    async with ocpprpc.serve(router=router()) as server:
        with pytest.raises(TypeError, match=r"ssl\.SSLContext"):
            server.update_tls("cert.pem")  # type: ignore[arg-type]
        with pytest.raises(RuntimeError, match="serves no TLS"):
            server.update_tls(ssl.create_default_context(ssl.Purpose.CLIENT_AUTH))


async def test_transport_and_session_settings_apply_to_the_next_connection() -> None:
    async with ocpprpc.serve(router=router()) as server, ocpprpc.connect(ws_url(server), "OLD") as old:
        await eventually(lambda: "OLD" in server.clients)
        server.reconfigure(
            send_timeout=5.0,
            max_message_size=200,
            compression=False,
            close_timeout=2.0,
            keepalive=None,
            max_queued_calls=8,
            detailed_errors=True,
            rate_limits=None,  # none before either: nothing to take off
        )
        assert server.clients["OLD"].stream.send_timeout == 5.0  # type: ignore[attr-defined]
        assert (server.max_message_size, server.compression, server.close_timeout) == (200, False, 2.0)
        assert (server.max_queued_calls, server.detailed_errors, server.rate_limiter) == (8, True, None)
        await old.call("Heartbeat", {"padding": "x" * 500})  # opened before: its 64 KiB limit stands
        async with ocpprpc.connect(ws_url(server), "NEW") as new:
            with pytest.raises(ConnectionLost) as lost:
                await new.call("Heartbeat", {"padding": "x" * 500})  # over the new limit: closed, 1009
        assert lost.value.reason is not None and lost.value.reason.code == 1009
        server.reconfigure(close_timeout=3.0)  # the streams' send_timeout untouched
        assert server.clients["OLD"].stream.send_timeout == 5.0  # type: ignore[attr-defined]


# -- with routes and several listeners ------------------------------------------------------------


async def test_changes_reach_routes_that_inherit_them_and_spare_what_a_route_sets() -> None:
    own_limits = StationLimits(
        per_action={"Heartbeat": RateLimit.parse("1/60")}, on_breach=OnBreach.CALLERROR
    )
    routes = [
        ocpprpc.Route("/plain/{identity}"),
        ocpprpc.Route("/limited/{identity}", rate_limits=own_limits),
    ]
    async with (
        ocpprpc.serve(router=router(), routes=routes) as server,
        ocpprpc.connect(f"ws://127.0.0.1:{server.port}/plain", "P1") as plain,
        ocpprpc.connect(f"ws://127.0.0.1:{server.port}/limited", "L1") as limited,
    ):
        await eventually(lambda: {"P1", "L1"} <= set(server.clients))
        await limited.call("Heartbeat")  # spends the route's own budget
        one_a_minute = StationLimits(
            per_action={"Heartbeat": RateLimit.parse("1/60")}, on_breach=OnBreach.CALLERROR
        )
        server.reconfigure(rate_limits=one_a_minute)  # the server's: reaches the inheriting route
        await plain.call("Heartbeat")
        with pytest.raises(ocpprpc.OCPPError, match="rate limit"):
            await plain.call("Heartbeat")
        with pytest.raises(ocpprpc.OCPPError, match="rate limit"):
            await limited.call("Heartbeat")  # its own limiter kept its bucket: still spent
        server.reconfigure(rate_limits=None, call_timeout=7.0)
        for _ in range(3):
            await plain.call("Heartbeat")  # the inheriting route's sessions lost the limit
        with pytest.raises(ocpprpc.OCPPError, match="rate limit"):
            await limited.call("Heartbeat")  # the route's own stays
        assert server.clients["P1"].call_timeout == server.clients["L1"].call_timeout == 7.0


async def test_connection_middleware_can_be_replaced_live() -> None:
    seen: list[str] = []

    async def refuse_cp2(conn: ocpprpc.UpgradeContext) -> ocpprpc.Reject | None:
        seen.append(conn.identity)
        return ocpprpc.Reject(403, "not today") if conn.identity == "CP2" else None

    async with ocpprpc.serve(router=router()) as server:
        async with ocpprpc.connect(ws_url(server), "CP2") as station:
            await station.call("Heartbeat")
        server.reconfigure(connection_middleware=[refuse_cp2])
        with pytest.raises(HandshakeRejected) as refused:
            async with ocpprpc.connect(ws_url(server), "CP2"):
                pass
        assert refused.value.status == 403 and seen == ["CP2"]
        with pytest.raises(TypeError, match="sequence of callables"):
            server.reconfigure(connection_middleware=["not callable"])
        with pytest.raises(TypeError, match="sequence of callables"):
            server.reconfigure(connection_middleware=42)
        server.reconfigure(connection_middleware=())
        async with ocpprpc.connect(ws_url(server), "CP2") as station:
            await station.call("Heartbeat")


async def test_update_tls_of_one_listener_leaves_the_others(
    ca: trustme.CA, server_cert: trustme.LeafCert
) -> None:
    renewed_ca = trustme.CA()
    renewed = renewed_ca.issue_cert("127.0.0.1", "localhost")
    hub, events = recorder()
    listeners = [
        ocpprpc.Listener(port=0, ssl_context=server_context(server_cert), name="a"),
        ocpprpc.Listener(port=0, ssl_context=server_context(server_cert), name="b"),
        ocpprpc.Listener(port=0, name="plain"),
    ]
    async with ocpprpc.serve(router=router(), listeners=listeners, security_events=hub) as server:
        port_a, port_b = server.listener("a").port, server.listener("b").port
        server.update_tls(server_context(renewed), listener="a")
        async with ocpprpc.connect(
            f"wss://127.0.0.1:{port_a}/ocpp", "A", ssl_context=station_context(renewed_ca)
        ) as a:
            await a.call("Heartbeat")
        async with ocpprpc.connect(
            f"wss://127.0.0.1:{port_b}/ocpp", "B", ssl_context=station_context(ca)
        ) as b:
            await b.call("Heartbeat")  # listener b still serves the first certificate
        with pytest.raises(LookupError, match="no listener named 'nope'"):
            server.update_tls(server_context(renewed), listener="nope")
        with pytest.raises(RuntimeError, match="listener 'plain' serves no TLS"):
            server.update_tls(server_context(renewed), listener="plain")
    [event] = [e for e in events if e.kind == "tls_updated"]
    assert event.as_dict()["listener"] == "a"


async def test_update_tls_without_a_listener_reaches_the_listeners_that_share_the_servers(
    ca: trustme.CA, server_cert: trustme.LeafCert
) -> None:
    renewed_ca = trustme.CA()
    renewed = renewed_ca.issue_cert("127.0.0.1", "localhost")
    own = server_context(server_cert)
    listeners = [
        ocpprpc.Listener(port=0, name="shared"),
        ocpprpc.Listener(port=0, ssl_context=own, name="own"),
    ]
    async with ocpprpc.serve(
        router=router(), ssl_context=server_context(server_cert), listeners=listeners
    ) as server:
        server.update_tls(server_context(renewed))
        shared, kept = server.listener("shared").port, server.listener("own").port
        async with ocpprpc.connect(
            f"wss://127.0.0.1:{shared}/ocpp", "S", ssl_context=station_context(renewed_ca)
        ) as station:
            await station.call("Heartbeat")
        async with ocpprpc.connect(
            f"wss://127.0.0.1:{kept}/ocpp", "O", ssl_context=station_context(ca)
        ) as station:
            await station.call("Heartbeat")  # a listener with its own context keeps it
