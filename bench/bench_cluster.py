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
        self.ns = f"b{uuid.uuid4().hex[:10]}"
        self.memory = MemoryCluster()

    def adapter(self, node_id: str) -> Any:
        if self.client == "memory":
            return self.memory.node(node_id)
        return RedisAdapter(self.server.url, node_id=node_id, namespace=self.ns, prefer=self.client)  # type: ignore[arg-type]


@asynccontextmanager
async def node(setup: Setup, name: str) -> AsyncIterator[tuple[ocpprpc.Server, ClusterDelivery]]:
    async with (
        ocpprpc.serve() as server,
        setup.adapter(name) as adapter,
        cluster_delivery(server, adapter) as delivery,
    ):
        yield server, delivery


async def timed_calls(server: ocpprpc.Server, calls: int) -> list[float]:
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        await server.send_to_client("CP1", "Reset", PARAMS)
        samples.append(time.perf_counter() - start)
    return samples


async def throughput(
    server: ocpprpc.Server, stations: int, callers: int, seconds: float
) -> tuple[float, float]:
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
    return done / (time.perf_counter() - start), (time.process_time() - cpu) / done


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
        direct_rate, direct_cpu = await throughput(a, args.stations, args.callers, args.seconds)
        rate, cpu = await throughput(b, args.stations, args.callers, args.seconds)
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
    args = parser.parse_args()

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


if __name__ == "__main__":
    main()
