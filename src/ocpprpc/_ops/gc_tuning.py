"""The garbage collector's thresholds for a process that holds many long-lived connections.

With Python's defaults (700, 10, 10) the collector scans the whole old generation
whenever a quarter more objects have survived into it since the last full pass.  A
CSMS holding 15,000 stations does that about every 30 s, 1.2 s a pass, and frees
nothing: the stations' objects are alive, and a call's own objects (alive until
the station's next call) keep surviving into the old generation.  With a first
threshold of 50,000 the objects of a call mostly die by reference counting before a
young collection sees them, so almost nothing is promoted and full passes become rare.
Measured (shared harness W5: 15,000 stations, strict, asyncio): latency p99 1,180 ms
-> 5.9 ms, server CPU per call 275.5 -> 237.8 µs (bench/RESULTS.md).

Thresholds only move a settled connection's visits around: each object it keeps is
still seen once as young and once in the middle generation before it settles in the old
one (~70 objects a connection; at 15,000 stations the middle generation's passes cost
15-20 µs per booted station, bench/RESULTS.md).  ``freeze_survivors=True`` removes the
second visit: after each collection the survivors are frozen (``gc.freeze()``), so the
collector sees an object at most once and full passes find an empty old generation.
That is safe for what ocpprpc itself keeps, which is freed by reference counting and
never by the collector (tests/csms/test_garbage.py proves it for calls, opened and
closed connections); it is not free for an application whose own objects form a
reference cycle *after* surviving a collection: such a cycle is never collected until
``gc.unfreeze()``, so it is an opt-in.

It is a setting of the whole process, so the library never changes it by itself:
``python -m ocpprpc serve`` applies it (``--gc-threshold``, ``--gc-freeze``), an
application that embeds a server calls :func:`tune_gc` once at start-up.
"""

from __future__ import annotations

import gc

__all__ = ["CSMS_GC_THRESHOLDS", "tune_gc"]

#: Generation 0, 1 and 2 thresholds for a CSMS process (see the module docstring).
CSMS_GC_THRESHOLDS: tuple[int, int, int] = (50_000, 20, 100)


def tune_gc(
    thresholds: tuple[int, int, int] = CSMS_GC_THRESHOLDS, *, freeze_survivors: bool = False
) -> tuple[int, int, int]:
    """Set the collector's thresholds for a CSMS process; return the previous ones.

    :param thresholds: for generations 0, 1 and 2 (``gc.set_threshold``); each a
        positive integer.
    :param freeze_survivors: freeze what survives each collection (see the module
        docstring: faster boots and no full passes, at the price of never collecting a
        cycle that forms among frozen objects until ``gc.unfreeze()``); ``False``
        removes the hook if an earlier call installed it.
    :raises ValueError: not three positive integers (nothing is changed).
    :raises TypeError: *freeze_survivors* not a bool (nothing is changed): a string such as
        ``"no"`` would otherwise count as true.
    """
    values = tuple(thresholds)
    if len(values) != 3 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
        raise ValueError(f"gc thresholds must be three positive integers, got {thresholds!r}")
    if not isinstance(freeze_survivors, bool):
        raise TypeError(f"freeze_survivors must be True or False, got {freeze_survivors!r}")
    previous = gc.get_threshold()
    gc.set_threshold(*values)
    installed = _freeze_after_collection in gc.callbacks
    if freeze_survivors and not installed:
        gc.callbacks.append(_freeze_after_collection)
    elif installed and not freeze_survivors:
        gc.callbacks.remove(_freeze_after_collection)
    return previous


def _freeze_after_collection(phase: str, info: dict[str, int]) -> None:
    # "stop": the collection is over and what it left is alive; move it out of the
    # collector's view (gc.freeze() is O(1): it links the generations' lists onto the
    # permanent one).
    if phase == "stop":
        gc.freeze()
