"""Runtime helpers used by generated and built types: the checks msgspec cannot express.

``multipleOf`` on the decimal text of a float (:func:`check_multiple_of`) and open objects
whose named properties are checked (:func:`open_object_hook`).
"""

from __future__ import annotations

import decimal
import math
from typing import Any

import msgspec
from msgspec import UNSET

from .messages import OpenObject

__all__ = ["check_multiple_of", "open_object_hook"]


def check_multiple_of(value: Any, step: decimal.Decimal, wire: str) -> None:
    """Raise unless *value* (a float, a list of them, or UNSET) is a multiple of *step*.

    The check is done in decimal on the shortest text that reads back as the
    same float (``repr``): that is the JSON text for every number a peer
    sends with up to 15 significant digits.  Binary floating point would
    reject ``21.4`` as a multiple of ``0.1`` (it is ``21.39999...``).
    """
    if value is UNSET:
        return
    values = value if isinstance(value, list) else (value,)
    for v in values:
        if not isinstance(v, int | float) or not math.isfinite(v):
            raise ValueError(f"Expected a finite number for `{wire}`")
        with decimal.localcontext() as ctx:
            ctx.prec = 60
            quotient = decimal.Decimal(repr(float(v))) / step
            if quotient != quotient.to_integral_value():
                raise ValueError(f"Expected `float` that's a multiple of {step} in `{wire}`")


_STRING_FIELDS: dict[type, tuple[tuple[str, int | None], ...] | None] = {}


def _string_fields(known: type) -> tuple[tuple[str, int | None], ...] | None:
    """(wire name, max length) of every field if all are required strings, else ``None``.

    That is the shape of OCPP's ``CustomDataType`` (a required ``vendorId``),
    which the hook then checks without building a Struct.
    """
    try:
        return _STRING_FIELDS[known]
    except KeyError:
        pass
    info = msgspec.inspect.type_info(known)
    fields: tuple[tuple[str, int | None], ...] | None = None
    if isinstance(info, msgspec.inspect.StructType) and all(
        f.required and isinstance(f.type, msgspec.inspect.StrType) for f in info.fields
    ):
        fields = tuple((f.encode_name, f.type.max_length) for f in info.fields)  # type: ignore[attr-defined]
    _STRING_FIELDS[known] = fields
    return fields


def open_object_hook(kind: type, obj: Any) -> Any:
    """msgspec ``dec_hook``: build an :class:`OpenObject`, checking the properties it names."""
    if issubclass(kind, OpenObject):
        if type(obj) is not dict:
            raise TypeError(f"Expected `object`, got `{_json_type(obj)}`")
        known = kind.__ocpp_known__
        fast = _STRING_FIELDS[known] if known in _STRING_FIELDS else _string_fields(known)
        if fast is not None:
            for name, limit in fast:
                value = obj.get(name)
                if type(value) is not str or (limit is not None and len(value) > limit):
                    break
            else:
                return kind(obj)
        try:  # the general check, which also words the error
            msgspec.convert(obj, known, dec_hook=open_object_hook)
        except msgspec.ValidationError as exc:
            raise ValueError(str(exc)) from None
        return kind(obj)
    raise NotImplementedError(f"cannot decode {kind!r}")


def _json_type(obj: Any) -> str:
    if obj is None:
        return "null"
    if isinstance(obj, bool):
        return "bool"
    if isinstance(obj, list):
        return "array"
    if isinstance(obj, str):
        return "str"
    return "int" if isinstance(obj, int) else "float" if isinstance(obj, float) else type(obj).__name__
