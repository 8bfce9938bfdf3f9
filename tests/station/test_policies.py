"""The pure settings: backoff windows, keepalive jitter, retry delays (no I/O)."""

from __future__ import annotations

import pytest

from ocpprpc import Backoff, Keepalive, Retry


def test_backoff_ceiling_grows_exponentially_up_to_the_cap() -> None:
    backoff = Backoff(base=1, cap=30)
    assert [backoff.ceiling(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert backoff.ceiling(10_000) == 30  # no overflow


def test_backoff_full_jitter_spans_zero_to_the_ceiling() -> None:
    assert Backoff(base=1, cap=30, rng=lambda: 0.0).delay(4) == 0.0
    assert Backoff(base=1, cap=30, rng=lambda: 0.5).delay(4) == 4.0
    assert Backoff(base=1, cap=30, rng=lambda: 0.999).delay(9) == pytest.approx(29.97)


@pytest.mark.parametrize("kwargs", [{"base": -1}, {"cap": -1}, {"factor": 0.5}, {"max_attempts": 0}])
def test_backoff_refuses_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)  # type: ignore[arg-type]


def test_backoff_attempts_count_from_one() -> None:
    with pytest.raises(ValueError):
        Backoff().ceiling(0)


def test_keepalive_interval_jitter_is_plus_minus_25_percent() -> None:
    assert Keepalive(interval=10, rng=lambda: 0.0).next_interval() == pytest.approx(7.5)
    assert Keepalive(interval=10, rng=lambda: 0.5).next_interval() == pytest.approx(10)
    assert Keepalive(interval=10, rng=lambda: 1.0).next_interval() == pytest.approx(12.5)
    assert Keepalive(interval=10, timeout=5).detection_bound == pytest.approx(17.5)


@pytest.mark.parametrize("kwargs", [{"interval": 0}, {"timeout": 0}, {"jitter": 1.0}, {"jitter": -0.1}])
def test_keepalive_refuses_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Keepalive(**kwargs)  # type: ignore[arg-type]


def test_retry_delay_jitter_and_validation() -> None:
    assert Retry(delay=2, jitter=0.5, rng=lambda: 0.0).next_delay() == pytest.approx(1)
    assert Retry(delay=2, jitter=0.5, rng=lambda: 1.0).next_delay() == pytest.approx(3)
    with pytest.raises(ValueError):
        Retry(attempts=-1)
    with pytest.raises(ValueError):
        Retry(jitter=2)
    with pytest.raises(ValueError):
        Retry(delay=-1)
