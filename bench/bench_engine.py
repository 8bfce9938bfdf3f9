"""In-process CALL -> CALLRESULT round trips: ocpprpc's engine against the `ocpp` package.

One round trip = the station serialises a CALL, the CSMS parses it, builds and
serialises the CALLRESULT, the station parses it and matches it to its CALL by
message id.  No sockets, no event loop, no schema validation (that is measured
separately): this is the cost of the RPC framing itself.

* ocpprpc: ``Connection.new_call``/``send``, ``receive_message``/``events``.
* ocpp (mobilityhouse): ``messages.Call(...).to_json()``, ``messages.unpack()``,
  ``Call.create_call_result(...).to_json()``, ``unpack()`` and a dict of pending
  ids, i.e. the pack/unpack path its ``ChargePoint`` uses (its validation, its
  asyncio plumbing and its snake_case conversion are left out, in its favour).

Both generate UUID4 message ids, as both libraries do by default.  Rounds are
interleaved and ratios are taken within a round, so machine noise largely
cancels.  Run: ``python bench/bench_engine.py [--rounds 3] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import json
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import msgspec
import payloads  # bench/payloads.py: the shared MeterValues

from ocpprpc import Call, CallResult, Connection, Role
from ocpprpc import __version__ as ocpprpc_version

HEARTBEAT: tuple[str, dict[str, Any], dict[str, Any]] = (
    "Heartbeat",
    {},
    {"currentTime": "2026-11-20T12:00:00.000Z"},
)


def _meter_values() -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The harness's MeterValues with 10 sampled values (~1.3 KB frame)."""
    return "MeterValues", payloads.meter_values(), {}


METER_VALUES = _meter_values()


def ocpprpc_round_trip(action: str, payload: Any, result: Any) -> Callable[[], None]:
    station = Connection(Role.CHARGING_STATION, "ocpp1.6")
    csms = Connection(Role.CSMS, "ocpp1.6")

    def once() -> None:
        csms.receive_message(station.send(station.new_call(action, payload)))
        for call in csms.events():
            assert type(call) is Call
            station.receive_message(csms.send(CallResult(message_id=call.message_id, payload=result)))
        for answer in station.events():
            assert type(answer) is CallResult and answer.action == action

    return once


def ocpp_round_trip(action: str, payload: Any, result: Any, *, validate: bool = False) -> Callable[[], None]:
    """With *validate*, also the jsonschema validation ``ocpp``'s ChargePoint runs on every message."""
    from ocpp import messages

    pending: dict[str, str] = {}

    def once() -> None:
        unique_id = str(uuid.uuid4())
        pending[unique_id] = action
        call = messages.unpack(messages.Call(unique_id, action, payload).to_json())
        if validate:
            messages._validate_payload(call, "1.6")
        answer = messages.unpack(call.create_call_result(result).to_json())
        answer.action = pending.pop(answer.unique_id)
        if validate:
            messages._validate_payload(answer, "1.6")

    return once


IMPLEMENTATIONS: dict[str, Callable[[str, Any, Any], Callable[[], None]]] = {
    "ocpprpc": ocpprpc_round_trip,
    "ocpp": ocpp_round_trip,
    "ocpp+validation": functools.partial(ocpp_round_trip, validate=True),
}
MESSAGES = {"Heartbeat": HEARTBEAT, "MeterValues (10 values)": METER_VALUES}


def measure(once: Callable[[], None], seconds: float) -> float:
    """Microseconds per round trip: the median of 5 timed batches."""
    batch = 1
    while True:  # size a batch to ~seconds/5
        start = time.perf_counter()
        for _ in range(batch):
            once()
        if time.perf_counter() - start > seconds / 10:
            break
        batch *= 2
    samples = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(batch):
            once()
        samples.append((time.perf_counter() - start) / batch * 1e6)
    return statistics.median(samples)


def run(rounds: int, seconds: float) -> dict[str, Any]:
    results: dict[str, dict[str, list[float]]] = {m: {i: [] for i in IMPLEMENTATIONS} for m in MESSAGES}
    for _ in range(rounds):
        for message, (action, payload, result) in MESSAGES.items():
            for name, factory in IMPLEMENTATIONS.items():
                results[message][name].append(measure(factory(action, payload, result), seconds))
    summary: dict[str, Any] = {}
    for message, per_impl in results.items():
        row: dict[str, Any] = {"rounds": per_impl}
        for name, samples in per_impl.items():
            row[f"{name}_us"] = statistics.median(samples)
            if name != "ocpprpc":
                ratios = [o / r for o, r in zip(samples, per_impl["ocpprpc"], strict=True)]
                row[f"{name}_ratio"] = (statistics.median(ratios), min(ratios), max(ratios))
        summary[message] = row
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()

    summary = run(args.rounds, args.seconds)
    env = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "ocpprpc": ocpprpc_version,
        "ocpp": importlib.metadata.version("ocpp"),
        "msgspec": msgspec.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }
    print(f"in-process round trips, {args.rounds} rounds, {env}")
    columns = ["message", "ocpprpc µs", "ocpprpc round trips/s", "ocpp µs", "speed-up"]
    columns += ["ocpp+validation µs", "speed-up"]
    print("| " + " | ".join(columns) + " |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for message, row in summary.items():
        cells = [message, f"{row['ocpprpc_us']:.2f}", f"{1e6 / row['ocpprpc_us']:,.0f}"]
        for name in ("ocpp", "ocpp+validation"):
            median, low, high = row[f"{name}_ratio"]
            cells += [f"{row[f'{name}_us']:.2f}", f"**{median:.1f}x** ({low:.1f}-{high:.1f})"]
        print("| " + " | ".join(cells) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"env": env, "summary": summary}, f, indent=2)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
