"""OpenTelemetry tracing: spans per connection and per message, over real sockets, both backends.

Every test records into the SDK's in-memory exporter and checks names, kinds, attributes,
statuses and, above all, the parent links: call spans under their connection span, a
handler's own span under its call span, a call made from a handler under the handler's span.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import ocpprpc
from ocpprpc import DROP, CallContext, OCPPError, Router, Session, Tracing
from tests.csms.helpers import PROMPT, eventually, raw_station

NOW = {"currentTime": "2026-11-20T12:00:00Z"}


class Recorder:
    """A tracer provider whose finished spans land in memory."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("app")

    @property
    def spans(self) -> tuple[ReadableSpan, ...]:
        return self.exporter.get_finished_spans()

    def named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.spans if span.name == name]

    def one(self, name: str) -> ReadableSpan:
        found = self.named(name)
        assert len(found) == 1, (name, [span.name for span in self.spans])
        return found[0]


@pytest.fixture(autouse=True)
def context_kept_balanced(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """OpenTelemetry logs (never raises) a detach in the wrong context: fail on it."""
    yield
    assert "Failed to detach context" not in caplog.text


@pytest.fixture
def csms_side() -> Iterator[Recorder]:
    recorder = Recorder()
    yield recorder
    recorder.provider.shutdown()


@pytest.fixture
def station_side() -> Iterator[Recorder]:
    recorder = Recorder()
    yield recorder
    recorder.provider.shutdown()


def parent_of(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    found: int = span.context.span_id
    return found


def serve_traced(tracing: Tracing, **options: Any) -> Any:
    """``ocpprpc.serve`` with *tracing* as the middleware and subscribed to the hub from the start."""
    hub = ocpprpc.SecurityEvents()
    hub.subscribe(tracing.on_security_event)
    middleware = [tracing, *options.pop("middleware", ())]
    options.setdefault("router", heartbeat_router())
    return ocpprpc.serve(middleware=middleware, security_events=hub, **options)


def heartbeat_router() -> Router:
    router = Router()

    @router.on("Heartbeat")
    def heartbeat(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        return NOW

    return router


def url(server: ocpprpc.Server) -> str:
    return f"ws://127.0.0.1:{server.port}/ocpp"


async def test_calls_both_ways_nest_under_connection_call_and_handler_spans(
    csms_side: Recorder, station_side: Recorder
) -> None:
    router = Router()
    seen_in_handler: list[int] = []

    @router.on("Heartbeat")
    async def heartbeat(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        # The trace context is carried to the handler: its current span is the call's.
        seen_in_handler.append(trace.get_current_span().get_span_context().span_id)
        with csms_side.tracer.start_as_current_span("csms.lookup"):
            await ctx.session.call("GetConfiguration", {})
        return NOW

    connected = anyio.Event()

    async def on_connect(session: Session) -> None:
        await session.call("ClearCache", {})
        connected.set()

    station_router = Router()

    @station_router.on("GetConfiguration")
    def get_configuration(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        return {"configurationKey": []}

    @station_router.on("ClearCache")
    def clear_cache(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        return {"status": "Accepted"}

    csms_tracing = Tracing(csms_side.provider)
    async with serve_traced(csms_tracing, router=router, on_connect=on_connect) as server:
        # A station's recipe: its own span around the connection parents its call spans.
        with station_side.tracer.start_as_current_span("station.run") as run:
            async with ocpprpc.connect(
                url(server), "CP001", router=station_router, middleware=[Tracing(station_side.provider)]
            ) as station:
                with anyio.fail_after(PROMPT):
                    await connected.wait()
                assert await station.call("Heartbeat", {}) == NOW
        await eventually(lambda: bool(csms_side.named("ocpp.connection")))

    # The CSMS: connection <- IN Heartbeat <- csms.lookup <- OUT GetConfiguration,
    # and connection <- OUT ClearCache (from on_connect).
    connection = csms_side.one("ocpp.connection")
    call_in = csms_side.one("ocpp.call IN Heartbeat")
    lookup = csms_side.one("csms.lookup")
    nested_out = csms_side.one("ocpp.call OUT GetConfiguration")
    on_connect_out = csms_side.one("ocpp.call OUT ClearCache")
    assert connection.parent is None and connection.kind is SpanKind.SERVER
    assert parent_of(call_in) == span_id(connection)
    assert seen_in_handler == [span_id(call_in)]
    assert parent_of(lookup) == span_id(call_in)
    assert parent_of(nested_out) == span_id(lookup)
    assert parent_of(on_connect_out) == span_id(connection)
    assert len({span.context.trace_id for span in csms_side.spans if span.context}) == 1
    assert call_in.kind is SpanKind.SERVER and nested_out.kind is SpanKind.CLIENT
    assert dict(call_in.attributes or {}) == {
        "rpc.system": "ocpp",
        "rpc.method": "Heartbeat",
        "ocpp.protocol": "ocpp1.6",
        "ocpp.direction": "in",
        "ocpp.kind": "call",
        "ocpp.message_id": (call_in.attributes or {})["ocpp.message_id"],
        "ocpp.identity": "CP001",
        "ocpp.outcome": "result",
    }
    assert dict(connection.attributes or {}) == {
        "rpc.system": "ocpp",
        "ocpp.protocol": "ocpp1.6",
        "ocpp.identity": "CP001",
        "client.address": "127.0.0.1",
        "ocpp.close_code": 1000,
        "ocpp.closed_by": "peer",
    }
    assert call_in.status.status_code is StatusCode.UNSET
    # Span lifetimes nest too: the connection outlives its calls.
    assert connection.start_time is not None and call_in.start_time is not None
    assert connection.start_time <= call_in.start_time
    assert connection.end_time is not None and call_in.end_time is not None
    assert call_in.end_time <= connection.end_time

    # The station: its OUT Heartbeat and the IN calls all under its own span.
    station_out = station_side.one("ocpp.call OUT Heartbeat")
    assert station_out.kind is SpanKind.CLIENT
    assert parent_of(station_out) == run.get_span_context().span_id
    for name in ("ocpp.call IN GetConfiguration", "ocpp.call IN ClearCache"):
        assert parent_of(station_side.one(name)) == run.get_span_context().span_id
    # No traceparent crosses the wire: the sides share the message id, not the trace.
    assert (station_out.attributes or {})["ocpp.message_id"] == (call_in.attributes or {})["ocpp.message_id"]
    assert station_out.context is not None and call_in.context is not None
    assert station_out.context.trace_id != call_in.context.trace_id


async def test_a_command_from_outside_the_session_nests_under_the_connection_or_links_to_it(
    csms_side: Recorder,
) -> None:
    tracing = Tracing(csms_side.provider)
    station_router = Router()

    @station_router.on("ClearCache")
    def clear_cache(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        return {"status": "Accepted"}

    async with (
        serve_traced(tracing) as server,
        ocpprpc.connect(url(server), "CP002", router=station_router, middleware=[tracing]) as station,
    ):
        await eventually(lambda: "CP002" in server.clients)
        # No span current (a bare task): the station's connection span is the parent.
        await server.send_to_client("CP002", "ClearCache", {})
        # An API request's span is current: the call is part of that trace, linked to the station's.
        with csms_side.tracer.start_as_current_span("api.request") as api:
            await server.send_to_client("CP002", "ClearCache", {})
        # The station's own calls, through the same Tracing, are not the CSMS connection's children.
        await station.call("Heartbeat", {})
    await eventually(lambda: bool(csms_side.named("ocpp.connection")))
    connection = csms_side.one("ocpp.connection")
    bare, in_api = sorted(csms_side.named("ocpp.call OUT ClearCache"), key=lambda span: span.start_time or 0)
    assert parent_of(bare) == span_id(connection)
    assert parent_of(in_api) == api.get_span_context().span_id
    assert [link.context.span_id for link in in_api.links] == [span_id(connection)]
    assert csms_side.one("ocpp.call OUT Heartbeat").parent is None


async def test_a_callerror_and_a_timeout_are_errors_with_their_code(
    csms_side: Recorder, station_side: Recorder
) -> None:
    router = Router()
    release = anyio.Event()

    @router.on("Authorize")
    def authorize(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        raise OCPPError("SecurityError", "blocked tag")

    @router.on("Heartbeat")
    async def slow(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        await release.wait()
        return NOW

    @router.on("StatusNotification")
    def broken(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        raise ValueError("a bug in the handler")

    async with (
        serve_traced(Tracing(csms_side.provider), router=router) as server,
        ocpprpc.connect(url(server), "CP003", middleware=[Tracing(station_side.provider)]) as station,
    ):
        with pytest.raises(OCPPError, match="blocked tag"):
            await station.call("Authorize", {"idTag": "BLOCKED"})
        with pytest.raises(ocpprpc.CallTimeout):
            await station.call("Heartbeat", {}, timeout=0.05)
        release.set()
        with pytest.raises(OCPPError):
            await station.call("StatusNotification", {})
        await eventually(lambda: bool(csms_side.named("ocpp.call IN Heartbeat")))

    for side in (csms_side, station_side):
        direction = "IN" if side is csms_side else "OUT"
        refused = side.one(f"ocpp.call {direction} Authorize")
        assert refused.status.status_code is StatusCode.ERROR
        assert refused.status.description == "SecurityError: blocked tag"
        attributes = refused.attributes or {}
        assert attributes["ocpp.outcome"] == "callerror"
        assert attributes["ocpp.error_code"] == attributes["error.type"] == "SecurityError"
    timed_out = station_side.one("ocpp.call OUT Heartbeat")
    assert timed_out.status.status_code is StatusCode.ERROR
    assert (timed_out.attributes or {})["ocpp.outcome"] == "timeout"
    assert (timed_out.attributes or {})["error.type"] == "CallTimeout"
    # The CSMS answered late, and successfully as far as it knows.
    assert (csms_side.one("ocpp.call IN Heartbeat").attributes or {})["ocpp.outcome"] == "result"
    # A handler's bug: the span says which exception (the station got InternalError).
    failed = csms_side.one("ocpp.call IN StatusNotification")
    assert failed.status.status_code is StatusCode.ERROR
    assert (failed.attributes or {})["ocpp.outcome"] == "failed"
    assert (failed.attributes or {})["error.type"] == "ValueError"
    assert [event.name for event in failed.events] == ["exception"]
    internal = station_side.one("ocpp.call OUT StatusNotification")
    assert (internal.attributes or {})["ocpp.error_code"] == "InternalError"


async def test_middleware_verdicts_drop_and_refuse(csms_side: Recorder, station_side: Recorder) -> None:
    async def verdicts(ctx: ocpprpc.MessageContext, call_next: ocpprpc.CallNext) -> Any:
        if ctx.action == "Authorize":
            raise OCPPError("NotSupported", "not here")
        if ctx.action == "DataTransfer":
            return DROP
        return await call_next(ctx)

    async def drop_outbound(ctx: ocpprpc.MessageContext, call_next: ocpprpc.CallNext) -> Any:
        if ctx.action == "FirmwareStatusNotification":
            return DROP
        return await call_next(ctx)

    async with (
        serve_traced(Tracing(csms_side.provider), middleware=[verdicts]) as server,
        ocpprpc.connect(
            url(server), "CP004", middleware=[Tracing(station_side.provider), drop_outbound]
        ) as station,
    ):
        with pytest.raises(OCPPError):
            await station.call("Authorize", {"idTag": "X"})
        with pytest.raises(ocpprpc.CallTimeout):
            await station.call("DataTransfer", {"vendorId": "V"}, timeout=0.05)
        with pytest.raises(ocpprpc.DroppedByMiddleware):
            await station.call("FirmwareStatusNotification", {"status": "Idle"})

    refused = csms_side.one("ocpp.call IN Authorize")
    assert refused.status.status_code is StatusCode.ERROR
    assert (refused.attributes or {})["ocpp.error_code"] == "NotSupported"
    dropped_in = csms_side.one("ocpp.call IN DataTransfer")
    assert (dropped_in.attributes or {})["ocpp.outcome"] == "dropped"
    assert dropped_in.status.status_code is StatusCode.UNSET  # a verdict, not a failure
    dropped_out = station_side.one("ocpp.call OUT FirmwareStatusNotification")
    assert (dropped_out.attributes or {})["ocpp.outcome"] == "dropped"
    assert dropped_out.status.status_code is StatusCode.UNSET
    assert not csms_side.named("ocpp.call IN FirmwareStatusNotification")  # never sent


async def test_a_replaced_connection_keeps_its_own_span_and_calls(csms_side: Recorder) -> None:
    tracing = Tracing(csms_side.provider)
    async with serve_traced(tracing) as server:
        async with ocpprpc.connect(url(server), "CP005") as first:
            await first.call("Heartbeat", {})
            async with ocpprpc.connect(url(server), "CP005") as second:
                with anyio.fail_after(PROMPT):
                    await first.closed.wait()  # replaced (1008)
                await second.call("Heartbeat", {})
        await eventually(lambda: len(csms_side.named("ocpp.connection")) == 2)
    old, new = sorted(csms_side.named("ocpp.connection"), key=lambda span: span.start_time or 0)
    calls = sorted(csms_side.named("ocpp.call IN Heartbeat"), key=lambda span: span.start_time or 0)
    assert [parent_of(span) for span in calls] == [span_id(old), span_id(new)]
    assert (old.attributes or {})["ocpp.close_code"] == 1008
    assert (old.attributes or {})["ocpp.closed_by"] == "self"
    # The eviction is an event on the new connection's span.
    assert [event.name for event in new.events] == ["identity_evicted"]
    assert not tracing._open  # every span ended and forgotten


async def test_a_send_is_a_producer_and_a_consumer_span(csms_side: Recorder, station_side: Recorder) -> None:
    router = Router()
    received = anyio.Event()

    @router.on("NotifyPeriodicEventStream")
    def stream(request: dict[str, Any], ctx: CallContext) -> None:
        received.set()

    payload = {"id": 1, "pending": 0, "basetime": "2026-11-20T12:00:00Z", "data": []}
    async with (
        serve_traced(Tracing(csms_side.provider), router=router) as server,
        ocpprpc.connect(
            url(server), "CP006", protocols=["ocpp2.1"], middleware=[Tracing(station_side.provider)]
        ) as station,
    ):
        await station.send("NotifyPeriodicEventStream", payload)
        with anyio.fail_after(PROMPT):
            await received.wait()
        await eventually(lambda: bool(csms_side.named("ocpp.send IN NotifyPeriodicEventStream")))
    consumer = csms_side.one("ocpp.send IN NotifyPeriodicEventStream")
    producer = station_side.one("ocpp.send OUT NotifyPeriodicEventStream")
    assert consumer.kind is SpanKind.CONSUMER and producer.kind is SpanKind.PRODUCER
    for span in (consumer, producer):
        assert (span.attributes or {})["ocpp.outcome"] == "sent"
    assert (consumer.attributes or {})["ocpp.protocol"] == "ocpp2.1"
    assert parent_of(consumer) == span_id(csms_side.one("ocpp.connection"))


async def test_payloads_only_when_asked_and_redacted(csms_side: Recorder) -> None:
    router = Router()

    @router.on("Authorize")
    def authorize(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        return {"idTagInfo": {"status": "Accepted"}}

    async with (
        serve_traced(Tracing(csms_side.provider, record_payloads=True), router=router) as server,
        ocpprpc.connect(url(server), "CP007", middleware=[Tracing(csms_side.provider)]) as station,
    ):
        await station.call("Authorize", {"idTag": "04E3A1B2C3D4"})
        await eventually(lambda: bool(csms_side.named("ocpp.call IN Authorize")))
    recorded = csms_side.one("ocpp.call IN Authorize").attributes or {}
    assert json.loads(str(recorded["ocpp.request"])) == {"idTag": "****C3D4"}
    assert json.loads(str(recorded["ocpp.response"])) == {"idTagInfo": {"status": "Accepted"}}
    unrecorded = csms_side.one("ocpp.call OUT Authorize").attributes or {}
    assert "ocpp.request" not in unrecorded and "ocpp.response" not in unrecorded


async def test_disabled_it_records_nothing(csms_side: Recorder) -> None:
    tracing = Tracing(csms_side.provider, enabled=False)
    async with (
        serve_traced(tracing) as server,
        ocpprpc.connect(url(server), "CP008", middleware=[tracing]) as station,
    ):
        assert await station.call("Heartbeat", {}) == NOW
    assert csms_side.spans == ()
    assert not tracing._open


async def test_a_hostile_action_name_does_not_become_a_span_name(csms_side: Recorder) -> None:
    """A peer chooses its action names: an unknown one is named ``unknown``, and attributes are clipped."""
    async with (
        serve_traced(Tracing(csms_side.provider), router=Router()) as server,
        raw_station(server.port, "EVIL") as evil,
    ):
        action = "X" * 5000
        await evil.send_text(json.dumps([2, "m1", action, {}]))
        answer = json.loads(await evil.next_text())
        assert answer[:3] == [4, "m1", "NotImplemented"]
        # The connection still serves (and traces) a proper call.
        await evil.send_text(json.dumps([2, "m2", "Heartbeat", {}]))
        assert json.loads(await evil.next_text())[:3] == [4, "m2", "NotSupported"]
    await eventually(lambda: bool(csms_side.named("ocpp.connection")))
    hostile = csms_side.one("ocpp.call IN unknown")
    method = str((hostile.attributes or {})["rpc.method"])
    assert len(method) == 128 and method.startswith("XXX")
    assert (hostile.attributes or {})["ocpp.error_code"] == "NotImplemented"
    assert csms_side.one("ocpp.call IN Heartbeat").status.status_code is StatusCode.ERROR


def test_importing_ocpprpc_imports_no_opentelemetry() -> None:
    code = (
        "import json, sys, ocpprpc\n"
        "ocpprpc.Tracing\n"
        "print(json.dumps([m for m in sys.modules if m.startswith('opentelemetry')]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert json.loads(out.stdout) == []


def test_without_opentelemetry_constructing_it_names_the_extra() -> None:
    code = (
        "import sys\n"
        "sys.modules['opentelemetry'] = None  # as if not installed\n"
        "import ocpprpc\n"
        "try:\n"
        "    ocpprpc.Tracing()\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert "pip install 'ocpprpc[otel]'" in out.stdout


def test_events_it_does_not_know_or_for_no_open_connection_are_ignored(csms_side: Recorder) -> None:
    tracing = Tracing(csms_side.provider)
    hub = ocpprpc.SecurityEvents()
    hub.subscribe(tracing.on_security_event)
    hub.emit(ocpprpc.RateLimited(timestamp=0.0, identity="NOBODY", reason="too fast"))
    hub.emit(ocpprpc.HandshakeAborted(timestamp=0.0, reason="went away"))
    hub.emit(ocpprpc.StationDisconnected(timestamp=0.0, identity="NOBODY"))
    assert hub.subscriber_errors == 0 and csms_side.spans == ()


def test_the_docs_example_prints_the_trees_the_docs_show() -> None:
    root = Path(__file__).resolve().parent.parent.parent
    out = subprocess.run(
        [sys.executable, str(root / "docs" / "examples" / "tracing.py")],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    docs = (root / "docs" / "operations.rst").read_text(encoding="utf-8")
    shown = docs.split("It prints:\n\n.. code-block:: text\n\n", 1)[1].split("\n\n", 1)[0]
    assert out.stdout.splitlines() == [line.removeprefix("   ") for line in shown.splitlines()]


async def test_a_cancelled_call_and_a_raised_drop_are_not_errors(
    csms_side: Recorder, station_side: Recorder
) -> None:
    router = heartbeat_router()
    release = anyio.Event()

    @router.on("DataTransfer")
    async def slow(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        await release.wait()
        return {"status": "Accepted"}

    async def drop_by_raising(ctx: ocpprpc.MessageContext, call_next: ocpprpc.CallNext) -> Any:
        if ctx.action == "Authorize":
            raise ocpprpc.DroppedByMiddleware("not today")
        return await call_next(ctx)

    async with (
        serve_traced(Tracing(csms_side.provider), router=router) as server,
        ocpprpc.connect(
            url(server), "CP009", middleware=[Tracing(station_side.provider), drop_by_raising]
        ) as station,
    ):
        with anyio.move_on_after(0.05):
            await station.call("DataTransfer", {"vendorId": "V"})  # the caller gives up
        release.set()
        with pytest.raises(ocpprpc.DroppedByMiddleware):
            await station.call("Authorize", {"idTag": "X"})
    cancelled = station_side.one("ocpp.call OUT DataTransfer")
    assert (cancelled.attributes or {})["ocpp.outcome"] == "cancelled"
    assert cancelled.status.status_code is StatusCode.UNSET
    dropped = station_side.one("ocpp.call OUT Authorize")
    assert (dropped.attributes or {})["ocpp.outcome"] == "dropped"
    assert dropped.status.status_code is StatusCode.UNSET


async def test_the_route_and_an_answer_that_is_not_json(csms_side: Recorder) -> None:
    async def routed(ctx: ocpprpc.MessageContext, call_next: ocpprpc.CallNext) -> Any:
        ctx.route = "/ocpp/{identity}"  # what URL routing will set
        return await call_next(ctx)

    async def odd_answer(ctx: ocpprpc.MessageContext, call_next: ocpprpc.CallNext) -> Any:
        await call_next(ctx)
        return {"currentTime": object()}  # the session answers InternalError for it

    tracing = Tracing(csms_side.provider, record_payloads=True)
    async with (
        serve_traced(tracing, middleware=[odd_answer]) as server,
        ocpprpc.connect(url(server), "CP010", middleware=[routed, tracing]) as station,
    ):
        with pytest.raises(OCPPError):
            await station.call("Heartbeat", {})
        await eventually(lambda: bool(csms_side.named("ocpp.call IN Heartbeat")))
    assert (csms_side.one("ocpp.call OUT Heartbeat").attributes or {})["ocpp.route"] == "/ocpp/{identity}"
    recorded = (csms_side.one("ocpp.call IN Heartbeat").attributes or {})["ocpp.response"]
    assert json.loads(str(recorded)) == {"currentTime": "<redacted: not a JSON value>"}


async def test_a_session_without_identity(csms_side: Recorder) -> None:
    tracing = Tracing(csms_side.provider)
    one, other = ocpprpc.memory_message_stream_pair("ocpp1.6")
    station_engine = ocpprpc.Connection(ocpprpc.Role.CHARGING_STATION, "ocpp1.6")
    csms_engine = ocpprpc.Connection(ocpprpc.Role.CSMS, "ocpp1.6")
    station = Session(one, station_engine, middleware=[tracing])
    csms = Session(other, csms_engine, router=heartbeat_router(), middleware=[tracing])
    async with station, csms:
        assert await station.call("Heartbeat", {}) == NOW
    for span in csms_side.spans:
        assert "ocpp.identity" not in (span.attributes or {})
    names = sorted(span.name for span in csms_side.spans)
    assert names == ["ocpp.call IN Heartbeat", "ocpp.call OUT Heartbeat"]


async def test_a_command_to_a_station_whose_connection_it_did_not_see(csms_side: Recorder) -> None:
    """Subscribed after a station connected: its calls are traced, with no connection span to hang on."""
    tracing = Tracing(csms_side.provider)
    station_router = Router()

    @station_router.on("ClearCache")
    def clear_cache(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        return {"status": "Accepted"}

    async with (
        ocpprpc.serve(middleware=[tracing]) as server,
        ocpprpc.connect(url(server), "EARLY", router=station_router),
    ):
        await eventually(lambda: "EARLY" in server.clients)
        server.security_events.subscribe(tracing.on_security_event)
        async with ocpprpc.connect(url(server), "LATE"):
            await eventually(lambda: "LATE" in server.clients)
            await server.send_to_client("EARLY", "ClearCache", {})
    assert csms_side.one("ocpp.call OUT ClearCache").parent is None
    assert (csms_side.one("ocpp.connection").attributes or {})["ocpp.identity"] == "LATE"


def test_without_opentelemetry_in_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(ImportError, match=r"pip install 'ocpprpc\[otel\]'"):
        Tracing()


async def test_connection_events_with_fields_missing_or_from_another_task(csms_side: Recorder) -> None:
    """The hub driven by hand: a connection with no identity, peer or close code, and a
    disconnection reported from another task than the connection's (not how the server
    emits them, but a subscriber must cope)."""
    tracing = Tracing(csms_side.provider)
    hub = ocpprpc.SecurityEvents()
    hub.subscribe(tracing.on_security_event)
    hub.emit(ocpprpc.StationConnected(timestamp=0.0, route="/ocpp/{identity}", protocol="ocpp2.0.1"))
    hub.emit(ocpprpc.StationDisconnected(timestamp=0.0, protocol="ocpp2.0.1"))
    anonymous = csms_side.one("ocpp.connection")
    assert dict(anonymous.attributes or {}) == {
        "rpc.system": "ocpp",
        "ocpp.protocol": "ocpp2.0.1",
        "ocpp.route": "/ocpp/{identity}",
    }
    assert trace.get_current_span() is trace.INVALID_SPAN  # detached again

    async def connect_elsewhere() -> None:
        hub.emit(ocpprpc.StationConnected(timestamp=0.0, identity="AWAY", protocol="ocpp1.6"))

    async with anyio.create_task_group() as tg:
        tg.start_soon(connect_elsewhere)
    hub.emit(ocpprpc.StationDisconnected(timestamp=0.0, identity="AWAY", code=1006, by_peer=True))
    away = csms_side.named("ocpp.connection")[-1]
    assert (away.attributes or {})["ocpp.close_code"] == 1006
    assert not tracing._open


async def test_two_tracings_on_one_hub_and_disabling_mid_connection(
    csms_side: Recorder, station_side: Recorder
) -> None:
    """Each Tracing ends its own connection span; one disabled while a station is connected
    still ends the span it opened (and records no calls meanwhile)."""
    first, second = Tracing(csms_side.provider), Tracing(station_side.provider)
    hub = ocpprpc.SecurityEvents()
    hub.subscribe(first.on_security_event)
    hub.subscribe(second.on_security_event)
    async with (
        ocpprpc.serve(router=heartbeat_router(), middleware=[first, second], security_events=hub) as server,
        ocpprpc.connect(url(server), "CP011") as station,
    ):
        await station.call("Heartbeat", {})
        second.enabled = False
        await station.call("Heartbeat", {})
    await eventually(lambda: all(side.named("ocpp.connection") for side in (csms_side, station_side)))
    for side, calls in ((csms_side, 2), (station_side, 1)):
        connection = side.one("ocpp.connection")
        heartbeats = side.named("ocpp.call IN Heartbeat")
        assert len(heartbeats) == calls
        assert {parent_of(span) for span in heartbeats} == {span_id(connection)}
    assert not first._open and not second._open


async def test_a_station_object_takes_it_through_its_session_options(station_side: Recorder) -> None:
    tracing = Tracing(station_side.provider)
    async with ocpprpc.serve(router=heartbeat_router()) as server:
        station = ocpprpc.Station(url(server), "CP012", session_options={"middleware": [tracing]})
        async with station:
            assert await station.call("Heartbeat", {}) == NOW
    out = station_side.one("ocpp.call OUT Heartbeat")
    assert (out.attributes or {})["ocpp.identity"] == "CP012"
    assert (out.attributes or {})["ocpp.outcome"] == "result"


def test_an_object_that_is_no_event_is_ignored(csms_side: Recorder) -> None:
    tracing = Tracing(csms_side.provider)
    tracing.on_security_event(object())
    tracing.on_security_event(None)
    assert csms_side.spans == ()
