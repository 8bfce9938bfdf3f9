"""What tracing costs: Heartbeat round trips over loopback with and without :class:`ocpprpc.Tracing`.

Run it: ``python bench/bench_tracing.py [--calls 3000] [--rounds 3] [--backend asyncio]``.
CSMS and station run in this one process, so the CPU time (``time.process_time``) per
call covers both ends: the station's outbound span and the CSMS's inbound one.  Variants,
interleaved within each round (the machine is shared), each reported as the median over
rounds in µs of CPU per call:

* ``none``: no middleware at all;
* ``passthrough``: one ``await call_next(ctx)`` middleware on both ends (what any
  middleware costs: inbound CALLs leave the inline path);
* ``disabled``: ``Tracing(enabled=False)`` on both ends;
* ``noop``: ``Tracing`` over the API's no-op provider (the extra installed, no SDK set up);
* ``sdk``: ``Tracing`` over an SDK provider with a batch processor and an exporter that
  drops what it gets (the SDK's real work: ids, attributes, span objects, the queue).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import ocpprpc


class Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


async def passthrough(ctx: ocpprpc.MessageContext, call_next: ocpprpc.CallNext) -> Any:
    return await call_next(ctx)


def router() -> ocpprpc.Router:
    r = ocpprpc.Router()

    @r.on("Heartbeat")
    async def heartbeat(request: dict[str, Any], ctx: ocpprpc.CallContext) -> dict[str, Any]:
        return {"currentTime": "2026-11-20T12:00:00Z"}

    return r


async def run(middleware: list[Any], tracing: ocpprpc.Tracing | None, calls: int) -> float:
    hub = ocpprpc.SecurityEvents()
    if tracing is not None:
        hub.subscribe(tracing.on_security_event)
    async with (
        ocpprpc.serve(router=router(), middleware=middleware, security_events=hub) as server,
        ocpprpc.connect(f"ws://127.0.0.1:{server.port}/ocpp", "CP001", middleware=middleware) as station,
    ):
        for _ in range(50):  # warm up
            await station.call("Heartbeat", {})
        started = time.process_time()
        for _ in range(calls):
            await station.call("Heartbeat", {})
        return (time.process_time() - started) / calls * 1e6


def variants() -> dict[str, Callable[[], tuple[list[Any], ocpprpc.Tracing | None]]]:
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Discard()))

    def traced(t: ocpprpc.Tracing) -> tuple[list[Any], ocpprpc.Tracing | None]:
        return [t], t

    return {
        "none": lambda: ([], None),
        "passthrough": lambda: ([passthrough], None),
        "disabled": lambda: traced(ocpprpc.Tracing(enabled=False)),
        "noop": lambda: traced(ocpprpc.Tracing(trace.NoOpTracerProvider())),
        "sdk": lambda: traced(ocpprpc.Tracing(provider)),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    args = parser.parse_args()
    made = variants()
    results: dict[str, list[float]] = {name: [] for name in made}
    for _ in range(args.rounds):
        for name, make in made.items():
            middleware, tracing = make()
            results[name].append(anyio.run(run, middleware, tracing, args.calls, backend=args.backend))
    base = statistics.median(results["none"])
    print(f"{args.backend}, {args.calls} Heartbeat round trips x {args.rounds} rounds, µs CPU per call:")
    for name, values in results.items():
        median = statistics.median(values)
        print(f"  {name:12s} {median:7.1f}  (+{median - base:5.1f}, {min(values):.1f}-{max(values):.1f})")


if __name__ == "__main__":
    main()
