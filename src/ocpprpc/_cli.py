"""``python -m ocpprpc``: a ready CSMS (``serve``) and a charging-station simulator (``station``).

Both run on asyncio or trio (``--backend``), validate strictly by default, log
each exchange readably, and stop cleanly on Ctrl-C / SIGTERM (the close
handshake still runs).
"""

from __future__ import annotations

import argparse
import functools
import hmac
import logging
import signal
import ssl
import sys
from collections.abc import Sequence
from typing import Any, Literal

import anyio
import anyio.abc

from ._auth import certificate_identity
from ._client import connect
from ._demo import BUILTIN_PROTOCOLS, demo_csms_router, demo_station_router
from ._errors import OCPPError
from ._handshake import StationRequest
from ._scenario import ChargingScenario
from ._server import Accept, Reject, Server
from ._session import CallTimeout, InvalidResponseError
from ._tls import client_ssl_context, server_ssl_context
from ._transport import ConnectionLost
from ._ws_errors import HandshakeError

__all__ = ["main"]

log = logging.getLogger("ocpprpc.cli")

PROG = "python -m ocpprpc"


def _protocol_list(text: str) -> list[str]:
    protocols = [part.strip() for part in text.split(",") if part.strip()]
    if not protocols:
        raise argparse.ArgumentTypeError("give at least one protocol")
    return protocols


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio", help="event loop")
        sub.add_argument(
            "--no-validation", action="store_true", help="do not validate payloads against the schemas"
        )
        sub.add_argument("--log-payloads", action="store_true", help="log every message in full")
        sub.add_argument("--quiet", action="store_true", help="log warnings and errors only")

    serve = commands.add_parser("serve", help="run a CSMS that accepts stations on every OCPP version")
    common(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=9000, help="TCP port (0: any free port; default 9000)")
    serve.add_argument(
        "--protocols",
        type=_protocol_list,
        default=list(BUILTIN_PROTOCOLS),
        help="comma-separated OCPP versions, preferred first (default: ocpp2.1,ocpp2.0.1,ocpp1.6)",
    )
    serve.add_argument(
        "--security-profile",
        type=int,
        choices=[0, 1, 2, 3],
        default=0,
        help="0 plain, 1 Basic auth, 2 TLS + Basic auth, 3 mutual TLS",
    )
    serve.add_argument("--password", help="the Basic-auth password every station must send (profiles 1, 2)")
    serve.add_argument(
        "--cert",
        action="append",
        help="server certificate chain, PEM (profiles 2, 3); repeat for an RSA and an ECDSA one",
    )
    serve.add_argument(
        "--key",
        action="append",
        help="server private key, PEM, one per --cert in order (if not inside --cert)",
    )
    serve.add_argument("--client-ca", help="CA that signs station certificates, PEM (profile 3)")
    serve.add_argument(
        "--no-cert-identity-check",
        action="store_true",
        help="profile 3: accept a station certificate issued to another identity (default: its CN, "
        "DNS or URI name must equal the station identity)",
    )
    serve.add_argument("--heartbeat-interval", type=int, default=300, help="interval given at boot (s)")

    station = commands.add_parser("station", help="simulate a charging station")
    common(station)
    station.add_argument("url", help="CSMS endpoint without the identity, e.g. ws://127.0.0.1:9000/ocpp")
    station.add_argument("identity", help="the station identity, e.g. CP001")
    station.add_argument(
        "--protocol",
        type=_protocol_list,
        default=["ocpp1.6"],
        help="OCPP version(s) to offer, comma-separated, preferred first (default ocpp1.6)",
    )
    station.add_argument("--password", help="Basic-auth password (profiles 1, 2)")
    station.add_argument("--ca", help="CA to trust for wss:// (default: the system store)")
    station.add_argument("--cert", help="station certificate chain, PEM (profile 3)")
    station.add_argument("--key", help="station private key, PEM (profile 3)")
    station.add_argument("--meter-values", type=int, default=3, help="meter values per charging session")
    station.add_argument("--interval", type=float, default=1.0, help="seconds between meter values")
    station.add_argument(
        "--heartbeat", type=float, default=None, help="heartbeat period (default: from boot)"
    )
    station.add_argument(
        "--once", action="store_true", help="exit after one charging session instead of idling"
    )
    return parser


def _configure_logging(args: argparse.Namespace) -> None:
    level = logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(
        level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr
    )
    if args.log_payloads:
        logging.getLogger("ocpprpc.wire").setLevel(logging.INFO)
    else:
        logging.getLogger("ocpprpc.wire").setLevel(logging.WARNING)
    # Per-session lifecycle chatter is for debugging; the exchange log is the demo's output.
    if not args.quiet:
        logging.getLogger("ocpprpc.session").setLevel(logging.WARNING)


