"""Instructions a CSMS session spends per inbound CALL, with each message-path layer on and off.

The CSMS's :class:`~ocpprpc.Session` (strict validation, OCPP 1.6, a plain Heartbeat
handler) answers a raw peer over an in-memory message stream: no sockets, no
WebSocket codec, a peer that only writes and reads frames.  Under valgrind's
callgrind the instruction count is deterministic, so a layer's cost shows even on a
machine too noisy for CPU time.  Layers (``--layers``, comma-separated): ``mw`` (one
pass-through middleware marked ``never_waits``), ``rl`` (per-station rate limits,
never breached, as ``Server(rate_limits=...)`` wraps the router), ``metrics``
(``ocpprpc.Metrics`` as the server installs it).  Security events cost nothing per
message (they are emitted on connection events and breaches only).

Run: ``python bench/callgrind_layers.py`` (valgrind needed): for each configuration
the difference of a 1200- and a 200-round-trip run under callgrind, per round trip,
and its ratio to no layers.  ``--calls N`` runs N round trips plainly (what the
callgrind runs execute).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "src"))

import anyio  # noqa: E402
import callgrind  # noqa: E402  (bench/callgrind.py)

import ocpprpc  # noqa: E402
from ocpprpc._csms.guard import RateLimitedRouter  # noqa: E402
from ocpprpc._engine.rules import Role  # noqa: E402
from ocpprpc._rpc.protocols import session_parts  # noqa: E402
from ocpprpc._ws.transport import memory_message_stream_pair  # noqa: E402

CONFIGS = ("none", "mw", "rl", "mw,rl", "metrics")


def build(layers: set[str]) -> tuple[ocpprpc.Router, list[Any]]:
    router = ocpprpc.Router()

    @router.on("Heartbeat")
    def heartbeat(request: Any, ctx: ocpprpc.CallContext) -> dict[str, Any]:
        return {"currentTime": "2024-01-01T00:00:00Z"}

    session_router: ocpprpc.Router = router
    middleware: list[Any] = []
    if "metrics" in layers:
        middleware.append(ocpprpc.Metrics())
    if "mw" in layers:

        @ocpprpc.never_waits
        async def observe(ctx: ocpprpc.MessageContext, call_next: Any) -> Any:
            return await call_next(ctx)

        middleware.append(observe)
    if "rl" in layers:
        limiter = ocpprpc.RateLimiter(
            ocpprpc.StationLimits(
                global_=ocpprpc.RateLimit.parse("1000000/1"),
                per_action={"MeterValues": ocpprpc.RateLimit.parse("1000000/1")},
            ),
            clock=time.monotonic,
        )
        session_router = RateLimitedRouter(router, limiter, lambda verdict, ctx: None)
    return session_router, middleware


async def run(calls: int, layers: set[str]) -> None:
    router, middleware = build(layers)
    connection, options = session_parts(Role.CSMS, "ocpp1.6", True, identity="CP1")
    ours, theirs = memory_message_stream_pair("ocpp1.6")
    session = ocpprpc.Session(
        ours, connection, router=router, identity="CP1", middleware=middleware, **options
    )
    async with session:
        for n in range(calls):
            await theirs.send(f'[2,"{n}","Heartbeat",{{}}]')
            reply = await theirs.receive()
            assert reply.startswith("[3,"), reply
    theirs.abort()


def instructions(calls: int, layers: str) -> int:
    return callgrind.instructions([sys.executable, __file__, "--calls", str(calls), "--layers", layers])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=0, help="run N round trips plainly (no valgrind)")
    parser.add_argument("--layers", default="none")
    parser.add_argument(
        "--configs",
        default=";".join(CONFIGS),
        help="the configurations to measure, ';'-separated; ratios are to the first (default: %(default)s)",
    )
    args = parser.parse_args()
    if args.calls:
        layers = {name for name in args.layers.split(",") if name and name != "none"}
        anyio.run(run, 200, layers)  # warm-up inside the measured process: imports, first use
        anyio.run(run, args.calls, layers)
        return
    base = None
    print(f"{'layers':10} {'Ir per round trip':>18} {'vs none':>8}")
    for config in args.configs.split(";"):
        per = (instructions(1200, config) - instructions(200, config)) / 1000
        base = per if base is None else base
        print(f"{config:10} {per:18,.0f} {per / base - 1:+8.1%}", flush=True)


if __name__ == "__main__":
    main()
