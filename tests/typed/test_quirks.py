"""Vendor quirk profiles: the path grammar, each repair (hostile input included), matching,
the per-identity memory, the once-per-station log, and the schema codec with quirks on each
OCPP version (repairs apply before strict validation, only where a profile says so)."""

from __future__ import annotations

import logging
import re
from typing import Any

import msgspec
import pytest

from ocpprpc import (
    Coerce,
    Drop,
    DropUnknown,
    ErrorCode,
    MapEnum,
    Match,
    PayloadError,
    PayloadKind,
    Prefix,
    QuirkProfile,
    Quirks,
    SchemaCodec,
    Truncate,
    ValidationPolicy,
    codec_for,
    v16,
    v201,
)
from ocpprpc._typed.quirks import Outcome, apply_repairs, as_quirks, boot_info, parse_path

REQUEST = PayloadKind.REQUEST
RESPONSE = PayloadKind.RESPONSE
SERIAL_40 = "Z" * 40

# -- the path grammar ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "segments"),
    [
        ("", ()),
        ("/", ()),
        ("a", ("a",)),
        ("/a/b", ("a", "b")),
        ("meterValue/*/sampledValue/*/measurand", ("meterValue", "*", "sampledValue", "*", "measurand")),
        ("a~1b/c~0d/0", ("a/b", "c~d", "0")),
    ],
)
def test_paths_parse_like_json_pointers_with_a_wildcard(path: str, segments: tuple[str, ...]) -> None:
    assert parse_path(path) == segments


@pytest.mark.parametrize("path", ["a//b", "a/", "//", "a~2", "a~"])
def test_malformed_paths_are_refused_when_declared(path: str) -> None:
    with pytest.raises(ValueError, match="quirk path"):
        parse_path(path)
    with pytest.raises(ValueError, match="quirk path"):
        Truncate(path, 3)


def test_a_path_must_be_a_string() -> None:
    with pytest.raises(TypeError, match="is a string"):
        parse_path(3)  # type: ignore[arg-type]


def test_indexes_and_wildcards_select_array_elements() -> None:
    tree = {"a": [{"b": "xxxx"}, {"b": "yyyy"}, {"c": 1}]}
    report = Truncate("a/*/b", 2).apply(tree)
    assert tree == {"a": [{"b": "xx"}, {"b": "yy"}, {"c": 1}]}
    assert (report.repaired, report.not_applicable, report.first) == (2, 1, "/a/0/b: 4 -> 2 chars")
    tree = {"a": [{"b": "xxxx"}, {"b": "yyyy"}]}
    assert Truncate("a/1/b", 2).apply(tree).repaired == 1
    assert tree == {"a": [{"b": "xxxx"}, {"b": "yy"}]}
    # A numeric segment on an object is a key (JSON pointer); an index out of range finds nothing.
    tree2: dict[str, Any] = {"a": {"1": "zzz"}}
    assert Truncate("a/1", 1).apply(tree2).repaired == 1
    assert tree2 == {"a": {"1": "z"}}
    assert Truncate("a/5/b", 2).apply({"a": [{"b": "xxxx"}]}).not_applicable == 1
    # Leading zeros and signs are no index.
    assert Truncate("a/01", 1).apply({"a": ["xx", "yy"]}).not_applicable == 1
    assert Truncate("a/-1", 1).apply({"a": ["xx", "yy"]}).not_applicable == 1


@pytest.mark.parametrize(
    "tree",
    [
        {},
        {"meterValue": None},
        {"meterValue": "not a list"},
        {"meterValue": {"*": 1}},
        {"meterValue": [None, 7, "x", [], {"sampledValue": 3}]},
        {"meterValue": [{"sampledValue": [None, {"measurand": 5}, {"measurand": ["x"]}]}]},
        [1, 2, 3],
        None,
        "text",
    ],
)
def test_hostile_shapes_are_not_applicable_never_an_exception(tree: Any) -> None:
    path = "meterValue/*/sampledValue/*/measurand"
    repairs = [
        Truncate(path, 1),
        Coerce(path, to=str),
        MapEnum(path, {"a": "b"}),
        Drop(path),
        DropUnknown("meterValue/*"),
    ]
    before = msgspec.json.encode(tree)
    for report in apply_repairs(tree, repairs, v16.MeterValuesRequest):
        assert report.not_applicable >= 1 or report.repaired >= 0
        assert report.first is None or isinstance(report.first, str)
    if not isinstance(tree, dict) or "meterValue" not in tree or tree["meterValue"] is None:
        assert msgspec.json.encode(tree) == before


