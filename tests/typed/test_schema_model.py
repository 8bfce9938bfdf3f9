"""The schema -> type model step on small synthetic schemas: naming, attributes, edge cases."""

from __future__ import annotations

import decimal
from typing import Any

import msgspec
import pytest

from ocpprpc import ErrorCode, PayloadError, PayloadKind, codec_for, v201
from ocpprpc._typed.schema import (
    build_model,
    build_types,
    check_multiple_of,
    open_object_hook,
    render_module,
)
from ocpprpc._typed.validation import _make_integral

DRAFT6 = "http://json-schema.org/draft-06/schema#"


def closed(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "$schema": DRAFT6,
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
        "required": list(required),
    }


def test_different_shapes_with_one_name_are_qualified() -> None:
    a = {"type": "object", "additionalProperties": False, "properties": {"x": {"type": "integer"}}}
    b = {"type": "object", "additionalProperties": False, "properties": {"y": {"type": "integer"}}}
    c = {"type": "object", "additionalProperties": False, "properties": {"z": {"type": "integer"}}}
    d = {"type": "object", "additionalProperties": False, "properties": {"w": {"type": "integer"}}}
    schemas = {
        "FooRequest": closed({"thing": a, "fooResponse": d, "list": {"type": "array"}}),
        "FooResponse": closed({"thing": b}),
        "BarRequest": closed({"thing": c, "other": closed({"thing": a})}),
        "BarResponse": closed({}),
    }
    model = build_model("p", schemas)
    # Shape a is first used inside BarRequest.other, c in BarRequest, b in FooResponse.
    assert {"OtherThing", "BarRequestThing", "FooResponseThing"} <= set(model.structs)
    # A name that looks like a message's gets a "Type" suffix instead of clashing.
    assert "FooResponseType" in model.structs
    source = render_module(model, title="t", source="s")
    compile(source, "generated", "exec")
    types = build_types(model)
    assert types.namespace["FooRequest"](list_=[1, "x"]).list_ == [1, "x"]


def test_when_every_candidate_name_is_taken_a_number_is_added() -> None:
    shape = [
        {"type": "object", "additionalProperties": False, "properties": {k: {"type": "integer"}}}
        for k in "abc"
    ]
    things = {"thing": shape[0], "Thing": shape[1], "thing_": shape[2]}
    schemas = {"FooRequest": closed(things), "FooResponse": closed({})}
    model = build_model("p", schemas)
    assert {"FooRequestThing", "FooRequestThing2", "FooRequestThing3"} <= set(model.structs)


def test_renames_must_name_existing_types_and_stay_unique() -> None:
    schemas = {"FooRequest": closed({"s": {"type": "string", "enum": ["A"]}}), "FooResponse": closed({})}
    assert "Status" in build_model("p", schemas, renames={"S": "Status"}).enums
    with pytest.raises(ValueError, match="do not exist"):
        build_model("p", schemas, renames={"Nope": "X"})
    with pytest.raises(ValueError, match="share a name"):
        build_model("p", schemas, renames={"S": "FooRequest"})


def test_attribute_names() -> None:
    schemas = {
        "FooRequest": closed(
            {
                "limitL2": {"type": "number"},
                "limit_L2": {"type": "number"},
                "2fast": {"type": "string"},
                "class": {"type": "string"},
                "int": {"type": "integer"},
                "EVConnectionTimeOut": {"type": "integer"},
            }
        ),
        "FooResponse": closed({}),
    }
    fields = {f.wire: f.attr for f in build_model("p", schemas).structs["FooRequest"].fields}
    assert fields == {
        "limitL2": "limit_l2",
        "limit_L2": "limit_l2_",
        "2fast": "f_2fast",
        "class": "class_",
        "int": "int_",
        "EVConnectionTimeOut": "ev_connection_time_out",
    }
    types = build_types(build_model("p", schemas))
    request = types.namespace["FooRequest"](limit_l2_=1.5, class_="c", int_=3)
    assert msgspec.json.encode(request) == b'{"limit_L2":1.5,"class":"c","int":3}'


def test_enum_member_names() -> None:
    values = ["1", "kWh", "KWh", "L1-N", "mro", "_x"]
    schemas = {"FooRequest": closed({"e": {"type": "string", "enum": values}}), "FooResponse": closed({})}
    enum_type = build_types(build_model("p", schemas)).namespace["E"]
    assert [m.value for m in enum_type] == values  # type: ignore[attr-defined]
    assert {m.name for m in enum_type} >= {"V_1", "K_WH", "K_WH_", "L1_N"}  # type: ignore[attr-defined]


def test_open_objects_in_general() -> None:
    open_object = {
        "type": "object",
        "properties": {"tag": {"type": "string"}, "n": {"type": "integer"}},
        "required": ["tag"],
    }
    schemas = {"FooRequest": closed({"extra": open_object}), "FooResponse": closed({})}
    model = build_model("p", schemas)
    assert model.open_objects == {"Extra": "ExtraFields"}
    assert "The properties the schema names in a Extra object." in render_module(model, title="t", source="s")
    types = build_types(model)
    decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(
        types.namespace["FooRequest"], dec_hook=open_object_hook
    )
    value = decoder.decode(b'{"extra":{"tag":"t","n":1,"vendor":[1]}}')
    assert value.extra == {"tag": "t", "n": 1, "vendor": [1]}
    with pytest.raises(msgspec.ValidationError, match="Expected `int`"):
        decoder.decode(b'{"extra":{"tag":"t","n":"1"}}')


@pytest.mark.parametrize(
    ("value", "kind"), [(True, "bool"), ("x", "str"), (1, "int"), (1.5, "float"), (None, "null")]
)
def test_custom_data_must_be_an_object(value: Any, kind: str) -> None:
    codec = codec_for("ocpp2.0.1")
    with pytest.raises(PayloadError) as caught:
        codec.decode("Heartbeat", PayloadKind.REQUEST, msgspec.json.encode({"customData": value}))
    assert f"got `{kind}`" in caught.value.description
    with pytest.raises(NotImplementedError):
        open_object_hook(complex, 1)
    assert v201.CustomData.__ocpp_known__ is v201.CustomDataFields


def test_check_multiple_of_refuses_non_finite_numbers() -> None:
    with pytest.raises(ValueError, match="finite"):
        check_multiple_of(float("inf"), decimal.Decimal("0.1"), "limit")
    check_multiple_of([0.1, 0.2], decimal.Decimal("0.1"), "limit")


def test_truncated_json_on_the_typed_path_is_a_format_violation() -> None:
    with pytest.raises(PayloadError) as caught:
        codec_for("ocpp1.6").decode("BootNotification", PayloadKind.REQUEST, b'{"chargePointVendor":')
    assert caught.value.code is ErrorCode.FORMAT_VIOLATION


def test_make_integral_needs_a_location() -> None:
    assert not _make_integral({"a": 1.0}, "$")
    tree = {"a": [{"b": 2.0}]}
    assert _make_integral(tree, "$.a[0].b") and tree == {"a": [{"b": 2}]}
