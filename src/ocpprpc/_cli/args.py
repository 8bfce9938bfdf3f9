"""The command line's check step: parsing, and everything judged before the event loop starts.

Argument types turn one flag's text into a value or say in one line why not;
the checks then judge the flags together (consistency, files, TLS material).
A mistake is a :class:`UsageError`: one line on stderr, exit status 2.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import ssl
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from .._csms.admission import parse_network
from .._csms.ratelimit import RateLimit
from .._ws.handshake import check_identity
from .._ws.tls import client_ssl_context, server_ssl_context
from ..cluster.ops_open import redis_url_problem
from .demo import BUILTIN_PROTOCOLS

PROG = "python -m ocpprpc"

DESCRIPTION = (
    "A ready OCPP CSMS (serve), a charging-station simulator (station), and a command to call a"
    " station anywhere in a cluster (call), on asyncio or trio."
    " Run 'python -m ocpprpc COMMAND --help' for a command's options."
)


class UsageError(Exception):
    """A mistake in the command line: reported in one line, exit status 2."""


class _NotGiven(list[Any]):
    """The default of every ``serve`` argument under ``build_parser(suppress_defaults=True)``.

    A list, so that a repeatable flag appends to a copy of it; compared by identity.
    Not a string, so argparse does not run it through the flag's type.
    """


NOT_GIVEN = _NotGiven()


# -- argument types: each turns one flag's text into a value, or says in one line why not ------------


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


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each flag's default, except the ones that only mean "off" or "none"."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False) or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """Reports a usage error as :class:`UsageError` (one line) instead of usage text and exit."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser(*, suppress_defaults: bool = False) -> argparse.ArgumentParser:
    """The command line; with *suppress_defaults*, ``serve`` leaves out what was not given
    (how ``--config`` tells the flags that override the file from defaults)."""
    parser = _Parser(prog=PROG, description=DESCRIPTION, formatter_class=_HelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{serve,station,call}")

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio", help="event loop")
        sub.add_argument(
            "--no-validation", action="store_true", help="do not validate payloads against the schemas"
        )
        sub.add_argument("--log-payloads", action="store_true", help="log every message in full")
        sub.add_argument("--quiet", action="store_true", help="log warnings and errors only")

    def passwords(sub: argparse.ArgumentParser, what: str) -> None:
        group = sub.add_mutually_exclusive_group()
        group.add_argument(
            "--password",
            help=f"{what}; visible in the process list, prefer --password-env or --password-file",
        )
        group.add_argument(
            "--password-env", metavar="NAME", help="read the password from this environment variable"
        )
        group.add_argument(
            "--password-file",
            metavar="FILE",
            type=_pem_file,
            help="read the password from this file (its bytes, without one trailing newline)",
        )

    serve = commands.add_parser(
        "serve",
        help="run a CSMS that accepts stations on every OCPP version",
        description="Run a CSMS that accepts charging stations on every OCPP version and answers "
        "every station-initiated action with a valid response.",
        formatter_class=_HelpFormatter,
    )
    common(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=_port, default=9000, help="TCP port, 0 for any free port")
    serve.add_argument(
        "--protocols",
        metavar="LIST",
        type=_protocol_list,
        default=",".join(BUILTIN_PROTOCOLS),
        help="comma-separated OCPP versions, preferred first",
    )
    serve.add_argument(
        "--security-profile",
        type=int,
        choices=[0, 1, 2, 3],
        default=0,
        help="0 plain, 1 Basic auth, 2 TLS + Basic auth, 3 mutual TLS",
    )
    passwords(serve, "the Basic-auth password every station must send (profiles 1, 2)")
    serve.add_argument(
        "--cert",
        metavar="FILE",
        type=_pem_file,
        action="append",
        help="server certificate chain, PEM (profiles 2, 3); repeat for an RSA and an ECDSA one",
    )
    serve.add_argument(
        "--key",
        metavar="FILE",
        type=_pem_file,
        action="append",
        help="server private key, PEM, one per --cert in order (if not inside --cert)",
    )
    serve.add_argument(
        "--client-ca",
        metavar="FILE",
        type=_pem_file,
        help="CA that signs station certificates, PEM (profile 3)",
    )
    serve.add_argument(
        "--no-cert-identity-check",
        action="store_true",
        help="profile 3: accept a station certificate issued to another identity (default: its CN, "
        "DNS or URI name must equal the station identity)",
    )
    serve.add_argument(
        "--rate-limit",
        metavar="ACTION=COUNT/SECONDS",
        type=_action_rate,
        action="append",
        help="limit each station's CALLs of ACTION ('*': all its CALLs together), e.g. "
        "MeterValues=10/60 or '*=100/1m'; repeatable",
    )
    serve.add_argument(
        "--rate-limit-action",
        choices=["drop", "callerror", "disconnect"],
        default="drop",
        help="what a CALL over a --rate-limit gets: no answer, a CALLERROR, or the connection closed",
    )
    serve.add_argument(
        "--max-connections",
        metavar="N",
        type=_positive_int,
        help="connections served at once; one more is answered HTTP 503",
    )
    serve.add_argument(
        "--upgrade-rate",
        metavar="COUNT/SECONDS",
        type=_rate,
        help="connection attempts per client IP address; more are answered HTTP 429 with Retry-After",
    )
    serve.add_argument(
        "--allow-ip",
        metavar="CIDR",
        type=_network,
        action="append",
        help="only addresses in this network may connect (others get HTTP 403); repeatable",
    )
    serve.add_argument(
        "--security-log",
        action="store_true",
        help="print security events (refusals, failed logins, rate limits) to stderr, one JSON object a line",
    )
    serve.add_argument(
        "--metrics",
        action="store_true",
        help="Prometheus metrics: GET /metrics and GET /health on the station port (needs prometheus-client)",
    )
    serve.add_argument(
        "--metrics-port",
        metavar="PORT",
        type=_port,
        help="serve /metrics and /health on this port instead (plain HTTP, same host; with --metrics)",
    )
    serve.add_argument(
        "--heartbeat-interval",
        metavar="SECONDS",
        type=_positive_int,
        default=300,
        help="heartbeat interval given to stations at boot",
    )
    serve.add_argument(
        "--cluster",
        metavar="URL",
        type=_redis_url,
        help=(
            "join a cluster over Redis (redis://HOST:PORT[/DB]; redis+cluster://HOST:PORT for "
            "Redis Cluster): any node reaches any station"
        ),
    )
    serve.add_argument(
        "--node-name",
        metavar="NAME",
        type=_node_name,
        help="this node's name in the cluster, stable across restarts (the pod name; default: HOSTNAME-PID)",
    )
    serve.add_argument(
        "--cluster-namespace",
        metavar="NAME",
        type=_node_name,
        default="default",
        help="keeps several clusters apart in one Redis",
    )
    serve.add_argument(
        "--config",
        metavar="FILE",
        help="read settings from this TOML file (every flag has a key; flags given here win)",
    )
    serve.add_argument(
        "--print-config",
        action="store_true",
        help="print the effective configuration (file, flags and defaults) as TOML and exit",
    )
    if suppress_defaults:
        serve.set_defaults(**dict.fromkeys(vars(serve.parse_args([])), NOT_GIVEN))

    station = commands.add_parser(
        "station",
        help="simulate a charging station",
        description="Simulate a charging station: boot, report status, heartbeat, run a charging "
        "session with meter values and answer the CSMS's calls. Without --once it stays, "
        "reconnecting with backoff whenever the connection is lost or cannot be made.",
        formatter_class=_HelpFormatter,
    )
    common(station)
    station.add_argument(
        "url", type=_ws_url, help="CSMS endpoint without the identity, e.g. ws://127.0.0.1:9000/ocpp"
    )
    station.add_argument("identity", type=_identity, help="the station identity, e.g. CP001")
    station.add_argument(
        "--protocol",
        metavar="LIST",
        type=_protocol_list,
        default="ocpp1.6",
        help="OCPP version(s) to offer, comma-separated, preferred first",
    )
    passwords(station, "Basic-auth password (profiles 1, 2)")
    station.add_argument(
        "--ca", metavar="FILE", type=_pem_file, help="CA to trust for wss:// (default: the system store)"
    )
    station.add_argument(
        "--cert", metavar="FILE", type=_pem_file, help="station certificate chain, PEM (profile 3)"
    )
    station.add_argument(
        "--key", metavar="FILE", type=_pem_file, help="station private key, PEM (if not inside --cert)"
    )
    station.add_argument(
        "--meter-values", metavar="N", type=_count, default=3, help="meter values per charging session"
    )
    station.add_argument(
        "--interval", metavar="SECONDS", type=_seconds, default=1.0, help="seconds between meter values"
    )
    station.add_argument(
        "--heartbeat",
        metavar="SECONDS",
        type=_positive_seconds,
        default=None,
        help="heartbeat period (default: from boot)",
    )
    station.add_argument(
        "--max-reconnect-delay",
        metavar="SECONDS",
        type=_positive_seconds,
        default=30.0,
        help="longest wait between reconnect attempts; the waits grow from 1 s up to it",
    )
    station.add_argument(
        "--once",
        action="store_true",
        help="one connection and one charging session, then exit (status 1 if it failed)"
        " instead of staying and reconnecting",
    )
    call = commands.add_parser(
        "call",
        help="call a station connected to any node of a cluster, print its answer",
        description="Call a station connected to any node of a cluster (python -m ocpprpc serve --cluster)"
        " and print its answer as JSON. Exit status: 0 answered, 1 the cluster failed (Redis"
        " unreachable), 2 usage, 3 not connected, 4 timed out, 5 CALLERROR, 6 outcome unknown (the"
        " node or the connection died mid-call; never retried).",
        formatter_class=_HelpFormatter,
    )
    call.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio", help="event loop")
    call.add_argument("--cluster", metavar="URL", type=_redis_url, required=True, help="the cluster's Redis")
    call.add_argument(
        "--cluster-namespace",
        metavar="NAME",
        type=_node_name,
        default="default",
        help="the cluster's namespace",
    )
    call.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_positive_seconds,
        default=30.0,
        help="how long to wait for the answer",
    )
    call.add_argument("identity", type=_identity, help="the station identity, e.g. CP001")
    call.add_argument("action", type=_action, help="the OCPP action, e.g. Reset")
    call.add_argument("payload", nargs="?", default="{}", help="the request as a JSON object")
    return parser


