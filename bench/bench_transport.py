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
(``"anyio"``), alternating, so the two are compared in the same run; on trio
over the raw-socket stream (``"socket"``, :mod:`ocpprpc._ws.raw_stream`) and
anyio's.

TLS and permessage-deflate (``--tls``, ``--compression``, each ``off``, ``on``
or ``both``): ``on`` runs over ``wss://`` (a throw-away CA and a certificate for
127.0.0.1 made with :mod:`trustme`; contexts from :func:`ocpprpc.server_ssl_context`
and :func:`ocpprpc.client_ssl_context`, as a user would make them) and/or with
permessage-deflate negotiated by both ends; ``both`` runs the configurations
interleaved (plain, tls, deflate, tls+deflate for every shape, stream and round)
and prints each one's ratio to plain measured in the same round.
``--breakdown N`` prints, for every configuration's cProfile pass, where the
time goes by layer (``ssl`` / anyio's ``TLSStream`` / ``zlib`` / websockets /
ocpprpc / the event loop) and the N functions with the most own time.

Run: ``python bench/bench_transport.py`` (both backends, all three shapes,
about 20-30 s; ``nox -s bench`` runs this) or e.g. ``--backend trio --calls 20000 --callers 32``.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import ssl
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import anyio
import anyio.abc
from layers import LAYERS as LAYER_NAMES
from layers import layer_options

import ocpprpc
from ocpprpc._ws.tcp import TcpStreamName

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
    config: str = "plain"
    round: int = 0
    #: cProfile own time per layer, as a share of the total (``--breakdown``).
    layers: dict[str, float] = field(default_factory=dict)


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


_TLS: tuple[ssl.SSLContext, ssl.SSLContext] | None = None


