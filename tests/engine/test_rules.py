"""The rules table itself: spellings, degradation, policies, custom protocols."""

from __future__ import annotations

import dataclasses

import pytest

from ocpprpc import (
    BUILTIN_RULES,
    ErrorCode,
    MessageType,
    ProtocolRules,
    UnknownMessageTypePolicy,
    parse_error_code,
    rules_for,
)

V16, V201, V21 = (BUILTIN_RULES[v] for v in ("ocpp1.6", "ocpp2.0.1", "ocpp2.1"))


def test_16_keeps_the_errata_misspellings() -> None:
    assert V16.spell(ErrorCode.FORMAT_VIOLATION) == "FormationViolation"
    assert V16.spell(ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION) == "OccurenceConstraintViolation"


@pytest.mark.parametrize("rules", [V201, V21])
def test_2x_spells_correctly(rules: ProtocolRules) -> None:
    for code in ErrorCode:
        assert rules.spell(code) == code.value


def test_codes_16_lacks_degrade_to_generic_error() -> None:
    assert V16.spell(ErrorCode.RPC_FRAMEWORK_ERROR) == "GenericError"
    assert V16.spell(ErrorCode.MESSAGE_TYPE_NOT_SUPPORTED) == "GenericError"
    assert V16.spell(ErrorCode.NOT_IMPLEMENTED) == "NotImplemented"


def test_every_spelling_parses() -> None:
    assert parse_error_code("FormationViolation") is ErrorCode.FORMAT_VIOLATION
    assert parse_error_code("FormatViolation") is ErrorCode.FORMAT_VIOLATION
    assert parse_error_code("OccurenceConstraintViolation") is ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION
    assert parse_error_code("OccurrenceConstraintViolation") is ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION
    for code in ErrorCode:
        assert parse_error_code(code.value) is code
    assert parse_error_code("formatviolation") is None  # codes are case-sensitive
    assert parse_error_code("NoSuchCode") is None


def test_message_types_per_version() -> None:
    core = {MessageType.CALL, MessageType.CALL_RESULT, MessageType.CALL_ERROR}
    assert V16.message_types == core
    assert V201.message_types == core
    assert V21.message_types == core | {MessageType.CALL_RESULT_ERROR, MessageType.SEND}
    assert V21.supports(MessageType.SEND) and not V201.supports(MessageType.SEND)


def test_policies_per_version() -> None:
    assert V16.unknown_message_type is UnknownMessageTypePolicy.IGNORE
    assert V201.unknown_message_type is UnknownMessageTypePolicy.REPLY_MESSAGE_TYPE_NOT_SUPPORTED
    assert V21.unknown_message_type is UnknownMessageTypePolicy.IGNORE
    assert (V16.unreadable_id_reply, V201.unreadable_id_reply, V21.unreadable_id_reply) == (None, "-1", "-1")
    assert (V16.answer_invalid_result, V201.answer_invalid_result, V21.answer_invalid_result) == (
        False,
        False,
        True,
    )
    for rules in (V16, V201, V21):
        assert rules.max_message_id_length == 36
        assert rules.default_max_outstanding_calls == 1


def test_rules_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(V16, "protocol", "x")  # noqa: B010 - the point is to try a forbidden assignment


def test_rules_for() -> None:
    assert rules_for("ocpp1.6") is V16
    assert rules_for(V21) is V21
    vendor = rules_for("acme-ocpp")
    assert vendor.protocol == "acme-ocpp"
    assert vendor.message_types == V201.message_types
    assert vendor.unknown_message_type is UnknownMessageTypePolicy.IGNORE


def test_custom_rules() -> None:
    one_r = V201.custom(
        "ocpp2.0.1",
        spelling_overrides={ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION: "OccurenceConstraintViolation"},
    )
    assert one_r.spell(ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION) == "OccurenceConstraintViolation"
    assert V201.spell(ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION) == "OccurrenceConstraintViolation"
    extended = V201.custom("x", rpc_extensions=True)
    assert extended.supports(MessageType.SEND) and extended.answer_invalid_result
    reduced = V21.custom("y", rpc_extensions=False)
    assert not reduced.supports(MessageType.SEND) and not reduced.answer_invalid_result
    kept = V21.custom("z")
    assert kept.message_types == V21.message_types
    silent = V201.custom("q", unknown_message_type=UnknownMessageTypePolicy.IGNORE)
    assert silent.unknown_message_type is UnknownMessageTypePolicy.IGNORE


def test_custom_rules_without_an_unreadable_id_reply_stay_silent() -> None:
    """A 1.6-based protocol that answers unknown types and bad results still never invents an id."""
    from ocpprpc import BadMessage, Connection, Role

    rules = V16.custom(
        "ocpp1.6-acme",
        rpc_extensions=True,
        unknown_message_type=UnknownMessageTypePolicy.REPLY_MESSAGE_TYPE_NOT_SUPPORTED,
    )
    engine = Connection(Role.CSMS, rules)
    engine.receive_message("[9]")  # unknown type, no id
    engine.receive_message("[3,5,{}]")  # a CALLRESULT with an unreadable id
    engine.receive_message('[9,"m"]')  # unknown type with an id: answered
    first, second, third = engine.events()
    assert isinstance(first, BadMessage) and first.reply is None
    assert isinstance(second, BadMessage) and second.reply is None
    assert isinstance(third, BadMessage)
    assert third.reply == '[4,"m","GenericError","message type 9 is not supported",{}]'