# -- the check step: everything that can be judged before the event loop --------------------------


def _name(args: argparse.Namespace, flag: str) -> str:
    """What a message calls *flag*'s value: the flag, or ``FILE: key`` when ``--config`` gave it."""
    names: dict[str, str] = getattr(args, "config_names", {})
    return names.get(flag, flag)


def _from_file(args: argparse.Namespace, flag: str) -> str:
    """``FILE: key: `` when ``--config`` gave *flag*'s value (a prefix for messages about it), else ''."""
    name = _name(args, flag)
    return "" if name == flag else f"{name}: "


def _password(args: argparse.Namespace) -> bytes | None:
    """The password as bytes: OCPP 1.6 allows binary ones, so nothing here decodes it.

    ``sys.argv`` and ``os.environ`` hold undecodable bytes as surrogate escapes;
    :func:`os.fsencode` gives the original bytes back.
    """
    if args.password is not None:
        secret = os.fsencode(args.password)
        source = _name(args, "--password")
    elif args.password_env is not None:
        value = os.environ.get(args.password_env)
        if value is None:
            raise UsageError(
                f"{_name(args, '--password-env')}: the environment variable {args.password_env} is not set"
            )
        secret = os.fsencode(value)
        source = f"{_name(args, '--password-env')} {args.password_env}"
    elif args.password_file is not None:
        try:
            secret = Path(args.password_file).read_bytes()
        except OSError as exc:
            raise UsageError(
                f"{_name(args, '--password-file')}: cannot read {args.password_file!r}: {exc.strerror}"
            ) from None
        secret = secret.removesuffix(b"\n").removesuffix(b"\r")
        source = f"{_name(args, '--password-file')} {args.password_file}"
    else:
        return None
    if not secret:
        raise UsageError(f"{source}: the password is empty")
    return secret