def test_huge_arrays_are_walked_without_trouble() -> None:
    n = 200_000
    sampled = [{"sampledValue": [{"measurand": "Energy.Active.Import"}] * 1000} for _ in range(100)]
    tree = {"meterValue": [*sampled, *([None] * n)]}
    report = MapEnum("meterValue/*/sampledValue/*/measurand", {"Energy.Active.Import": "X"}).apply(tree)
    assert (report.repaired, report.not_applicable) == (100_000, n)


def test_an_array_selected_at_the_root_is_not_applicable_for_a_value_repair() -> None:
    tree = [1, 2, 3]
    assert Truncate("", 1).apply(tree).not_applicable == 1
    assert tree == [1, 2, 3]


# -- each repair ---------------------------------------------------------------------------------


def _one(repair: Any, value: Any) -> tuple[Outcome, Any]:
    tree = {"f": value}
    report = repair.apply(tree)
    outcome = (
        Outcome.REPAIRED
        if report.repaired
        else Outcome.NOT_APPLICABLE
        if report.not_applicable
        else Outcome.CONFORMANT
    )
    return outcome, tree.get("f", "<dropped>")


@pytest.mark.parametrize(
    ("value", "outcome", "after"),
    [
        ("abcdef", Outcome.REPAIRED, "abc"),
        ("abc", Outcome.CONFORMANT, "abc"),
        ("", Outcome.CONFORMANT, ""),
        ([1, 2, 3, 4], Outcome.REPAIRED, [1, 2, 3]),
        ([1], Outcome.CONFORMANT, [1]),
        (12345, Outcome.NOT_APPLICABLE, 12345),
        (None, Outcome.NOT_APPLICABLE, None),
        ({"a": 1}, Outcome.NOT_APPLICABLE, {"a": 1}),
    ],
)
def test_truncate(value: Any, outcome: Outcome, after: Any) -> None:
    assert _one(Truncate("f", 3), value) == (outcome, after)


def test_truncate_refuses_a_bad_length() -> None:
    for bad in (-1, 2.5, True, "3"):
        with pytest.raises(ValueError, match="max_length"):
            Truncate("f", bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("to", "value", "outcome", "after"),
    [
        (str, 7, Outcome.REPAIRED, "7"),
        (str, 1.5, Outcome.REPAIRED, "1.5"),
        (str, True, Outcome.REPAIRED, "true"),
        (str, "x", Outcome.CONFORMANT, "x"),
        (str, None, Outcome.NOT_APPLICABLE, None),
        (str, [1], Outcome.NOT_APPLICABLE, [1]),
        (int, "42", Outcome.REPAIRED, 42),
        (int, " -3 ", Outcome.REPAIRED, -3),
        (int, 7.0, Outcome.REPAIRED, 7),
        (int, 7.5, Outcome.NOT_APPLICABLE, 7.5),
        (int, 7, Outcome.CONFORMANT, 7),
        (int, True, Outcome.NOT_APPLICABLE, True),
        (int, "1_000", Outcome.NOT_APPLICABLE, "1_000"),
        (int, "9" * 5000, Outcome.NOT_APPLICABLE, "9" * 5000),
        (int, "0x1f", Outcome.NOT_APPLICABLE, "0x1f"),
        (int, None, Outcome.NOT_APPLICABLE, None),
        (float, "1.5", Outcome.REPAIRED, 1.5),
        (float, "-2e3", Outcome.REPAIRED, -2000.0),
        (float, "1e999", Outcome.NOT_APPLICABLE, "1e999"),
        (float, "nan", Outcome.NOT_APPLICABLE, "nan"),
        (float, "inf", Outcome.NOT_APPLICABLE, "inf"),
        (float, 3, Outcome.CONFORMANT, 3),
        (float, 3.5, Outcome.CONFORMANT, 3.5),
        (float, False, Outcome.NOT_APPLICABLE, False),
        (float, {}, Outcome.NOT_APPLICABLE, {}),
        (bool, "true", Outcome.REPAIRED, True),
        (bool, " FALSE", Outcome.REPAIRED, False),
        (bool, 1, Outcome.REPAIRED, True),
        (bool, 0, Outcome.REPAIRED, False),
        (bool, 2, Outcome.NOT_APPLICABLE, 2),
        (bool, 1.0, Outcome.NOT_APPLICABLE, 1.0),
        (bool, "yes", Outcome.NOT_APPLICABLE, "yes"),
        (bool, False, Outcome.CONFORMANT, False),
    ],
)
def test_coerce(to: type, value: Any, outcome: Outcome, after: Any) -> None:
    assert _one(Coerce("f", to=to), value) == (outcome, after)


