"""Every OCPP-J RPC rule the engine applies, as data, each with its spec source.

Theory of operation
-------------------
Rule 1: anything that differs between OCPP versions, or that the spec decides for
the RPC framework, lives in this module and nowhere else.  The connection
(``_engine/connection.py``) reads these tables; it never tests a version string itself.

Sources (see ``shared/reference/ocpp-j-facts.md`` for the quotes):

* [J16]    OCPP-J 1.6 Specification (2015-10-08), sections 3-6.
* [P4-201] OCPP 2.0.1 Part 4 OCPP-J, Edition 3 (2024-05-06), sections 3-9.
* [P4-21]  OCPP 2.1 Part 4, as cited by implementations (secondary: no
           transcription of the 2.1 document was available when this was written).
* [ERRATA16] OCPP-J 1.6 errata sheet, section 5 ("known issues that will not be fixed").

A version's rules are a frozen :class:`ProtocolRules`.  The three built-in
versions are in :data:`BUILTIN_RULES`; a custom or vendor subprotocol gets rules
derived from one of them with :meth:`ProtocolRules.custom`.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = [
    "BUILTIN_RULES",
    "ErrorCode",
    "MessageType",
    "ProtocolRules",
    "Role",
    "UnknownMessageTypePolicy",
    "parse_error_code",
    "rules_for",
]


class Role(enum.Enum):
    """Which end of the OCPP-J connection an engine plays."""

    #: The WebSocket client ("Charge Point" in 1.6, "Charging Station" in 2.x).
    CHARGING_STATION = "charging_station"
    #: The WebSocket server ("Central System" in 1.6, "CSMS" in 2.x).
    CSMS = "csms"


class MessageType(enum.IntEnum):
    """The message type number, element 0 of every frame ([J16] 4.1.3, [P4-201] 4.1.3)."""

    CALL = 2
    CALL_RESULT = 3
    CALL_ERROR = 4
    #: OCPP 2.1 only: the receiver of a CALLRESULT could not process it ([P4-21] 4.2.4).
    CALL_RESULT_ERROR = 5
    #: OCPP 2.1 only: an unconfirmed message that is never answered ([P4-21] 4.2.5).
    SEND = 6


class ErrorCode(enum.StrEnum):
    """Version-neutral RPC error codes.

    The value is the OCPP 2.x spelling.  What goes on the wire is chosen per
    version by :meth:`ProtocolRules.spell`; what comes off the wire is read by
    :func:`parse_error_code`, which accepts every spelling of every version.
    """

    NOT_IMPLEMENTED = "NotImplemented"
    NOT_SUPPORTED = "NotSupported"
    INTERNAL_ERROR = "InternalError"
    PROTOCOL_ERROR = "ProtocolError"
    SECURITY_ERROR = "SecurityError"
    FORMAT_VIOLATION = "FormatViolation"
    PROPERTY_CONSTRAINT_VIOLATION = "PropertyConstraintViolation"
    OCCURRENCE_CONSTRAINT_VIOLATION = "OccurrenceConstraintViolation"
    TYPE_CONSTRAINT_VIOLATION = "TypeConstraintViolation"
    GENERIC_ERROR = "GenericError"
    MESSAGE_TYPE_NOT_SUPPORTED = "MessageTypeNotSupported"
    RPC_FRAMEWORK_ERROR = "RpcFrameworkError"


class UnknownMessageTypePolicy(enum.Enum):
    """What to do with a frame whose message type number this version does not define."""

    #: Drop it silently ([J16] 4.1.3: "it SHALL ignore the message payload").
    IGNORE = "ignore"
    #: Answer a CALLERROR ``MessageTypeNotSupported`` ([P4-201] 4.4).
    REPLY_MESSAGE_TYPE_NOT_SUPPORTED = "reply"


# -- Error-code spellings -----------------------------------------------------------
#
# [J16] Table 7 lists the 1.6 codes.  Two are misspelt and the errata sheet
# ([ERRATA16] 5.1, 5.2) keeps them misspelt "because it might break
# implementations": a 1.6 peer must send FormationViolation and
# OccurenceConstraintViolation.  1.6 has no MessageTypeNotSupported and no
# RpcFrameworkError; codes a version lacks degrade to GenericError.
_SPELLING_16: Mapping[ErrorCode, str] = MappingProxyType(
    {
        ErrorCode.NOT_IMPLEMENTED: "NotImplemented",
        ErrorCode.NOT_SUPPORTED: "NotSupported",
        ErrorCode.INTERNAL_ERROR: "InternalError",
        ErrorCode.PROTOCOL_ERROR: "ProtocolError",
        ErrorCode.SECURITY_ERROR: "SecurityError",
        ErrorCode.FORMAT_VIOLATION: "FormationViolation",
        ErrorCode.PROPERTY_CONSTRAINT_VIOLATION: "PropertyConstraintViolation",
        ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION: "OccurenceConstraintViolation",
        ErrorCode.TYPE_CONSTRAINT_VIOLATION: "TypeConstraintViolation",
        ErrorCode.GENERIC_ERROR: "GenericError",
    }
)

# [P4-201] Table 8 (Edition 3) spells every code correctly and adds
# MessageTypeNotSupported and RpcFrameworkError.  Whether 2.0.1 spells
# "Occurrence" with one r is disputed (ocpp-j-facts 4.3); we emit the Edition 3
# spelling and accept both.  A deployment that must emit the other spelling
# derives its rules with ``ProtocolRules.custom(..., spelling_overrides=...)``.
_SPELLING_2X: Mapping[ErrorCode, str] = MappingProxyType({code: code.value for code in ErrorCode})

# Every spelling any version uses, for reading what a peer sent.
_ALL_SPELLINGS: Mapping[str, ErrorCode] = MappingProxyType(
    {
        **{spelling: code for code, spelling in _SPELLING_16.items()},
        **{spelling: code for code, spelling in _SPELLING_2X.items()},
    }
)


def parse_error_code(wire: str) -> ErrorCode | None:
    """Read an error code in any version's spelling; ``None`` if it is no OCPP code."""
    return _ALL_SPELLINGS.get(wire)


