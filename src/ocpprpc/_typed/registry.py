"""The protocols the validating codec knows: their types and per-message decoders, loaded lazily.

A built-in version's generated module (``ocpprpc.v16`` ...) is imported the first time it is
asked for; :func:`register_protocol` adds a vendor protocol from a folder of JSON schemas.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

import msgspec

from .._engine.codec import PayloadKind
from .messages import ActionSpec, Direction
from .schema import build_model, build_types, load_schemas, open_object_hook

__all__ = ["ProtocolTypes", "convert", "protocol_types", "register_protocol"]

T = TypeVar("T")

# -- protocols: types and decoders, loaded lazily ------------------------------------------------

_BUILTIN: Mapping[str, tuple[str, int | None]] = MappingProxyType(
    {
        "ocpp1.6": ("ocpprpc.v16", None),
        # OCPP 2.x Part 2, "Primitive datatypes", dateTime: at most 3 fractional digits.
        "ocpp2.0.1": ("ocpprpc.v201", 3),
        "ocpp2.1": ("ocpprpc.v21", 3),
    }
)


@dataclass(frozen=True, slots=True)
class _Entry:
    type: type[Any]
    decoder: msgspec.json.Decoder[Any]
    #: Draft 6+: an integer may be written 7.0.
    integral_floats: bool


class ProtocolTypes:
    """The typed messages of one protocol: its action registry and per-message decoders."""

    def __init__(
        self,
        protocol: str,
        actions: Mapping[str, ActionSpec],
        drafts: Mapping[str, int],
        *,
        datetime_fraction_digits: int | None = None,
        namespace: Mapping[str, type] | None = None,
    ) -> None:
        self.protocol = protocol
        #: action -> :class:`ActionSpec` (payload types, direction).
        self.actions = actions
        self.datetime_fraction_digits = datetime_fraction_digits
        #: Every generated or built type by name (enums, Structs).
        self.namespace: Mapping[str, type] = namespace if namespace is not None else MappingProxyType({})
        self._drafts = drafts
        self._entries: dict[tuple[str, PayloadKind], _Entry | None] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<ProtocolTypes {self.protocol} actions={len(self.actions)}>"

    def payload_type(self, action: str, kind: PayloadKind) -> type[Any] | None:
        """The Struct of *action*'s request or response, ``None`` if there is none."""
        spec = self.actions.get(action)
        if spec is None:
            return None
        return spec.request if kind is PayloadKind.REQUEST else spec.response

    def entry(self, action: str, kind: PayloadKind) -> _Entry | None:
        key = (action, kind)
        try:
            return self._entries[key]
        except KeyError:
            pass
        typ = self.payload_type(action, kind)
        entry = None
        if typ is not None:
            decoder = msgspec.json.Decoder(typ, dec_hook=open_object_hook)
            entry = _Entry(typ, decoder, self._drafts.get(typ.__name__, 6) >= 6)
        with self._lock:
            return self._entries.setdefault(key, entry)


_protocols: dict[str, ProtocolTypes] = {}
_registry_lock = threading.Lock()


def protocol_types(protocol: str) -> ProtocolTypes:
    """The typed messages of a built-in or registered protocol (imported on first use)."""
    try:
        return _protocols[protocol]
    except KeyError:
        pass
    if protocol not in _BUILTIN:
        raise LookupError(f"no schemas for protocol {protocol!r}; add them with register_protocol()")
    module_name, digits = _BUILTIN[protocol]
    module = importlib.import_module(module_name)
    namespace = MappingProxyType({name: getattr(module, name) for name in module.__all__})
    types = ProtocolTypes(
        protocol,
        module.ACTIONS,
        module.SCHEMA_DRAFTS,
        datetime_fraction_digits=digits,
        namespace=namespace,
    )
    with _registry_lock:
        return _protocols.setdefault(protocol, types)


def register_protocol(
    protocol: str,
    schema_dir: str | Path,
    *,
    directions: Mapping[str, Direction] | None = None,
    default_direction: Direction = Direction.BOTH,
    datetime_fraction_digits: int | None = None,
    replace: bool = False,
) -> ProtocolTypes:
    """Register a (vendor) protocol from a folder of JSON schemas.

    The folder holds one schema per message, named like the OCA files:
    ``<Action>Request.json`` (or ``<Action>.json``) and ``<Action>Response.json``;
    an action with no response schema is SEND-only.  The types are made at once
    with :func:`msgspec.defstruct` by the same machinery that generated
    :mod:`ocpprpc.v201`, and validate and type like the built-in ones.

    :param directions: who may send each action (default: *default_direction*).
    :param datetime_fraction_digits: cap on fractional second digits of outgoing
        date-times (3 for a 2.x-based protocol), ``None`` for no cap.
    :param replace: allow replacing a protocol registered before (never a built-in one).
    """
    if protocol in _BUILTIN:
        raise ValueError(f"{protocol!r} is built in and cannot be replaced")
    model = build_model(protocol, load_schemas(schema_dir), directions, default_direction=default_direction)
    built = build_types(model)
    types = ProtocolTypes(
        protocol,
        built.actions,
        built.drafts,
        datetime_fraction_digits=datetime_fraction_digits,
        namespace=built.namespace,
    )
    with _registry_lock:
        if protocol in _protocols and not replace:
            raise ValueError(f"protocol {protocol!r} is already registered (pass replace=True)")
        _protocols[protocol] = types
    return types


def convert(obj: Any, type: type[T]) -> T:
    """:func:`msgspec.convert` for typed OCPP messages (knows open objects such as ``customData``).

    For example ``convert(payload_dict, v201.BootNotificationResponse)``.
    """
    return msgspec.convert(obj, type, dec_hook=open_object_hook)
