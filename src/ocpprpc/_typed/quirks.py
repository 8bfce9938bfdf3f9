"""Vendor quirk profiles: declared repairs of known non-conformant payloads, before validation.

Theory of operation
-------------------
Real chargers send payloads strict validation rejects (a serial number too
long, a number where the schema wants a string, a measurand outside the
enum).  A :class:`QuirkProfile` names such a station (:class:`Match`: its
BootNotification vendor, model and firmware, its identity, the protocol) and
the repairs its payloads need, per action and direction: ``calls`` repair
the CALLs the station sends, ``results`` the CALLRESULTs answering our CALLs.

:class:`Quirks` holds the profiles of a CSMS (or a station) and remembers, per
identity and bounded, which profile a station got.  Each connection gets a
:class:`StationQuirks`: the profile chosen at connect time (remembered, or
decided by identity and protocol alone), replaced when the station's
BootNotification arrives, matched on the *raw* BootNotification fields
because that message is typically the one that needs the repair.

The repairs themselves run inside the schema codec
(:class:`~ocpprpc.SchemaCodec`), only for the actions the active profile
repairs: the payload is read as plain JSON, repaired here, then converted to
its Struct and so validated as strictly as ever.  Every other message takes
the unchanged fast path.  Repairs never raise: a path that finds nothing (a
missing field, a wrong type on the way, a value the repair cannot handle) is
counted as "not applicable" and validation has the last word.

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
import logging
import math
import re
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

import msgspec
import msgspec.inspect as mi

__all__ = [
    "Coerce",
    "Drop",
    "DropUnknown",
    "MapEnum",
    "Match",
    "Prefix",
    "QuirkProfile",
    "Quirks",
    "QuirksArg",
    "Repair",
    "RepairReport",
    "StationQuirks",
    "Truncate",
    "as_quirks",
    "parse_path",
]

log = logging.getLogger("ocpprpc.quirks")

#: Values are cut to this many characters in log lines (payloads may carry id tokens).
LOG_VALUE_CHARS: Final = 32
#: Stations remembered by :class:`Quirks` by default (least recently seen forgotten first).
DEFAULT_MEMORY: Final = 10_000

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


# -- matching -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Prefix:
    """Match a value that starts with :attr:`text` (``Prefix("1.2.")``)."""

    text: str


#: How a :class:`Match` field is matched: a ``str`` exactly, a :class:`Prefix`,
#: or a compiled regular expression (the whole value must match it).
Pattern = str | Prefix | re.Pattern[str]


def _matches(pattern: Pattern, value: str | None) -> bool:
    if value is None:
        return False
    if isinstance(pattern, str):
        return value == pattern
    if isinstance(pattern, Prefix):
        return value.startswith(pattern.text)
    return pattern.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class BootInfo:
    """What a BootNotification says the station is (raw values, before validation)."""

    vendor: str | None = None
    model: str | None = None
    firmware: str | None = None


def _text(value: Any) -> str | None:
    """A raw field as text for matching: strings as they are, numbers in their JSON spelling."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return msgspec.json.encode(value).decode()
    return None


def boot_info(payload: Any) -> BootInfo:
    """The vendor, model and firmware a raw BootNotification names (1.6 and 2.x shapes)."""
    if not isinstance(payload, dict):
        return BootInfo()
    station = payload.get("chargingStation")
    if isinstance(station, dict):  # 2.0.1, 2.1
        return BootInfo(
            _text(station.get("vendorName")),
            _text(station.get("model")),
            _text(station.get("firmwareVersion")),
        )
    return BootInfo(
        _text(payload.get("chargePointVendor")),
        _text(payload.get("chargePointModel")),
        _text(payload.get("firmwareVersion")),
    )


