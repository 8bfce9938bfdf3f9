"""Payloads with *every* field filled, each with a value found nowhere else.

``ocpprpc._typed.sample.sample_payload`` builds the smallest valid payload:
required fields only, strings of ``"x"``.  Redaction needs the opposite:
optional fields too (most id tokens are optional: TransactionEvent's
``idToken``, Authorize's ``groupIdToken``...), and values that can be searched
for in the redacted text, so this walks the same msgspec type information.
"""

from __future__ import annotations

import itertools
from typing import Any

from msgspec import inspect

SCHEMA_VERSIONS = ("ocpp1.6", "ocpp2.0.1", "ocpp2.1")


class FullSample:
    """Builds payloads; every string is ``TOK<7 digits>X``, every integer 7 digits."""

    def __init__(self) -> None:
        self._numbers = itertools.count(1_000_000)

    def payload(self, message_type: type[Any]) -> dict[str, Any]:
        info = inspect.type_info(message_type)
        assert isinstance(info, inspect.StructType)
        return self._struct(info, 0)

    def _struct(self, info: inspect.StructType, depth: int) -> dict[str, Any]:
        return {
            field.encode_name: self._value(field.type, depth + 1)
            for field in info.fields
            if field.required or depth < 8
        }

    def _value(self, info: inspect.Type, depth: int) -> Any:
        match info:
            case inspect.StructType():
                return self._struct(info, depth)
            case inspect.StrType():
                return f"TOK{next(self._numbers):07d}X"
            case inspect.IntType():
                return next(self._numbers)
            case inspect.FloatType() | inspect.DecimalType():
                return 1.5
            case inspect.BoolType():
                return False
            case inspect.EnumType(cls=cls):
                return next(iter(cls)).value
            case inspect.LiteralType(values=values):
                return values[0]
            case inspect.DateTimeType():
                return "2025-01-01T00:00:00Z"
            case inspect.ListType(item_type=item):
                return [self._value(item, depth + 1), self._value(item, depth + 1)]
            case inspect.UnionType(types=members):
                chosen = next(member for member in members if not isinstance(member, inspect.NoneType))
                return self._value(chosen, depth)
            case inspect.Metadata(type=inner):
                return self._value(inner, depth)
            case _:
                return {}
