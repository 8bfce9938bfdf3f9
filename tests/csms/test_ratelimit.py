"""Per-station rate limits: the grammar, the buckets, the verdicts and the bounded memory."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocpprpc import ErrorCode
from ocpprpc._csms.ratelimit import (
    ALLOWED,
    RATE_LIMIT_ERROR_CODE,
    Breach,
    OnBreach,
    RateLimit,
    RateLimiter,
    StationLimits,
)


class FakeClock:
    """Monotonic seconds moved by hand."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- the grammar -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "count", "seconds"),
    [
        ("10/60", 10, 60.0),
        ("10/1m", 10, 60.0),
        ("100/1h", 100, 3600.0),
        ("100/h", 100, 3600.0),
        ("5/s", 5, 1.0),
        (" 5 / 2.5 S ", 5, 2.5),
        ("1/1d", 1, 86400.0),
        ("3/0.5", 3, 0.5),
    ],
)
def test_parse_reads_the_grammar(text: str, count: int, seconds: float) -> None:
    limit = RateLimit.parse(text)
    assert (limit.count, limit.per_seconds, limit.burst) == (count, seconds, None)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "10",
        "10/",
        "/60",
        "ten/60",
        "10/60x",
        "10/1w",
        "-1/60",
        "10/-60",
        "10/60/2",
        "1e3/60",
        "10/inf",
        "10/nan",
        "10//60",
        "10/1 m m",
        "\x00",
        "10/6\u0660",
        "\uff11\uff10/60",
    ],
)
def test_parse_rejects_junk_naming_the_text(text: str) -> None:
    with pytest.raises(ValueError, match="invalid rate limit") as info:
        RateLimit.parse(text)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize("text", ["0/60", "10/0", "10/0m", "10/0.0"])
def test_parse_rejects_zero_naming_the_text(text: str) -> None:
    with pytest.raises(ValueError, match=r"invalid rate limit .*(at least 1|positive)"):
        RateLimit.parse(text)


def test_parse_rejects_a_non_string() -> None:
    with pytest.raises(ValueError, match="is a string"):
        RateLimit.parse(10)  # type: ignore[arg-type]


def test_parse_passes_burst() -> None:
    assert RateLimit.parse("10/60", burst=3) == RateLimit(10, 60.0, 3)


@given(st.text(max_size=30))
def test_parse_never_raises_anything_but_value_error(text: str) -> None:
    try:
        limit = RateLimit.parse(text)
    except ValueError:
        return
    assert limit.count >= 1 and limit.per_seconds > 0


