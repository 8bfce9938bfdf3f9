"""Prometheus metrics: a scripted scenario over real sockets, then ``/metrics`` parsed by prometheus_client.

The scenario: 3 stations, each sends 2 Heartbeats; the CSMS sends 2 ChangeAvailability to
each; one Authorize answered with a CALLERROR, one Reset that times out, one MeterValues
over its rate limit, answers that fail validation and one refused handshake.  Every value
scraped is asserted exactly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

import ocpprpc
from ocpprpc import Accept, CallContext, ClusterStats, Metrics, OCPPError, Reject, Router, StationLimits
from ocpprpc._csms.server import Server
from tests.csms.helpers import eventually, http_exchange

NOW = "2025-01-01T00:00:00Z"
STATIONS = ["CP0", "CP1", "CP2"]
METER_VALUES = {"connectorId": 1, "meterValue": [{"timestamp": NOW, "sampledValue": [{"value": "1"}]}]}
AVAILABILITY = {"connectorId": 0, "type": "Operative"}
Scraped = dict[tuple[str, frozenset[tuple[str, str]]], float]


def csms_router() -> Router:
    router = Router()

    @router.on("Heartbeat")
    def heartbeat(request: Any, ctx: CallContext) -> dict[str, Any]:
        return {"currentTime": NOW}

    @router.on("Authorize")
    def authorize(request: Any, ctx: CallContext) -> dict[str, Any]:
        raise OCPPError("SecurityError", "blocked tag")

    @router.on("MeterValues")
    def meter_values(request: Any, ctx: CallContext) -> dict[str, Any]:
        return {}

    return router


def station_router(bad_answer: bool) -> Router:
    router = Router()

    @router.on("ChangeAvailability")
    def change_availability(request: Any, ctx: CallContext) -> dict[str, Any]:
        return {"status": "Bogus" if bad_answer else "Accepted"}

    @router.on("Reset")
    async def reset(request: Any, ctx: CallContext) -> dict[str, Any]:
        await anyio.sleep_forever()
        raise AssertionError("not reached")

    return router


async def refuse_intruders(request: ocpprpc.StationRequest) -> Accept | Reject:
    return Reject(401) if request.identity == "INTRUDER" else Accept()


def samples(text: str) -> Scraped:
    """Every sample of the exposition by (name, labels), via prometheus_client's own parser."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(scraped: Scraped, name: str, **labels: str) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


def total(scraped: Scraped, name: str) -> float:
    return sum(v for (sample, _), v in scraped.items() if sample == name)


