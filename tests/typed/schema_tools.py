"""Test tools that read the raw JSON schemas, independently of ocpprpc's type model.

* :func:`reference_validator`: the ``jsonschema`` oracle (the draft each file
  names, with a date-time format check), with ``multipleOf`` done in decimal;
  the one documented deviation of the oracle itself (jsonschema divides floats
  in binary and rejects ``21.4`` as a multiple of ``0.1``).
* :func:`instances`: a hypothesis strategy for valid instances of a schema.
  (hypothesis-jsonschema 0.23.1, the latest release, fails on current
  hypothesis with ``'many' object has no attribute 'more'``, and these
  schemas use a small subset of JSON Schema that is easy to cover here.)
* :func:`full_instance` and :func:`mutations`: one deterministic valid
  instance with every property present, and systematic invalid variants of
  it, each with the OCPP error code and JSON path it must produce.
"""

from __future__ import annotations

import decimal
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import jsonschema
from hypothesis import strategies as st

from ocpprpc import ErrorCode

SCHEMAS = Path(__file__).resolve().parent.parent.parent / "schemas"
VERSIONS = ("ocpp1.6", "ocpp2.0.1", "ocpp2.1")
Schema = Mapping[str, Any]


def schema_files() -> list[Path]:
    return sorted(p for version in VERSIONS for p in (SCHEMAS / version).glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8-sig") as f:
        result: dict[str, Any] = json.load(f)
    return result


def action_and_kind(path: Path) -> tuple[str, str]:
    """(action, "request" | "response") from a schema file name."""
    stem = path.stem
    if stem.endswith("Response"):
        return stem.removesuffix("Response"), "response"
    return stem.removesuffix("Request"), "request"


# -- the reference --------------------------------------------------------------------------


def _exact_multiple_of(validator: Any, step: Any, instance: Any, schema: Any) -> Iterator[Any]:
    if not validator.is_type(instance, "number"):
        return
    quotient = decimal.Decimal(repr(instance)) / decimal.Decimal(repr(step))
    if quotient != quotient.to_integral_value():
        yield jsonschema.ValidationError(f"{instance!r} is not a multiple of {step}")


def reference_validator(schema: Schema) -> Any:
    base = jsonschema.validators.validator_for(schema)
    cls = jsonschema.validators.extend(base, {"multipleOf": _exact_multiple_of})
    return cls(schema, format_checker=jsonschema.FormatChecker())


# -- resolving ------------------------------------------------------------------------------


def resolve(node: Schema, root: Schema) -> Schema:
    ref = node.get("$ref")
    if isinstance(ref, str):
        result: Schema = root["definitions"][ref.rsplit("/", 1)[-1]]
        return result
    return node


def is_open(node: Schema) -> bool:
    return node.get("additionalProperties", True) is not False


# -- valid instances (hypothesis) -----------------------------------------------------------

_OFFSETS = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))])


def _rfc3339(moment: datetime, digits: int) -> str:
    text = moment.replace(microsecond=0).isoformat()
    if digits:
        text = text[:19] + "." + f"{moment.microsecond:06d}"[:digits] + text[19:]
    return text[:-6] + "Z" if text.endswith("+00:00") else text


_DATETIMES = st.builds(
    _rfc3339,
    st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1), timezones=_OFFSETS),
    st.sampled_from([0, 3, 6]),
)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**31), 2**31) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=3), inner, max_size=2),
    max_leaves=4,
)


def instances(node: Schema, root: Schema | None = None) -> st.SearchStrategy[Any]:
    """Valid instances of *node* (a schema of the OCPP subset of JSON Schema)."""
    root = root if root is not None else node
    node = resolve(node, root)
    if "enum" in node:
        return st.sampled_from(node["enum"])
    kind = node.get("type")
    if kind == "string":
        if node.get("format") == "date-time":
            return _DATETIMES
        return st.text(max_size=min(node.get("maxLength", 30), 30))
    if kind == "integer":
        return st.integers(node.get("minimum", -(2**31)), node.get("maximum", 2**31))
    if kind == "number":
        low, high = node.get("minimum", -1e9), node.get("maximum", 1e9)
        if "multipleOf" in node:
            step = decimal.Decimal(repr(node["multipleOf"]))
            return st.integers(-1000, 10000).map(lambda n: float(n * step)).filter(lambda x: low <= x <= high)
        return st.floats(low, high, allow_nan=False, allow_infinity=False) | st.integers(int(low), int(high))
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        low = node.get("minItems", 0)
        return st.lists(
            instances(node["items"], root), min_size=low, max_size=max(low, min(node.get("maxItems", 2), 2))
        )
    if kind == "object":
        properties = node.get("properties", {})
        required = set(node.get("required", ()))
        strategy = st.fixed_dictionaries(
            {k: instances(v, root) for k, v in properties.items() if k in required},
            optional={k: instances(v, root) for k, v in properties.items() if k not in required},
        )
        if is_open(node):
            extra = st.dictionaries(st.sampled_from(["vendorKey", "x", "nested"]), _JSON, max_size=2)
            strategy = st.builds(lambda known, more: {**more, **known}, strategy, extra)
        return strategy
    return _JSON


# -- one full instance, and its mutations ----------------------------------------------------