@dataclass(frozen=True, slots=True)
class ProtocolRules:
    """The RPC-framework rules of one subprotocol.  Each field cites its source."""

    #: The WebSocket subprotocol name, e.g. ``"ocpp1.6"``.
    protocol: str
    #: Message types this version defines.  CALL/CALLRESULT/CALLERROR everywhere
    #: ([J16] 4.2, [P4-201] 4.2); CALLRESULTERROR and SEND in 2.1 ([P4-21] 4.2.4-5).
    message_types: frozenset[MessageType]
    #: Wire spelling per code; codes missing here are sent as GenericError.
    spellings: Mapping[ErrorCode, str]
    #: Unknown message type number: ignore ([J16] 4.1.3; 2.1 [P4-21] 4.4) or answer
    #: MessageTypeNotSupported ([P4-201] 4.4, Edition 3).
    unknown_message_type: UnknownMessageTypePolicy
    #: Id of the CALLERROR sent for a corrupt message whose id cannot be read:
    #: ``"-1"`` in 2.x ([P4-201] 4.2.3; [P4-21] 4.1.1).  1.6 defines no such rule, so
    #: a 1.6 engine stays silent when it cannot tell which CALL it would answer.
    unreadable_id_reply: str | None
    #: Code for a CALL that is not a valid RPC frame (wrong arity, id too long,
    #: action not a string): 2.x RpcFrameworkError ("Content of the call is not a
    #: valid RPC Request", [P4-201] Table 8); 1.6 FormationViolation ("not conform
    #: the PDU structure", [J16] Table 7).
    frame_error: ErrorCode
    #: Code for a CALL whose payload is not a JSON object ([J16] 4.2.1, [P4-201]
    #: 4.1.5: the payload is a JSON object): "syntactically incorrect".
    payload_not_object: ErrorCode
    #: Code for a CALL reusing the id of a CALL still being handled ([J16] 4.2.3,
    #: [P4-201] 4.2.3 list it as a CALLERROR reason without a code; RpcFrameworkError
    #: as ocpp-rpc does, which degrades to GenericError on 1.6).
    duplicate_call: ErrorCode
    #: Answer an unprocessable CALLRESULT with CALLRESULTERROR (2.1 [P4-21], FR.06);
    #: older versions must not answer a CALLRESULT at all ([J16] 4.2.3, [P4-201] 4.2.3:
    #: a CALLERROR answers only a CALL).
    answer_invalid_result: bool
    #: Message ids are strings of at most 36 characters ([J16] Table 3, [P4-201] Table 4).
    max_message_id_length: int = 36
    #: errorDescription is string[255] in 2.x ([P4-201] Table 7).  1.6 sets no limit;
    #: we apply the same bound so one peer cannot make us echo a megabyte.
    max_error_description_length: int = 255
    #: How many of our own CALLs may be unanswered at once: 1.6 "SHOULD NOT" send
    #: another ([J16] 4.1.1), 2.x "SHALL NOT" ([P4-201] 4.1.1).  SEND is exempt.
    default_max_outstanding_calls: int = 1

    def spell(self, code: ErrorCode) -> str:
        """The wire spelling of *code* in this version (GenericError if it has none)."""
        spelling = self.spellings.get(code)
        if spelling is None:
            return self.spellings[ErrorCode.GENERIC_ERROR]
        return spelling

    def supports(self, message_type: MessageType) -> bool:
        """Whether this version defines *message_type*."""
        return message_type in self.message_types

    def custom(
        self,
        protocol: str,
        *,
        rpc_extensions: bool | None = None,
        spelling_overrides: Mapping[ErrorCode, str] | None = None,
        unknown_message_type: UnknownMessageTypePolicy | None = None,
    ) -> ProtocolRules:
        """Rules for a custom subprotocol derived from these.

        :param rpc_extensions: ``True`` enables CALLRESULTERROR and SEND (and the
            CALLRESULTERROR answer to a bad result), ``False`` disables them,
            ``None`` keeps what the base version does.
        :param spelling_overrides: wire spellings to change, e.g. the one-r
            ``OccurenceConstraintViolation`` for a 2.0.1 peer that expects it.
        """
        message_types = self.message_types
        answer_invalid_result = self.answer_invalid_result
        if rpc_extensions is not None:
            message_types = _CORE_TYPES | (_EXTENDED_TYPES if rpc_extensions else frozenset())
            answer_invalid_result = rpc_extensions
        spellings = self.spellings
        if spelling_overrides:
            spellings = MappingProxyType({**spellings, **spelling_overrides})
        return dataclasses.replace(
            self,
            protocol=protocol,
            message_types=message_types,
            spellings=spellings,
            answer_invalid_result=answer_invalid_result,
            unknown_message_type=unknown_message_type or self.unknown_message_type,
        )


