"""From OCPP JSON schemas to msgspec types: one model, two back ends.

Theory of operation
-------------------
:func:`build_model` reads a folder of OCPP JSON schemas (one file per request
and per response) into a small intermediate *type model*: enums, structs with
fields, and field types that carry their constraints.  Two back ends read the
model:

* :func:`build_types` creates the msgspec types at runtime with
  :func:`msgspec.defstruct` (used by :func:`ocpprpc.register_protocol` for
  vendor protocols), and
* :func:`render_module` writes the same types as Python source (used by
  ``tools/generate.py`` for the committed ``ocpprpc.v16``, ``v201``, ``v21``).

Both express every constraint the schemas use the way msgspec enforces it at
C speed (``Meta(max_length=...)``, ``Meta(ge=..., le=...)``, list lengths,
``forbid_unknown_fields``, required vs ``UNSET``, ``Meta(tz=True)`` on
date-times).  Three schema features msgspec cannot express exactly are
handled here or in :mod:`ocpprpc._typed.validation`, and listed in docs/typed.rst:

* ``multipleOf`` is checked in ``__post_init__`` on the shortest decimal text
  of the float (:func:`check_multiple_of`), so ``21.4`` is a multiple of
  ``0.1`` (binary floating point says it is not);
* open objects (``customData``) are :class:`~ocpprpc._typed.messages.OpenObject`
  dicts, so vendor keys survive a round trip;
* draft-06 ``integer`` accepting ``7.0`` is done by the codec, on the error
  path only (:data:`ProtocolModel.drafts` records each message's draft).

Naming: a schema object becomes a Struct named after its ``javaType`` or its
definition name (``IdTokenType`` -> ``IdToken``), or for 1.6's inline objects
after the property (``meterValue`` -> ``MeterValue``).  Identical shapes share
one class; when two different shapes want the same name, each gets a name
qualified by where it is used.  Attributes are snake_case with the exact wire
name given explicitly to msgspec (``limit_L2`` -> ``limit_l2``).
"""

from __future__ import annotations

import decimal
import enum
import html
import json
import keyword
import math
import re
import textwrap
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Union

import msgspec
from msgspec import UNSET, Meta, UnsetType

from .messages import ActionSpec, Direction, Message, OpenObject, Request, Response, SendMessage

__all__ = [
    "ActionModel",
    "EnumModel",
    "FieldModel",
    "ProtocolModel",
    "StructModel",
    "build_model",
    "build_types",
    "check_multiple_of",
    "load_schemas",
    "render_module",
    "schema_path",
]

# -- where the shipped schemas are ----------------------------------------------------------

_REPO_SCHEMAS = Path(__file__).resolve().parent.parent.parent.parent / "schemas"


def schema_path(protocol: str) -> Path:
    """The folder of the official JSON schemas of *protocol* (``"ocpp1.6"``, ...).

    Installed wheels carry them as ``ocpprpc/_schemas``; a source checkout
    (editable install) reads the repository's ``schemas/`` folder.
    """
    packaged = Path(str(resources.files("ocpprpc"))) / "_schemas" / protocol
    if packaged.is_dir():
        return packaged  # pragma: no cover - only in an installed wheel
    checkout = _REPO_SCHEMAS / protocol
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"no shipped schemas for {protocol!r}")


def load_schemas(directory: str | Path) -> dict[str, dict[str, Any]]:
    """Every ``*.json`` file of *directory*: file stem -> parsed schema.

    Read as ``utf-8-sig``: older OCA files start with a byte order mark.
    """
    schemas: dict[str, dict[str, Any]] = {}
    for path in sorted(Path(directory).glob("*.json")):
        with path.open(encoding="utf-8-sig") as f:
            schemas[path.stem] = json.load(f)
    if not schemas:
        raise FileNotFoundError(f"no *.json schema in {directory}")
    return schemas


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


# -- schema -> model ------------------------------------------------------------------------

_ANNOTATIONS = frozenset({"description", "javaType", "comment", "title", "$schema", "$id", "default"})