def _tls_context(make: Any, flags: dict[str, str | None], **files: Any) -> ssl.SSLContext:
    """Build a TLS context now, so a bad PEM file is a usage error and not a failure mid-run.

    *flags* names the files by the options that gave them, for the message.
    """
    try:
        context: ssl.SSLContext = make(**files)
    except ssl.SSLError as exc:
        named = ", ".join(f"{flag} {path}" for flag, path in flags.items() if path)
        raise UsageError(
            f"{named}: not usable as PEM TLS files (or the key does not match the certificate): {exc}"
        ) from None
    except OSError as exc:
        raise UsageError(f"cannot read TLS file {exc.filename!r}: {exc.strerror}") from None
    return context


def _refuse(args: argparse.Namespace, flags: dict[str, Any], why: str) -> None:
    given = [_name(args, flag) for flag, value in flags.items() if value is not None]
    if given:
        raise UsageError(f"{' and '.join(given)}: {why}")


def _check_serve(args: argparse.Namespace) -> None:
    profile = args.security_profile
    args.secret = _password(args)
    password_flags = {
        "--password": args.password,
        "--password-env": args.password_env,
        "--password-file": args.password_file,
    }
    if profile in (1, 2) and args.secret is None:
        raise UsageError(
            f"{_from_file(args, '--security-profile')}security profile {profile} needs a password"
            " (--password, --password-env or --password-file)"
        )
    if profile in (0, 3):
        _refuse(
            args,
            password_flags,
            f"security profile {profile} uses no password; the password is for profiles 1 and 2",
        )
    if profile >= 2 and not args.cert:
        raise UsageError(
            f"{_from_file(args, '--security-profile')}security profile {profile} needs --cert"
            " (and --key unless it is inside --cert)"
        )
    if profile < 2:
        _refuse(args, {"--cert": args.cert, "--key": args.key}, "TLS is for security profiles 2 and 3")
    if args.key and not args.cert:
        raise UsageError(f"{_name(args, '--key')} needs --cert")
    if profile == 3 and not args.client_ca:
        raise UsageError(
            f"{_from_file(args, '--security-profile')}security profile 3 needs --client-ca"
            " (the CA that signs station certificates)"
        )
    if profile != 3:
        _refuse(args, {"--client-ca": args.client_ca}, "station certificates are for security profile 3")
    if args.key and len(args.key) != len(args.cert):
        raise UsageError(
            f"{_from_file(args, '--key')}give one --key per --cert, in the same order"
            " (or none: keys inside the --cert files)"
        )
    if args.rate_limit:
        actions = [action for action, _ in args.rate_limit]
        twice = sorted({action for action in actions if actions.count(action) > 1})
        if twice:
            raise UsageError(f"--rate-limit: {', '.join(twice)} limited more than once")
    elif args.rate_limit_action != "drop":
        raise UsageError(f"{_name(args, '--rate-limit-action')} needs at least one --rate-limit")
    if profile != 3 and args.no_cert_identity_check:
        raise UsageError(
            f"{_name(args, '--no-cert-identity-check')}: station certificates are for security profile 3"
        )
    if args.metrics_port is not None and not args.metrics:
        raise UsageError(f"{_name(args, '--metrics-port')} needs {_name(args, '--metrics')}")
    if args.metrics_port is not None and args.metrics_port == args.port != 0:
        raise UsageError(
            f"{_name(args, '--metrics-port')} {args.metrics_port} is the station port"
            f" ({_name(args, '--port')}); pick another"
        )
    args.ssl_context = None
    if profile >= 2:
        pairs = list(zip(args.cert, args.key or [None] * len(args.cert), strict=True))
        args.ssl_context = _tls_context(
            server_ssl_context,
            {
                _name(args, "--cert"): " ".join(args.cert),
                _name(args, "--key"): args.key and " ".join(args.key),
                _name(args, "--client-ca"): args.client_ca,
            },
            certfile=pairs[0][0],
            keyfile=pairs[0][1],
            extra_certs=pairs[1:],
            client_cafile=args.client_ca,
        )


def _check_station(args: argparse.Namespace) -> None:
    args.secret = _password(args)
    args.ssl_context = None
    if args.key and not args.cert:
        raise UsageError("--key needs --cert")
    if args.url.startswith("wss://"):
        args.ssl_context = _tls_context(
            client_ssl_context,
            {"--ca": args.ca, "--cert": args.cert, "--key": args.key},
            cafile=args.ca,
            certfile=args.cert,
            keyfile=args.key,
        )
    else:
        _refuse(args, {"--ca": args.ca, "--cert": args.cert, "--key": args.key}, "TLS needs a wss:// URL")


# -- running --------------------------------------------------------------------------------------


def _check_call(args: argparse.Namespace) -> None:
    try:
        payload = json.loads(args.payload, parse_constant=_no_constant)
    except ValueError as exc:
        raise UsageError(f"PAYLOAD is not JSON: {exc}") from None
    except RecursionError:
        raise UsageError("PAYLOAD is not JSON: nested too deeply") from None
    if not isinstance(payload, dict):
        raise UsageError(f"PAYLOAD must be a JSON object ({{...}}), got {type(payload).__name__}")
    args.payload = payload


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")
