"""The station registry: real payloads of every version, bounds, hostile payloads, persistence."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ocpprpc
from ocpprpc import PayloadKind, protocol_types
from ocpprpc._ops.registry import decode_record, encode_record
from ocpprpc._typed.sample import sample_payload

REQUEST, RESPONSE = PayloadKind.REQUEST, PayloadKind.RESPONSE


def payload(protocol: str, action: str, kind: PayloadKind, **overrides: Any) -> dict[str, Any]:
    """A valid payload of *action* (the schemas' sample builder) with *overrides* on top."""
    message_type = protocol_types(protocol).payload_type(action, kind)
    assert message_type is not None
    return sample_payload(message_type, overrides)


def valid(protocol: str, action: str, kind: PayloadKind, body: dict[str, Any]) -> dict[str, Any]:
    """*body*, checked against the schema (the tests feed what a real station sends)."""
    message_type = protocol_types(protocol).payload_type(action, kind)
    assert message_type is not None
    ocpprpc.convert(body, message_type)
    return body


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_a_16_station_boot_status_and_transactions() -> None:
    clock = Clock()
    async with ocpprpc.StationRegistry(node="csms-a", clock=clock) as registry:
        record = await registry.connected("CP1", "ocpp1.6")
        assert (record.connected, record.node, record.protocol, record.first_seen) == (
            True,
            "csms-a",
            "ocpp1.6",
            1e6,
        )
        boot = payload(
            "ocpp1.6",
            "BootNotification",
            REQUEST,
            chargePointVendor="Acme",
            chargePointModel="Fast-50",
            firmwareVersion="1.2.3",
            chargePointSerialNumber="SN-1",
        )
        answer = payload("ocpp1.6", "BootNotification", RESPONSE, interval=300)
        clock.now += 1
        record = await registry.observe_call(
            "CP1", "ocpp1.6", "BootNotification", valid("ocpp1.6", "BootNotification", REQUEST, boot), answer
        )
        assert record.boot == ocpprpc.BootInfo("Acme", "Fast-50", "1.2.3", "SN-1", "Accepted", clock.now)
        assert record.last_seen == clock.now
        for connector, status, error in (
            (0, "Available", "NoError"),
            (2, "Faulted", "GroundFailure"),
            (1, "Preparing", "NoError"),
        ):
            body = payload(
                "ocpp1.6",
                "StatusNotification",
                REQUEST,
                connectorId=connector,
                status=status,
                errorCode=error,
            )
            await registry.observe_call(
                "CP1",
                "ocpp1.6",
                "StatusNotification",
                valid("ocpp1.6", "StatusNotification", REQUEST, body),
                {},
            )
        found = registry.get("CP1")
        assert found is not None
        record = found
        assert [(c.evse_id, c.connector_id, c.status, c.error_code) for c in record.connectors] == [
            (None, 0, "Available", "NoError"),
            (None, 1, "Preparing", "NoError"),
            (None, 2, "Faulted", "GroundFailure"),
        ]
        assert record.connector(2) == record.connectors[2]
        assert record.connector(2, evse_id=1) is None
        # a newer status replaces the connector's
        body = payload(
            "ocpp1.6", "StatusNotification", REQUEST, connectorId=1, status="Charging", errorCode="NoError"
        )
        await registry.observe_call("CP1", None, "StatusNotification", body, {})
        start = payload("ocpp1.6", "StartTransaction", REQUEST, connectorId=1, idTag="CARD0001", meterStart=0)
        started = payload("ocpp1.6", "StartTransaction", RESPONSE, transactionId=42)
        record = await registry.observe_call(
            "CP1",
            "ocpp1.6",
            "StartTransaction",
            valid("ocpp1.6", "StartTransaction", REQUEST, start),
            started,
        )
        assert record.transactions == (ocpprpc.OpenTransaction("42", None, 1, clock.now),)
        assert record.connector(1) is not None and record.connector(1).status == "Charging"  # type: ignore[union-attr]
        assert record.protocol == "ocpp1.6"
        assert "CARD0001" not in repr(record), "id tokens are never kept"
        assert registry.find(in_transaction=True) == [record]
        assert registry.find(
            status="Faulted", vendor="Acme", model="Fast-50", protocol="ocpp1.6", connected=True
        ) == [record]
        assert (
            registry.find(status="Unavailable")
            == registry.find(vendor="Other")
            == registry.find(model="X")
            == []
        )
        stop = payload("ocpp1.6", "StopTransaction", REQUEST, transactionId=42, meterStop=10)
        record = await registry.observe_call(
            "CP1", "ocpp1.6", "StopTransaction", valid("ocpp1.6", "StopTransaction", REQUEST, stop), {}
        )
        assert record.transactions == ()
        assert registry.find(in_transaction=False) == [record]
        # any other action is a sign of life only
        clock.now += 5
        record = await registry.observe_call(
            "CP1", "ocpp1.6", "Heartbeat", {}, {"currentTime": "2025-01-01T00:00:00Z"}
        )
        assert record.last_seen == clock.now and record.boot is not None
        assert registry.list(connected=True) == [record] and registry.list(connected=False) == []
        record = await registry.disconnected("CP1")  # type: ignore[assignment]
        assert record is not None and not record.connected and record.node == "csms-a"
        assert registry.list(connected=False) == [record]
        assert await registry.disconnected("unknown") is None


async def test_16_serial_falls_back_to_the_charge_box_serial() -> None:
    async with ocpprpc.StationRegistry() as registry:
        boot = payload("ocpp1.6", "BootNotification", REQUEST, chargeBoxSerialNumber="BOX-9")
        record = await registry.observe_call("CP1", "ocpp1.6", "BootNotification", boot, None)
        assert record.boot is not None and (record.boot.serial, record.boot.status) == ("BOX-9", None)


@pytest.mark.parametrize("protocol", ["ocpp2.0.1", "ocpp2.1"])
async def test_a_2x_station_boot_status_and_transaction_events(protocol: str) -> None:
    async with ocpprpc.StationRegistry() as registry:
        await registry.connected("CS1", protocol, node="n2")
        boot = payload(
            protocol,
            "BootNotification",
            REQUEST,
            chargingStation={
                "vendorName": "Acme",
                "model": "AC-22",
                "firmwareVersion": "4.0",
                "serialNumber": "S-2",
            },
        )
        answer = payload(protocol, "BootNotification", RESPONSE, status="Pending")
        record = await registry.observe_call(
            "CS1", protocol, "BootNotification", valid(protocol, "BootNotification", REQUEST, boot), answer
        )
        assert record.boot is not None
        assert (
            record.boot.vendor,
            record.boot.model,
            record.boot.firmware,
            record.boot.serial,
            record.boot.status,
        ) == (
            "Acme",
            "AC-22",
            "4.0",
            "S-2",
            "Pending",
        )
        assert record.node == "n2"
        for evse, connector, status in ((2, 1, "Faulted"), (1, 1, "Occupied"), (1, 2, "Available")):
            body = payload(
                protocol,
                "StatusNotification",
                REQUEST,
                evseId=evse,
                connectorId=connector,
                connectorStatus=status,
            )
            await registry.observe_call(
                "CS1",
                protocol,
                "StatusNotification",
                valid(protocol, "StatusNotification", REQUEST, body),
                {},
            )
        record = registry.get("CS1")  # type: ignore[assignment]
        assert [(c.evse_id, c.connector_id, c.status, c.error_code) for c in record.connectors] == [
            (1, 1, "Occupied", None),
            (1, 2, "Available", None),
            (2, 1, "Faulted", None),
        ]
        assert registry.find(status="Faulted") == [record]

        def event(event_type: str, transaction_id: str, **more: Any) -> dict[str, Any]:
            body = payload(
                protocol,
                "TransactionEvent",
                REQUEST,
                eventType=event_type,
                transactionInfo={"transactionId": transaction_id},
                idToken={"idToken": "04A1B2C3D4", "type": "ISO14443"},
                **more,
            )
            return valid(protocol, "TransactionEvent", REQUEST, body)

        await registry.observe_call(
            "CS1", protocol, "TransactionEvent", event("Started", "T-1", evse={"id": 1, "connectorId": 1}), {}
        )
        # a transaction first seen in an Updated (started offline, Started lost) opens too
        await registry.observe_call("CS1", protocol, "TransactionEvent", event("Updated", "T-2"), {})
        record = await registry.observe_call("CS1", protocol, "TransactionEvent", event("Updated", "T-1"), {})
        assert [(t.transaction_id, t.evse_id, t.connector_id) for t in record.transactions] == [
            ("T-1", 1, 1),
            ("T-2", None, None),
        ]
        assert "04A1B2C3D4" not in repr(record)
        record = await registry.observe_call("CS1", protocol, "TransactionEvent", event("Ended", "T-1"), {})
        assert [t.transaction_id for t in record.transactions] == ["T-2"]


async def test_typed_messages_are_read_by_their_wire_names() -> None:
    from ocpprpc import v16

    async with ocpprpc.StationRegistry() as registry:
        request = v16.BootNotificationRequest(charge_point_vendor="Acme", charge_point_model="M")
        response = ocpprpc.convert(
            payload("ocpp1.6", "BootNotification", RESPONSE), v16.BootNotificationResponse
        )
        record = await registry.observe_call("CP1", "ocpp1.6", "BootNotification", request, response)
        assert record.boot is not None and (record.boot.vendor, record.boot.status) == ("Acme", "Accepted")


async def test_the_registry_is_bounded_least_recently_seen_first(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    async with ocpprpc.StationRegistry(max_stations=3, clock=clock) as registry:
        for identity in ("A", "B", "C"):
            clock.now += 1
            await registry.connected(identity, "ocpp1.6")
        clock.now += 1
        await registry.observe_call("A", "ocpp1.6", "Heartbeat", {}, {})  # A is fresh again
        await registry.disconnected("C")
        with caplog.at_level(logging.DEBUG, "ocpprpc.registry"):
            await registry.connected("D", "ocpp1.6")  # B is the least recently seen
            await registry.connected("E", "ocpp1.6")  # then A
        assert sorted(r.identity for r in registry.list()) == ["C", "D", "E"]
        assert len(registry) == 3
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 2 and "forgetting B" in warnings[0].getMessage()
        assert sorted(r.identity for r in await registry.store.list()) == ["C", "D", "E"]


async def test_disconnected_stations_expire_connected_ones_never() -> None:
    clock = Clock()
    async with ocpprpc.StationRegistry(disconnected_ttl=60, max_stations=2, clock=clock) as registry:
        await registry.connected("gone", "ocpp1.6")
        await registry.disconnected("gone")
        await registry.connected("here", "ocpp1.6")
        clock.now += 61
        assert registry.get("gone") is None and "gone" not in registry
        assert registry.get("here") is not None and "here" in registry and 5 not in registry
        assert [r.identity for r in registry.list()] == ["here"]
        assert len(registry) == 2, "expired but not yet pruned"
        # a new station prunes the expired before evicting a live one
        await registry.connected("new", "ocpp1.6")
        assert sorted(r.identity for r in registry.list()) == ["here", "new"]
        assert await registry.store.get("gone") is None
        # an expired station that comes back starts a new record
        await registry.disconnected("new")
        clock.now += 61
        record = await registry.observe_call("new", "ocpp2.0.1", "Heartbeat", {}, {})
        assert record.first_seen == clock.now and not record.connected
        await registry.disconnected("new")
        clock.now += 61
        assert await registry.prune() == 1
        assert await registry.prune() == 0
    async with ocpprpc.StationRegistry(disconnected_ttl=None, clock=clock) as forever:
        await forever.connected("old", None)
        await forever.disconnected("old")
        clock.now += 10**9
        assert forever.get("old") is not None


async def test_per_station_bounds() -> None:
    async with ocpprpc.StationRegistry(max_connectors=2, max_transactions=2, max_text=5) as registry:
        for connector in (1, 2, 3):
            await registry.observe_call(
                "CP1",
                "ocpp1.6",
                "StatusNotification",
                {"connectorId": connector, "status": "Available", "errorCode": "NoError"},
            )
        # the third connector is refused; a known one is still updated
        record = await registry.observe_call(
            "CP1",
            "ocpp1.6",
            "StatusNotification",
            {"connectorId": 2, "status": "Unavailable", "errorCode": "NoError"},
        )
        assert [(c.connector_id, c.status) for c in record.connectors] == [(1, "Avail"), (2, "Unava")]
        for transaction_id in (1, 2, 3, 3):
            record = await registry.observe_call(
                "CP1", "ocpp1.6", "StartTransaction", {"connectorId": 1}, {"transactionId": transaction_id}
            )
        assert [t.transaction_id for t in record.transactions] == ["2", "3"]
        record = await registry.observe_call(
            "CP1", "ocpp1.6", "BootNotification", {"chargePointVendor": "x" * 10_000}, {}
        )
        assert record.boot is not None and record.boot.vendor == "xxxxx"


HOSTILE_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)
FIELDS = [
    "connectorId", "status", "errorCode", "evseId", "connectorStatus", "transactionId", "eventType",
    "transactionInfo", "evse", "chargingStation", "chargePointVendor", "chargePointSerialNumber",
    "chargeBoxSerialNumber", "vendorName", "id",
]  # fmt: skip
ACTIONS = [
    "BootNotification",
    "StatusNotification",
    "StartTransaction",
    "StopTransaction",
    "TransactionEvent",
    "Heartbeat",
]


@settings(max_examples=200, deadline=None)
@given(
    action=st.sampled_from(ACTIONS),
    request=HOSTILE_VALUES | st.dictionaries(st.sampled_from(FIELDS), HOSTILE_VALUES, max_size=5),
    response=HOSTILE_VALUES
    | st.dictionaries(st.sampled_from(["status", "transactionId"]), HOSTILE_VALUES, max_size=2),
    protocol=st.sampled_from(["ocpp1.6", "ocpp2.0.1", None]),
)
async def test_hostile_payloads_never_raise(
    action: str, request: Any, response: Any, protocol: str | None
) -> None:
    async with ocpprpc.StationRegistry() as registry:
        record = await registry.observe_call("CP1", protocol, action, request, response)
        assert record.identity == "CP1"
        assert decode_record(encode_record(record)) == record
        registry.find(status="Faulted", in_transaction=True)


async def test_payloads_that_say_too_little_change_nothing(caplog: pytest.LogCaptureFixture) -> None:
    async with ocpprpc.StationRegistry() as registry:
        base = await registry.connected("CP1", "ocpp2.0.1")
        with caplog.at_level(logging.DEBUG, "ocpprpc.registry"):
            for action, request, response in (
                ("StatusNotification", {"connectorId": 1, "connectorStatus": "Faulted"}, {}),  # no evseId
                ("StatusNotification", {"connectorId": "1", "status": "Faulted"}, {}),
                ("StatusNotification", {"connectorId": True, "status": "Faulted"}, {}),
                ("StartTransaction", {"connectorId": 1}, None),
                ("StartTransaction", {"connectorId": 1}, {"transactionId": "42"}),
                ("StopTransaction", {"transactionId": None}, {}),
                ("TransactionEvent", {"eventType": "Started"}, {}),
                ("TransactionEvent", {"eventType": "Paused", "transactionInfo": {"transactionId": "T"}}, {}),
                ("TransactionEvent", {"eventType": "Started", "transactionInfo": "T"}, {}),
                ("StatusNotification", ["not", "an", "object"], {}),
                ("StatusNotification", object(), {}),
            ):
                record = await registry.observe_call("CP1", None, action, request, response)
                assert (record.connectors, record.transactions, record.boot) == ((), (), None)
        assert record.protocol == base.protocol
        assert (
            sum(
                "ignored" in r.getMessage() or "sign of life" in r.getMessage() or "without" in r.getMessage()
                for r in caplog.records
            )
            == 11
        )
        # a boot whose fields have the wrong types keeps what it can read
        record = await registry.observe_call(
            "CP1", None, "BootNotification", {"chargingStation": {"vendorName": 5, "model": "M"}}, "Accepted"
        )
        assert record.boot == ocpprpc.BootInfo(None, "M", None, None, None, record.last_seen)
        record = await registry.observe_call(
            "CP1", None, "BootNotification", {"chargingStation": None}, {"status": 1}
        )
        assert record.boot == ocpprpc.BootInfo(at=record.last_seen)


async def test_forget_and_the_open_rules() -> None:
    registry = ocpprpc.StationRegistry()
    with pytest.raises(RuntimeError, match="not open"):
        await registry.connected("CP1", "ocpp1.6")
    with pytest.raises(RuntimeError, match="not open"):
        await registry.disconnected("CP1")
    with pytest.raises(RuntimeError, match="not open"):
        await registry.forget("CP1")
    assert registry.get("CP1") is None and registry.list() == []
    async with registry:
        await registry.open()  # idempotent
        await registry.connected("CP1", "ocpp1.6")
        assert await registry.forget("CP1") is True
        assert await registry.forget("CP1") is False
        assert await registry.store.get("CP1") is None
        assert repr(registry) == "<StationRegistry stations=0 store=<MemoryRegistryStore records=0>>"
    await registry.close()  # idempotent


def test_arguments_are_checked() -> None:
    for name in ("max_stations", "max_connectors", "max_transactions", "max_text"):
        with pytest.raises(ValueError, match=name):
            ocpprpc.StationRegistry(**{name: 0})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="disconnected_ttl"):
        ocpprpc.StationRegistry(disconnected_ttl=0)