def parse_response(response: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return status, headers, body


async def scenario(server: Server) -> None:
    url = f"ws://127.0.0.1:{server.port}/ocpp"
    async with contextlib.AsyncExitStack() as stack:
        stations = [
            await stack.enter_async_context(
                ocpprpc.connect(
                    url, identity, protocols=["ocpp1.6"], router=station_router(identity == "CP2")
                )
            )
            for identity in STATIONS
        ]
        await eventually(lambda: len(server.clients) == len(STATIONS))
        for station in stations:
            for _ in range(2):
                await station.call("Heartbeat", {})
        for identity in STATIONS[:2]:
            for _ in range(2):
                await server.send_to_client(identity, "ChangeAvailability", AVAILABILITY)
        for _ in range(2):  # CP2 answers with a status that does not exist
            with pytest.raises(ocpprpc.InvalidResponseError):
                await server.send_to_client("CP2", "ChangeAvailability", AVAILABILITY)
        with pytest.raises(OCPPError):
            await stations[0].call("Authorize", {"idTag": "BLOCKED"})
        with pytest.raises(ocpprpc.CallTimeout):
            await server.send_to_client("CP0", "Reset", {"type": "Soft"}, timeout=0.2)
        await stations[1].call("MeterValues", METER_VALUES)
        with pytest.raises(OCPPError):  # over its limit of 1 a minute
            await stations[1].call("MeterValues", METER_VALUES)
        with pytest.raises(ocpprpc.HandshakeRejected):
            async with ocpprpc.connect(url, "INTRUDER", protocols=["ocpp1.6"]):
                pass  # pragma: no cover
        response = await http_exchange(server.port, b"GET /metrics HTTP/1.1\r\nHost: csms\r\n\r\n")
        status, headers, body = parse_response(response)
        assert status == "HTTP/1.1 200 OK"
        assert headers["content-type"] == Metrics().content_type
        assert headers["content-length"] == str(len(body))
        check(samples(body.decode()), server.stats())


def check(scraped: Scraped, stats: ocpprpc.ServerStats) -> None:
    calls = "ocpprpc_calls_total"
    assert value(scraped, "ocpprpc_connections", protocol="ocpp1.6") == 3
    assert value(scraped, calls, action="Heartbeat", direction="in", outcome="ok") == 6
    assert value(scraped, calls, action="ChangeAvailability", direction="out", outcome="ok") == 4
    invalid = value(scraped, calls, action="ChangeAvailability", direction="out", outcome="invalid_response")
    assert invalid == 2
    assert value(scraped, calls, action="Authorize", direction="in", outcome="callerror") == 1
    assert value(scraped, calls, action="Reset", direction="out", outcome="timeout") == 1
    assert value(scraped, calls, action="MeterValues", direction="in", outcome="ok") == 1
    assert value(scraped, calls, action="MeterValues", direction="in", outcome="callerror") == 1
    assert total(scraped, calls) == 16
    duration = "ocpprpc_call_duration_seconds_count"
    assert value(scraped, duration, action="Heartbeat", direction="in") == 6
    assert value(scraped, duration, action="ChangeAvailability", direction="out") == 4
    assert value(scraped, duration, action="MeterValues", direction="in") == 2
    assert value(scraped, duration, action="Authorize", direction="in") == 1
    assert value(scraped, duration, action="Reset", direction="out") == 0  # no answer, no latency
    bucket = "ocpprpc_call_duration_seconds_bucket"
    assert value(scraped, bucket, action="Heartbeat", direction="in", le="+Inf") == 6
    failures = "ocpprpc_validation_failures_total"
    assert value(scraped, failures, action="ChangeAvailability", direction="out") == 2
    assert total(scraped, "ocpprpc_validation_failures_total") == 2
    assert value(scraped, "ocpprpc_rate_limited_total", action="MeterValues", on_breach="callerror") == 1
    events = "ocpprpc_security_events_total"
    assert value(scraped, events, kind="station_connected", severity="info") == 3
    assert value(scraped, events, kind="auth_failed", severity="warning") == 1
    assert value(scraped, events, kind="rate_limited", severity="warning") == 1
    assert total(scraped, events) == 5
    assert value(scraped, "ocpprpc_handshakes_total", outcome="accepted") == 3
    assert value(scraped, "ocpprpc_handshakes_total", outcome="auth_rejected") == 1
    assert total(scraped, "ocpprpc_handshakes_total") == 4
    # What only the server counts, as stats() reports it (nothing moved since the scrape).
    assert value(scraped, "ocpprpc_bytes_received_total") == stats.bytes_received > 0
    assert value(scraped, "ocpprpc_bytes_sent_total") == stats.bytes_sent > 0
    assert value(scraped, "ocpprpc_bad_messages_total") == stats.bad_messages == 2  # the invalid answers
    assert value(scraped, "ocpprpc_calls_in_flight", direction="in") == 0
    assert value(scraped, "ocpprpc_calls_in_flight", direction="out") == 0
    assert stats.calls == {
        "Heartbeat": {"in": {"ok": 6}},
        "ChangeAvailability": {"out": {"ok": 4, "invalid_response": 2}},
        "Authorize": {"in": {"callerror": 1}},
        "Reset": {"out": {"timeout": 1}},
        "MeterValues": {"in": {"ok": 1, "callerror": 1}},
    }


async def test_a_scripted_scenario_is_scraped_exactly() -> None:
    async with ocpprpc.serve(
        router=csms_router(),
        protocols=["ocpp1.6"],
        validation=True,
        auth=refuse_intruders,
        rate_limits=StationLimits(per_action={"MeterValues": "1/60"}, on_breach="callerror"),  # type: ignore[arg-type,dict-item]
        metrics=Metrics(),
    ) as server:
        await scenario(server)
    # After the stations left: the gauge is back to 0, every disconnection counted.
    assert server.metrics is not None
    scraped = samples(server.metrics.render().decode())
    assert value(scraped, "ocpprpc_connections", protocol="ocpp1.6") == 0
    assert value(scraped, "ocpprpc_security_events_total", kind="station_disconnected", severity="info") == 3


async def test_metrics_true_makes_its_own_and_is_the_outermost_middleware() -> None:
    seen: list[str] = []

    async def inner(ctx: ocpprpc.MessageContext, call_next: ocpprpc.CallNext) -> Any:
        seen.append(ctx.action)
        return await call_next(ctx)

    async with ocpprpc.serve(
        router=csms_router(), protocols=["ocpp1.6"], metrics=True, middleware=[inner]
    ) as server:
        assert isinstance(server.metrics, Metrics)
        assert server.session_options["middleware"] == (server.metrics, inner)
        url = f"ws://127.0.0.1:{server.port}/ocpp"
        async with ocpprpc.connect(url, "CP0", protocols=["ocpp1.6"]) as station:
            await station.call("Heartbeat", {})
        assert seen == ["Heartbeat"]
        assert server.stats().calls == {"Heartbeat": {"in": {"ok": 1}}}


async def test_without_metrics_nothing_is_added_to_the_message_path() -> None:
    async with ocpprpc.serve(router=csms_router(), protocols=["ocpp1.6"], metrics=False) as server:
        assert server.metrics is None
        assert "middleware" not in server.session_options
        url = f"ws://127.0.0.1:{server.port}/ocpp"
        async with ocpprpc.connect(url, "CP0", protocols=["ocpp1.6"]) as station:
            await station.call("Heartbeat", {})
            assert server.clients["CP0"].middleware == ()
        assert server.stats().calls is None
        # No side door either: a plain GET keeps its 426.
        response = await http_exchange(server.port, b"GET /metrics HTTP/1.1\r\nHost: csms\r\n\r\n")
        assert response.startswith(b"HTTP/1.1 426 ")


class FakeContext:
    def __init__(
        self, action: str, direction: str = "in", kind: str = "call", started: float | None = None
    ) -> None:
        self.action = action
        self.direction = direction
        self.kind = kind
        # As MessageContext: time.perf_counter() when the exchange entered the onion.
        self.started = time.perf_counter() if started is None else started


async def empty_answer(ctx: Any) -> dict[str, Any]:
    return {}


async def test_a_station_cannot_grow_the_action_labels_without_bound() -> None:
    metrics = Metrics(max_actions=2)
    for action in ["Heartbeat", "MeterValues", "Junk1", "Junk2", "Heartbeat"]:
        await metrics(FakeContext(action), empty_answer)
    assert metrics.call_counts() == {
        "Heartbeat": {"in": {"ok": 2}},
        "MeterValues": {"in": {"ok": 1}},
        "_other": {"in": {"ok": 2}},
    }


class Odd(Exception):
    pass


@pytest.mark.parametrize(
    ("raised", "outcome"),
    [
        (Odd("a handler bug"), "error"),
        (ocpprpc.DroppedByMiddleware(), "dropped"),
        (ocpprpc.ConnectionLost(None, "gone"), "connection_lost"),
    ],
)
async def test_every_failure_is_an_outcome_and_passes_through(raised: Exception, outcome: str) -> None:
    metrics = Metrics()

    async def fail(ctx: Any) -> Any:
        raise raised

    with pytest.raises(type(raised)):
        await metrics(FakeContext("Heartbeat", "out"), fail)
    assert metrics.call_counts() == {"Heartbeat": {"out": {outcome: 1}}}


async def test_a_dropped_call_a_send_and_a_cancelled_call() -> None:
    metrics = Metrics()

    async def drop(ctx: Any) -> Any:
        return ocpprpc.NO_REPLY

    async def hang(ctx: Any) -> Any:
        await anyio.sleep_forever()

    await metrics(FakeContext("MeterValues"), drop)
    for _ in range(2):  # the second one counted by the fast path for series seen before
        await metrics(FakeContext("NotifyPeriodicEventStream", kind="send"), empty_answer)
    with anyio.move_on_after(0):
        await metrics(FakeContext("Reset", "out"), hang)
    assert metrics.call_counts() == {
        "MeterValues": {"in": {"dropped": 1}},
        "NotifyPeriodicEventStream": {"in": {"ok": 2}},
        "Reset": {"out": {"cancelled": 1}},
    }
    scraped = samples(metrics.render().decode())
    # A SEND is never answered: counted, without a latency.
    count = "ocpprpc_call_duration_seconds_count"
    assert value(scraped, count, action="NotifyPeriodicEventStream", direction="in") == 0


def test_a_metrics_object_serves_one_server_and_takes_a_given_registry() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, namespace="csms")
    Server(metrics=metrics)
    assert {"csms_calls", "csms_handshakes", "csms_bytes_received"} <= {f.name for f in registry.collect()}
    with pytest.raises(ValueError, match="already bound"):
        Server(metrics=metrics)
    with pytest.raises(ValueError, match="max_actions"):
        Metrics(max_actions=0)


