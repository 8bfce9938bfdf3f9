"""The protection layer wired into a real CSMS: rate limits, admission, security events, end to end.

Every test runs a real server on a loopback port (both backends, both TCP
streams); stations are ``connect()`` sessions or raw WebSocket peers that
can flood, send garbage or go quiet.
"""

from __future__ import annotations

import json
import ssl
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import trustme
from wsproto.events import CloseConnection

import ocpprpc
from ocpprpc import (
    AdmissionPolicy,
    CallContext,
    HandshakeRejected,
    OnBreach,
    PasswordTable,
    RateLimit,
    Router,
    SecurityEvent,
    SecurityEvents,
    StationLimits,
    StationRequest,
)

from .helpers import PROMPT, eventually, http_exchange, raw_station, ws_url

pytestmark = pytest.mark.timeout(30)

COMMON_FIELDS = ("schema", "kind", "severity", "time", "timestamp", "identity", "peer", "route", "reason")
#: The fields docs/protection.rst documents for each kind, besides the common ones.
KIND_FIELDS = {
    "auth_failed": ("method", "status"),
    "auth_timed_out": ("timeout",),
    "rate_limited": ("action", "limit", "scope", "on_breach"),
    "connection_refused": ("refusal", "status"),
    "handshake_aborted": (),
    "identity_evicted": ("previous_peer",),
    "bad_message_flood": ("count",),
    "certificate_identity_mismatch": ("certificate_subject",),
    "station_connected": ("protocol",),
    "station_disconnected": ("protocol", "code", "by_peer", "duration"),
    "server_reconfigured": ("changes",),
    "tls_updated": ("listener",),
}


class Recorder:
    """A plain subscriber: every event the server reports, as it reports it."""

    def __init__(self) -> None:
        self.hub = SecurityEvents()
        self.events: list[SecurityEvent] = []
        self.hub.subscribe(self.events.append)

    def of(self, kind: str) -> list[dict[str, Any]]:
        """The events of *kind*, each through a JSON round trip (what a SIEM reads)."""
        out = []
        for event in self.events:
            if event.kind == kind:
                data = json.loads(event.to_json())
                assert set(data) == {*COMMON_FIELDS, *KIND_FIELDS[kind]}, data
                assert data["schema"] == 1 and data["route"] is None and data["reason"]
                out.append(data)
        return out

    async def wait_for(self, kind: str, count: int = 1) -> list[dict[str, Any]]:
        await eventually(lambda: len(self.of(kind)) >= count)
        return self.of(kind)


def csms_router(plain: bool = True) -> Router:
    """MeterValues and Heartbeat answered, by plain functions or ``async def`` ones."""
    router = Router()

    def meter_values(request: Any, ctx: CallContext) -> dict[str, Any]:
        return {}

    def heartbeat(request: Any, ctx: CallContext) -> dict[str, Any]:
        return {"currentTime": "2024-01-01T00:00:00Z"}

    for action, handler in (("MeterValues", meter_values), ("Heartbeat", heartbeat)):
        router.on(action)(handler if plain else _as_async(handler))
    return router


def _as_async(handler: Any) -> Any:
    async def wrapped(request: Any, ctx: CallContext) -> Any:
        return handler(request, ctx)

    return wrapped


def call(message_id: str, action: str) -> str:
    return json.dumps([2, message_id, action, {}])


async def answer(station: Any) -> list[Any]:
    with anyio.fail_after(PROMPT):
        reply: list[Any] = json.loads(await station.next_text())
    return reply


async def heartbeats_work(port: int, identity: str, count: int = 3) -> None:
    async with raw_station(port, identity) as neighbour:
        for n in range(count):
            await neighbour.send_text(call(f"hb{n}", "Heartbeat"))
            assert (await answer(neighbour))[:2] == [3, f"hb{n}"]
        await neighbour.send_text(call("mv", "MeterValues"))
        assert await answer(neighbour) == [3, "mv", {}]


# -- rate limits ------------------------------------------------------------------------