def full_instance(node: Schema, root: Schema) -> Any:
    """A valid instance with every property present and every array holding one item."""
    node = resolve(node, root)
    if "enum" in node:
        return node["enum"][0]
    kind = node.get("type")
    if kind == "string":
        return "2024-02-29T12:34:56.789+01:00" if node.get("format") == "date-time" else "s"
    if kind in ("integer", "number"):
        value = node.get("minimum", min(node.get("maximum", 21.4), 21.4))
        return int(value) if kind == "integer" else float(value)
    if kind == "boolean":
        return True
    if kind == "array":
        return [full_instance(node["items"], root)] * max(1, node.get("minItems", 1))
    if kind == "object":
        return {k: full_instance(v, root) for k, v in node.get("properties", {}).items()}
    return {"any": [1, "x", None]}


@dataclass(frozen=True)
class Mutation:
    what: str
    path: str
    code: ErrorCode
    instance: Any

    @property
    def category(self) -> str:
        """The kind of mutation, without the location-specific part."""
        return self.what.split(" ")[0]


def sample(found: list[Mutation], per_category: int) -> list[Mutation]:
    """At most *per_category* mutations of each category, spread over the locations."""
    groups: dict[str, list[Mutation]] = {}
    for m in found:
        groups.setdefault(m.category, []).append(m)
    chosen: list[Mutation] = []
    for group in groups.values():
        if len(group) <= per_category:
            chosen += group
        else:
            step = (len(group) - 1) / (per_category - 1)
            chosen += [group[round(i * step)] for i in range(per_category)]
    return chosen


_WRONG_TYPE = {"string": 12, "integer": "12", "number": "1.5", "boolean": "true", "array": {}, "object": []}


def _replace(instance: Any, steps: tuple[str | int, ...], value: Any) -> Any:
    """A copy of *instance* with the value at *steps* replaced (or deleted if value is _DELETE)."""
    copy = json.loads(json.dumps(instance))
    parent = copy
    for step in steps[:-1]:
        parent = parent[step]
    if value is _DELETE:
        del parent[steps[-1]]
    else:
        parent[steps[-1]] = value
    return copy


_DELETE = object()


def _path(steps: tuple[str | int, ...]) -> str:
    return "$" + "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in steps)


def mutations(schema: Schema) -> Iterator[Mutation]:
    """Every systematic mutation of :func:`full_instance` at every location."""
    valid = full_instance(schema, schema)
    yield from _mutate(schema, schema, valid, ())


def _mutate(node: Schema, root: Schema, valid: Any, steps: tuple[str | int, ...]) -> Iterator[Mutation]:
    node = resolve(node, root)
    kind = node.get("type")
    here = _path(steps)
    if steps and kind in _WRONG_TYPE:
        yield Mutation(
            f"wrong type ({kind})",
            here,
            ErrorCode.TYPE_CONSTRAINT_VIOLATION,
            _replace(valid, steps, _WRONG_TYPE[kind]),
        )
    if steps and kind in _WRONG_TYPE:
        yield Mutation("null", here, ErrorCode.TYPE_CONSTRAINT_VIOLATION, _replace(valid, steps, None))
    if "enum" in node:
        yield Mutation(
            "bad enum",
            here,
            ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
            _replace(valid, steps, "NotAnEnumValue"),
        )
    elif kind == "string" and node.get("format") == "date-time":
        for bad in ("2024-02-30T12:00:00Z", "2024-02-29T12:00:00", "yesterday"):
            yield Mutation(
                f"bad date-time {bad}", here, ErrorCode.TYPE_CONSTRAINT_VIOLATION, _replace(valid, steps, bad)
            )
    elif kind == "string" and "maxLength" in node:
        too_long = "x" * (node["maxLength"] + 1)
        yield Mutation(
            "string too long", here, ErrorCode.PROPERTY_CONSTRAINT_VIOLATION, _replace(valid, steps, too_long)
        )
    elif kind in ("integer", "number"):
        if "minimum" in node:
            low = node["minimum"] - 1
            yield Mutation(
                "below minimum",
                here,
                ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
                _replace(valid, steps, int(low) if kind == "integer" else float(low)),
            )
        if "maximum" in node:
            high = node["maximum"] + 1
            yield Mutation(
                "above maximum",
                here,
                ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
                _replace(valid, steps, int(high) if kind == "integer" else float(high)),
            )
        if kind == "integer":
            yield Mutation(
                "integer with a fraction",
                here,
                ErrorCode.TYPE_CONSTRAINT_VIOLATION,
                _replace(valid, steps, 7.5),
            )
        if "multipleOf" in node:
            yield Mutation(
                "not a multiple", here, ErrorCode.PROPERTY_CONSTRAINT_VIOLATION, _replace(valid, steps, 16.15)
            )
    elif kind == "array":
        if node.get("minItems", 0) > 0:
            yield Mutation(
                "too few items", here, ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION, _replace(valid, steps, [])
            )
        if "maxItems" in node:
            items = [full_instance(node["items"], root)] * (node["maxItems"] + 1)
            yield Mutation(
                "too many items",
                here,
                ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION,
                _replace(valid, steps, items),
            )
        yield from _mutate(node["items"], root, valid, (*steps, 0))
    elif kind == "object":
        for name in node.get("required", ()):
            yield Mutation(
                f"missing {name}",
                here,
                ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION,
                _replace(valid, (*steps, name), _DELETE),
            )
        if not is_open(node):
            yield Mutation(
                "unknown property",
                here,
                ErrorCode.FORMAT_VIOLATION,
                _replace(valid, (*steps, "zzUnknown"), 1),
            )
        for name, sub in node.get("properties", {}).items():
            yield from _mutate(sub, root, valid, (*steps, name))
