"""Strict validation: a payload codec that types and checks payloads against the schemas.

Theory of operation
-------------------
:class:`SchemaCodec` is the :class:`~ocpprpc.PayloadCodec` the engine calls for
every payload.  When validation applies to a message (the
:class:`ValidationPolicy` says so, the application did not opt the message
out, and the action has a schema), a payload is decoded straight from bytes
into the action's msgspec Struct: parsing, validation and object construction
are one C pass, cheaper than ``json.loads`` alone.  Otherwise the payload is a
plain ``dict``, exactly as with :class:`~ocpprpc.JsonObjectCodec`.  Outgoing
payloads (a Struct or a dict) are encoded, then validated by decoding the
bytes with the same typed decoder, so both are checked by one mechanism.

A failure becomes a :class:`~ocpprpc.PayloadError` whose code comes from one
table, :data:`VALIDATION_ERROR_CODES` (msgspec's error text -> OCPP error
code), with the JSON path of the fault in ``details["path"]``.  The engine
spells the code for the version (``FormationViolation`` on 1.6).

Protocols load lazily: the generated module of a version (``ocpprpc.v16``
...) is imported, and a message type's decoder built, the first time a
message of that version and action is validated.  A 1.6-only deployment never
imports the 2.x types.  :func:`register_protocol` adds a protocol from a folder
of JSON schemas at runtime (types made with :func:`msgspec.defstruct`).

Two schema rules need more than a msgspec type, and both cost nothing unless
they are hit:

* draft-06 ``integer`` accepts ``7.0``: only when msgspec reports ``Expected
  `int`, got `float``` on a message whose schema file is draft 6 does the codec
  re-read the payload, turn that integral float into an int and convert again;
* 2.x date-times go out with at most 3 fractional digits: only when the
  encoded bytes contain a date-time with more digits is the payload re-encoded
  with each ``datetime`` truncated to milliseconds.

Vendor quirk profiles (:mod:`ocpprpc._typed.quirks`) plug in below the per-action
decoder caches: a codec given a station's quirks (:meth:`SchemaCodec.use_quirks`)
keeps separate caches for what it *receives*, and only for an action the
active profile repairs (and for BootNotification, which may choose the
profile) is the cached decoder one that reads plain JSON, repairs it, then
converts it to the Struct.  The decode path itself is unchanged, so a codec
whose station has no profile, or no repair for the action, costs what it did.

Where the pieces live: the policy and the codec are here;
:mod:`~ocpprpc._typed.error_codes` maps failures to OCPP error codes and
:mod:`~ocpprpc._typed.registry` loads and registers protocols.  Both are
re-exported here, the import path the RPC layer and the tests use.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable
from collections.abc import Set as AbstractSet
from datetime import datetime
from typing import Any

import msgspec

from .._engine.codec import TRUSTED_CODECS, PayloadKind
from .._engine.errors import PayloadError
from .._engine.rules import ErrorCode
from .error_codes import VALIDATION_ERROR_CODES, _split
from .error_codes import payload_error as payload_error  # the tests import it from here
from .quirks import StationQuirks
from .registry import _BUILTIN, ProtocolTypes, _Entry, _protocols, convert, protocol_types, register_protocol
from .schema import open_object_hook

__all__ = [
    "VALIDATION_ERROR_CODES",
    "ProtocolTypes",
    "SchemaCodec",
    "ValidationPolicy",
    "codec_for",
    "convert",
    "protocol_types",
    "register_protocol",
]

# -- the policy -----------------------------------------------------------------------------


class ValidationPolicy:
    """When payloads are validated against the schemas.

    :param enabled: the master switch.
    :param protocols: validate only on these subprotocols (``None``: all).
    :param actions: validate only these actions (``None``: all).

    The three settings are fixed once the policy exists (codecs cache what they
    imply).  :attr:`handler_opt_outs` is the mutable part: a set of actions
    whose *handlers* opted out; their inbound CALL payloads and the responses
    their handlers return are not validated (our own CALLs of the same action
    still are).  A single message opts out with the engine's ``validate=False``.
    """

    __slots__ = ("_actions", "_enabled", "_protocols", "handler_opt_outs")

    def __init__(
        self,
        enabled: bool = True,
        *,
        protocols: Iterable[str] | None = None,
        actions: Iterable[str] | None = None,
    ) -> None:
        self._enabled = enabled
        self._protocols = None if protocols is None else frozenset(protocols)
        self._actions = None if actions is None else frozenset(actions)
        self.handler_opt_outs: set[str] = set()

    @property
    def enabled(self) -> bool:
        """The master switch."""
        return self._enabled

    @property
    def protocols(self) -> frozenset[str] | None:
        """The subprotocols validated (``None``: all)."""
        return self._protocols

    @property
    def actions(self) -> frozenset[str] | None:
        """The actions validated (``None``: all)."""
        return self._actions

    @classmethod
    def off(cls) -> ValidationPolicy:
        """Never validate: payloads are plain dicts."""
        return cls(False)

    @classmethod
    def on(cls) -> ValidationPolicy:
        """Validate every message of every protocol that has schemas."""
        return cls(True)

    @classmethod
    def for_protocols(cls, *protocols: str) -> ValidationPolicy:
        """Validate only on the listed subprotocols (e.g. ``"ocpp2.0.1"``)."""
        return cls(True, protocols=protocols)

    @classmethod
    def for_actions(cls, *actions: str) -> ValidationPolicy:
        """Validate only the listed actions (on every protocol)."""
        return cls(True, actions=actions)

    def covers(self, protocol: str) -> bool:
        """Whether any message of *protocol* may be validated."""
        return self.enabled and (self.protocols is None or protocol in self.protocols)

    def applies(self, protocol: str, action: str) -> bool:
        """Whether *action* on *protocol* is validated (handler opt-outs aside)."""
        return self.covers(protocol) and (self.actions is None or action in self.actions)

    def __repr__(self) -> str:
        return (
            f"ValidationPolicy(enabled={self.enabled}, protocols={self.protocols},"
            f" actions={self.actions}, handler_opt_outs={self.handler_opt_outs})"
        )


# -- the codec ------------------------------------------------------------------------------------

_dict_decoder = msgspec.json.Decoder(dict[str, Any])
_any_decoder = msgspec.json.Decoder()
_encode = msgspec.json.Encoder().encode
_REQUEST = PayloadKind.REQUEST
_RESPONSE = PayloadKind.RESPONSE
_INT_GOT_FLOAT = "Expected `int`, got `float`"
_OPEN_BRACE = ord("{")
#: A date-time with more than 3 fractional digits somewhere in the encoded payload.
_PRECISE_DATETIME = re.compile(rb'"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d\.\d{4}')


#: The decoders a policy calls for, per action, as (requests, responses): one pair per protocol
#: (and registration of it) and policy settings, shared by every codec with those, so a CSMS
#: looks each action up once rather than once per station, and an idle station's codec holds
#: no tables of its own (bench_idle: ~0.6 KB per connection, more once it has called).
_Lookups = tuple[
    dict[str, Callable[[bytes | memoryview], Any] | None],
    dict[str, Callable[[bytes | memoryview], Any] | None],
]
_shared_lookups: dict[tuple[object, ...], _Lookups] = {}


def _lookups_for(protocol: str, policy: ValidationPolicy) -> _Lookups:
    # A registered protocol may be replaced (register_protocol(replace=True)): its types
    # object is part of the key, and the tables of the types it replaced are dropped.
    registered = None if protocol in _BUILTIN else _protocols.get(protocol)  # built-ins: never replaced
    key = (protocol, registered, policy.enabled, policy.protocols, policy.actions)
    found = _shared_lookups.get(key)
    if found is None:
        if registered is not None:
            for stale in [k for k in _shared_lookups if k[0] == protocol and k[1] is not registered]:
                del _shared_lookups[stale]
        found = _shared_lookups[key] = ({}, {})
    return found


def _fraction_digits(protocol: str) -> int | None:
    """The cap on outgoing date-times' fractional digits of *protocol* (``None``: none, or unknown yet)."""
    if protocol in _BUILTIN:
        return _BUILTIN[protocol][1]
    registered = _protocols.get(protocol)
    return None if registered is None else registered.datetime_fraction_digits


