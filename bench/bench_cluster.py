"""Cross-node calls over Redis: latency against a direct call, throughput, presence refresh cost.

Two ``Server`` nodes (A and B) in this process share a private ``redis-server`` the
bench starts on a free port (never 6379; the approach of ``tests/cluster/redis_server.py``,
whose class it reuses).  A station connects to A over loopback and answers ``Reset``.

* **direct**: ``A.send_to_client`` (the station is A's): p50/p99 of sequential calls.
* **cross-node**: ``B.send_to_client`` (presence names A, the call goes through A's
  inbox and the reply through B's): p50/p99 of sequential calls, and the p50 added
  over the direct call (issue 16's targets: at most 2 ms on asyncio, 3 ms on trio).
* **Redis commands per cross-node call** (``INFO commandstats`` over the sequential
  calls; heartbeats included): the round trips the design costs, free of timing noise.
* **throughput**: 100 concurrent callers for ``--seconds``, over 100 stations on A (OCPP-J
  allows one CALL in flight per station, so one station would measure only its own round
  trip): direct from A, then cross-node from B (target: at least 3,000/s); and the same on
  the in-memory cluster (what the nodes and stations cost without Redis: the ceiling of
  this one-process setup).  With it, the CPU this process spent per call (both nodes, the
  stations and the callers; Redis's own is not in it): what a faster or less shared machine
  would turn into calls/s.
* **presence refresh**: a node holding 10,000 claims renews them once (what it does
  every ``presence_ttl / 3``): the wall time, and what Redis itself spent
  (``INFO commandstats`` usec summed over every command, after ``CONFIG RESETSTAT``;
  target: at most 50 ms per interval).

Flavours: asyncio + redis-py, asyncio + coredis, trio + coredis, and the in-memory
cluster on each backend.  Everything runs in one process (nodes, station, callers), as a
two-node deployment on one machine would not: the station and both nodes share one core
of a shared 2-core VM here, so the throughput is a floor.  Run:
``python bench/bench_cluster.py [--calls 2000] [--seconds 5] [--flavours asyncio+redis-py]``.

``--split`` runs the deployed shape instead (Redis flavours only): node A, the stations and
node B (the callers' node) in three processes of their own, plus redis-server, driven over
their stdin/stdout by this process.  It reports the same latency and throughput figures,
and per cross-node call under 100 callers the CPU each process spent (A, stations, B,
redis-server: what bounds calls/s on a given number of cores), and the Python calls each
node made (cProfile's count, C calls included: deterministic for the sequential calls,
timing-dependent under concurrency).  ``--profile-dump PREFIX`` keeps the pstats files.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests.cluster.redis_server import RedisServer  # noqa: E402

import ocpprpc  # noqa: E402
from ocpprpc import CallContext, Router  # noqa: E402
from ocpprpc._csms.cluster_delivery import ClusterDelivery, cluster_delivery  # noqa: E402
from ocpprpc.cluster.memory import MemoryCluster  # noqa: E402
from ocpprpc.cluster.redis_adapter import RedisAdapter  # noqa: E402

FLAVOURS = ["asyncio+redis-py", "asyncio+coredis", "trio+coredis", "asyncio+memory", "trio+memory"]
PARAMS = {"type": "Soft"}


def router() -> Router:
    station = Router()

    @station.on("Reset")
    async def reset(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        return {"status": "Accepted"}

    return station


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def commandstats(server: RedisServer) -> dict[str, tuple[int, int]]:
    """Per command since the last ``CONFIG RESETSTAT``: (calls, usec).

    A script's usec includes the commands it ran, which are counted again under their own
    names: sum the top-level ones only.
    """
    raw = server.command("INFO", "commandstats").decode()
    stats = {}
    for line in raw.splitlines():
        if line.startswith("cmdstat_"):
            name, _, rest = line.partition(":")
            fields = dict(part.split("=") for part in rest.split(","))
            stats[name.removeprefix("cmdstat_")] = (int(fields["calls"]), int(fields["usec"]))
    return stats


def redis_cpu_ms(server: RedisServer) -> float:
    """CPU the redis-server process has used (user + system), ms: parsing and I/O included."""
    raw = server.command("INFO", "cpu").decode()
    values = dict(line.split(":") for line in raw.splitlines() if line.startswith("used_cpu_"))
    return (float(values["used_cpu_user"]) + float(values["used_cpu_sys"])) * 1000


class Setup:
    def __init__(self, flavour: str, server: RedisServer) -> None:
        self.backend, _, self.client = flavour.partition("+")
        self.server = server
        self.url = server.url if server is not None else ""
        self.ns = f"b{uuid.uuid4().hex[:10]}"
        self.memory = MemoryCluster()

    def adapter(self, node_id: str) -> Any:
        if self.client == "memory":
            return self.memory.node(node_id)
        return RedisAdapter(self.url, node_id=node_id, namespace=self.ns, prefer=self.client)  # type: ignore[arg-type]


@asynccontextmanager
async def node(setup: Setup, name: str) -> AsyncIterator[tuple[ocpprpc.Server, ClusterDelivery]]:
    async with (
        ocpprpc.serve() as server,
        setup.adapter(name) as adapter,
        cluster_delivery(server, adapter) as delivery,
    ):
        yield server, delivery


async def timed_calls(server: ocpprpc.Server, calls: int, identity: str = "CP1") -> list[float]:
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        await server.send_to_client(identity, "Reset", PARAMS)
        samples.append(time.perf_counter() - start)
    return samples


async def throughput(
    server: ocpprpc.Server, stations: int, callers: int, seconds: float
) -> tuple[float, float, int]:
    """Calls/s of *callers* concurrent callers, caller i calling station ``S{i % stations}``.

    OCPP-J allows one CALL in flight per station, so one station alone would measure its
    round trip, not the cluster: the callers spread over several.
    """
    done = 0
    stop = time.perf_counter() + seconds

    async def caller(identity: str) -> None:
        nonlocal done
        while time.perf_counter() < stop:
            await server.send_to_client(identity, "Reset", PARAMS)
            done += 1

    start, cpu = time.perf_counter(), time.process_time()
    async with anyio.create_task_group() as group:
        for i in range(callers):
            group.start_soon(caller, f"S{i % stations}")
    return done / (time.perf_counter() - start), (time.process_time() - cpu) / done, done


async def station(url: str, identity: str, *, task_status: anyio.abc.TaskStatus[None]) -> None:
    async with ocpprpc.connect(url, identity, router=router()):
        task_status.started()
        await anyio.sleep_forever()


async def held_by(delivery: ClusterDelivery, identities: list[str], node_id: str) -> None:
    with anyio.fail_after(30):
        while True:
            found = await delivery.adapter.presences(identities)
            if all(p is not None and p.node == node_id for p in found.values()):
                return
            await anyio.sleep(0.05)


#: What the DELIVER script runs inside itself (a call's only script).
DELIVER_NESTED = {"exists", "xadd"}


def top_level_calls(stats: dict[str, tuple[int, int]]) -> int:
    """Commands the nodes sent during the calls (what the DELIVER script ran inside itself left out)."""
    return sum(
        calls for name, (calls, _) in stats.items() if name not in DELIVER_NESTED | {"config|resetstat"}
    )


async def calls_bench(setup: Setup, args: argparse.Namespace) -> dict[str, Any]:
    async with AsyncExitStack() as stack:
        a, da = await stack.enter_async_context(node(setup, "a"))
        b, _ = await stack.enter_async_context(node(setup, "b"))
        url = f"ws://127.0.0.1:{a.port}/ocpp"
        identities = ["CP1"] + [f"S{i}" for i in range(args.stations)]
        # Each station in a task of its own: nested in one exit stack, 101 connections would
        # give every task a chain of 100+ cancel scopes that anyio walks at each checkpoint.
        stations = await stack.enter_async_context(anyio.create_task_group())
        stack.callback(stations.cancel_scope.cancel)
        for identity in identities:
            await stations.start(station, url, identity)
        await held_by(da, identities, "a")
        await timed_calls(b, args.warmup)
        await timed_calls(a, args.warmup)
        direct = await timed_calls(a, args.calls)
        if setup.client != "memory":
            setup.server.command("CONFIG", "RESETSTAT")
        cross = await timed_calls(b, args.calls)
        stats = commandstats(setup.server) if setup.client != "memory" else {}
        commands = top_level_calls(stats)
        direct_rate, direct_cpu, _ = await throughput(a, args.stations, args.callers, args.seconds)
        rate, cpu, _ = await throughput(b, args.stations, args.callers, args.seconds)
    ms = 1000.0
    return {
        "direct_p50_ms": statistics.median(direct) * ms,
        "direct_p99_ms": percentile(direct, 0.99) * ms,
        "cross_p50_ms": statistics.median(cross) * ms,
        "cross_p99_ms": percentile(cross, 0.99) * ms,
        "added_p50_ms": (statistics.median(cross) - statistics.median(direct)) * ms,
        "commands_per_call": commands / args.calls,
        "call_commands": {name: calls for name, (calls, _) in stats.items()},
        "direct_calls_per_s": direct_rate,
        "calls_per_s": rate,
        # CPU of this process (both nodes, the stations, the callers; not Redis) per call.
        "direct_cpu_us": direct_cpu * 1e6,
        "cpu_us": cpu * 1e6,
    }


async def refresh_bench(setup: Setup, args: argparse.Namespace) -> dict[str, Any]:
    async with setup.adapter("r") as adapter:
        adapter._claims.update({f"S{i:05d}": f"c{i}" for i in range(args.presences)})
        await adapter.refresh()  # the first one claims them (claim-if-free)
        walls, cpus, usecs = [], [], []
        for _ in range(args.refreshes):
            setup.server.command("CONFIG", "RESETSTAT")
            cpu = redis_cpu_ms(setup.server)
            start = time.perf_counter()
            lost = await adapter.refresh()
            walls.append(time.perf_counter() - start)
            cpus.append(redis_cpu_ms(setup.server) - cpu)
            assert not lost
            stats = commandstats(setup.server)
            top = [usec for name, (_, usec) in stats.items() if name not in NESTED or not_scripted(stats)]
            usecs.append(sum(top))
    return {
        "refresh_wall_ms": statistics.median(walls) * 1000,
        "refresh_redis_cpu_ms": statistics.median(cpus),
        "refresh_redis_ms": statistics.median(usecs) / 1000,
        "refresh_commands": {name: calls for name, (calls, _) in stats.items()},
    }


#: What the presence scripts run inside themselves (their time is in the script's).
NESTED = {"get", "pexpire", "set", "incr", "del"}


def not_scripted(stats: dict[str, tuple[int, int]]) -> bool:
    return not any(name.startswith("eval") or name.startswith("fcall") for name in stats)


async def run_flavour(flavour: str, server: RedisServer, args: argparse.Namespace) -> dict[str, Any]:
    setup = Setup(flavour, server)
    result: dict[str, Any] = {"flavour": flavour}
    result |= await calls_bench(setup, args)
    if setup.client != "memory":
        result |= await refresh_bench(setup, args)
    return result


# -- split mode: one process per role, as deployed --------------------------------------------
#
# The orchestrator (this process, synchronous) starts redis-server, node A (``--role node``),
# the stations (``--role stations``, connected to A) and node B (``--role node``), and talks
# to each over its stdin/stdout: one JSON command per line, one JSON answer per line.


def _answer(value: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


async def _commands() -> AsyncIterator[dict[str, Any]]:
    while True:
        line = await anyio.to_thread.run_sync(sys.stdin.readline)
        if not line:
            return
        yield json.loads(line)


class _Profiler:
    """Python and C calls made by this process between ``on`` and ``off`` (cProfile, deterministic)."""

    def __init__(self) -> None:
        import cProfile

        self.profile = cProfile.Profile()

    def on(self) -> None:
        self.profile.enable()

    def off(self, dump: str | None) -> int:
        import pstats

        self.profile.disable()
        stats = pstats.Stats(self.profile)
        if dump:
            stats.dump_stats(dump)
        total = int(stats.total_calls)  # type: ignore[attr-defined]
        self.profile = type(self.profile)()
        return total


async def node_role(args: argparse.Namespace) -> None:
    setup = Setup(args.flavour, None)  # type: ignore[arg-type]
    setup.ns = args.ns
    setup.url = args.redis
    profiler = _Profiler()
    async with node(setup, args.node) as (server, delivery):
        _answer({"port": server.port})
        async for command in _commands():
            op = command["op"]
            if op == "held":
                await held_by(delivery, command["ids"], command["node"])
                _answer({})
            elif op == "latency":
                samples = await timed_calls(server, command["calls"], command.get("identity", "CP1"))
                _answer({"samples": samples})
            elif op == "throughput":
                rate, _, done = await throughput(
                    server, command["stations"], command["callers"], command["seconds"]
                )
                _answer({"rate": rate, "done": done})
            elif op == "cpu":
                _answer({"cpu": time.process_time()})
            elif op == "profile":
                if command["on"]:
                    profiler.on()
                    _answer({})
                else:
                    _answer({"calls": profiler.off(command.get("dump"))})
            elif op == "quit":
                _answer({})
                return


async def stations_role(args: argparse.Namespace) -> None:
    async with anyio.create_task_group() as group:
        for identity in ["CP1"] + [f"S{i}" for i in range(args.stations)]:
            await group.start(station, args.url, identity)
        _answer({})
        async for command in _commands():
            if command["op"] == "cpu":
                _answer({"cpu": time.process_time()})
            elif command["op"] == "quit":
                _answer({})
                break
        group.cancel_scope.cancel()


class Worker:
    """One child process of the split mode."""

    def __init__(self, *argv: str) -> None:
        import subprocess

        self.process = subprocess.Popen(
            [sys.executable, __file__, *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.process.args!r} ended: {self.process.wait()}")
        return json.loads(line)  # type: ignore[no-any-return]

    def send(self, **command: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def ask(self, **command: Any) -> dict[str, Any]:
        self.send(**command)
        return self.read()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ask(op="quit")
        try:
            self.process.wait(10)
        except Exception:
            self.process.kill()
            self.process.wait()


def run_split(flavour: str, server: RedisServer, args: argparse.Namespace) -> dict[str, Any]:
    ns = f"b{uuid.uuid4().hex[:10]}"
    common = ["--flavour", flavour, "--redis", server.url, "--ns", ns]
    workers: list[Worker] = []
    try:
        a = Worker("--role", "node", "--node", "a", *common)
        workers.append(a)
        port = a.read()["port"]
        stations = Worker(
            "--role", "stations", "--url", f"ws://127.0.0.1:{port}/ocpp", "--stations", str(args.stations)
        )
        workers.append(stations)
        stations.read()
        b = Worker("--role", "node", "--node", "b", *common)
        workers.append(b)
        b.read()
        identities = ["CP1"] + [f"S{i}" for i in range(args.stations)]
        a.ask(op="held", ids=identities, node="a")
        b.ask(op="held", ids=identities, node="a")
        b.ask(op="latency", calls=args.warmup)
        a.ask(op="latency", calls=args.warmup)
        direct = a.ask(op="latency", calls=args.calls)["samples"]
        server.command("CONFIG", "RESETSTAT")
        cross = b.ask(op="latency", calls=args.calls)["samples"]
        stats = commandstats(server)
        # Python calls per sequential cross-node call on each node (cProfile's count, C calls in it).
        for w in (a, b):
            w.ask(op="profile", on=True)
        b.ask(op="latency", calls=args.profile_calls)
        dump = args.profile_dump
        pycalls = {
            name: w.ask(op="profile", on=False, dump=f"{dump}-{flavour}-{name}.prof" if dump else None)[
                "calls"
            ]
            / args.profile_calls
            for name, w in (("a", a), ("b", b))
        }
        # The same under 100 concurrent callers (batching makes it depend on timing).
        for w in (a, b):
            w.ask(op="profile", on=True)
        done = b.ask(op="throughput", seconds=1.0, callers=args.callers, stations=args.stations)["done"]
        pycalls_concurrent = {
            name: w.ask(op="profile", on=False, dump=f"{dump}-{flavour}-{name}-conc.prof" if dump else None)[
                "calls"
            ]
            / done
            for name, w in (("a", a), ("b", b))
        }
        result: dict[str, Any] = {"flavour": flavour + " (split)", "pycalls_concurrent": pycalls_concurrent}
        ms = 1000.0
        result |= {
            "direct_p50_ms": statistics.median(direct) * ms,
            "direct_p99_ms": percentile(direct, 0.99) * ms,
            "cross_p50_ms": statistics.median(cross) * ms,
            "cross_p99_ms": percentile(cross, 0.99) * ms,
            "added_p50_ms": (statistics.median(cross) - statistics.median(direct)) * ms,
            "commands_per_call": top_level_calls(stats) / args.calls,
            "call_commands": {name: calls for name, (calls, _) in stats.items()},
            "pycalls_per_call": pycalls,
        }
        for label, caller in (("direct", a), ("cross", b)):
            before = {
                name: w.ask(op="cpu")["cpu"] for name, w in (("a", a), ("stations", stations), ("b", b))
            }
            redis_before = redis_cpu_ms(server)
            answer = caller.ask(
                op="throughput", seconds=args.seconds, callers=args.callers, stations=args.stations
            )
            rate, done = answer["rate"], answer["done"]
            cpu = {
                name: (w.ask(op="cpu")["cpu"] - before[name]) / done * 1e6
                for name, w in (("a", a), ("stations", stations), ("b", b))
            }
            cpu["redis"] = (redis_cpu_ms(server) - redis_before) / done * 1e3
            result[f"{label}_calls_per_s"] = rate
            result[f"{label}_cpu_us"] = cpu
    finally:
        for w in reversed(workers):
            w.close()
    return result


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = [f"Python {platform.python_version()}"]
    for name in ("anyio", "trio", "redis", "coredis", "msgspec"):
        with contextlib.suppress(PackageNotFoundError):
            parts.append(f"{name} {version(name)}")
    return ", ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="sequential calls per latency figure")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--callers", type=int, default=100)
    parser.add_argument("--stations", type=int, default=100, help="on A, called round-robin by the callers")
    parser.add_argument("--seconds", type=float, default=5.0, help="throughput window")
    parser.add_argument("--presences", type=int, default=10_000)
    parser.add_argument("--refreshes", type=int, default=3)
    parser.add_argument("--flavours", nargs="+", default=FLAVOURS, choices=FLAVOURS)
    parser.add_argument("--json", help="write the results here too")
    parser.add_argument(
        "--split",
        action="store_true",
        help="node A, the stations and node B in three processes (Redis flavours only)",
    )
    parser.add_argument("--profile-calls", type=int, default=200, help="split: cProfiled cross-node calls")
    parser.add_argument("--profile-dump", help="split: write each node's pstats to PREFIX-FLAVOUR-NODE.prof")
    # A child of the split mode (internal).
    parser.add_argument("--role", choices=["node", "stations"], help=argparse.SUPPRESS)
    parser.add_argument("--node", help=argparse.SUPPRESS)
    parser.add_argument("--flavour", help=argparse.SUPPRESS)
    parser.add_argument("--redis", help=argparse.SUPPRESS)
    parser.add_argument("--ns", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "node":
        anyio.run(node_role, args, backend=args.flavour.partition("+")[0])
        return
    if args.role == "stations":
        anyio.run(stations_role, args)
        return
    if args.split:
        split_main(args)
        return

    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp) / "redis")
        server.start()
        try:
            version = server.command("INFO", "server").decode()
            redis_version = next(
                line.partition(":")[2] for line in version.splitlines() if line.startswith("redis_version")
            )
            print(f"{versions()}, redis-server {redis_version}, {platform.machine()}")
            results = []
            for flavour in args.flavours:
                backend = flavour.partition("+")[0]
                result = anyio.run(run_flavour, flavour, server, args, backend=backend)
                results.append(result)
                print(json.dumps(result), flush=True)
        finally:
            server.kill()
    header = "| flavour | direct p50/p99 ms | cross p50/p99 ms | added p50 ms | Redis commands/call |"
    header += " 100 callers: direct/s | cross-node/s | process CPU µs/call direct | cross |"
    header += " refresh 10k: Redis usec ms | Redis CPU ms | wall ms |"
    print()
    print(header)
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        refresh = (
            f"{r['refresh_redis_ms']:.1f} | {r['refresh_redis_cpu_ms']:.0f} | {r['refresh_wall_ms']:.0f}"
            if "refresh_wall_ms" in r
            else "- | - | -"
        )
        print(
            f"| {r['flavour']} | {r['direct_p50_ms']:.2f} / {r['direct_p99_ms']:.2f} "
            f"| {r['cross_p50_ms']:.2f} / {r['cross_p99_ms']:.2f} | {r['added_p50_ms']:.2f} "
            f"| {r['commands_per_call']:.2f} | {r['direct_calls_per_s']:.0f} | {r['calls_per_s']:.0f} "
            f"| {r['direct_cpu_us']:.0f} | {r['cpu_us']:.0f} "
            f"| {refresh} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def split_main(args: argparse.Namespace) -> None:
    flavours = [f for f in args.flavours if not f.endswith("+memory")]
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp) / "redis")
        server.start()
        try:
            print(f"{versions()}, split: node A, stations, node B, redis-server in 4 processes")
            results = []
            for flavour in flavours:
                result = run_split(flavour, server, args)
                results.append(result)
                print(json.dumps(result), flush=True)
        finally:
            server.kill()
    print()
    print(
        "| flavour | direct p50/p99 ms | cross p50/p99 ms | added p50 ms | Redis commands/call "
        "| Python calls/call A / B | 100 callers: direct/s | cross-node/s "
        "| CPU µs per cross-node call: A / stations / B / redis |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        cpu = r["cross_cpu_us"]
        print(
            f"| {r['flavour']} | {r['direct_p50_ms']:.2f} / {r['direct_p99_ms']:.2f} "
            f"| {r['cross_p50_ms']:.2f} / {r['cross_p99_ms']:.2f} | {r['added_p50_ms']:.2f} "
            f"| {r['commands_per_call']:.2f} "
            f"| {r['pycalls_per_call']['a']:.0f} / {r['pycalls_per_call']['b']:.0f} "
            f"| {r['direct_calls_per_s']:.0f} | {r['cross_calls_per_s']:.0f} "
            f"| {cpu['a']:.0f} / {cpu['stations']:.0f} / {cpu['b']:.0f} / {cpu['redis']:.0f} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
