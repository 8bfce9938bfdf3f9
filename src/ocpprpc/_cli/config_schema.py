"""The keys of a ``serve --config`` file: one schema, :func:`config_schema`.

It drives reading (:mod:`ocpprpc._cli.config`), the documentation's key
table and ``--print-config`` (:mod:`ocpprpc._cli.config_print`); how one
value is read is :mod:`ocpprpc._cli.config_values`.  The keys of the ``serve`` flags are written
here once (they are command-line concepts: backend, security profile,
password sources); the tables of library settings are generated:
``[websocket]``, ``[session]`` and ``[csms]`` from the option model
(:mod:`ocpprpc._options.model`), ``[admission]`` from
:class:`~ocpprpc.AdmissionPolicy`, so a new option there is a new key here
with no edit.  Each value is judged by the code that takes it (the option
dataclass, :meth:`~ocpprpc.RateLimit.parse`, :func:`parse_network`), key by
key, so a mistake is one line naming the file and the dotted key.

``[[routes]]`` and ``[[listeners]]`` are read and checked into
:class:`RouteConfig` and :class:`ListenerConfig` (plain frozen values);
``serve`` maps them to :class:`~ocpprpc.Route` and :class:`~ocpprpc.Listener`.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import re
import ssl
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from .._csms.admission import AdmissionPolicy
from .._csms.ratelimit import OnBreach, RateLimit
from .._ops.gc_tuning import CSMS_GC_THRESHOLDS
from .._options.model import CsmsOptions, SessionOptions, WebSocketOptions
from .._ws.tls import server_ssl_context
from ..cluster.adapter import DEFAULT_HEARTBEAT
from ..cluster.ops_open import redis_url_problem
from .arg_types import MAX_GC_THRESHOLD, node_name_problem
from .config_values import (
    _LIMIT_KIND,
    Reader,
    _array,
    _Bad,
    _boolean,
    _choice,
    _env_name,
    _file,
    _integer,
    _key,
    _limit,
    _number,
    _optional,
    _pattern,
    _positive_number,
    _protocols,
    _rate,
    _secret,
    _shown,
    _string,
)
from .demo import BUILTIN_PROTOCOLS

__all__ = ["ListenerConfig", "RouteConfig", "Setting", "Table", "config_schema"]


def _same(value: Any) -> Any:
    return value


def _inverse(value: Any) -> Any:
    return not value


@dataclass(frozen=True, slots=True)
class Setting:
    """One key: how it is read, what it means, and the flag that overrides it."""

    read: Reader
    kind: str
    default: object
    doc: str
    #: The flag that gives the same value (and overrides the file).
    flag: str | None = None
    #: The ``serve`` argument it fills, and how (``validation`` fills ``no_validation`` inverted).
    dest: str | None = None
    to_dest: Callable[[Any], Any] = _same
    required: bool = False


@dataclass(frozen=True, slots=True)
class Table:
    """A table of keys (``many``: an array of tables, ``[[name]]``)."""

    keys: Mapping[str, Setting | Table]
    doc: str
    many: bool = False
    #: Keys not listed (``[rate_limits]``'s action names): their placeholder and reading.
    other: tuple[str, Setting] | None = None
    #: Judges the table's values together; returns what the table reads as.
    build: Callable[[dict[str, Any]], Any] = _same


def _param_docs(cls: type) -> dict[str, str]:
    """``:param name: text`` of a class docstring, joined to one line each."""
    docs: dict[str, str] = {}
    for match in re.finditer(r":param (\w+):(.*?)(?=\n\s*:param |\n\s*\n|\Z)", cls.__doc__ or "", re.S):
        docs[match[1]] = " ".join(match[2].split())
    return docs


def _type_reader(hint: Any, cls: type, name: str) -> tuple[Reader, str] | Table:
    """How to read a field of type *hint* from TOML: a reader and its description, or a sub-table."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (typing.Union, types.UnionType):
        rest = [arg for arg in args if arg is not type(None)]
        if RateLimit in rest:
            found: tuple[Reader, str] | Table = (_rate, 'rate "COUNT/PERIOD"')
        elif len(rest) == 1:
            found = _type_reader(rest[0], cls, name)
        else:  # pragma: no cover - a new field type needs a reading here (tests/cli fails first)
            raise TypeError(f"{cls.__name__}.{name}: no TOML reading for {hint}")
        if isinstance(found, Table) or len(rest) == len(args):
            return found
        return _optional(found[0]), f'{found[1]} or "none"'
    if origin is Literal:
        return _choice([str(arg) for arg in args]), " | ".join(f'"{arg}"' for arg in args)
    if origin in (collections.abc.Sequence, list, tuple):
        return _array(_string), "array of strings"
    if hint is bool:
        return _boolean, "boolean"
    if hint is int:
        return _integer(), "integer"
    if hint is float:
        return _number, "number"
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _dataclass_table(hint, f"a :class:`~ocpprpc.{hint.__name__}`")
    raise TypeError(f"{cls.__name__}.{name}: no TOML reading for {hint}")  # pragma: no cover