def test_coerce_refuses_other_targets() -> None:
    with pytest.raises(ValueError, match="Coerce to="):
        Coerce("f", to=list)


@pytest.mark.parametrize(
    ("value", "outcome", "after"),
    [
        ("Energy.Active.Import", Outcome.REPAIRED, "Energy.Active.Import.Register"),
        ("Voltage", Outcome.CONFORMANT, "Voltage"),
        ("same", Outcome.CONFORMANT, "same"),
        (5, Outcome.NOT_APPLICABLE, 5),
        (["Energy.Active.Import"], Outcome.NOT_APPLICABLE, ["Energy.Active.Import"]),
        ({"x": 1}, Outcome.NOT_APPLICABLE, {"x": 1}),
    ],
)
def test_map_enum(value: Any, outcome: Outcome, after: Any) -> None:
    repair = MapEnum("f", {"Energy.Active.Import": "Energy.Active.Import.Register", "same": "same"})
    assert _one(repair, value) == (outcome, after)


def test_map_enum_keeps_its_own_copy_of_the_mapping() -> None:
    mapping = {"a": "b"}
    repair = MapEnum("f", mapping)
    mapping["a"] = "c"
    assert _one(repair, "a") == (Outcome.REPAIRED, "b")


def test_drop() -> None:
    assert _one(Drop("f"), {"deep": [1]}) == (Outcome.REPAIRED, "<dropped>")
    assert _one(Drop("g"), 1) == (Outcome.NOT_APPLICABLE, 1)  # absent: nothing to drop
    tree = {"a": ["x", "y"]}
    assert Drop("a/0").apply(tree).not_applicable == 1  # array elements are not members
    assert tree == {"a": ["x", "y"]}
    for path in ("", "/", "a/*"):
        with pytest.raises(ValueError, match="Drop needs"):
            Drop(path)


def test_drop_unknown_removes_what_the_schema_does_not_name() -> None:
    tree = {
        "connectorId": 1,
        "vendorExtra": {"x": 1},
        "meterValue": [{"timestamp": "t", "sampledValue": [{"value": "1", "rogue": 2}], "junk": 1}],
    }
    reports = apply_repairs(
        tree,
        [DropUnknown(""), DropUnknown("meterValue/*"), DropUnknown("meterValue/0/sampledValue/*")],
        v16.MeterValuesRequest,
    )
    assert tree == {"connectorId": 1, "meterValue": [{"timestamp": "t", "sampledValue": [{"value": "1"}]}]}
    assert [r.repaired for r in reports] == [1, 1, 1]
    assert reports[0].first == "/: dropped ['vendorExtra']"
    # Nothing unknown: conformant.
    assert DropUnknown("").apply(tree, v16.MeterValuesRequest).repaired == 0


def test_drop_unknown_through_nested_objects() -> None:
    tree = {"chargingStation": {"model": "m", "vendorName": "v", "modem": {"iccid": "1", "x": 2}, "y": 3}}
    DropUnknown("chargingStation/modem").apply(tree, v201.BootNotificationRequest)
    DropUnknown("chargingStation").apply(tree, v201.BootNotificationRequest)
    assert tree == {"chargingStation": {"model": "m", "vendorName": "v", "modem": {"iccid": "1"}}}


