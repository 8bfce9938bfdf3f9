"""``python -m ocpprpc``: a CSMS (``serve``), a station simulator (``station``), ``call`` into a cluster.

Both run on asyncio or trio (``--backend``), validate strictly by default, log
each exchange readably, and stop cleanly on Ctrl-C / SIGTERM (the close
handshake still runs).

Errors a user makes end in one line on stderr, never a traceback: the
arguments are checked (types, consistency, files, TLS material) before the
event loop starts, and fail with exit status 2; what goes wrong at run time
(port in use, connection refused, HTTP 401, TLS failure) fails with 1;
``call`` has an exit status per outcome (:data:`ocpprpc._cli.call.EXIT`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import anyio

from .arg_checks import _check_call, _check_serve, _check_station
from .args import PROG, UsageError, build_parser
from .call import run_call
from .config import apply_config
from .config_print import render_config
from .output import CommandFailed, _configure_logging
from .serve import run_serve
from .station import run_station

__all__ = ["main"]


def _reportable(exc: BaseException) -> CommandFailed | None:
    """*exc* if it is a :class:`CommandFailed`, alone or as the only error in (nested) groups."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc if isinstance(exc, CommandFailed) else None


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command == "serve":
            apply_config(args, argv)
        checks = {"serve": _check_serve, "station": _check_station, "call": _check_call}
        checks[args.command](args)
    except UsageError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return 2
    if args.command == "serve" and args.print_config:
        sys.stdout.write(render_config(args))
        return 0
    if args.command != "call":  # call reports in its one line, or prints the answer
        _configure_logging(args)
    runner = {"serve": run_serve, "station": run_station, "call": run_call}[args.command]
    try:
        anyio.run(runner, args, backend=args.backend)
    except KeyboardInterrupt:  # pragma: no cover - signals are normally handled in the loop
        return 130
    except BaseException as exc:
        failure = _reportable(exc)
        if failure is None:
            raise
        sys.stderr.write(f"{PROG}: error: {failure}\n")
        return getattr(failure, "exit_code", 1)
    return 0
