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

Where each step lives: this module finds and loads the schemas and builds the
model; :mod:`~ocpprpc._typed.type_model` is the model itself;
:mod:`~ocpprpc._typed.runtime_types` and :mod:`~ocpprpc._typed.render` are the
two back ends; :mod:`~ocpprpc._typed.checks` holds what built and generated
types call at run time.  The back ends and the checks are re-exported here:
generated modules import :func:`check_multiple_of` from this path.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .messages import Direction
from .type_model import (
    ActionModel,
    AnyType,
    ArrayType,
    BoolType,
    DateTimeType,
    EnumModel,
    EnumRef,
    FieldModel,
    FloatType,
    IntType,
    OpenRef,
    ProtocolModel,
    StrType,
    StructKind,
    StructModel,
    StructRef,
    TypeModel,
    _camel_to_snake,
)

# isort: split
# The two back ends and the runtime checks, re-exported: the generated modules, tools/generate.py,
# the validating codec and the tests import them from here.
from .checks import check_multiple_of, open_object_hook
from .render import render_module
from .runtime_types import BuiltTypes, build_types

__all__ = [
    "ActionModel",
    "BuiltTypes",
    "EnumModel",
    "FieldModel",
    "ProtocolModel",
    "StructModel",
    "build_model",
    "build_types",
    "check_multiple_of",
    "load_schemas",
    "open_object_hook",
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


# -- schema -> model ------------------------------------------------------------------------

_ANNOTATIONS = frozenset({"description", "javaType", "comment", "title", "$schema", "$id", "default"})


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
