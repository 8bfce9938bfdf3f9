"""Handler registry: which function answers which inbound CALL (or 2.1 SEND).

A :class:`Router` holds no connection state, so one router can serve every
session of a CSMS: handlers are registered once, at start-up, and each session
looks them up per message.  A handler is ``async def handler(request, ctx)``
or a plain ``def handler(request, ctx)``, where *request* is the decoded payload
(a typed Struct, or a ``dict``) and *ctx* a :class:`CallContext`.  A plain
function cannot wait, so it cannot call the peer back or hold up the reader for
long: the session runs it inline in its reader task, saving the hand-off to a
worker task (see :attr:`Route.inline`).  What a handler returns becomes the answer:

* a Struct or a ``dict``: the CALLRESULT payload;
* :data:`NO_REPLY`: no answer at all (the peer's call times out; rarely wanted,
  but some CSMS workflows answer out of band);
* raising :class:`~ocpprpc.OCPPError`: that CALLERROR;
* raising anything else: an ``InternalError`` CALLERROR; the exception is
  logged and the session carries on.

Lookup precedence, most specific first: a handler registered for this
protocol version, then a generic one for the action, then the catch-all
(:meth:`Router.on_any`).  Registering a key twice is an error, because silently
replacing a handler hides configuration mistakes in large CSMS code bases.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ParamSpec, Protocol, TypeAlias, TypeVar, overload

from .dispatch import NO_REPLY, CallContext, Handler, NoReply, Route

__all__ = ["NO_REPLY", "CallContext", "Handler", "NoReply", "Route", "Router"]


_P = ParamSpec("_P")
_Q = TypeVar("_Q")
_R = TypeVar("_R")
_Qco = TypeVar("_Qco", covariant=True)
_Rco = TypeVar("_Rco", covariant=True)
_H = TypeVar("_H", bound=Handler)

#: A handler for the request type ``_Q`` whose response type is ``_R`` (async or plain).
TypedHandler: TypeAlias = Callable[
    [_Q, CallContext],
    "_R | dict[str, Any] | NoReply | Awaitable[_R | dict[str, Any] | NoReply]",
]


class _RequestClass(Protocol[_P, _Qco, _Rco]):
    """A :class:`~ocpprpc.Request` subclass, seen as a type checker sees the class object.

    Matching a class against this protocol binds ``_Qco`` to the class itself (its
    constructor's return type) and ``_Rco`` to its response type (through the
    typing-only ``Request.__ocpp_answer__``), which a plain ``type[...]``
    annotation cannot do in one argument.
    """

    def __call__(self, *args: _P.args, **kwargs: _P.kwargs) -> _Qco: ...

    def __ocpp_answer__(self, request: Any, /) -> _Rco: ...


@dataclass(eq=False)
class Router:
    """A registry of handlers, shareable across sessions.

    ::

        router = Router()

        @router.on(BootNotificationRequest)
        async def boot(request: BootNotificationRequest, ctx: CallContext) -> BootNotificationResponse:
            ...

        @router.on("DataTransfer", protocol="ocpp1.6")
        async def data_transfer(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
            ...
    """

    _routes: dict[tuple[str | None, str], Route] = field(default_factory=dict, init=False, repr=False)
    _any: Route | None = field(default=None, init=False, repr=False)
    # unvalidated_actions() per protocol, until the routes change: one frozenset that every
    # session of the protocol shares (with its codec) instead of a set per session.
    _opt_outs: dict[str, frozenset[str]] = field(default_factory=dict, init=False, repr=False)

    # -- registration ------------------------------------------------------------------

    @overload
    def on(
        self, key: _RequestClass[_P, _Q, _R], *, protocol: str | None = None, validate: bool = True
    ) -> Callable[[TypedHandler[_Q, _R]], TypedHandler[_Q, _R]]: ...

    @overload
    def on(self, key: str, *, protocol: str | None = None, validate: bool = True) -> Callable[[_H], _H]: ...

    def on(self, key: Any, *, protocol: str | None = None, validate: bool = True) -> Callable[[Any], Any]:
        """Decorator: register the decorated handler (async or plain function) for *key*.

        *key* is an action name or a :class:`~ocpprpc.Request` subclass (its
        action, and its protocol when the class declares ``__ocpp_protocol__``).
        *protocol* makes the registration version-specific.  ``validate=False``
        opts this action out of schema validation, both ways.
        """

        def register(handler: Any) -> Any:
            self.add(key, handler, protocol=protocol, validate=validate)
            return handler

        return register

    @overload
    def add(
        self,
        key: _RequestClass[_P, _Q, _R],
        handler: TypedHandler[_Q, _R],
        *,
        protocol: str | None = None,
        validate: bool = True,
    ) -> None: ...

    @overload
    def add(
        self, key: str, handler: Handler, *, protocol: str | None = None, validate: bool = True
    ) -> None: ...

    def add(self, key: Any, handler: Any, *, protocol: str | None = None, validate: bool = True) -> None:
        """Register *handler* for *key* (the method form of :meth:`on`).

        :raises ValueError: a handler is already registered for this key.
        """
        slot, request_type = _slot(key, protocol)
        if slot in self._routes:
            raise ValueError(f"a handler is already registered for {_describe(slot)}")
        self._routes[slot] = Route(handler, validate, request_type)
        self._opt_outs.clear()

    def on_any(self, *, validate: bool = True) -> Callable[[_H], _H]:
        """Decorator: register the catch-all handler, for actions nothing else handles.

        Its ``validate`` flag only affects the responses it sends: the codec cannot
        know in advance which actions will fall through to it.
        """

        def register(handler: _H) -> _H:
            self.add_any(handler, validate=validate)
            return handler

        return register

    def add_any(self, handler: Handler, *, validate: bool = True) -> None:
        """Register the catch-all handler (the method form of :meth:`on_any`).

        :raises ValueError: a catch-all handler is already registered.
        """
        if self._any is not None:
            raise ValueError("a catch-all handler is already registered")
        self._any = Route(handler, validate)

    def remove(self, key: str | type[Any], *, protocol: str | None = None) -> None:
        """Unregister the handler for *key* (same key rules as :meth:`on`).

        :raises KeyError: nothing is registered for this key.
        """
        slot, _ = _slot(key, protocol)
        try:
            del self._routes[slot]
        except KeyError:
            raise KeyError(f"no handler is registered for {_describe(slot)}") from None
        self._opt_outs.clear()

    def remove_any(self) -> None:
        """Unregister the catch-all handler.

        :raises KeyError: none is registered.
        """
        if self._any is None:
            raise KeyError("no catch-all handler is registered")
        self._any = None

    # -- lookup ------------------------------------------------------------------------

    def resolve(self, action: str, protocol: str) -> Route | None:
        """The route for *action* on *protocol*: version-specific > generic > catch-all."""
        routes = self._routes
        route = routes.get((protocol, action))
        if route is None:
            route = routes.get((None, action))
            if route is None:
                return self._any
        return route

    def unvalidated_actions(self, protocol: str) -> frozenset[str]:
        """Actions whose handler (for *protocol*) opted out of validation.

        A payload codec consults this set to skip validating these actions' CALLs.
        A version-specific registration overrides a generic one for the same action.
        The same set object is returned until a handler is added or removed.
        """
        found = self._opt_outs.get(protocol)
        if found is None:
            found = self._opt_outs[protocol] = self._unvalidated_actions(protocol)
        return found

    def _unvalidated_actions(self, protocol: str) -> frozenset[str]:
        generic = {a for (p, a), r in self._routes.items() if p is None and not r.validate}
        for (p, a), r in self._routes.items():
            if p == protocol:
                if r.validate:
                    generic.discard(a)
                else:
                    generic.add(a)
        return frozenset(generic)

    def __contains__(self, key: object) -> bool:
        """Whether *key* is registered (key rules of :meth:`on`, without an explicit protocol)."""
        if not isinstance(key, str | type):
            return False
        try:
            slot, _ = _slot(key, None)
        except TypeError:
            return False
        return slot in self._routes


def _slot(key: str | type[Any], protocol: str | None) -> tuple[tuple[str | None, str], type[Any] | None]:
    if isinstance(key, str):
        if not key:
            raise ValueError("the action name must not be empty")
        return (protocol, key), None
    action = getattr(key, "__ocpp_action__", None)
    if not isinstance(key, type) or not isinstance(action, str):
        raise TypeError(f"a handler key is an action name or a Request subclass, not {key!r}")
    if protocol is None:
        protocol = getattr(key, "__ocpp_protocol__", None)
    return (protocol, action), key


def _describe(slot: tuple[str | None, str]) -> str:
    protocol, action = slot
    return f"{action!r} on {protocol}" if protocol else f"{action!r}"