def _judged(cls: type, name: str, read: Reader) -> Reader:
    """*read*, then the value judged by *cls* itself (its ``__post_init__``), item by item for a list."""

    def judge(value: object) -> object:
        try:
            cls(**{name: value})
        except ValueError as exc:
            text = str(exc).replace("or None", 'or "none"')
            raise _Bad(text.removeprefix(f"{name} ") if text.startswith(f"{name} must") else text) from None
        return value

    def judged(value: object) -> object:
        result = read(value)
        if isinstance(result, list):
            for index, item in enumerate(result):
                try:
                    judge([item])
                except _Bad as exc:
                    raise _Bad(exc.message, f"[{index}]") from None
        return judge(result)

    return judged


def _dataclass_table(cls: type, doc: str, flags: Mapping[str, tuple[str, str]] | None = None) -> Table:
    """A table with a key per field of *cls* (those a constructor takes and that compare)."""
    hints = typing.get_type_hints(cls)
    param_docs = _param_docs(cls)
    keys: dict[str, Setting | Table] = {}
    for option in dataclasses.fields(cls):
        if not option.init or not option.compare or option.name.startswith("_"):
            continue
        found = _type_reader(hints[option.name], cls, option.name)
        if isinstance(found, Table):
            keys[option.name] = found
            continue
        read, kind = found
        flag, dest = (flags or {}).get(option.name, (None, None))
        keys[option.name] = Setting(
            _judged(cls, option.name, read),
            kind,
            option.default,
            option.metadata.get("doc") or param_docs.get(option.name, ""),
            flag=flag,
            dest=dest,
        )

    def build(values: dict[str, Any]) -> dict[str, Any]:
        try:
            made = cls(**values)
        except ValueError as exc:  # pragma: no cover - no rule across fields yet (each is judged alone)
            raise _Bad(str(exc)) from None
        return values if cls in _KEEP_VALUES else made

    return Table(keys, doc, build=build)


#: Tables read as their values (merged with flags later), not as one built object.
_KEEP_VALUES: set[type] = {WebSocketOptions, SessionOptions, CsmsOptions, AdmissionPolicy}


def _rate_limits_table(where: str) -> Table:
    def build(values: dict[str, Any]) -> dict[str, Any]:
        on_breach = values.pop("on_breach", None)
        for action in values:
            if action != "*" and not (action.isidentifier() and action.isascii()):
                raise _Bad(
                    f"{_shown(action)} is not an OCPP action name (e.g. MeterValues) or '*'",
                    f".{_key(action)}",
                )
        if on_breach is not None and not values:
            raise _Bad("on_breach needs at least one limit in the table", ".on_breach")
        return {"limits": list(values.items()), "on_breach": on_breach}

    return Table(
        {
            "*": Setting(_limit, _LIMIT_KIND, None, "limit on all of a station's CALLs together"),
            "on_breach": Setting(
                _choice([member.value for member in OnBreach]),
                " | ".join(f'"{member.value}"' for member in OnBreach),
                "drop",
                "what a CALL over a limit gets: no answer, a CALLERROR, or the connection closed",
                flag="--rate-limit-action" if where == "rate_limits" else None,
            ),
        },
        "token-bucket limits on each station's CALLs" + (" on this route" if where != "rate_limits" else ""),
        other=(
            "ACTION",
            Setting(
                _limit,
                _LIMIT_KIND,
                None,
                'limit on one action, e.g. MeterValues = "10/60"; burst: the bucket size (default: COUNT)',
                flag="--rate-limit ACTION=COUNT/SECONDS" if where == "rate_limits" else None,
            ),
        ),
        build=build,
    )


