"""What the commands print and log: their own lines on stdout, the exchange log, the log setup."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Literal


class CommandFailed(Exception):
    """A failure the command reports in one line (no traceback) before exiting with status 1."""


class _DropGiveUps(logging.Filter):
    """The station's own give-up ERROR line: the CLI reports a give-up itself, in its one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.name == "ocpprpc.station" and record.levelno == logging.ERROR and record.exc_info is None
        )


def _configure_logging(args: argparse.Namespace) -> None:
    level = logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(
        level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(_DropGiveUps())
    # coredis logs each reconnect attempt at INFO: the adapter reports what matters itself.
    logging.getLogger("coredis").setLevel(logging.WARNING)
    if args.log_payloads:
        logging.getLogger("ocpprpc.wire").setLevel(logging.INFO)
    else:
        logging.getLogger("ocpprpc.wire").setLevel(logging.WARNING)
    # Per-session and per-station lifecycle chatter is for debugging; the exchange log and the
    # simulator's own lines are the demo's output.
    if not args.quiet:
        logging.getLogger("ocpprpc.session").setLevel(logging.WARNING)
        logging.getLogger("ocpprpc.station").setLevel(logging.WARNING)


def _say(text: str, flush: bool = True) -> None:
    """The CLI's own output (where it listens, what it did): stdout, unlike the logs."""
    sys.stdout.write(text + "\n")
    if flush:
        sys.stdout.flush()


_wire = logging.getLogger("ocpprpc.wire")


def _log_wire(identity: str, direction: Literal["in", "out"], text: str) -> None:
    if _wire.isEnabledFor(logging.INFO):
        _wire.info("%s %s %s", identity, "<<" if direction == "in" else ">>", text)