@pytest.mark.parametrize(
    "path",
    [
        "chargingStation/customData",  # an open object: no closed set of names
        "chargingStation/model",  # a string, not an object
        "chargingStation/nonexistent",  # not in the schema
        "chargingStation/model/deeper",  # below a string
        "reason/*",  # a wildcard on an enum
    ],
)
def test_drop_unknown_where_the_schema_has_no_closed_object_is_not_applicable(path: str) -> None:
    tree = {
        "chargingStation": {
            "model": {"a": 1},
            "customData": {"vendorId": "v", "k": 1},
            "nonexistent": {"q": 1},
        }
    }
    tree["chargingStation"]["model"] = {"deeper": {"z": 1}, "a": 1}
    before = msgspec.json.encode(tree)
    report = DropUnknown(path).apply(tree, v201.BootNotificationRequest)
    assert report.repaired == 0
    assert msgspec.json.encode(tree) == before


def test_drop_unknown_without_a_payload_type_is_not_applicable() -> None:
    tree = {"a": 1}
    assert DropUnknown("").apply(tree).not_applicable == 1
    assert DropUnknown("").apply({"x": [1]}, v16.MeterValuesRequest).repaired == 1
    # The object it names is not an object in this payload.
    assert (
        DropUnknown("meterValue/*").apply({"meterValue": [1, "x"]}, v16.MeterValuesRequest).not_applicable
        == 2
    )


def test_repairs_apply_in_order() -> None:
    tree = {"f": "Energy.Active.Import"}
    apply_repairs(tree, [MapEnum("f", {"Energy.Active.Import": "LongerName"}), Truncate("f", 6)])
    assert tree == {"f": "Longer"}


# -- matching ------------------------------------------------------------------------------------


def _boot16(vendor: Any = "Acme", model: Any = "X1", firmware: Any = "1.2.3") -> dict[str, Any]:
    return {
        "chargePointVendor": vendor,
        "chargePointModel": model,
        "firmwareVersion": firmware,
        "chargePointSerialNumber": SERIAL_40,
    }


def test_boot_info_reads_both_shapes_and_numbers() -> None:
    assert boot_info(_boot16(firmware=1.2)) == boot_info(_boot16(firmware="1.2"))
    info = boot_info(
        {"chargingStation": {"vendorName": "V", "model": "M", "firmwareVersion": 3}, "reason": "x"}
    )
    assert (info.vendor, info.model, info.firmware) == ("V", "M", "3")
    assert boot_info([1]).vendor is None
    assert boot_info(_boot16(vendor=True, model=None, firmware={"x": 1})).vendor is None


@pytest.mark.parametrize(
    ("match", "expected"),
    [
        (Match(), True),
        (Match(vendor="Acme"), True),
        (Match(vendor="acme"), False),
        (Match(vendor="Acme", model="X2"), False),
        (Match(firmware=Prefix("1.2.")), True),
        (Match(firmware=Prefix("1.3.")), False),
        (Match(model=re.compile(r"X\d")), True),
        (Match(model=re.compile(r"X")), False),  # the whole value must match
        (Match(identity="CP1"), True),
        (Match(identity=Prefix("CP9")), False),
        (Match(vendor="Acme", protocols=["ocpp1.6"]), True),
        (Match(vendor="Acme", protocols=["ocpp2.0.1"]), False),
    ],
)
def test_match_conditions(match: Match, expected: bool) -> None:
    assert match.at_boot("CP1", "ocpp1.6", boot_info(_boot16())) is expected


def test_a_missing_boot_field_matches_nothing() -> None:
    assert not Match(vendor=Prefix("")).at_boot("CP1", "ocpp1.6", boot_info({}))


def test_profiles_freeze_their_tables_and_refuse_what_is_not_a_repair() -> None:
    repairs = [Truncate("a", 1)]
    profile = QuirkProfile("p", calls={"A": repairs}, results={"B": [Coerce("b", to=int)]})
    repairs.append(Truncate("b", 1))
    assert profile.repairs("A", True) == (Truncate("a", 1),)
    assert profile.repairs("B", False) == (Coerce("b", to=int),)
    assert profile.repairs("B", True) == ()
    with pytest.raises(TypeError, match="is not a Repair"):
        QuirkProfile("p", calls={"A": ["truncate"]})  # type: ignore[list-item]


