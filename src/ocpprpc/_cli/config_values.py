"""How one value of a ``serve --config`` file is read: the value a flag would give, or why not.

Each reader takes what :mod:`tomllib` produced for one key and returns the
value (a port, a list of protocols, a :class:`~ocpprpc.RateLimit`, an
absolute path) or raises :class:`_Bad` with a message for that key; the walk
in :mod:`ocpprpc._cli.config` puts the file and the dotted key in front.  The
helpers here also keep that line one line: keys as TOML writes them, values
short and ASCII-escaped.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .._csms.ratelimit import RateLimit
from .arg_types import _protocol_list

#: What a file writes for ``None`` (TOML has no null).
NONE = "none"


class _Bad(ValueError):
    """A value refused; *at* is appended to the key (``[2]``, ``.MeterValues``)."""

    def __init__(self, message: str, at: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.at = at


# -- how values are named in messages ---------------------------------------------------------


def _key(name: str) -> str:
    """A key as TOML writes it: bare when it can be, else a quoted, ASCII-escaped string."""
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name)


def _join(path: str, name: str) -> str:
    return _key(name) if not path else f"{path}.{_key(name)}"


def _shown(value: object) -> str:
    """A value for a message: short, one line, ASCII."""
    if isinstance(value, str) and len(value) > 60:
        return ascii(value[:50])[:-1] + "...'"
    text = ascii(value)
    return text if len(text) <= 80 else text[:70] + "..."


def _kind_of(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return "a date/time"


def _expected(what: str, value: object) -> _Bad:
    shown = "" if isinstance(value, dict | list) else f" {_shown(value)}"
    return _Bad(f"expected {what}, got {_kind_of(value)}{shown}")


# -- readers: a TOML value to the value the flag would give, or _Bad ---------------------------

Reader = Callable[[Any], Any]


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise _expected("true or false", value)
    return value


def _integer(low: int | None = None, high: int | None = None) -> Reader:
    def read(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _expected("an integer", value)
        if (low is not None and value < low) or (high is not None and value > high):
            bound = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise _Bad(f"must be {bound}, got {value}")
        return value

    return read


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _expected("a number", value)
    if value != value or value in (float("inf"), float("-inf")):
        raise _Bad(f'must be a finite number, got {value} (write "none" where there is no bound)')
    return float(value)


def _positive_number(value: object) -> float:
    number = _number(value)
    if number <= 0:
        raise _Bad(f"must be more than 0, got {value}")
    return number


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise _expected("a string", value)
    if not value:
        raise _Bad("must not be empty")
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise _Bad(f"control characters are not allowed: {_shown(value)}")
    return value


def _secret(value: object) -> str:
    if not isinstance(value, str):
        raise _expected("a string", value)
    if not value:
        raise _Bad("the password is empty")
    return value


def _choice(choices: Sequence[str]) -> Reader:
    def read(value: object) -> str:
        if not isinstance(value, str) or value not in choices:
            if not isinstance(value, str):
                raise _expected(f"one of {', '.join(map(repr, choices))}", value)
            raise _Bad(f"{_shown(value)} is not one of {', '.join(map(repr, choices))}")
        return value

    return read


def _optional(read: Reader) -> Reader:
    """*read*, or the string ``"none"`` for ``None`` (TOML has no null)."""

    def optional(value: object) -> object:
        return None if value == NONE else read(value)

    return optional


def _array(read: Reader, *, single: bool = False, empty: bool = True) -> Reader:
    """An array of values read by *read*; with *single* one bare value too."""

    def array(value: object) -> list[Any]:
        if single and not isinstance(value, list):
            return [read(value)]
        if not isinstance(value, list):
            raise _expected("an array", value)
        if not value and not empty:
            raise _Bad("must not be empty")
        items = []
        for index, item in enumerate(value):
            try:
                items.append(read(item))
            except _Bad as exc:
                raise _Bad(exc.message, f"[{index}]{exc.at}") from None
        return items

    return array


def _rate(value: object) -> RateLimit:
    if not isinstance(value, str):
        raise _expected('a rate such as "10/60"', value)
    try:
        return RateLimit.parse(value)
    except ValueError as exc:
        raise _Bad(str(exc)) from None


def _limit(value: object) -> RateLimit:
    """A station limit: ``"10/60"``, or ``{ rate = "10/60", burst = 20 }`` for a bucket of another size."""
    if not isinstance(value, dict):
        return _rate(value)
    for name in value:
        if name not in ("rate", "burst"):
            raise _Bad("unknown key (a limit has rate and burst)", f".{_key(name)}")
    if "rate" not in value:
        raise _Bad('a limit table needs a rate, e.g. { rate = "10/60", burst = 20 }')
    try:
        limit = _rate(value["rate"])
    except _Bad as exc:
        raise _Bad(exc.message, ".rate") from None
    if "burst" not in value:
        return limit
    try:
        burst = _integer(1)(value["burst"])
    except _Bad as exc:
        raise _Bad(exc.message, ".burst") from None
    return RateLimit(limit.count, limit.per_seconds, burst)


_LIMIT_KIND = 'rate "COUNT/PERIOD", or { rate, burst }'


def _protocol(value: object) -> str:
    text = _string(value)
    try:
        _protocol_list(text) if "," not in text else _protocol_list("")
    except argparse.ArgumentTypeError as exc:
        raise _Bad(str(exc) if "," not in text else f"one protocol per item, got {_shown(text)}") from None
    return text


def _protocols(value: object) -> list[str]:
    protocols: list[str] = _array(_protocol, empty=False)(value)
    for index, protocol in enumerate(protocols):
        if protocol in protocols[:index]:
            raise _Bad(f"{protocol} is listed twice", f"[{index}]")
    return protocols


def _env_name(value: object) -> str:
    text = _string(value)
    if "=" in text:
        raise _Bad(f"not an environment variable name: {_shown(text)}")
    return text


def _file(base: Path | None) -> Reader:
    """A readable file; relative to the configuration file's directory."""

    def read(value: object) -> str:
        path = Path(_string(value))
        if base is not None and not path.is_absolute():
            path = base / path
        if not path.is_file():
            raise _Bad(f"no such file: {_shown(str(path))}")
        if not os.access(path, os.R_OK):  # pragma: no cover - the test machines run as root
            raise _Bad(f"cannot read {_shown(str(path))}")
        return str(path)

    return read


