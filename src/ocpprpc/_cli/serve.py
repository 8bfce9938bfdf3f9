"""``python -m ocpprpc serve``: the ready CSMS, run from checked arguments."""

from __future__ import annotations

import argparse
import functools
import gc
import hmac
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager

import anyio

from .._csms.auth import certificate_identity
from .._csms.cluster_client import transient_redis_adapter
from .._csms.cluster_delivery import cluster_delivery
from .._csms.listener import Listener
from .._csms.ratelimit import OnBreach, RateLimit, StationLimits
from .._csms.routing import Route
from .._csms.security_events import SecurityEvent, SecurityEvents
from .._csms.server import Accept, Reject, Server
from .._ops.gc_tuning import CSMS_GC_THRESHOLDS, tune_gc
from .._ws.handshake import StationRequest
from ..cluster.adapter import ClusterUnavailable
from ..cluster.redis_adapter import RedisAdapter
from .arg_types import shown_url
from .config import ServeConfig
from .demo import demo_csms_router
from .output import CommandFailed, _log_wire, _say

log = logging.getLogger("ocpprpc.cli")


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def tune_process_gc(args: argparse.Namespace) -> None:
    """``--gc-threshold`` and ``--gc-freeze``: settings of the whole process, which this command owns."""
    if args.gc_threshold:
        tune_gc((args.gc_threshold, *CSMS_GC_THRESHOLDS[1:]), freeze_survivors=args.gc_freeze)
    elif args.gc_freeze:
        tune_gc(gc.get_threshold(), freeze_survivors=True)  # Python's thresholds, survivors frozen


async def run_serve(args: argparse.Namespace) -> None:
    profile = args.security_profile
    password: bytes | None = args.secret

    check_certificate = certificate_identity() if not args.no_cert_identity_check else None

    async def auth(request: StationRequest) -> Accept | Reject:
        if password is not None and (
            request.password is None or not hmac.compare_digest(request.password, password)
        ):
            log.warning("%s: wrong or missing password, refusing", request.identity)
            return Reject(401)
        if profile == 3 and request.client_certificate is None:
            return Reject(401)
        # Profile 3, or a [[listeners]] entry that requires station certificates.
        if check_certificate is not None and request.client_certificate is not None:
            decision = await check_certificate(request)
            if isinstance(decision, Reject):
                log.warning("%s: client certificate issued to another identity, refusing", request.identity)
                return decision
        return Accept()

    tune_process_gc(args)
    routes = _routes(args.config)
    listeners = _listeners(args.config, routes)
    server = Server(
        router=demo_csms_router(args.protocols, heartbeat_interval=args.heartbeat_interval),
        protocols=args.protocols,
        auth=auth,
        ssl_context=args.ssl_context,
        validation=not args.no_validation,
        on_message=_log_wire,
        admission=args.admission,
        websocket=args.websocket_options,
        session=args.session_options,
        csms=args.csms_options,
        rate_limits=_rate_limits(args),
        security_events=_security_log() if args.security_log else None,
        routes=routes or None,
        metrics=_metrics(args),
        http_endpoints=args.metrics and args.metrics_port is None,
    )
    # Opened before listening, so a signal can never hit the default handlers once we serve.
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with _clustered(server, args) as joined, anyio.create_task_group() as task_group:
            side = None
            if args.metrics_port is not None:  # first: a port in use fails before stations are taken
                try:
                    side = await task_group.start(server.serve_http, args.host, args.metrics_port)
                except OSError as exc:
                    raise CommandFailed(f"cannot listen on {args.host}:{args.metrics_port}: {exc}") from exc
            if not listeners:
                try:
                    await task_group.start(server.serve, args.host, args.port)
                except OSError as exc:
                    raise CommandFailed(f"cannot listen on {args.host}:{args.port}: {exc}") from exc
                scheme = "wss" if args.ssl_context else "ws"
                base = f"{scheme}://{_url_host(args.host)}:{server.port}"
                # A wildcard address is where we listen, not an address a station can dial.
                reachable = (
                    base
                    if args.host not in ("0.0.0.0", "::", "")
                    else f"{scheme}://<this-host>:{server.port}"
                )
                _say(f"ocpprpc CSMS listening on {base}/; stations connect to {reachable}/ocpp/<identity>")
            for listener in listeners:
                try:
                    await task_group.start(
                        functools.partial(
                            server.serve,
                            listener.host,
                            listener.port,
                            ssl_context=listener.ssl_context,
                            routes=listener.routes,
                            name=listener.name,
                        )
                    )
                except OSError as exc:
                    raise CommandFailed(
                        f"cannot listen on {listener.host}:{listener.port} ({listener.name}): {exc}"
                    ) from exc
                port = server.listener(listener.name or "").port
                scheme = "wss" if listener.ssl_context is not None else "ws"
                where = f"{scheme}://{_url_host(listener.host or '')}:{port}/"
                _say(f"ocpprpc CSMS listening on {where} ({listener.name})")
            if args.metrics:
                metrics_port = server.port if side is None else side
                _say(f"metrics on http://{_url_host(args.host)}:{metrics_port}/metrics (and /health)")
            if joined is not None:
                _say(
                    f"cluster node {joined} on {shown_url(args.cluster)}"
                    f" (namespace {args.cluster_namespace}): any node reaches any station"
                )
            async for signum in signals:
                log.info("received %s, shutting down", signal.Signals(signum).name)
                break
            # Graceful: stations are told (1001) and their pending calls get 2 s; serve() then returns.
            await server.shutdown(timeout=2)


