"""Repairs of payloads, and the payload paths they address (:mod:`ocpprpc._typed.quirks`).

Each :class:`Repair` fixes the places one path names in a plain JSON tree, in place, and never
raises: what it cannot handle is reported as not applicable and validation has the last word.

Path grammar
------------
A path names places in the payload: segments separated by ``/`` (one leading
``/`` is allowed, as in a JSON pointer; ``""`` is the payload itself).  A
segment is an object key, a decimal array index (``0``, ``12``), or ``*``:
every element of an array.  ``~1`` stands for ``/`` and ``~0`` for ``~``
inside a key (RFC 6901).  ``meterValue/*/sampledValue/*/measurand`` is the
measurand of every sampled value of every meter value.
"""

from __future__ import annotations

import enum
import functools
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

import msgspec
import msgspec.inspect as mi

__all__ = [
    "Coerce",
    "Drop",
    "DropUnknown",
    "MapEnum",
    "Outcome",
    "Repair",
    "RepairReport",
    "Truncate",
    "apply_repairs",
    "parse_path",
]

#: Values are cut to this many characters in log lines (payloads may carry id tokens).
LOG_VALUE_CHARS: Final = 32

WILDCARD: Final = "*"

# -- paths --------------------------------------------------------------------------------------


def parse_path(path: str) -> tuple[str, ...]:
    """*path* (see the module's path grammar) as its segments; ``ValueError`` if malformed."""
    if not isinstance(path, str):
        raise TypeError(f"a quirk path is a string, not {type(path).__name__}")
    text = path.removeprefix("/")
    if not text:
        return ()
    segments = []
    for raw in text.split("/"):
        if not raw:
            raise ValueError(f"quirk path {path!r} has an empty segment")
        if re.search(r"~(?![01])", raw):
            raise ValueError(f"quirk path {path!r}: '~' must be followed by 0 or 1 (RFC 6901)")
        segments.append(raw.replace("~1", "/").replace("~0", "~"))
    return tuple(segments)


_INDEX = re.compile(r"0|[1-9][0-9]{0,17}")


def _children(node: Any, segment: str) -> list[tuple[Any, Any]] | None:
    """The (key, child) pairs *segment* selects in *node*; ``None`` if it selects nothing."""
    if segment == WILDCARD:
        return list(enumerate(node)) if isinstance(node, list) else None
    if isinstance(node, dict):
        return [(segment, node[segment])] if segment in node else None
    if isinstance(node, list) and _INDEX.fullmatch(segment):
        index = int(segment)
        return [(index, node[index])] if index < len(node) else None
    return None


class _Place:
    """One place a path selected: ``parent[key]`` is ``value`` (no parent for the root)."""

    __slots__ = ("key", "parent", "up", "value")

    def __init__(self, parent: Any, key: Any, value: Any, up: _Place | None) -> None:
        self.parent = parent
        self.key = key
        self.value = value
        self.up = up  # the place of the parent, for the log's concrete path

    @property
    def where(self) -> str:
        """The concrete path, e.g. ``/meterValue/0/sampledValue/1/measurand`` (only for the log)."""
        keys = []
        place: _Place | None = self
        while place is not None and place.up is not None:
            keys.append(str(place.key))
            place = place.up
        return "/" + "/".join(reversed(keys))


def _locate(tree: Any, segments: tuple[str, ...]) -> tuple[list[_Place], int]:
    """Every place *segments* select in *tree*, and how many branches found nothing."""
    places = [_Place(None, None, tree, None)]
    missing = 0
    for segment in segments:
        found = []
        for place in places:
            children = _children(place.value, segment)
            if children is None:
                missing += 1
                continue
            parent = place.value
            found += [_Place(parent, key, child, place) for key, child in children]
        places = found
    return places, missing


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= LOG_VALUE_CHARS else text[: LOG_VALUE_CHARS - 3] + "..."


# -- repairs ------------------------------------------------------------------------------------


class Outcome(enum.Enum):
    """What a repair found at one place."""

    REPAIRED = "repaired"
    #: The value already conforms (nothing to do).
    CONFORMANT = "conformant"
    #: Not something this repair handles (wrong type); validation decides.
    NOT_APPLICABLE = "not applicable"


