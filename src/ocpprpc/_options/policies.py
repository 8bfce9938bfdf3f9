"""Resilience settings: reconnect backoff, keepalive, call retries, outbox limits.

Plain frozen dataclasses with no I/O (no anyio import), so ``import ocpprpc``
can export them eagerly and a configuration can be built, compared and logged
anywhere.  The code that acts on them lives in :mod:`ocpprpc._station.station` and
:mod:`ocpprpc._ws.keepalive`.

Every random choice goes through an injectable ``rng`` (a callable returning a
float in ``[0, 1)``), so tests can pin the jitter and assert exact delays.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Backoff", "Keepalive", "OutboxFullPolicy", "Retry", "TransactionRetry"]

#: Handshake answers that no amount of retrying will change: wrong credentials
#: (401), a forbidden station (403), an identity the CSMS does not know (404).
PERMANENT_HANDSHAKE_STATUSES = frozenset({401, 403, 404})


def _check_non_negative(**values: float) -> None:
    for name, value in values.items():
        if value < 0:
            raise ValueError(f"{name} must not be negative, got {value!r}")


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter, for reconnecting a station.

    Attempt *n* (1 for the first retry) waits a uniformly random time in
    ``[0, min(cap, base * factor ** (n - 1))]`` ("full jitter", as in the AWS
    architecture note on backoff): when a CSMS restarts and hundreds of
    stations lose it at once, full jitter spreads their reconnects over the
    whole window instead of herding them onto the same instants.

    :param base: the ceiling of the first wait, in seconds (ocpp-ws-io's
        ``backoffMin``).  Named after the formula, not "min": with full jitter
        a wait may be shorter than it.
    :param cap: no wait is ever longer than this (ocpp-ws-io's ``backoffMax``).
    :param max_attempts: give up after this many failed reconnects in a row
        (a connection that closes within ``stable_after`` counts as failed);
        ``None`` retries forever (the right default for a charging station).
    :param retry_first_connect: ``False``: if the very first connection fails,
        entering the station raises at once (a configuration error shows up
        immediately); ``True``: keep retrying as after any later loss, so a
        station that boots before its network comes up still connects.
    :param factor: growth of the ceiling per attempt.
    :param stable_after: a connection must stay open this many seconds before
        the attempt count starts again from 1.  A CSMS that accepts the upgrade
        and closes at once (overloaded, misconfigured, restarting in a loop)
        otherwise sees every station come back within ``base`` seconds forever;
        with it, the waits keep growing towards ``cap`` until a connection
        lasts.  ``0``: any successful upgrade resets the count.
    :param rng: source of randomness in ``[0, 1)``; inject a fixed one in tests.
    """

    base: float = 1.0
    cap: float = 30.0
    max_attempts: int | None = None
    retry_first_connect: bool = False
    factor: float = 2.0
    stable_after: float = 10.0
    rng: Callable[[], float] = field(default=random.random, compare=False, repr=False)

    def __post_init__(self) -> None:
        _check_non_negative(base=self.base, cap=self.cap, stable_after=self.stable_after)
        if self.factor < 1:
            raise ValueError(f"factor must be at least 1, got {self.factor!r}")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1 (or None for no limit)")

    def ceiling(self, attempt: int) -> float:
        """The longest wait before reconnect *attempt* (1-based)."""
        if attempt < 1:
            raise ValueError("attempts are counted from 1")
        # Computed in a way that cannot overflow for large attempt numbers.
        ceiling = self.base
        for _ in range(attempt - 1):
            ceiling *= self.factor
            if ceiling >= self.cap:
                return self.cap
        return min(ceiling, self.cap)

    def delay(self, attempt: int) -> float:
        """A random wait before reconnect *attempt*: uniform in ``[0, ceiling(attempt)]``."""
        return self.rng() * self.ceiling(attempt)

    def gives_up_after(self, attempt: int) -> bool:
        """Whether *attempt* failed reconnects in a row exhaust ``max_attempts``."""
        return self.max_attempts is not None and attempt >= self.max_attempts


