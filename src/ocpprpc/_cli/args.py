"""The command line's parser: the ``serve``, ``station`` and ``call`` flags and their help.

Each flag's text is turned into a value by its argument type
(:mod:`ocpprpc._cli.arg_types`); the flags are then judged together by
:mod:`ocpprpc._cli.arg_checks`.  A mistake is a :class:`UsageError`: one line
on stderr, exit status 2.
"""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

from .._ops.gc_tuning import CSMS_GC_THRESHOLDS
from ..cluster.adapter import DEFAULT_HEARTBEAT
from .arg_types import (
    _action,
    _action_rate,
    _count,
    _gc_threshold,
    _identity,
    _network,
    _node_name,
    _pem_file,
    _port,
    _positive_int,
    _positive_seconds,
    _protocol_list,
    _rate,
    _redis_url,
    _seconds,
    _ws_url,
)
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
        "--gc-threshold",
        metavar="N",
        type=_gc_threshold,
        default=CSMS_GC_THRESHOLDS[0],
        help="the garbage collector's first threshold for this process (ocpprpc.tune_gc: keeps "
        "latency flat with thousands of stations); 0 leaves Python's defaults",
    )
    serve.add_argument(
        "--gc-freeze",
        action="store_true",
        help="freeze what survives each garbage collection (ocpprpc.tune_gc(freeze_survivors=True): "
        "faster boots and no full passes with thousands of stations; a cycle among frozen objects "
        "is never collected)",
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
        "--cluster-heartbeat",
        metavar="SECONDS",
        type=_positive_seconds,
        default=DEFAULT_HEARTBEAT,
        help=(
            "how often this node proves it is alive; silent for 3 heartbeats it counts as dead and "
            "calls to it fail (outcome unknown) within about 3-4 heartbeats"
        ),
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
