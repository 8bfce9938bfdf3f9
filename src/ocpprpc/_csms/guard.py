"""CSMS-side guards put in front of the application's router: a boot gate, a replay cache, rate limits.

Both wrap :meth:`Router.resolve`, so the session and the handlers stay as they
are; :class:`~ocpprpc.Server` installs the wrapper when one of its options
asks for it.

**Boot gate** (``Server(require_boot=True)``): a station whose BootNotification
the CSMS has not answered ``Accepted`` gets every other CALL refused with a
``SecurityError`` CALLERROR.  This is the code OCPP 2.0.1 prescribes for a
station that is Pending or Rejected and sends anything but BootNotification
(B02.FR.09, B03.FR.07, tested by OCTT TC_B_30_CSMS); OCPP 1.6 prescribes no
answer, and SecurityError exists there too, so the same code is used for every
version.  Whether a station booted is remembered per identity in a mapping the
application may persist (``boot_registry``), because a station that only lost
its link does not boot again (OCPP 2.0.1 B01: BootNotification follows a
(re)boot, not a reconnect).  Messages the CSMS asked for pass: once the CSMS
sends a station TriggerMessage (or 1.6's ExtendedTriggerMessage) for, say,
StatusNotification, that action is let through for the station until its next
BootNotification (1.6 4.2.1 and 2.0.1 B02: a Pending station sends requests only
when the CSMS triggers them; one trigger may bring several messages, one per
connector or EVSE).  The allowance is made when the TriggerMessage is sent,
because the station may send the triggered message before our task sees the
answer, and withdrawn if the answer is not ``Accepted``.  The
``Sign...Certificate`` triggers map to the SignCertificate action.

**Replay cache** (``Server(replay_cache=N)``): the answers to each station's
last *N* CALLs are remembered by message id.  A station that lost its link
before our answer arrived sends the CALL again under the same id
(:class:`~ocpprpc.Retry`); the cache answers it from memory, so the handler
(the application) sees each message exactly once.  A repeat that arrives while
the first is still being handled waits for that answer.  Unexpected handler
exceptions are not remembered: a retry may succeed.

**Rate limits** (``Server(rate_limits=StationLimits(...))``): every inbound CALL
is checked against the station's buckets (:class:`~ocpprpc.RateLimiter`) before
anything else sees it, the boot gate and the replay cache included.  The
wrapper is a plain function, so the session runs it in its reader task: an
allowed CALL costs one check, and a refused one is answered (or dropped) there
without a worker.  A handler that is ``async def`` still runs in a worker: the
wrapper returns its coroutine, which the session awaits in one.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections import OrderedDict
from collections.abc import Callable, MutableMapping
from typing import Any

import anyio
import msgspec

from .._engine.errors import OCPPError
from .._engine.rules import ErrorCode
from .._rpc.router import NO_REPLY, CallContext, Route, Router
from .._rpc.session import CallWatch, Session
from .ratelimit import OnBreach, RateLimiter, Verdict

__all__ = ["GuardedRouter", "RateLimitedRouter", "ReplayCache"]

log = logging.getLogger("ocpprpc.server")

_BOOT = "BootNotification"
_TRIGGERS = frozenset({"TriggerMessage", "ExtendedTriggerMessage"})
#: SignChargePointCertificate (1.6), SignChargingStationCertificate, SignV2GCertificate,
#: SignCombinedCertificate (2.x): all answered by the station with SignCertificate.
_SIGN_TRIGGER = re.compile(r"Sign\w*Certificate")
_SIGN_CERTIFICATE = "SignCertificate"


class _Answer:
    """A remembered answer: the result or the OCPPError, once the first handling finished."""

    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.result: Any = None
        self.error: OCPPError | None = None


class ReplayCache:
    """The answers to each station's most recent CALLs, by message id (bounded per station)."""

    def __init__(self, size: int = 1000) -> None:
        if size < 1:
            raise ValueError("a replay cache holds at least one answer per station")
        self.size = size
        self._stations: dict[str, OrderedDict[str, _Answer]] = {}
        #: How many repeated CALLs were answered from memory (for tests and metrics).
        self.replays = 0

    async def handle(self, route: Route, request: Any, ctx: CallContext) -> Any:
        identity = ctx.identity or ""
        answers = self._stations.setdefault(identity, OrderedDict())
        known = answers.get(ctx.message_id)
        if known is not None:
            self.replays += 1
            log.info(
                "station %r repeated %s (%s); answering from the replay cache",
                identity,
                ctx.action,
                ctx.message_id,
            )
            await known.done.wait()
            if known.error is not None:
                raise known.error
            return known.result
        answer = answers[ctx.message_id] = _Answer()
        while len(answers) > self.size:
            answers.popitem(last=False)
        try:
            answer.result = await call_handler(route, request, ctx)
        except OCPPError as exc:
            answer.error = exc
            raise
        except BaseException:
            # Not remembered: an unexpected failure (or cancellation) may not repeat.
            answers.pop(ctx.message_id, None)
            raise
        finally:
            answer.done.set()
        return answer.result


