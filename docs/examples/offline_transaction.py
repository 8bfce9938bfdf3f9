"""An OCPP 1.6 transaction that starts and ends while the CSMS is unreachable.

Run it: ``python docs/examples/offline_transaction.py``.  The station starts a
transaction, sends meter values and stops it, all offline, naming the
transaction by the provisional id ``start_transaction()`` returned at once.
When the CSMS is back, every message reaches it with the CSMS's own
``transactionId`` in that place.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import anyio

import ocpprpc

NOW = "2024-01-01T00:00:00Z"
handled: list[tuple[str, Any]] = []
csms = ocpprpc.Router()


@csms.on_any()
async def record(request: Any, ctx: ocpprpc.CallContext) -> Any:
    handled.append((ctx.action, request.get("transactionId")))
    if ctx.action == "StartTransaction":
        return {"transactionId": 1234, "idTagInfo": {"status": "Accepted"}}
    if ctx.action == "StopTransaction":
        return {"idTagInfo": {"status": "Accepted"}}
    return {"currentTime": NOW} if ctx.action == "Heartbeat" else {}


async def main(directory: Path) -> None:
    async with ocpprpc.serve() as probe:
        port = probe.port  # the CSMS is down: nothing listens on this port yet
    url = f"ws://127.0.0.1:{port}/ocpp"
    backoff = ocpprpc.Backoff(base=0.05, cap=0.2, retry_first_connect=True)
    store = ocpprpc.SQLiteOutbox(directory / "outbox.db")  # the pair survives a restart too
    async with ocpprpc.Station(url, "CP001", reconnect=backoff, outbox=store) as station:
        start = await station.start_transaction(
            {"connectorId": 1, "idTag": "TAG", "meterStart": 0, "timestamp": NOW}
        )
        print("provisional transactionId:", start.transaction_id)
        for value in range(3):
            meter = [{"timestamp": NOW, "sampledValue": [{"value": str(value)}]}]
            await station.submit(
                "MeterValues", {"connectorId": 1, "transactionId": start.transaction_id, "meterValue": meter}
            )
        stop = {"transactionId": start.transaction_id, "meterStop": 3, "timestamp": NOW}
        await station.submit("StopTransaction", stop)

        async with ocpprpc.serve(port=port, router=csms, replay_cache=1000):  # the CSMS is back
            answer = await start.answer()
            print("transactionId from the CSMS:", start.transaction_id, answer["idTagInfo"])
            await station.call("Heartbeat", {})  # leaves after everything queued before it
    print("CSMS handled (action, transactionId):", handled)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as directory:
        anyio.run(main, Path(directory))