def _camel_to_snake(name: str) -> str:
    s = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name)
    s = re.sub(r"[^0-9A-Za-z]+", "_", s).strip("_").lower()
    s = re.sub(r"_+", "_", s)
    if not s or s[0].isdigit():
        s = f"f_{s}"
    return f"{s}_" if keyword.iskeyword(s) else s


def _upper_camel(name: str) -> str:
    parts = re.split(r"[^0-9A-Za-z]+", name)
    return "".join(p[:1].upper() + p[1:] for p in parts if p)


_TYPOGRAPHY = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})


def _clean_doc(text: str | None) -> str:
    if not text:
        return ""
    return re.sub(r"\s+", " ", html.unescape(text).translate(_TYPOGRAPHY)).strip()


def _draft(schema: Mapping[str, Any]) -> int:
    uri = str(schema.get("$schema", ""))
    match = re.search(r"draft-0?(\d+)", uri)
    return int(match.group(1)) if match else 6


def _int_bound(value: Any) -> int | None:
    if value is None:
        return None
    return math.ceil(value) if isinstance(value, float) else int(value)


@dataclass(slots=True)
class _Occurrence:
    """Where an object or enum shape is used first (for naming)."""

    hint: str
    owner: str
    message: str
    order: int


@dataclass(slots=True)
class _Collector:
    """Phase 1: every object and enum shape, by structural signature."""

    definitions: dict[str, Any] = field(default_factory=dict)
    shapes: dict[str, tuple[str, Any, _Occurrence]] = field(default_factory=dict)  # sig -> (kind, node, occ)
    count: int = 0

    def signature(self, node: Mapping[str, Any], stack: tuple[str, ...] = ()) -> str:
        return json.dumps(self._canonical(node, stack), sort_keys=True)

    def _canonical(self, node: Any, stack: tuple[str, ...]) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                name = ref.rsplit("/", 1)[-1]
                if name in stack:  # pragma: no cover - the OCA schemas have no recursive types
                    raise ValueError(f"recursive schema type {name!r} is not supported")
                return self._canonical(self.definitions[name], (*stack, name))
            return {k: self._canonical(v, stack) for k, v in node.items() if k not in _ANNOTATIONS}
        if isinstance(node, list):
            return [self._canonical(v, stack) for v in node]
        return node


def _is_open(node: Mapping[str, Any]) -> bool:
    return node.get("additionalProperties", True) is not False


def _resolve(node: Mapping[str, Any], definitions: Mapping[str, Any]) -> tuple[Mapping[str, Any], str | None]:
    ref = node.get("$ref")
    if isinstance(ref, str):
        if not ref.startswith("#/definitions/"):
            raise ValueError(f"only local '#/definitions/...' references are supported, not {ref!r}")
        name = ref.rsplit("/", 1)[-1]
        target = definitions[name]
        return target, target.get("javaType") or re.sub(r"Type$", "", name)
    return node, None


def _message_files(schemas: Mapping[str, Any]) -> Iterator[tuple[str, str | None, str | None]]:
    """(action, request stem, response stem) for every action, sorted by action."""
    requests: dict[str, str] = {}
    responses: dict[str, str] = {}
    for stem in schemas:
        if stem.endswith("Response"):
            responses[stem[: -len("Response")]] = stem
        elif stem.endswith("Request"):
            requests[stem[: -len("Request")]] = stem
        else:
            requests[stem] = stem
    for action in sorted(set(requests) | set(responses)):
        yield action, requests.get(action), responses.get(action)