class GuardedRouter(Router):
    """A router that puts the boot gate and/or the replay cache in front of *inner*."""

    def __init__(
        self,
        inner: Router,
        *,
        require_boot: bool = False,
        boot_registry: MutableMapping[str, bool] | None = None,
        replay_cache: ReplayCache | None = None,
    ) -> None:
        super().__init__()
        self.inner = inner
        self.require_boot = require_boot
        #: identity -> whether its last BootNotification was answered ``Accepted``.
        self.booted: MutableMapping[str, bool] = boot_registry if boot_registry is not None else {}
        self.replay_cache = replay_cache
        # identity -> actions the CSMS triggered and the station may send before its boot is accepted.
        self._triggered: dict[str, dict[str, int]] = {}

    def watch(self, identity: str) -> CallWatch:
        """The :attr:`Session.call_watch` that lets triggered messages pass the boot gate."""

        def on_call(action: str, payload: Any) -> Callable[[Any], None] | None:
            if action not in _TRIGGERS:
                return None
            requested = _field(payload, "requestedMessage")
            if not requested:
                return None
            target = _SIGN_CERTIFICATE if _SIGN_TRIGGER.fullmatch(requested) else requested
            allowed = self._triggered.setdefault(identity, {})
            allowed[target] = allowed.get(target, 0) + 1

            def done(answer: Any) -> None:
                if _field(answer, "status") != "Accepted":
                    left = allowed.get(target, 0) - 1
                    if left > 0:
                        allowed[target] = left
                    else:
                        allowed.pop(target, None)

            return done

        return on_call

    def resolve(self, action: str, protocol: str) -> Route | None:
        route = self.inner.resolve(action, protocol)
        if route is None and not self.require_boot:
            return None
        if route is not None and not self.require_boot and self.replay_cache is None:
            return route

        async def guarded(request: Any, ctx: CallContext) -> Any:
            return await self._handle(route, request, ctx)

        if route is None:
            return Route(guarded)
        return Route(guarded, validate=route.validate, request_type=route.request_type)

    def unvalidated_actions(self, protocol: str) -> frozenset[str]:
        return self.inner.unvalidated_actions(protocol)

    def __contains__(self, key: object) -> bool:
        return key in self.inner

    async def _handle(self, route: Route | None, request: Any, ctx: CallContext) -> Any:
        identity = ctx.identity or ""
        if (
            self.require_boot
            and ctx.action != _BOOT
            and not self.booted.get(identity, False)
            and ctx.action not in self._triggered.get(identity, ())
        ):
            log.info("station %r sent %s before an accepted boot; SecurityError", identity, ctx.action)
            raise OCPPError(
                ErrorCode.SECURITY_ERROR,
                "BootNotification first: the station has not been accepted (OCPP 2.0.1 B02.FR.09/B03.FR.07)",
            )
        if route is None:
            known = action_known(ctx)
            code = ErrorCode.NOT_SUPPORTED if known else ErrorCode.NOT_IMPLEMENTED
            raise OCPPError(code, f"no handler for {ctx.action}")
        if self.replay_cache is not None and not ctx.is_send:
            result = await self.replay_cache.handle(route, request, ctx)
        else:
            result = await call_handler(route, request, ctx)
        if ctx.action == _BOOT and not ctx.is_send:
            self._triggered.pop(identity, None)
            status = _status(result)
            self.booted[identity] = status == "Accepted"
            log.debug("station %r boot answered %s", identity, status)
        return result


#: Told of every refused CALL (to log it and emit a security event); must not raise.
BreachNotice = Callable[[Verdict, CallContext], None]

# RFC 6455 7.4.1: 1008, the endpoint received a message that violates its policy.
_POLICY_VIOLATION = 1008
# A close frame's reason is at most 123 bytes (RFC 6455 5.5: a 125-byte payload, 2 for the code).
_MAX_CLOSE_REASON = 123
# Wrapped routes remembered, by (action, protocol); cleared beyond this many (actions are few).
_MAX_WRAPPED = 1024