@pytest.mark.parametrize("plain", [True, False], ids=["plain", "async"])
async def test_drop_leaves_the_flood_unanswered_while_a_neighbour_works(plain: bool) -> None:
    recorder = Recorder()
    limits = StationLimits(per_action={"MeterValues": RateLimit.parse("3/60")}, on_breach=OnBreach.DROP)
    async with (
        ocpprpc.serve(router=csms_router(plain), rate_limits=limits, security_events=recorder.hub) as server,
        raw_station(server.port, "CP1") as flooder,
    ):
        for n in range(10):
            await flooder.send_text(call(f"mv{n}", "MeterValues"))
        await flooder.send_text(call("hb", "Heartbeat"))  # other actions are not limited
        replies = [await answer(flooder) for _ in range(4)]
        assert sorted(reply[1] for reply in replies) == ["hb", "mv0", "mv1", "mv2"]
        await heartbeats_work(server.port, "CP2")  # one station's limits never touch another's
        events = await recorder.wait_for("rate_limited", 7)
        assert "CP1" in server.clients
    assert {(e["identity"], e["action"], e["on_breach"], e["scope"]) for e in events} == {
        ("CP1", "MeterValues", "drop", "MeterValues")
    }
    assert events[0]["limit"] == "3/60s" and events[0]["peer"] == "127.0.0.1"
    assert len(events) == 7


@pytest.mark.parametrize("plain", [True, False], ids=["plain", "async"])
async def test_callerror_answers_the_flood_with_generic_error(plain: bool) -> None:
    recorder = Recorder()
    limits = StationLimits(
        global_=RateLimit.parse("4/60"),
        per_action={"MeterValues": RateLimit.parse("2/60")},
        on_breach=OnBreach.CALLERROR,
    )
    async with (
        ocpprpc.serve(router=csms_router(plain), rate_limits=limits, security_events=recorder.hub) as server,
        raw_station(server.port, "CP1") as flooder,
    ):
        replies = []
        for n in range(4):
            await flooder.send_text(call(f"mv{n}", "MeterValues"))
            replies.append(await answer(flooder))
        assert [reply[0] for reply in replies] == [3, 3, 4, 4]
        assert replies[2][2] == "GenericError"
        assert replies[2][3].startswith("rate limit exceeded: MeterValues limit 2/60s; retry after")
        # The global limit counts every allowed CALL: 2 MeterValues + 2 Heartbeats, then no more.
        for n in range(3):
            await flooder.send_text(call(f"hb{n}", "Heartbeat"))
            replies.append(await answer(flooder))
        assert [reply[0] for reply in replies[4:]] == [3, 3, 4]
        assert replies[6][3].startswith("rate limit exceeded: message limit 4/60s")
        await heartbeats_work(server.port, "CP2")
    events = recorder.of("rate_limited")
    assert [(e["action"], e["scope"], e["on_breach"]) for e in events] == [
        ("MeterValues", "MeterValues", "callerror"),
        ("MeterValues", "MeterValues", "callerror"),
        ("Heartbeat", None, "callerror"),
    ]


async def test_callerror_also_counts_actions_without_a_handler() -> None:
    limits = StationLimits(global_=RateLimit.parse("1/60"), on_breach=OnBreach.CALLERROR)
    async with ocpprpc.serve(rate_limits=limits) as server, raw_station(server.port, "CP1") as flooder:
        await flooder.send_text(call("a", "Authorize"))
        assert (await answer(flooder))[:3] == [4, "a", "NotSupported"]
        await flooder.send_text(call("b", "NoSuchAction"))
        assert (await answer(flooder))[:3] == [4, "b", "GenericError"]


@pytest.mark.parametrize("plain", [True, False], ids=["plain", "async"])
async def test_disconnect_closes_the_flooder_and_its_limits_survive_a_reconnect(plain: bool) -> None:
    recorder = Recorder()
    limits = StationLimits(per_action={"MeterValues": RateLimit.parse("2/60")}, on_breach=OnBreach.DISCONNECT)
    async with ocpprpc.serve(
        router=csms_router(plain), rate_limits=limits, security_events=recorder.hub
    ) as server:
        async with raw_station(server.port, "CP1") as flooder:
            for n in range(2):
                await flooder.send_text(call(f"mv{n}", "MeterValues"))
                assert (await answer(flooder))[:2] == [3, f"mv{n}"]
            await flooder.send_text(call("mv2", "MeterValues"))
            with anyio.fail_after(PROMPT):
                closing = await flooder.next_event()
            assert isinstance(closing, CloseConnection), closing
            assert closing.code == 1008
            assert closing.reason == "rate limit exceeded: MeterValues limit 2/60s"
        await heartbeats_work(server.port, "CP2")
        # Keyed by identity: reconnecting does not refill the bucket.
        async with raw_station(server.port, "CP1") as again:
            await again.send_text(call("hb", "Heartbeat"))
            assert (await answer(again))[:2] == [3, "hb"]
            await again.send_text(call("mv3", "MeterValues"))
            with anyio.fail_after(PROMPT):
                assert await again.close_code() == 1008
        events = await recorder.wait_for("rate_limited", 2)
    assert {(e["identity"], e["on_breach"]) for e in events} == {("CP1", "disconnect")}