def build_model(
    protocol: str,
    schemas: Mapping[str, Mapping[str, Any]],
    directions: Mapping[str, Direction] | None = None,
    *,
    default_direction: Direction = Direction.BOTH,
    renames: Mapping[str, str] | None = None,
) -> ProtocolModel:
    """The type model of one protocol from its schemas (file stem -> schema).

    Files are named ``<Action>Request.json`` or ``<Action>.json`` (requests),
    and ``<Action>Response.json``.  An action with a request and no response
    is SEND-only.  *directions* says who may send each action; an action it
    does not name gets *default_direction*.  *renames* replaces derived type
    names (e.g. 1.6's inline ``status`` enums get their specification names).
    """
    directions = directions or {}
    # Phase 1: the message classes' names are fixed; collect every shape used.
    # (action, kind, class name, file stem, schema) of every message
    messages: list[tuple[str, StructKind, str, str, Mapping[str, Any]]] = []
    action_models: dict[str, ActionModel] = {}
    for action, request, response in _message_files(schemas):
        if request is None:
            raise ValueError(f"{response}.json has no matching request schema")
        if response is None:
            messages.append((action, StructKind.SEND, action, request, schemas[request]))
            direction = directions.get(action, default_direction)
            action_models[action] = ActionModel(action, action, None, direction)
            continue
        messages.append((action, StructKind.RESPONSE, f"{action}Response", response, schemas[response]))
        messages.append((action, StructKind.REQUEST, f"{action}Request", request, schemas[request]))
        action_models[action] = ActionModel(
            action, f"{action}Request", f"{action}Response", directions.get(action, default_direction)
        )
    reserved = {name for _, _, name, _, _ in messages}

    collectors: dict[str, _Collector] = {}
    shapes: dict[str, tuple[str, Mapping[str, Any], _Occurrence]] = {}
    order = 0

    def collect(node: Mapping[str, Any], hint: str, owner: str, message: str, coll: _Collector) -> None:
        nonlocal order
        target, ref_name = _resolve(node, coll.definitions)
        if ref_name is not None:
            hint = ref_name
        kind = target.get("type")
        if kind == "array":
            items = target.get("items")
            if isinstance(items, dict):
                collect(items, hint, owner, message, coll)
            return
        if "enum" in target:
            sig = "enum:" + coll.signature(target)
            shapes.setdefault(sig, ("enum", target, _Occurrence(hint, owner, message, order)))
            order += 1
            return
        if kind != "object":
            return
        sig = ("open:" if _is_open(target) else "struct:") + coll.signature(target)
        if sig not in shapes:
            shapes[sig] = ("object", target, _Occurrence(hint, owner, message, order))
            order += 1
        for prop, sub in (target.get("properties") or {}).items():
            collect(sub, _upper_camel(prop), hint, message, coll)

    for _action, _kind, name, stem, schema in messages:
        coll = _Collector(definitions=dict(schema.get("definitions") or {}))
        collectors[stem] = coll
        for prop, sub in (schema.get("properties") or {}).items():
            collect(sub, _upper_camel(prop), name, name, coll)

    # Phase 2: names.  A hint used by one shape keeps it; several shapes with one hint
    # are each qualified by their owner (then by their message) so no guess picks a winner.
    by_hint: dict[str, list[str]] = {}
    for sig, (_shape, _node, occ) in sorted(shapes.items(), key=lambda item: item[1][2].order):
        by_hint.setdefault(occ.hint, []).append(sig)
    names: dict[str, str] = {}
    taken = set(reserved)
    for hint, sigs in by_hint.items():
        for sig in sigs:
            occ = shapes[sig][2]
            candidates = [hint] if len(sigs) == 1 else []
            candidates += [f"{occ.owner}{hint}", f"{occ.message}{hint}"]
            if hint.endswith("Response") or hint.endswith("Request"):
                candidates = [f"{c}Type" for c in candidates] + candidates
            chosen = next((c for c in candidates if c not in taken), None)
            if chosen is None:
                base, n = candidates[-1], 2
                while f"{base}{n}" in taken:
                    n += 1
                chosen = f"{base}{n}"
            taken.add(chosen)
            names[sig] = chosen
    if renames:
        unknown = set(renames) - set(names.values())
        if unknown:
            raise ValueError(f"renames name types that do not exist: {sorted(unknown)}")
        names = {sig: renames.get(name, name) for sig, name in names.items()}
        if len(set(names.values())) != len(names) or set(names.values()) & reserved:
            raise ValueError("renames make two types share a name")

    # Phase 3: build the model, dependency order (post-order walk).
    enums: dict[str, EnumModel] = {}
    structs: dict[str, StructModel] = {}
    open_objects: dict[str, str] = {}
    drafts: dict[str, int] = {}

    def type_of(node: Mapping[str, Any], coll: _Collector) -> TypeModel:
        target, _ = _resolve(node, coll.definitions)
        kind = target.get("type")
        if "enum" in target:
            sig = "enum:" + coll.signature(target)
            name = names[sig]
            if name not in enums:
                values = tuple(str(v) for v in target["enum"])
                enums[name] = EnumModel(name, values, _clean_doc(target.get("description")))
            return EnumRef(name)
        if kind == "string":
            if target.get("format") == "date-time":
                return DateTimeType()
            return StrType(target.get("maxLength"))
        if kind == "integer":
            return IntType(_int_bound(target.get("minimum")), _int_bound(target.get("maximum")))
        if kind == "number":
            step = target.get("multipleOf")
            return FloatType(
                None if target.get("minimum") is None else float(target["minimum"]),
                None if target.get("maximum") is None else float(target["maximum"]),
                None if step is None else repr(step) if isinstance(step, float) else str(step),
            )
        if kind == "boolean":
            return BoolType()
        if kind == "array":
            items = target.get("items")
            return ArrayType(
                type_of(items, coll) if isinstance(items, dict) else AnyType(),
                target.get("minItems"),
                target.get("maxItems"),
            )
        if kind == "object":
            is_open = _is_open(target)
            sig = ("open:" if is_open else "struct:") + coll.signature(target)
            name = names[sig]
            if is_open:
                known = f"{name}Fields"
                if name not in open_objects:
                    open_objects[name] = known
                    structs[known] = StructModel(
                        known, fields_of(target, coll), StructKind.OPEN, _clean_doc(target.get("description"))
                    )
                return OpenRef(name)
            if name not in structs:
                doc = _clean_doc(target.get("description"))
                structs[name] = StructModel(name, fields_of(target, coll), StructKind.NESTED, doc)
            return StructRef(name)
        if kind is None:
            return AnyType()
        raise ValueError(f"unsupported schema type {kind!r}")

    def fields_of(node: Mapping[str, Any], coll: _Collector) -> tuple[FieldModel, ...]:
        required = set(node.get("required") or ())
        result: list[FieldModel] = []
        attrs: set[str] = set()
        for wire, sub in (node.get("properties") or {}).items():
            attr = _camel_to_snake(wire)
            while attr in attrs or attr in _RESERVED_ATTRS:
                attr += "_"
            attrs.add(attr)
            doc = _clean_doc(sub.get("description"))
            result.append(FieldModel(attr, wire, type_of(sub, coll), wire in required, doc))
        return tuple(result)

    for action, kind, name, stem, schema in messages:
        coll = collectors[stem]
        if schema.get("type", "object") != "object" or _is_open(schema):
            raise ValueError(f"{stem}.json: a message schema must be a closed object")
        fields = fields_of(schema, coll)
        response = action_models[action].response if kind is StructKind.REQUEST else None
        structs[name] = StructModel(
            name, fields, kind, _clean_doc(schema.get("description")), action=action, response=response
        )
        drafts[name] = _draft(schema)
    return ProtocolModel(protocol, enums, structs, open_objects, action_models, drafts)