def test_quirks_refuse_duplicate_names_and_no_memory() -> None:
    with pytest.raises(ValueError, match="unique"):
        Quirks([QuirkProfile("p"), QuirkProfile("p")])
    with pytest.raises(ValueError, match="at least 1"):
        Quirks([QuirkProfile("p")], memory=0)


def test_as_quirks() -> None:
    assert as_quirks(None) is None
    assert as_quirks([]) is None
    assert as_quirks(Quirks([])) is None
    shared = Quirks([QuirkProfile("p")])
    assert as_quirks(shared) is shared
    made = as_quirks([QuirkProfile("p")])
    assert made is not None and [p.name for p in made.profiles] == ["p"]
    assert "remembering 0" in repr(made)


# -- selection and memory ------------------------------------------------------------------------

ACME = QuirkProfile(
    "acme",
    match=Match(vendor="Acme", protocols=["ocpp1.6"]),
    calls={"BootNotification": [Truncate("chargePointSerialNumber", 25)]},
)
BY_IDENTITY = QuirkProfile("by-identity", match=Match(identity=Prefix("OLD-")))


def test_a_profile_chosen_by_identity_is_active_at_connect() -> None:
    quirks = Quirks([ACME, BY_IDENTITY])
    assert quirks.bind("OLD-1", "ocpp1.6").profile is BY_IDENTITY
    station = quirks.bind("NEW-1", "ocpp1.6")
    assert station.profile is None
    assert station.selects_on_boot
    assert "NEW-1" in repr(station)


def test_the_boot_chooses_and_is_remembered_for_the_next_connection() -> None:
    quirks = Quirks([ACME])
    changes: list[str] = []
    station = quirks.bind("CP1", "ocpp1.6")
    station.on_change = lambda: changes.append("changed")
    station.boot(_boot16())
    assert station.profile is ACME
    assert "'acme'" in repr(station)
    station.boot(_boot16())  # the same answer: nothing changes
    assert changes == ["changed"]
    assert quirks.remembered("CP1") is ACME
    assert quirks.bind("CP1", "ocpp1.6").profile is ACME  # the reconnect, before any boot
    # The profile is for 1.6 only: a 2.0.1 connection of the same station does not get it.
    assert quirks.bind("CP1", "ocpp2.0.1").profile is None
    # A new boot that no longer matches (new firmware, new vendor) drops it, and that is remembered.
    station.boot(_boot16(vendor="Other"))
    assert station.profile is None and changes == ["changed", "changed"]
    assert quirks.bind("CP1", "ocpp1.6").profile is None
    assert quirks.remembered("unknown") is None


def test_a_boot_without_a_listener_changes_the_profile_quietly() -> None:
    station = Quirks([ACME]).bind("CP1", "ocpp1.6")
    station.boot(_boot16())
    assert station.profile is ACME


def test_the_memory_is_bounded() -> None:
    quirks = Quirks([ACME], memory=2)
    for identity in ("A", "B"):
        quirks.bind(identity, "ocpp1.6").boot(_boot16())
    quirks.bind("A", "ocpp1.6")  # A is now the most recent
    quirks.bind("C", "ocpp1.6")  # B is forgotten
    assert quirks.remembered("A") is ACME
    assert quirks.remembered("B") is None
    assert quirks.bind("B", "ocpp1.6").profile is None


def test_each_repair_is_logged_once_per_station_with_short_values(caplog: pytest.LogCaptureFixture) -> None:
    profile = QuirkProfile(
        "acme", calls={"A": [Coerce("v", to=str), Truncate("t", 2), Truncate("missing", 1)]}
    )
    quirks = Quirks([profile])
    caplog.set_level(logging.DEBUG, "ocpprpc.quirks")
    station = quirks.bind("CP1", "ocpp1.6")
    secret = 10**60
    for _ in range(3):
        station.repair("A", True, {"v": secret, "t": "abc"}, profile.repairs("A", True), None)
    again = quirks.bind("CP1", "ocpp1.6")  # a reconnect: still logged already
    again.repair("A", True, {"v": 1, "t": "abc"}, profile.repairs("A", True), None)
    quirks.bind("CP2", "ocpp1.6").repair("A", False, {"v": 1}, profile.repairs("A", True), None)
    infos = [
        r.getMessage() for r in caplog.records if r.levelno == logging.INFO and "repaired" in r.getMessage()
    ]
    assert len(infos) == 3, infos
    assert "station 'CP1' A CALL: quirk profile 'acme' repaired v (coerce, 1 place(s))" in infos[0]
    assert str(secret) not in infos[0] and "..." in infos[0]
    assert "repaired t (truncate, 1 place(s)); /t: 3 -> 2 chars" in infos[1]
    assert "station 'CP2' A CALLRESULT" in infos[2]
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any("truncate missing not applicable at 1 place(s)" in m for m in debug)


