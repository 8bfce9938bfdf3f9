"""Validation failures -> OCPP error codes: one table, and the :class:`~ocpprpc.PayloadError` made from it."""

from __future__ import annotations

import re
from typing import Final

import msgspec

from .._engine.errors import PayloadError
from .._engine.rules import ErrorCode

__all__ = ["VALIDATION_ERROR_CODES", "payload_error"]

# -- validation failures -> OCPP error codes ---------------------------------------------------

#: How a validation failure maps to an OCPP error code: (what failed, the start of
#: msgspec's message, the code).  The first matching row wins; the engine writes the
#: version's spelling (1.6: ``OccurenceConstraintViolation``, ``FormationViolation``).
#: The spec gives no normative mapping; this follows the meanings in [J16] Table 7 and
#: [P4-201] Table 8 (see docs/typed.rst, "How errors map").
VALIDATION_ERROR_CODES: Final[tuple[tuple[str, str, ErrorCode], ...]] = (
    ("required property missing", "Object missing required field", ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION),
    (
        "too few / too many array items",
        "Expected `array` of length",
        ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION,
    ),
    ("unknown property", "Object contains unknown field", ErrorCode.FORMAT_VIOLATION),
    ("string too long", "Expected `str` of length", ErrorCode.PROPERTY_CONSTRAINT_VIOLATION),
    ("number below minimum", "Expected `int` >=", ErrorCode.PROPERTY_CONSTRAINT_VIOLATION),
    ("number above maximum", "Expected `int` <=", ErrorCode.PROPERTY_CONSTRAINT_VIOLATION),
    ("number below minimum", "Expected `float` >=", ErrorCode.PROPERTY_CONSTRAINT_VIOLATION),
    ("number above maximum", "Expected `float` <=", ErrorCode.PROPERTY_CONSTRAINT_VIOLATION),
    (
        "not a multiple of multipleOf",
        "Expected `float` that's a multiple of",
        ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
    ),
    ("value not in the enum", "Invalid enum value", ErrorCode.PROPERTY_CONSTRAINT_VIOLATION),
    ("date-time not RFC 3339", "Invalid RFC3339 encoded datetime", ErrorCode.TYPE_CONSTRAINT_VIOLATION),
    ("date-time without offset", "Expected `datetime` with a timezone", ErrorCode.TYPE_CONSTRAINT_VIOLATION),
    ("number too large to represent", "Number out of range", ErrorCode.TYPE_CONSTRAINT_VIOLATION),
    ("wrong JSON type (or null)", "Expected `", ErrorCode.TYPE_CONSTRAINT_VIOLATION),
)

_AT = " - at `"
_IN_FIELD = re.compile(r" in `([^`]+)`$")


def _split(message: str) -> tuple[str, str]:
    """msgspec's message -> (text, JSON path), joining the paths of nested errors."""
    parts = message.split(_AT)
    text = parts[0]
    paths = [p.rstrip("`") for p in parts[1:]]
    path = paths[-1] if paths else "$"
    for inner in reversed(paths[:-1]):
        path += inner[1:]
    field = _IN_FIELD.search(text)
    if field is not None:  # a __post_init__ check names its field
        text = text[: field.start()]
        path += f".{field.group(1)}"
    return text, path


def payload_error(exc: msgspec.MsgspecError) -> PayloadError:
    """The :class:`PayloadError` for a msgspec failure (see :data:`VALIDATION_ERROR_CODES`)."""
    text, path = _split(str(exc))
    if not isinstance(exc, msgspec.ValidationError):  # not JSON at all
        return PayloadError(ErrorCode.FORMAT_VIOLATION, text, {"path": path})
    code = next(
        (row[2] for row in VALIDATION_ERROR_CODES if text.startswith(row[1])), ErrorCode.GENERIC_ERROR
    )
    return PayloadError(code, f"{text} at {path}", {"path": path})
