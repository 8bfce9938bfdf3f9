"""A station pipelining 100 CALLs into a CSMS with slow handlers: the CSMS reads only as fast as it handles.

Run it: ``python docs/examples/backpressure.py``.  It prints the most CALLs the
CSMS ever held queued (never more than ``max_queued_calls``) and that every
call was answered; the CSMS logs a warning the first time it stops reading.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio

import ocpprpc

most_queued = 0
csms = ocpprpc.Router()


@csms.on("DataTransfer")
async def slow(request: dict[str, Any], ctx: ocpprpc.CallContext) -> dict[str, Any]:
    global most_queued
    most_queued = max(most_queued, ctx.session.queued_calls)
    await anyio.sleep(0.002)  # a database that is falling behind
    return {"status": "Accepted", "data": request["data"]}


async def main() -> None:
    async with (
        ocpprpc.serve(
            router=csms,
            max_concurrent_handlers=2,  # handlers at work per station
            max_queued_calls=8,  # then the CSMS stops reading that station
            max_queued_bytes=64 * 1024,  # or once their text reaches 64 KiB
            inbound_budget=16 * 1024 * 1024,  # all stations' queued and running CALLs together
            send_timeout=30,  # a station that stopped reading: dropped after 30 s stuck
            keepalive=ocpprpc.Keepalive(interval=30, timeout=10),
        ) as server,
        # A station breaking OCPP-J's one-call-at-a-time rule, on purpose.
        ocpprpc.connect(f"ws://127.0.0.1:{server.port}/ocpp", "CP001", max_outstanding_calls=100) as station,
    ):
        answers: dict[int, str] = {}

        async def call(n: int) -> None:
            answer = await station.call("DataTransfer", {"vendorId": "example", "data": str(n)})
            answers[n] = answer["data"]

        async with anyio.create_task_group() as tg:
            for n in range(100):
                tg.start_soon(call, n)
    print("most CALLs queued at the CSMS:", most_queued)
    print("answered:", len(answers), "all correct:", all(answers[n] == str(n) for n in range(100)))


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    anyio.run(main)
