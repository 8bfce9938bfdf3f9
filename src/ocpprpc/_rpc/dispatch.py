"""What the session needs from a handler registry: routes, the call context, NO_REPLY.

The session depends on this small interface (:class:`Dispatcher`), not on
:class:`~ocpprpc.Router`: the router implements it, and so can anything else that
resolves an action to a handler (a cluster adapter, a plugin chain).  Only
:class:`CallContext` names the session, for type checkers, as the object a handler
calls the peer back through.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias

import msgspec

from .._typed.validation import convert

if TYPE_CHECKING:
    from .session import Session

    _SessionRef: TypeAlias = Session
else:  # what the documentation's signature of CallContext resolves the field's type to
    _SessionRef: TypeAlias = Any

__all__ = ["NO_REPLY", "CallContext", "Dispatcher", "Handler", "NoReply", "Route"]


class NoReply(enum.Enum):
    """Type of the :data:`NO_REPLY` sentinel (an enum so it narrows under mypy)."""

    NO_REPLY = "NO_REPLY"

    def __repr__(self) -> str:
        return "NO_REPLY"


#: Return this from a handler to leave the CALL unanswered.
NO_REPLY: Literal[NoReply.NO_REPLY] = NoReply.NO_REPLY


class CallContext(msgspec.Struct, frozen=True):
    """What a handler knows about the message it is answering, besides its payload.

    (A frozen ``msgspec.Struct``: one is made per inbound CALL, and its C ``__init__``
    costs a seventh of a frozen dataclass's.)
    """

    #: The message id of the CALL (or SEND).
    message_id: str
    #: The action the peer named.
    action: str
    #: The connection's subprotocol (``"ocpp1.6"``, ...).
    protocol: str
    #: The session the message arrived on: call back the peer through it, read its
    #: ``identity`` or keep per-connection state in its ``data`` dict.
    session: _SessionRef
    #: ``True`` for a 2.1 SEND, which is never answered (the return value is ignored).
    is_send: bool = False

    @property
    def identity(self) -> str | None:
        """The charging station identity of the session (shortcut for ``session.identity``)."""
        return self.session.identity

    @property
    def data(self) -> dict[str, Any]:
        """The session's user data dict (shortcut for ``session.data``)."""
        return self.session.data

    @property
    def state(self) -> dict[str, Any]:
        """The state that outlives the connection (shortcut for ``session.state``)."""
        return self.session.state


#: Any handler, as the session sees it: a coroutine function or a plain function.
Handler: TypeAlias = Callable[[Any, CallContext], Any]


@dataclass(frozen=True, slots=True)
class Route:
    """One registration: the handler and how to treat its messages."""

    handler: Handler
    #: ``False``: the handler's response is sent without schema validation, and the
    #: action is listed in the session's ``unvalidated_actions`` for the codec.
    validate: bool = True
    #: The Request subclass the handler was registered with, if any.  A ``dict``
    #: payload (validation off, or the plain JSON codec) is converted to it first.
    request_type: type[Any] | None = None
    #: ``True`` for a plain function (not a coroutine function): it cannot wait, so
    #: the session may run it in its reader task instead of handing it to a worker.
    inline: bool = field(init=False)

    def __post_init__(self) -> None:
        handler = self.handler
        # An object with an ``async def __call__`` is a coroutine function too.
        dunder_call = getattr(type(handler), "__call__", None)  # noqa: B004 (not a callable() test)
        is_async = inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(dunder_call)
        object.__setattr__(self, "inline", not is_async)

    def prepare(self, payload: Any) -> Any:
        """The payload as the handler expects it (raises ``msgspec.ValidationError``)."""
        request_type = self.request_type
        if request_type is None:
            # Registered by action name: the handler gets plain JSON values, validated or not.
            return msgspec.to_builtins(payload) if isinstance(payload, msgspec.Struct) else payload
        if isinstance(payload, request_type):
            return payload
        if isinstance(payload, msgspec.Struct):
            payload = msgspec.to_builtins(payload)
        return convert(payload, request_type)


class Dispatcher(Protocol):
    """What a session asks of its handler registry (:class:`~ocpprpc.Router` is one)."""

    def resolve(self, action: str, protocol: str) -> Route | None:
        """The route for *action* on *protocol*, or ``None`` when nothing handles it."""
        ...

    def unvalidated_actions(self, protocol: str) -> frozenset[str]:
        """Actions whose handler (for *protocol*) opted out of validation."""
        ...
