"""Log formatters: one JSON object per line for collectors, aligned text for people.

ocpprpc logs through stdlib :mod:`logging`; the records about one station's
messages carry structured *extras* (attributes set through ``extra=``):
:data:`EXTRA_KEYS`, built with :func:`log_extra`.  Both formatters show the
extras a record has and skip the ones it has not, so they work on any
record, ocpprpc's or not.

Neither formatter raises on an odd record (a message whose ``%`` arguments
do not match, an extra that is not JSON): logging from an error path must not
fail the error path.  A value JSON cannot hold is written as its ``repr``.
"""

from __future__ import annotations

import datetime
import logging
import os
import sys
from collections.abc import Mapping
from typing import IO, Any, Final

import msgspec

__all__ = ["EXTRA_KEYS", "ConsoleFormatter", "JsonFormatter", "log_extra"]

#: The structured extras, in the order the formatters show them.
EXTRA_KEYS: Final = (
    "identity",
    "protocol",
    "direction",
    "kind",
    "action",
    "message_id",
    "latency_ms",
    "route",
    "payload",
)


def log_extra(
    *,
    identity: str | None = None,
    protocol: str | None = None,
    direction: str | None = None,
    kind: str | None = None,
    action: str | None = None,
    message_id: str | None = None,
    latency_ms: float | None = None,
    route: str | None = None,
    payload: Any = None,
) -> dict[str, Any]:
    """The ``extra=`` mapping of a log record about a message (``None`` values left out).

    ::

        log.info("answered", extra=ocpprpc.log_extra(identity="CP1", action="Heartbeat"))

    :param identity: the station.
    :param protocol: the negotiated subprotocol (``"ocpp1.6"``).
    :param direction: ``"IN"`` (from the peer) or ``"OUT"``.
    :param kind: ``"CALL"``, ``"CALLRESULT"``, ``"CALLERROR"``, ``"SEND"``...
    :param action: the OCPP action.
    :param message_id: the message id.
    :param latency_ms: for an answer, milliseconds since its CALL.
    :param route: what handled it (a handler name, a node).
    :param payload: the payload, **already redacted** (:class:`~ocpprpc.Redactor`).
    """
    values = {
        "identity": identity,
        "protocol": protocol,
        "direction": direction,
        "kind": kind,
        "action": action,
        "message_id": message_id,
        "latency_ms": latency_ms,
        "route": route,
        "payload": payload,
    }
    return {key: value for key, value in values.items() if value is not None}


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # a bad format string must not lose the record
        return f"{record.msg!r} % {record.args!r}"


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {key: record.__dict__[key] for key in EXTRA_KEYS if record.__dict__.get(key) is not None}


def _traceback(formatter: logging.Formatter, record: logging.LogRecord) -> str | None:
    parts = []
    if record.exc_info and record.exc_info[0] is not None:
        parts.append(formatter.formatException(record.exc_info))
    elif record.exc_text:
        parts.append(record.exc_text)
    if record.stack_info:
        parts.append(formatter.formatStack(record.stack_info))
    return "\n".join(parts) or None


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (ISO 8601, UTC), ``level``, ``logger``,
    ``message``, the extras the record carries, and ``exc_info`` (the traceback as text).

    ::

        handler.setFormatter(ocpprpc.JsonFormatter())

    :param static: fields added to every line (a service name, a node).
    """

    def __init__(self, *, static: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.static = dict(static or {})
        self._encoder = msgspec.json.Encoder(enc_hook=repr)

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": _message(record),
            **self.static,
            **_extras(record),
        }
        traceback = _traceback(self, record)
        if traceback is not None:
            line["exc_info"] = traceback
        try:
            return self._encoder.encode(line).decode()
        except Exception:  # e.g. a lone surrogate, a cycle, a dict with odd keys
            return self._encoder.encode({key: _plain(value) for key, value in line.items()}).decode()


def _plain(value: Any) -> Any:
    """A value msgspec certainly encodes: JSON scalars as they are, the rest as a ``repr``."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if value is None or isinstance(value, bool | int | float):
        return value
    return repr(value)


_COLOURS: Final = {
    "DEBUG": "\x1b[2m",
    "INFO": "\x1b[32m",
    "WARNING": "\x1b[33m",
    "ERROR": "\x1b[31m",
    "CRITICAL": "\x1b[1;31m",
}
_RESET: Final = "\x1b[0m"


def wants_colour(stream: IO[str] | None) -> bool:
    """Colour only on a terminal, and never when ``NO_COLOR`` is set (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (OSError, ValueError):  # a closed or detached stream
        return False


class ConsoleFormatter(logging.Formatter):
    """Readable lines: time, level and logger aligned, the message, then the extras as
    ``key=value``::

        12:00:01.250Z INFO     ocpprpc.exchange     IN CALL  identity=CP1 action=Heartbeat

    :param colour: colour the level; ``None`` (default) colours only when *stream*
        is a terminal and ``NO_COLOR`` is unset.
    :param stream: the stream the handler writes to (default :data:`sys.stderr`), for
        that check.
    :param logger_width: the column the logger name is padded to.
    """

    def __init__(
        self,
        *,
        colour: bool | None = None,
        stream: IO[str] | None = None,
        logger_width: int = 20,
    ) -> None:
        super().__init__()
        self.colour = wants_colour(stream if stream is not None else sys.stderr) if colour is None else colour
        self.logger_width = logger_width

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        level = f"{record.levelname!s:<8}"  # !s: a hand-made record may hold None
        if self.colour:
            level = f"{_COLOURS.get(record.levelname, '')}{level}{_RESET}"
        parts = [
            moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z",
            level,
            f"{record.name!s:<{self.logger_width}}",
            _message(record),
        ]
        extras = " ".join(f"{key}={_console_value(value)}" for key, value in _extras(record).items())
        if extras:
            parts.append(extras)
        line = " ".join(parts)
        traceback = _traceback(self, record)
        return f"{line}\n{traceback}" if traceback is not None else line


def _console_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, str) and value and not any(c.isspace() or c in "\"'=" for c in value):
        return value
    if isinstance(value, str | int):
        return repr(value)
    try:
        return msgspec.json.encode(value, enc_hook=repr).decode()
    except Exception:  # a cycle, a lone surrogate: show what Python can
        return repr(value)
