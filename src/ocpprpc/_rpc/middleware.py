"""Message middleware: one onion around every exchange, in and out.

Theory of operation
-------------------
A middleware is ``async def mw(ctx, call_next)``.  The session builds one
:class:`Onion` from its ``middleware=[...]`` list (the first entry is the
outermost layer) and runs every exchange through it:

=================  ==========================================  =========================================
exchange           ``await call_next(ctx)`` runs ...            and returns
=================  ==========================================  =========================================
``in``  ``call``   the next layer, finally the handler          the handler's answer (CALLRESULT payload);
                                                                a CALLERROR arrives as the
                                                                :class:`~ocpprpc.OCPPError` it raises
``in``  ``send``   the next layer, finally the handler          ``None`` (a SEND is never answered)
``out`` ``call``   the next layer, finally the write and the    what ``session.call()`` returns; a
                   wait for the peer's answer                   CALLERROR, timeout, lost connection or
                                                                invalid answer arrives as the exception
                                                                ``call()`` raises
``out`` ``send``   the next layer, finally the write            ``None``
=================  ==========================================  =========================================

So a middleware sees a message *and its outcome*: one hook serves the
exchange log, metrics (outcome and duration: time ``call_next``, or read
:attr:`MessageContext.sent_at` for the time on the wire) and tracing, instead
of one hook each.  What a middleware may do:

* observe: read ``ctx``, ``await call_next(ctx)``, return what it returned;
* transform: replace ``ctx.payload`` before ``call_next`` (the inbound
  request, the outbound request), or return something else than what
  ``call_next`` returned (the answer);
* answer for the handler: return a payload without calling ``call_next`` (for
  an outbound call, nothing is sent and ``call()`` returns that value);
* refuse: raise :class:`~ocpprpc.OCPPError` (inbound: that CALLERROR is the
  answer; outbound: ``call()`` raises it, nothing sent);
* drop: return :data:`DROP` (or raise :class:`DroppedByMiddleware`).  An
  inbound CALL is then left unanswered, as the spec wants for a message its
  receiver discards: the peer's call times out (OCPP-J has no "dropped" reply;
  a CALLERROR would be an answer).  An inbound SEND has no answer anyway.  An
  outbound CALL or SEND is not sent, and ``call()``/``send()`` raise
  :class:`DroppedByMiddleware`.

A middleware that fails
-----------------------
An exception a middleware raises on its own (neither an ``OCPPError``, nor a
drop, nor an exception that came out of ``call_next`` and that it let pass) is
a bug in the middleware, not a verdict on the message.  It is logged at ERROR
with its traceback once per (middleware, exception type), then at DEBUG, and by
default the middleware *fails open*: the exchange goes on as if it were absent
(``call_next`` runs now, or, if it had already run, its outcome stands, so a
handler never runs twice).  A middleware marked :func:`fail_closed` (security
checks) fails the exchange instead: an inbound CALL is answered
``InternalError``, an outbound call raises the middleware's exception.  Either
way the session carries on.

Cost
----
A session without middleware has no onion (``None``) and pays one attribute
test per message.  With middleware, each exchange makes one
:class:`MessageContext` and one small ``call_next`` object per layer (the
last layer's is the session's handler step itself, a :class:`Tracked`), and
inbound CALLs go to a handler worker (a middleware may wait, and the reader
must never wait for it) -- unless every layer :func:`never_waits`: it
promises that it awaits nothing but ``call_next`` and returns what
``call_next`` returned (metrics, the exchange log, tracing, the station
registry's observer).  Then a CALL for a plain-function handler runs in the
reader, onion included, as it would without middleware: :meth:`Onion.drive`
runs the outermost layer's coroutine to its end with one ``send()``, in the
CALL's copy of the context, and the answer is written outside it.  (A layer
that waits after all, or fails on its own, makes ``drive`` hand back a
:class:`Later` that the reader awaits, in the same context.)  A plain function
that returns an awaitable after all is found out when it does: its awaiting
goes to a worker (the reader never waits for a handler), the middleware see
that one exchange end when the function returned, and the route's later
CALLs go to a worker from the start.
"""