async def test_a_breach_handler_decides_per_breach() -> None:
    def decide(breach: ocpprpc.Breach) -> ocpprpc.OnBreach:
        return ocpprpc.OnBreach.CALLERROR if breach.action == "Heartbeat" else ocpprpc.OnBreach.DROP

    limits = StationLimits(
        per_action={"Heartbeat": RateLimit.parse("1/60"), "MeterValues": RateLimit.parse("1/60")},
        on_breach=decide,
    )
    async with (
        ocpprpc.serve(router=csms_router(), rate_limits=limits) as server,
        ocpprpc.connect(ws_url(server), "CP1") as station,
    ):
        await station.call("Heartbeat")
        await station.call("MeterValues", {"connectorId": 1, "meterValue": []})
        with pytest.raises(ocpprpc.OCPPError) as refused:
            await station.call("Heartbeat")
        assert refused.value.code is ocpprpc.ErrorCode.GENERIC_ERROR
        with pytest.raises(ocpprpc.CallTimeout):
            await station.call("MeterValues", {"connectorId": 1, "meterValue": []}, timeout=0.3)


# -- admission --------------------------------------------------------------------------


async def test_a_denied_ip_gets_403_before_the_auth_callback_runs() -> None:
    recorder = Recorder()
    asked: list[str] = []

    async def auth(request: StationRequest) -> None:
        asked.append(request.identity)

    admission = AdmissionPolicy(deny_ips=["127.0.0.0/8"])
    async with ocpprpc.serve(auth=auth, admission=admission, security_events=recorder.hub) as server:
        with pytest.raises(HandshakeRejected) as refused:
            async with ocpprpc.connect(ws_url(server), "CP1"):
                pass
        assert refused.value.status == 403
        assert refused.value.body == b"address 127.0.0.1 is denied"
    assert asked == []
    [event] = recorder.of("connection_refused")
    assert (event["identity"], event["peer"], event["refusal"], event["status"]) == (
        "CP1",
        "127.0.0.1",
        "ip_denied",
        403,
    )


async def test_an_ip_over_its_upgrade_rate_gets_429_with_retry_after_and_others_do_not() -> None:
    recorder = Recorder()
    # Loopback is a trusted proxy, so each test client is the X-Forwarded-For address it names.
    admission = AdmissionPolicy(
        upgrade_rate="2/60", trusted_proxies=["127.0.0.1/32"], allow_ips=["203.0.113.0/24"]
    )
    async with ocpprpc.serve(admission=admission, security_events=recorder.hub) as server:

        async def attempt(client: str) -> HandshakeRejected | None:
            try:
                async with ocpprpc.connect(ws_url(server), "CP1", headers={"X-Forwarded-For": client}):
                    return None
            except HandshakeRejected as refused:
                return refused

        assert await attempt("203.0.113.7") is None
        assert await attempt("203.0.113.7") is None
        limited = await attempt("203.0.113.7")
        assert limited is not None and limited.status == 429
        retry_after = dict(limited.headers)[b"retry-after"]
        assert 1 <= int(retry_after) <= 30
        assert await attempt("203.0.113.8") is None  # another address has its own bucket
        outside = await attempt("198.51.100.9")
        assert outside is not None and outside.status == 403
    refusals = [(e["peer"], e["refusal"], e["status"]) for e in recorder.of("connection_refused")]
    assert refusals == [("203.0.113.7", "upgrade_rate", 429), ("198.51.100.9", "ip_not_allowed", 403)]


async def test_the_connection_cap_answers_503_reports_it_and_recovers() -> None:
    recorder = Recorder()
    async with ocpprpc.serve(max_connections=1, security_events=recorder.hub) as server:
        async with ocpprpc.connect(ws_url(server), "CP1"):
            with pytest.raises(HandshakeRejected) as refused:
                async with ocpprpc.connect(ws_url(server), "CP2"):
                    pass
            assert refused.value.status == 503
        await eventually(lambda: server.connection_count == 0)
        async with ocpprpc.connect(ws_url(server), "CP2"):
            await eventually(lambda: "CP2" in server.clients)
    [event] = recorder.of("connection_refused")
    assert (event["identity"], event["refusal"], event["status"]) == ("CP2", "connection_cap", 503)


