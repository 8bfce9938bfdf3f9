"""The type model -> msgspec types at runtime (``msgspec.defstruct``), for vendor protocols."""

from __future__ import annotations

import decimal
import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Annotated, Any, Union

import msgspec
from msgspec import UNSET, Meta, UnsetType

from .checks import check_multiple_of
from .messages import ActionSpec, Message, OpenObject, Request, Response, SendMessage
from .type_model import (
    AnyType,
    BoolType,
    DateTimeType,
    EnumRef,
    FloatType,
    IntType,
    OpenRef,
    ProtocolModel,
    StrType,
    StructKind,
    StructRef,
    TypeModel,
    _enum_members,
    _post_init_checks,
)

__all__ = ["BuiltTypes", "build_types"]

# -- model -> runtime types (msgspec.defstruct) ----------------------------------------------


@dataclass(frozen=True, slots=True)
class BuiltTypes:
    """The types :func:`build_types` made: every class by name, and the action registry."""

    namespace: Mapping[str, type]
    actions: Mapping[str, ActionSpec]
    drafts: Mapping[str, int]


def _meta(**kwargs: Any) -> Meta | None:
    given = {k: v for k, v in kwargs.items() if v is not None}
    return Meta(**given) if given else None


def _runtime_type(t: TypeModel, ns: Mapping[str, type]) -> Any:
    if isinstance(t, StrType):
        meta = _meta(max_length=t.max_length)
        return str if meta is None else Annotated[str, meta]
    if isinstance(t, IntType):
        meta = _meta(ge=t.ge, le=t.le)
        return int if meta is None else Annotated[int, meta]
    if isinstance(t, FloatType):
        meta = _meta(ge=t.ge, le=t.le)
        return float if meta is None else Annotated[float, meta]
    if isinstance(t, BoolType):
        return bool
    if isinstance(t, DateTimeType):
        return Annotated[datetime, Meta(tz=True)]
    if isinstance(t, AnyType):
        return Any
    if isinstance(t, EnumRef | StructRef | OpenRef):
        return ns[t.name]
    item = _runtime_type(t.item, ns)
    meta = _meta(min_length=t.min_items, max_length=t.max_items)
    return list[item] if meta is None else Annotated[list[item], meta]  # type: ignore[valid-type]


def build_types(model: ProtocolModel, *, module: str | None = None) -> BuiltTypes:
    """Create the model's enums and Structs at runtime (``msgspec.defstruct``)."""
    module = module or f"ocpprpc.protocols.{re.sub(r'[^0-9A-Za-z_]', '_', model.protocol)}"
    ns: dict[str, type] = {}
    for e in model.enums.values():
        members = _enum_members(e.values)
        cls: type = enum.StrEnum(e.name, members, module=module)  # type: ignore[misc]
        cls.__doc__ = e.doc or f"The values of {e.name}."
        ns[e.name] = cls
    for s in model.structs.values():
        fields = []
        for f in s.fields:
            typ = _runtime_type(f.type, ns)
            if f.required:
                fields.append((f.attr, typ, msgspec.field(name=f.wire)))
            else:
                fields.append((f.attr, Union[typ, UnsetType], msgspec.field(name=f.wire, default=UNSET)))  # noqa: UP007
        namespace: dict[str, Any] = {"__module__": module, "__doc__": s.doc or None}
        checks = _post_init_checks(s.fields)
        if checks:
            namespace["__post_init__"] = _make_post_init(checks)
        bases: tuple[type, ...]
        if s.kind is StructKind.REQUEST:
            bases = (Request,)
            namespace["__ocpp_action__"] = s.action
        elif s.kind is StructKind.RESPONSE:
            bases = (Response,)
        elif s.kind is StructKind.SEND:
            bases = (SendMessage,)
            namespace["__ocpp_action__"] = s.action
        else:
            bases = (Message,)
        ns[s.name] = msgspec.defstruct(
            s.name,
            fields,
            bases=bases,
            module=module,
            namespace=namespace,
            kw_only=True,
            forbid_unknown_fields=s.kind is not StructKind.OPEN,
        )
        for open_name, known in model.open_objects.items():
            if known == s.name:
                ns[open_name] = type(
                    open_name,
                    (OpenObject,),
                    {"__module__": module, "__slots__": (), "__ocpp_known__": ns[known], "__doc__": s.doc},
                )
    for s in model.structs.values():
        if s.kind is StructKind.REQUEST:
            assert s.response is not None
            ns[s.name].__ocpp_response__ = ns[s.response]  # type: ignore[attr-defined]
    actions = {
        a.action: ActionSpec(
            a.action,
            ns[a.request],
            None if a.response is None else ns[a.response],
            a.direction,
        )
        for a in model.actions.values()
    }
    return BuiltTypes(MappingProxyType(ns), MappingProxyType(actions), MappingProxyType(dict(model.drafts)))


def _make_post_init(checks: list[tuple[str, decimal.Decimal, str]]) -> Callable[[Any], None]:
    def __post_init__(self: Any) -> None:
        for attr, step, wire in checks:
            check_multiple_of(getattr(self, attr), step, wire)

    return __post_init__