def _say(text: str, flush: bool = True) -> None:
    """The CLI's own output (where it listens, what it did): stdout, unlike the logs."""
    sys.stdout.write(text + "\n")
    if flush:
        sys.stdout.flush()


_wire = logging.getLogger("ocpprpc.wire")


def _log_wire(identity: str, direction: Literal["in", "out"], text: str) -> None:
    if _wire.isEnabledFor(logging.INFO):
        _wire.info("%s %s %s", identity, "<<" if direction == "in" else ">>", text)


async def _until_signalled(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("received %s, shutting down", signal.Signals(signum).name)
            scope.cancel()
            return


async def run_serve(args: argparse.Namespace) -> None:
    profile = args.security_profile
    ssl_context = None
    if profile >= 2:
        if not args.cert:
            raise SystemExit("security profiles 2 and 3 need --cert (and --key)")
        if args.key and len(args.key) != len(args.cert):
            raise SystemExit(
                "give one --key per --cert, in the same order (or none: keys inside the --cert files)"
            )
        pairs = list(zip(args.cert, args.key or [None] * len(args.cert), strict=True))
        ssl_context = server_ssl_context(
            *pairs[0], extra_certs=pairs[1:], client_cafile=args.client_ca if profile == 3 else None
        )
        if profile == 3 and not args.client_ca:
            raise SystemExit("security profile 3 needs --client-ca")
    password = args.password.encode() if args.password else None
    if profile in (1, 2) and password is None:
        raise SystemExit("security profiles 1 and 2 need --password")

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
        ssl_context=ssl_context,
        validation=not args.no_validation,
        on_message=_log_wire,
    )
    # Opened before listening, so a signal can never hit the default handlers once we serve.
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with anyio.create_task_group() as task_group:
            try:
                await task_group.start(server.serve, args.host, args.port)
            except OSError as exc:
                raise CommandFailed(f"cannot listen on {args.host}:{args.port}: {exc}") from exc
            scheme = "wss" if ssl_context else "ws"
            _say(f"ocpprpc CSMS listening on {scheme}://{args.host}:{server.port}/", flush=True)
            async for signum in signals:
                log.info("received %s, shutting down", signal.Signals(signum).name)
                break
            # Graceful: stations are told (1001) and their pending calls get 2 s; serve() then returns.
            await server.shutdown(timeout=2)


async def run_station(args: argparse.Namespace) -> None:
    ssl_context = None
    if args.url.startswith("wss://"):
        ssl_context = client_ssl_context(cafile=args.ca, certfile=args.cert, keyfile=args.key)
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(_until_signalled, scope)
            try:
                await _simulate_station(args, ssl_context)
            except (HandshakeError, OSError) as exc:
                raise CommandFailed(f"{args.identity}: cannot connect to {args.url}: {exc}") from exc
            except (ConnectionLost, CallTimeout, InvalidResponseError, OCPPError) as exc:
                raise CommandFailed(f"{args.identity}: {exc}") from exc
            task_group.cancel_scope.cancel()


async def _simulate_station(args: argparse.Namespace, ssl_context: ssl.SSLContext | None) -> None:
    async with connect(
        args.url,
        args.identity,
        protocols=args.protocol,
        password=args.password,
        ssl_context=ssl_context,
        router=demo_station_router(),
        validation=not args.no_validation,
        on_message=functools.partial(_log_wire, args.identity),
    ) as station:
        _say(f"{args.identity} connected to {args.url} speaking {station.protocol}", flush=True)

        async def call(action: str, payload: dict[str, Any]) -> Any:
            answer = await station.call(action, payload)
            log.info("%s <- %s", args.identity, action)
            return answer

        async def sleep(seconds: float) -> None:
            # Idle, but notice at once when the CSMS closes the connection.
            with anyio.move_on_after(seconds):
                await station.closed.wait()
            if station.closed.is_set():
                raise ConnectionLost(station.close_reason)

        scenario = ChargingScenario(station.protocol, call, sleep, meter_values=args.meter_values)
        await scenario.run(args.interval)
        _say(f"{args.identity} finished a charging session", flush=True)
        if not args.once:
            period = args.heartbeat or scenario.heartbeat_interval
            while True:
                await sleep(period)
                await scenario.heartbeat()


class CommandFailed(Exception):
    """A failure the command reports in one line (no traceback) before exiting with status 1."""


def _reportable(exc: BaseException) -> CommandFailed | None:
    """*exc* if it is a :class:`CommandFailed`, alone or as the only error in (nested) groups."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc if isinstance(exc, CommandFailed) else None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
