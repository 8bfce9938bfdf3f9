"""What ``serve --print-config`` and the documentation show, from the schema the loader reads.

:func:`render_config` writes the configuration ``serve`` runs with (file,
flags and defaults merged) as a TOML file that reads back the same;
:func:`key_table_rst` writes the key table of ``docs/cli.rst``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

from .._csms.admission import AdmissionPolicy
from .._csms.ratelimit import RateLimit
from .._options.model import SessionOptions, WebSocketOptions
from .arg_types import shown_url
from .config_schema import Setting, Table, config_schema
from .config_values import NONE, _join, _key

__all__ = ["key_rows", "key_table_rst", "render_config"]


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, RateLimit):  # as RateLimit.parse reads it back (no exponent)
        rate = _toml(f"{value.count}/{format(value.per_seconds, 'f').rstrip('0').rstrip('.')}")
        return rate if value.burst is None else f"{{ rate = {rate}, burst = {value.burst} }}"
    if value is None:
        return _toml(NONE)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_key(key)} = {_toml(item)}" for key, item in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    raise TypeError(f"no TOML for {value!r}")  # pragma: no cover


def _limits_table(limits: Sequence[tuple[str, RateLimit]] | None, on_breach: str | None) -> dict[str, Any]:
    table: dict[str, Any] = dict(limits or ())
    if on_breach is not None:
        table["on_breach"] = on_breach
    return table


def render_config(args: argparse.Namespace) -> str:
    """The configuration ``serve`` runs with (file, flags and defaults merged), as a TOML file.

    Reading it back gives the same configuration; only a password given as a
    value is left out (shown as a comment).
    """
    schema = config_schema()
    source = f" (from {args.config.path})" if args.config else ""
    lines = [f"# effective configuration of python -m ocpprpc serve{source}"]
    for name, spec in schema.keys.items():
        if not isinstance(spec, Setting):
            continue
        assert spec.dest is not None
        value = getattr(args, spec.dest)
        if name == "password":
            if value is not None:
                lines.append("# password = (given; not shown)")
            continue
        if value is None:
            continue
        lines.append(f"{name} = {_toml(spec.to_dest(value))}")
    tables: dict[str, Mapping[str, Any]] = {
        "rate_limits": _limits_table(args.rate_limit, args.rate_limit_action if args.rate_limit else None),
        "cluster": {
            "url": args.cluster,
            "node_name": args.node_name,
            "namespace": args.cluster_namespace,
            "heartbeat": args.cluster_heartbeat,
        },
    }
    if args.cluster is not None and shown_url(args.cluster) != args.cluster:  # a password in it
        tables["cluster"] = {key: value for key, value in tables["cluster"].items() if key != "url"}
        hidden_url = True
    else:
        hidden_url = False
    admission = args.admission or AdmissionPolicy()
    for table, current in (
        ("admission", admission),
        ("websocket", args.websocket_options or WebSocketOptions()),
        ("session", args.session_options or SessionOptions()),
        ("csms", args.csms_options),
    ):
        spec = schema.keys[table]
        assert isinstance(spec, Table)
        tables[table] = {key: getattr(current, key) for key in spec.keys}
    for table, values in tables.items():
        lines += ["", f"[{table}]"]
        if table == "cluster" and hidden_url:
            lines.append("# url = (has a password; not shown)")
        table_spec = schema.keys[table]
        assert isinstance(table_spec, Table)
        subtables = []
        for key, value in values.items():
            if dataclasses.is_dataclass(value) and not isinstance(value, RateLimit):
                subtables.append((key, value))
            elif value is not None or not isinstance(table_spec.keys.get(key), Table):
                if isinstance(value, Sequence) and not isinstance(value, str):
                    value = [str(item) for item in value]
                lines.append(f"{_key(key)} = {_toml(value)}")
        for key, value in subtables:
            lines += ["", f"[{table}.{_key(key)}]"]
            lines += [
                f"{option.name} = {_toml(getattr(value, option.name))}"
                for option in dataclasses.fields(value)
                if option.compare
            ]
    config = args.config
    for route in config.routes if config else ():
        lines += ["", "[[routes]]", f"pattern = {_toml(route.pattern)}", f"name = {_toml(route.name)}"]
        for key in ("protocols", "validation", "max_message_size"):
            if getattr(route, key) is not None:
                lines.append(f"{key} = {_toml(getattr(route, key))}")
        if route.rate_limits is not None:
            lines.append(f"rate_limits = {_toml(_limits_table(route.rate_limits, route.on_breach))}")
    for listener in config.listeners if config else ():
        lines += ["", "[[listeners]]"]
        for key in ("name", "host", "port", "cert", "key", "client_ca", "require_client_cert", "routes"):
            value = getattr(listener, key)
            if value is not None and value != ():
                lines.append(f"{key} = {_toml(value)}")
    return "\n".join(lines) + "\n"


# -- the documentation's key table -------------------------------------------------------------


def key_rows(table: Table | None = None, path: str = "") -> list[tuple[str, str, str, str, str]]:
    """``(key, type, default, flag, what it does)`` for every key, in file order (the docs' table)."""
    rows: list[tuple[str, str, str, str, str]] = []
    table = table or config_schema()
    for name, spec in table.keys.items():
        where = _join(path, name) + ("[]" if isinstance(spec, Table) and spec.many else "")
        if isinstance(spec, Table):
            rows.append((where, "array of tables" if spec.many else "table", "", "", spec.doc))
            rows += key_rows(spec, where)
        else:
            rows.append((where, spec.kind, _default_text(spec), spec.flag or "", spec.doc))
    if table.other is not None:
        placeholder, spec = table.other
        rows.append((f"{path}.{placeholder}", spec.kind, "", spec.flag or "", spec.doc))
    return rows


def _default_text(spec: Setting) -> str:
    if spec.required:
        return "(required)"
    if spec.default is None:
        return _toml(NONE) if '"none"' in spec.kind else ""
    value = spec.default
    if isinstance(value, Sequence) and not isinstance(value, str):
        value = [str(item) for item in value]
    return _toml(value)


def key_table_rst() -> str:
    """The key table of ``docs/cli.rst`` (``tests/cli/test_config.py`` checks the page holds it)."""
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 26 18 14 14 28",
        "",
        "   * - key",
        "     - type",
        "     - default",
        "     - flag",
        "     - what it does",
    ]
    for key, kind, default, flag, doc in key_rows():
        cells = [f"``{key}``", kind, f"``{default}``" if default else "", f"``{flag}``" if flag else "", doc]
        lines.append(f"   * - {cells[0]}")
        lines += [f"     - {cell}".rstrip() for cell in cells[1:]]
    return "\n".join(lines) + "\n"
