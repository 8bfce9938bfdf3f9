"""Smallest valid payloads, built from a typed message's own constraints.

The demo CSMS and the station simulator answer every action of every version
with a valid response without a hand-written body per action: the body is
derived from the response type (required fields only; enums prefer
``"Accepted"``; numbers at their lower bound), then the caller overrides the
fields that matter (a BootNotification ``interval``, a ``transactionId``).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from msgspec import inspect

__all__ = ["sample_payload"]

# Enum values a friendly peer answers with, best first.
_PREFERRED = ("Accepted", "Valid", "Available", "NoProfile", "Unknown")


def sample_payload(message_type: type[Any], overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A JSON object (wire names) that satisfies *message_type*, with *overrides* applied on top."""
    info = inspect.type_info(message_type)
    if not isinstance(info, inspect.StructType):
        raise TypeError(f"{message_type!r} is not a msgspec Struct")
    payload = _struct(info, 0)
    if overrides:
        payload.update(overrides)
    return payload


def _struct(info: inspect.StructType, depth: int) -> dict[str, Any]:
    return {field.encode_name: _value(field.type, depth + 1) for field in info.fields if field.required}


def _value(info: inspect.Type, depth: int) -> Any:
    if depth > 32:  # pragma: no cover - a required cycle cannot be satisfied; no OCPP type has one
        raise ValueError("required fields nest too deeply")
    match info:
        case inspect.StructType():
            return _struct(info, depth)
        case inspect.StrType(min_length=min_length):
            return "x" * (min_length or 0)
        case inspect.IntType(ge=ge, gt=gt):
            return ge if ge is not None else (gt + 1 if gt is not None else 0)
        case inspect.FloatType(ge=ge, gt=gt):
            return ge if ge is not None else (gt + 1 if gt is not None else 0)
        case inspect.DecimalType():
            return 0
        case inspect.BoolType():
            return False
        case inspect.EnumType(cls=cls):
            values = [member.value for member in cls]
            return next((value for value in _PREFERRED if value in values), values[0])
        case inspect.LiteralType(values=values):
            return values[0]
        case inspect.DateTimeType():
            now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
            return now.isoformat().replace("+00:00", "Z")
        case inspect.ListType(item_type=item, min_length=min_length):
            return [_value(item, depth + 1) for _ in range(min_length or 0)]
        case inspect.UnionType(types=members):
            chosen = next(member for member in members if not isinstance(member, inspect.NoneType))
            return _value(chosen, depth)
        case inspect.Metadata(type=inner):
            return _value(inner, depth)
        case _:
            # Any, dict and custom types: an empty object is the safest JSON value.
            return {}