async def test_a_memory_store_outlives_its_registry() -> None:
    store, clock = ocpprpc.MemoryRegistryStore(), Clock()
    async with ocpprpc.StationRegistry(store, node="a", clock=clock) as registry:
        await registry.connected("theirs", "ocpp1.6", node="b")
        clock.now += 1
        await registry.connected("mine", "ocpp1.6")
    async with ocpprpc.StationRegistry(store, node="a", max_stations=1, clock=clock) as registry:
        # "mine" was connected to this node, which just started: it is not connected any more;
        # the bound is kept by forgetting the least recently seen
        assert [(r.identity, r.connected) for r in registry.list()] == [("mine", False)]
    async with ocpprpc.StationRegistry(store, node="b", clock=clock) as registry:
        assert [(r.identity, r.connected) for r in registry.list()] == [("mine", False)]


async def test_sqlite_persists_records_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "stations.db"
    async with ocpprpc.StationRegistry(ocpprpc.SQLiteRegistryStore(path), node="a") as registry:
        await registry.connected("CP1", "ocpp1.6")
        boot = payload("ocpp1.6", "BootNotification", REQUEST, chargePointVendor="Acme", chargePointModel="M")
        await registry.observe_call("CP1", "ocpp1.6", "BootNotification", boot, {"status": "Accepted"})
        await registry.observe_call(
            "CP1", "ocpp1.6", "StartTransaction", {"connectorId": 1}, {"transactionId": 7}
        )
        await registry.connected("CS2", "ocpp2.0.1", node="b")
        await registry.connected("CS3", "ocpp2.1")
        await registry.forget("CS3")
        before = registry.get("CP1")
    store = ocpprpc.SQLiteRegistryStore(path)
    assert repr(store) == f"<SQLiteRegistryStore {str(path)!r}>"
    async with ocpprpc.StationRegistry(store, node="a") as registry:
        after = registry.get("CP1")
        assert after is not None and before is not None
        assert after == ocpprpc.StationRecord(**{**_fields(before), "connected": False})
        assert (
            after.boot is not None
            and after.boot.vendor == "Acme"
            and after.transactions[0].transaction_id == "7"
        )
        assert registry.get("CS2") is not None and registry.get("CS2").connected  # type: ignore[union-attr]
        assert registry.get("CS3") is None
        assert await store.get("CP1") == after
        assert await store.get("nobody") is None
        await store.delete("CS2")
        assert [r.identity for r in await store.list()] == ["CP1"]
        await store.open()  # idempotent
    await store.close()  # idempotent
    with pytest.raises(RuntimeError, match="not open"):
        await store.list()


def _fields(record: ocpprpc.StationRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in record.__dataclass_fields__}


async def test_sqlite_skips_a_row_that_does_not_decode(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "stations.db"
    async with ocpprpc.StationRegistry(ocpprpc.SQLiteRegistryStore(path)) as registry:
        await registry.connected("good", "ocpp1.6")
        await registry.connected("bad", "ocpp1.6")
    with sqlite3.connect(path) as db:
        db.execute("UPDATE stations SET record = '{\"identity\": 5}' WHERE identity = 'bad'")
    with caplog.at_level(logging.WARNING, "ocpprpc.registry"):
        async with ocpprpc.StationRegistry(ocpprpc.SQLiteRegistryStore(path)) as registry:
            assert [r.identity for r in registry.list()] == ["good"]
    assert any("'bad' does not decode" in r.getMessage() for r in caplog.records)


async def test_sqlite_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "stations.db"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version=99")
    with pytest.raises(RuntimeError, match="newer ocpprpc"):
        await ocpprpc.SQLiteRegistryStore(path).open()
