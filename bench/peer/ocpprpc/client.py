"""ocpprpc as a benchmark peer: the charging-station side, driven by the shared harness."""

from __future__ import annotations

import os
import sys

# This checkout's ocpprpc, whatever the harness interpreter has installed.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "src"))
import argparse
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc
from peer_options import add_tcp_stream, cert_dir
from pyharness import action_and_payload, client_args, drive  # type: ignore[import-not-found]

import ocpprpc


async def main(args: argparse.Namespace) -> None:
    action, payload = action_and_payload(args.msg)
    _, boot_payload = action_and_payload("boot")
    done = anyio.Event()
    ssl_context = (
        ocpprpc.client_ssl_context(cafile=os.path.join(cert_dir(), "cert.pem")) if args.tls else None
    )
    async with anyio.create_task_group() as stations:

        async def hold(i: int, *, task_status: anyio.abc.TaskStatus[ocpprpc.Session]) -> None:
            # Each station lives in its own task: a session is entered and left in one task.
            async with ocpprpc.connect(
                f"{'wss' if args.tls else 'ws'}://{args.host}:{args.port}",
                f"CP-{i}",
                protocols=["ocpp1.6"],
                validation=bool(args.strict),
                max_outstanding_calls=args.inflight,
                tcp_stream=args.tcp_stream,
                ssl_context=ssl_context,
                compression=bool(args.deflate),
                ws_codec=args.ws_codec,
            ) as station:
                assert station.stream.compression == bool(args.deflate)  # type: ignore[attr-defined]
                task_status.started(station)
                await done.wait()

        async def connect(i: int) -> ocpprpc.Session:
            station: ocpprpc.Session = await stations.start(hold, i)
            return station

        def make_call(station: ocpprpc.Session) -> Callable[[], Awaitable[Any]]:
            return lambda: station.call(action, payload)

        async def boot(station: ocpprpc.Session) -> Any:
            return await station.call("BootNotification", boot_payload)

        await drive(args, connect=connect, make_call=make_call, boot=boot, concurrency="anyio")
        done.set()


if __name__ == "__main__":
    arguments = client_args(extend=add_tcp_stream)
    anyio.run(main, arguments, backend=arguments.backend)
