"""Outbox throughput: the in-memory and SQLite stores alone, and a station draining them over loopback.

Two parts (messages/s, higher is better):

1. **Store cycle.** The store operations a station performs for every durable
   message it delivers: ``add`` (enqueue: stored before it may leave), then,
   once answered, ``remove`` (ack).  Dequeueing costs the store nothing: the
   station sends from its in-memory lane, the store is only the mirror.
   *sequential*: add, remove, add, remove... (a station online, one CALL in
   flight); *burst*: add all, then remove all (a station that queued while
   offline, then drains); *load*: ``open()`` of a store holding them all (what
   a restarted station reads before it sends).  Stores: ``MemoryOutbox``,
   ``SQLiteOutbox`` with ``synchronous="FULL"`` (the default: on disk before
   ``add`` returns, survives a power cut) and ``"NORMAL"`` (survives a killed
   process).
2. **End to end, over loopback** to a local ``serve()`` (same process, same
   event loop, answering ``{}``): *drain*: a station started on a store that
   already holds N MeterValues (with a transactionId) delivers them all, each
   acknowledged (removed) before the next leaves; *live calls*: N sequential
   ``await station.call(...)`` of the same message through each store, and
   without one (a volatile call: the baseline).

The payload is a 1.6 MeterValues with 10 sampled values (~1.2 KB of JSON).
Each figure is the median of ``--rounds`` runs (min-max in brackets).  Run:
``python bench/bench_outbox.py [--messages 2000] [--rounds 3] [--backend trio]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import msgspec
import payloads  # bench/payloads.py: the shared MeterValues

import ocpprpc
from ocpprpc import MemoryOutbox, OutboxStore, SQLiteOutbox

NOW = "2026-11-20T12:00:00.000Z"


def meter_values() -> dict[str, Any]:
    return payloads.meter_values(transaction_id=42, timestamp=NOW, location=False)


PAYLOAD = meter_values()
PAYLOAD_JSON = msgspec.json.encode(PAYLOAD).decode()
STORES = ("memory", "sqlite FULL", "sqlite NORMAL")


class Stores:
    """Fresh stores, each SQLite one on its own file in a temporary directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.files = 0

    def make(self, kind: str) -> OutboxStore:
        if kind == "memory":
            return MemoryOutbox(max_messages=None)
        self.files += 1
        path = self.directory / f"{self.files}.db"
        if kind.endswith("FULL"):
            return SQLiteOutbox(path, max_messages=None, synchronous="FULL")
        return SQLiteOutbox(path, max_messages=None, synchronous="NORMAL")


# -- 1. the store alone -------------------------------------------------------------------------


async def sequential(store: OutboxStore, n: int) -> float:
    async with store:
        started = time.perf_counter()
        for i in range(n):
            await store.add(f"m{i}", "MeterValues", PAYLOAD_JSON)
            await store.remove(f"m{i}")
        return n / (time.perf_counter() - started)


async def burst(store: OutboxStore, n: int) -> float:
    async with store:
        started = time.perf_counter()
        for i in range(n):
            await store.add(f"m{i}", "MeterValues", PAYLOAD_JSON)
        for i in range(n):
            await store.remove(f"m{i}")
        return n / (time.perf_counter() - started)


async def fill(store: OutboxStore, n: int) -> OutboxStore:
    """Put *n* messages in *store* and close it (SQLite: through a fast connection, same file)."""
    filler = store
    if isinstance(store, SQLiteOutbox):
        filler = SQLiteOutbox(store.path, max_messages=None, synchronous="NORMAL")
    async with filler:
        for i in range(n):
            await filler.add(f"m{i}", "MeterValues", PAYLOAD_JSON)
    return store


async def load(store: OutboxStore, n: int) -> float:
    await fill(store, n)
    started = time.perf_counter()
    records = await store.open()
    elapsed = time.perf_counter() - started
    await store.close()
    assert len(records) == n
    return n / elapsed


# -- 2. end to end over loopback -------------------------------------------------------------------


async def _answer(request: Any, ctx: ocpprpc.CallContext) -> Any:
    return {}


async def drain(store: OutboxStore, n: int, url: str) -> float:
    await fill(store, n)
    done = anyio.Event()
    count = 0

    def delivered(delivery: ocpprpc.Delivered) -> None:
        nonlocal count
        count += 1
        if count == n:
            done.set()

    started = time.perf_counter()
    async with ocpprpc.Station(url, "BENCH", outbox=store, on_delivered=delivered):
        await done.wait()
        elapsed = time.perf_counter() - started
    return n / elapsed


async def live(store: OutboxStore | None, n: int, url: str) -> float:
    async with ocpprpc.Station(url, "BENCH", outbox=store, outbox_size=n) as station:
        started = time.perf_counter()
        for _ in range(n):
            await station.call("MeterValues", PAYLOAD)
        return n / (time.perf_counter() - started)


# -- running ------------------------------------------------------------------------------------


def _fmt(rates: list[float]) -> str:
    return f"{statistics.median(rates):>9,.0f}  ({min(rates):,.0f}-{max(rates):,.0f})"


async def run(messages: int, e2e_messages: int, rounds: int) -> dict[str, dict[str, list[float]]]:
    results: dict[str, dict[str, list[float]]] = {}

    def record(part: str, kind: str, rate: float) -> None:
        results.setdefault(part, {}).setdefault(kind, []).append(rate)

    router = ocpprpc.Router()
    router.add_any(_answer)
    with tempfile.TemporaryDirectory(prefix="bench-outbox-") as directory:
        stores = Stores(Path(directory))
        async with ocpprpc.serve(router=router) as server:
            url = f"ws://127.0.0.1:{server.port}/ocpp"
            for _ in range(rounds):
                # Interleaved within a round, so that machine noise hits every store alike.
                for kind in STORES:
                    make = stores.make
                    record("store: sequential add+remove", kind, await sequential(make(kind), messages))
                    record("store: burst add all, remove all", kind, await burst(make(kind), messages))
                    record("store: load on open", kind, await load(make(kind), messages))
                    record("e2e: drain a restored outbox", kind, await drain(make(kind), e2e_messages, url))
                    record("e2e: live durable calls", kind, await live(make(kind), e2e_messages, url))
                record("e2e: live durable calls", "no store (volatile)", await live(None, e2e_messages, url))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=2000, help="messages per store measurement")
    parser.add_argument("--e2e-messages", type=int, default=1000, help="messages per end-to-end measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--json", type=Path, help="also write the raw rates here")
    args = parser.parse_args()
    print(
        f"ocpprpc {ocpprpc.__version__}, Python {platform.python_version()}, {platform.machine()},"
        f" SQLite {sqlite3.sqlite_version}, {args.backend}; {args.messages} messages per store run,"
        f" {args.e2e_messages} end to end, {args.rounds} rounds (median, min-max), messages/s"
    )
    results = anyio.run(run, args.messages, args.e2e_messages, args.rounds, backend=args.backend)
    for part, kinds in results.items():
        print(f"\n{part}")
        for kind, rates in kinds.items():
            print(f"  {kind:<22} {_fmt(rates)}")
    if args.json is not None:
        args.json.write_text(json.dumps({"python": sys.version, "backend": args.backend, "results": results}))


if __name__ == "__main__":
    main()