@dataclass(frozen=True, slots=True)
class RepairReport:
    """What one repair did to one payload (counts, and the first change for the log)."""

    repair: Repair
    repaired: int = 0
    not_applicable: int = 0
    #: The first change, e.g. ``/chargePointSerialNumber: 40 -> 25 chars``.
    first: str | None = None


@dataclass(frozen=True)
class Repair:
    """A declared repair of the values at :attr:`path`."""

    path: str
    #: The name in log lines.
    kind: ClassVar[str] = "repair"
    segments: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "segments", parse_path(self.path))

    def apply(self, tree: Any, payload_type: type | None = None) -> RepairReport:
        """Repair *tree* in place (never raises); *payload_type* is the Struct it must become."""
        places, missing = _locate(tree, self.segments)
        repaired, not_applicable, first = 0, missing, None
        for place in places:
            outcome, note = self._fix(place, payload_type)
            if outcome is Outcome.REPAIRED:
                repaired += 1
                if first is None:
                    first = f"{place.where}: {note}"
            elif outcome is Outcome.NOT_APPLICABLE:
                not_applicable += 1
        return RepairReport(self, repaired, not_applicable, first)

    def _fix(self, place: _Place, payload_type: type | None) -> tuple[Outcome, str]:
        value = place.value
        new = self._value(value)
        if new is _NOT_APPLICABLE:
            return Outcome.NOT_APPLICABLE, ""
        if new is _SAME:
            return Outcome.CONFORMANT, ""
        if place.parent is None:  # a value repair of the payload itself: it must stay an object
            return Outcome.NOT_APPLICABLE, ""
        place.parent[place.key] = new
        return Outcome.REPAIRED, self._note(value, new)

    def _value(self, value: Any) -> Any:  # pragma: no cover (every subclass overrides it)
        raise NotImplementedError

    def _note(self, old: Any, new: Any) -> str:
        return f"{_short(old)} -> {_short(new)}"


_NOT_APPLICABLE: Final[Any] = object()
_SAME: Final[Any] = object()


@dataclass(frozen=True)
class Truncate(Repair):
    """Cut a string (or an array) longer than *max_length* to *max_length*."""

    max_length: int = 0
    kind: ClassVar[str] = "truncate"

    def __post_init__(self) -> None:
        super().__post_init__()
        if type(self.max_length) is not int or self.max_length < 0:
            raise ValueError(f"Truncate max_length must be an int >= 0, not {self.max_length!r}")

    def _value(self, value: Any) -> Any:
        if not isinstance(value, str | list):
            return _NOT_APPLICABLE
        return value[: self.max_length] if len(value) > self.max_length else _SAME

    def _note(self, old: Any, new: Any) -> str:
        unit = "chars" if isinstance(old, str) else "items"
        return f"{len(old)} -> {len(new)} {unit}"


_JSON_INT = re.compile(r"-?(?:0|[1-9][0-9]{0,30})")
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]{0,30})(?:\.[0-9]{1,30})?(?:[eE][-+]?[0-9]{1,3})?")


def _to_str(value: Any) -> Any:
    if isinstance(value, str):
        return _SAME
    if isinstance(value, bool | int | float):
        return msgspec.json.encode(value).decode()  # JSON spelling: true, 7, 1.5
    return _NOT_APPLICABLE


def _to_int(value: Any) -> Any:
    if isinstance(value, bool):
        return _NOT_APPLICABLE
    if isinstance(value, int):
        return _SAME
    if isinstance(value, float):
        return int(value) if value.is_integer() else _NOT_APPLICABLE
    if isinstance(value, str) and _JSON_INT.fullmatch(value.strip()):
        return int(value)
    return _NOT_APPLICABLE


def _to_float(value: Any) -> Any:
    if isinstance(value, bool):
        return _NOT_APPLICABLE
    if isinstance(value, int | float):
        return _SAME
    if isinstance(value, str) and _JSON_NUMBER.fullmatch(value.strip()):
        number = float(value)
        return number if math.isfinite(number) else _NOT_APPLICABLE
    return _NOT_APPLICABLE