#: Attribute names a Struct field must not take: the base classes' class variables, and
#: the names the generated annotations use (msgspec evaluates them in the class namespace,
#: where a field of that name would shadow them).
_RESERVED_ATTRS = frozenset(
    {"_", "__ocpp_action__", "__ocpp_response__", "__ocpp_known__"}
    | {"int", "str", "float", "bool", "list", "datetime", "Annotated", "Meta", "Any", "UnsetType", "DateTime"}
)


# -- runtime helpers used by generated and built types ---------------------------------------


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


def _post_init_checks(fields: tuple[FieldModel, ...]) -> list[tuple[str, decimal.Decimal, str]]:
    checks = []
    for f in fields:
        t = f.type.item if isinstance(f.type, ArrayType) else f.type
        if isinstance(t, FloatType) and t.multiple_of is not None:
            checks.append((f.attr, decimal.Decimal(t.multiple_of), f.wire))
    return checks


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


# -- model -> Python source (the generator) --------------------------------------------------


def _source_type(t: TypeModel) -> str:
    if isinstance(t, StrType):
        return "str" if t.max_length is None else f"Annotated[str, Meta(max_length={t.max_length})]"
    if isinstance(t, IntType):
        args = ", ".join(f"{k}={v}" for k, v in (("ge", t.ge), ("le", t.le)) if v is not None)
        return f"Annotated[int, Meta({args})]" if args else "int"
    if isinstance(t, FloatType):
        args = ", ".join(f"{k}={v!r}" for k, v in (("ge", t.ge), ("le", t.le)) if v is not None)
        return f"Annotated[float, Meta({args})]" if args else "float"
    if isinstance(t, BoolType):
        return "bool"
    if isinstance(t, DateTimeType):
        return "DateTime"
    if isinstance(t, AnyType):
        return "Any"
    if isinstance(t, EnumRef | StructRef | OpenRef):
        return t.name
    item = _source_type(t.item)
    bounds = (("min_length", t.min_items), ("max_length", t.max_items))
    args = ", ".join(f"{k}={v}" for k, v in bounds if v is not None)
    return f"Annotated[list[{item}], Meta({args})]" if args else f"list[{item}]"