_CORE_TYPES = frozenset({MessageType.CALL, MessageType.CALL_RESULT, MessageType.CALL_ERROR})
_EXTENDED_TYPES = frozenset({MessageType.CALL_RESULT_ERROR, MessageType.SEND})

OCPP16 = ProtocolRules(
    protocol="ocpp1.6",
    message_types=_CORE_TYPES,
    spellings=_SPELLING_16,
    unknown_message_type=UnknownMessageTypePolicy.IGNORE,
    unreadable_id_reply=None,
    frame_error=ErrorCode.FORMAT_VIOLATION,
    payload_not_object=ErrorCode.FORMAT_VIOLATION,
    duplicate_call=ErrorCode.RPC_FRAMEWORK_ERROR,
    answer_invalid_result=False,
)

OCPP201 = ProtocolRules(
    protocol="ocpp2.0.1",
    message_types=_CORE_TYPES,
    spellings=_SPELLING_2X,
    unknown_message_type=UnknownMessageTypePolicy.REPLY_MESSAGE_TYPE_NOT_SUPPORTED,
    unreadable_id_reply="-1",
    frame_error=ErrorCode.RPC_FRAMEWORK_ERROR,
    payload_not_object=ErrorCode.FORMAT_VIOLATION,
    duplicate_call=ErrorCode.RPC_FRAMEWORK_ERROR,
    answer_invalid_result=False,
)

OCPP21 = ProtocolRules(
    protocol="ocpp2.1",
    message_types=_CORE_TYPES | _EXTENDED_TYPES,
    spellings=_SPELLING_2X,
    unknown_message_type=UnknownMessageTypePolicy.IGNORE,
    unreadable_id_reply="-1",
    frame_error=ErrorCode.RPC_FRAMEWORK_ERROR,
    payload_not_object=ErrorCode.FORMAT_VIOLATION,
    duplicate_call=ErrorCode.RPC_FRAMEWORK_ERROR,
    answer_invalid_result=True,
)

#: The rules of the three OCPP-J versions, by subprotocol name.
BUILTIN_RULES: Mapping[str, ProtocolRules] = MappingProxyType(
    {rules.protocol: rules for rules in (OCPP16, OCPP201, OCPP21)}
)


def rules_for(protocol: str | ProtocolRules) -> ProtocolRules:
    """The rules for a subprotocol name, or *protocol* itself if it already is rules.

    A name that is not built in gets the 2.0.1 framing rules with the unknown
    message type ignored (the conservative reading for a vendor protocol); use
    :meth:`ProtocolRules.custom` to choose otherwise, e.g. to enable SEND.
    """
    if isinstance(protocol, ProtocolRules):
        return protocol
    rules = BUILTIN_RULES.get(protocol)
    if rules is not None:
        return rules
    return OCPP201.custom(protocol, unknown_message_type=UnknownMessageTypePolicy.IGNORE)