@given(st.integers(1, 10**6), st.integers(1, 10**6), st.sampled_from(["", "s", "m", "h", "d"]))
def test_parse_round_trips_numbers(count: int, period: int, unit: str) -> None:
    scale = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    assert RateLimit.parse(f"{count}/{period}{unit}") == RateLimit(count, float(period * scale))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 1.0), "at least 1 message"),
        ((True, 1.0), "at least 1 message"),
        ((1.5, 1.0), "at least 1 message"),
        ((1, 0), "positive"),
        ((1, float("inf")), "positive"),
        ((1, float("nan")), "positive"),
        ((1, "1"), "must be a number"),
        ((1, True), "must be a number"),
        ((1, 1.0, 0), "burst"),
        ((1, 1.0, True), "burst"),
        ((1, 1.0, 2.5), "burst"),
    ],
)
def test_rate_limit_checks_its_fields(args: tuple[object, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RateLimit(*args)  # type: ignore[arg-type]


def test_rate_limit_derived_values_and_text() -> None:
    limit = RateLimit(10, 60.0)
    assert (limit.capacity, limit.interval, limit.refill_time) == (10, 6.0, 60.0)
    assert str(limit) == "10/60s"
    bursty = RateLimit(10, 60.0, burst=2)
    assert (bursty.capacity, bursty.refill_time, str(bursty)) == (2, 12.0, "10/60s (burst 2)")


# -- configuration --------------------------------------------------------------------


def test_station_limits_read_strings() -> None:
    limits = StationLimits(global_="100/1m", per_action={"MeterValues": "10/60"}, on_breach="CALLERROR")  # type: ignore[arg-type,dict-item]
    assert limits.global_ == RateLimit(100, 60.0)
    assert limits.per_action == {"MeterValues": RateLimit(10, 60.0)}
    assert limits.on_breach is OnBreach.CALLERROR
    assert limits.error_code is ErrorCode.GENERIC_ERROR
    assert limits.refill_time == 60.0
    with pytest.raises(TypeError):
        limits.per_action["Heartbeat"] = RateLimit(1, 1.0)  # type: ignore[index]


def test_station_limits_without_limits_refill_at_once() -> None:
    assert StationLimits().refill_time == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"global_": 5}, "global_ must be a RateLimit"),
        ({"per_action": {"Heartbeat": "often"}}, "invalid rate limit 'often'"),
        ({"per_action": {"Heartbeat": None}}, "the limit for 'Heartbeat'"),
        ({"on_breach": "explode"}, "on_breach must be one of 'drop', 'callerror', 'disconnect'"),
        ({"on_breach": 3}, "on_breach must be an OnBreach or a function"),
        ({"error_code": "Oops"}, "Oops"),
    ],
)
def test_station_limits_reject_bad_values(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StationLimits(**kwargs)  # type: ignore[arg-type]


def test_error_code_is_generic_error_and_configurable() -> None:
    assert RATE_LIMIT_ERROR_CODE is ErrorCode.GENERIC_ERROR
    assert StationLimits(error_code="SecurityError").error_code is ErrorCode.SECURITY_ERROR  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"max_identities": 0}, "max_identities"), ({"idle_ttl": 0}, "idle_ttl")]
)
def test_limiter_rejects_bad_bounds(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RateLimiter(StationLimits(), clock=FakeClock(), **kwargs)  # type: ignore[arg-type]


# -- the buckets ----------------------------------------------------------------------


def test_global_limit_allows_a_burst_then_one_per_interval() -> None:
    clock = FakeClock()
    limiter = RateLimiter(StationLimits(global_=RateLimit(3, 3.0)), clock=clock)
    assert [limiter.check("CP1", "Heartbeat").allowed for _ in range(4)] == [True, True, True, False]
    refused = limiter.check("CP1", "Heartbeat")
    assert refused.on_breach is OnBreach.DROP and refused.error_code is None
    assert refused.breach == Breach("CP1", "Heartbeat", RateLimit(3, 3.0), None, pytest.approx(1.0))  # type: ignore[arg-type]
    clock.now += 0.999
    assert not limiter.check("CP1", "Heartbeat")
    clock.now += 0.001
    assert limiter.check("CP1", "Heartbeat") is ALLOWED
    assert not limiter.check("CP1", "Heartbeat")


def test_burst_sets_the_bucket_size() -> None:
    clock = FakeClock()
    limiter = RateLimiter(StationLimits(global_=RateLimit(10, 10.0, burst=2)), clock=clock)
    assert [bool(limiter.check("CP1", "A")) for _ in range(3)] == [True, True, False]
    clock.now += 1.0
    assert [bool(limiter.check("CP1", "A")) for _ in range(2)] == [True, False]


def test_stations_do_not_share_buckets() -> None:
    limiter = RateLimiter(StationLimits(global_=RateLimit(1, 60.0)), clock=FakeClock())
    assert limiter.check("CP1", "Heartbeat")
    assert not limiter.check("CP1", "Heartbeat")
    assert limiter.check("CP2", "Heartbeat")


def test_action_limit_applies_to_its_action_only() -> None:
    limits = StationLimits(per_action={"MeterValues": RateLimit(1, 60.0)}, on_breach=OnBreach.CALLERROR)
    limiter = RateLimiter(limits, clock=FakeClock())
    assert limiter.check("CP1", "MeterValues")
    refused = limiter.check("CP1", "MeterValues")
    assert refused.on_breach is OnBreach.CALLERROR
    assert refused.error_code is ErrorCode.GENERIC_ERROR
    assert refused.breach is not None and refused.breach.scope == "MeterValues"
    assert refused.breach.describe() == "rate limit exceeded: MeterValues limit 1/60s; retry after 60 s"
    assert all(limiter.check("CP1", "Heartbeat") for _ in range(100))


def test_a_refused_call_consumes_nothing() -> None:
    """A CALL the global limit refuses leaves the action bucket alone, and vice versa."""
    clock = FakeClock()
    limits = StationLimits(global_=RateLimit(2, 2.0), per_action={"MeterValues": RateLimit(1, 10.0)})
    limiter = RateLimiter(limits, clock=clock)
    assert limiter.check("CP1", "Heartbeat")
    assert limiter.check("CP1", "Heartbeat")
    refused = limiter.check("CP1", "MeterValues")  # passes its own limit, breaches the global one
    assert refused.breach is not None and refused.breach.scope is None
    assert "message limit 2/2s" in refused.breach.describe()
    clock.now += 1.0
    assert limiter.check("CP1", "MeterValues")  # its own token was not spent above
    refused = limiter.check("CP1", "MeterValues")
    assert refused.breach is not None and refused.breach.scope == "MeterValues"
    clock.now += 1.0
    assert limiter.check("CP1", "Heartbeat")  # the action breach did not spend a global token


def test_state_follows_the_identity_not_the_connection() -> None:
    limiter = RateLimiter(StationLimits(global_="1/60"), clock=FakeClock())  # type: ignore[arg-type]
    assert limiter.check("CP1", "BootNotification")
    # The station drops its link and reconnects: same identity, same bucket.
    assert not limiter.check("CP1", "BootNotification")
    limiter.forget("CP1")
    assert limiter.check("CP1", "BootNotification")
    limiter.forget("never-seen")


def test_limiter_without_limits_allows_everything() -> None:
    limiter = RateLimiter(StationLimits(), clock=FakeClock())
    assert all(limiter.check("CP1", "Heartbeat") is ALLOWED for _ in range(1000))


# -- breach handlers -----------------------------------------------------------------------


def test_breach_handler_decides_per_breach() -> None:
    seen: list[Breach] = []

    def handler(breach: Breach) -> OnBreach:
        seen.append(breach)
        return OnBreach.DISCONNECT if breach.action == "MeterValues" else OnBreach.CALLERROR

    limiter = RateLimiter(StationLimits(global_=RateLimit(1, 60.0), on_breach=handler), clock=FakeClock())
    assert limiter.check("CP1", "Heartbeat")
    assert limiter.check("CP1", "MeterValues").on_breach is OnBreach.DISCONNECT
    answer = limiter.check("CP1", "Heartbeat")
    assert answer.on_breach is OnBreach.CALLERROR and answer.error_code is ErrorCode.GENERIC_ERROR
    assert [b.action for b in seen] == ["MeterValues", "Heartbeat"]


def test_breach_handler_may_answer_a_value_string() -> None:
    limiter = RateLimiter(
        StationLimits(global_=RateLimit(1, 60.0), on_breach=lambda breach: "disconnect"),  # type: ignore[arg-type,return-value]
        clock=FakeClock(),
    )
    limiter.check("CP1", "A")
    assert limiter.check("CP1", "A").on_breach is OnBreach.DISCONNECT


@pytest.mark.parametrize("answer", [ZeroDivisionError, lambda breach: "nonsense"])
def test_a_failing_breach_handler_drops_and_is_logged(
    answer: object, caplog: pytest.LogCaptureFixture
) -> None:
    def handler(breach: Breach) -> OnBreach:
        if answer is ZeroDivisionError:
            raise ZeroDivisionError("boom")
        return answer(breach)  # type: ignore[operator,no-any-return]

    limiter = RateLimiter(StationLimits(global_=RateLimit(1, 60.0), on_breach=handler), clock=FakeClock())
    limiter.check("CP1", "A")
    with caplog.at_level(logging.ERROR, logger="ocpprpc.ratelimit"):
        assert limiter.check("CP1", "A").on_breach is OnBreach.DROP
    assert limiter.handler_errors == 1
    assert "breach handler failed for station 'CP1'" in caplog.text


# -- bounded memory -----------------------------------------------------------------------


def test_idle_identities_are_forgotten_after_the_refill_time() -> None:
    clock = FakeClock()
    limiter = RateLimiter(StationLimits(global_=RateLimit(2, 10.0)), clock=clock)
    assert limiter.idle_ttl == 10.0
    for n in range(5):
        limiter.check(f"CP{n}", "Heartbeat")
    assert len(limiter) == 5
    clock.now += 5.0
    limiter.check("CP0", "Heartbeat")
    clock.now += 6.0  # CP1..CP4 idle for 11 s, CP0 for 6 s
    limiter.check("CP9", "Heartbeat")
    assert len(limiter) == 2


def test_idle_ttl_defaults_to_at_least_one_second_and_can_be_set() -> None:
    assert RateLimiter(StationLimits(), clock=FakeClock()).idle_ttl == 1.0
    assert RateLimiter(StationLimits(), clock=FakeClock(), idle_ttl=7.5).idle_ttl == 7.5


def test_a_sweep_forgets_a_bounded_batch_per_check() -> None:
    clock = FakeClock()
    limiter = RateLimiter(StationLimits(global_=RateLimit(1, 1.0)), clock=clock, idle_ttl=1.0)
    for n in range(200):
        limiter.check(f"CP{n}", "A")
    clock.now += 2.0
    limiter.check("new", "A")
    assert len(limiter) == 200 - 64 + 1
    limiter.check("new", "A")  # the backlog is worked off on the following checks
    limiter.check("new", "A")
    limiter.check("new", "A")
    assert len(limiter) == 1


def test_the_table_is_capped_least_recently_seen_first() -> None:
    clock = FakeClock()
    limiter = RateLimiter(StationLimits(global_=RateLimit(1, 60.0)), clock=clock, max_identities=2)
    limiter.check("CP1", "A")
    limiter.check("CP2", "A")
    limiter.check("CP1", "A")  # CP1 is now the most recently seen
    limiter.check("CP3", "A")
    assert len(limiter) == 2 and limiter.evictions == 1
    assert not limiter.check("CP1", "A")  # remembered
    assert limiter.check("CP2", "A")  # evicted: came back with a full bucket


# -- the property ------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    count=st.integers(1, 20),
    per=st.integers(1, 60),
    burst=st.none() | st.integers(1, 20),
    gaps=st.lists(st.integers(0, 4000), min_size=1, max_size=300),
)
def test_no_window_ever_passes_more_than_count_plus_burst(
    count: int, per: int, burst: int | None, gaps: list[int]
) -> None:
    limit = RateLimit(count, float(per), burst)
    clock = FakeClock(0.0)
    limiter = RateLimiter(StationLimits(global_=limit, per_action={"A": limit}), clock=clock)
    passed: list[float] = []
    for gap in gaps:
        clock.now += gap / 1000
        if limiter.check("CP1", "A"):
            passed.append(clock.now)
    start = 0
    for end, at in enumerate(passed):
        while passed[start] <= at - per:
            start += 1
        assert end - start + 1 <= limit.capacity + count