@dataclass(frozen=True, slots=True)
class RouteConfig:
    """One ``[[routes]]`` entry, checked; the integration maps it to :class:`~ocpprpc.Route`."""

    pattern: str
    name: str
    protocols: tuple[str, ...] | None = None
    validation: bool | None = None
    #: ``(action or "*", limit)`` pairs and the breach answer, as ``[rate_limits]`` reads them.
    rate_limits: tuple[tuple[str, RateLimit], ...] | None = None
    on_breach: str | None = None
    max_message_size: int | None = None
    #: Where it is in the file (``routes[0]``), for messages about it later.
    where: str = ""


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    """One ``[[listeners]]`` entry, checked; the integration maps it to ``Listener``."""

    host: str
    port: int
    name: str
    cert: tuple[str, ...] = ()
    key: tuple[str, ...] = ()
    client_ca: str | None = None
    require_client_cert: bool = False
    #: Names of ``[[routes]]``; empty: the server's routes.
    routes: tuple[str, ...] = ()
    #: Built from the files above at load time (so a bad PEM file is a config error).
    ssl_context: ssl.SSLContext | None = field(default=None, compare=False, repr=False)
    where: str = ""


def _route(values: dict[str, Any]) -> RouteConfig:
    if "pattern" not in values:
        raise _Bad('a route needs a pattern, e.g. pattern = "/ocpp/{tenant}/{identity}"')
    limits = values.get("rate_limits")
    return RouteConfig(
        pattern=values["pattern"],
        name=values.get("name", values["pattern"]),
        protocols=tuple(values["protocols"]) if "protocols" in values else None,
        validation=values.get("validation"),
        rate_limits=tuple(limits["limits"]) if limits else None,
        on_breach=limits["on_breach"] if limits else None,
        max_message_size=values.get("max_message_size"),
    )


def _listener(values: dict[str, Any]) -> ListenerConfig:
    if "port" not in values:
        raise _Bad("a listener needs a port")
    cert, key = tuple(values.get("cert", ())), tuple(values.get("key", ()))
    client_ca, require = values.get("client_ca"), values.get("require_client_cert", False)
    for name, given, needs in (
        ("key", key, cert),
        ("client_ca", client_ca, cert),
        ("require_client_cert", require, client_ca),
    ):
        if given and not needs:
            wanted = "cert" if name != "require_client_cert" else "client_ca"
            raise _Bad(f"{name} needs {wanted}", f".{name}")
    if key and len(key) != len(cert):
        raise _Bad("give one key per cert, in the same order (or none: keys inside the cert files)", ".key")
    context = None
    if cert:
        try:
            pairs = list(zip(cert, key or [None] * len(cert), strict=True))
            context = server_ssl_context(
                pairs[0][0], pairs[0][1], extra_certs=pairs[1:], client_cafile=client_ca
            )
        except (ssl.SSLError, OSError) as exc:
            raise _Bad(
                f"not usable as PEM TLS files (or the key does not match the certificate): {exc}", ".cert"
            ) from None
        if client_ca and not require:
            context.verify_mode = ssl.CERT_OPTIONAL
    host = values.get("host", "127.0.0.1")
    return ListenerConfig(
        host=host,
        port=values["port"],
        name=values.get("name", f"{host}:{values['port']}"),
        cert=cert,
        key=key,
        client_ca=client_ca,
        require_client_cert=require,
        routes=tuple(values.get("routes", ())),
        ssl_context=context,
    )


def _checked(problem_of: Callable[[str], str | None]) -> Reader:
    """A string judged by the flag's own rule (*problem_of* says what is wrong, or None)."""

    def read(value: object) -> str:
        text = _string(value)
        problem = problem_of(text)
        if problem is not None:
            raise _Bad(problem)
        return text

    return read


