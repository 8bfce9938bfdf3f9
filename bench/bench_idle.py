"""What an idle station connection costs a CSMS, and what the garbage collector does with a fleet.

The CSMS (``ocpprpc.serve()``, strict validation, OCPP 1.6, plain-function
handlers as in the harness peer) runs in this process; the stations are raw
sockets in a child process (``--client``): each writes a pre-built upgrade
request (no permessage-deflate offered, like the shared harness's W4 generator)
and holds the connection; on demand each sends CALLs (BootNotification,
Heartbeat, MeterValues) as masked text frames and reads the answers.  So
everything measured here is the server's.

Per backend (each in a fresh process), with ``--warm`` connections open first
(lazy imports, decoders and caches filled) and ``--connections`` N more opened
for the measurement:

* **idle**: the difference, divided by N, between before and after the N
  connections are open and settled (every session registered, 0.3 s quiet,
  ``gc.collect()`` first): RSS (``/proc/self/statm``), objects tracked by the
  garbage collector (``len(gc.get_objects())``, and by type), and in a second
  pass with :mod:`tracemalloc` on (the first connections closed, N opened
  again) the bytes retained, by the source line that allocated them and by the
  innermost ocpprpc frame on the allocating stack, and the peak bytes in
  flight while they opened.  A third snapshot after a BootNotification and
  ``--calls`` CALLs per connection gives the memory per station that has called.
* **full collection**: the CPU time of ``gc.collect(2)`` (best of 5) with only
  the warm connections, with the N connections idle and what existed before
  them frozen (``gc.freeze()`` "after start-up"), unfrozen, and with
  everything frozen ("after the connections settled"), then with the N
  stations booted and called.
* **garbage**: with the collector off, ``--calls`` rounds of one CALL per
  connection (``--msg``: ``mix`` is W5's 6 MeterValues per Heartbeat), then
  ``gc.collect()`` under ``gc.DEBUG_SAVEALL``: every object that only a
  reference cycle kept alive, by type; the same for N connections closed and
  N opened.  Cyclic garbage outlives the call that made it until a collection
  finds it, and once frozen it is never freed.
* **left alive per call**: everything before frozen, one round, a collection:
  the objects a call leaves alive until the station's next call (its reader's
  wait, parser state).  In a fleet each station calls every few seconds, so
  these outlive two young collections and are promoted to generation 2.
* **promoted per call**: the collector on (everything before frozen), the
  same rounds; a ``gc.callbacks`` hook counts the objects that survive each
  generation-1 collection, i.e. move to generation 2; then again with the
  first threshold at ``--young`` (default 50,000).  In CPython 3.11 a full
  collection runs once the objects promoted since the last one reach a
  quarter of those it left in generation 2 (and ten generation-1 collections
  passed): promotions per call and the fleet's size set how often it runs.

Full-collection time is CPU time on a shared machine (it moves with the
neighbours' load on caches); the byte and object counts are deterministic to a
few percent.

Run: ``python bench/bench_idle.py`` (both backends, N = 1000, about 5 minutes:
tracemalloc slows the second pass),
or ``--backend trio --connections 2000 --calls 20 --json out.json``.
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import os
import socket
import subprocess
import sys
import time
import tracemalloc
import types
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import anyio.abc
from payloads import meter_values

import ocpprpc
from ocpprpc._cli.scenario import now_iso

SELF = os.path.abspath(__file__)
HERE = os.path.dirname(SELF)
SRC = os.path.join(HERE, "..", "src")
PAGE = os.sysconf("SC_PAGE_SIZE")
T = TypeVar("T")


# -- the stations: raw sockets in a child process ----------------------------------------------


def _upgrade(port: int, i: int) -> bytes:
    return (
        f"GET /CP-{i} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: ocpp1.6\r\n\r\n"
    ).encode()


def _text_frame(text: str) -> bytes:
    """A masked text frame (mask key 0: the payload goes out as is, still a valid client frame)."""
    data = text.encode()
    n = len(data)
    head = bytes([0x81, 0x80 | n]) if n < 126 else bytes([0x81, 0x80 | 126]) + n.to_bytes(2, "big")
    return head + b"\0\0\0\0" + data


BOOT = {"chargePointVendor": "bench", "chargePointModel": "idle", "firmwareVersion": "1.0"}
MESSAGES = {
    "hb": ("Heartbeat", "{}"),
    "mv": ("MeterValues", json.dumps(meter_values(), separators=(",", ":"))),
    "boot": ("BootNotification", json.dumps(BOOT, separators=(",", ":"))),
}


def _message(kind: str, r: int) -> tuple[str, str]:
    """The action and payload a station sends in round *r*; ``mix``: W5's 1 Heartbeat per 6 MeterValues."""
    if kind == "mix":
        kind = "hb" if r % 7 == 6 else "mv"
    return MESSAGES[kind]


