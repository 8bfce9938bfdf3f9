"""ocpprpc.tune_gc: the collector's thresholds for a CSMS process (and nothing changed on a mistake)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest

import ocpprpc


@pytest.fixture(autouse=True)
def _restore_thresholds() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


def test_tune_gc_sets_the_csms_thresholds_and_returns_the_previous_ones() -> None:
    gc.set_threshold(700, 10, 10)
    assert ocpprpc.tune_gc() == (700, 10, 10)
    assert gc.get_threshold() == ocpprpc.CSMS_GC_THRESHOLDS == (50_000, 20, 100)
    assert ocpprpc.tune_gc((1000, 5, 5)) == (50_000, 20, 100)
    assert gc.get_threshold() == (1000, 5, 5)


@pytest.mark.parametrize(
    "bad",
    [(0, 10, 10), (-1, 10, 10), (700, 10), (700, 10, 10, 10), (700.0, 10, 10), (True, 10, 10), ("700", 1, 1)],
)
def test_anything_but_three_positive_integers_is_refused_and_changes_nothing(bad: Any) -> None:
    gc.set_threshold(700, 10, 10)
    with pytest.raises(ValueError, match="three positive integers"):
        ocpprpc.tune_gc(bad)
    assert gc.get_threshold() == (700, 10, 10)