from __future__ import annotations

import enum
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Generator, Sequence
from types import CoroutineType, FunctionType, MethodType
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, TypeVar, cast

from .._engine.errors import OCPPError
from .._engine.rules import ErrorCode

if TYPE_CHECKING:
    from .session import Session

__all__ = [
    "DROP",
    "CallNext",
    "DroppedByMiddleware",
    "MessageContext",
    "Middleware",
    "Onion",
    "fail_closed",
    "never_waits",
]

log = logging.getLogger("ocpprpc.middleware")

_M = TypeVar("_M")


class _DropToken(enum.Enum):
    DROP = "DROP"

    def __repr__(self) -> str:
        return "DROP"


#: Return this from a middleware to drop the message (see the module docstring).
DROP: Final[Literal[_DropToken.DROP]] = _DropToken.DROP


class DroppedByMiddleware(Exception):
    """A middleware dropped the message.

    Raise it in a middleware (at any depth) to drop the message, as returning
    :data:`DROP` does; ``call()`` and ``send()`` raise it when a middleware drops
    our outbound message (nothing was sent).
    """

    def __init__(self, reason: str = "", *, action: str | None = None, message_id: str | None = None) -> None:
        self.reason = reason
        self.action = action
        self.message_id = message_id
        super().__init__(reason or "dropped by middleware")

    def __str__(self) -> str:
        what = f"{self.action} ({self.message_id})" if self.action else "message"
        return f"{what} dropped by middleware" + (f": {self.reason}" if self.reason else "")


class MessageContext:
    """One exchange as the middleware sees it (one object per exchange, shared by all layers)."""

    __slots__ = (
        "_state",
        "action",
        "direction",
        "kind",
        "message_id",
        "payload",
        "route",
        "sent_at",
        "session",
        "started",
    )

    def __init__(
        self,
        direction: Literal["in", "out"],
        kind: Literal["call", "send"],
        action: str,
        message_id: str,
        payload: Any,
        session: Session,
    ) -> None:
        #: ``"in"``: the peer's message, answered by our handler; ``"out"``: ours.
        self.direction = direction
        #: ``"call"`` (answered) or ``"send"`` (an OCPP 2.1 SEND, never answered).
        self.kind = kind
        self.action = action
        self.message_id = message_id
        #: The request: as decoded (inbound) or as given to ``call()``/``send()``
        #: (outbound).  Replace it before ``call_next`` to transform the message.
        self.payload = payload
        #: The session the exchange runs on.
        self.session = session
        #: The pattern of the URL route the station connected on (``None``: no routing).
        self.route: str | None = session.route
        #: ``time.perf_counter()`` when the exchange entered the onion.
        self.started = time.perf_counter()
        #: Outbound: ``time.perf_counter()`` when the message went to the wire (after
        #: waiting for a call slot); ``None`` if it was not sent (yet).
        self.sent_at: float | None = None
        self._state: dict[str, Any] | None = None

    @property
    def identity(self) -> str | None:
        """The charging station identity of the session."""
        return self.session.identity

    @property
    def protocol(self) -> str:
        """The session's OCPP subprotocol (``"ocpp1.6"``, ...)."""
        return self.session.protocol

    @property
    def state(self) -> dict[str, Any]:
        """Scratch space shared by the layers of this exchange (made on first use)."""
        if self._state is None:
            self._state = {}
        return self._state

    def __repr__(self) -> str:
        return f"<MessageContext {self.direction} {self.kind} {self.action} ({self.message_id})>"


class CallNext(Protocol):
    """``await call_next(ctx)``: run the rest of the onion and return its outcome."""

    def __call__(self, ctx: MessageContext, /) -> Awaitable[Any]: ...


class Middleware(Protocol):
    """``async def middleware(ctx: MessageContext, call_next: CallNext) -> Any``."""

    def __call__(self, ctx: MessageContext, call_next: CallNext, /) -> Awaitable[Any]: ...


