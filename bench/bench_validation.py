"""Schema validation cost per message, and what strict mode adds to a round trip.

Part 1, validation per message (bytes in), for 1.6 BootNotification, 1.6
MeterValues with 10 sampled values and a 2.0.1 TransactionEvent:

* **ocpprpc strict**: ``SchemaCodec.decode`` (parse, validate, typed Struct out);
* **ocpp**: ``json.loads`` + ``ocpp.messages._validate_payload``, the jsonschema
  ``Draft4Validator`` path (with its Decimal re-parse where it applies) that
  the ``ocpp`` package's ``ChargePoint`` runs on every message by default;
* **json.loads** alone (no validation at all), as a floor for dict-based code.

Part 2, in-process CALL -> CALLRESULT round trips through two engines (see
bench_engine.py) with ``JsonObjectCodec`` (dicts, no schema) against
``SchemaCodec`` (typed Structs, validated in all four directions).

Each measurement is the fastest of 5 timed batches; rounds interleave the
methods.  Reported: the fastest time over all rounds and the ratio of those
(the least disturbed runs on a shared, noisy VM), with the range of the
per-round ratios in brackets.
Run: ``python bench/bench_validation.py [--rounds 3] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
import payloads  # bench/payloads.py: the shared MeterValues

from ocpprpc import (
    Call,
    CallResult,
    Connection,
    JsonObjectCodec,
    PayloadCodec,
    PayloadKind,
    Role,
    codec_for,
    convert,
    v16,
)
from ocpprpc import __version__ as ocpprpc_version

BOOT_16 = {
    "chargePointVendor": "VendorX",
    "chargePointModel": "ModelY",
    "chargePointSerialNumber": "SN-0001",
    "firmwareVersion": "1.2.3",
}


def _meter_values_16() -> dict[str, Any]:
    return payloads.meter_values()


TRANSACTION_EVENT_201 = {
    "eventType": "Updated",
    "timestamp": "2025-01-01T12:00:00.000Z",
    "triggerReason": "MeterValuePeriodic",
    "seqNo": 7,
    "transactionInfo": {"transactionId": "tx-42", "chargingState": "Charging"},
    "evse": {"id": 1, "connectorId": 1},
    "idToken": {"idToken": "04A1B2C3D4", "type": "ISO14443"},
    "meterValue": [
        {
            "timestamp": "2025-01-01T12:00:00.000Z",
            "sampledValue": [
                {
                    "value": 123456.7,
                    "measurand": "Energy.Active.Import.Register",
                    "unitOfMeasure": {"unit": "Wh"},
                },
                {"value": 11040.0, "measurand": "Power.Active.Import", "unitOfMeasure": {"unit": "W"}},
            ],
        }
    ],
    "customData": {"vendorId": "com.example", "shoeSize": 44},
}

#: name -> (ocpp version, ocpprpc protocol, action, payload)
MESSAGES: dict[str, tuple[str, str, str, dict[str, Any]]] = {
    "1.6 BootNotification": ("1.6", "ocpp1.6", "BootNotification", BOOT_16),
    "1.6 MeterValues (10 values)": ("1.6", "ocpp1.6", "MeterValues", _meter_values_16()),
    "2.0.1 TransactionEvent": ("2.0.1", "ocpp2.0.1", "TransactionEvent", TRANSACTION_EVENT_201),
}


def ours(protocol: str, action: str, data: bytes) -> Callable[[], object]:
    decode = codec_for(protocol).decode
    request = PayloadKind.REQUEST  # an enum attribute lookup costs ~45 ns: the harness's, not the codec's
    return lambda: decode(action, request, data)


def ocpp_validation(version: str, action: str, data: bytes) -> Callable[[], object]:
    from ocpp import messages

    def once() -> None:
        messages._validate_payload(messages.Call("id", action, json.loads(data)), version)

    return once


def plain_json(data: bytes) -> Callable[[], object]:
    return lambda: json.loads(data)


def measure(once: Callable[[], object], seconds: float) -> float:
    """Microseconds per call: the fastest of 5 timed batches (the least disturbed by other load)."""
    batch = 1
    while True:
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
    return min(samples)


def round_trip(codec: PayloadCodec, action: str, payload: Any, result: Any) -> Callable[[], object]:
    station = Connection(Role.CHARGING_STATION, "ocpp1.6", codec=codec)
    csms = Connection(Role.CSMS, "ocpp1.6", codec=codec)

    def once() -> None:
        csms.receive_message(station.send(station.new_call(action, payload)))
        for call in csms.events():
            assert type(call) is Call
            station.receive_message(csms.send(CallResult(message_id=call.message_id, payload=result)))
        for answer in station.events():
            assert type(answer) is CallResult

    return once


def _round_trips() -> dict[str, dict[str, Callable[[], object]]]:
    now = datetime(2025, 1, 1, 12, tzinfo=UTC)
    boot_result = {"status": "Accepted", "currentTime": "2025-01-01T12:00:00Z", "interval": 300}
    meter = _meter_values_16()
    boot_request = convert(BOOT_16, v16.BootNotificationRequest)
    boot_response = convert(boot_result, v16.BootNotificationResponse)
    cases = {
        "Heartbeat": (
            "Heartbeat",
            {},
            {"currentTime": "2025-01-01T12:00:00Z"},
            v16.HeartbeatRequest(),
            v16.HeartbeatResponse(current_time=now),
        ),
        "BootNotification": ("BootNotification", BOOT_16, boot_result, boot_request, boot_response),
        "MeterValues (10 values)": (
            "MeterValues",
            meter,
            {},
            convert(meter, v16.MeterValuesRequest),
            v16.MeterValuesResponse(),
        ),
    }
    return {
        name: {
            "dict (JsonObjectCodec)": round_trip(JsonObjectCodec(), action, payload, result),
            "strict (SchemaCodec)": round_trip(codec_for("ocpp1.6"), action, typed_payload, typed_result),
        }
        for name, (action, payload, result, typed_payload, typed_result) in cases.items()
    }


def run(rounds: int, seconds: float) -> dict[str, Any]:
    methods: dict[str, dict[str, Callable[[], object]]] = {}
    for name, (version, protocol, action, payload) in MESSAGES.items():
        data = json.dumps(payload).encode()
        methods[name] = {
            "ocpprpc strict": ours(protocol, action, data),
            "ocpp (jsonschema)": ocpp_validation(version, action, data),
            "json.loads": plain_json(data),
        }
    trips = _round_trips()
    samples: dict[str, dict[str, list[float]]] = {k: {m: [] for m in v} for k, v in (methods | trips).items()}
    for _ in range(rounds):
        for table in (methods, trips):
            for name, per_method in table.items():
                for method, once in per_method.items():
                    samples[name][method].append(measure(once, seconds))
    return samples


def _ratio(samples: dict[str, list[float]], a: str, b: str) -> tuple[float, float, float]:
    """The ratio of the fastest times (robust on a shared machine), and the per-round range."""
    ratios = [x / y for x, y in zip(samples[a], samples[b], strict=True)]
    return min(samples[a]) / min(samples[b]), min(ratios), max(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.5, help="time per measurement")
    parser.add_argument("--json", help="also write the raw samples to this file")
    args = parser.parse_args()
    samples = run(args.rounds, args.seconds)
    env = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "ocpprpc": ocpprpc_version,
        "ocpp": importlib.metadata.version("ocpp"),
        "jsonschema": importlib.metadata.version("jsonschema"),
        "msgspec": msgspec.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }
    print(f"validation per message (bytes in), {args.rounds} rounds, {env}")
    print("| message | ocpprpc strict µs | ocpp (jsonschema) µs | speed-up | json.loads µs | strict/loads |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in MESSAGES:
        s = samples[name]
        up, up_lo, up_hi = _ratio(s, "ocpp (jsonschema)", "ocpprpc strict")
        rel, _, _ = _ratio(s, "ocpprpc strict", "json.loads")
        ours_us, theirs_us = min(s["ocpprpc strict"]), min(s["ocpp (jsonschema)"])
        loads_us = min(s["json.loads"])
        print(
            f"| {name} | {ours_us:.2f} | {theirs_us:.1f} | **{up:.0f}x** ({up_lo:.0f}-{up_hi:.0f})"
            f" | {loads_us:.2f} | {rel:.2f} |"
        )
    print()
    print("in-process round trip (1.6), dict codec vs strict typed codec")
    print("| message | dict µs | strict µs | strict adds |")
    print("|---|---:|---:|---:|")
    for name in _round_trips():
        s = samples[name]
        med, lo, hi = _ratio(s, "strict (SchemaCodec)", "dict (JsonObjectCodec)")
        print(
            f"| {name} | {min(s['dict (JsonObjectCodec)']):.2f}"
            f" | {min(s['strict (SchemaCodec)']):.2f}"
            f" | **{(med - 1) * 100:+.0f}%** ({(lo - 1) * 100:+.0f}% to {(hi - 1) * 100:+.0f}%) |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"env": env, "samples": samples}, f, indent=2)


if __name__ == "__main__":
    main()
