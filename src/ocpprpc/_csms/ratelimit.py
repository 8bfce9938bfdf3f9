"""Per-station message rate limits: the pure half of the CSMS protection layer.

A firmware loop that sends MeterValues a hundred times a second, or a station
that hammers Heartbeat after every reconnect, must not cost the other stations
their share of the CSMS.  :class:`RateLimiter` answers one question per inbound
CALL -- may this station send this action now? -- and, when the answer is no,
what the session should do about it (:class:`OnBreach`).

Theory of operation.  Each limit is a token bucket kept as a single number, the
"theoretical arrival time" of the generic cell rate algorithm (GCRA, ITU-T
I.371): a limit of ``count`` per ``per_seconds`` with a bucket of ``burst``
tokens lets ``burst`` messages through at once and then one every
``per_seconds / count`` seconds.  One float per bucket, no refill
multiplication, so a check is a dict lookup and a few comparisons.  In any
window of ``per_seconds`` at most ``burst + count`` messages pass.

A message that breaches a limit consumes nothing, so a station that floods is
limited by its flood, not punished beyond it.  State is keyed by station
identity, not by connection: a station that reconnects to escape its limit
finds its buckets where it left them.  Memory is bounded: identities idle for
``idle_ttl`` are forgotten (by default the time a bucket takes to refill, so
forgetting loses nothing), and beyond ``max_identities`` the least recently
seen identity is evicted.

No clock is read here: the limiter calls the ``clock`` it was given (monotonic
seconds; the server passes ``time.monotonic``), so tests drive time by
hand.
"""

from __future__ import annotations

import enum
import logging
import math
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple

from .._engine.rules import ErrorCode

__all__ = [
    "RATE_LIMIT_ERROR_CODE",
    "Breach",
    "OnBreach",
    "RateLimit",
    "RateLimiter",
    "StationLimits",
    "Verdict",
]

log = logging.getLogger("ocpprpc.ratelimit")

#: A source of monotonic time in seconds.
Clock = Callable[[], float]

