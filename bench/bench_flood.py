"""A flooding station and its neighbour: what per-station rate limits buy the other stations.

The CSMS and a well-behaved neighbour (one Heartbeat at a time, its latency
recorded per call) run in this process; a flooding station runs in a child
process and sends MeterValues with 32 calls in flight, as fast as the CSMS
answers.  Three phases, in one run:

* ``unloaded``: the neighbour alone;
* ``flood, limited``: the flood against ``MeterValues 10/60`` answered with a
  CALLERROR (the flooder is answered at once and keeps flooding: the worst
  case for the CSMS);
* ``flood, unlimited``: the same flood, no limits (every MeterValues handled).

Reported: the neighbour's p50 and p99 Heartbeat latency in each phase and the
ratio of its p50 under the flood to the unloaded p50 (issue 14's target:
within 1.5x while the flood is limited), and the flood's calls per second.
Wall-clock latency on a shared 2-core machine is noisy: compare phases of one
run, and run it twice.

Run: ``python bench/bench_flood.py`` (both backends, ~30 s), or
``--backend trio --calls 2000``.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import time
from typing import Any

import anyio

import ocpprpc

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")

METER_VALUES: dict[str, Any] = {
    "connectorId": 1,
    "meterValue": [{"timestamp": "2024-01-01T00:00:00Z", "sampledValue": [{"value": "1"}] * 10}],
}

FLOODER = """
import sys, anyio, ocpprpc
url, backend = sys.argv[1], sys.argv[2]
payload = {payload!r}
async def main():
    sent = 0
    async with ocpprpc.connect(url, "FLOOD", protocols=["ocpp1.6"], max_outstanding_calls=32) as station:
        print("ready", flush=True)
        async def caller():
            nonlocal sent
            while True:
                try:
                    await station.call("MeterValues", payload)
                except ocpprpc.OCPPError:
                    pass
                sent += 1
        async with anyio.create_task_group() as tg:
            for _ in range(32):
                tg.start_soon(caller)
anyio.run(main, backend=backend)
"""


class Counts:
    """MeterValues the CSMS handled and refused while the neighbour ran."""

    def __init__(self) -> None:
        self.handled = 0
        self.refused = 0

    def on_event(self, event: ocpprpc.SecurityEvent) -> None:
        if event.kind == "rate_limited":
            self.refused += 1


def router(counts: Counts) -> ocpprpc.Router:
    handlers = ocpprpc.Router()

    @handlers.on("Heartbeat")
    def heartbeat(request: Any, ctx: ocpprpc.CallContext) -> dict[str, Any]:
        return {"currentTime": "2024-01-01T00:00:00Z"}

    @handlers.on("MeterValues")
    def meter_values(request: Any, ctx: ocpprpc.CallContext) -> dict[str, Any]:
        counts.handled += 1
        return {}

    return handlers


async def neighbour(url: str, calls: int) -> list[float]:
    latencies = []
    async with ocpprpc.connect(url, "NEIGHBOUR", protocols=["ocpp1.6"]) as station:
        for _ in range(50):
            await station.call("Heartbeat")  # warm-up
        for _ in range(calls):
            started = time.perf_counter()
            await station.call("Heartbeat")
            latencies.append((time.perf_counter() - started) * 1000)
    return latencies


async def phase(backend: str, calls: int, flood: bool, limited: bool) -> tuple[list[float], float]:
    """The neighbour's latencies (ms), and the flood's CALLs per second meanwhile."""
    counts = Counts()
    limits = (
        ocpprpc.StationLimits(
            per_action={"MeterValues": ocpprpc.RateLimit.parse("10/60")},
            on_breach=ocpprpc.OnBreach.CALLERROR,
        )
        if limited
        else None
    )
    hub = ocpprpc.SecurityEvents()
    hub.subscribe(counts.on_event)
    logging.getLogger("ocpprpc").setLevel(logging.ERROR)  # one warning per breach is not the subject
    async with ocpprpc.serve(
        router=router(counts), protocols=["ocpp1.6"], validation=True, rate_limits=limits, security_events=hub
    ) as server:
        url = f"ws://127.0.0.1:{server.port}/ocpp"
        child = None
        if flood:
            script = FLOODER.format(payload=METER_VALUES)
            env = {**os.environ, "PYTHONPATH": SRC}
            child = await anyio.open_process(
                [sys.executable, "-c", script, url, backend], stdout=subprocess.PIPE, env=env
            )
            assert child.stdout is not None
            await child.stdout.receive()  # "ready": connected
            await anyio.sleep(0.5)  # the flood at full speed
        try:
            before = counts.handled + counts.refused
            started = time.perf_counter()
            latencies = await neighbour(url, calls)
            rate = (counts.handled + counts.refused - before) / (time.perf_counter() - started)
        finally:
            if child is not None:
                child.kill()
                await child.wait()
    return latencies, rate


def describe(latencies: list[float]) -> tuple[float, float]:
    ordered = sorted(latencies)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.99) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["asyncio", "trio", "both"], default="both")
    parser.add_argument("--calls", type=int, default=1000, help="neighbour Heartbeats per phase")
    args = parser.parse_args()
    backends = ["asyncio", "trio"] if args.backend == "both" else [args.backend]
    print(
        f"{'backend':8} {'phase':18} {'p50 ms':>8} {'p99 ms':>8} {'p50 / unloaded':>15} {'flood calls/s':>14}"
    )
    for backend in backends:
        base = None
        for name, flood, limited in (
            ("unloaded", False, False),
            ("flood, limited", True, True),
            ("flood, unlimited", True, False),
        ):
            latencies, rate = anyio.run(phase, backend, args.calls, flood, limited, backend=backend)
            p50, p99 = describe(latencies)
            base = p50 if base is None else base
            print(
                f"{backend:8} {name:18} {p50:8.3f} {p99:8.3f} {p50 / base:14.2f}x {rate:14,.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
