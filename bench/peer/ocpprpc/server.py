"""ocpprpc as a benchmark peer: the CSMS side (see ../../README.md and the shared harness).

Handlers are plain functions (quick, never waiting: the session runs them inline
in its reader) returning plain dicts; with ``--strict 1`` every CALL and CALLRESULT is
validated against the official schemas (decoded into typed messages).
"""

from __future__ import annotations

import os
import sys

# This checkout's ocpprpc, whatever the harness interpreter has installed.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "src"))
import argparse
from typing import Any

import anyio
from pyharness import emit, server_args  # type: ignore[import-not-found]

import ocpprpc
from ocpprpc._scenario import now_iso


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
    ):
        emit({"event": "ready", "port": args.port})
        await anyio.sleep_forever()


def add_tcp_stream(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tcp-stream",
        default="auto",
        choices=["auto", "asyncio", "anyio"],
        help="ocpprpc's tcp_stream option",
    )
    parser.add_argument("--tls", type=int, default=0, help="1: wss:// (certificate from ../make_cert.sh)")
    parser.add_argument("--deflate", type=int, default=0, help="1: permessage-deflate on both ends")


def cert_dir() -> str:
    """The folder holding the self-signed cert.pem/key.pem that the TLS variants share."""
    import subprocess

    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "make_cert.sh")
    return subprocess.run([script], check=True, capture_output=True, text=True).stdout.strip()


if __name__ == "__main__":
    arguments = server_args(extend=add_tcp_stream)
    anyio.run(main, arguments, backend=arguments.backend)