#: The CALLERROR code a rate-limited CALL is answered with (:attr:`OnBreach.CALLERROR`).
#:
#: ``GenericError`` ("any other error not covered by the more specific error
#: codes", [J16] Table 7, [P4-201] Table 8) is the one code every version
#: defines that does not misdescribe a throttled call: the CALL is well formed
#: (not ``FormatViolation``/``RpcFrameworkError``, which 2.x defines as "not a
#: valid RPC request" and 1.6 lacks), the action is supported (not
#: ``NotSupported``), nothing failed inside the CSMS (not ``InternalError``),
#: and the station did nothing insecure (``SecurityError`` is what OCPP 2.0.1
#: prescribes for a station that sends before its boot is accepted, B02.FR.09;
#: using it here would make a throttled station look like a rogue one).  The
#: spelling is the same in 1.6, 2.0.1 and 2.1.  :class:`StationLimits` takes
#: another code for deployments that want one.
RATE_LIMIT_ERROR_CODE = ErrorCode.GENERIC_ERROR

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_RATE = re.compile(r"\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([smhd]?)\s*", re.IGNORECASE | re.ASCII)
_GRAMMAR = (
    "COUNT/PERIOD with PERIOD a number of seconds or NUMBER+UNIT (s, m, h, d), e.g. '10/60', '10/1m', '100/h'"
)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most *count* messages per *per_seconds*, with bursts of up to *burst* at once.

    *burst* is the size of the bucket (``None``: *count*).  A station that was
    quiet may send *burst* messages back to back; after that it gets one every
    ``per_seconds / count`` seconds.  So in any window of *per_seconds* at most
    ``burst + count`` messages pass.
    """

    count: int
    per_seconds: float
    burst: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise ValueError(f"a rate limit allows at least 1 message, got count={self.count!r}")
        if not isinstance(self.per_seconds, int | float) or isinstance(self.per_seconds, bool):
            raise ValueError(f"per_seconds must be a number, got {self.per_seconds!r}")
        if not (0 < self.per_seconds < math.inf):
            raise ValueError(f"per_seconds must be positive and finite, got {self.per_seconds!r}")
        if self.burst is not None and (
            isinstance(self.burst, bool) or not isinstance(self.burst, int) or self.burst < 1
        ):
            raise ValueError(f"burst must be at least 1 (or None for count), got {self.burst!r}")

    @classmethod
    def parse(cls, text: str, *, burst: int | None = None) -> RateLimit:
        """Read ``"COUNT/PERIOD"``: ``"10/60"`` (seconds), ``"10/1m"``, ``"100/1h"``, ``"5/s"``.

        The period is a number of seconds, or a number followed by a unit
        (``s``, ``m``, ``h``, ``d``); a unit alone means one of it.  Anything
        else raises :class:`ValueError` naming the text.
        """
        if not isinstance(text, str):
            raise ValueError(f"a rate limit is a string such as '10/60', got {text!r}")
        match = _RATE.fullmatch(text)
        if match is None or (match[2] is None and not match[3]):
            raise ValueError(f"invalid rate limit {text!r}: expected {_GRAMMAR}")
        count = int(match[1])
        period = (float(match[2]) if match[2] is not None else 1.0) * _UNITS[match[3].lower()]
        try:
            return cls(count, period, burst)
        except ValueError as exc:
            raise ValueError(f"invalid rate limit {text!r}: {exc}") from None

    @property
    def capacity(self) -> int:
        """How many messages may pass back to back: *burst*, or *count* when unset."""
        return self.count if self.burst is None else self.burst

    @property
    def interval(self) -> float:
        """Seconds between two messages once the burst is spent."""
        return self.per_seconds / self.count

    @property
    def refill_time(self) -> float:
        """Seconds an emptied bucket takes to fill again."""
        return self.capacity * self.interval

    def __str__(self) -> str:
        text = f"{self.count}/{self.per_seconds:g}s"
        return text if self.burst is None else f"{text} (burst {self.burst})"


def _as_limit(value: RateLimit | str, name: str) -> RateLimit:
    if isinstance(value, RateLimit):
        return value
    if isinstance(value, str):
        return RateLimit.parse(value)
    raise ValueError(f"{name} must be a RateLimit or a string such as '10/60', got {value!r}")


class OnBreach(enum.Enum):
    """What the session does with a CALL that breached a limit."""

    #: Drop it unanswered (ocpp-ws-io's "ignore"): the station's call times out.
    #: Cheapest for the CSMS; the server emits a security event.
    DROP = "drop"
    #: Answer a CALLERROR (:data:`RATE_LIMIT_ERROR_CODE` unless configured).
    CALLERROR = "callerror"
    #: Close the connection (the station reconnects and finds its buckets as it left them).
    DISCONNECT = "disconnect"


class Breach(NamedTuple):
    """Which limit a station's CALL breached.

    Named tuples rather than frozen dataclasses, here and in :class:`Verdict`:
    a flooding station makes one per message, and a named tuple is built in a
    third of the time.
    """

    #: The station.
    identity: str
    #: The action of the CALL that was refused.
    action: str
    #: The limit that said no.
    limit: RateLimit
    #: The action whose own limit was hit, or ``None`` for the station's global limit.
    scope: str | None
    #: Seconds until the same CALL would pass.
    retry_after: float

    def describe(self) -> str:
        """One line for a CALLERROR description or a log: which limit, and when to retry."""
        which = f"{self.scope} limit" if self.scope is not None else "message limit"
        return f"rate limit exceeded: {which} {self.limit}; retry after {self.retry_after:.3g} s"


#: A function that decides per breach (ocpp-ws-io's ``onLimitExceeded`` callback).
BreachHandler = Callable[[Breach], OnBreach]


class Verdict(NamedTuple):
    """The answer to :meth:`RateLimiter.check`: allowed, or what was breached and what to do.

    True in a boolean context when allowed.
    """

    allowed: bool
    #: What to do with the refused CALL (``None`` when allowed).
    on_breach: OnBreach | None = None
    #: Which limit was breached (``None`` when allowed).
    breach: Breach | None = None
    #: The CALLERROR code to answer with when *on_breach* is :attr:`OnBreach.CALLERROR`.
    error_code: ErrorCode | None = None

    def __bool__(self) -> bool:
        return self.allowed


#: The verdict of every allowed check (one shared object: the common path allocates nothing).
ALLOWED = Verdict(True)


@dataclass(frozen=True, slots=True)
class StationLimits:
    """The limits every station of a :class:`RateLimiter` is held to.

    :param global_: a limit on all CALLs of a station together (``None``: none).
    :param per_action: limits on single actions, e.g. ``{"MeterValues": "10/60"}``;
        a CALL must pass both its action's limit and the global one.
    :param on_breach: an :class:`OnBreach` (or its value, ``"drop"``...), or a
        function of the :class:`Breach` returning one.
    :param error_code: the code of the CALLERROR for :attr:`OnBreach.CALLERROR`.

    Limits may be given as strings (``"10/1m"``), as in a TOML configuration.
    """

    global_: RateLimit | None = None
    per_action: Mapping[str, RateLimit] = field(default_factory=dict)
    on_breach: OnBreach | BreachHandler = OnBreach.DROP
    error_code: ErrorCode = RATE_LIMIT_ERROR_CODE

    def __post_init__(self) -> None:
        if self.global_ is not None:
            object.__setattr__(self, "global_", _as_limit(self.global_, "global_"))
        limits = {
            action: _as_limit(limit, f"the limit for {action!r}")
            for action, limit in dict(self.per_action).items()
        }
        object.__setattr__(self, "per_action", MappingProxyType(limits))
        if isinstance(self.on_breach, str):
            try:
                object.__setattr__(self, "on_breach", OnBreach(self.on_breach.lower()))
            except ValueError:
                choices = ", ".join(repr(member.value) for member in OnBreach)
                raise ValueError(
                    f"on_breach must be one of {choices} or a function, got {self.on_breach!r}"
                ) from None
        elif not isinstance(self.on_breach, OnBreach) and not callable(self.on_breach):
            raise ValueError(f"on_breach must be an OnBreach or a function, got {self.on_breach!r}")
        object.__setattr__(self, "error_code", ErrorCode(self.error_code))

    @property
    def refill_time(self) -> float:
        """The longest time any of these buckets takes to fill (0 without limits)."""
        limits = [*self.per_action.values(), *([self.global_] if self.global_ else [])]
        return max((limit.refill_time for limit in limits), default=0.0)


class _Station:
    """One identity's buckets: theoretical arrival times, one per limit."""

    __slots__ = ("actions", "seen", "tat")

    def __init__(self, now: float) -> None:
        self.seen = now
        self.tat = now
        self.actions: dict[str, float] = {}