def test_a_repair_without_a_profile_is_logged_with_none() -> None:
    station = Quirks([ACME]).bind("CP1", "ocpp1.6")
    assert station.profile is None and station.repairs("BootNotification", True) == ()
    reports = station.repair("X", True, {"a": "xyz"}, [Truncate("a", 1)], None)
    assert reports[0].repaired == 1


# -- the codec -----------------------------------------------------------------------------------


def _codec(protocol: str, quirks: Quirks | None, identity: str = "CP1", **policy: Any) -> SchemaCodec:
    codec = codec_for(protocol, ValidationPolicy(True, **policy))
    if quirks is not None:
        codec.use_quirks(quirks.bind(identity, protocol))
    return codec


def _raw(payload: Any) -> msgspec.Raw:
    return msgspec.Raw(msgspec.json.encode(payload))


BOOTS: dict[str, tuple[dict[str, Any], QuirkProfile, str]] = {
    "ocpp1.6": (
        _boot16(firmware=1.2),
        QuirkProfile(
            "acme16",
            match=Match(vendor="Acme", firmware="1.2"),
            calls={
                "BootNotification": [
                    Truncate("chargePointSerialNumber", 25),
                    Coerce("firmwareVersion", to=str),
                ]
            },
        ),
        "chargePointSerialNumber",
    ),
    "ocpp2.0.1": (
        {
            "reason": "PowerUp",
            "chargingStation": {
                "vendorName": "Acme",
                "model": "X1",
                "serialNumber": SERIAL_40,
                "firmwareVersion": 12,
            },
        },
        QuirkProfile(
            "acme201",
            match=Match(vendor="Acme", protocols=["ocpp2.0.1", "ocpp2.1"]),
            calls={
                "BootNotification": [
                    Truncate("chargingStation/serialNumber", 25),
                    Coerce("chargingStation/firmwareVersion", to=str),
                ]
            },
        ),
        "chargingStation.serialNumber",
    ),
}
BOOTS["ocpp2.1"] = BOOTS["ocpp2.0.1"]


@pytest.mark.parametrize("protocol", list(BOOTS))
def test_a_matching_boot_is_repaired_and_validated(protocol: str) -> None:
    payload, profile, _ = BOOTS[protocol]
    codec = _codec(protocol, Quirks([profile]))
    boot = codec.decode("BootNotification", REQUEST, _raw(payload))
    assert type(boot) is codec.types.payload_type("BootNotification", REQUEST)
    assert msgspec.json.encode(boot).count(b"Z") == 25


@pytest.mark.parametrize("protocol", list(BOOTS))
def test_the_same_boot_from_another_station_is_rejected_as_without_quirks(protocol: str) -> None:
    payload, profile, field = BOOTS[protocol]
    other = {**payload}
    if "chargePointVendor" in other:
        other["chargePointVendor"] = "Other"
    else:
        other["chargingStation"] = {**other["chargingStation"], "vendorName": "Other"}
    errors = []
    for codec in (_codec(protocol, Quirks([profile])), _codec(protocol, None)):
        with pytest.raises(PayloadError) as caught:
            codec.decode("BootNotification", REQUEST, _raw(other))
        errors.append((caught.value.code, caught.value.description))
    assert errors[0] == errors[1]
    # 1.6: the number in firmwareVersion comes first; 2.x: the serial number.
    assert errors[0][0] in (ErrorCode.TYPE_CONSTRAINT_VIOLATION, ErrorCode.PROPERTY_CONSTRAINT_VIOLATION)
    other.pop("firmwareVersion", None)
    with pytest.raises(PayloadError) as caught:
        _codec(protocol, Quirks([profile])).decode("BootNotification", REQUEST, _raw(other))
    assert field in caught.value.description