class RateLimitedRouter(Router):
    """A router that checks every CALL against the station's rate limits before *inner* sees it."""

    def __init__(self, inner: Router, limiter: RateLimiter, notify: BreachNotice) -> None:
        super().__init__()
        self.inner = inner
        self.limiter = limiter
        self.notify = notify
        # (action, protocol) -> (the inner route, its wrapper): one wrapper per registration, not per CALL.
        self._wrapped: dict[tuple[str, str], tuple[Route, Route]] = {}
        self._unrouted = Route(self._limit_unrouted)

    def resolve(self, action: str, protocol: str) -> Route | None:
        route = self.inner.resolve(action, protocol)
        if route is None:
            return self._unrouted
        known = self._wrapped.get((action, protocol))
        if known is not None and known[0] is route:
            return known[1]
        wrapped = self._wrap(route)
        if len(self._wrapped) >= _MAX_WRAPPED:
            self._wrapped.clear()
        self._wrapped[(action, protocol)] = (route, wrapped)
        return wrapped

    def unvalidated_actions(self, protocol: str) -> frozenset[str]:
        return self.inner.unvalidated_actions(protocol)

    def __contains__(self, key: object) -> bool:
        return key in self.inner

    def _wrap(self, route: Route) -> Route:
        handler = route.handler
        check = self.limiter.check
        breached = self._breached

        def limited(request: Any, ctx: CallContext) -> Any:
            verdict = check(ctx.session.identity or "", ctx.action)
            if verdict.allowed:
                return handler(request, ctx)
            return breached(verdict, ctx)

        async def limited_async(request: Any, ctx: CallContext) -> Any:
            answer = limited(request, ctx)
            return await answer if inspect.isawaitable(answer) else answer

        # As async as what it wraps: an async handler stays a worker's (Route.inline), so
        # observer middleware never meets a plain function returning a coroutine here.
        wrapper = limited if route.inline else limited_async
        return Route(wrapper, validate=route.validate, request_type=route.request_type)

    def _limit_unrouted(self, request: Any, ctx: CallContext) -> Any:
        """No handler: a flood of unknown actions counts against the station's limits too."""
        verdict = self.limiter.check(ctx.session.identity or "", ctx.action)
        if not verdict.allowed:
            return self._breached(verdict, ctx)
        code = ErrorCode.NOT_SUPPORTED if action_known(ctx) else ErrorCode.NOT_IMPLEMENTED
        raise OCPPError(code, f"no handler for {ctx.action}")

    def _breached(self, verdict: Verdict, ctx: CallContext) -> Any:
        breach = verdict.breach
        assert breach is not None  # refused verdicts always say why
        self.notify(verdict, ctx)
        if verdict.on_breach is OnBreach.CALLERROR:
            assert verdict.error_code is not None
            raise OCPPError(verdict.error_code, breach.describe())
        if verdict.on_breach is OnBreach.DISCONNECT:
            which = f"{breach.scope} limit" if breach.scope is not None else "message limit"
            reason = f"rate limit exceeded: {which} {breach.limit}"
            return _disconnect(ctx.session, reason.encode()[:_MAX_CLOSE_REASON].decode("utf-8", "ignore"))
        return NO_REPLY


async def _disconnect(session: Session, reason: str) -> Any:
    """Close a station that breached a limit; run by the session as the breaching CALL's handler."""
    await session.close(_POLICY_VIOLATION, reason, graceful=False)
    return NO_REPLY  # not reached from inside the session (closing cancels its handlers)


async def call_handler(route: Route, request: Any, ctx: CallContext) -> Any:
    """The handler's answer, whether it is ``async def`` or a plain function.

    The router accepts plain handlers everywhere, and the session awaits only an
    awaitable result (:meth:`Session._handle`); the guards must do the same.
    """
    result = route.handler(request, ctx)
    if inspect.isawaitable(result):
        result = await result
    return result


def action_known(ctx: CallContext) -> bool:
    """Whether the session's protocol defines *ctx.action* (``NotSupported`` vs ``NotImplemented``)."""
    return ctx.action in ctx.session.known_actions


def _status(result: Any) -> str:
    return _field(result, "status")


def _field(payload: Any, name: str) -> str:
    """A top-level string field of a payload, dict or typed (by its wire name); "" if absent."""
    if payload is NO_REPLY or payload is None:
        return ""
    if isinstance(payload, msgspec.Struct):
        payload = msgspec.to_builtins(payload)
    if isinstance(payload, dict):
        value = payload.get(name, "")
        return value if isinstance(value, str) else ""
    return ""
