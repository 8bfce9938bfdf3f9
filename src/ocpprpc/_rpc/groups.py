"""How ocpprpc's public ``async with`` entry points end: exception groups and close codes.

anyio wraps even a single exception from a task group's body in an
``ExceptionGroup``.  :func:`connect`, :func:`serve` and :class:`Session`
unwrap a group that holds exactly one non-cancellation exception and raise it
plainly (DECISIONS.md); anything else propagates as the group.  Nothing inside
the library unwraps.  :func:`exit_close_code` is the one mapping from the way a
block was left to the WebSocket close code.
"""

from __future__ import annotations

import anyio

__all__ = ["exit_close_code", "raise_single"]

# RFC 6455 7.4.1.
GOING_AWAY = 1001
INTERNAL_ERROR = 1011


def exit_close_code(exc: BaseException | None) -> int | None:
    """The close code for leaving an ``async with`` with *exc*; ``None``: close gracefully.

    Cancelled: 1001 (going away); any other exception: 1011 (internal error).
    Both close without waiting for pending work.
    """
    if exc is None:
        return None
    if isinstance(exc, anyio.get_cancelled_exc_class()):
        return GOING_AWAY
    return INTERNAL_ERROR


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    leaves: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            leaves.extend(_leaves(exc))
        else:
            leaves.append(exc)
    return leaves


def raise_single(group: BaseExceptionGroup[BaseException]) -> None:
    """Raise the one non-cancellation exception in *group*, if there is exactly one.

    The policy of the public ``async with`` entry points (DECISIONS.md): a
    group that only wraps one real error (the usual case: the body raised, the
    session's tasks were cancelled) is confusing, so that error is raised
    plainly, its own cause and context intact.  Returns if the policy does not
    apply; the caller re-raises the group.
    """
    cancelled = anyio.get_cancelled_exc_class()
    errors = [exc for exc in _leaves(group) if not isinstance(exc, cancelled)]
    if len(errors) != 1:
        return
    error = errors[0]
    cause, context = error.__cause__, error.__context__
    try:
        raise error
    finally:
        error.__cause__, error.__context__ = cause, context
        del error, errors, group
