"""``python -m ocpprpc``: a ready CSMS (``serve``) and a charging-station simulator (``station``).

Both run on asyncio or trio (``--backend``), validate strictly by default, log
each exchange readably, and stop cleanly on Ctrl-C / SIGTERM (the close
handshake still runs).

Errors a user makes end in one line on stderr, never a traceback: the
arguments are checked (types, consistency, files, TLS material) before the
event loop starts, and fail with exit status 2; what goes wrong at run time
(port in use, connection refused, HTTP 401, TLS failure) fails with 1.
"""

from __future__ import annotations

import argparse
import difflib
import functools
import hmac
import logging
import os
import re
import signal
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, NoReturn
from urllib.parse import urlsplit

import anyio
import anyio.abc

from .._csms.admission import AdmissionPolicy, parse_network
from .._csms.auth import certificate_identity
from .._csms.ratelimit import RateLimit, StationLimits
from .._csms.security_events import SecurityEvent, SecurityEvents
from .._csms.server import Accept, Reject, Server
from .._engine.errors import OCPPError
from .._options.policies import Backoff
from .._rpc.session import CallTimeout, InvalidResponseError
from .._station.client import connect
from .._station.station import (
    BootAnswered,
    Connected,
    Disconnected,
    GaveUp,
    Reconnecting,
    Station,
    StationEvent,
)
from .._ws.errors import HandshakeError
from .._ws.handshake import StationRequest, check_identity
from .._ws.tls import client_ssl_context, server_ssl_context
from .._ws.transport import ConnectionLost
from .demo import BUILTIN_PROTOCOLS, demo_csms_router, demo_station_router
from .scenario import ChargingScenario, boot_payload

__all__ = ["main"]

log = logging.getLogger("ocpprpc.cli")

PROG = "python -m ocpprpc"

DESCRIPTION = (
    "A ready OCPP CSMS (serve) and a charging-station simulator (station), on asyncio or trio."
    " Run 'python -m ocpprpc serve --help' or 'python -m ocpprpc station --help' for their options."
)

#: What the simulator's calls may fail with; the station logs them and carries on.
_CALL_FAILURES = (ConnectionLost, CallTimeout, InvalidResponseError, OCPPError)


class UsageError(Exception):
    """A mistake in the command line: reported in one line, exit status 2."""


class CommandFailed(Exception):
    """A failure the command reports in one line (no traceback) before exiting with status 1."""


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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description=DESCRIPTION, formatter_class=_HelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{serve,station}")

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
        "--heartbeat-interval",
        metavar="SECONDS",
        type=_positive_int,
        default=300,
        help="heartbeat interval given to stations at boot",
    )

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
    return parser


# -- the check step: everything that can be judged before the event loop --------------------------


def _password(args: argparse.Namespace) -> bytes | None:
    """The password as bytes: OCPP 1.6 allows binary ones, so nothing here decodes it.

    ``sys.argv`` and ``os.environ`` hold undecodable bytes as surrogate escapes;
    :func:`os.fsencode` gives the original bytes back.
    """
    if args.password is not None:
        secret = os.fsencode(args.password)
        source = "--password"
    elif args.password_env is not None:
        value = os.environ.get(args.password_env)
        if value is None:
            raise UsageError(f"--password-env: the environment variable {args.password_env} is not set")
        secret = os.fsencode(value)
        source = f"--password-env {args.password_env}"
    elif args.password_file is not None:
        try:
            secret = Path(args.password_file).read_bytes()
        except OSError as exc:
            raise UsageError(f"--password-file: cannot read {args.password_file!r}: {exc.strerror}") from None
        secret = secret.removesuffix(b"\n").removesuffix(b"\r")
        source = f"--password-file {args.password_file}"
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