class _Stations:
    """Raw WebSocket stations: blocking sockets, handshakes in batches, one CALL each per round."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.socks: list[socket.socket] = []
        self.next_id = 0
        self.rounds = 0

    def open(self, n: int, batch: int = 100) -> int:
        opened = 0
        while opened < n:
            group = []
            for _ in range(min(batch, n - opened)):
                sock = socket.create_connection(("127.0.0.1", self.port))
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.sendall(_upgrade(self.port, self.next_id))
                self.next_id += 1
                group.append(sock)
            for sock in group:
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = sock.recv(4096)
                    if not chunk:
                        raise SystemExit("a station's connection closed during the handshake")
                    head += chunk
                if not head.startswith(b"HTTP/1.1 101"):
                    raise SystemExit(f"upgrade refused: {head.splitlines()[0]!r}")
            self.socks.extend(group)
            opened += len(group)
        return opened

    def call(self, rounds: int, kind: str, last: int) -> int:
        """*rounds* rounds of one CALL per station (the *last* opened ones; 0: all), answers awaited."""
        socks = self.socks[-last:] if last else self.socks
        calls = 0
        for _ in range(rounds):
            r = self.rounds
            self.rounds += 1
            action, payload = _message(kind, r)
            for i, sock in enumerate(socks):
                sock.sendall(_text_frame(f'[2,"{r}-{i}","{action}",{payload}]'))
            for sock in socks:
                answer = self._read_frame(sock)
                if not answer.startswith(b"[3,"):
                    raise SystemExit(f"not a CALLRESULT: {answer[:200]!r}")
                calls += 1
        return calls

    @staticmethod
    def _read_frame(sock: socket.socket) -> bytes:
        buf = b""
        while True:
            if len(buf) >= 2:
                n = buf[1] & 0x7F
                start = 2 if n < 126 else 4
                if n == 126 and len(buf) >= 4:
                    n = int.from_bytes(buf[2:4], "big")
                if len(buf) >= start + n:
                    if buf[0] & 0x0F != 1:
                        raise SystemExit(f"unexpected frame opcode {buf[0] & 0x0F}")
                    return buf[start : start + n]
            chunk = sock.recv(65536)
            if not chunk:
                raise SystemExit("a station's connection closed while waiting for an answer")
            buf += chunk

    def close(self, n: int) -> int:
        """Close the *n* connections opened last."""
        keep, gone = self.socks[: len(self.socks) - n], self.socks[len(self.socks) - n :]
        for sock in gone:
            sock.close()
        self.socks = keep
        return len(gone)


def client_main(port: int) -> None:
    """The child process: ``open N``, ``call ROUNDS KIND LAST``, ``close N`` on stdin; one JSON line each."""
    stations = _Stations(port)
    for line in sys.stdin:
        command, *arg = line.split()
        if command == "open":
            reply: dict[str, Any] = {"opened": stations.open(int(arg[0]))}
        elif command == "call":
            reply = {"calls": stations.call(int(arg[0]), arg[1], int(arg[2]))}
        elif command == "close":
            reply = {"closed": stations.close(int(arg[0]))}
        else:
            break
        print(json.dumps(reply), flush=True)


# -- the CSMS: this process ---------------------------------------------------------------------


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def kind(o: object) -> str:
    """An object's type, and for coroutines, generators, functions and cells which code they hold."""
    name = type(o).__qualname__
    if isinstance(o, types.CellType):
        try:
            o = o.cell_contents
        except ValueError:
            return name
        name = f"cell({type(o).__qualname__})"
    if isinstance(o, types.MethodType):
        o = o.__func__
    code = None
    if isinstance(o, types.CoroutineType):
        code = o.cr_code
    elif isinstance(o, types.GeneratorType):
        code = o.gi_code
    elif isinstance(o, types.AsyncGeneratorType):
        code = o.ag_code
    elif isinstance(o, types.FunctionType):
        code = o.__code__
    return name if code is None else f"{name} {code.co_qualname}"