@dataclass(frozen=True, slots=True)
class Match:
    """Which stations a profile is for; every condition given must hold (none: every station).

    ``vendor``, ``model`` and ``firmware`` are read from the station's
    BootNotification (1.6 ``chargePointVendor``/``chargePointModel``/
    ``firmwareVersion``, 2.x ``chargingStation.vendorName``/``model``/
    ``firmwareVersion``); a profile with any of them is chosen when that
    message arrives.  ``identity`` and ``protocols`` are known at connect time.
    """

    vendor: Pattern | None = None
    model: Pattern | None = None
    firmware: Pattern | None = None
    identity: Pattern | None = None
    #: The subprotocols the profile's paths are written for (``None``: all).
    protocols: Collection[str] | None = None

    @property
    def needs_boot(self) -> bool:
        """Whether the profile can only be chosen once the BootNotification is known."""
        return self.vendor is not None or self.model is not None or self.firmware is not None

    def at_connect(self, identity: str, protocol: str) -> bool:
        """Whether the connect-time conditions (identity, protocol) hold."""
        if self.protocols is not None and protocol not in self.protocols:
            return False
        return self.identity is None or _matches(self.identity, identity)

    def at_boot(self, identity: str, protocol: str, boot: BootInfo) -> bool:
        """Whether every condition holds for a station that booted as *boot*."""
        for pattern, value in (
            (self.vendor, boot.vendor),
            (self.model, boot.model),
            (self.firmware, boot.firmware),
        ):
            if pattern is not None and not _matches(pattern, value):
                return False
        return self.at_connect(identity, protocol)


#: Repairs per action: ``{"BootNotification": [Truncate("chargePointSerialNumber", 25)]}``.
RepairTable = Mapping[str, Sequence[Repair]]


@dataclass(frozen=True)
class QuirkProfile:
    """The known quirks of one kind of station, and what to do about them.

    :param name: for log lines.
    :param match: which stations (default: every station).
    :param calls: repairs of the CALL payloads the station sends, per action.
    :param results: repairs of the CALLRESULT payloads answering our CALLs, per action.
    """

    name: str
    match: Match = field(default_factory=Match)
    calls: RepairTable = field(default_factory=dict)
    results: RepairTable = field(default_factory=dict)

    def __post_init__(self) -> None:
        for table in ("calls", "results"):
            frozen = {action: tuple(repairs) for action, repairs in getattr(self, table).items()}
            for action, repairs in frozen.items():
                for repair in repairs:
                    if not isinstance(repair, Repair):
                        raise TypeError(f"profile {self.name!r}, {action}: {repair!r} is not a Repair")
            object.__setattr__(self, table, frozen)

    def repairs(self, action: str, call: bool) -> tuple[Repair, ...]:
        """The repairs of *action*'s CALL payloads (*call*) or of its CALLRESULT payloads."""
        return tuple((self.calls if call else self.results).get(action, ()))


# -- selection and memory -----------------------------------------------------------------------


@dataclass(slots=True)
class _Remembered:
    profile: QuirkProfile | None = None
    #: A BootNotification decided the profile (otherwise only connect-time conditions did).
    booted: bool = False
    #: (action, direction, path, kind) already logged for this station.
    logged: set[tuple[str, str, str, str]] = field(default_factory=set)


class Quirks:
    """The quirk profiles of a CSMS, and which station got which (remembered across reconnects).

    :param profiles: tried in order; the first that matches a station is its profile.
    :param memory: stations remembered (least recently connected forgotten first).
    """

    def __init__(self, profiles: Iterable[QuirkProfile], *, memory: int = DEFAULT_MEMORY) -> None:
        self.profiles = tuple(profiles)
        names = [p.name for p in self.profiles]
        if len(set(names)) != len(names):
            raise ValueError(f"quirk profile names must be unique: {names}")
        if memory < 1:
            raise ValueError("Quirks memory must be at least 1")
        self.memory = memory
        self._stations: OrderedDict[str, _Remembered] = OrderedDict()

    def __repr__(self) -> str:
        return f"<Quirks {[p.name for p in self.profiles]} remembering {len(self._stations)}>"

    def remembered(self, identity: str) -> QuirkProfile | None:
        """The profile *identity* got last (``None``: none, or not remembered)."""
        entry = self._stations.get(identity)
        return None if entry is None else entry.profile

    def _entry(self, identity: str) -> _Remembered:
        entry = self._stations.get(identity)
        if entry is None:
            entry = self._stations[identity] = _Remembered()
            while len(self._stations) > self.memory:
                self._stations.popitem(last=False)
        else:
            self._stations.move_to_end(identity)
        return entry

    def bind(self, identity: str, protocol: str) -> StationQuirks:
        """The quirks of one connection: the profile known at connect time, if any."""
        return StationQuirks(self, identity, protocol)


