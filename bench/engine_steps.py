"""Where the time of one in-process round trip goes: the library's work, step by step.

The round trip of ``bench_engine.py`` (and, with ``--strict``, the strict one of
``bench_validation.py``) is timed whole, and each piece of work it cannot avoid is
timed alone with the same inputs: the message id, the msgspec calls, the event
objects.  What the whole costs beyond the sum of those is the engine's own
bookkeeping in Python (checks, tables, method calls).

Run: ``python bench/engine_steps.py [--message Heartbeat|BootNotification|MeterValues] [--strict]``.
Timings move with the machine's load; compare the rows of one run.
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
import payloads  # bench/payloads.py: the shared MeterValues

from ocpprpc import Call, CallResult, Connection, PayloadKind, Role, codec_for, convert, v16
from ocpprpc._engine.connection import uuid4_message_id
from ocpprpc._engine.frames import decoder_for, plain_decoder_for
from ocpprpc._engine.rules import rules_for

BOOT = {"chargePointVendor": "VendorX", "chargePointModel": "ModelY", "chargePointSerialNumber": "SN-0001"}
BOOT_RESULT = {"status": "Accepted", "currentTime": "2025-01-01T12:00:00Z", "interval": 300}
NOW = datetime(2025, 1, 1, 12, tzinfo=UTC)


def cases() -> dict[str, tuple[str, Any, Any, Any, Any]]:
    """message -> (action, dict payload, dict result, typed payload, typed result)."""
    meter = payloads.meter_values()
    return {
        "Heartbeat": (
            "Heartbeat",
            {},
            {"currentTime": "2025-01-01T12:00:00Z"},
            v16.HeartbeatRequest(),
            v16.HeartbeatResponse(current_time=NOW),
        ),
        "BootNotification": (
            "BootNotification",
            BOOT,
            BOOT_RESULT,
            convert(BOOT, v16.BootNotificationRequest),
            convert(BOOT_RESULT, v16.BootNotificationResponse),
        ),
        "MeterValues": (
            "MeterValues",
            meter,
            {},
            convert(meter, v16.MeterValuesRequest),
            v16.MeterValuesResponse(),
        ),
    }


def round_trip(action: str, payload: Any, result: Any, strict: bool) -> Callable[[], None]:
    codec = codec_for("ocpp1.6") if strict else None
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


def steps(action: str, payload: Any, result: Any, strict: bool) -> list[tuple[str, Callable[[], object]]]:
    """The unavoidable pieces of one round trip, each a callable doing it once."""
    encode = msgspec.json.Encoder().encode
    message_types = rules_for("ocpp1.6").message_types
    frames = decoder_for(message_types).decode  # payloads stay Raw
    message_id = uuid4_message_id()
    raw = msgspec.Raw
    call_bytes = encode((2, message_id, action, payload))
    result_bytes = encode((3, message_id, result))
    call_text, result_text = call_bytes.decode(), result_bytes.decode()
    pieces: list[tuple[str, Callable[[], object]]] = [
        ("message id (uuid4_message_id)", uuid4_message_id),
        ("event: Call (new_call)", lambda: Call(message_id=message_id, action=action, payload=payload)),
        ("event: CallResult (the caller's)", lambda: CallResult(message_id=message_id, payload=result)),
        ("event: Call (received)", lambda: Call(message_id=message_id, action=action, payload=payload)),
        (
            "event: CallResult (received)",
            lambda: CallResult(message_id=message_id, payload=result, action=action),
        ),
        (
            "bytes -> str of both frames (send() returns str)",
            lambda: (call_bytes.decode(), result_bytes.decode()),
        ),
    ]
    if not strict:
        plain_frames = plain_decoder_for(message_types).decode  # payloads read as dicts, same pass
        pieces += [
            (
                "msgspec: encode the CALL frame, payload inside",
                lambda: encode((2, message_id, action, payload)),
            ),
            ("msgspec: encode the CALLRESULT frame, payload inside", lambda: encode((3, message_id, result))),
            ("msgspec: decode the CALL frame, payload into a dict", lambda: plain_frames(call_text)),
            ("msgspec: decode the CALLRESULT frame, payload into a dict", lambda: plain_frames(result_text)),
        ]
        return pieces
    call_payload = frames(call_text).payload
    result_payload = frames(result_text).payload
    request_out, response_out = encode(payload), encode(result)
    types = codec_for("ocpp1.6").types
    request = types.entry(action, PayloadKind.REQUEST)
    response = types.entry(action, PayloadKind.RESPONSE)
    assert request is not None and response is not None
    read_request, read_response = request.decoder.decode, response.decoder.decode
    pieces += [
        ("msgspec: encode the CALL payload (Struct)", lambda: encode(payload)),
        ("msgspec: validate it (typed decode of the bytes)", lambda: read_request(request_out)),
        (
            "msgspec: encode the CALL frame (Raw payload)",
            lambda: encode((2, message_id, action, raw(request_out))),
        ),
        ("msgspec: encode the CALLRESULT payload (Struct)", lambda: encode(result)),
        ("msgspec: validate it (typed decode of the bytes)", lambda: read_response(response_out)),
        (
            "msgspec: encode the CALLRESULT frame (Raw payload)",
            lambda: encode((3, message_id, raw(response_out))),
        ),
        ("msgspec: decode the CALL frame (Raw payload)", lambda: frames(call_text)),
        ("msgspec: decode the CALLRESULT frame (Raw payload)", lambda: frames(result_text)),
        ("msgspec: decode the CALL payload (typed)", lambda: read_request(call_payload)),
        ("msgspec: decode the CALLRESULT payload (typed)", lambda: read_response(result_payload)),
    ]
    return pieces


def cost(once: Callable[[], object]) -> float:
    """Microseconds per call: the fastest of 7 batches, less an empty call's cost."""
    timer = timeit.Timer(once)
    number, _ = timer.autorange()
    best = min(timer.repeat(7, number)) / number
    empty = timeit.Timer(lambda: None)
    return (best - min(empty.repeat(7, number)) / number) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--message", choices=list(cases()), default="Heartbeat")
    parser.add_argument(
        "--strict", action="store_true", help="SchemaCodec, typed payloads (all four directions)"
    )
    args = parser.parse_args()
    action, payload, result, typed_payload, typed_result = cases()[args.message]
    if args.strict:
        payload, result = typed_payload, typed_result
    total = cost(round_trip(action, payload, result, args.strict))
    rows = [(label, cost(once)) for label, once in steps(action, payload, result, args.strict)]
    library = sum(us for _, us in rows)
    mode = "strict (SchemaCodec, typed)" if args.strict else "dict payloads (JsonObjectCodec)"
    print(f"{args.message} round trip, {mode}")
    print("| step | µs |")
    print("|---|---:|")
    for label, us in rows:
        print(f"| {label} | {us:.3f} |")
    print(f"| **the library's work (sum)** | **{library:.2f}** |")
    print(f"| engine bookkeeping in Python (round trip - sum) | {total - library:.2f} |")
    print(f"| **round trip** | **{total:.2f}** |")


if __name__ == "__main__":
    main()
