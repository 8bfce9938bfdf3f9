"""Prometheus metrics: one object that is a message middleware and a security-event subscriber.

"One mechanism, many faces": :class:`Metrics` observes through the two hooks a
CSMS already has, not a third one.  As a message middleware it sees every
exchange with its outcome and duration (calls by action, direction and
outcome, the latency histogram, validation failures); as a subscriber of the
:class:`~ocpprpc.SecurityEvents` hub it sees connections come and go, rate-limit
hits and every security event.  What neither hook can see (bytes on the wire,
handshakes refused before or without an event, malformed messages the engine
answered by itself) the server counts itself, and :meth:`Metrics.bind` reads
those counters from its ``stats()`` at scrape time: nothing is added to the
message path for them.

``Server(metrics=Metrics())`` (or ``metrics=True``) wires all of it.
``prometheus-client`` is an optional dependency (``pip install
'ocpprpc[metrics]'``), imported when a :class:`Metrics` is made, never by
``import ocpprpc``.

Action names come from the stations; a hostile one could invent a new action
per message and grow every labelled series without bound.  So at most
``max_actions`` distinct action names are used as labels, the rest are
counted as ``_other``.

Part of ``_ops``, which imports no other part: contexts, events and stats are
read through the attributes they have (:class:`MetricsContext`).
"""

from __future__ import annotations

import enum
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Final, Protocol

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

__all__ = ["CALL_OUTCOMES", "LATENCY_BUCKETS", "Metrics", "MetricsContext"]

#: Seconds: the call latency histogram's buckets (OCPP calls are answered in ms, time out in 30 s).
LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

#: The ``outcome`` label of ``ocpprpc_calls_total``, by the exception class name that ended the exchange.
_FAILURES: Final = {
    "CallTimeout": "timeout",
    "ConnectionLost": "connection_lost",
    "DroppedByMiddleware": "dropped",
    "InvalidResponseError": "invalid_response",
    "OutboundPayloadError": "invalid_request",
}
#: Every outcome: ``ok``, ``callerror`` (answered or raised as an OCPP error), ``dropped``
#: (nothing answered: a middleware or a rate limit dropped it), ``timeout``, ``connection_lost``,
#: ``invalid_response`` / ``invalid_request`` (validation), ``cancelled``, ``error`` (anything else).
CALL_OUTCOMES: Final = (
    "ok",
    "callerror",
    "dropped",
    "timeout",
    "connection_lost",
    "invalid_response",
    "invalid_request",
    "cancelled",
    "error",
)
_VALIDATION: Final = frozenset({"invalid_response", "invalid_request"})
#: Returned by the inner layers for "nothing to answer": ``DROP`` and ``NO_REPLY``, enum members
#: known by name (``_ops`` imports no other part).
_NO_ANSWER: Final = frozenset({"DROP", "NO_REPLY"})


class MetricsContext(Protocol):
    """What the metrics read of a middleware context (``ocpprpc.MessageContext``)."""

    direction: str
    kind: str
    action: str
    #: ``time.perf_counter()`` when the exchange entered the middleware: the latency's start.
    started: float


