"""``now_iso()``: the timestamps the ready CSMS and the simulator put in their messages."""

from __future__ import annotations

import datetime
import re
import time

from hypothesis import given
from hypothesis import strategies as st

from ocpprpc._cli import scenario
from ocpprpc._cli.scenario import iso_at, now_iso

SHAPE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


def parse(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@given(st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False))
def test_any_moment_is_formatted_to_the_millisecond_below_it(moment: float) -> None:
    text = iso_at(moment)
    assert SHAPE.fullmatch(text), text
    assert moment - 0.001 - 1e-6 <= parse(text) <= moment + 1e-6
    assert text[:19] == datetime.datetime.fromtimestamp(int(moment), datetime.UTC).strftime(
        "%Y-%m-%dT%H:%M:%S"
    )


def test_the_cached_second_follows_the_clock() -> None:
    assert iso_at(1_700_000_000.9994) == "2023-11-14T22:13:20.999Z"
    assert iso_at(1_700_000_001.0) == "2023-11-14T22:13:21.000Z"
    assert scenario._second[0] == 1_700_000_001
    assert iso_at(1_700_000_000.5) == "2023-11-14T22:13:20.500Z"  # back in time: formatted anew


def test_now_is_now() -> None:
    before = time.time()
    text = now_iso()
    after = time.time()
    assert SHAPE.fullmatch(text)
    assert before - 0.001 <= parse(text) <= after
