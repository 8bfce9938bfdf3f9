"""Transaction messages that survive a station restart: a SQLite outbox.

Run it: ``python docs/examples/durable_outbox.py``.  A first station queues a
transaction while its CSMS is down and stops (as if the process ended); a
second station, started on the same file, delivers it first and learns the
transactionId through ``on_delivered``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import anyio

import ocpprpc

NOW = "2024-01-01T00:00:00Z"
handled: list[str] = []
csms = ocpprpc.Router()


@csms.on_any()
async def record(request: Any, ctx: ocpprpc.CallContext) -> Any:
    handled.append(ctx.action)
    if ctx.action == "StartTransaction":
        return {"transactionId": 1234, "idTagInfo": {"status": "Accepted"}}
    if ctx.action == "StopTransaction":
        return {"idTagInfo": {"status": "Accepted"}}
    return {"currentTime": NOW} if ctx.action == "Heartbeat" else {}


async def on_delivered(delivery: ocpprpc.Delivered) -> None:
    # Awaited before the message is deleted from the store: persist what you need here.
    if delivery.action == "StartTransaction":
        transaction_id = delivery.answer["transactionId"]
        print("transactionId from the CSMS:", transaction_id, "restored:", delivery.restored)


async def main(directory: Path) -> None:
    async with ocpprpc.serve() as probe:
        port = probe.port  # the CSMS is down: nothing listens on this port yet
    url = f"ws://127.0.0.1:{port}/ocpp"
    backoff = ocpprpc.Backoff(base=0.05, cap=0.2, retry_first_connect=True)
    path = directory / "outbox.db"

    # A station whose CSMS is unreachable: each submit() returns once the message is on disk.
    async with ocpprpc.Station(url, "CP001", reconnect=backoff, outbox=ocpprpc.SQLiteOutbox(path)) as first:
        start = {"connectorId": 1, "idTag": "TAG", "meterStart": 0, "timestamp": NOW}
        await first.submit("StartTransaction", start)
        for value in range(3):
            meter = [{"timestamp": NOW, "sampledValue": [{"value": str(value)}]}]
            await first.submit("MeterValues", {"connectorId": 1, "transactionId": 1, "meterValue": meter})
        print("stored before the station stopped:", first.outbox_length)

    # A new process (here: a new Station) on the same file, and the CSMS is back.
    async with (
        ocpprpc.serve(port=port, router=csms, replay_cache=1000),
        ocpprpc.Station(
            url, "CP001", reconnect=backoff, outbox=ocpprpc.SQLiteOutbox(path), on_delivered=on_delivered
        ) as second,
    ):
        await second.call("Heartbeat", {})  # a new call leaves after the stored ones
    print("CSMS handled:", handled)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as directory:
        anyio.run(main, Path(directory))