def gc_census() -> collections.Counter[str]:
    return collections.Counter(kind(o) for o in gc.get_objects())


def full_gc_ms(repeat: int = 5) -> float:
    """CPU ms of one full collection, the best of *repeat* (the machine is shared: CPU time, not wall)."""
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        gc.collect(2)
        times.append((time.process_time() - t0) * 1000)
    return min(times)


def owner(trace: tracemalloc.Traceback) -> str:
    """The innermost ocpprpc frame of an allocation's stack, or the innermost frame."""
    for frame in reversed(trace):  # a Traceback runs from the oldest frame to the most recent
        if f"{os.sep}ocpprpc{os.sep}" in frame.filename:
            name = frame.filename.split(f"{os.sep}ocpprpc{os.sep}", 1)[1]
            return f"{name}:{frame.lineno}"
    frame = trace[-1]
    return f"{os.path.basename(frame.filename)}:{frame.lineno}"


def short(filename: str) -> str:
    for marker in (f"{os.sep}ocpprpc{os.sep}", f"site-packages{os.sep}", f"python3.11{os.sep}"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return os.path.basename(filename)


async def cyclic_garbage(
    step: Callable[[], Awaitable[T]],
) -> tuple[T, int, int, collections.Counter[str]]:
    """Run *step* with the collector off; then its result, the net tracked allocations, and the
    objects only reference cycles kept alive (a ``gc.DEBUG_SAVEALL`` collection), by kind."""
    gc.collect()
    gc.disable()
    try:
        count0 = gc.get_count()[0]
        result = await step()
        net = gc.get_count()[0] - count0
        gc.set_debug(gc.DEBUG_SAVEALL)
        found = gc.collect()
        garbage = collections.Counter(kind(o) for o in gc.garbage)
        gc.garbage.clear()
    finally:
        gc.set_debug(0)
        gc.enable()
    return result, net, found, garbage


class Promotions:
    """A ``gc.callbacks`` hook: objects surviving generation-1 collections (promoted to generation 2)."""

    def __init__(self) -> None:
        self.young = 0
        self.promoted = 0
        self.collections = [0, 0, 0]
        self.collected = [0, 0, 0]

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        generation = info["generation"]
        if phase == "start":
            if generation == 1:
                self.young = len(gc.get_objects(0)) + len(gc.get_objects(1))
        else:
            self.collections[generation] += 1
            self.collected[generation] += info["collected"]
            if generation == 1:
                self.promoted += self.young - info["collected"]


class Csms:
    """The server under measurement and the child process playing its stations."""

    def __init__(self, server: ocpprpc.Server, proc: anyio.abc.Process) -> None:
        self.server = server
        self.proc = proc
        self._lines = b""

    async def command(self, line: str) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        progress(line)
        await self.proc.stdin.send(f"{line}\n".encode())
        while b"\n" not in self._lines:
            self._lines += await self.proc.stdout.receive()
        reply, _, self._lines = self._lines.partition(b"\n")
        result: dict[str, Any] = json.loads(reply)
        return result

    async def settle(self, expected: int) -> None:
        """Until *expected* sessions run (and no other connection is open), then 0.3 s more."""
        while len(self.server.clients) != expected or self.server.connection_count != expected:  # noqa: ASYNC110
            await anyio.sleep(0.05)
        await anyio.sleep(0.3)

    async def open(self, n: int) -> None:
        expected = len(self.server.clients) + n
        reply = await self.command(f"open {n}")
        assert reply["opened"] == n, reply
        await self.settle(expected)

    async def close(self, n: int) -> None:
        expected = len(self.server.clients) - n
        await self.command(f"close {n}")
        await self.settle(expected)

    async def calls(self, rounds: int, kind: str, last: int = 0) -> int:
        reply = await self.command(f"call {rounds} {kind} {last}")
        return int(reply["calls"])


def build_router() -> ocpprpc.Router:
    """The harness peer's handlers (bench/peer/ocpprpc/server.py): plain functions, plain dicts."""
    router = ocpprpc.Router()

    @router.on("Heartbeat")
    def heartbeat(request: Any, ctx: ocpprpc.CallContext) -> dict[str, Any]:
        return {"currentTime": now_iso()}

    @router.on("MeterValues")
    def meter(request: Any, ctx: ocpprpc.CallContext) -> dict[str, Any]:
        return {}

    @router.on("BootNotification")
    def boot(request: Any, ctx: ocpprpc.CallContext) -> dict[str, Any]:
        return {"status": "Accepted", "currentTime": now_iso(), "interval": 300}

    return router


def per(delta: float, n: int) -> float:
    return round(delta / n, 1)


def per_call(delta: float, calls: int) -> float:
    return round(delta / calls, 2)


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    n, warm, rounds, kind = args.connections, args.warm, args.calls, args.msg
    out: dict[str, Any] = {
        "backend": args.backend,
        "connections": n,
        "warm": warm,
        "rounds": rounds,
        "msg": kind,
        "strict": args.strict,
    }
    async with ocpprpc.serve(
        "127.0.0.1", 0, router=build_router(), protocols=["ocpp1.6"], validation=args.strict
    ) as server:
        command = [sys.executable, SELF, "--client", "--port", str(server.port)]
        async with await anyio.open_process(command, stderr=None) as proc:
            csms = Csms(server, proc)
            await csms.open(warm)
            await csms.calls(1, "boot")
            await csms.calls(7, "mix")

            # -- idle, no tracemalloc: RSS and tracked objects
            gc.collect()
            out["full_gc_ms_warm"] = round(full_gc_ms(), 2)
            rss0, objs0, census0 = rss(), len(gc.get_objects()), gc_census()
            gc.freeze()  # "after start-up": what the server made before the N stations came
            await csms.open(n)
            gc.collect()
            out["full_gc_ms_idle_startup_frozen"] = round(full_gc_ms(), 2)
            gc.unfreeze()  # (gc.get_objects() does not see frozen objects)
            rss1, objs1, census1 = rss(), len(gc.get_objects()), gc_census()
            out["rss_bytes_per_conn"] = per(rss1 - rss0, n)
            out["gc_objects_per_conn"] = per(objs1 - objs0, n)
            census = census1 - census0
            out["gc_types_per_conn"] = {k: per(v, n) for k, v in census.most_common(args.top)}
            out["tracked_idle"] = objs1
            out["full_gc_ms_idle"] = round(full_gc_ms(), 2)
            gc.freeze()
            out["full_gc_ms_idle_frozen"] = round(full_gc_ms(), 2)
            gc.unfreeze()

            # -- the stations boot and call once: what a station that has called holds
            await csms.calls(1, "boot", n)
            await csms.calls(1, kind)
            gc.collect()
            objs2 = len(gc.get_objects())
            out["gc_objects_per_conn_called"] = per(objs2 - objs0, n)
            out["tracked_called"] = objs2
            out["full_gc_ms_called"] = round(full_gc_ms(), 2)

            # -- cyclic garbage per call: the collector off, then one collection keeping what it finds
            calls, net, found, garbage = await cyclic_garbage(lambda: csms.calls(rounds, kind))
            out["calls"] = calls
            out["net_tracked_allocations_per_call"] = per_call(net, calls)
            out["garbage_per_call"] = per_call(found, calls)
            out["garbage_types_per_call"] = {k: per_call(v, calls) for k, v in garbage.most_common(args.top)}

            # -- what a call leaves alive until the station's next call (it ages into generation 2)
            gc.collect()
            gc.freeze()
            calls = await csms.calls(1, kind)
            gc.collect()
            left = gc_census()
            out["left_alive_per_call"] = per_call(sum(left.values()), calls)
            out["left_alive_types_per_call"] = {k: per_call(v, calls) for k, v in left.most_common(args.top)}
            gc.unfreeze()

            # -- promoted to generation 2 per call, default thresholds, what existed before frozen
            gc.collect()
            gc.freeze()
            hook = Promotions()
            gc.callbacks.append(hook)
            calls = await csms.calls(rounds, kind)
            gc.callbacks.remove(hook)
            gc.unfreeze()
            out["promoted_per_call"] = per_call(hook.promoted, calls)
            out["collections"] = hook.collections

            # -- the same with a larger first threshold: fewer young collections to survive
            thresholds = gc.get_threshold()
            gc.collect()
            gc.freeze()
            gc.set_threshold(args.young, *thresholds[1:])
            hook = Promotions()
            gc.callbacks.append(hook)
            calls = await csms.calls(rounds, kind)
            gc.callbacks.remove(hook)
            gc.set_threshold(*thresholds)
            gc.unfreeze()
            out["young"] = args.young
            out["promoted_per_call_young"] = per_call(hook.promoted, calls)
            out["collections_young"] = hook.collections

            # -- cyclic garbage per connection closed, and per connection opened
            _, _, found, garbage = await cyclic_garbage(lambda: csms.close(n))
            out["garbage_per_close"] = per(found, n)
            out["garbage_types_per_close"] = {k: per(v, n) for k, v in garbage.most_common(args.top)}
            _, _, found, garbage = await cyclic_garbage(lambda: csms.open(n))
            out["garbage_per_open"] = per(found, n)
            out["garbage_types_per_open"] = {k: per(v, n) for k, v in garbage.most_common(args.top)}

            # -- tracemalloc: the same connections again
            await csms.close(n)
            gc.collect()
            tracemalloc.start(args.frames)
            snap0 = tracemalloc.take_snapshot()
            base, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            await csms.open(n)
            gc.collect()
            current, peak = tracemalloc.get_traced_memory()
            snap1 = tracemalloc.take_snapshot()
            await csms.calls(1, "boot", n)
            await csms.calls(rounds, kind, n)
            gc.collect()
            after, _ = tracemalloc.get_traced_memory()
            snap2 = tracemalloc.take_snapshot()
            tracemalloc.stop()
            out["traced_bytes_per_conn"] = per(current - base, n)
            out["traced_peak_bytes_per_conn"] = per(peak - base, n)
            out["traced_bytes_per_conn_called"] = per(after - base, n)
            by_line = snap1.compare_to(snap0, "lineno")
            out["traced_by_line"] = {
                f"{short(s.traceback[-1].filename)}:{s.traceback[-1].lineno}": per(s.size_diff, n)
                for s in by_line[: args.top]
            }
            owners: collections.Counter[str] = collections.Counter()
            for s in snap1.compare_to(snap0, "traceback"):
                owners[owner(s.traceback)] += s.size_diff
            out["traced_by_ocpprpc_frame"] = {k: per(v, n) for k, v in owners.most_common(args.top)}
            grown: collections.Counter[str] = collections.Counter()
            for s in snap2.compare_to(snap1, "traceback"):
                grown[owner(s.traceback)] += s.size_diff
            out["traced_growth_called"] = {k: per(v, n) for k, v in grown.most_common(args.top)}
            assert proc.stdin is not None
            await proc.stdin.send(b"quit\n")
    return out


def report(results: list[dict[str, Any]]) -> None:
    rows = [
        ("RSS bytes per idle connection", "rss_bytes_per_conn"),
        ("traced bytes per idle connection", "traced_bytes_per_conn"),
        ("traced peak bytes per connection while opening", "traced_peak_bytes_per_conn"),
        ("traced bytes per connection, booted and called", "traced_bytes_per_conn_called"),
        ("gc-tracked objects per idle connection", "gc_objects_per_conn"),
        ("gc-tracked objects per connection, booted and called", "gc_objects_per_conn_called"),
        ("full gc.collect(2) ms, warm connections only", "full_gc_ms_warm"),
        ("full gc.collect(2) ms, N idle", "full_gc_ms_idle"),
        ("full gc.collect(2) ms, N idle, start-up frozen", "full_gc_ms_idle_startup_frozen"),
        ("full gc.collect(2) ms, N idle, after gc.freeze()", "full_gc_ms_idle_frozen"),
        ("full gc.collect(2) ms, N booted and called", "full_gc_ms_called"),
        ("net tracked allocations per call", "net_tracked_allocations_per_call"),
        ("cyclic garbage objects per call", "garbage_per_call"),
        ("cyclic garbage objects per connection opened", "garbage_per_open"),
        ("cyclic garbage objects per connection closed", "garbage_per_close"),
        ("objects a call leaves alive until the next", "left_alive_per_call"),
        ("objects promoted to generation 2 per call", "promoted_per_call"),
        ("the same, gc.set_threshold(--young, 10, 10)", "promoted_per_call_young"),
    ]
    first = results[0]
    print(
        f"\nN = {first['connections']} connections (+{first['warm']} warm), "
        f"{first['rounds']} rounds of {first['msg']}, strict={first['strict']}"
    )
    print(f"| measure | {' | '.join(r['backend'] for r in results)} |")
    print(f"|---|{'---:|' * len(results)}")
    for label, key in rows:
        print(f"| {label} | {' | '.join(str(r[key]) for r in results)} |")
    for r in results:
        print(
            f"\n{r['backend']}: collections per generation while promoting {r['collections']}, "
            f"with threshold {r['young']}: {r['collections_young']}"
        )
        for title, key in (
            ("gc objects per idle connection, by type", "gc_types_per_conn"),
            ("traced bytes per idle connection, by line", "traced_by_line"),
            ("traced bytes per idle connection, by innermost ocpprpc frame", "traced_by_ocpprpc_frame"),
            ("traced bytes per connection added by boot and calls", "traced_growth_called"),
            ("cyclic garbage per call, by type", "garbage_types_per_call"),
            ("cyclic garbage per connection opened, by type", "garbage_types_per_open"),
            ("cyclic garbage per connection closed, by type", "garbage_types_per_close"),
            ("objects a call leaves alive, by type", "left_alive_types_per_call"),
        ):
            print(f"  {title}:")
            for k, v in r[key].items():
                print(f"    {v:>9} {k}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", nargs="+", default=["asyncio", "trio"], choices=["asyncio", "trio"])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--warm", type=int, default=20)
    parser.add_argument("--calls", type=int, default=10, help="rounds of one CALL per connection")
    parser.add_argument(
        "--msg", default="mix", choices=["hb", "mv", "mix"], help="mix: 6 MeterValues per Heartbeat"
    )
    parser.add_argument("--strict", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--frames", type=int, default=25, help="tracemalloc stack depth")
    parser.add_argument("--young", type=int, default=50_000, help="first gc threshold, second count")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client_main(args.port)
        return
    if args.child:
        args.backend = args.backend[0]
        print(json.dumps(anyio.run(measure, args, backend=args.backend)))
        return
    results = []
    for backend in args.backend:
        argv = [
            f"--connections={args.connections}",
            f"--warm={args.warm}",
            f"--calls={args.calls}",
            f"--msg={args.msg}",
            f"--frames={args.frames}",
            f"--young={args.young}",
            f"--top={args.top}",
            "--strict" if args.strict else "--no-strict",
        ]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
        child = subprocess.run(
            [sys.executable, os.path.abspath(__file__), *argv, "--child", "--backend", backend],
            env=env,
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        )
        results.append(json.loads(child.stdout.strip().splitlines()[-1]))
    report(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
