"""``python -m ocpprpc station``: the charging-station simulator, run from checked arguments."""

from __future__ import annotations

import argparse
import functools
import logging
import signal
from typing import Any

import anyio

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
from .._ws.transport import ConnectionLost
from .demo import demo_station_router
from .output import CommandFailed, _log_wire, _say
from .scenario import ChargingScenario, boot_payload

log = logging.getLogger("ocpprpc.cli")

#: What the simulator's calls may fail with; the station logs them and carries on.
_CALL_FAILURES = (ConnectionLost, CallTimeout, InvalidResponseError, OCPPError)


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