def test_repairs_that_are_not_enough_leave_validation_the_last_word() -> None:
    payload, profile, _ = BOOTS["ocpp1.6"]
    codec = _codec("ocpp1.6", Quirks([profile]))
    with pytest.raises(PayloadError) as caught:
        codec.decode("BootNotification", REQUEST, _raw({**payload, "chargePointModel": "M" * 21}))
    assert "chargePointModel" in caught.value.description


def test_hostile_boot_payloads_get_the_strict_answer() -> None:
    _, profile, _ = BOOTS["ocpp1.6"]
    for data in (b"[1]", b'"x"', b'{"chargePointVendor": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"):
        codec = _codec("ocpp1.6", Quirks([profile]))
        with pytest.raises(PayloadError):
            codec.decode("BootNotification", REQUEST, msgspec.Raw(data))
        assert codec.quirks is not None and codec.quirks.profile is None
    with pytest.raises(PayloadError) as caught:
        _codec("ocpp1.6", Quirks([profile])).decode("BootNotification", REQUEST, msgspec.Raw(b"{nope"))
    assert caught.value.code is ErrorCode.FORMAT_VIOLATION


def test_a_matching_boot_that_is_not_an_object_after_all() -> None:
    # Repairs for a station known by identity; its payload is no object: the strict error.
    profile = QuirkProfile("p", calls={"Heartbeat": [DropUnknown("")]})
    codec = _codec("ocpp1.6", Quirks([profile]))
    with pytest.raises(PayloadError):
        codec.decode("Heartbeat", REQUEST, msgspec.Raw(b"[]"))
    assert codec.decode("Heartbeat", REQUEST, _raw({"vendorJunk": 1})) == v16.HeartbeatRequest()


def test_measurands_mapped_in_meter_values_on_each_version() -> None:
    repair = MapEnum(
        "meterValue/*/sampledValue/*/measurand", {"Energy.Active.Import": "Energy.Active.Import.Register"}
    )
    quirks = Quirks([QuirkProfile("m", calls={"MeterValues": [repair]})])
    sample = {"value": "1", "measurand": "Energy.Active.Import"}
    v16_payload = {
        "connectorId": 1,
        "meterValue": [{"timestamp": "2024-01-01T00:00:00Z", "sampledValue": [sample]}],
    }
    decoded = _codec("ocpp1.6", quirks).decode("MeterValues", REQUEST, _raw(v16_payload))
    assert decoded.meter_value[0].sampled_value[0].measurand == "Energy.Active.Import.Register"
    sample2 = {"value": 1.0, "measurand": "Energy.Active.Import"}
    v2_payload = {
        "evseId": 1,
        "meterValue": [{"timestamp": "2024-01-01T00:00:00Z", "sampledValue": [sample2]}],
    }
    for protocol in ("ocpp2.0.1", "ocpp2.1"):
        decoded = _codec(protocol, quirks).decode("MeterValues", REQUEST, _raw(v2_payload))
        assert decoded.meter_value[0].sampled_value[0].measurand == "Energy.Active.Import.Register"
    with pytest.raises(PayloadError):  # the same payload, no quirks
        _codec("ocpp2.0.1", None).decode("MeterValues", REQUEST, _raw(v2_payload))


def test_integral_floats_still_read_as_integers_after_a_repair() -> None:
    # Draft 6 (2.0.1): evseId 1.0 is an integer; the repaired path converts a tree, so it fixes it too.
    quirks = Quirks([QuirkProfile("m", calls={"MeterValues": [DropUnknown("")]})])
    payload = {
        "evseId": 1.0,
        "junk": 1,
        "meterValue": [{"timestamp": "2024-01-01T00:00:00Z", "sampledValue": [{"value": 2.0}]}],
    }
    decoded = _codec("ocpp2.0.1", quirks).decode("MeterValues", REQUEST, _raw(payload))
    assert decoded.evse_id == 1 and type(decoded.evse_id) is int
    with pytest.raises(PayloadError) as caught:
        _codec("ocpp2.0.1", quirks).decode("MeterValues", REQUEST, _raw({**payload, "evseId": 1.5}))
    assert "evseId" in caught.value.description


def test_results_are_repaired_as_declared() -> None:
    # GetConfiguration.conf from a station that writes readonly as a string.
    quirks = Quirks(
        [QuirkProfile("cfg", results={"GetConfiguration": [Coerce("configurationKey/*/readonly", to=bool)]})]
    )
    payload = {"configurationKey": [{"key": "K", "readonly": "true"}]}
    decoded = _codec("ocpp1.6", quirks).decode("GetConfiguration", RESPONSE, _raw(payload))
    assert decoded.configuration_key[0].readonly is True
    # Only results: a CALL of that action is not repaired (no such CALL payload here anyway).
    assert _codec("ocpp1.6", quirks).quirks is not None
    with pytest.raises(PayloadError):
        _codec("ocpp1.6", None).decode("GetConfiguration", RESPONSE, _raw(payload))


def test_what_we_send_is_never_repaired() -> None:
    # The profile repairs received BootNotification CALLs; our own BootNotification CALL
    # (the same action and kind) is validated exactly as before.
    _, profile, _ = BOOTS["ocpp1.6"]
    codec = _codec("ocpp1.6", Quirks([QuirkProfile("any", calls=profile.calls)]))
    codec.decode("BootNotification", REQUEST, _raw(_boot16(firmware="1.2")))
    with pytest.raises(PayloadError, match="chargePointSerialNumber"):
        codec.encode("BootNotification", REQUEST, _boot16(firmware="1.2"))
    assert codec.decode("BootNotification", REQUEST, _raw(_boot16(firmware="1.2"))).firmware_version == "1.2"


def test_unvalidated_payloads_are_not_repaired() -> None:
    _, profile, _ = BOOTS["ocpp1.6"]
    quirks = Quirks([QuirkProfile("any", calls=profile.calls)])
    payload = _boot16(firmware="1.2")
    # validate=False for this message, a handler opt-out, or a policy that leaves the action out.
    assert (
        _codec("ocpp1.6", quirks).decode("BootNotification", REQUEST, _raw(payload), validate=False)
        == payload
    )
    opted = _codec("ocpp1.6", quirks)
    opted.policy.handler_opt_outs.add("BootNotification")
    assert opted.decode("BootNotification", REQUEST, _raw(payload)) == payload
    partial = _codec("ocpp1.6", quirks, actions=["Heartbeat"])
    assert partial.decode("BootNotification", REQUEST, _raw(payload)) == payload
    assert partial.decode("BootNotification", REQUEST, _raw(payload)) == payload  # cached: still None


def test_a_new_boot_switches_the_repairs_of_the_connection() -> None:
    payload, profile, _ = BOOTS["ocpp1.6"]
    other_profile = QuirkProfile("other", match=Match(vendor="Other"), calls={"Heartbeat": [DropUnknown("")]})
    codec = _codec("ocpp1.6", Quirks([profile, other_profile]))
    codec.decode("BootNotification", REQUEST, _raw(payload))
    with pytest.raises(PayloadError):  # not repaired by "acme16"
        codec.decode("Heartbeat", REQUEST, _raw({"junk": 1}))
    rebooted = {
        **payload,
        "chargePointVendor": "Other",
        "chargePointSerialNumber": "short",
        "firmwareVersion": "2",
    }
    codec.decode("BootNotification", REQUEST, _raw(rebooted))
    assert codec.quirks is not None and codec.quirks.profile is other_profile
    assert codec.decode("Heartbeat", REQUEST, _raw({"junk": 1})) == v16.HeartbeatRequest()


def test_a_profile_without_a_boot_condition_reads_boots_strictly() -> None:
    # No profile is chosen by a boot: BootNotification takes the strict decoder unchanged.
    codec = _codec("ocpp1.6", Quirks([QuirkProfile("p", calls={"Heartbeat": [DropUnknown("")]})]))
    strict = codec_for("ocpp1.6").types.entry("BootNotification", REQUEST)
    assert strict is not None
    codec.decode("BootNotification", REQUEST, _raw({**_boot16(), "chargePointSerialNumber": "s"}))
    assert codec._in_requests["BootNotification"] == strict.decoder.decode