def config_schema(base: Path | None = None) -> Table:
    """Every key of a ``serve`` configuration file; files are looked up relative to *base*."""
    path = _file(base)
    paths = _array(path, single=True, empty=False)
    port = _integer(0, 65535)
    cli: dict[str, Setting | Table] = {
        "backend": Setting(_choice(["asyncio", "trio"]), '"asyncio" | "trio"', "asyncio", "event loop",
                           "--backend", "backend"),
        "host": Setting(_string, "string", "127.0.0.1", "address to listen on", "--host", "host"),
        "port": Setting(port, "integer", 9000, "TCP port, 0 for any free port", "--port", "port"),
        "protocols": Setting(_protocols, "array of strings", list(BUILTIN_PROTOCOLS),
                             "OCPP versions accepted, preferred first", "--protocols", "protocols"),
        "validation": Setting(_boolean, "boolean", True, "validate payloads against the schemas",
                              "--no-validation", "no_validation", _inverse),
        "log_payloads": Setting(_boolean, "boolean", False, "log every message in full",
                                "--log-payloads", "log_payloads"),
        "quiet": Setting(_boolean, "boolean", False, "log warnings and errors only", "--quiet", "quiet"),
        "security_profile": Setting(_integer(0, 3), "integer", 0,
                                    "0 plain, 1 Basic auth, 2 TLS + Basic auth, 3 mutual TLS",
                                    "--security-profile", "security_profile"),
        "password": Setting(_secret, "string", None,
                            "the Basic-auth password (profiles 1, 2); prefer password_file or password_env",
                            "--password", "password"),
        "password_env": Setting(_env_name, "string", None, "read the password from this environment variable",
                                "--password-env", "password_env"),
        "password_file": Setting(path, "path", None,
                                 "read the password from this file (its bytes, without one trailing newline)",
                                 "--password-file", "password_file"),
        "cert": Setting(paths, "path or array of paths", None,
                        "server certificate chain(s), PEM (profiles 2, 3): an RSA and an ECDSA one",
                        "--cert", "cert"),
        "key": Setting(paths, "path or array of paths", None,
                       "private key(s), PEM, one per cert in order (if not inside the cert files)",
                       "--key", "key"),
        "client_ca": Setting(path, "path", None, "CA that signs station certificates, PEM (profile 3)",
                             "--client-ca", "client_ca"),
        "cert_identity_check": Setting(_boolean, "boolean", True,
                                       "profile 3: a station certificate must be issued to its identity",
                                       "--no-cert-identity-check", "no_cert_identity_check", _inverse),
        "security_log": Setting(_boolean, "boolean", False,
                                "print security events to stderr, one JSON object a line",
                                "--security-log", "security_log"),
        "heartbeat_interval": Setting(_integer(1), "integer", 300,
                                      "heartbeat interval given to stations at boot (seconds)",
                                      "--heartbeat-interval", "heartbeat_interval"),
        "gc_threshold": Setting(_integer(0, MAX_GC_THRESHOLD), "integer", CSMS_GC_THRESHOLDS[0],
                                "the garbage collector's first threshold (0: Python's defaults)",
                                "--gc-threshold", "gc_threshold"),
        "gc_freeze": Setting(_boolean, "boolean", False,
                             "freeze what survives each garbage collection (see ocpprpc.tune_gc)",
                             "--gc-freeze", "gc_freeze"),
        "metrics": Setting(_boolean, "boolean", False,
                           "GET /metrics (Prometheus) and /health on the station port",
                           "--metrics", "metrics"),
        "metrics_port": Setting(port, "integer", None, "serve /metrics and /health on this port instead",
                                "--metrics-port", "metrics_port"),
    }  # fmt: skip
    route_keys: dict[str, Setting | Table] = {
        "pattern": Setting(_pattern, "string", None, "URL path, e.g. \"/ocpp/{tenant}/{identity}\"",
                           required=True),
        "name": Setting(_string, "string", None, "what listeners call it (default: the pattern)"),
        "protocols": Setting(_protocols, "array of strings", None, "OCPP versions (default: the server's)"),
        "validation": Setting(_boolean, "boolean", None, "strict validation here (default: the server's)"),
        "rate_limits": _rate_limits_table("routes.rate_limits"),
        "max_message_size": Setting(_integer(1), "integer", None, "largest message accepted here, bytes"),
    }  # fmt: skip
    listener_keys: dict[str, Setting | Table] = {
        "name": Setting(_string, "string", None, "a label (default: HOST:PORT)"),
        "host": Setting(_string, "string", "127.0.0.1", "address to listen on"),
        "port": Setting(port, "integer", None, "TCP port, 0 for any free port", required=True),
        "cert": Setting(paths, "path or array of paths", None, "certificate chain(s), PEM: wss"),
        "key": Setting(paths, "path or array of paths", None, "private key(s), one per cert"),
        "client_ca": Setting(path, "path", None, "CA that signs station certificates, PEM"),
        "require_client_cert": Setting(_boolean, "boolean", False,
                                       "refuse stations without a certificate (profile 3)"),
        "routes": Setting(_array(_string), "array of strings", None,
                          "names of [[routes]] served here (default: all)"),
    }  # fmt: skip
    cli["rate_limits"] = _rate_limits_table("rate_limits")
    cli["admission"] = _dataclass_table(
        AdmissionPolicy,
        "who may open a connection, decided before the upgrade",
        flags={"upgrade_rate": ("--upgrade-rate", "upgrade_rate"), "allow_ips": ("--allow-ip", "allow_ip")},
    )
    cli["websocket"] = _dataclass_table(WebSocketOptions, "the WebSocket settings of every connection")
    cli["session"] = _dataclass_table(SessionOptions, "the OCPP-J session settings of every connection")
    cli["csms"] = _dataclass_table(
        CsmsOptions,
        "how the CSMS admits and bounds stations together",
        flags={"max_connections": ("--max-connections", "max_connections")},
    )
    cli["cluster"] = Table(
        {
            "url": Setting(_optional(_checked(redis_url_problem)), 'string or "none"', None,
                           "join a cluster over this Redis: redis://HOST:PORT[/DB] "
                           "(redis+cluster://HOST:PORT: Redis Cluster)",
                           "--cluster", "cluster"),
            "node_name": Setting(_optional(_checked(node_name_problem)), 'string or "none"', None,
                                 "this node's name, stable across restarts (default: HOSTNAME-PID)",
                                 "--node-name", "node_name"),
            "namespace": Setting(_checked(node_name_problem), "string", "default",
                                 "keeps several clusters apart in one Redis", "--cluster-namespace",
                                 "cluster_namespace"),
            "heartbeat": Setting(_positive_number, "number", DEFAULT_HEARTBEAT,
                                 "seconds between this node's liveness beats (dead after 3 missed)",
                                 "--cluster-heartbeat", "cluster_heartbeat"),
        },
        "clustering: any node reaches any station (docs: clustering)",
    )  # fmt: skip
    cli["routes"] = Table(route_keys, "URL routes with their own settings", many=True, build=_route)
    cli["listeners"] = Table(
        listener_keys, "more addresses to listen on, each with its TLS files", many=True, build=_listener
    )
    return Table(cli, "the top level", build=_check_together)


def _check_together(values: dict[str, Any]) -> dict[str, Any]:
    sources = [name for name in ("password", "password_env", "password_file") if name in values]
    if len(sources) > 1:
        raise _Bad(
            f"give one of password, password_env and password_file, not also {sources[0]}", f".{sources[1]}"
        )
    names: dict[str, int] = {}
    for index, route in enumerate(values.get("routes", ())):
        if route.name in names:
            raise _Bad(
                f"route name {_shown(route.name)} is also routes[{names[route.name]}]'s",
                f".routes[{index}].name",
            )
        names[route.name] = index
    addresses: dict[tuple[str, int], int] = {}
    for index, listener in enumerate(values.get("listeners", ())):
        for position, route_name in enumerate(listener.routes):
            if route_name not in names:
                raise _Bad(
                    f"no [[routes]] entry is named {_shown(route_name)}",
                    f".listeners[{index}].routes[{position}]",
                )
        address = (listener.host, listener.port)
        if listener.port and address in addresses:
            raise _Bad(
                f"{listener.host}:{listener.port} is also listeners[{addresses[address]}]'s",
                f".listeners[{index}].port",
            )
        addresses[address] = index
    return values
