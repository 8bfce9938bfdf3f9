"""What a connection needs to know about the protocol it negotiated.

Client and server both end up with a WebSocket speaking some subprotocol; this
module turns "protocol + validation setting" into the engine (with the right
payload codec) and the session options that depend on the protocol: which
actions it defines (``NotSupported`` vs ``NotImplemented``) and the set through
which handlers opt out of validation.  Vendor quirk profiles attach here too:
the codec of a validating connection gets the quirks of the station it talks to.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from collections.abc import Set as AbstractSet
from typing import Any

from .._engine.codec import JsonObjectCodec, PayloadCodec
from .._engine.connection import Connection
from .._engine.rules import Role
from .._typed.quirks import QuirksArg, as_quirks
from .._typed.validation import ValidationPolicy, codec_for, protocol_types

__all__ = ["ValidationArg", "check_protocols", "session_parts"]

#: ``False`` (off), ``True`` (every message), or a :class:`ValidationPolicy`.
ValidationArg = bool | ValidationPolicy


#: The policies of ``validation=True`` and ``False`` when sessions share them (see session_parts()).
_SHARED_POLICIES = {True: ValidationPolicy.on(), False: ValidationPolicy.off()}


def _policy(validation: ValidationArg) -> ValidationPolicy:
    """A fresh policy for one connection (its handler opt-outs are that session's own)."""
    if isinstance(validation, ValidationPolicy):
        return ValidationPolicy(
            validation.enabled, protocols=validation.protocols, actions=validation.actions
        )
    return ValidationPolicy(bool(validation))


def _has_schemas(protocol: str) -> bool:
    try:
        protocol_types(protocol)
    except LookupError:
        return False
    return True


def check_protocols(protocols: Iterable[str], validation: ValidationArg) -> None:
    """Refuse, up front, to validate a protocol that has no schemas (a silent no-op otherwise)."""
    policy = _policy(validation)
    for protocol in protocols:
        if policy.covers(protocol) and not _has_schemas(protocol):
            raise ValueError(
                f"validation is on for {protocol!r} but it has no schemas;"
                " register them with ocpprpc.register_protocol() or turn validation off for it"
            )


def session_parts(
    role: Role,
    protocol: str,
    validation: ValidationArg,
    *,
    max_outstanding_calls: int | None = None,
    detailed_errors: bool = False,
    max_bad_messages: int | None = None,
    quirks: QuirksArg = None,
    identity: str = "",
    handler_opt_outs: frozenset[str] | None = None,
) -> tuple[Connection, dict[str, Any]]:
    """The engine for one connection, and the protocol-dependent :class:`Session` options.

    *quirks* (profiles, or a :class:`~ocpprpc.Quirks` shared by every connection so
    that it remembers stations) repair what *identity* sends before it is validated;
    without validation they have nothing to do.

    *handler_opt_outs*: every action whose handler opted out of validation, known up
    front (a server's router: ``Router.unvalidated_actions()``).  The session and its
    codec then share it and the policy with every other session given the same,
    rather than each getting a policy and a set of its own (~0.3 KB per connection).
    """
    codec: PayloadCodec
    known: Collection[str]
    unvalidated: AbstractSet[str]
    if handler_opt_outs is None:
        policy = _policy(validation)
        opt_outs: AbstractSet[str] = policy.handler_opt_outs
    else:
        policy = (
            validation if isinstance(validation, ValidationPolicy) else _SHARED_POLICIES[bool(validation)]
        )
        opt_outs = handler_opt_outs
    try:
        schema_codec = codec_for(protocol, policy, handler_opt_outs=opt_outs)
    except LookupError:
        # A vendor protocol without schemas: plain JSON objects, every action "unknown".
        codec, known, unvalidated = (
            JsonObjectCodec(),
            frozenset(),
            set[str]() if handler_opt_outs is None else opt_outs,
        )
    else:
        codec, known, unvalidated = schema_codec, schema_codec.known_actions, opt_outs
        registry = as_quirks(quirks)
        if registry is not None and not schema_codec.plain:
            schema_codec.use_quirks(registry.bind(identity, protocol))
    connection = Connection(
        role,
        protocol,
        codec=codec,
        max_outstanding_calls=max_outstanding_calls,
        detailed_errors=detailed_errors,
        max_bad_messages=max_bad_messages,
    )
    return connection, {"known_actions": known, "unvalidated_actions": unvalidated}