def _pattern(value: object) -> str:
    """A route pattern: ``/``-separated segments, ``{name}`` parameters, ending in ``/{identity}``."""
    text = _string(value)
    problem = None
    if not text.startswith("/"):
        problem = "must start with '/'"
    else:
        seen: list[str] = []
        for segment in text[1:].split("/"):
            if not segment:
                problem = "has an empty segment ('//' or a trailing '/')"
            elif segment.startswith("{") and segment.endswith("}"):
                name = segment[1:-1]
                if not (name.isidentifier() and name.isascii()):
                    problem = f"{segment!r} is not a valid parameter name"
                elif name in seen:
                    problem = f"parameter {name!r} appears twice"
                seen.append(name)
            elif "{" in segment or "}" in segment:
                problem = f"a parameter must be a whole segment, not {segment!r}"
            elif segment in (".", ".."):
                problem = f"{segment!r} is not a path segment"
            if problem:
                break
        else:
            if not text.endswith("/{identity}"):
                problem = "must end with '/{identity}' (OCPP-J: the identity is the last segment)"
    if problem:
        raise _Bad(f"route pattern {_shown(text)}: {problem}")
    return text


def _one_line(text: str, limit: int = 400) -> str:
    """No line breaks or other control characters from a library's message, and not too long."""
    text = "".join(char if char.isprintable() else ascii(char)[1:-1] for char in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."