class SchemaCodec:
    """A :class:`~ocpprpc.PayloadCodec` that types and validates payloads of one protocol.

    * decode, validation on, action with a schema: an instance of the action's
      Struct (e.g. :class:`ocpprpc.v16.BootNotificationRequest`);
    * validation off (policy or ``validate=False``), or an action without a
      schema (vendor actions): a plain ``dict``;
    * encode: a Struct or a dict; with validation on it is checked against the
      schema before the bytes are returned, otherwise a :class:`PayloadError`.

    The protocol's types load on first use, so a codec whose policy never
    validates never imports them.  Per action and kind, the decoder the policy
    calls for is looked up once and cached: the hot path is a dict lookup and
    msgspec's C decoder.
    """

    # Slots: a CSMS has one codec per station.
    __slots__ = (
        "_digits",
        "_in_requests",
        "_in_responses",
        "_opt_outs",
        "_quirks",
        "_requests",
        "_responses",
        "_types",
        "plain",
        "policy",
        "protocol",
    )

    def __init__(
        self,
        protocol: str,
        policy: ValidationPolicy | None = None,
        *,
        handler_opt_outs: AbstractSet[str] | None = None,
    ) -> None:
        self.protocol = protocol
        self.policy = policy if policy is not None else ValidationPolicy.on()
        self._types: ProtocolTypes | None = None
        # action -> the validating decoder's decode method, or None when the policy does not
        # validate it (the hot path is one dict lookup and one C call); shared, see above.
        self._requests, self._responses = _lookups_for(protocol, self.policy)
        # The policy's (mutable) set itself, or the set given: a server's sessions share one.
        self._opt_outs = self.policy.handler_opt_outs if handler_opt_outs is None else handler_opt_outs
        # What decode() uses: the same dicts, unless quirks repair what we receive.
        self._in_requests = self._requests
        self._in_responses = self._responses
        self._quirks: StationQuirks | None = None
        # Known without loading the types: a codec may only ever use the shared tables.
        self._digits = _fraction_digits(protocol)
        #: No message of the protocol is ever validated: payloads are plain dicts
        #: (the engine then reads and writes them itself, see ``TRUSTED_CODECS``).
        self.plain = not self.policy.covers(protocol)

    def __repr__(self) -> str:
        return f"<SchemaCodec {self.protocol} {self.policy!r}>"

    @property
    def types(self) -> ProtocolTypes:
        """The protocol's typed messages (loaded now if they were not yet)."""
        if self._types is None:
            self._types = protocol_types(self.protocol)
            self._digits = self._types.datetime_fraction_digits  # registered since __init__, maybe
        return self._types

    @property
    def known_actions(self) -> Collection[str]:
        """Every action of the protocol (for telling NotSupported from NotImplemented)."""
        return self.types.actions.keys()

    def _lookup(self, action: str, kind: PayloadKind) -> Callable[[bytes | memoryview], Any] | None:
        """What the policy says for *action* (handler opt-outs aside), cached."""
        entry = self._entry(action, kind)
        decode = None if entry is None else entry.decoder.decode
        (self._requests if kind is _REQUEST else self._responses)[action] = decode
        return decode

    @property
    def quirks(self) -> StationQuirks | None:
        """The quirks of the station this codec's connection talks to (see :meth:`use_quirks`)."""
        return self._quirks

    def use_quirks(self, quirks: StationQuirks) -> None:
        """Repair received payloads as *quirks*' active profile says, before validating them.

        Only the payloads that are validated are repaired: repairs exist to get a
        payload through validation, and unvalidated payloads reach the
        application as they came.
        """
        self._quirks = quirks
        self._in_requests = {}
        self._in_responses = {}
        quirks.on_change = self._forget_received

    def _forget_received(self) -> None:
        """The profile changed: choose the decoders of received payloads afresh."""
        self._in_requests.clear()
        self._in_responses.clear()

    def _lookup_received(self, action: str, kind: PayloadKind) -> Callable[[bytes | memoryview], Any] | None:
        """The decoder of a received payload: the validating one, wrapped if quirks apply to it."""
        decode = self._lookup(action, kind)
        quirks = self._quirks
        if quirks is None:  # _lookup cached it in the shared dict
            return decode
        entry = self._entry(action, kind)
        if decode is not None and entry is not None:
            decode = self._repairing(action, kind, entry, decode, quirks)
        (self._in_requests if kind is _REQUEST else self._in_responses)[action] = decode
        return decode

    def _repairing(
        self,
        action: str,
        kind: PayloadKind,
        entry: _Entry,
        strict: Callable[[bytes | memoryview], Any],
        quirks: StationQuirks,
    ) -> Callable[[bytes | memoryview], Any]:
        """*strict*, or a decoder that repairs the payload first if the profile has repairs for it."""
        call = kind is _REQUEST
        chooses = call and action == "BootNotification" and quirks.selects_on_boot
        if not chooses and not quirks.repairs(action, call):
            return strict

        def decode(data: bytes | memoryview) -> Any:
            try:
                tree = _any_decoder.decode(data)
            except RecursionError:  # nested too deep to repair: validation has its say
                return strict(data)
            if chooses:  # the raw fields choose the profile, then its repairs apply to this message
                quirks.boot(tree)
            repairs = quirks.repairs(action, call)
            if not repairs or type(tree) is not dict:
                return strict(data)
            quirks.repair(action, call, tree, repairs, entry.type)
            try:
                return msgspec.convert(tree, entry.type, dec_hook=open_object_hook)
            except msgspec.ValidationError as exc:
                return _make_valid(entry, tree, exc)

        return decode

    def _entry(self, action: str, kind: PayloadKind) -> _Entry | None:
        if not self.policy.applies(self.protocol, action):
            return None
        return self.types.entry(action, kind)

    def decode(
        self, action: str, kind: PayloadKind, data: bytes | memoryview | msgspec.Raw, *, validate: bool = True
    ) -> Any:
        if validate:
            try:
                typed = (self._in_requests if kind is _REQUEST else self._in_responses)[action]
            except KeyError:
                typed = self._lookup_received(action, kind)
            # A handler's opt-out covers the CALL it receives.
            if typed is not None and not (self._opt_outs and kind is _REQUEST and action in self._opt_outs):
                try:
                    return typed(data)
                except msgspec.ValidationError as exc:
                    return self._retry(action, kind, data, exc)
                except msgspec.DecodeError as exc:
                    raise payload_error(exc) from exc
        try:
            return _dict_decoder.decode(data)
        except msgspec.MsgspecError as exc:  # e.g. {"a": 1e400}: valid JSON, out of range
            raise PayloadError(ErrorCode.FORMAT_VIOLATION, str(exc)) from exc

    def encode(self, action: str, kind: PayloadKind, payload: Any, *, validate: bool = True) -> bytes:
        try:
            out = _encode(payload)
        except (TypeError, ValueError, msgspec.MsgspecError) as exc:
            raise PayloadError(
                ErrorCode.FORMAT_VIOLATION, f"payload is not JSON-serialisable: {exc}"
            ) from exc
        if out[0] != _OPEN_BRACE:  # cheaper than isinstance() up front: the output says it
            raise PayloadError(
                ErrorCode.FORMAT_VIOLATION,
                f"payload must be a JSON object (a dict or a msgspec Struct), not {type(payload).__name__}",
            )
        if not validate:
            return out
        try:
            typed = (self._requests if kind is _REQUEST else self._responses)[action]
        except KeyError:
            typed = self._lookup(action, kind)
        # A handler's opt-out covers the response it returns.
        if typed is None or (self._opt_outs and kind is _RESPONSE and action in self._opt_outs):
            return out
        # Validate what goes on the wire by reading it back with the typed decoder.
        try:
            obj = typed(out)
        except msgspec.ValidationError as exc:
            obj = self._retry(action, kind, out, exc)
        digits = self._digits
        if digits is not None and _PRECISE_DATETIME.search(out):
            builtins = msgspec.to_builtins(obj, builtin_types=(datetime,))
            out = _encode(_cap_fractions(builtins, digits))
        return out

    def _retry(
        self,
        action: str,
        kind: PayloadKind,
        data: bytes | memoryview | msgspec.Raw,
        exc: msgspec.ValidationError,
    ) -> Any:
        """Draft 6 reads ``7.0`` as an integer: fix each such value the error names, convert again."""
        entry = self._entry(action, kind)
        assert entry is not None  # a decoder failed, so there is one
        if not entry.integral_floats or not str(exc).startswith(_INT_GOT_FLOAT):
            raise payload_error(exc) from exc
        return _make_valid(entry, _any_decoder.decode(data), exc)