class _FailClosed:
    """A middleware whose own failures fail the exchange (see :func:`fail_closed`)."""

    __slots__ = ("__weakref__", "middleware")

    fail_closed = True

    def __init__(self, middleware: Middleware) -> None:
        self.middleware = middleware

    def __call__(self, ctx: MessageContext, call_next: CallNext, /) -> Awaitable[Any]:
        return self.middleware(ctx, call_next)

    def __repr__(self) -> str:
        return f"fail_closed({self.middleware!r})"


def never_waits(middleware: _M) -> _M:
    """Promise that *middleware* never waits, so sessions may run it in their reader.

    Without middleware, a plain-function handler runs in the session's reader
    task, with no task switch; a middleware that may wait (a database lookup)
    moves every CALL to a handler worker, because the reader must never wait.
    A middleware marked ``never_waits`` (it awaits nothing but ``call_next``:
    observers such as :class:`~ocpprpc.ExchangeLog`, metrics, tracing) keeps the
    reader path when every layer of the session is so marked and the handler is
    a plain function.  The mark sets ``never_waits = True`` on the object; a
    class may set it as a class attribute.  Breaking the promise does no harm
    but to the station's own pace: its reader waits with the middleware.
    """
    try:
        middleware.never_waits = True  # type: ignore[attr-defined]
    except AttributeError:
        raise TypeError(f"cannot mark {middleware!r} never_waits; set a class attribute instead") from None
    return middleware


def fail_closed(middleware: Middleware) -> Middleware:
    """Mark *middleware* to fail closed: if it fails, the exchange fails instead of skipping it.

    For checks that must not be bypassed by their own bugs (authorisation,
    signatures).  A class-based middleware may set ``fail_closed = True`` instead.
    """
    return _FailClosed(middleware)


class Tracked:
    """A ``call_next`` that remembers its outcome, for failing open (not public API).

    Each layer's ``call_next`` is one.  An innermost layer that is one itself
    (the session's handler step) is handed to the last layer as it is, with no
    ``call_next`` object around it.  Its ``__call__`` sets ``called`` (and clears
    ``error``) on entry, then ``result`` or ``error``.
    """

    __slots__ = ("called", "error", "result")

    called: bool
    result: Any
    error: Exception | None

    if TYPE_CHECKING:

        def __call__(self, ctx: MessageContext, /) -> Awaitable[Any]: ...


class _Next(Tracked):
    """The ``call_next`` one layer gets: the rest of the onion."""

    __slots__ = ("index", "innermost", "onion")

    def __init__(self, onion: Onion, index: int, innermost: CallNext) -> None:
        self.onion = onion
        self.index = index
        self.innermost = innermost
        self.called = False
        self.result = None
        self.error = None

    async def __call__(self, ctx: MessageContext, /) -> Any:
        self.called = True
        self.error = None
        try:
            if self.index >= len(self.onion.layers):  # the last layer's: straight to the innermost
                self.result = await self.innermost(ctx)
            else:
                self.result = await self.onion.run(ctx, self.innermost, self.index)
        except Exception as exc:
            self.error = exc
            raise
        return self.result


#: Failures already logged at ERROR: middleware -> exception types (weakly keyed, so
#: per-session closures do not pile up).
_reported: weakref.WeakKeyDictionary[Any, set[type[BaseException]]] = weakref.WeakKeyDictionary()
_reported_strong: dict[int, set[type[BaseException]]] = {}  # middleware without weak references


def _first_failure(middleware: Any, error: Exception) -> bool:
    try:
        seen = _reported.setdefault(middleware, set())
    except TypeError:
        seen = _reported_strong.setdefault(id(middleware), set())
    if type(error) in seen:
        return False
    seen.add(type(error))
    return True