def _to_bool(value: Any) -> Any:
    if isinstance(value, bool):
        return _SAME
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if type(value) is int and value in (0, 1):
        return bool(value)
    return _NOT_APPLICABLE


_COERCIONS: Final[Mapping[type, Callable[[Any], Any]]] = {
    str: _to_str,
    int: _to_int,
    float: _to_float,
    bool: _to_bool,
}


@dataclass(frozen=True)
class Coerce(Repair):
    """Convert a value to the JSON type the schema wants: ``to`` is ``str``, ``int``, ``float`` or ``bool``.

    Numbers become their JSON text (``7``, ``1.5``); a string becomes a number
    only if it is one (``"42"``, ``" 1.5 "``); ``"true"``/``"false"`` and 0/1
    become booleans; a float becomes an int only if it is integral.  Anything
    else is left for validation.
    """

    to: type = str
    kind: ClassVar[str] = "coerce"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.to not in _COERCIONS:
            raise ValueError(f"Coerce to= must be str, int, float or bool, not {self.to!r}")

    def _value(self, value: Any) -> Any:
        return _COERCIONS[self.to](value)


@dataclass(frozen=True)
class MapEnum(Repair):
    """Replace string values by the schema's spelling.

    ``MapEnum("meterValue/*/sampledValue/*/measurand", {"Energy.Active.Import":
    "Energy.Active.Import.Register"})``; values not in the mapping stay as they are.
    """

    mapping: Mapping[str, str] = field(default_factory=dict)
    kind: ClassVar[str] = "map-enum"

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "mapping", dict(self.mapping))

    def _value(self, value: Any) -> Any:
        if not isinstance(value, str):
            return _NOT_APPLICABLE
        new = self.mapping.get(value, value)
        return _SAME if new == value else new


@dataclass(frozen=True)
class Drop(Repair):
    """Remove the object member at *path* (a field the station should not have sent)."""

    kind: ClassVar[str] = "drop"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.segments or self.segments[-1] == WILDCARD:
            raise ValueError(f"Drop needs a path ending in an object key, not {self.path!r}")

    def _fix(self, place: _Place, payload_type: type | None) -> tuple[Outcome, str]:
        if not isinstance(place.parent, dict):  # an array element: Drop removes object members only
            return Outcome.NOT_APPLICABLE, ""
        del place.parent[place.key]
        return Outcome.REPAIRED, f"dropped {_short(place.value)}"


@dataclass(frozen=True)
class DropUnknown(Repair):
    """Remove every member of the object(s) at *path* that the schema does not name there.

    ``DropUnknown("")`` cleans the payload's top level.  Open objects
    (``customData``) have no closed set of names: not applicable.
    """

    path: str = ""
    kind: ClassVar[str] = "drop-unknown"

    def _fix(self, place: _Place, payload_type: type | None) -> tuple[Outcome, str]:
        known = None if payload_type is None else _known_names(payload_type, self.segments)
        if known is None or not isinstance(place.value, dict):
            return Outcome.NOT_APPLICABLE, ""
        unknown = [name for name in place.value if name not in known]
        if not unknown:
            return Outcome.CONFORMANT, ""
        for name in unknown:
            del place.value[name]
        return Outcome.REPAIRED, "dropped " + _short(unknown)


@functools.lru_cache(maxsize=256)
def _known_names(payload_type: type, segments: tuple[str, ...]) -> frozenset[str] | None:
    """The member names the schema gives the object at *segments* (``None``: not a closed object)."""
    info = mi.type_info(payload_type)
    for segment in segments:
        if isinstance(info, mi.ListType) and (segment == WILDCARD or _INDEX.fullmatch(segment)):
            info = info.item_type
        elif isinstance(info, mi.StructType):
            fields = {f.encode_name: f.type for f in info.fields}
            if segment not in fields:
                return None
            info = fields[segment]
        else:
            return None
    if not isinstance(info, mi.StructType):
        return None
    return frozenset(f.encode_name for f in info.fields)


def apply_repairs(
    tree: Any, repairs: Iterable[Repair], payload_type: type | None = None
) -> list[RepairReport]:
    """Apply *repairs* to *tree* in order (in place; never raises)."""
    return [repair.apply(tree, payload_type) for repair in repairs]