@dataclass(frozen=True, slots=True)
class Keepalive:
    """WebSocket pings that find a dead peer (a black-holed link sends no FIN).

    A ping goes out every ``interval`` seconds, each wait drawn uniformly from
    ``interval * (1 +- jitter)`` so that thousands of connections opened
    together do not ping in lockstep.  If no pong (or, with
    ``defer_on_traffic``, no data at all) arrives within ``timeout`` seconds of
    a ping, the peer is declared dead and the connection is dropped as a lost
    link (close code 1006): a dead peer is detected at most
    ``interval * (1 + jitter) + timeout`` seconds after it went silent.

    :param interval: seconds between pings (OCPP's ``WebSocketPingInterval``).
    :param timeout: seconds to wait for the pong.
    :param jitter: relative spread of the interval (0.25: +-25 %, as ocpp-ws-io).
    :param defer_on_traffic: skip a ping while messages keep arriving (any data
        received proves the peer alive), saving traffic on busy links.
    :param rng: source of randomness in ``[0, 1)``.
    """

    interval: float = 30.0
    timeout: float = 10.0
    jitter: float = 0.25
    defer_on_traffic: bool = False
    rng: Callable[[], float] = field(default=random.random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.interval <= 0 or self.timeout <= 0:
            raise ValueError("keepalive interval and timeout must be positive")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter!r}")

    def next_interval(self) -> float:
        """The wait before the next ping: uniform in ``interval * [1 - jitter, 1 + jitter]``."""
        return self.interval * (1 + self.jitter * (2 * self.rng() - 1))

    @property
    def detection_bound(self) -> float:
        """The longest a dead peer can go unnoticed, in seconds."""
        return self.interval * (1 + self.jitter) + self.timeout


@dataclass(frozen=True, slots=True)
class Retry:
    """Re-send a CALL that got no answer (or whose link dropped), under the same message id.

    Reusing the id is what makes a retry safe: a CSMS that remembers the ids it
    handled (``Server(replay_cache=...)``) answers the repeat from memory
    instead of acting twice, and OCPP 2.0.1 (Part 4 4.1.4) lets retries keep
    their id.

    :param attempts: extra sends after the first (0: no retry).
    :param delay: base wait between sends, in seconds.
    :param jitter: relative spread of each wait (uniform in ``delay * [1 - jitter, 1 + jitter]``).
    :param on_connection_lost: also retry when the link dropped while the CALL
        was in flight (after the station reconnected); without it such a call
        fails with :class:`~ocpprpc.ConnectionLost` at once.
    :param rng: source of randomness in ``[0, 1)``.
    """

    attempts: int = 2
    delay: float = 1.0
    jitter: float = 0.25
    on_connection_lost: bool = True
    rng: Callable[[], float] = field(default=random.random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.attempts < 0:
            raise ValueError("attempts must not be negative")
        _check_non_negative(delay=self.delay)
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be in [0, 1], got {self.jitter!r}")

    def next_delay(self) -> float:
        """A random wait before the next send."""
        return self.delay * (1 + self.jitter * (2 * self.rng() - 1))


@dataclass(frozen=True, slots=True)
class TransactionRetry:
    """How a station retries a durable (transaction) message the CSMS failed to process.

    OCPP's own rule: OCPP 1.6 ``TransactionMessageAttempts`` and
    ``TransactionMessageRetryInterval`` (section 4.10), OCPP 2.0.1/2.1
    ``MessageAttemptsTransactionEvent`` and ``MessageAttemptIntervalTransactionEvent``
    (E13).  A send *fails* when the CSMS answers with a CALLERROR or not at all
    within the call timeout; after failure *n* the message waits
    ``interval * n`` seconds and goes again under the same message id, until
    ``attempts`` sends failed: then it is dropped, with an error logged and a
    :class:`~ocpprpc.MessageDropped` event.  A send cut short by a lost link is
    not a failure (the CSMS may never have seen it): the message goes again
    after the reconnect without using up an attempt.

    Set ``station.transaction_retry`` when the CSMS changes these
    configuration keys; the next failure uses the new values.

    :param attempts: sends that may fail before the message is dropped.
    :param interval: seconds, multiplied by the number of failed sends so far.
    """

    attempts: int = 3
    interval: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        _check_non_negative(interval=self.interval)

    def delay(self, failures: int) -> float:
        """Seconds to wait after the *failures*-th failed send."""
        return self.interval * failures


class OutboxFullPolicy(enum.Enum):
    """What a station does with a new call when its offline outbox is full."""

    #: The new call fails at once with :class:`~ocpprpc.OutboxFull`.
    REJECT = "reject"
    #: The oldest queued call fails with :class:`~ocpprpc.OutboxFull` (its
    #: caller is told, and a warning is logged) and the new one takes its place.
    DROP_OLDEST = "drop_oldest"