CLUSTER = ClusterStats(
    node="csms-1",
    age=1.5,
    sent=7,
    received=6,
    duplicates=1,
    expired=2,
    malformed=3,
    node_unavailable=4,
    broadcasts_sent=5,
    broadcasts_received=8,
    subscriber_restarts=9,
    rehydrations=10,
    unavailable=11,
    inbox_lag=12,
    inbox_pending=13,
    oldest_pending_ms=1400,
)


@pytest.mark.parametrize(
    ("inbox", "gauges"),
    [
        ({}, {"ocpprpc_cluster_inbox_lag": 12, "ocpprpc_cluster_inbox_pending": 13, "oldest": 1.4}),
        (
            {"oldest_pending_ms": None},
            {"ocpprpc_cluster_inbox_lag": 12, "ocpprpc_cluster_inbox_pending": 13, "oldest": 0},
        ),
        ({"inbox_lag": None}, {"ocpprpc_cluster_inbox_pending": 13, "oldest": 1.4}),  # Redis cannot say
        ({"inbox_lag": None, "inbox_pending": None, "oldest_pending_ms": None}, {}),  # Redis did not answer
    ],
    ids=["known", "none-pending", "lag-unknown", "inbox-unknown"],
)
def test_the_cluster_figures_of_stats_are_exported(inbox: dict[str, Any], gauges: dict[str, float]) -> None:
    """Exactly ``stats().cluster``; an inbox figure that is not known is left out, never shown as 0."""
    server = Server()
    metrics = Metrics()
    cluster = dataclasses.replace(CLUSTER, **inbox)
    metrics.bind(lambda: dataclasses.replace(server.stats(), cluster=cluster))
    scraped = samples(metrics.render().decode())
    ours = {(name, labels): figure for (name, labels), figure in scraped.items() if "_cluster_" in name}
    expected = {
        ("ocpprpc_cluster_node_info", frozenset({("node", "csms-1")})): 1,
        ("ocpprpc_cluster_sent_total", frozenset()): 7,
        ("ocpprpc_cluster_received_total", frozenset()): 6,
        ("ocpprpc_cluster_dropped_total", frozenset({("reason", "duplicate")})): 1,
        ("ocpprpc_cluster_dropped_total", frozenset({("reason", "expired")})): 2,
        ("ocpprpc_cluster_dropped_total", frozenset({("reason", "malformed")})): 3,
        ("ocpprpc_cluster_node_unavailable_total", frozenset()): 4,
        ("ocpprpc_cluster_broadcasts_sent_total", frozenset()): 5,
        ("ocpprpc_cluster_broadcasts_received_total", frozenset()): 8,
        ("ocpprpc_cluster_subscriber_restarts_total", frozenset()): 9,
        ("ocpprpc_cluster_rehydrations_total", frozenset()): 10,
        ("ocpprpc_cluster_unavailable_total", frozenset()): 11,
        ("ocpprpc_cluster_sample_age_seconds", frozenset()): 1.5,
    }
    for name, figure in gauges.items():
        expected[(name if name != "oldest" else "ocpprpc_cluster_oldest_pending_seconds", frozenset())] = (
            figure
        )
    assert ours == expected
    # Without a cluster: not one cluster series.
    alone = Metrics()
    alone.bind(Server().stats)
    assert not any("_cluster_" in name for name, _ in samples(alone.render().decode()))


