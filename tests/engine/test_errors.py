"""The exception types."""

from __future__ import annotations

import pytest

from ocpprpc import (
    ErrorCode,
    LocalProtocolError,
    OCPPError,
    OutboundPayloadError,
    PayloadError,
    ProtocolError,
    RemoteProtocolError,
    TooManyOutstandingCalls,
)


def test_protocol_error_is_abstract() -> None:
    with pytest.raises(TypeError, match="abstract"):
        ProtocolError("x")
    assert isinstance(LocalProtocolError("x"), ProtocolError)
    assert isinstance(RemoteProtocolError("x"), ProtocolError)
    assert issubclass(TooManyOutstandingCalls, LocalProtocolError)
    assert issubclass(OutboundPayloadError, LocalProtocolError)


def test_ocpp_error() -> None:
    error = OCPPError("NotSupported", "no such feature", {"feature": "x"})
    assert error.code is ErrorCode.NOT_SUPPORTED
    assert str(error) == "NotSupported: no such feature"
    assert str(OCPPError(ErrorCode.INTERNAL_ERROR)) == "InternalError"
    assert dict(OCPPError(ErrorCode.INTERNAL_ERROR).details) == {}
    assert OCPPError("FormationViolation").code is ErrorCode.FORMAT_VIOLATION  # any version's spelling
    with pytest.raises(ValueError, match="not an OCPP-J error code"):
        OCPPError("TeapotError")


def test_payload_errors() -> None:
    error = PayloadError(ErrorCode.TYPE_CONSTRAINT_VIOLATION, "Expected `int`", {"path": "$.connectorId"})
    outbound = OutboundPayloadError("StatusNotification", error)
    assert (outbound.code, outbound.description, dict(outbound.details)) == (
        ErrorCode.TYPE_CONSTRAINT_VIOLATION,
        "Expected `int`",
        {"path": "$.connectorId"},
    )
    assert "StatusNotification" in str(outbound)