def _entry(layer: Middleware) -> Middleware:
    """What to call for *layer*: the same, without a lookup of ``__call__`` per call."""
    if isinstance(layer, _FailClosed):
        return _entry(layer.middleware)
    call = getattr(type(layer), "__call__", None)  # noqa: B004 (not a callable() test)
    if isinstance(call, FunctionType):  # a class with a Python __call__ (not a function itself)
        return cast("Middleware", MethodType(call, layer))
    return layer


async def _awaiting(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


class Later:
    """What :meth:`Onion.drive` returns when the exchange is not over: await ``rest`` for its outcome."""

    __slots__ = ("rest",)

    def __init__(self, rest: Coroutine[Any, Any, Any]) -> None:
        self.rest = rest


class _Resumed:
    """Awaiting it goes on with *coro*, which has already yielded *yielded* to its first ``send()``."""

    __slots__ = ("coro", "yielded")

    def __init__(self, coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
        self.coro = coro
        self.yielded = yielded

    def __await__(self) -> Generator[Any, Any, Any]:
        coro = self.coro
        yielded = self.yielded
        while True:
            step: Any
            try:
                sent = yield yielded
            except BaseException as exc:  # thrown into the waiting task (a cancellation): on into coro
                step, sent = coro.throw, exc
            else:
                step = coro.send
            try:
                yielded = step(sent)
            except StopIteration as stop:
                return stop.value


class Onion:
    """The middleware of one session, outermost first, and how an exchange runs through them."""

    __slots__ = ("closed", "entries", "inline", "layers", "observers")

    def __init__(self, middleware: Sequence[Middleware]) -> None:
        self.layers: tuple[Middleware, ...] = tuple(middleware)
        for layer in self.layers:
            if not callable(layer):
                raise TypeError(f"a middleware must be callable, not {layer!r}")
        #: Per layer, what is called: a class instance's ``__call__`` bound once (calling the
        #: instance looks it up on every call), through a :func:`fail_closed` wrapper.
        self.entries: tuple[Middleware, ...] = tuple(_entry(layer) for layer in self.layers)
        #: Per layer: does it fail closed?
        self.closed: tuple[bool, ...] = tuple(
            getattr(layer, "fail_closed", False) is True for layer in self.layers
        )
        #: Every layer :func:`never_waits`: the session may run the onion in its reader.
        self.inline: bool = all(
            getattr(getattr(layer, "middleware", layer), "never_waits", False) is True
            for layer in self.layers
        )
        #: Every layer only looks at outcomes (``observe``, see :meth:`observed`) and fails open:
        #: (index, observe) innermost first, as the layers would see the exchange end.
        observers = [(index, getattr(layer, "observe", None)) for index, layer in enumerate(self.layers)]
        self.observers: tuple[tuple[int, Callable[..., None]], ...] | None = (
            tuple((index, observe) for index, observe in reversed(observers) if observe is not None)
            if self.inline and not any(self.closed) and all(callable(observe) for _, observe in observers)
            else None
        )

    async def run(self, ctx: MessageContext, innermost: CallNext, index: int = 0) -> Any:
        """Run *ctx* through the layers from *index* inwards, *innermost* last."""
        layers = self.layers
        if index >= len(layers):
            return await innermost(ctx)
        call_next = self._call_next(index, innermost)
        try:
            return await self.entries[index](ctx, call_next)
        except (OCPPError, DroppedByMiddleware):
            raise  # a verdict on the message (or one from further in, passed on)
        except Exception as exc:
            self._failed(index, exc, ctx, call_next)
        return await self._fail_open(ctx, call_next)

    def drive(self, ctx: MessageContext, innermost: CallNext) -> Any:
        """:meth:`run`, driven to its end here, for an onion whose layers never wait (:attr:`inline`).

        Call it in the exchange's context.  Returns what :meth:`run` returns and
        raises what it raises; but when the outermost layer waited after all (it
        broke its promise) or failed on its own (failing open may run the rest),
        returns a :class:`Later`: await its ``rest``, in the same context, for the
        outcome.  One ``send()`` to the outermost layer's coroutine, no coroutine
        of the onion's own around it.
        """
        layers = self.layers
        call_next = (
            innermost
            if len(layers) == 1 and isinstance(innermost, Tracked)
            else _Next(self, 1, innermost)  # _call_next(0, innermost), inlined: every exchange's path
        )
        coro = self.entries[0](ctx, call_next)
        if type(coro) is not CoroutineType:  # an awaitable of another kind from a plain function
            coro = _awaiting(coro)
        try:
            yielded = coro.send(None)
        except StopIteration as stop:
            return stop.value
        except (OCPPError, DroppedByMiddleware):
            raise
        except Exception as exc:
            self._failed(0, exc, ctx, call_next)
            return Later(self._fail_open(ctx, call_next))
        return Later(self._resume(ctx, coro, yielded, call_next))

    def observed(self, ctx: MessageContext, step: Callable[[MessageContext], Any]) -> Any:
        """The exchange for an onion of observers (:attr:`observers`): *step* (the handler, run
        synchronously), then each layer's ``observe(ctx, answer, error)``, innermost first.

        What the layers' ``__call__`` would count, without a coroutine per layer: a layer
        offers ``observe`` only when its ``__call__`` is "await call_next, then observe".
        An observer that raises is logged once per cause and the exchange goes on (open).
        """
        try:
            answer = step(ctx)
        except BaseException as exc:
            self._tell(ctx, None, exc)
            raise
        self._tell(ctx, answer, None)
        return answer

    def _tell(self, ctx: MessageContext, answer: Any, error: BaseException | None) -> None:
        for index, observe in self.observers or ():
            try:
                observe(ctx, answer, error)
            except Exception as exc:
                self._report(self.layers[index], exc, ctx, False)

    def _call_next(self, index: int, innermost: CallNext) -> Tracked:
        """Layer *index*'s ``call_next``: for the last layer, the innermost itself if it tracks itself."""
        if index + 1 == len(self.layers) and isinstance(innermost, Tracked):
            return innermost
        return _Next(self, index + 1, innermost)

    def _failed(self, index: int, exc: Exception, ctx: MessageContext, call_next: Tracked) -> None:
        """Layer *index* raised *exc*: raise what it means, or return to fail open."""
        if call_next.error is exc:
            raise exc  # from further in (the handler, the peer's answer), let through
        self._report(self.layers[index], exc, ctx, self.closed[index])
        if self.closed[index]:
            if ctx.direction == "in":
                # Answered InternalError, as a failing handler is (already logged here).
                raise OCPPError(ErrorCode.INTERNAL_ERROR, "middleware failed") from exc
            raise exc

    @staticmethod
    async def _fail_open(ctx: MessageContext, call_next: Tracked) -> Any:
        """On as if the failed layer were absent, without running the inside twice."""
        if not call_next.called:
            return await call_next(ctx)
        if call_next.error is not None:
            raise call_next.error
        return call_next.result

    async def _resume(
        self, ctx: MessageContext, coro: Coroutine[Any, Any, Any], yielded: Any, call_next: Tracked
    ) -> Any:
        """The rest of :meth:`drive` when the outermost layer waited: as :meth:`run` goes on."""
        try:
            return await _Resumed(coro, yielded)
        except (OCPPError, DroppedByMiddleware):
            raise
        except Exception as exc:
            self._failed(0, exc, ctx, call_next)
        return await self._fail_open(ctx, call_next)

    @staticmethod
    def _report(layer: Middleware, error: Exception, ctx: MessageContext, closed: bool) -> None:
        first = _first_failure(layer, error)
        log.log(
            logging.ERROR if first else logging.DEBUG,
            "%s: middleware %s failed on the %s %s %s (%s)%s; %s",
            ctx.session,
            getattr(layer, "__qualname__", None) or repr(layer),
            "inbound" if ctx.direction == "in" else "outbound",
            ctx.kind.upper(),
            ctx.action,
            ctx.message_id,
            "" if first else " again",
            "failing the message (fail closed)" if closed else "skipping it (fail open)",
            exc_info=error,
        )