def _make_valid(entry: _Entry, tree: Any, exc: msgspec.ValidationError) -> Any:
    """*tree* converted to *entry*'s type after *exc*, fixing integral floats (draft 6) if that is all."""
    if not entry.integral_floats or not str(exc).startswith(_INT_GOT_FLOAT):
        raise payload_error(exc) from exc
    while True:
        _, path = _split(str(exc))
        if not _make_integral(tree, path):
            raise payload_error(exc) from exc
        try:
            return msgspec.convert(tree, entry.type, dec_hook=open_object_hook)
        except msgspec.ValidationError as again:
            exc = again
            if not str(exc).startswith(_INT_GOT_FLOAT):
                raise payload_error(exc) from exc


_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


def _make_integral(tree: Any, path: str) -> bool:
    """Replace the integral float at *path* (``$.a[0].b``) in *tree* by an int."""
    steps: list[str | int] = [
        name if name else int(index) for name, index in _STEP.findall(path.removeprefix("$"))
    ]
    if not steps:
        return False
    parent = tree
    for step in steps[:-1]:
        parent = parent[step]
    value = parent[steps[-1]]
    if isinstance(value, float) and value.is_integer():
        parent[steps[-1]] = int(value)
        return True
    return False


def _cap_fractions(value: Any, digits: int) -> Any:
    """*value* (from ``to_builtins``) with every datetime as RFC 3339 text, at most *digits* decimals."""
    if isinstance(value, dict):
        return {k: _cap_fractions(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [_cap_fractions(v, digits) for v in value]
    if isinstance(value, datetime):
        micro = value.microsecond
        kept = f"{micro:06d}"[:digits]
        text = value.replace(microsecond=0).isoformat()
        if kept.strip("0"):
            text = text[:19] + "." + kept + text[19:]
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    return value


# The engine may hand it a frame's msgspec.Raw and skip work for it (see TRUSTED_CODECS).
TRUSTED_CODECS.add(SchemaCodec)


def codec_for(
    protocol: str, policy: ValidationPolicy | None = None, *, handler_opt_outs: AbstractSet[str] | None = None
) -> SchemaCodec:
    """The validating codec for *protocol* (``"ocpp1.6"``, ``"ocpp2.0.1"``, ``"ocpp2.1"``, registered).

    *policy* defaults to :meth:`ValidationPolicy.on`.  Nothing is imported until a
    message needs the types.  *handler_opt_outs*, if given, is consulted instead of
    the policy's :attr:`~ValidationPolicy.handler_opt_outs` (so that many codecs
    can share one policy and one set).
    """
    if protocol not in _BUILTIN and protocol not in _protocols:
        raise LookupError(f"no schemas for protocol {protocol!r}; add them with register_protocol()")
    return SchemaCodec(protocol, policy, handler_opt_outs=handler_opt_outs)