def _docstring(text: str, indent: str) -> list[str]:
    if not text:
        return []
    text = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    if text.endswith('"'):
        text = text[:-1] + '\\"'
    lines = textwrap.wrap(text, width=100 - len(indent), break_long_words=True, break_on_hyphens=False)
    if len(lines) == 1 and len(lines[0]) + len(indent) + 6 <= 108:
        return [f'{indent}"""{lines[0]}"""']
    return [f'{indent}"""{lines[0]}', *(f"{indent}{line}" for line in lines[1:]), f'{indent}"""']


def _q(text: str) -> str:
    """A double-quoted Python string literal (JSON string syntax is valid Python)."""
    return json.dumps(text)


def render_module(model: ProtocolModel, *, title: str, source: str) -> str:
    """Python source for the model: enums, Structs, ``ACTIONS`` (see tools/generate.py)."""
    structs = list(model.structs.values())
    has_checks = any(_post_init_checks(s.fields) for s in structs)
    types = [f.type.item if isinstance(f.type, ArrayType) else f.type for s in structs for f in s.fields]
    has_any = any(isinstance(t, AnyType) for t in types)
    bases = ["ActionSpec", "Direction", "Message", "Request", "Response"]
    if model.open_objects:
        bases.append("OpenObject")
    if any(s.kind is StructKind.SEND for s in structs):
        bases.append("SendMessage")
    bases.sort()
    out: list[str] = [
        f'"""{title}',
        "",
        f"Generated by tools/generate.py from {source}; do not edit (run ``nox -s generate``).",
        '"""',
        "",
        "# ruff: noqa: E501",
        "",
        "from __future__ import annotations",
        "",
        *(["import decimal"] if has_checks else []),
        "import enum",
        "from collections.abc import Mapping",
        "from datetime import datetime",
        "from types import MappingProxyType",
        f"from typing import {'Annotated, Any' if has_any else 'Annotated'}",
        "",
        "import msgspec",
        "from msgspec import UNSET, Meta, UnsetType",
        "",
        f"from .._typed.messages import {', '.join(bases)}",
        *(["from .._typed.schema import check_multiple_of"] if has_checks else []),
        "",
        "#: An RFC 3339 date-time that must carry a UTC offset.",
        "DateTime = Annotated[datetime, Meta(tz=True)]",
        "",
    ]
    exported: list[str] = []
    for e in model.enums.values():
        exported.append(e.name)
        out += ["", f"class {e.name}(enum.StrEnum):"]
        out += _docstring(e.doc or f"The values of {e.name}.", "    ")
        out += [""]
        out += [f"    {name} = {_q(value)}" for name, value in _enum_members(e.values).items()]
        out.append("")
    known_of = {known: name for name, known in model.open_objects.items()}
    for s in model.structs.values():
        exported.append(s.name)
        if s.kind is StructKind.REQUEST:
            base = f"Request[{s.response}]"
        elif s.kind is StructKind.RESPONSE:
            base = "Response"
        elif s.kind is StructKind.SEND:
            base = "SendMessage"
        else:
            base = "Message"
        options = "kw_only=True" if s.kind is StructKind.OPEN else "kw_only=True, forbid_unknown_fields=True"
        out += ["", f"class {s.name}({base}, {options}):"]
        out += _docstring(s.doc or _default_doc(s), "    ")
        out.append("")
        if s.kind is StructKind.REQUEST:
            out.append(f"    __ocpp_action__ = {_q(s.action or '')}")
            out.append(f"    __ocpp_response__ = {s.response}")
            out.append("")
        elif s.kind is StructKind.SEND:
            out.append(f"    __ocpp_action__ = {_q(s.action or '')}")
            out.append("")
        for f in s.fields:
            typ = _source_type(f.type)
            rename = "" if f.attr == f.wire else f"name={_q(f.wire)}"
            if f.required:
                line = f"    {f.attr}: {typ}" + (f" = msgspec.field({rename})" if rename else "")
            else:
                args = ", ".join(a for a in (rename, "default=UNSET") if a)
                default = f"msgspec.field({args})" if rename else "UNSET"
                line = f"    {f.attr}: {typ} | UnsetType = {default}"
            out.append(line)
            out += _docstring(f.doc, "    ")
        checks = _post_init_checks(s.fields)
        if checks:
            out += ["", "    def __post_init__(self) -> None:"]
            for attr, step, wire in checks:
                step_source = f"decimal.Decimal({_q(str(step))})"
                out.append(f"        check_multiple_of(self.{attr}, {step_source}, {_q(wire)})")
        out.append("")
        if s.name in known_of:
            open_name = known_of[s.name]
            exported.append(open_name)
            out += ["", f"class {open_name}(OpenObject):"]
            out += _docstring(
                f"An open JSON object (a dict): vendor keys are kept; the keys the schema names are checked"
                f" against {s.name}.",
                "    ",
            )
            out += ["", "    __slots__ = ()", f"    __ocpp_known__ = {s.name}", ""]
    out += [
        "",
        "#: Every action of this protocol: its payload types and who may send it.",
        "ACTIONS: Mapping[str, ActionSpec] = MappingProxyType(",
        "    {",
    ]
    for a in model.actions.values():
        response = "None" if a.response is None else a.response
        spec = f"ActionSpec({_q(a.action)}, {a.request}, {response}, {_direction_source(a.direction)})"
        out.append(f"        {_q(a.action)}: {spec},")
    out += ["    }", ")", ""]
    out += [
        "#: JSON Schema draft of each message's schema file: draft 4 rejects ``7.0`` where an",
        "#: integer is expected, draft 6 accepts it (the codec follows the file).",
        "SCHEMA_DRAFTS: Mapping[str, int] = MappingProxyType(",
        "    {",
    ]
    out += [f"        {_q(name)}: {draft}," for name, draft in sorted(model.drafts.items())]
    out += ["    }", ")", ""]
    names = sorted([*exported, "ACTIONS", "SCHEMA_DRAFTS", "DateTime"])
    out += ["__all__ = [", *(f"    {_q(n)}," for n in names), "]", ""]
    return "\n".join(out)


def _default_doc(s: StructModel) -> str:
    if s.kind is StructKind.REQUEST:
        return f"The payload of a {s.action} CALL."
    if s.kind is StructKind.RESPONSE:
        return f"The payload of the CALLRESULT that answers {s.action}."
    if s.kind is StructKind.SEND:
        return f"The payload of a {s.action} SEND (never answered)."
    if s.kind is StructKind.OPEN:
        return f"The properties the schema names in a {s.name.removesuffix('Fields')} object."
    return f"The {s.name} type."


def _direction_source(direction: Direction) -> str:
    if direction == Direction.BOTH:
        return "Direction.BOTH"
    return f"Direction.{direction.name}"
