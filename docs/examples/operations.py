"""Operations blocks, driven by hand: log formatters, redaction, the station registry.

Run it: ``python docs/examples/operations.py``.  It logs a few exchange lines as JSON and
as console text (payloads redacted first), then feeds a registry the messages of a 1.6
and a 2.0.1 station, keeps it in a SQLite file and reads it back after a "restart".
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

import anyio

from ocpprpc import (
    ConsoleFormatter,
    JsonFormatter,
    Redactor,
    SQLiteRegistryStore,
    StationRegistry,
    log_extra,
)

log = logging.getLogger("ocpprpc.example.exchange")


def logging_and_redaction() -> None:
    redact = Redactor()  # id tokens of every version keep their last 4 characters; secrets go whole
    authorize = {"idToken": {"idToken": "04A1B2C3D4E5", "type": "ISO14443"}}
    settings = {"key": "AuthorizationKey", "value": "00112233445566778899"}
    print("redacted:", redact(authorize), redact(settings))

    handler = logging.StreamHandler(sys.stdout)
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    for formatter in (JsonFormatter(static={"node": "csms-a"}), ConsoleFormatter(stream=sys.stdout)):
        handler.setFormatter(formatter)
        call = log_extra(identity="CP1", direction="IN", kind="CALL", action="Authorize", message_id="m1")
        log.info("IN CALL", extra=call | {"payload": redact(authorize)})
        answer = log_extra(
            identity="CP1", direction="OUT", kind="CALLRESULT", action="Authorize", latency_ms=1.7
        )
        log.info("OUT CALLRESULT", extra=answer | {"message_id": "m1"})
    log.removeHandler(handler)


async def registry(path: Path) -> None:
    async with StationRegistry(SQLiteRegistryStore(path), node="csms-a") as stations:
        # what a message middleware does for every CALL it sees: (identity, protocol, action, request, answer)
        await stations.connected("CP1", "ocpp1.6")
        boot = {"chargePointVendor": "Acme", "chargePointModel": "Fast-50", "firmwareVersion": "1.2"}
        await stations.observe_call("CP1", "ocpp1.6", "BootNotification", boot, {"status": "Accepted"})
        status = {"connectorId": 1, "status": "Faulted", "errorCode": "GroundFailure"}
        await stations.observe_call("CP1", "ocpp1.6", "StatusNotification", status, {})

        await stations.connected("CS2", "ocpp2.0.1")
        station = {"vendorName": "Volt", "model": "AC-22"}
        await stations.observe_call(
            "CS2",
            "ocpp2.0.1",
            "BootNotification",
            {"chargingStation": station, "reason": "PowerUp"},
            {"status": "Accepted"},
        )
        event = {
            "eventType": "Started",
            "transactionInfo": {"transactionId": "T-1"},
            "evse": {"id": 1, "connectorId": 1},
            "idToken": {"idToken": "04A1B2C3D4E5", "type": "ISO14443"},  # never kept
        }
        await stations.observe_call("CS2", "ocpp2.0.1", "TransactionEvent", event, {})

        for record in stations.find(status="Faulted"):
            print(
                "faulted:", record.identity, record.boot.vendor if record.boot else None, record.connectors[0]
            )
        for record in stations.find(in_transaction=True):
            print("charging:", record.identity, [t.transaction_id for t in record.transactions])
        await stations.disconnected("CP1")
        print("connected now:", [record.identity for record in stations.list(connected=True)])

    # a restart: the file is read back; CS2 was connected to this node, which holds no connection yet
    async with StationRegistry(SQLiteRegistryStore(path), node="csms-a") as stations:
        cs2 = stations.get("CS2")
        assert cs2 is not None and cs2.transactions[0].transaction_id == "T-1"
        print("after restart:", [(r.identity, r.protocol, r.connected) for r in stations.list()])


def main() -> None:
    logging_and_redaction()
    with tempfile.TemporaryDirectory() as folder:
        anyio.run(registry, Path(folder) / "stations.db")


if __name__ == "__main__":
    main()
