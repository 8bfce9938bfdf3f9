"""The type model between the JSON schemas and the msgspec types (see :mod:`ocpprpc._typed.schema`).

Enums, structs with fields, and field types that carry their constraints; and what both back ends
(:mod:`~ocpprpc._typed.runtime_types`, :mod:`~ocpprpc._typed.render`) derive from it the same way:
enum member names and the ``multipleOf`` checks.
"""

from __future__ import annotations

import decimal
import enum
import keyword
import re
from dataclasses import dataclass

from .messages import Direction

__all__ = [
    "ActionModel",
    "AnyType",
    "ArrayType",
    "BoolType",
    "DateTimeType",
    "EnumModel",
    "EnumRef",
    "FieldModel",
    "FloatType",
    "IntType",
    "OpenRef",
    "ProtocolModel",
    "StrType",
    "StructKind",
    "StructModel",
    "StructRef",
    "TypeModel",
]

# -- the type model -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StrType:
    max_length: int | None = None


@dataclass(frozen=True, slots=True)
class IntType:
    ge: int | None = None
    le: int | None = None


@dataclass(frozen=True, slots=True)
class FloatType:
    ge: float | None = None
    le: float | None = None
    #: ``multipleOf`` as decimal text (checked exactly, see :func:`check_multiple_of`).
    multiple_of: str | None = None


@dataclass(frozen=True, slots=True)
class BoolType:
    pass


@dataclass(frozen=True, slots=True)
class DateTimeType:
    pass


@dataclass(frozen=True, slots=True)
class AnyType:
    """A property with no ``type``: any JSON value (2.x ``DataTransfer.data``)."""


@dataclass(frozen=True, slots=True)
class EnumRef:
    name: str


@dataclass(frozen=True, slots=True)
class StructRef:
    name: str


@dataclass(frozen=True, slots=True)
class OpenRef:
    """An open object: a dict, whose named properties are checked by struct *name*."""

    name: str


@dataclass(frozen=True, slots=True)
class ArrayType:
    item: TypeModel
    min_items: int | None = None
    max_items: int | None = None


TypeModel = (
    StrType
    | IntType
    | FloatType
    | BoolType
    | DateTimeType
    | AnyType
    | EnumRef
    | StructRef
    | OpenRef
    | ArrayType
)


@dataclass(frozen=True, slots=True)
class FieldModel:
    attr: str
    wire: str
    type: TypeModel
    required: bool
    doc: str = ""


class StructKind(enum.Enum):
    NESTED = "nested"
    OPEN = "open"  # the known properties of an open object
    REQUEST = "request"
    RESPONSE = "response"
    SEND = "send"


@dataclass(slots=True)
class StructModel:
    name: str
    fields: tuple[FieldModel, ...]
    kind: StructKind
    doc: str = ""
    #: For requests and SEND messages: the action; for responses: the action they answer.
    action: str | None = None
    #: For requests: the response struct's name.
    response: str | None = None


@dataclass(frozen=True, slots=True)
class EnumModel:
    name: str
    values: tuple[str, ...]
    doc: str = ""


@dataclass(frozen=True, slots=True)
class ActionModel:
    action: str
    request: str
    #: ``None`` for a SEND-only action (no response schema).
    response: str | None
    direction: Direction


@dataclass(slots=True)
class ProtocolModel:
    protocol: str
    enums: dict[str, EnumModel]
    #: Dependency order: a struct comes after every struct it refers to.
    structs: dict[str, StructModel]
    #: The names of the open objects (name -> the struct of their known properties).
    open_objects: dict[str, str]
    actions: dict[str, ActionModel]
    #: Message struct name -> JSON Schema draft number of its file (4 or 6); draft 4
    #: rejects ``7.0`` where an integer is expected, later drafts accept it.
    drafts: dict[str, int]


# -- what both back ends derive from the model ---------------------------------------------


def _camel_to_snake(name: str) -> str:
    s = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name)
    s = re.sub(r"[^0-9A-Za-z]+", "_", s).strip("_").lower()
    s = re.sub(r"_+", "_", s)
    if not s or s[0].isdigit():
        s = f"f_{s}"
    return f"{s}_" if keyword.iskeyword(s) else s


def _enum_members(values: tuple[str, ...]) -> dict[str, str]:
    members: dict[str, str] = {}
    for value in values:
        name = _camel_to_snake(value).upper()
        if name.startswith("F_") and value[:1].isdigit():
            name = "V_" + name[2:]
        while name in members or name.startswith("_") or name == "MRO":
            name += "_"
        members[name] = value
    return members


def _post_init_checks(fields: tuple[FieldModel, ...]) -> list[tuple[str, decimal.Decimal, str]]:
    checks = []
    for f in fields:
        t = f.type.item if isinstance(f.type, ArrayType) else f.type
        if isinstance(t, FloatType) and t.multiple_of is not None:
            checks.append((f.attr, decimal.Decimal(t.multiple_of), f.wire))
    return checks