class Metrics:
    """Prometheus metrics of a CSMS: a message middleware and a security-event subscriber.

    :param registry: where the metrics are registered; default: a new
        ``CollectorRegistry`` of its own (so two servers, or a test, never
        collide in the global one).  Pass ``prometheus_client.REGISTRY`` to add
        them to the process's default registry.
    :param namespace: the prefix of every metric name.
    :param buckets: the call latency histogram's buckets, in seconds.
    :param max_actions: distinct action names used as label values; further
        ones are counted as ``_other`` (a station cannot grow the series).
    :raises ImportError: ``prometheus-client`` is not installed.
    """

    #: It awaits nothing but ``call_next`` (:func:`~ocpprpc.never_waits`): sessions keep plain
    #: handlers in their reader.
    never_waits = True

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        namespace: str = "ocpprpc",
        buckets: tuple[float, ...] = LATENCY_BUCKETS,
        max_actions: int = 256,
    ) -> None:
        try:
            from prometheus_client import CollectorRegistry, Counter, Gauge
        except ImportError as exc:  # pragma: no cover - the test environment has it
            raise ImportError(
                "ocpprpc.Metrics needs prometheus-client: pip install 'ocpprpc[metrics]'"
            ) from exc
        if max_actions < 1:
            raise ValueError(f"max_actions must be at least 1, got {max_actions!r}")
        self.registry = registry if registry is not None else CollectorRegistry()
        self.namespace = namespace
        self.max_actions = max_actions
        r = self.registry
        #: Stations connected now, by protocol (from StationConnected/StationDisconnected events).
        self.connections = Gauge(
            f"{namespace}_connections", "Stations connected now, by OCPP protocol", ["protocol"], registry=r
        )
        self.buckets = tuple(sorted(buckets))
        # The exchanges, counted in plain dicts on the message path (a prometheus_client
        # Counter and Histogram cost ~10x more per message: locks, checks, one object per
        # series) and turned into ocpprpc_calls_total and ocpprpc_call_duration_seconds when
        # scraped (_CallsCollector).  (action, direction, outcome) -> [count]:
        self._calls: dict[tuple[str, str, str], list[int]] = {}
        # (action, direction) -> per bucket the count of durations up to it, +Inf last, then the sum.
        self._durations: dict[tuple[str, str], list[float]] = {}
        # The common case in one lookup: (action, direction, kind) of an action counted under its
        # own name -> its "ok" count and, for a CALL, its histogram.
        self._ok: dict[tuple[str, str, str], tuple[list[int], list[float] | None]] = {}
        r.register(_CallsCollector(self, namespace))
        #: Our requests refused by validation, and station answers that failed it.
        self.validation_failures = Counter(
            f"{namespace}_validation_failures",
            "Payloads that failed validation in an exchange (out: our request or the station's answer)",
            ["action", "direction"],
            registry=r,
        )
        #: CALLs that breached a rate limit, by action and what was done.
        self.rate_limited = Counter(
            f"{namespace}_rate_limited",
            "Station CALLs that breached a rate limit, by action and what was done",
            ["action", "on_breach"],
            registry=r,
        )
        #: Every security event, by kind and severity.
        self.security_events = Counter(
            f"{namespace}_security_events",
            "Security events by kind and severity (the SecurityEvents hub)",
            ["kind", "severity"],
            registry=r,
        )
        self._actions: set[str] = set()
        self._bound = False

    # -- the message middleware ------------------------------------------------------------

    async def __call__(self, ctx: MetricsContext, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        try:
            answer = await call_next(ctx)
        except BaseException as exc:
            self.observe(ctx, None, exc)
            raise
        self.observe(ctx, answer, None)
        return answer

    def observe(self, ctx: MetricsContext, answer: Any, error: BaseException | None) -> None:
        """Count one exchange that ended with *answer* or *error* (what ``__call__`` does after
        ``call_next``; a session whose middleware all observe calls it directly, no coroutine)."""
        started = ctx.started  # taken as the exchange entered the onion: one clock read fewer
        if error is not None:
            if isinstance(error, Exception):
                failed = _FAILURES.get(type(error).__name__)  # before the code: InvalidResponseError has one
                if failed is None:
                    failed = "callerror" if getattr(error, "code", None) is not None else "error"
                self._count(ctx, failed, started)
            else:
                self._count(ctx, "cancelled", started)
            return
        if isinstance(answer, enum.Enum) and answer.name in _NO_ANSWER:
            self._count(ctx, "dropped", started)
            return
        ok = self._ok.get((ctx.action, ctx.direction, ctx.kind))
        if ok is None:
            self._count(ctx, "ok", started)
            return
        # _count(ctx, "ok", started), for a series counted before: every exchange's path.
        count, histogram = ok
        count[0] += 1
        if histogram is not None:
            seconds = time.perf_counter() - started
            histogram[bisect_left(self.buckets, seconds)] += 1
            histogram[-1] += seconds

    def _count(self, ctx: MetricsContext, outcome: str, started: float) -> None:
        action = self._action(ctx.action)
        direction = ctx.direction
        key = (action, direction, outcome)
        count = self._calls.get(key)
        if count is None:
            count = self._calls[key] = [0]
        count[0] += 1
        histogram = None
        if ctx.kind == "call" and outcome in ("ok", "callerror"):
            seconds = time.perf_counter() - started
            pair = (action, direction)
            histogram = self._durations.get(pair)
            if histogram is None:
                histogram = self._durations[pair] = [0.0] * (len(self.buckets) + 2)
            histogram[bisect_left(self.buckets, seconds)] += 1  # the first bucket it fits (le)
            histogram[-1] += seconds
        elif outcome in _VALIDATION:
            self.validation_failures.labels(action, direction).inc()
        if outcome == "ok" and action == ctx.action:  # the next one by the fast path
            self._ok[(action, direction, ctx.kind)] = (count, histogram)

    def _action(self, action: str) -> str:
        """*action* as a label value: itself while fewer than ``max_actions`` are known, else ``_other``."""
        actions = self._actions
        if action in actions:
            return action
        if len(actions) < self.max_actions:
            actions.add(action)
            return action
        return "_other"

    # -- the security-event subscriber -----------------------------------------------------

    def observe_event(self, event: Any) -> None:
        """Count one security event (subscribe this to the hub: ``hub.subscribe(metrics.observe_event)``)."""
        kind = event.kind
        self.security_events.labels(kind, event.severity).inc()
        if kind == "station_connected":
            self.connections.labels(event.protocol).inc()
        elif kind == "station_disconnected":
            self.connections.labels(event.protocol).dec()
        elif kind == "rate_limited":
            self.rate_limited.labels(self._action(event.action), event.on_breach).inc()

    # -- what only the server counts -------------------------------------------------------

    def bind(self, stats: Callable[[], Any]) -> None:
        """Export what the server counts itself, read from *stats* (``server.stats``) at scrape time.

        Once per :class:`Metrics`: one object serves one server.
        """
        if self._bound:
            raise ValueError("this Metrics is already bound to a server; make one Metrics per server")
        self._bound = True
        self.registry.register(_StatsCollector(stats, self.namespace))

    def call_counts(self) -> dict[str, dict[str, dict[str, int]]]:
        """The exchanges counted so far: ``{action: {direction: {outcome: count}}}``."""
        counts: dict[str, dict[str, dict[str, int]]] = {}
        for (action, direction, outcome), count in list(self._calls.items()):
            counts.setdefault(action, {}).setdefault(direction, {})[outcome] = count[0]
        return counts

    def render(self) -> bytes:
        """The registry in the Prometheus text format (what ``GET /metrics`` answers)."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    @property
    def content_type(self) -> str:
        """The Content-Type of :meth:`render`'s output."""
        from prometheus_client import CONTENT_TYPE_LATEST

        return CONTENT_TYPE_LATEST


class _CallsCollector:
    """``ocpprpc_calls_total`` and ``ocpprpc_call_duration_seconds`` from the middleware's plain counts."""

    def __init__(self, metrics: Metrics, namespace: str) -> None:
        self.metrics = metrics
        self.namespace = namespace

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily

        n = self.namespace
        calls = CounterMetricFamily(
            f"{n}_calls",
            "CALLs and SENDs by action, direction (in: from the station, out: to it) and outcome",
            labels=["action", "direction", "outcome"],
        )
        # list(): one atomic copy, should another thread scrape while the event loop counts.
        for call, count in list(self.metrics._calls.items()):
            calls.add_metric(list(call), count[0])
        yield calls
        durations = HistogramMetricFamily(
            f"{n}_call_duration_seconds",
            "Seconds from a CALL to its answer (in: our handler's time; out: the station's answer)",
            labels=["action", "direction"],
        )
        bounds = [repr(float(bound)) for bound in self.metrics.buckets] + ["+Inf"]
        for pair, histogram in list(self.metrics._durations.items()):
            counts = histogram[:-1]
            cumulative: list[tuple[str, float]] = []
            running = 0.0
            for bound, in_bucket in zip(bounds, counts, strict=True):
                running += in_bucket
                cumulative.append((bound, running))
            durations.add_metric(list(pair), cumulative, histogram[-1])
        yield durations


class _StatsCollector:
    """The server's own counters (bytes, handshakes, bad messages, in-flight gauges) at scrape time."""

    def __init__(self, stats: Callable[[], Any], namespace: str) -> None:
        self.stats = stats
        self.namespace = namespace

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily

        n = self.namespace
        s = self.stats()
        handshakes = CounterMetricFamily(
            f"{n}_handshakes",
            "Upgrade requests by outcome: accepted, or the reason refused",
            labels=["outcome"],
        )
        handshakes.add_metric(["accepted"], s.accepted_handshakes)
        for reason, count in sorted(s.rejected_handshakes.items()):
            handshakes.add_metric([reason], count)
        yield handshakes
        yield CounterMetricFamily(
            f"{n}_bytes_received", "Bytes read from stations (WebSocket frames)", s.bytes_received
        )
        yield CounterMetricFamily(
            f"{n}_bytes_sent", "Bytes written to stations (WebSocket frames)", s.bytes_sent
        )
        yield CounterMetricFamily(
            f"{n}_bad_messages",
            "Messages from stations the engine refused (malformed, failed validation, invalid answers)",
            s.bad_messages,
        )
        in_flight = GaugeMetricFamily(f"{n}_calls_in_flight", "Calls under way now", labels=["direction"])
        in_flight.add_metric(["in"], s.calls_in_flight_in)
        in_flight.add_metric(["out"], s.calls_in_flight_out)
        yield in_flight
        yield GaugeMetricFamily(f"{n}_bytes_buffered", "Bytes queued in memory, both ways", s.bytes_buffered)
        yield GaugeMetricFamily(f"{n}_uptime_seconds", "Seconds since the server was made", s.uptime)
        if s.cluster is not None:  # in a cluster: what its delivery last sampled (no Redis round trip)
            yield from _cluster_families(n, s.cluster)


def _cluster_families(n: str, c: Any) -> Iterator[Metric]:
    """``ocpprpc_cluster_*`` from ``stats().cluster`` (a ``ClusterStats``)."""
    from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

    yield InfoMetricFamily(f"{n}_cluster_node", "This node's id in the cluster", {"node": c.node})
    yield CounterMetricFamily(
        f"{n}_cluster_sent", "Envelopes put in other nodes' inboxes (calls, replies, kicks)", c.sent
    )
    yield CounterMetricFamily(
        f"{n}_cluster_received", "Envelopes handed to this node from its inbox", c.received
    )
    dropped = CounterMetricFamily(
        f"{n}_cluster_dropped",
        "Inbox entries dropped: duplicate (read again), expired (past its deadline), malformed",
        labels=["reason"],
    )
    dropped.add_metric(["duplicate"], c.duplicates)
    dropped.add_metric(["expired"], c.expired)
    dropped.add_metric(["malformed"], c.malformed)
    yield dropped
    yield CounterMetricFamily(
        f"{n}_cluster_node_unavailable",
        "Deliveries refused because the target node was not alive (outcome unknown to the caller)",
        c.node_unavailable,
    )
    yield CounterMetricFamily(
        f"{n}_cluster_broadcasts_sent", "Broadcasts this node published", c.broadcasts_sent
    )
    yield CounterMetricFamily(
        f"{n}_cluster_broadcasts_received", "Broadcasts of other nodes received", c.broadcasts_received
    )
    yield CounterMetricFamily(
        f"{n}_cluster_subscriber_restarts",
        "Times the broadcast subscription ended or failed and was made again",
        c.subscriber_restarts,
    )
    yield CounterMetricFamily(
        f"{n}_cluster_rehydrations",
        "Times this node found Redis had lost its data (or been away) and registered again",
        c.rehydrations,
    )
    yield CounterMetricFamily(
        f"{n}_cluster_unavailable",
        "Operations the shared medium (Redis) did not answer or refused",
        c.unavailable,
    )
    if c.inbox_pending is not None:  # else Redis did not answer the sample: no figure rather than a stale one
        if c.inbox_lag is not None:
            yield GaugeMetricFamily(f"{n}_cluster_inbox_lag", "Inbox entries not yet read", c.inbox_lag)
        yield GaugeMetricFamily(
            f"{n}_cluster_inbox_pending",
            "Inbox entries read and not acknowledged (handed off now, or read by a run that died)",
            c.inbox_pending,
        )
        yield GaugeMetricFamily(
            f"{n}_cluster_oldest_pending_seconds",
            "Age of the oldest pending inbox entry (0: none pending)",
            (c.oldest_pending_ms or 0) / 1000,
        )
    yield GaugeMetricFamily(
        f"{n}_cluster_sample_age_seconds", "Seconds since these cluster figures were sampled", c.age
    )