def _refuse(flags: dict[str, Any], why: str) -> None:
    given = [flag for flag, value in flags.items() if value is not None]
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
            f"security profile {profile} needs a password (--password, --password-env or --password-file)"
        )
    if profile in (0, 3):
        _refuse(
            password_flags,
            f"security profile {profile} uses no password; the password is for profiles 1 and 2",
        )
    if profile >= 2 and not args.cert:
        raise UsageError(f"security profile {profile} needs --cert (and --key unless it is inside --cert)")
    if profile < 2:
        _refuse({"--cert": args.cert, "--key": args.key}, "TLS is for security profiles 2 and 3")
    if args.key and not args.cert:
        raise UsageError("--key needs --cert")
    if profile == 3 and not args.client_ca:
        raise UsageError("security profile 3 needs --client-ca (the CA that signs station certificates)")
    if profile != 3:
        _refuse({"--client-ca": args.client_ca}, "station certificates are for security profile 3")
    if args.key and len(args.key) != len(args.cert):
        raise UsageError(
            "give one --key per --cert, in the same order (or none: keys inside the --cert files)"
        )
    if args.rate_limit:
        actions = [action for action, _ in args.rate_limit]
        twice = sorted({action for action in actions if actions.count(action) > 1})
        if twice:
            raise UsageError(f"--rate-limit: {', '.join(twice)} limited more than once")
    elif args.rate_limit_action != "drop":
        raise UsageError("--rate-limit-action needs at least one --rate-limit")
    if profile != 3 and args.no_cert_identity_check:
        raise UsageError("--no-cert-identity-check: station certificates are for security profile 3")
    args.ssl_context = None
    if profile >= 2:
        pairs = list(zip(args.cert, args.key or [None] * len(args.cert), strict=True))
        args.ssl_context = _tls_context(
            server_ssl_context,
            {
                "--cert": " ".join(args.cert),
                "--key": args.key and " ".join(args.key),
                "--client-ca": args.client_ca,
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
        _refuse({"--ca": args.ca, "--cert": args.cert, "--key": args.key}, "TLS needs a wss:// URL")


# -- running --------------------------------------------------------------------------------------


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


def _log_boot(identity: str, status: str, interval: float) -> None:
    if status == "Accepted":
        log.info("%s: BootNotification Accepted (heartbeat interval %g s)", identity, interval)
    elif status == "Pending":
        log.info("%s: BootNotification Pending; booting again in %g s", identity, interval)
    else:
        log.warning("%s: BootNotification %s; booting again in %g s", identity, status, interval)


async def _until_signalled(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("received %s, shutting down", signal.Signals(signum).name)
            scope.cancel()
            return


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def run_serve(args: argparse.Namespace) -> None:
    profile = args.security_profile
    password: bytes | None = args.secret

    check_certificate = certificate_identity() if profile == 3 and not args.no_cert_identity_check else None

    async def auth(request: StationRequest) -> Accept | Reject:
        if password is not None and (
            request.password is None or not hmac.compare_digest(request.password, password)
        ):
            log.warning("%s: wrong or missing password, refusing", request.identity)
            return Reject(401)
        if profile == 3 and request.client_certificate is None:
            return Reject(401)
        if check_certificate is not None:
            decision = await check_certificate(request)
            if isinstance(decision, Reject):
                log.warning("%s: client certificate issued to another identity, refusing", request.identity)
                return decision
        return Accept()

    server = Server(
        router=demo_csms_router(args.protocols, heartbeat_interval=args.heartbeat_interval),
        protocols=args.protocols,
        auth=auth,
        ssl_context=args.ssl_context,
        validation=not args.no_validation,
        on_message=_log_wire,
        max_connections=args.max_connections,
        admission=_admission(args),
        rate_limits=_rate_limits(args),
        security_events=_security_log() if args.security_log else None,
    )
    # Opened before listening, so a signal can never hit the default handlers once we serve.
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with anyio.create_task_group() as task_group:
            try:
                await task_group.start(server.serve, args.host, args.port)
            except OSError as exc:
                raise CommandFailed(f"cannot listen on {args.host}:{args.port}: {exc}") from exc
            scheme = "wss" if args.ssl_context else "ws"
            base = f"{scheme}://{_url_host(args.host)}:{server.port}"
            # A wildcard address is where we listen, not an address a station can dial.
            reachable = (
                base if args.host not in ("0.0.0.0", "::", "") else f"{scheme}://<this-host>:{server.port}"
            )
            _say(f"ocpprpc CSMS listening on {base}/; stations connect to {reachable}/ocpp/<identity>")
            async for signum in signals:
                log.info("received %s, shutting down", signal.Signals(signum).name)
                break
            # Graceful: stations are told (1001) and their pending calls get 2 s; serve() then returns.
            await server.shutdown(timeout=2)


def _admission(args: argparse.Namespace) -> AdmissionPolicy | None:
    if args.upgrade_rate is None and not args.allow_ip:
        return None
    return AdmissionPolicy(allow_ips=args.allow_ip or (), upgrade_rate=args.upgrade_rate)


def _rate_limits(args: argparse.Namespace) -> StationLimits | None:
    if not args.rate_limit:
        return None
    limits = dict(args.rate_limit)
    return StationLimits(global_=limits.pop("*", None), per_action=limits, on_breach=args.rate_limit_action)


def _security_log() -> SecurityEvents:
    """A hub that prints each event as one JSON line on stderr (for a SIEM or ``jq``)."""

    def write(event: SecurityEvent) -> None:
        sys.stderr.write(event.to_json() + "\n")
        sys.stderr.flush()

    hub = SecurityEvents()
    hub.subscribe(write)
    return hub


async def run_station(args: argparse.Namespace) -> None:
    simulate = _simulate_once if args.once else _simulate_forever
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(_until_signalled, scope)
            await simulate(args)
            task_group.cancel_scope.cancel()


async def _simulate_once(args: argparse.Namespace) -> None:
    """One connection, one charging session: the exit status tells how it went."""
    try:
        async with connect(
            args.url,
            args.identity,
            protocols=args.protocol,
            password=args.secret,
            ssl_context=args.ssl_context,
            router=demo_station_router(),
            validation=not args.no_validation,
            on_message=functools.partial(_log_wire, args.identity),
        ) as station:
            _say(f"{args.identity} connected to {args.url} speaking {station.protocol}")

            async def call(action: str, payload: dict[str, Any]) -> Any:
                answer = await station.call(action, payload)
                log.info("%s <- %s", args.identity, action)
                if action == "BootNotification":
                    _log_boot(args.identity, str(answer.get("status")), float(answer.get("interval") or 0))
                return answer

            async def sleep(seconds: float) -> None:
                # Idle, but notice at once when the CSMS closes the connection.
                with anyio.move_on_after(seconds):
                    await station.closed.wait()
                if station.closed.is_set():
                    raise ConnectionLost(station.close_reason)

            scenario = ChargingScenario(station.protocol, call, sleep, meter_values=args.meter_values)
            await scenario.run(args.interval)
            _say(f"{args.identity} finished a charging session")
    except (HandshakeError, OSError) as exc:
        raise CommandFailed(f"{args.identity}: cannot connect to {args.url}: {exc}") from exc
    except _CALL_FAILURES as exc:
        raise CommandFailed(f"{args.identity}: {exc}") from exc


async def _simulate_forever(args: argparse.Namespace) -> None:
    """A station that stays: :class:`Station` reconnects with backoff and boots itself.

    It gives up only when the CSMS answers the upgrade with a status retrying
    cannot change (401, 403, 404): a :class:`CommandFailed`.
    """
    identity = args.identity
    gave_up: list[GaveUp] = []
    work = anyio.CancelScope()

    def on_event(event: StationEvent) -> None:
        match event:
            case Connected(protocol):
                _say(f"{identity} connected to {args.url} speaking {protocol}")
            case Disconnected(reason):
                # Closed by us: shutting down, nothing to warn about.
                log.log(
                    logging.WARNING if reason.by_peer else logging.INFO,
                    "%s: disconnected: %s",
                    identity,
                    reason,
                )
            case Reconnecting(attempt, delay, error) if error is not None:
                log.warning(
                    "%s: cannot connect to %s: %s; retrying in %.1f s", identity, args.url, error, delay
                )
            case Reconnecting(attempt, delay, None):
                log.info("%s: reconnecting in %.1f s (attempt %d)", identity, delay, attempt)
            case BootAnswered(status, interval):
                _log_boot(identity, status, interval)
            case GaveUp():
                gave_up.append(event)
                work.cancel()

    station = Station(
        args.url,
        identity,
        protocols=args.protocol,
        reconnect=Backoff(
            base=min(1.0, args.max_reconnect_delay), cap=args.max_reconnect_delay, retry_first_connect=True
        ),
        router=demo_station_router(),
        boot=boot_payload,
        validation=not args.no_validation,
        on_message=functools.partial(_log_wire, identity),
        on_event=on_event,
        connect_options={"password": args.secret, "ssl_context": args.ssl_context},
    )
    async with station:
        with work:
            try:
                await _station_life(args, station)
            except ConnectionLost:
                if not gave_up:  # the give-up may reach a waiting call before the cancellation
                    raise
    if gave_up:
        raise CommandFailed(f"{identity}: gave up connecting to {args.url}: {gave_up[0].reason}")


async def _station_life(args: argparse.Namespace, station: Station) -> None:
    identity = args.identity

    async def call(action: str, payload: dict[str, Any]) -> Any:
        answer = await station.call(action, payload)
        log.info("%s <- %s", identity, action)
        return answer

    await station.wait_connected()
    assert station.protocol is not None
    scenario = ChargingScenario(station.protocol, call, anyio.sleep, meter_values=args.meter_values)
    try:
        await scenario.after_boot(args.interval)
    except _CALL_FAILURES as exc:
        # Not started again: a real station would not repeat a half-done transaction either.
        log.warning("%s: charging session interrupted: %s", identity, exc)
    else:
        _say(f"{identity} finished a charging session")
    while True:
        await anyio.sleep(args.heartbeat or station.heartbeat_interval or scenario.heartbeat_interval)
        try:
            await scenario.heartbeat()
        except _CALL_FAILURES as exc:
            log.warning("%s: Heartbeat failed: %s", identity, exc)


def _reportable(exc: BaseException) -> CommandFailed | None:
    """*exc* if it is a :class:`CommandFailed`, alone or as the only error in (nested) groups."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc if isinstance(exc, CommandFailed) else None


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        (_check_serve if args.command == "serve" else _check_station)(args)
    except UsageError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return 2
    _configure_logging(args)
    runner = run_serve if args.command == "serve" else run_station
    try:
        anyio.run(runner, args, backend=args.backend)
    except KeyboardInterrupt:  # pragma: no cover - signals are normally handled in the loop
        return 130
    except BaseException as exc:
        failure = _reportable(exc)
        if failure is None:
            raise
        sys.stderr.write(f"{PROG}: error: {failure}\n")
        return 1
    return 0
