"""``serve --config FILE``: a TOML file read into the values the flags produce.

The keys and how each is read are :mod:`ocpprpc._cli.config_schema`; this
module reads the file (its size and key depth bounded before parsing), walks
it against the schema, and merges the result with the command line, where a
flag given wins.

Lives in the CLI part, not in ``_options``: it reads a file, knows the
command's own keys and fills its argument namespace; the library's entry
points keep taking objects.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._csms.admission import AdmissionPolicy
from .._options.model import CsmsOptions, SessionOptions, WebSocketOptions
from .args import NOT_GIVEN, UsageError, build_parser
from .config_schema import ListenerConfig, RouteConfig, Setting, Table, config_schema
from .config_values import _Bad, _join, _key, _kind_of, _one_line, _shown

__all__ = ["MAX_BYTES", "ServeConfig", "apply_config", "load_config"]

#: A configuration file larger than this is refused unread.
MAX_BYTES = 1024 * 1024
#: Longer chains of dotted keys are refused before parsing (tomllib's cost grows with their square).
MAX_KEY_PARTS = 32


# -- reading a file ----------------------------------------------------------------------------


class _KeyError(Exception):
    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


def _walk(table: Table, data: object, path: str) -> Any:
    if table.many:
        if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
            raise _KeyError(path, f"expected an array of tables ([[{path}]]), got {_kind_of(data)}")
        return tuple(_walk_one(table, item, f"{path}[{index}]") for index, item in enumerate(data))
    return _walk_one(table, data, path)


def _walk_one(table: Table, data: object, path: str) -> Any:
    if not isinstance(data, dict):
        raise _KeyError(
            path,
            f"expected a table, got {_kind_of(data)}{'' if isinstance(data, list) else ' ' + _shown(data)}",
        )
    values: dict[str, Any] = {}
    for name, value in data.items():
        where = _join(path, name)
        spec = table.keys.get(name)
        if spec is None and table.other is not None:
            spec = table.other[1]
        if spec is None:
            close = difflib.get_close_matches(name, list(table.keys), n=1)
            hint = f" (did you mean {_key(close[0])}?)" if close else ""
            raise _KeyError(where, f"unknown key{hint}")
        if isinstance(spec, Table):
            values[name] = _walk(spec, value, where)
            continue
        try:
            values[name] = spec.read(value)
        except _Bad as exc:
            raise _KeyError(where + exc.at, exc.message) from None
    try:
        result = table.build(values)
    except _Bad as exc:
        raise _KeyError((path + exc.at).lstrip("."), exc.message) from None
    if isinstance(result, RouteConfig | ListenerConfig):
        result = dataclasses.replace(result, where=path)
    return result


_DOTTED = re.compile(
    # Atomic and anchored at the start of a key, so a long run of key characters is scanned once.
    r"(?<![A-Za-z0-9_\-\"'])(?>(?>[A-Za-z0-9_-]++|\"[^\"\n]*+\"|'[^'\n]*+')[ \t]*+\.[ \t]*+){"
    + str(MAX_KEY_PARTS)
    + "}"
)


def _parse(text: str) -> dict[str, Any]:
    deep = _DOTTED.search(text)
    if deep is not None:
        line = text.count("\n", 0, deep.start()) + 1
        raise ValueError(f"line {line}: a dotted key of more than {MAX_KEY_PARTS} parts")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"invalid TOML: {exc}") from None
    except RecursionError:
        raise ValueError("invalid TOML: arrays or inline tables nested too deeply") from None


@dataclass(frozen=True, slots=True)
class ServeConfig:
    """A configuration file, read and checked."""

    #: The file as the command line named it (messages name it so).
    path: str
    #: What each table read as: settings by name, ``rate_limits`` as limits and breach answer.
    values: Mapping[str, Any]
    routes: tuple[RouteConfig, ...] = ()
    listeners: tuple[ListenerConfig, ...] = ()


def load_config(name: str) -> ServeConfig:
    """Read and check *name*; any problem is a :class:`UsageError` naming the file and the key."""
    shown = _one_line(name, limit=10_000)
    try:
        with open(name, "rb") as file:
            data = file.read(MAX_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"{shown}: cannot read the configuration file: {exc.strerror}") from None
    except ValueError as exc:  # a NUL in the name
        raise UsageError(f"{shown}: cannot read the configuration file: {exc}") from None
    if len(data) > MAX_BYTES:
        raise UsageError(f"{shown}: the configuration file is larger than {MAX_BYTES // 1024} KiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise UsageError(f"{shown}: not UTF-8 text (line {line}, byte {exc.start})") from None
    try:
        document = _parse(text)
    except ValueError as exc:
        raise UsageError(f"{shown}: {exc}") from None
    base = Path(name).resolve().parent
    try:
        values = _walk(config_schema(base), document, "")
    except _KeyError as exc:
        raise UsageError(_one_line(f"{shown}: {exc.where}: {exc.message}")) from None
    return ServeConfig(name, values, tuple(values.pop("routes", ())), tuple(values.pop("listeners", ())))


# -- merging with the command line -------------------------------------------------------------

#: Flags whose values go together: one given on the command line replaces all from the file.
_TOGETHER = (("password", "password_env", "password_file"), ("cert", "key"))


def _explicit(argv: Sequence[str] | None) -> set[str]:
    """The ``serve`` arguments given on the command line (not left at their defaults)."""
    given = vars(build_parser(suppress_defaults=True).parse_args(argv))
    return {dest for dest, value in given.items() if value is not NOT_GIVEN}


def _settings(schema: Table) -> dict[str, tuple[str, Setting]]:
    """Every setting that fills a ``serve`` argument, by that argument: (dotted key, setting)."""
    found: dict[str, tuple[str, Setting]] = {}
    for name, spec in schema.keys.items():
        if isinstance(spec, Table) and not spec.many:
            found.update(
                {dest: (f"{name}.{key}", setting) for dest, (key, setting) in _settings(spec).items()}
            )
        elif isinstance(spec, Setting) and spec.dest is not None:
            found[spec.dest] = (name, spec)
    return found


def apply_config(args: argparse.Namespace, argv: Sequence[str] | None) -> None:
    """Fill *args* from ``--config`` where the command line did not say, and build the option objects.

    Sets ``args.config`` (the :class:`ServeConfig` or ``None``), ``args.config_names``
    (flag -> ``FILE: key`` for the values the file gave, so checks name them),
    ``admission``, ``websocket_options``, ``session_options`` and ``csms_options``.
    """
    config = load_config(args.config) if args.config else None
    args.config = config
    args.config_names = {}
    groups: dict[str, dict[str, Any]] = {"admission": {}, "websocket": {}, "session": {}, "csms": {}}
    if config is not None:
        given = _explicit(argv)
        shown = _one_line(config.path, limit=10_000)
        for dest, (key, setting) in _settings(config_schema()).items():
            table, _, name = key.rpartition(".")
            source = config.values.get(table, {}) if table else config.values
            if name not in source:
                continue
            together = next((group for group in _TOGETHER if dest in group), (dest,))
            if not given & set(together):
                setattr(args, dest, setting.to_dest(source[name]))
                args.config_names[setting.flag] = f"{shown}: {key}"
        limits = config.values.get("rate_limits")
        if limits is not None:
            if "rate_limit" not in given and limits["limits"]:
                args.rate_limit = limits["limits"]
                args.config_names["--rate-limit"] = f"{shown}: rate_limits"
            if "rate_limit_action" not in given and limits["on_breach"] is not None:
                args.rate_limit_action = limits["on_breach"]
                args.config_names["--rate-limit-action"] = f"{shown}: rate_limits.on_breach"
        for table, settings in groups.items():
            settings.update(config.values.get(table, {}))
        groups["admission"].pop("upgrade_rate", None)
        groups["admission"].pop("allow_ips", None)
        groups["csms"].pop("max_connections", None)
    admission = groups["admission"]
    try:
        args.admission = (
            AdmissionPolicy(allow_ips=args.allow_ip or (), upgrade_rate=args.upgrade_rate, **admission)
            if args.allow_ip or args.upgrade_rate is not None or admission
            else None
        )
        args.websocket_options = WebSocketOptions(**groups["websocket"]) if groups["websocket"] else None
        args.session_options = SessionOptions(**groups["session"]) if groups["session"] else None
        args.csms_options = CsmsOptions(max_connections=args.max_connections, **groups["csms"])
    except ValueError as exc:  # pragma: no cover - each value was judged alone and its table together
        raise UsageError(_one_line(str(exc))) from None
