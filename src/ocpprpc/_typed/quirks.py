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

The repairs and the path grammar are in :mod:`~ocpprpc._typed.repairs` (re-exported
here); this module matches stations to profiles and remembers the choice.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from .repairs import Coerce, Drop, DropUnknown, MapEnum, Repair, RepairReport, Truncate, _short, parse_path
from .repairs import Outcome as Outcome  # the tests import these two from here
from .repairs import apply_repairs as apply_repairs

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

#: Stations remembered by :class:`Quirks` by default (least recently seen forgotten first).
DEFAULT_MEMORY: Final = 10_000


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
