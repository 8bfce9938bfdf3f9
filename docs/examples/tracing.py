"""OpenTelemetry tracing of a CSMS and a station, printed as span trees.

Run it: ``python docs/examples/tracing.py`` (needs ``pip install 'ocpprpc[otel]'`` and
``opentelemetry-sdk``).  A CSMS and a station talk over loopback, each side with its own
:class:`ocpprpc.Tracing`; the spans go to the SDK's in-memory exporter and are printed as
one tree per trace.  The CSMS's handler opens a span of its own and calls the station back
from inside it, so the tree shows where every span hangs.
"""

from __future__ import annotations

from typing import Any

import anyio
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import ocpprpc


def recording() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()  # in production: a BatchSpanProcessor and an OTLP exporter
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


csms_provider, csms_spans = recording()
station_provider, station_spans = recording()
tracer = csms_provider.get_tracer("my-csms")

router = ocpprpc.Router()


@router.on("Authorize")
async def authorize(request: dict[str, Any], ctx: ocpprpc.CallContext) -> dict[str, Any]:
    # The handler runs inside the CALL's span: it is the current span here.
    call_span = trace.get_current_span()
    call_span.set_attribute("csms.id_tag_known", True)
    with tracer.start_as_current_span("csms.check_tag"):  # a child of the CALL's span
        # A call back to the station from here nests under check_tag.
        await ctx.session.call("GetConfiguration", {"key": ["AuthorizeRemoteTxRequests"]})
    return {"idTagInfo": {"status": "Accepted"}}


station_router = ocpprpc.Router()


@station_router.on("GetConfiguration")
def get_configuration(request: dict[str, Any], ctx: ocpprpc.CallContext) -> dict[str, Any]:
    return {"configurationKey": [{"key": "AuthorizeRemoteTxRequests", "readonly": False, "value": "true"}]}


def show(title: str, spans: tuple[ReadableSpan, ...]) -> None:
    """Print *spans* as trees: each span under its parent, with its kind and outcome."""
    print(title)
    ids = {span.context.span_id for span in spans if span.context is not None}
    children: dict[int | None, list[ReadableSpan]] = {}
    for span in sorted(spans, key=lambda span: span.start_time or 0):
        parent = span.parent.span_id if span.parent is not None else None
        children.setdefault(parent if parent in ids else None, []).append(span)

    def walk(parent: int | None, depth: int) -> None:
        for span in children.get(parent, []):
            outcome = (span.attributes or {}).get("ocpp.outcome", "")
            print(f"  {'  ' * depth}{span.name}  [{span.kind.name.lower()}] {outcome}".rstrip())
            walk(span.context.span_id if span.context is not None else None, depth + 1)

    walk(None, 0)


async def main() -> None:
    tracing = ocpprpc.Tracing(csms_provider)
    # Connection spans come from the server's security events: subscribe before serving.
    events = ocpprpc.SecurityEvents()
    events.subscribe(tracing.on_security_event)
    async with ocpprpc.serve(router=router, middleware=[tracing], security_events=events) as server:
        station_tracer = station_provider.get_tracer("my-station")
        # A station's connection span is its own: open one around connect().
        with station_tracer.start_as_current_span("station.connection"):
            async with ocpprpc.connect(
                f"ws://127.0.0.1:{server.port}/ocpp",
                "CP001",
                router=station_router,
                middleware=[ocpprpc.Tracing(station_provider)],
            ) as station:
                await station.call("Authorize", {"idTag": "04E3A1B2"})
        with anyio.fail_after(5):
            while not any(span.name == "ocpp.connection" for span in csms_spans.get_finished_spans()):  # noqa: ASYNC110 (no event announces it)
                await anyio.sleep(0.01)  # the CSMS ends the connection span once the station is gone
    show("CSMS:", csms_spans.get_finished_spans())
    show("station:", station_spans.get_finished_spans())


if __name__ == "__main__":
    anyio.run(main)