def default_node_name() -> str:
    """``HOSTNAME-PID``, made a valid node name: unique on a machine, not stable across restarts."""
    host = "".join(char if char.isalnum() or char in "-_." else "-" for char in socket.gethostname())
    return f"{host[:100] or 'node'}-{os.getpid()}"


@asynccontextmanager
async def _clustered(server: Server, args: argparse.Namespace) -> AsyncIterator[str | None]:
    """With ``--cluster``: the server joined to the cluster (before it listens); yields the node name."""
    if args.cluster is None:
        yield None
        return
    name = args.node_name or default_node_name()
    try:
        async with AsyncExitStack() as stack:
            if args.node_name is None:  # HOSTNAME-PID never comes back: leave no inbox behind
                adapter = await stack.enter_async_context(
                    transient_redis_adapter(
                        args.cluster,
                        node_id=name,
                        namespace=args.cluster_namespace,
                        heartbeat=args.cluster_heartbeat,
                    )
                )
            else:  # a restart under this name drains what this run leaves pending
                adapter = RedisAdapter(
                    args.cluster,
                    node_id=name,
                    namespace=args.cluster_namespace,
                    heartbeat=args.cluster_heartbeat,
                )
                await stack.enter_async_context(adapter)
            await stack.enter_async_context(cluster_delivery(server, adapter))
            yield name
    except ClusterUnavailable as exc:
        raise CommandFailed(f"cannot reach the cluster at {shown_url(args.cluster)}: {exc}") from None
    except BaseExceptionGroup as failures:  # coredis' task group wraps it
        unavailable, _ = failures.split(ClusterUnavailable)
        if unavailable is None:
            raise
        raise CommandFailed(
            f"cannot reach the cluster at {shown_url(args.cluster)}: {unavailable.exceptions[0]}"
        ) from None


def _routes(config: ServeConfig | None) -> list[Route]:
    """The file's ``[[routes]]`` as routes (checked when the file was read)."""
    if config is None:
        return []
    return [
        Route(
            entry.pattern,
            protocols=entry.protocols,
            validation=entry.validation,
            rate_limits=None if entry.rate_limits is None else _limits(entry.rate_limits, entry.on_breach),
            max_message_size=entry.max_message_size,
            name=entry.name,
        )
        for entry in config.routes
    ]


def _listeners(config: ServeConfig | None, routes: list[Route]) -> list[Listener]:
    """The file's ``[[listeners]]``: with any, they replace ``host``/``port`` as where to listen."""
    if config is None:
        return []
    by_name = {route.name: route for route in routes}
    return [
        Listener(
            entry.host,
            entry.port,
            ssl_context=entry.ssl_context,
            routes=[by_name[name] for name in entry.routes] or None,
            name=entry.name,
        )
        for entry in config.listeners
    ]


def _limits(pairs: Sequence[tuple[str, RateLimit]], on_breach: str | None) -> StationLimits:
    limits = dict(pairs)
    return StationLimits(
        global_=limits.pop("*", None), per_action=limits, on_breach=OnBreach(on_breach or OnBreach.DROP.value)
    )


def _metrics(args: argparse.Namespace) -> bool:
    if args.metrics:
        try:
            import prometheus_client  # noqa: F401
        except ImportError:
            raise CommandFailed("--metrics needs prometheus-client: pip install 'ocpprpc[metrics]'") from None
    return bool(args.metrics)


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