def test_importing_ocpprpc_does_not_import_prometheus_client() -> None:
    code = "import sys, ocpprpc; ocpprpc.Server; ocpprpc.Metrics; print('prometheus_client' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "False"


@pytest.fixture(autouse=True)
def _nothing_in_the_global_registry() -> Iterator[None]:
    """Each Metrics has a registry of its own: the process's default one never gets ocpprpc's series."""
    from prometheus_client import REGISTRY

    yield
    assert not any(family.name.startswith("ocpprpc_") for family in REGISTRY.collect())


class FakeClock:
    def __init__(self, readings: list[float]) -> None:
        self.readings = readings

    def perf_counter(self) -> float:
        return self.readings.pop(0)


async def test_latencies_fall_in_cumulative_buckets(monkeypatch: pytest.MonkeyPatch) -> None:
    import ocpprpc._ops.metrics as module

    metrics = Metrics(buckets=(1.0, 0.1))  # any order
    # Four calls started at 0 (the context's reading) ending at 0.05 s, 0.1 s (on a bound: counted
    # in it), 0.5 s and 2 s (the metrics' own reading).
    monkeypatch.setattr(module, "time", FakeClock([0.05, 0.1, 0.5, 2.0]))
    for _ in range(4):
        await metrics(FakeContext("Heartbeat", started=0.0), empty_answer)
    scraped = samples(metrics.render().decode())
    bucket = "ocpprpc_call_duration_seconds_bucket"
    assert value(scraped, bucket, action="Heartbeat", direction="in", le="0.1") == 2
    assert value(scraped, bucket, action="Heartbeat", direction="in", le="1.0") == 3
    assert value(scraped, bucket, action="Heartbeat", direction="in", le="+Inf") == 4
    assert value(scraped, "ocpprpc_call_duration_seconds_count", action="Heartbeat", direction="in") == 4
    assert value(scraped, "ocpprpc_call_duration_seconds_sum", action="Heartbeat", direction="in") == 2.65