def _tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) contexts for 127.0.0.1: a trustme CA, made once per process."""
    global _TLS
    if _TLS is None:
        import tempfile

        import trustme

        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1")
        with tempfile.TemporaryDirectory() as tmp:
            chain, ca_pem = f"{tmp}/chain.pem", f"{tmp}/ca.pem"
            cert.private_key_and_cert_chain_pem.write_to_path(chain)
            ca.cert_pem.write_to_path(ca_pem)
            _TLS = (ocpprpc.server_ssl_context(chain), ocpprpc.client_ssl_context(cafile=ca_pem))
    return _TLS


async def _run(
    calls: int,
    callers: int,
    connections: int,
    msg: str,
    strict: bool,
    stream: TcpStreamName,
    profile: cProfile.Profile | None,
    config: str = "plain",
) -> tuple[float, float]:
    action, payload = ("Heartbeat", {}) if msg == "hb" else ("MeterValues", METER_VALUES)
    per_worker = max(1, calls // (callers * connections))
    tls = "tls" in config.split("+")
    deflate = "deflate" in config.split("+")
    layers = ",".join(part for part in config.split("+") if part in LAYER_NAMES)
    server_ctx, client_ctx = _tls_contexts() if tls else (None, None)
    async with ocpprpc.serve(
        router=_router(),
        protocols=["ocpp1.6"],
        validation=strict,
        tcp_stream=stream,
        ssl_context=server_ctx,
        compression=deflate,
        **layer_options(layers),
    ) as server:
        url = f"{'wss' if tls else 'ws'}://127.0.0.1:{server.port}"
        done = anyio.Event()
        stations: list[ocpprpc.Session] = []

        async def hold(i: int, *, task_status: anyio.abc.TaskStatus[None]) -> None:
            async with ocpprpc.connect(
                url,
                f"CP-{i}",
                validation=strict,
                max_outstanding_calls=callers,
                tcp_stream=stream,
                ssl_context=client_ctx,
                compression=deflate,
            ) as station:
                # The configuration is what was negotiated, not only what was asked for.
                assert getattr(station.stream, "compression", False) == deflate, config
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


#: cProfile entries by layer: (name, test on (file, function name)), first match wins.
LAYERS: list[tuple[str, Any]] = [
    ("_ssl (C)", lambda f, n: f == "~" and "_ssl." in n),
    ("ssl.py", lambda f, n: f.endswith("/ssl.py")),
    ("anyio TLSStream", lambda f, n: f.endswith("anyio/streams/tls.py")),
    ("zlib (C)", lambda f, n: f == "~" and "zlib." in n),
    ("websockets", lambda f, n: "/websockets/" in f),
    ("ocpprpc", lambda f, n: "/ocpprpc/" in f),
    ("msgspec (C)", lambda f, n: f == "~" and "msgspec" in n),
    ("anyio other", lambda f, n: "/anyio/" in f),
    ("asyncio", lambda f, n: "/asyncio/" in f),
    ("trio", lambda f, n: "/trio/" in f),
    ("socket/select (C)", lambda f, n: f == "~" and ("socket" in n or "poll" in n or "select" in n)),
    ("other builtins (C)", lambda f, n: f == "~"),
    ("other Python", lambda f, n: True),
]


def _layers(stats: pstats.Stats, per_rt: int) -> tuple[dict[str, float], dict[str, float]]:
    """Own time share (%) and Python calls per round trip, per layer."""
    own: dict[str, float] = dict.fromkeys((name for name, _ in LAYERS), 0.0)
    calls: dict[str, float] = dict.fromkeys(own, 0.0)
    for (file, _line, func), (_cc, nc, tt, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        for name, test in LAYERS:
            if test(file, func):
                own[name] += tt
                calls[name] += nc
                break
    total = sum(own.values()) or 1.0
    return (
        {k: round(100 * v / total, 1) for k, v in own.items() if v},
        {k: round(v / per_rt, 1) for k, v in calls.items() if v},
    )


def measure(
    backend: str,
    stream: TcpStreamName,
    calls: int,
    callers: int,
    connections: int,
    msg: str,
    strict: bool,
    count: int,
    config: str = "plain",
    breakdown: int = 0,
) -> Result:
    shape = f"{msg} conns={connections} callers={callers}"
    cpu, wall = anyio.run(
        _run, calls, callers, connections, msg, strict, stream, None, config, backend=backend
    )
    result = Result(backend, stream, shape, strict, calls, round(cpu, 1), round(wall, 1), config=config)
    if count:
        profile = cProfile.Profile()
        anyio.run(_run, count, callers, connections, msg, strict, stream, profile, config, backend=backend)
        stats = pstats.Stats(profile)
        per_worker = max(1, count // (callers * connections))
        total = per_worker * callers * connections
        result.py_calls_per_rt = round(stats.total_calls / total, 1)  # type: ignore[attr-defined]
        if breakdown:
            result.layers, layer_calls = _layers(stats, total)
            print(f"  -- {backend}/{stream} {shape} {config}: own time % (calls/rt) by layer:")
            print(
                "     " + ", ".join(f"{k} {v}% ({layer_calls.get(k, 0)})" for k, v in result.layers.items())
            )
            rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:breakdown]  # type: ignore[attr-defined]
            tt_total = sum(v[2] for v in stats.stats.values()) or 1.0  # type: ignore[attr-defined]
            for (file, line, func), (_cc, nc, tt, _ct, _c) in rows:
                where = (
                    func
                    if file == "~"
                    else f"{file.rsplit('/', 2)[-2]}/{file.rsplit('/', 1)[-1]}:{line} {func}"
                )
                print(f"     {100 * tt / tt_total:5.1f}%  {nc / total:6.2f}/rt  {where}")
    return result


def _summary(results: list[Result], configs: list[str]) -> None:
    """Median CPU per configuration over rounds and the median of per-round ratios to plain."""
    if len(configs) < 2:
        return
    print(f"\n{'backend':8} {'stream':8} {'shape':28} " + " ".join(f"{c:>22}" for c in configs))
    keys = list(dict.fromkeys((r.backend, r.stream, r.shape) for r in results))
    for key in keys:
        cells = []
        by_round: dict[int, dict[str, float]] = {}
        for r in results:
            if (r.backend, r.stream, r.shape) == key:
                by_round.setdefault(r.round, {})[r.config] = r.cpu_us
        for c in configs:
            cpu = statistics.median(v[c] for v in by_round.values() if c in v)
            ratios = [v[c] / v["plain"] for v in by_round.values() if c in v and "plain" in v]
            if c == "plain" or not ratios:
                cells.append(f"{cpu:8.1f}")
            else:
                cells.append(
                    f"{cpu:8.1f} x{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
                )
        print(f"{key[0]:8} {key[1]:8} {key[2]:28} " + " ".join(f"{c:>22}" for c in cells))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["asyncio", "trio", "both"], default="both")
    parser.add_argument("--calls", type=int, default=3000, help="timed calls per measurement")
    parser.add_argument("--callers", type=int, nargs="*", help="callers per connection (default: 1 and 32)")
    parser.add_argument("--connections", type=int, nargs="*", help="connections (default: shapes W1, W2, W3)")
    parser.add_argument("--msg", choices=["hb", "mv"], nargs="+", default=["hb"])
    parser.add_argument(
        "--handlers", choices=["plain", "async"], default="plain", help="server handlers: def or async def"
    )
    parser.add_argument("--strict", action="store_true", help="strict schema validation on both sides")
    parser.add_argument(
        "--tcp-stream",
        choices=["both", "asyncio", "anyio", "socket"],
        default="both",
        help="TCP byte stream: ocpprpc's own (asyncio only), anyio's, the raw-socket one,"
        " or both alternating (default: own+anyio on asyncio, socket+anyio on trio)",
    )
    parser.add_argument(
        "--tls", choices=["off", "on", "both"], default="off", help="wss:// (trustme certificates)"
    )
    parser.add_argument(
        "--compression", choices=["off", "on", "both"], default="off", help="permessage-deflate, both ends"
    )
    parser.add_argument(
        "--breakdown", type=int, default=0, metavar="N", help="print the cProfile pass by layer and its top N"
    )
    parser.add_argument(
        "--layers",
        nargs="*",
        default=[],
        metavar="LAYERS",
        help="also run with these CSMS layers on (each a config; join with commas for several at once):"
        f" {', '.join(LAYER_NAMES)}; e.g. --layers middleware ratelimit middleware,ratelimit,events",
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
        shapes = [(n, c) for n in (args.connections or [1]) for c in (args.callers or [1])]

    def streams_on(backend: str) -> list[TcpStreamName]:
        if args.tcp_stream == "both":
            return ["asyncio", "anyio"] if backend == "asyncio" else ["socket", "anyio"]
        if args.tcp_stream == "asyncio" and backend != "asyncio":
            return ["anyio"]
        return [args.tcp_stream]

    tls = {"off": [False], "on": [True], "both": [False, True]}[args.tls]
    deflate = {"off": [False], "on": [True], "both": [False, True]}[args.compression]
    configs = [
        "+".join(n for n, on in (("tls", t), ("deflate", d)) if on) or "plain" for d in deflate for t in tls
    ]
    for chosen in args.layers:
        layer_options(chosen)  # an unknown name stops here, before anything runs
        configs.append("+".join(name.strip() for name in chosen.split(",")))
    results = []
    print(
        f"{'backend':8} {'stream':8} {'shape':28} {'strict':6} {'config':12} {'cpu µs/rt':>10}"
        f" {'wall µs/rt':>10} {'py calls/rt':>11}"
    )
    for round_ in range(args.rounds):
        for backend in backends:
            for msg in args.msg:
                for connections, callers in shapes:
                    for stream in streams_on(backend):
                        for config in configs:
                            count = args.count if round_ == 0 else 0
                            r = measure(
                                backend,
                                stream,
                                args.calls,
                                callers,
                                connections,
                                msg,
                                args.strict,
                                count,
                                config,
                                args.breakdown,
                            )
                            r.round = round_
                            results.append(r)
                            print(
                                f"{r.backend:8} {r.stream:8} {r.shape:28} {r.strict!s:6} {config:12}"
                                f" {r.cpu_us:10.1f} {r.wall_us:10.1f}"
                                f" {r.py_calls_per_rt if r.py_calls_per_rt is not None else '-':>11}",
                                flush=True,
                            )
    _summary(results, configs)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) for r in results], f, indent=2)


if __name__ == "__main__":
    main()
