"""The log formatters: JSON lines and console lines, structured extras, odd records."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from collections.abc import Iterator
from typing import Any

import pytest

import ocpprpc
from ocpprpc._ops.logfmt import wants_colour


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    log = logging.getLogger("ocpprpc.test.ops")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    yield log
    log.handlers.clear()
    log.propagate = True


def capture(log: logging.Logger, formatter: logging.Formatter) -> io.StringIO:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    log.handlers[:] = [handler]
    return stream


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_log_extra_has_the_documented_keys_and_leaves_out_none() -> None:
    extra = ocpprpc.log_extra(
        identity="CP1",
        protocol="ocpp1.6",
        direction="IN",
        kind="CALLRESULT",
        action="Heartbeat",
        message_id="m1",
        latency_ms=12.5,
        route="heartbeat",
        payload={"currentTime": "now"},
    )
    assert tuple(extra) == ocpprpc.EXTRA_KEYS
    assert ocpprpc.log_extra(identity="CP1", latency_ms=0.0) == {"identity": "CP1", "latency_ms": 0.0}
    assert ocpprpc.log_extra() == {}


def test_json_lines_carry_time_level_logger_message_and_extras(logger: logging.Logger) -> None:
    stream = capture(logger, ocpprpc.JsonFormatter(static={"service": "csms", "node": "a"}))
    extra = ocpprpc.log_extra(
        identity="CP1", action="Heartbeat", message_id="m1", direction="IN", latency_ms=3.25
    )
    logger.info("answered %s in %.1f ms", "Heartbeat", 3.25, extra=extra)
    logger.warning("plain")
    first, second = lines(stream)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["time"])
    assert first == {
        "time": first["time"],
        "level": "INFO",
        "logger": "ocpprpc.test.ops",
        "message": "answered Heartbeat in 3.2 ms",
        "service": "csms",
        "node": "a",
        "identity": "CP1",
        "direction": "IN",
        "action": "Heartbeat",
        "message_id": "m1",
        "latency_ms": 3.25,
    }
    assert set(second) == {"time", "level", "logger", "message", "service", "node"}
    assert second["level"] == "WARNING"


def test_json_lines_carry_the_traceback_as_text(logger: logging.Logger) -> None:
    stream = capture(logger, ocpprpc.JsonFormatter())
    try:
        raise KeyError("boom")
    except KeyError:
        logger.exception("handler failed", extra=ocpprpc.log_extra(identity="CP1"))
    logger.info("here", stack_info=True)
    failed, here = lines(stream)
    assert failed["exc_info"].startswith("Traceback") and "KeyError: 'boom'" in failed["exc_info"]
    assert failed["identity"] == "CP1"
    assert "Stack (most recent call last)" in here["exc_info"]
    # a record that travelled without its exception (a socket handler): exc_text is kept
    record = logging.makeLogRecord({"msg": "remote", "exc_text": "Traceback: far away"})
    assert json.loads(ocpprpc.JsonFormatter().format(record))["exc_info"] == "Traceback: far away"


class Odd:
    def __repr__(self) -> str:
        return "<Odd>"


def test_json_never_raises_on_odd_records(logger: logging.Logger) -> None:
    stream = capture(logger, ocpprpc.JsonFormatter())
    logger.info("%d stations", "many")  # arguments that do not fit the format
    logger.info("odd", extra={"identity": Odd(), "payload": {"when": Odd(), "n": [1, 2]}})
    cycle: dict[str, Any] = {}
    cycle["self"] = cycle
    logger.info("cycle", extra={"payload": cycle, "identity": "CP\ud800", "latency_ms": 1.5})
    logger.info("surrogate \ud800 in the message")
    bad_args, odd, cyclic, surrogate = lines(stream)
    assert bad_args["message"] == "'%d stations' % ('many',)"
    assert odd["identity"] == "<Odd>" and odd["payload"] == {"when": "<Odd>", "n": [1, 2]}
    assert cyclic["payload"] == "{'self': {...}}" and cyclic["identity"] == "CP\\ud800"
    assert cyclic["latency_ms"] == 1.5
    assert surrogate["message"] == "surrogate \\ud800 in the message"


def test_console_lines_are_aligned_with_extras_as_key_value(logger: logging.Logger) -> None:
    stream = capture(logger, ocpprpc.ConsoleFormatter(colour=False))
    logger.info(
        "CALL",
        extra=ocpprpc.log_extra(
            identity="CP1", direction="IN", action="Heartbeat", latency_ms=2.25, route="a b", payload={"x": 1}
        ),
    )
    logger.warning("no extras")
    first, second = stream.getvalue().splitlines()
    assert re.fullmatch(
        r"\d\d:\d\d:\d\d\.\d{3}Z INFO     ocpprpc.test.ops     CALL"
        r" identity=CP1 direction=IN action=Heartbeat latency_ms=2\.2 route='a b' payload=\{\"x\":1\}",
        first,
    ), first
    assert second.endswith("WARNING  ocpprpc.test.ops     no extras")
    assert first.index("ocpprpc") == second.index("ocpprpc")


def test_console_values_of_every_kind() -> None:
    record = logging.makeLogRecord(
        {"msg": "m", "identity": "", "message_id": 7, "route": "x=y", "action": True, "payload": Odd()}
    )
    line = ocpprpc.ConsoleFormatter(colour=False).format(record)
    assert line[13:].startswith(" Level None None                 m")  # makeLogRecord: no name, no level
    assert line.endswith("m identity='' action=True message_id=7 route='x=y' payload=\"<Odd>\"")
    cycle: list[Any] = []
    cycle.append(cycle)
    record = logging.makeLogRecord({"msg": "m %s", "args": (1, 2), "payload": cycle})
    assert ocpprpc.ConsoleFormatter(colour=False).format(record).endswith("'m %s' % (1, 2) payload=[[...]]")


def test_console_appends_the_traceback(logger: logging.Logger) -> None:
    stream = capture(logger, ocpprpc.ConsoleFormatter(colour=False))
    try:
        raise ValueError("bad")
    except ValueError:
        logger.exception("failed")
    out = stream.getvalue()
    assert out.splitlines()[0].endswith("failed")
    assert "ValueError: bad" in out


def test_console_colours_the_level_only_when_asked_or_on_a_terminal(
    logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = capture(logger, ocpprpc.ConsoleFormatter(colour=True))
    logger.error("red")
    logger.log(25, "custom level")
    red, custom = stream.getvalue().splitlines()
    assert "\x1b[31mERROR   \x1b[0m" in red
    assert "Level 25\x1b[0m" in custom

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    class Closed(io.StringIO):
        def isatty(self) -> bool:
            raise ValueError("I/O operation on closed file")

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert ocpprpc.ConsoleFormatter(stream=Terminal()).colour is True
    assert ocpprpc.ConsoleFormatter(stream=io.StringIO()).colour is False
    assert wants_colour(Closed()) is False
    assert wants_colour(None) is False
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert ocpprpc.ConsoleFormatter().colour is True
    monkeypatch.setenv("NO_COLOR", "1")
    assert ocpprpc.ConsoleFormatter(stream=Terminal()).colour is False
    assert ocpprpc.ConsoleFormatter().colour is False
