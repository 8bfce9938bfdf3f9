"""ocpprpc.tune_gc: the collector's thresholds for a CSMS process (and nothing changed on a mistake),
and ``freeze_survivors``: what outlives a collection leaves the collector's view."""

from __future__ import annotations

import argparse
import gc
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import ocpprpc
from ocpprpc._cli.args import build_parser
from ocpprpc._cli.config import apply_config
from ocpprpc._cli.serve import tune_process_gc
from ocpprpc._ops.gc_tuning import _freeze_after_collection


@pytest.fixture(autouse=True)
def _restore_collector() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)
    while _freeze_after_collection in gc.callbacks:
        gc.callbacks.remove(_freeze_after_collection)
    gc.unfreeze()


def test_tune_gc_sets_the_csms_thresholds_and_returns_the_previous_ones() -> None:
    gc.set_threshold(700, 10, 10)
    assert ocpprpc.tune_gc() == (700, 10, 10)
    assert gc.get_threshold() == ocpprpc.CSMS_GC_THRESHOLDS == (50_000, 20, 100)
    assert ocpprpc.tune_gc((1000, 5, 5)) == (50_000, 20, 100)
    assert gc.get_threshold() == (1000, 5, 5)
    assert _freeze_after_collection not in gc.callbacks


@pytest.mark.parametrize(
    "bad",
    [(0, 10, 10), (-1, 10, 10), (700, 10), (700, 10, 10, 10), (700.0, 10, 10), (True, 10, 10), ("700", 1, 1)],
)
def test_anything_but_three_positive_integers_is_refused_and_changes_nothing(bad: Any) -> None:
    gc.set_threshold(700, 10, 10)
    with pytest.raises(ValueError, match="three positive integers"):
        ocpprpc.tune_gc(bad, freeze_survivors=True)
    assert gc.get_threshold() == (700, 10, 10)
    assert _freeze_after_collection not in gc.callbacks


class Node:
    """An object the collector tracks, which can be made part of a cycle."""

    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> Node:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return a


def test_survivors_of_a_collection_are_frozen_and_garbage_is_still_collected() -> None:
    ocpprpc.tune_gc(freeze_survivors=True)
    ocpprpc.tune_gc(freeze_survivors=True)  # twice: one hook
    assert gc.callbacks.count(_freeze_after_collection) == 1
    kept = cycle()
    cycle()  # garbage before the collection: found by it, as without the hook
    assert gc.collect(0) >= 2
    frozen = gc.get_freeze_count()
    assert frozen > 0 and gc.get_count()[1:] == (0, 0)  # nothing left in the older generations
    # A survivor is no longer seen: its cycle, dropped now, outlives a full collection ...
    kept.other = kept
    del kept
    gc.collect()
    assert any(isinstance(obj, Node) for obj in _frozen_objects())
    # ... until the application unfreezes: the next full collection frees it.
    gc.unfreeze()
    assert gc.collect() >= 1
    assert not any(isinstance(obj, Node) for obj in gc.get_objects())


def _frozen_objects() -> list[object]:
    gc.unfreeze()
    try:
        return gc.get_objects(generation=2)
    finally:
        gc.freeze()


@pytest.mark.parametrize("bad", ["no", 1, None, [True]])
def test_freeze_survivors_must_be_a_bool_and_a_mistake_changes_nothing(bad: Any) -> None:
    gc.set_threshold(700, 10, 10)
    with pytest.raises(TypeError, match="freeze_survivors must be True or False"):
        ocpprpc.tune_gc(freeze_survivors=bad)
    assert gc.get_threshold() == (700, 10, 10)
    assert _freeze_after_collection not in gc.callbacks


def test_false_removes_the_hook() -> None:
    ocpprpc.tune_gc(freeze_survivors=True)
    ocpprpc.tune_gc(freeze_survivors=False)
    assert _freeze_after_collection not in gc.callbacks
    gc.unfreeze()
    gc.collect()
    assert gc.get_freeze_count() == 0


def serve_args(*argv: str) -> argparse.Namespace:
    args = build_parser().parse_args(["serve", *argv])
    apply_config(args, ["serve", *argv])
    return args


@pytest.mark.parametrize(
    ("argv", "config", "thresholds", "hooked"),
    [
        ((), None, (50_000, 20, 100), False),
        (("--gc-freeze",), None, (50_000, 20, 100), True),
        (("--gc-threshold", "0", "--gc-freeze"), None, (700, 10, 10), True),
        (("--gc-threshold", "0"), None, (700, 10, 10), False),
        ((), "gc_freeze = true\n", (50_000, 20, 100), True),
        ((), "gc_freeze = false\ngc_threshold = 2000\n", (2000, 20, 100), False),
    ],
    ids=["default", "flag", "flag-python-thresholds", "python-defaults", "config", "config-off"],
)
def test_serve_applies_gc_threshold_and_gc_freeze(
    tmp_path: Path, argv: tuple[str, ...], config: str | None, thresholds: tuple[int, int, int], hooked: bool
) -> None:
    gc.set_threshold(700, 10, 10)
    if config is not None:
        path = tmp_path / "csms.toml"
        path.write_text(config)
        argv = (*argv, "--config", str(path))
    tune_process_gc(serve_args(*argv))
    assert gc.get_threshold() == thresholds
    assert (_freeze_after_collection in gc.callbacks) is hooked


def test_the_documented_example_freezes_the_connection() -> None:
    example = Path(__file__).resolve().parents[2] / "docs" / "examples" / "gc_freeze.py"
    out = subprocess.run([sys.executable, str(example)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[1:] == ["frozen objects: True", "left to scan in the old generations: (0, 0)"], lines