# -- the other security events, each from a real scenario -------------------------------


async def test_auth_failed_from_a_wrong_password_and_a_username_mismatch() -> None:
    recorder = Recorder()
    table = PasswordTable({"CP1": "right-password-16"}, plaintext=True)
    async with ocpprpc.serve(auth=table, security_events=recorder.hub) as server:
        with pytest.raises(HandshakeRejected):
            async with ocpprpc.connect(ws_url(server), "CP1", password="wrong-password-16"):
                pass
        request = (
            b"GET /ocpp/CP1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Protocol: ocpp1.6\r\nAuthorization: Basic Q1AyOnNlY3JldA==\r\n\r\n"
        )
        assert (await http_exchange(server.port, request)).startswith(b"HTTP/1.1 401")
        events = await recorder.wait_for("auth_failed", 2)
    assert [(e["identity"], e["method"], e["status"]) for e in events] == [
        ("CP1", "basic", 401),
        (None, "basic", 401),
    ]
    assert "right-password" not in str(events) and "wrong-password" not in str(events)
    assert "Q1AyOnNlY3JldA" not in str(events)


async def test_auth_timed_out() -> None:
    recorder = Recorder()

    async def hangs(request: StationRequest) -> None:
        await anyio.sleep_forever()

    async with ocpprpc.serve(auth=hangs, handshake_timeout=0.5, security_events=recorder.hub) as server:
        with pytest.raises(HandshakeRejected) as refused:
            async with ocpprpc.connect(ws_url(server), "CP1"):
                pass
        assert refused.value.status == 503
    [event] = recorder.of("auth_timed_out")
    assert (event["identity"], event["timeout"], event["peer"]) == ("CP1", 0.5, "127.0.0.1")


async def test_handshake_aborted_by_garbage_and_by_a_peer_that_leaves() -> None:
    recorder = Recorder()
    async with ocpprpc.serve(security_events=recorder.hub) as server:
        assert (await http_exchange(server.port, b"NOT HTTP AT ALL\r\n\r\n")).startswith(b"HTTP/1.1 400")
        stream = await anyio.connect_tcp("127.0.0.1", server.port)
        await stream.send(b"GET /ocpp/CP1 HTTP/1.1\r\n")
        await stream.aclose()
        events = await recorder.wait_for("handshake_aborted", 2)
    assert all(e["peer"] == "127.0.0.1" and e["identity"] is None for e in events)
    assert any("connection closed before a complete request" in e["reason"] for e in events)


async def test_identity_evicted_by_a_second_connection() -> None:
    recorder = Recorder()
    async with ocpprpc.serve(security_events=recorder.hub) as server, ocpprpc.connect(ws_url(server), "CP1"):
        await eventually(lambda: "CP1" in server.clients)
        async with ocpprpc.connect(ws_url(server), "CP1"):
            events = await recorder.wait_for("identity_evicted")
    [event] = events
    assert (event["identity"], event["peer"], event["previous_peer"]) == ("CP1", "127.0.0.1", "127.0.0.1")


async def test_identity_evicted_reports_a_refused_duplicate_too() -> None:
    recorder = Recorder()
    async with (
        ocpprpc.serve(duplicate="refuse", security_events=recorder.hub) as server,
        ocpprpc.connect(ws_url(server), "CP1"),
    ):
        await eventually(lambda: "CP1" in server.clients)
        with pytest.raises(HandshakeRejected):
            async with ocpprpc.connect(ws_url(server), "CP1"):
                pass
    [event] = recorder.of("identity_evicted")
    assert event["previous_peer"] == "127.0.0.1" and "409" in event["reason"]


async def test_station_connected_and_disconnected_bracket_every_session() -> None:
    recorder = Recorder()
    async with ocpprpc.serve(security_events=recorder.hub) as server:
        async with ocpprpc.connect(ws_url(server), "CP1", protocols=["ocpp2.0.1"]):
            [connected] = await recorder.wait_for("station_connected")
            assert not recorder.of("station_disconnected")
        [disconnected] = await recorder.wait_for("station_disconnected")
    assert (connected["identity"], connected["peer"]) == ("CP1", "127.0.0.1")
    assert connected["protocol"] == "ocpp2.0.1"
    assert connected["severity"] == "info"
    assert (disconnected["identity"], disconnected["code"], disconnected["by_peer"]) == ("CP1", 1000, True)
    assert disconnected["protocol"] == "ocpp2.0.1" and disconnected["duration"] >= 0