class StationQuirks:
    """The quirks of one connection (made by :meth:`Quirks.bind`; the schema codec drives it)."""

    def __init__(self, quirks: Quirks, identity: str, protocol: str) -> None:
        self.quirks = quirks
        self.identity = identity
        self.protocol = protocol
        #: Profiles of this protocol whose identity condition holds (boot conditions still open).
        self.candidates = tuple(p for p in quirks.profiles if p.match.at_connect(identity, protocol))
        #: Whether a BootNotification can change the profile (the codec then reads it first).
        self.selects_on_boot = any(p.match.needs_boot for p in self.candidates)
        #: Called when the profile changes (the codec forgets its per-action decoders).
        self.on_change: Callable[[], None] | None = None
        self._memory = quirks._entry(identity)
        remembered = self._memory.profile
        if self._memory.booted:
            self.profile = remembered if remembered in self.candidates else None
        else:
            self.profile = next((p for p in self.candidates if not p.match.needs_boot), None)
            self._memory.profile = self.profile
        if self.profile is not None:
            log.info("station %r: quirk profile %r", identity, self.profile.name)

    def __repr__(self) -> str:
        name = None if self.profile is None else self.profile.name
        return f"<StationQuirks {self.identity!r} profile={name!r}>"

    def repairs(self, action: str, call: bool) -> tuple[Repair, ...]:
        """The active profile's repairs for *action* (``()`` without a profile)."""
        return () if self.profile is None else self.profile.repairs(action, call)

    def boot(self, payload: Any) -> None:
        """Choose the profile from a raw BootNotification payload (before it is validated)."""
        info = boot_info(payload)
        profile = next(
            (p for p in self.candidates if p.match.at_boot(self.identity, self.protocol, info)), None
        )
        memory = self._memory
        memory.booted = True
        memory.profile = profile
        if profile is self.profile:
            return
        self.profile = profile
        if profile is not None:
            log.info(
                "station %r: quirk profile %r (vendor %s, model %s, firmware %s)",
                self.identity,
                profile.name,
                _short(info.vendor),
                _short(info.model),
                _short(info.firmware),
            )
        else:
            log.info("station %r: no quirk profile for its BootNotification", self.identity)
        if self.on_change is not None:
            self.on_change()

    def repair(
        self, action: str, call: bool, tree: Any, repairs: Iterable[Repair], payload_type: type | None
    ) -> list[RepairReport]:
        """Apply *repairs* to *tree*; log each kind of repair once per station (INFO)."""
        reports = apply_repairs(tree, repairs, payload_type)
        direction = "CALL" if call else "CALLRESULT"
        logged = self._memory.logged
        for report in reports:
            repair = report.repair
            if report.repaired:
                key = (action, direction, repair.path, repair.kind)
                if key not in logged:
                    logged.add(key)
                    log.info(
                        "station %r %s %s: quirk profile %r repaired %s (%s, %d place(s)); %s",
                        self.identity,
                        action,
                        direction,
                        self.profile.name if self.profile is not None else None,
                        repair.path or "/",
                        repair.kind,
                        report.repaired,
                        report.first,
                    )
            if report.not_applicable:
                log.debug(
                    "station %r %s %s: %s %s not applicable at %d place(s)",
                    self.identity,
                    action,
                    direction,
                    repair.kind,
                    repair.path or "/",
                    report.not_applicable,
                )
        return reports


#: ``quirks=`` of :class:`~ocpprpc.Server` and :func:`~ocpprpc.connect`: a :class:`Quirks`,
#: or its profiles.
QuirksArg = Quirks | Sequence[QuirkProfile] | None


def as_quirks(quirks: QuirksArg) -> Quirks | None:
    """*quirks* as a :class:`Quirks` (``None`` if there are no profiles)."""
    if quirks is None or isinstance(quirks, Quirks):
        return quirks if quirks is None or quirks.profiles else None
    return Quirks(quirks) if quirks else None
