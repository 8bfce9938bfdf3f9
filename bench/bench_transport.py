"""The transport hot path: ocpprpc client and server in one process over loopback.

``ocpprpc.serve()`` and ``ocpprpc.connect()`` run in the same process and event
loop, over a real TCP socket on 127.0.0.1 with the real WebSocket stack; the
stations make OCPP 1.6 Heartbeat (or MeterValues) calls, answered by a handler.
Reported per CALL -> CALLRESULT round trip (client *and* server work, both in
this process):

* ``cpu_us``: process CPU time (``time.process_time()``) per call.  CPU, not
  wall time, so it barely moves when other processes load the machine;
* ``calls``: Python function calls per round trip, counted by :mod:`cProfile`
  in a separate, shorter pass (``--count``): deterministic, so it decides
  whether a change removes work even when the machine is too noisy for timing.

Shapes: ``--connections 1 --callers 1`` is the latency-bound W1,
``--connections 1 --callers 32`` the pipelined W2 (the station's outstanding
call limit is raised to the number of callers), ``--connections 20 --callers 1``
a small fan-in (W3 in miniature).

Byte streams (``--tcp-stream``): on asyncio each shape runs over ocpprpc's own
TCP stream (``tcp_stream="asyncio"``, the default there) and over anyio's
(``"anyio"``), alternating, so the two are compared in the same run; trio has
only anyio's.

Run: ``python bench/bench_transport.py`` (both backends, all three shapes,
about 20-30 s; ``nox -s bench`` runs this) or e.g. ``--backend trio --calls 20000 --callers 32``.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import time
from dataclasses import asdict, dataclass
from typing import Any

import anyio
import anyio.abc

import ocpprpc
from ocpprpc._tcp import TcpStreamName

METER_VALUES: dict[str, Any] = {
    "connectorId": 1,
    "transactionId": 42,
    "meterValue": [
        {
            "timestamp": "2026-01-01T00:00:00Z",
            "sampledValue": [
                {"value": f"{1000 + i}.5", "measurand": "Energy.Active.Import.Register", "unit": "Wh"}
                for i in range(10)
            ],
        }
    ],
}


@dataclass
class Result:
    backend: str
    stream: str
    shape: str
    strict: bool
    calls: int
    cpu_us: float
    wall_us: float
    py_calls_per_rt: float | None = None


#: ``"plain"``: the server's handlers are plain functions (run inline by the reader);
#: ``"async"``: coroutine functions (run by handler workers).  Set by ``--handlers``.
HANDLERS = "plain"


def _router() -> ocpprpc.Router:
    router = ocpprpc.Router()

    def heartbeat(request: Any, ctx: ocpprpc.CallContext) -> dict[str, Any]:
        return {"currentTime": "2026-01-01T00:00:00.000Z"}

    def meter_values(request: Any, ctx: ocpprpc.CallContext) -> dict[str, Any]:
        return {}

    if HANDLERS == "plain":
        router.add("Heartbeat", heartbeat)
        router.add("MeterValues", meter_values)
    else:

        async def async_heartbeat(request: Any, ctx: ocpprpc.CallContext) -> dict[str, Any]:
            return heartbeat(request, ctx)

        async def async_meter_values(request: Any, ctx: ocpprpc.CallContext) -> dict[str, Any]:
            return meter_values(request, ctx)

        router.add("Heartbeat", async_heartbeat)
        router.add("MeterValues", async_meter_values)
    return router


async def _run(
    calls: int,
    callers: int,
    connections: int,
    msg: str,
    strict: bool,
    stream: TcpStreamName,
    profile: cProfile.Profile | None,
) -> tuple[float, float]:
    action, payload = ("Heartbeat", {}) if msg == "hb" else ("MeterValues", METER_VALUES)
    per_worker = max(1, calls // (callers * connections))
    async with ocpprpc.serve(
        router=_router(), protocols=["ocpp1.6"], validation=strict, tcp_stream=stream
    ) as server:
        url = f"ws://127.0.0.1:{server.port}"
        done = anyio.Event()
        stations: list[ocpprpc.Session] = []

        async def hold(i: int, *, task_status: anyio.abc.TaskStatus[None]) -> None:
            async with ocpprpc.connect(
                url, f"CP-{i}", validation=strict, max_outstanding_calls=callers, tcp_stream=stream
            ) as station:
                stations.append(station)
                task_status.started()
                await done.wait()

        async def worker(station: ocpprpc.Session, n: int) -> None:
            for _ in range(n):
                await station.call(action, payload)

        async with anyio.create_task_group() as holders:
            for i in range(connections):
                await holders.start(hold, i)
            # Warm-up: every station, every caller.
            async with anyio.create_task_group() as tg:
                for station in stations:
                    for _ in range(callers):
                        tg.start_soon(worker, station, 20)
            if profile is not None:
                profile.enable()
            cpu0, wall0 = time.process_time(), time.perf_counter()
            async with anyio.create_task_group() as tg:
                for station in stations:
                    for _ in range(callers):
                        tg.start_soon(worker, station, per_worker)
            cpu1, wall1 = time.process_time(), time.perf_counter()
            if profile is not None:
                profile.disable()
            done.set()
    total = per_worker * callers * connections
    return (cpu1 - cpu0) / total * 1e6, (wall1 - wall0) / total * 1e6


def measure(
    backend: str,
    stream: TcpStreamName,
    calls: int,
    callers: int,
    connections: int,
    msg: str,
    strict: bool,
    count: int,
) -> Result:
    shape = f"{msg} conns={connections} callers={callers}"
    cpu, wall = anyio.run(_run, calls, callers, connections, msg, strict, stream, None, backend=backend)
    result = Result(backend, stream, shape, strict, calls, round(cpu, 1), round(wall, 1))
    if count:
        profile = cProfile.Profile()
        anyio.run(_run, count, callers, connections, msg, strict, stream, profile, backend=backend)
        stats = pstats.Stats(profile)
        per_worker = max(1, count // (callers * connections))
        result.py_calls_per_rt = round(stats.total_calls / (per_worker * callers * connections), 1)  # type: ignore[attr-defined]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["asyncio", "trio", "both"], default="both")
    parser.add_argument("--calls", type=int, default=3000, help="timed calls per measurement")
    parser.add_argument("--callers", type=int, nargs="*", help="callers per connection (default: 1 and 32)")
    parser.add_argument(
        "--connections", type=int, default=None, help="connections (default: shapes W1, W2, W3)"
    )
    parser.add_argument("--msg", choices=["hb", "mv"], default="hb")
    parser.add_argument(
        "--handlers", choices=["plain", "async"], default="plain", help="server handlers: def or async def"
    )
    parser.add_argument("--strict", action="store_true", help="strict schema validation on both sides")
    parser.add_argument(
        "--tcp-stream",
        choices=["both", "asyncio", "anyio"],
        default="both",
        help="TCP byte stream on asyncio: ocpprpc's own, anyio's, or both alternating (default)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="repeat every measurement (interleaved)")
    parser.add_argument("--count", type=int, default=1000, help="calls in the cProfile pass (0: skip)")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()
    global HANDLERS
    HANDLERS = args.handlers
    backends = ["asyncio", "trio"] if args.backend == "both" else [args.backend]
    if args.callers is None and args.connections is None:
        shapes = [(1, 1), (1, 32), (20, 1)]
    else:
        shapes = [(args.connections or 1, c) for c in (args.callers or [1])]
    streams: list[TcpStreamName] = ["asyncio", "anyio"] if args.tcp_stream == "both" else [args.tcp_stream]
    results = []
    print(
        f"{'backend':8} {'stream':8} {'shape':28} {'strict':6} {'cpu µs/rt':>10} {'wall µs/rt':>10}"
        f" {'py calls/rt':>11}"
    )
    for round_ in range(args.rounds):
        for backend in backends:
            for connections, callers in shapes:
                backend_streams: list[TcpStreamName] = streams if backend == "asyncio" else ["anyio"]
                for stream in backend_streams:
                    count = args.count if round_ == 0 else 0
                    r = measure(
                        backend, stream, args.calls, callers, connections, args.msg, args.strict, count
                    )
                    results.append(r)
                    print(
                        f"{r.backend:8} {r.stream:8} {r.shape:28} {r.strict!s:6} {r.cpu_us:10.1f}"
                        f" {r.wall_us:10.1f}"
                        f" {r.py_calls_per_rt if r.py_calls_per_rt is not None else '-':>11}",
                        flush=True,
                    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) for r in results], f, indent=2)


if __name__ == "__main__":
    main()
