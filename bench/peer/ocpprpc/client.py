"""ocpprpc as a benchmark peer: the charging-station side, driven by the shared harness."""

from __future__ import annotations

import os
import sys

# This checkout's ocpprpc, whatever the harness interpreter has installed.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "src"))
import argparse
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from pyharness import action_and_payload, client_args, drive  # type: ignore[import-not-found]

import ocpprpc


async def main(args: argparse.Namespace) -> None:
    action, payload = action_and_payload(args.msg)
    _, boot_payload = action_and_payload("boot")
    async with contextlib.AsyncExitStack() as stack:

        async def connect(i: int) -> ocpprpc.Session:
            station: ocpprpc.Session = await stack.enter_async_context(
                ocpprpc.connect(
                    f"ws://{args.host}:{args.port}",
                    f"CP-{i}",
                    protocols=["ocpp1.6"],
                    validation=bool(args.strict),
                    max_outstanding_calls=args.inflight,
                )
            )
            return station

        def make_call(station: ocpprpc.Session) -> Callable[[], Awaitable[Any]]:
            return lambda: station.call(action, payload)

        async def close(station: ocpprpc.Session) -> None:
            return None  # the exit stack closes every station when the run ends

        async def boot(station: ocpprpc.Session) -> Any:
            return await station.call("BootNotification", boot_payload)

        await drive(args, connect=connect, make_call=make_call, close=close, boot=boot, concurrency="anyio")


if __name__ == "__main__":
    arguments = client_args()
    anyio.run(main, arguments, backend=arguments.backend)
