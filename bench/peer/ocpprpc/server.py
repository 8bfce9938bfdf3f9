"""ocpprpc as a benchmark peer: the CSMS side (see ../../README.md and the shared harness).

Handlers are plain functions (quick, never waiting: the session runs them inline
in its reader) returning plain dicts; with ``--strict 1`` every CALL and CALLRESULT is
validated against the official schemas (decoded into typed messages).
"""

from __future__ import annotations

import gc
import logging
import os
import sys

# This checkout's ocpprpc, whatever the harness interpreter has installed.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "src"))
# bench/layers.py: the CSMS layers --layers switches on (shared with bench_transport.py).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import argparse
from typing import Any

import anyio
from layers import layer_options
from peer_options import add_tcp_stream, cert_dir
from pyharness import emit, server_args  # type: ignore[import-not-found]

import ocpprpc
from ocpprpc._cli.scenario import now_iso


def build_router() -> ocpprpc.Router:
    router = ocpprpc.Router()

    @router.on("Heartbeat")
    def heartbeat(request: Any, ctx: ocpprpc.CallContext) -> dict[str, Any]:
        return {"currentTime": now_iso()}

    @router.on("MeterValues")
    def meter_values(request: Any, ctx: ocpprpc.CallContext) -> dict[str, Any]:
        return {}

    @router.on("BootNotification")
    def boot(request: Any, ctx: ocpprpc.CallContext) -> dict[str, Any]:
        return {"status": "Accepted", "currentTime": now_iso(), "interval": 300}

    return router


def exchange_log() -> list[ocpprpc.Middleware]:
    """An exchange log that formats and writes every line (JSON, to /dev/null), as in production."""
    handler = logging.FileHandler(os.devnull)
    handler.setFormatter(ocpprpc.JsonFormatter())
    logger = logging.getLogger("ocpprpc.exchange")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return [ocpprpc.ExchangeLog()]  # type: ignore[list-item]  # its context type is a protocol


def server_layers(args: argparse.Namespace) -> dict[str, Any]:
    """``--layers``, ``--metrics`` and ``--exchange-log`` as Server keywords (one middleware list)."""
    options = layer_options(args.layers)
    if args.metrics:
        options["metrics"] = True
    if args.exchange_log:
        options["middleware"] = [*options.get("middleware", ()), *exchange_log()]
    return options


async def main(args: argparse.Namespace) -> None:
    async with ocpprpc.serve(
        args.host,
        args.port,
        router=build_router(),
        protocols=["ocpp1.6"],
        validation=bool(args.strict),
        tcp_stream=args.tcp_stream,
        ssl_context=ocpprpc.server_ssl_context(
            os.path.join(cert_dir(), "cert.pem"), os.path.join(cert_dir(), "key.pem")
        )
        if args.tls
        else None,
        compression=bool(args.deflate),
        ws_codec=args.ws_codec,
        **server_layers(args),
    ):
        if args.gc in ("threshold", "survivors"):
            ocpprpc.tune_gc(freeze_survivors=args.gc == "survivors")
        if args.gc == "freeze":
            gc.freeze()
        if args.gc == "off":
            gc.disable()
        emit({"event": "ready", "port": args.port})
        while True:
            await anyio.sleep(20)
            if args.gc == "freeze":
                gc.freeze()


if __name__ == "__main__":
    arguments = server_args(extend=add_tcp_stream)
    anyio.run(main, arguments, backend=arguments.backend)