#: At most this many idle identities are forgotten per check, so no call pays for a backlog.
_SWEEP_BATCH = 64


class RateLimiter:
    """Token buckets per station identity, checked once per inbound CALL.

    :param limits: what every station is held to.
    :param clock: monotonic seconds (``time.monotonic`` in the server).
    :param max_identities: beyond this many tracked stations the least recently
        seen one is forgotten (it comes back with full buckets).
    :param idle_ttl: forget a station not seen for this many seconds; the
        default is the time the slowest bucket takes to refill, after which a
        forgotten station and a remembered one are indistinguishable.
    """

    def __init__(
        self,
        limits: StationLimits,
        *,
        clock: Clock,
        max_identities: int = 100_000,
        idle_ttl: float | None = None,
    ) -> None:
        if max_identities < 1:
            raise ValueError(f"max_identities must be at least 1, got {max_identities!r}")
        if idle_ttl is not None and not idle_ttl > 0:
            raise ValueError(f"idle_ttl must be positive, got {idle_ttl!r}")
        self.max_identities = max_identities
        self._idle_ttl = idle_ttl
        self._clock = clock
        self._stations: OrderedDict[str, _Station] = OrderedDict()
        self._next_sweep = -math.inf
        self.update(limits)
        #: Stations forgotten because the table was full (not because they went idle).
        self.evictions = 0
        #: Breach handlers that raised (each such breach was treated as DROP).
        self.handler_errors = 0

    def update(self, limits: StationLimits) -> None:
        """Hold every station to *limits* from its next CALL on (a live change).

        Every station starts again with full buckets under the new limits: an
        operator who raises a limit means the throttled stations to be let through
        now, not once their buckets refilled at the old rate.
        """
        self._stations.clear()
        self.limits = limits
        self.idle_ttl = self._idle_ttl if self._idle_ttl is not None else max(limits.refill_time, 1.0)
        # Precomputed (interval, tolerance, limit): tolerance is how far the
        # theoretical arrival time may run ahead of now, (capacity - 1) intervals.
        self._global = _rule(limits.global_) if limits.global_ is not None else None
        self._per_action = {action: _rule(limit) for action, limit in limits.per_action.items()}
        on_breach = limits.on_breach
        self._fixed = on_breach if isinstance(on_breach, OnBreach) else None
        self._handler = None if isinstance(on_breach, OnBreach) else on_breach

    def __len__(self) -> int:
        return len(self._stations)

    def check(self, identity: str, action: str) -> Verdict:
        """May *identity* send a CALL for *action* now?  Consumes a token when it may."""
        now = self._clock()
        if now >= self._next_sweep:
            self._sweep(now)
        stations = self._stations
        station = stations.get(identity)
        if station is None:
            station = self._track(identity, now)
        else:
            stations.move_to_end(identity)
            station.seen = now
        rule = self._per_action.get(action)
        if rule is not None:
            interval, tolerance, limit = rule
            action_tat = station.actions.get(action, now)
            if action_tat < now:
                action_tat = now
            wait = action_tat - now - tolerance
            if wait > 0:
                return self._refuse(identity, action, limit, action, wait)
        if self._global is not None:
            g_interval, g_tolerance, g_limit = self._global
            tat = station.tat if station.tat > now else now
            wait = tat - now - g_tolerance
            if wait > 0:
                return self._refuse(identity, action, g_limit, None, wait)
            station.tat = tat + g_interval
        if rule is not None:
            station.actions[action] = action_tat + interval
        return ALLOWED

    def forget(self, identity: str) -> None:
        """Drop what is known about *identity* (its next CALL starts with full buckets)."""
        self._stations.pop(identity, None)

    def _track(self, identity: str, now: float) -> _Station:
        station = self._stations[identity] = _Station(now)
        if len(self._stations) > self.max_identities:
            self._stations.popitem(last=False)
            self.evictions += 1
        return station

    def _sweep(self, now: float) -> None:
        """Forget up to a batch of identities idle for longer than the TTL (oldest first)."""
        stations = self._stations
        horizon = now - self.idle_ttl
        for _ in range(_SWEEP_BATCH):
            if not stations:
                break
            oldest = next(iter(stations.values()))
            if oldest.seen > horizon:
                break
            stations.popitem(last=False)
        else:
            # A backlog is left: sweep again on the next check.
            self._next_sweep = now
            return
        self._next_sweep = now + self.idle_ttl / 8

    def _refuse(
        self, identity: str, action: str, limit: RateLimit, scope: str | None, wait: float
    ) -> Verdict:
        breach = Breach(identity, action, limit, scope, wait)
        on_breach = self._fixed or self._decide(breach)
        code = self.limits.error_code if on_breach is OnBreach.CALLERROR else None
        return Verdict(False, on_breach, breach, code)

    def _decide(self, breach: Breach) -> OnBreach:
        assert self._handler is not None  # set whenever _fixed is not
        try:
            return OnBreach(self._handler(breach))
        except Exception:
            self.handler_errors += 1
            log.exception(
                "the rate-limit breach handler failed for station %r; dropping its %s",
                breach.identity,
                breach.action,
            )
            return OnBreach.DROP


def _rule(limit: RateLimit) -> tuple[float, float, RateLimit]:
    interval = limit.interval
    return interval, (limit.capacity - 1) * interval, limit
