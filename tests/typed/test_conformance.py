"""Differential conformance over every schema file: ocpprpc against the jsonschema reference.

For every one of the 387 schemas, with both the generated types (``ocpprpc.v16``
...) and the same schemas built at runtime (``register_protocol``):

* instances generated from the schema are accepted by both, and survive an
  encode/decode round trip unchanged;
* every systematic mutation of a full instance (missing required property,
  wrong type, null, over-long string, out-of-range number, unknown property,
  bad enum value, bad date-time, too few/many items, not a multiple) is rejected
  by both, with the expected OCPP error code and JSON path;
* an integer written ``7.0`` is accepted exactly when the reference accepts it
  (draft 6 files yes, 1.6's draft 4 files no).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocpprpc import PayloadError, PayloadKind, SchemaCodec, ValidationPolicy, codec_for, register_protocol

from .schema_tools import (
    SCHEMAS,
    action_and_kind,
    full_instance,
    instances,
    load,
    mutations,
    reference_validator,
    resolve,
    sample,
    schema_files,
)

FILES = schema_files()
KIND = {"request": PayloadKind.REQUEST, "response": PayloadKind.RESPONSE}


def test_every_schema_file_is_covered() -> None:
    assert len(FILES) == 78 + 128 + 181


@cache
def codecs(version: str) -> tuple[SchemaCodec, SchemaCodec]:
    """The generated-types codec and a runtime-built (defstruct) codec of the same schemas."""
    runtime = f"conformance-{version}"
    register_protocol(runtime, SCHEMAS / version, replace=True)
    return codec_for(version), SchemaCodec(runtime, ValidationPolicy.on())


@cache
def prepared(path: Path) -> tuple[dict[str, Any], Any]:
    schema = load(path)
    return schema, reference_validator(schema)


def _ids(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


@pytest.mark.parametrize("path", FILES, ids=_ids)
def test_generated_instances_are_accepted_by_both(path: Path) -> None:
    schema, reference = prepared(path)
    action, kind = action_and_kind(path)
    generated, runtime = codecs(path.parent.name)

    @settings(max_examples=3, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(instances(schema))
    def check(instance: Any) -> None:
        reference.validate(instance)
        data = json.dumps(instance).encode()
        for codec in (generated, runtime):
            typed = codec.decode(action, KIND[kind], data)
            again = codec.encode(action, KIND[kind], typed)
            reference.validate(json.loads(again))
            retyped = codec.decode(action, KIND[kind], again)
            assert codec.encode(action, KIND[kind], retyped) == again
            if path.parent.name == "ocpp1.6":  # 2.x output truncates date-times to milliseconds
                assert retyped == typed

    check()


@pytest.mark.parametrize("path", FILES, ids=_ids)
def test_mutations_are_rejected_by_both_with_the_expected_code(path: Path) -> None:
    schema, reference = prepared(path)
    action, kind = action_and_kind(path)
    valid = full_instance(schema, schema)
    reference.validate(valid)
    count = 0
    generated, runtime = codecs(path.parent.name)
    for codec in (generated, runtime):
        codec.decode(action, KIND[kind], json.dumps(valid).encode())
    # Large 2.1 schemas have hundreds of locations: every category, at up to 8 of them.
    for mutation in sample(list(mutations(schema)), 8):
        count += 1
        assert not reference.is_valid(mutation.instance), mutation
        data = json.dumps(mutation.instance).encode()
        for codec in (generated, runtime):
            with pytest.raises(PayloadError) as caught:
                codec.decode(action, KIND[kind], data)
            error = caught.value
            assert (error.code, error.details["path"]) == (mutation.code, mutation.path), (mutation, error)
            # The same payload as a dict on the way out fails the same way.
            with pytest.raises(PayloadError) as out:
                codec.encode(action, KIND[kind], mutation.instance)
            assert out.value.code == mutation.code
    assert count > 0


def _integer_locations(
    node: Any, root: Any, steps: tuple[str | int, ...] = ()
) -> list[tuple[str | int, ...]]:
    node = resolve(node, root)
    if node.get("type") == "integer":
        return [steps]
    if node.get("type") == "array":
        return _integer_locations(node["items"], root, (*steps, 0))
    if node.get("type") == "object":
        return [
            loc
            for k, v in node.get("properties", {}).items()
            for loc in _integer_locations(v, root, (*steps, k))
        ]
    return []


@pytest.mark.parametrize("path", FILES, ids=_ids)
def test_integers_written_with_a_fraction_of_zero_follow_the_draft(path: Path) -> None:
    schema, reference = prepared(path)
    action, kind = action_and_kind(path)
    valid = full_instance(schema, schema)
    for steps in _integer_locations(schema, schema)[:6]:
        instance = json.loads(json.dumps(valid))
        parent = instance
        for step in steps[:-1]:
            parent = parent[step]
        parent[steps[-1]] = float(parent[steps[-1]])
        accepted = reference.is_valid(instance)
        assert accepted == ("draft-04" not in schema["$schema"])
        for codec in codecs(path.parent.name):
            data = json.dumps(instance).encode()
            if accepted:
                typed = codec.decode(action, KIND[kind], data)
                assert codec.decode(action, KIND[kind], json.dumps(valid).encode()) == typed
            else:
                with pytest.raises(PayloadError):
                    codec.decode(action, KIND[kind], data)


def _charging_profile(limit: float) -> bytes:
    schedule = {"chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}]}
    profile = {
        "chargingProfileId": 1,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": schedule,
    }
    return json.dumps({"connectorId": 1, "csChargingProfiles": profile}).encode()


@given(st.integers(-(10**6), 10**6))
def test_multiple_of_a_tenth_is_exact_on_the_decimal_text(tenths: int) -> None:
    """21.4 is a multiple of 0.1 (binary floating point disagrees); 21.45 is not."""
    codec = codec_for("ocpp1.6")
    typed = codec.decode("SetChargingProfile", PayloadKind.REQUEST, _charging_profile(tenths / 10))
    assert typed.cs_charging_profiles.charging_schedule.charging_schedule_period[0].limit == tenths / 10
    with pytest.raises(PayloadError) as caught:
        codec.decode("SetChargingProfile", PayloadKind.REQUEST, _charging_profile(tenths / 10 + 0.05))
    assert (
        caught.value.details["path"]
        == "$.csChargingProfiles.chargingSchedule.chargingSchedulePeriod[0].limit"
    )
