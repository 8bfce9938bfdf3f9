"""SchemaCodec, ValidationPolicy, the error table, lazy loading and vendor protocols."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgspec
import pytest

from ocpprpc import (
    VALIDATION_ERROR_CODES,
    Direction,
    ErrorCode,
    OpenObject,
    PayloadError,
    PayloadKind,
    SchemaCodec,
    ValidationPolicy,
    codec_for,
    convert,
    protocol_types,
    register_protocol,
    schema_path,
    v16,
    v21,
    v201,
)

REQ, RES = PayloadKind.REQUEST, PayloadKind.RESPONSE
BOOT = b'{"chargePointVendor":"V","chargePointModel":"M"}'


def error(codec: SchemaCodec, action: str, kind: PayloadKind, data: bytes) -> PayloadError:
    with pytest.raises(PayloadError) as caught:
        codec.decode(action, kind, data)
    return caught.value


# -- decode / encode contract ------------------------------------------------------------


def test_known_action_decodes_to_its_struct() -> None:
    request = codec_for("ocpp1.6").decode("BootNotification", REQ, BOOT)
    assert request == v16.BootNotificationRequest(charge_point_vendor="V", charge_point_model="M")


def test_unknown_action_and_opt_out_give_dicts() -> None:
    codec = codec_for("ocpp1.6")
    assert codec.decode("VendorThing", REQ, b'{"a":1}') == {"a": 1}
    assert codec.decode("BootNotification", REQ, BOOT, validate=False) == json.loads(BOOT)
    assert codec.encode("VendorThing", REQ, {"a": 1}) == b'{"a":1}'
    # Off: anything JSON goes, in both directions.
    assert codec.encode("BootNotification", REQ, {"x": 1}, validate=False) == b'{"x":1}'


def test_policy_off_never_types_or_checks() -> None:
    codec = codec_for("ocpp1.6", ValidationPolicy.off())
    assert codec.decode("BootNotification", REQ, b'{"x":1}') == {"x": 1}
    assert codec.encode("BootNotification", REQ, {"x": 1}) == b'{"x":1}'


def test_policy_for_protocols() -> None:
    policy = ValidationPolicy.for_protocols("ocpp2.0.1")
    assert codec_for("ocpp1.6", policy).decode("BootNotification", REQ, b'{"x":1}') == {"x": 1}
    with pytest.raises(PayloadError):
        codec_for("ocpp2.0.1", policy).decode("Heartbeat", REQ, b'{"x":1}')
    assert policy.covers("ocpp2.0.1") and not policy.covers("ocpp1.6")


def test_policy_for_actions() -> None:
    codec = codec_for("ocpp1.6", ValidationPolicy.for_actions("Heartbeat"))
    assert codec.decode("BootNotification", REQ, b'{"x":1}') == {"x": 1}
    with pytest.raises(PayloadError):
        codec.decode("Heartbeat", REQ, b'{"x":1}')
    assert codec.policy.applies("ocpp1.6", "Heartbeat")
    assert not codec.policy.applies("ocpp1.6", "Authorize")
    assert "Heartbeat" in repr(codec)


def test_handler_opt_out_covers_the_received_call_and_the_returned_response() -> None:
    policy = ValidationPolicy.on()
    codec = codec_for("ocpp1.6", policy)
    policy.handler_opt_outs.add("DataTransfer")
    # Inbound CALL and the handler's response: not validated.
    assert codec.decode("DataTransfer", REQ, b'{"bad":1}') == {"bad": 1}
    assert codec.encode("DataTransfer", RES, {"bad": 1}) == b'{"bad":1}'
    # Our own DataTransfer CALL and its answer still are.
    with pytest.raises(PayloadError):
        codec.encode("DataTransfer", REQ, {"bad": 1})
    with pytest.raises(PayloadError):
        codec.decode("DataTransfer", RES, b'{"bad":1}')
    policy.handler_opt_outs.discard("DataTransfer")
    with pytest.raises(PayloadError):
        codec.decode("DataTransfer", REQ, b'{"bad":1}')


def test_encode_validates_structs_and_dicts() -> None:
    codec = codec_for("ocpp1.6")
    ok = v16.BootNotificationRequest(charge_point_vendor="V", charge_point_model="M")
    assert codec.encode("BootNotification", REQ, ok) == BOOT
    assert codec.encode("BootNotification", REQ, json.loads(BOOT)) == BOOT
    too_long = v16.BootNotificationRequest(charge_point_vendor="V" * 21, charge_point_model="M")
    with pytest.raises(PayloadError) as caught:
        codec.encode("BootNotification", REQ, too_long)
    assert caught.value.code is ErrorCode.PROPERTY_CONSTRAINT_VIOLATION
    assert caught.value.details == {"path": "$.chargePointVendor"}


@pytest.mark.parametrize("payload", [[1], "text", None, 3])
def test_encode_refuses_non_objects(payload: Any) -> None:
    with pytest.raises(PayloadError) as caught:
        codec_for("ocpp1.6").encode("Heartbeat", REQ, payload)
    assert caught.value.code is ErrorCode.FORMAT_VIOLATION


def test_encode_refuses_unserialisable_values() -> None:
    with pytest.raises(PayloadError) as caught:
        codec_for("ocpp1.6").encode("DataTransfer", REQ, {"vendorId": object()})
    assert "not JSON-serialisable" in caught.value.description


def test_not_json_is_a_format_violation() -> None:
    for codec, action in ((codec_for("ocpp1.6"), "BootNotification"), (codec_for("ocpp1.6"), "Vendor")):
        failure = error(codec, action, REQ, b'{"a": 1e400}' if action == "Vendor" else b'{"a":')
        assert failure.code is ErrorCode.FORMAT_VIOLATION


# -- the error table --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "code", "path"),
    [
        (b'{"chargePointVendor":"V"}', ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION, "$"),
        (BOOT[:-1] + b',"x":1}', ErrorCode.FORMAT_VIOLATION, "$"),
        (
            b'{"chargePointVendor":7,"chargePointModel":"M"}',
            ErrorCode.TYPE_CONSTRAINT_VIOLATION,
            "$.chargePointVendor",
        ),
        (
            b'{"chargePointVendor":null,"chargePointModel":"M"}',
            ErrorCode.TYPE_CONSTRAINT_VIOLATION,
            "$.chargePointVendor",
        ),
        (
            b'{"chargePointVendor":"123456789012345678901","chargePointModel":"M"}',
            ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
            "$.chargePointVendor",
        ),
    ],
)
def test_error_codes_and_paths(data: bytes, code: ErrorCode, path: str) -> None:
    failure = error(codec_for("ocpp1.6"), "BootNotification", REQ, data)
    assert (failure.code, failure.details["path"]) == (code, path)
    assert path in failure.description


def test_every_table_row_is_reachable() -> None:
    codec = codec_for("ocpp2.1")
    cases = {
        "Object missing required field": ("Heartbeat", RES, b"{}"),
        "Expected `array` of length": ("ClearVariableMonitoring", REQ, b'{"id":[]}'),
        "Object contains unknown field": ("Heartbeat", REQ, b'{"x":1}'),
        "Expected `str` of length": (
            "Authorize",
            REQ,
            b'{"idToken":{"idToken":"' + b"x" * 256 + b'","type":"Central"}}',
        ),
        "Expected `int` >=": ("GetDisplayMessages", REQ, b'{"requestId":1,"id":[-1]}'),
        "Expected `float` >=": (
            "BatterySwap",
            REQ,
            b'{"eventType":"BatteryIn","requestId":1,"idToken":{"idToken":"t","type":"Central"},'
            b'"batteryData":[{"evseId":1,"serialNumber":"s","soC":-1,"soH":100}]}',
        ),
        "Expected `float` <=": (
            "BatterySwap",
            REQ,
            b'{"eventType":"BatteryIn","requestId":1,"idToken":{"idToken":"t","type":"Central"},'
            b'"batteryData":[{"evseId":1,"serialNumber":"s","soC":50,"soH":100.5}]}',
        ),
        "Invalid enum value": ("Heartbeat", RES, b'{"currentTime":"2024-01-01T00:00:00Z","x":1}'),
        "Invalid RFC3339 encoded datetime": ("Heartbeat", RES, b'{"currentTime":"2024-13-01T00:00:00Z"}'),
        "Expected `datetime` with a timezone": ("Heartbeat", RES, b'{"currentTime":"2024-01-01T00:00:00"}'),
        "Number out of range": ("Heartbeat", RES, b'{"currentTime":1e400}'),
        "Expected `": ("Heartbeat", RES, b'{"currentTime":1}'),
    }
    seen = set()
    for prefix, (action, kind, data) in cases.items():
        try:
            codec.decode(action, kind, data)
        except PayloadError as exc:
            seen.add(exc.description.split(" at ")[0][: len(prefix)])
    codec16 = codec_for("ocpp1.6")
    for action, kind, data in [
        (
            "SetChargingProfile",
            REQ,
            b'{"connectorId":1,"csChargingProfiles":{"chargingProfileId":1,"stackLevel":0,"chargingProfilePurpose":"TxProfile","chargingProfileKind":"Absolute","chargingSchedule":{"chargingRateUnit":"A","chargingSchedulePeriod":[{"startPeriod":0,"limit":0.15}]}}}',
        ),
        ("BootNotification", RES, b'{"status":"Nope","currentTime":"2024-01-01T00:00:00Z","interval":1}'),
    ]:
        with pytest.raises(PayloadError) as caught:
            codec16.decode(action, kind, data)
        seen.add(caught.value.description)
    for _what, prefix, _code in VALIDATION_ERROR_CODES:
        if prefix == "Expected `int` <=":
            continue  # the 2.1 maximums are checked by the conformance tests
        assert any(s.startswith(prefix) for s in seen), prefix


def test_unclassified_failures_are_generic_errors() -> None:
    from ocpprpc._typed.validation import payload_error

    failure = payload_error(msgspec.ValidationError("something new - at `$.x`"))
    assert (failure.code, failure.details["path"]) == (ErrorCode.GENERIC_ERROR, "$.x")


# -- schema features msgspec does not express exactly -------------------------------------------


def test_custom_data_keeps_vendor_keys() -> None:
    codec = codec_for("ocpp2.0.1")
    data = b'{"customData":{"vendorId":"acme","shoeSize":44,"nested":{"a":[1,null]}}}'
    typed = codec.decode("Heartbeat", REQ, data)
    assert isinstance(typed.custom_data, v201.CustomData) and isinstance(typed.custom_data, OpenObject)
    assert typed.custom_data["shoeSize"] == 44
    assert codec.encode("Heartbeat", REQ, typed) == data
    bad = error(codec, "Heartbeat", REQ, b'{"customData":{"vendorId":"' + b"x" * 256 + b'"}}')
    assert (bad.code, bad.details["path"]) == (
        ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
        "$.customData.vendorId",
    )
    wrong = error(codec, "Heartbeat", REQ, b'{"customData":[1]}')
    assert (wrong.code, wrong.details["path"]) == (ErrorCode.TYPE_CONSTRAINT_VIOLATION, "$.customData")


def test_integral_floats_for_integers_follow_the_schema_draft() -> None:
    # 2.0.1 files are draft 6: 30.0 is an integer; 1.6 core files are draft 4: it is not.
    typed = codec_for("ocpp2.0.1").decode(
        "BootNotification", RES, b'{"currentTime":"2024-01-01T00:00:00Z","interval":30.0,"status":"Accepted"}'
    )
    assert typed.interval == 30 and type(typed.interval) is int
    failure = error(
        codec_for("ocpp1.6"),
        "BootNotification",
        RES,
        b'{"currentTime":"2024-01-01T00:00:00Z","interval":30.0,"status":"Accepted"}',
    )
    assert failure.code is ErrorCode.TYPE_CONSTRAINT_VIOLATION
    # Several such values, nested: each is fixed; a real fraction is still refused.
    data = b'{"requestId":1.0,"id":[2.0,3.0]}'
    assert codec_for("ocpp2.0.1").decode("GetDisplayMessages", REQ, data).id == [2, 3]
    half = error(codec_for("ocpp2.0.1"), "GetDisplayMessages", REQ, b'{"requestId":1.0,"id":[2.5]}')
    assert half.details["path"] == "$.id[0]"
    other = error(codec_for("ocpp2.0.1"), "GetDisplayMessages", REQ, b'{"requestId":1.0,"id":[2.0],"x":1}')
    assert other.code is ErrorCode.FORMAT_VIOLATION


def test_datetimes_need_an_offset_and_go_out_with_milliseconds_on_2x() -> None:
    codec = codec_for("ocpp2.0.1")
    moment = datetime(2024, 3, 3, 4, 19, 9, 123456, tzinfo=UTC)
    response = v201.HeartbeatResponse(current_time=moment)
    assert codec.encode("Heartbeat", RES, response) == b'{"currentTime":"2024-03-03T04:19:09.123Z"}'
    east = moment.astimezone(timezone(timedelta(hours=5, minutes=30)))
    assert codec.encode("Heartbeat", RES, {"currentTime": east.isoformat()}) == (
        b'{"currentTime":"2024-03-03T09:49:09.123+05:30"}'
    )
    whole = v201.HeartbeatResponse(current_time=moment.replace(microsecond=0))
    assert codec.encode("Heartbeat", RES, whole) == b'{"currentTime":"2024-03-03T04:19:09Z"}'
    millis = v201.HeartbeatResponse(current_time=moment.replace(microsecond=1))
    assert codec.encode("Heartbeat", RES, millis) == b'{"currentTime":"2024-03-03T04:19:09Z"}'
    naive = v201.HeartbeatResponse(current_time=moment.replace(tzinfo=None))
    with pytest.raises(PayloadError) as caught:
        codec.encode("Heartbeat", RES, naive)
    assert caught.value.code is ErrorCode.TYPE_CONSTRAINT_VIOLATION
    # 1.6 has no such rule: msgspec's microseconds stay.
    v16_response = v16.HeartbeatResponse(current_time=moment)
    assert codec_for("ocpp1.6").encode("Heartbeat", RES, v16_response).endswith(b'.123456Z"}')


def test_convert_knows_open_objects() -> None:
    payload = {"customData": {"vendorId": "v", "k": 1}}
    assert convert(payload, v21.HeartbeatRequest).custom_data == {"vendorId": "v", "k": 1}
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(payload, v21.HeartbeatRequest)


# -- lazy loading and registration --------------------------------------------------------------


def test_importing_ocpprpc_loads_no_version_module_and_16_never_loads_2x() -> None:
    code = (
        "import sys, ocpprpc\n"
        "assert not [m for m in sys.modules if m.startswith('ocpprpc.v')], 'eager import'\n"
        "from ocpprpc import PayloadKind\n"
        "c = ocpprpc.codec_for('ocpp1.6')\n"
        f"c.decode('BootNotification', PayloadKind.REQUEST, {BOOT!r})\n"
        "ocpprpc.codec_for('ocpp2.1', ocpprpc.ValidationPolicy.for_protocols('ocpp1.6')).decode(\n"
        "    'Heartbeat', PayloadKind.REQUEST, b'{}')\n"
        "print(sorted(m for m in sys.modules if m.startswith('ocpprpc.v')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "['ocpprpc.v16']"


def test_protocol_types() -> None:
    types = protocol_types("ocpp2.1")
    assert types is protocol_types("ocpp2.1")
    assert types.namespace["CustomData"] is v21.CustomData
    assert types.payload_type("Heartbeat", REQ) is v21.HeartbeatRequest
    assert types.payload_type("Nope", REQ) is None
    assert types.entry("NotifyPeriodicEventStream", RES) is None
    assert "ocpp2.1" in repr(types)
    assert "Heartbeat" in codec_for("ocpp2.1").known_actions
    with pytest.raises(LookupError):
        protocol_types("ocpp9")
    with pytest.raises(LookupError):
        codec_for("ocpp9")


VENDOR_REQUEST = {
    "$schema": "http://json-schema.org/draft-06/schema#",
    "type": "object",
    "additionalProperties": False,
    "definitions": {
        "ColourEnumType": {"type": "string", "enum": ["Red", "Green"]},
        "CustomDataType": {
            "type": "object",
            "properties": {"vendorId": {"type": "string", "maxLength": 255}},
            "required": ["vendorId"],
        },
    },
    "properties": {
        "lampId": {"type": "integer", "minimum": 1},
        "colour": {"$ref": "#/definitions/ColourEnumType"},
        "until": {"type": "string", "format": "date-time"},
        "customData": {"$ref": "#/definitions/CustomDataType"},
    },
    "required": ["lampId", "colour"],
}
VENDOR_RESPONSE = {
    "$schema": "http://json-schema.org/draft-06/schema#",
    "type": "object",
    "additionalProperties": False,
    "properties": {"accepted": {"type": "boolean"}},
    "required": ["accepted"],
}


def _vendor_folder(tmp_path: Path) -> Path:
    (tmp_path / "SetLampRequest.json").write_text(json.dumps(VENDOR_REQUEST))
    (tmp_path / "SetLampResponse.json").write_text(json.dumps(VENDOR_RESPONSE))
    (tmp_path / "Blink.json").write_text(json.dumps(VENDOR_RESPONSE))  # SEND-only
    return tmp_path


def test_register_a_vendor_protocol(tmp_path: Path) -> None:
    types = register_protocol(
        "acme1.0", _vendor_folder(tmp_path), directions={"SetLamp": Direction.FROM_CSMS}, replace=True
    )
    spec = types.actions["SetLamp"]
    assert spec.direction is Direction.FROM_CSMS and spec.response is not None
    assert types.actions["Blink"].response is None and types.actions["Blink"].direction is Direction.BOTH
    codec = codec_for("acme1.0")
    lamp = codec.decode("SetLamp", REQ, b'{"lampId":3,"colour":"Red","customData":{"vendorId":"a","z":1}}')
    assert type(lamp).__name__ == "SetLampRequest" and lamp.lamp_id == 3 and lamp.colour == "Red"
    assert lamp.custom_data == {"vendorId": "a", "z": 1}
    assert spec.request.__ocpp_response__ is spec.response  # type: ignore[attr-defined]
    failure = error(codec, "SetLamp", REQ, b'{"lampId":0,"colour":"Red"}')
    assert (failure.code, failure.details["path"]) == (ErrorCode.PROPERTY_CONSTRAINT_VIOLATION, "$.lampId")
    assert (
        error(codec, "SetLamp", REQ, b'{"lampId":1,"colour":"Blue"}').code
        is ErrorCode.PROPERTY_CONSTRAINT_VIOLATION
    )
    answer = types.namespace["SetLampResponse"](accepted=True)
    assert codec.encode("SetLamp", RES, answer) == b'{"accepted":true}'
    with pytest.raises(ValueError, match="already registered"):
        register_protocol("acme1.0", tmp_path)
    with pytest.raises(ValueError, match="built in"):
        register_protocol("ocpp1.6", tmp_path)


def test_register_rejects_what_it_cannot_type(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        register_protocol("empty", tmp_path)
    (tmp_path / "OrphanResponse.json").write_text(json.dumps(VENDOR_RESPONSE))
    with pytest.raises(ValueError, match="no matching request"):
        register_protocol("orphan", tmp_path)
    (tmp_path / "OrphanResponse.json").unlink()
    remote = dict(VENDOR_RESPONSE, properties={"a": {"$ref": "other.json#/x"}})
    (tmp_path / "RemoteRequest.json").write_text(json.dumps(remote))
    with pytest.raises(ValueError, match="local"):
        register_protocol("remote", tmp_path)
    (tmp_path / "RemoteRequest.json").write_text(json.dumps(dict(VENDOR_RESPONSE, type="array")))
    with pytest.raises(ValueError, match="closed object"):
        register_protocol("remote", tmp_path)
    (tmp_path / "RemoteRequest.json").write_text(
        json.dumps(dict(VENDOR_RESPONSE, properties={"a": {"type": "null"}}))
    )
    with pytest.raises(ValueError, match="unsupported schema type"):
        register_protocol("remote", tmp_path)


def test_a_copy_of_the_official_schemas_registers_as_a_vendor_protocol(tmp_path: Path) -> None:
    shutil.copytree(schema_path("ocpp1.6"), tmp_path / "s")
    types = register_protocol("copy1.6", tmp_path / "s", replace=True)
    assert set(types.actions) == set(v16.ACTIONS)
    assert types.namespace["UnitOfMeasure" if "UnitOfMeasure" in types.namespace else "SampledValueUnit"]


# -- lookup tables shared between codecs ----------------------------------------------------


def test_codecs_with_one_protocol_and_policy_share_their_lookup_tables() -> None:
    """A CSMS makes a codec per station: what each action decodes with is looked up once for all."""
    first, second = codec_for("ocpp1.6"), codec_for("ocpp1.6", ValidationPolicy.on())
    assert first.decode("Heartbeat", REQ, b"{}") == v16.HeartbeatRequest()
    assert second._requests is first._requests and "Heartbeat" in second._requests
    # Other settings, other tables: each answers as its own policy says.
    only_boot = codec_for("ocpp1.6", ValidationPolicy.for_actions("BootNotification"))
    assert only_boot._requests is not first._requests
    assert only_boot.decode("Heartbeat", REQ, b'{"x":1}') == {"x": 1}
    with pytest.raises(PayloadError):
        second.decode("Heartbeat", REQ, b'{"x":1}')
    assert codec_for("ocpp2.0.1")._requests is not first._requests
    # Handler opt-outs stay each codec's own.
    first.policy.handler_opt_outs.add("Heartbeat")
    assert first.decode("Heartbeat", REQ, b'{"x":1}') == {"x": 1}
    with pytest.raises(PayloadError):
        second.decode("Heartbeat", REQ, b'{"x":1}')


def test_a_replaced_protocol_gets_fresh_lookup_tables(tmp_path: Path) -> None:
    """After register_protocol(replace=True), new codecs validate against the new schemas."""
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    (old / "SetLampRequest.json").write_text(json.dumps(VENDOR_REQUEST))
    (old / "SetLampResponse.json").write_text(json.dumps(VENDOR_RESPONSE))
    loose = dict(VENDOR_REQUEST, required=["lampId"])
    (new / "SetLampRequest.json").write_text(json.dumps(loose))
    (new / "SetLampResponse.json").write_text(json.dumps(VENDOR_RESPONSE))
    register_protocol("lamps1.0", old, replace=True)
    before = codec_for("lamps1.0")
    assert error(before, "SetLamp", REQ, b'{"lampId":3}').code is ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION
    register_protocol("lamps1.0", new, replace=True)
    after = codec_for("lamps1.0")
    assert after._requests is not before._requests
    assert after.decode("SetLamp", REQ, b'{"lampId":3}').lamp_id == 3
    # A codec made before the replacement keeps the schemas it was made with.
    assert error(before, "SetLamp", REQ, b'{"lampId":3}').code is ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION


def test_a_codec_that_only_uses_shared_tables_still_caps_fractions() -> None:
    """The cap on date-time digits holds for a codec that never loaded the types itself."""
    codec_for("ocpp2.0.1").encode("Heartbeat", RES, {"currentTime": "2024-03-03T04:19:09Z"})
    moment = datetime(2024, 3, 3, 4, 19, 9, 123456, tzinfo=UTC)
    fresh = codec_for("ocpp2.0.1")
    assert fresh.encode("Heartbeat", RES, v201.HeartbeatResponse(current_time=moment)) == (
        b'{"currentTime":"2024-03-03T04:19:09.123Z"}'
    )
