"""Argument types: each turns one flag's text into a value, or says in one line why not.

Kept apart from the parser so that the configuration file (:mod:`ocpprpc._cli.config_schema`)
judges a key by the same rule as its flag.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
from pathlib import Path
from urllib.parse import urlsplit

from .._csms.admission import parse_network
from .._csms.ratelimit import RateLimit
from .._ws.handshake import check_identity
from ..cluster.ops_open import redis_url_problem
from .demo import BUILTIN_PROTOCOLS


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is not in 0-65535")
    return port


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


#: The largest --gc-threshold taken (beyond it, the young generation is never collected in practice).
MAX_GC_THRESHOLD = 10_000_000


def _gc_threshold(text: str) -> int:
    value = _count(text)
    if value > MAX_GC_THRESHOLD:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_GC_THRESHOLD}, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds >= 0, got {text!r}")
    return value


def _positive_seconds(text: str) -> float:
    value = _seconds(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return value


def _rate(text: str) -> RateLimit:
    try:
        return RateLimit.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _action_rate(text: str) -> tuple[str, RateLimit]:
    """``ACTION=COUNT/SECONDS``; ``*`` for the limit on all of a station's CALLs."""
    action, equals, rate = text.partition("=")
    action = action.strip()
    if not equals or not action:
        raise argparse.ArgumentTypeError(
            f"expected ACTION=COUNT/SECONDS (or '*=COUNT/SECONDS' for all CALLs), got {text!r}"
        )
    if action != "*" and not action.isidentifier():
        raise argparse.ArgumentTypeError(f"{action!r} is not an OCPP action name (e.g. MeterValues) or '*'")
    return action, _rate(rate)


def _network(text: str) -> str:
    try:
        parse_network(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _suggest_protocol(name: str) -> str | None:
    """The built-in protocol a user most likely meant by *name* (``1.6``, ``OCPP201``, ``v2.1``)."""
    digits = re.sub(r"[^0-9]", "", name.lower().removeprefix("ocpp"))
    by_digits = {"16": "ocpp1.6", "15": "ocpp1.6", "20": "ocpp2.0.1", "201": "ocpp2.0.1", "21": "ocpp2.1"}
    if digits in by_digits:
        return by_digits[digits]
    close = difflib.get_close_matches(name.lower(), BUILTIN_PROTOCOLS, n=1)
    return close[0] if close else None


def _protocol_list(text: str) -> list[str]:
    protocols = [part.strip() for part in text.split(",") if part.strip()]
    if not protocols:
        raise argparse.ArgumentTypeError("give at least one protocol, e.g. ocpp1.6")
    for protocol in protocols:
        if protocol not in BUILTIN_PROTOCOLS:
            suggestion = _suggest_protocol(protocol)
            hint = (
                f" (did you mean {suggestion!r}?)"
                if suggestion
                else f" (choose from {', '.join(BUILTIN_PROTOCOLS)})"
            )
            raise argparse.ArgumentTypeError(f"unknown protocol {protocol!r}{hint}")
        if protocols.count(protocol) > 1:
            raise argparse.ArgumentTypeError(f"{protocol} is listed twice")
    return protocols


def _ws_url(text: str) -> str:
    example = "e.g. ws://127.0.0.1:9000/ocpp"
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 (raises ValueError for a port out of range or not a number)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"invalid URL {text!r}: {exc}") from None
    if parts.scheme not in ("ws", "wss"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a ws:// or wss:// URL ({example})")
    if not parts.hostname:
        raise argparse.ArgumentTypeError(f"{text!r} names no host ({example})")
    if parts.fragment:
        raise argparse.ArgumentTypeError(f"{text!r} has a #fragment, which WebSocket URLs cannot have")
    return text


def _identity(text: str) -> str:
    """The server's own rule (:func:`check_identity`), so the CLI refuses what a CSMS would."""
    try:
        check_identity(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"invalid station identity {text!r}: {exc}") from None
    return text


def shown_url(text: str) -> str:
    """*text* without its password, for messages."""
    try:
        parts = urlsplit(text)
        if parts.password is None:
            return text
    except ValueError:
        return text
    netloc = parts.netloc.rpartition("@")[2]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return parts._replace(netloc=user + netloc).geturl()


def _redis_url(text: str) -> str:
    problem = redis_url_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(
            f"{_shown_arg(shown_url_safe(text))} is not a usable Redis URL: {problem}"
        )
    return text


def shown_url_safe(text: str) -> str:
    try:
        return shown_url(text)
    except ValueError:
        return text


def _shown_arg(text: str) -> str:
    return repr(text if len(text) <= 200 else text[:200] + "...")


def node_name_problem(text: str) -> str | None:
    """Why *text* cannot name a cluster node or namespace (the adapter's own rule), or None."""
    if not text:
        return "must not be empty"
    if len(text) > 200:
        return "is longer than 200 characters"
    if not text.isprintable() or any(char in text for char in "|{} "):
        return "must be printable, without spaces, '|', '{' or '}'"
    return None


def _node_name(text: str) -> str:
    problem = node_name_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"{_shown_arg(text)} {problem}")
    return text


def _action(text: str) -> str:
    if not (text.isidentifier() and text.isascii()):
        raise argparse.ArgumentTypeError(f"{_shown_arg(text)} is not an OCPP action name (e.g. Reset)")
    return text


def _pem_file(text: str) -> str:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text!r}")
    if not os.access(path, os.R_OK):
        raise argparse.ArgumentTypeError(f"cannot read {text!r}")
    return text
