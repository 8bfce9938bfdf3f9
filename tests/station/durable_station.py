"""A station process with a SQLite outbox, killed and restarted by tests/station/test_durable.py.

Run as ``python durable_station.py URL DB BACKEND PROTOCOL MODE``:

* MODE ``generate``: store a transaction (start, 50 meter values, stop) in the
  outbox (the CSMS is unreachable meanwhile), print ``stored 52``, then
  deliver it;
* MODE ``provisional`` (1.6 only): the same, but the transaction is started
  with ``Station.start_transaction()`` while the CSMS is unreachable, so its
  5 meter values and its stop carry the provisional transactionId (printed as
  ``provisional <id>``) and the station rewrites them;
* MODE ``resume``: deliver what an earlier process left in the outbox.

Either way it prints ``delivered <action> <message id> <restored>
<transactionId sent> <provisional id>`` for every answer ``on_delivered``
receives, and exits 0 once everything it was given is delivered.  Only
``ocpprpc`` is imported: the process is what a station application would be.
"""

from __future__ import annotations

import sys
from typing import Any

import anyio

import ocpprpc

NOW = "2024-01-01T00:00:00Z"
METER_VALUES = 50
PROVISIONAL_METER_VALUES = 5


def transaction(protocol: str) -> list[tuple[str, dict[str, Any]]]:
    """The messages of one transaction, in order: start, 50 meter values, stop."""
    if protocol == "ocpp1.6":
        start = {"connectorId": 1, "idTag": "TAG", "meterStart": 0, "timestamp": NOW}
        values = [
            {
                "connectorId": 1,
                "transactionId": 1,
                "meterValue": [{"timestamp": NOW, "sampledValue": [{"value": str(n)}]}],
            }
            for n in range(METER_VALUES)
        ]
        stop = {"transactionId": 1, "meterStop": METER_VALUES, "timestamp": NOW}
        return [
            ("StartTransaction", start),
            *(("MeterValues", value) for value in values),
            ("StopTransaction", stop),
        ]

    def event(kind: str, seq: int, trigger: str, value: int | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "eventType": kind,
            "timestamp": NOW,
            "triggerReason": trigger,
            "seqNo": seq,
            "transactionInfo": {"transactionId": "TX1"},
        }
        if value is not None:
            payload["meterValue"] = [{"timestamp": NOW, "sampledValue": [{"value": value}]}]
        return payload

    return [
        ("TransactionEvent", event("Started", 0, "Authorized")),
        *(
            ("TransactionEvent", event("Updated", n + 1, "MeterValuePeriodic", n))
            for n in range(METER_VALUES)
        ),
        ("TransactionEvent", event("Ended", METER_VALUES + 1, "EVDeparted")),
    ]


def say(*words: object) -> None:
    """One line on stdout, at once: the test reads them while the process runs."""
    sys.stdout.write(" ".join(map(str, words)) + "\n")
    sys.stdout.flush()


async def main(url: str, db: str, protocol: str, mode: str) -> None:
    store = ocpprpc.SQLiteOutbox(db)
    delivered = 0
    expected = 0
    done = anyio.Event()

    def on_delivered(delivery: ocpprpc.Delivered) -> None:
        nonlocal delivered
        sent = delivery.payload.get("transactionId")
        say(
            "delivered",
            delivery.action,
            delivery.message_id,
            delivery.restored,
            sent,
            delivery.provisional_transaction_id,
        )
        delivered += 1
        if delivered == expected:
            done.set()

    messages = transaction(protocol)
    if mode == "generate":
        expected = len(messages)
    elif mode == "provisional":
        expected = PROVISIONAL_METER_VALUES + 2
    else:
        async with store:  # what an earlier process left, counted before anything is delivered
            expected = len(store)
        say("restored", expected)
    station = ocpprpc.Station(
        url,
        "CP1",
        protocols=[protocol],
        reconnect=ocpprpc.Backoff(base=0.02, cap=0.1, retry_first_connect=True),
        outbox=store,
        transaction_retry=ocpprpc.TransactionRetry(attempts=5, interval=0.05),
        on_delivered=on_delivered,
        call_timeout=5,
    )
    async with station:
        if mode == "generate":
            if len(store):
                raise SystemExit(f"{db} is not empty")
            for action, payload in messages:
                await station.submit(action, payload)
            say("stored", len(store))
        elif mode == "provisional":
            if len(store):
                raise SystemExit(f"{db} is not empty")
            start = await station.start_transaction(
                {"connectorId": 1, "idTag": "TAG", "meterStart": 0, "timestamp": NOW}
            )
            say("provisional", start.provisional_id)
            for n in range(PROVISIONAL_METER_VALUES):
                meter = [{"timestamp": NOW, "sampledValue": [{"value": str(n)}]}]
                values = {"connectorId": 1, "transactionId": start.transaction_id, "meterValue": meter}
                await station.submit("MeterValues", values)
            stop = {"transactionId": start.transaction_id, "meterStop": 5, "timestamp": NOW}
            await station.submit("StopTransaction", stop)
            say("stored", len(store))
        if expected:
            await done.wait()


if __name__ == "__main__":
    url, db, backend, protocol, mode = sys.argv[1:]
    anyio.run(main, url, db, protocol, mode, backend=backend)
