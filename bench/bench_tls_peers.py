"""TLS and permessage-deflate: ocpprpc against the ``ocpp`` package, same method, same run.

Both libraries run client *and* server in this process over loopback TCP, the
stations making OCPP 1.6 Heartbeat (or 10-value MeterValues) calls answered by
a handler; reported per CALL -> CALLRESULT round trip:

* ``cpu_us``: process CPU time (``time.process_time()``: all threads, so the
  thread pool the ``ocpp`` package validates in is counted) per round trip;
* ``py calls/rt``: Python function calls per round trip, from a separate,
  shorter :mod:`cProfile` pass (``--count``; deterministic).

Implementations (``--impls``):

* ``ocpprpc-asyncio``, ``ocpprpc-trio``: ``bench_transport.py``'s run
  (``ocpprpc.serve()`` + ``ocpprpc.connect()``, plain-function handlers; on
  asyncio ocpprpc's own TCP stream, the default);
* ``ocpp``: the ``ocpp`` package (mobilityhouse, 2.1.0) the documented way, on
  ``websockets`` (``websockets.serve`` / ``websockets.connect`` with
  ``subprotocols=["ocpp1.6"]``, a ``ChargePoint`` per connection, ``@on``
  handlers, ``await cp.call(...)``), asyncio only.

Validation (``--validation``): ``on`` = ocpprpc ``validation=True`` on both
ends / ``ocpp``'s default (jsonschema on every message); ``off`` = ocpprpc's
default / ``ocpp`` with ``skip_schema_validation=True`` on handlers and calls.

Configurations, run interleaved for every shape and round: ``plain`` (``ws://``,
no compression: ``compression=None`` for websockets), ``tls`` (``wss://``, a
trustme CA and a certificate for 127.0.0.1; both libraries get the same
contexts from :func:`ocpprpc.server_ssl_context` / :func:`ocpprpc.client_ssl_context`),
``deflate`` (permessage-deflate on both ends: websockets' default,
``compression=True`` for ocpprpc) and ``tls+deflate``.  The summary gives each
cell's median over rounds, its ratio to the same implementation's ``plain``
and ocpprpc's ratio to ``ocpp`` in the same configuration, both taken within
a round.

Run: ``python bench/bench_tls_peers.py --rounds 3`` (about 5 minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import anyio

from ocpprpc._ws.tcp import TcpStreamName

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import contextlib

import bench_transport as bt

CONFIGS = ["plain", "tls", "deflate", "tls+deflate"]


@dataclass
class Result:
    impl: str
    shape: str
    validation: bool
    config: str
    round: int
    calls: int
    cpu_us: float
    wall_us: float
    py_calls_per_rt: float | None = None


def _ocpp_classes(skip: bool) -> Any:
    from ocpp.routing import on
    from ocpp.v16 import ChargePoint as Base
    from ocpp.v16 import call_result
    from ocpp.v16.enums import Action

    class CentralSystemCP(Base):  # type: ignore[misc]
        @on(Action.heartbeat, skip_schema_validation=skip)  # type: ignore[untyped-decorator]
        def on_heartbeat(self, **kwargs: Any) -> Any:
            return call_result.Heartbeat(current_time=datetime.now(UTC).isoformat())

        @on(Action.meter_values, skip_schema_validation=skip)  # type: ignore[untyped-decorator]
        def on_meter_values(self, connector_id: int, meter_value: Any, **kwargs: Any) -> Any:
            return call_result.MeterValues()

    class StationCP(Base):  # type: ignore[misc]
        pass

    return CentralSystemCP, StationCP


async def _run_ocpp(
    calls: int, connections: int, msg: str, validation: bool, config: str, profile: cProfile.Profile | None
) -> tuple[float, float]:
    import websockets
    from ocpp.charge_point import camel_to_snake_case
    from ocpp.v16 import call
    from websockets.typing import Subprotocol

    skip = not validation
    central_cls, station_cls = _ocpp_classes(skip)
    tls = "tls" in config
    kw: dict[str, Any] = {} if "deflate" in config else {"compression": None}
    server_ctx, client_ctx = bt._tls_contexts() if tls else (None, None)
    mv = camel_to_snake_case(bt.METER_VALUES)

    async def on_connect(ws: Any) -> None:
        cp = central_cls(ws.request.path.strip("/"), ws)
        with contextlib.suppress(websockets.exceptions.ConnectionClosed):
            await cp.start()

    server = await websockets.serve(
        on_connect, "127.0.0.1", 0, subprotocols=[Subprotocol("ocpp1.6")], ssl=server_ctx, **kw
    )
    port = server.sockets[0].getsockname()[1]
    url = f"{'wss' if tls else 'ws'}://127.0.0.1:{port}/CP-%d"
    stations = []
    for i in range(connections):
        ws = await websockets.connect(url % i, subprotocols=[Subprotocol("ocpp1.6")], ssl=client_ctx, **kw)
        assert ws.response is not None
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        assert ("permessage-deflate" in extensions) == ("deflate" in config), extensions
        cp = station_cls(f"CP-{i}", ws)
        stations.append((cp, ws, asyncio.ensure_future(cp.start())))

    if msg == "hb":

        def request() -> Any:
            return call.Heartbeat()
    else:

        def request() -> Any:
            return call.MeterValues(
                connector_id=mv["connector_id"],
                transaction_id=mv["transaction_id"],
                meter_value=mv["meter_value"],
            )

    async def worker(cp: Any, n: int) -> None:
        for _ in range(n):
            await cp.call(request(), suppress=False, skip_schema_validation=skip)

    per_worker = max(1, calls // connections)
    await asyncio.gather(*(worker(cp, 20) for cp, _, _ in stations))
    if profile is not None:
        profile.enable()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(cp, per_worker) for cp, _, _ in stations))
    cpu1, wall1 = time.process_time(), time.perf_counter()
    if profile is not None:
        profile.disable()
    for _cp, ws, task in stations:
        task.cancel()
        await ws.close()
    server.close()
    await server.wait_closed()
    total = per_worker * connections
    return (cpu1 - cpu0) / total * 1e6, (wall1 - wall0) / total * 1e6


def _once(
    impl: str, calls: int, connections: int, msg: str, validation: bool, config: str, profile: Any
) -> tuple[float, float]:
    if impl == "ocpp":
        return asyncio.run(_run_ocpp(calls, connections, msg, validation, config, profile))
    backend = impl.removeprefix("ocpprpc-")
    stream: TcpStreamName = "asyncio" if backend == "asyncio" else "anyio"
    return anyio.run(
        bt._run, calls, 1, connections, msg, validation, stream, profile, config, backend=backend
    )


def measure(
    impl: str, calls: int, connections: int, msg: str, validation: bool, config: str, count: int, rnd: int
) -> Result:
    cpu, wall = _once(impl, calls, connections, msg, validation, config, None)
    shape = f"{msg} conns={connections}"
    r = Result(impl, shape, validation, config, rnd, calls, round(cpu, 1), round(wall, 1))
    if count:
        profile = cProfile.Profile()
        _once(impl, count, connections, msg, validation, config, profile)
        total = max(1, count // connections) * connections
        r.py_calls_per_rt = round(pstats.Stats(profile).total_calls / total, 1)  # type: ignore[attr-defined]
    return r


def summary(results: list[Result], impls: list[str]) -> None:
    keys = list(dict.fromkeys((r.shape, r.validation) for r in results))
    rounds = sorted({r.round for r in results})
    cell = {(r.impl, r.shape, r.validation, r.config, r.round): r.cpu_us for r in results}
    calls = {
        (r.impl, r.shape, r.validation, r.config): r.py_calls_per_rt for r in results if r.py_calls_per_rt
    }

    def ratio(num: tuple[Any, ...], den: tuple[Any, ...]) -> str:
        vals = [cell[(*num, n)] / cell[(*den, n)] for n in rounds if (*num, n) in cell and (*den, n) in cell]
        return f"{statistics.median(vals):.2f}" if vals else "-"

    print(
        f"\n{'shape':16} {'valid.':6} {'config':12} {'impl':16} {'cpu µs/rt':>9} {'x plain':>8}"
        f" {'py calls':>8}"
        f" {'/ ocpp':>7}"
    )
    for shape, validation in keys:
        for config in CONFIGS:
            for impl in impls:
                vals = [cell[k] for n in rounds if (k := (impl, shape, validation, config, n)) in cell]
                if not vals:
                    continue
                vs_plain = ratio((impl, shape, validation, config), (impl, shape, validation, "plain"))
                vs_ocpp = (
                    ratio((impl, shape, validation, config), ("ocpp", shape, validation, config))
                    if impl != "ocpp" and "ocpp" in impls
                    else ""
                )
                print(
                    f"{shape:16} {validation!s:6} {config:12} {impl:16} {statistics.median(vals):9.1f}"
                    f" {vs_plain:>8} {calls.get((impl, shape, validation, config), '-')!s:>8} {vs_ocpp:>7}"
                )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--impls", nargs="+", default=["ocpprpc-asyncio", "ocpprpc-trio", "ocpp"])
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 20])
    parser.add_argument("--msg", choices=["hb", "mv"], nargs="+", default=["hb", "mv"])
    parser.add_argument("--validation", choices=["on", "off"], nargs="+", default=["off", "on"])
    parser.add_argument("--configs", choices=CONFIGS, nargs="+", default=CONFIGS)
    parser.add_argument("--calls", type=int, default=2000, help="timed calls per ocpprpc measurement")
    parser.add_argument("--ocpp-calls", type=int, default=1000, help="timed calls per ocpp measurement")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--count", type=int, default=500, help="calls in the cProfile pass, round 1 (0: skip)"
    )
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()
    results: list[Result] = []
    print(
        f"{'impl':16} {'shape':16} {'valid.':6} {'config':12} {'cpu µs/rt':>9} {'wall µs/rt':>10}"
        f" {'py calls':>8}"
    )
    for rnd in range(args.rounds):
        for validation in (v == "on" for v in args.validation):
            for msg in args.msg:
                for connections in args.connections:
                    for config in args.configs:
                        for impl in args.impls:
                            calls = args.ocpp_calls if impl == "ocpp" else args.calls
                            r = measure(
                                impl,
                                calls,
                                connections,
                                msg,
                                validation,
                                config,
                                args.count if rnd == 0 else 0,
                                rnd,
                            )
                            results.append(r)
                            print(
                                f"{r.impl:16} {r.shape:16} {r.validation!s:6} {r.config:12} {r.cpu_us:9.1f}"
                                f" {r.wall_us:10.1f} {r.py_calls_per_rt or '-'!s:>8}",
                                flush=True,
                            )
    summary(results, args.impls)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) for r in results], f, indent=2)


if __name__ == "__main__":
    main()