async def test_bad_message_flood() -> None:
    recorder = Recorder()
    async with (
        ocpprpc.serve(max_bad_messages=3, security_events=recorder.hub) as server,
        raw_station(server.port, "CP1") as station,
    ):
        for _ in range(3):
            await station.send_text("not json")
        with anyio.fail_after(PROMPT):
            while (await station.close_code()) is None:
                pass
        events = await recorder.wait_for("bad_message_flood")
    [event] = events
    assert (event["identity"], event["count"], event["peer"]) == ("CP1", 3, "127.0.0.1")


async def test_no_bad_message_flood_for_a_station_that_just_leaves() -> None:
    recorder = Recorder()
    async with ocpprpc.serve(max_bad_messages=3, security_events=recorder.hub) as server:
        async with ocpprpc.connect(ws_url(server), "CP1"):
            await eventually(lambda: "CP1" in server.clients)
        await eventually(lambda: not server.clients)
    assert [event.kind for event in recorder.events] == ["station_connected", "station_disconnected"]


async def test_certificate_identity_mismatch(
    ca: trustme.CA, server_cert: trustme.LeafCert, station_ca: trustme.CA
) -> None:
    recorder = Recorder()
    context = ocpprpc.server_ssl_context(client_cadata=station_ca.cert_pem.bytes().decode())
    server_cert.configure_cert(context)
    station = ocpprpc.client_ssl_context(cadata=ca.cert_pem.bytes().decode())
    station_ca.issue_cert("cp002.example", common_name="CP002").configure_cert(station)
    async with ocpprpc.serve(
        auth=ocpprpc.certificate_identity(), ssl_context=context, security_events=recorder.hub
    ) as server:
        with pytest.raises(HandshakeRejected):
            async with ocpprpc.connect(ws_url(server, secure=True), "CP001", ssl_context=station):
                pass
        no_certificate = ocpprpc.client_ssl_context(cadata=ca.cert_pem.bytes().decode())
        with pytest.raises((HandshakeRejected, ssl.SSLError, ocpprpc.HandshakeError)):
            async with ocpprpc.connect(ws_url(server, secure=True), "CP001", ssl_context=no_certificate):
                pass
    [event] = recorder.of("certificate_identity_mismatch")
    assert (event["identity"], event["certificate_subject"], event["severity"]) == (
        "CP001",
        "CP002",
        "critical",
    )


async def test_async_subscribers_get_events_through_the_servers_task_group() -> None:
    hub = SecurityEvents()
    got: list[SecurityEvent] = []
    delivered = anyio.Event()

    async def slow_sink(event: SecurityEvent) -> None:
        await anyio.lowlevel.checkpoint()
        got.append(event)
        delivered.set()

    hub.subscribe(slow_sink)
    async with ocpprpc.serve(
        admission=AdmissionPolicy(deny_ips=["127.0.0.1/32"]), security_events=hub
    ) as server:
        assert server.security_events is hub
        with pytest.raises(HandshakeRejected):
            async with ocpprpc.connect(ws_url(server), "CP1"):
                pass
        with anyio.fail_after(PROMPT):
            await delivered.wait()
        assert hub.running
    assert [event.kind for event in got] == ["connection_refused"]
    assert not hub.running


async def test_a_failing_subscriber_costs_the_station_nothing() -> None:
    def broken(event: SecurityEvent) -> None:
        raise RuntimeError("the SIEM is down")

    limits = StationLimits(per_action={"Heartbeat": RateLimit.parse("1/60")}, on_breach=OnBreach.CALLERROR)
    async with ocpprpc.serve(router=csms_router(), rate_limits=limits) as server:
        server.security_events.subscribe(broken)
        seen: list[SecurityEvent] = []
        server.security_events.subscribe(seen.append)
        async with ocpprpc.connect(ws_url(server), "CP1") as station:
            await station.call("Heartbeat")
            with pytest.raises(ocpprpc.OCPPError):
                await station.call("Heartbeat")
            await station.call("MeterValues", {"connectorId": 1, "meterValue": []})
        assert [event.kind for event in seen][:2] == ["station_connected", "rate_limited"]
        assert server.security_events.subscriber_errors == len(seen)
