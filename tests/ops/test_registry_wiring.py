"""The station registry wired into a server: real stations, real sockets, a restart with SQLite."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import anyio
import pytest

import ocpprpc
from ocpprpc import CallContext, Router, Server, StationRegistry, v16
from ocpprpc._csms.station_services import default_node
from tests.csms.helpers import PROMPT, eventually, http_exchange, ws_url

pytestmark = pytest.mark.timeout(120)

NOW = "2026-12-07T09:00:00Z"


def csms_router(*, typed: bool = True) -> Router:
    """A CSMS that answers what stations of every version say, typed on 1.6 if *typed*."""
    router = Router()
    transaction_ids = iter(range(100, 10_000))

    if typed:

        @router.on(v16.BootNotificationRequest)
        async def boot_16(
            request: v16.BootNotificationRequest, ctx: CallContext
        ) -> v16.BootNotificationResponse:
            return v16.BootNotificationResponse(
                current_time=datetime(2026, 12, 7, 9, tzinfo=UTC),
                interval=300,
                status=v16.RegistrationStatus.ACCEPTED,
            )

    async def boot(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        return {"currentTime": NOW, "interval": 300, "status": "Accepted"}

    for protocol in ("ocpp2.0.1", "ocpp2.1") if typed else (None,):
        router.on("BootNotification", protocol=protocol)(boot)

    @router.on("StatusNotification")
    async def status(request: Any, ctx: CallContext) -> dict[str, Any]:
        return {}

    @router.on("Heartbeat")
    async def heartbeat(request: Any, ctx: CallContext) -> dict[str, Any]:
        return {"currentTime": NOW}

    @router.on("StartTransaction")
    async def start(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        return {"transactionId": next(transaction_ids), "idTagInfo": {"status": "Accepted"}}

    @router.on("StopTransaction")
    async def stop(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        return {}

    @router.on("TransactionEvent")
    async def transaction_event(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        return {}

    return router


@asynccontextmanager
async def station(server: Server, identity: str, protocol: str) -> AsyncIterator[ocpprpc.Session]:
    async with ocpprpc.connect(ws_url(server), identity, protocols=[protocol]) as session:
        await eventually(lambda: identity in server.clients)
        yield session


def is_connected(server: Server, identity: str) -> bool:
    record = None if server.registry is None else server.registry.get(identity)
    return record is not None and record.connected


def record_of(server: Server, identity: str) -> ocpprpc.StationRecord:
    assert server.registry is not None
    record = server.registry.get(identity)
    assert record is not None
    return record


async def test_nothing_on_the_message_path_by_default() -> None:
    server = Server()
    assert server.registry is None and server.command_buffer is None and server.session_states is None
    assert "middleware" not in server.session_options
    mine = ocpprpc.ExchangeLog()
    wired = Server(registry=True, middleware=[mine])
    assert wired.session_options["middleware"][1:] == (mine,)  # the observer outermost, the user's kept
    assert isinstance(wired.registry, StationRegistry) and wired.registry.node == default_node()
    assert Server(session_state=True).session_options.get("middleware", ()) == ()  # no messages needed
    assert Server(registry=False, session_state=False).registry is None


async def test_a_16_station_session_boot_status_transactions() -> None:
    buffer = ocpprpc.CommandBuffer()
    async with ocpprpc.serve(
        router=csms_router(), registry=True, validation=True, command_buffer=buffer
    ) as server:
        async with station(server, "CP16", "ocpp1.6") as session:
            answer = await session.call(
                v16.BootNotificationRequest(
                    charge_point_vendor="Acme", charge_point_model="Fast-50", firmware_version="1.2"
                )
            )
            assert answer.status is v16.RegistrationStatus.ACCEPTED
            assert buffer.is_ready("CP16")  # the typed answer read as Accepted
            await session.call(
                "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
            )
            started = await session.call(
                "StartTransaction",
                {"connectorId": 1, "idTag": "TAG-SECRET", "meterStart": 0, "timestamp": NOW},
            )
            await session.call(
                "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Charging"}
            )
            record = record_of(server, "CP16")
            assert record.boot is not None
            assert (record.boot.vendor, record.boot.model, record.boot.firmware, record.boot.status) == (
                "Acme",
                "Fast-50",
                "1.2",
                "Accepted",
            )
            assert [(c.connector_id, c.status) for c in record.connectors] == [(1, "Charging")]
            assert [t.transaction_id for t in record.transactions] == [str(started["transactionId"])]
            assert "TAG-SECRET" not in repr(record)  # id tokens are never kept
            await eventually(lambda: is_connected(server, "CP16"))
            record = record_of(server, "CP16")
            assert (record.protocol, record.node) == ("ocpp1.6", default_node())
            seen = record.last_seen
            await session.call(
                "StopTransaction",
                {"transactionId": started["transactionId"], "meterStop": 10, "timestamp": NOW},
            )
            await session.call("Heartbeat", {})
            record = record_of(server, "CP16")
            assert record.transactions == () and record.last_seen >= seen
            assert server.registry is not None
            assert [r.identity for r in server.registry.find(status="Charging", connected=True)] == ["CP16"]
        await eventually(lambda: not record_of(server, "CP16").connected)


@pytest.mark.parametrize("protocol", ["ocpp2.0.1", "ocpp2.1"])
async def test_a_2x_station_session_boot_status_transaction_events(protocol: str) -> None:
    async with (
        ocpprpc.serve(router=csms_router(), registry=True, validation=True) as server,
        station(server, "CP201", protocol) as session,
    ):
        await session.call(
            "BootNotification",
            {
                "reason": "PowerUp",
                "chargingStation": {"vendorName": "Acme", "model": "AC-22", "serialNumber": "SN-9"},
            },
        )
        await session.call(
            "StatusNotification",
            {"timestamp": NOW, "connectorStatus": "Occupied", "evseId": 1, "connectorId": 1},
        )
        event = {
            "eventType": "Started",
            "timestamp": NOW,
            "triggerReason": "Authorized",
            "seqNo": 0,
            "transactionInfo": {"transactionId": "TX-1"},
            "evse": {"id": 1, "connectorId": 1},
            "idToken": {"idToken": "TOKEN-SECRET", "type": "ISO14443"},
        }
        await session.call("TransactionEvent", event)
        record = record_of(server, "CP201")
        assert record.boot is not None and (record.boot.vendor, record.boot.serial) == ("Acme", "SN-9")
        assert [(c.evse_id, c.connector_id, c.status) for c in record.connectors] == [(1, 1, "Occupied")]
        (open_transaction,) = record.transactions
        assert (open_transaction.transaction_id, open_transaction.evse_id) == ("TX-1", 1)
        assert "TOKEN-SECRET" not in repr(record)
        await session.call("TransactionEvent", event | {"eventType": "Ended", "seqNo": 1})
        assert record_of(server, "CP201").transactions == ()
        await eventually(lambda: is_connected(server, "CP201"))
        assert record_of(server, "CP201").protocol == protocol


async def test_the_sqlite_registry_survives_a_server_restart(tmp_path: Path) -> None:
    path = tmp_path / "stations.db"
    registry = StationRegistry(ocpprpc.SQLiteRegistryStore(path), node="csms-a")
    async with ocpprpc.serve(router=csms_router(), registry=registry) as server:
        assert server.registry is registry
        async with station(server, "CP1", "ocpp2.0.1") as session:
            await session.call(
                "BootNotification",
                {"reason": "PowerUp", "chargingStation": {"vendorName": "Acme", "model": "AC-22"}},
            )
            await session.call(
                "TransactionEvent",
                {
                    "eventType": "Started",
                    "timestamp": NOW,
                    "triggerReason": "Authorized",
                    "seqNo": 0,
                    "transactionInfo": {"transactionId": "TX-7"},
                },
            )
            await eventually(lambda: is_connected(server, "CP1"))
            assert record_of(server, "CP1").node == "csms-a"
    # A new process: the file is all that is left.  It learns the station booted (Accepted),
    # so a command buffered for it goes out as soon as it is back, without a new boot.
    restarted = StationRegistry(ocpprpc.SQLiteRegistryStore(path), node="csms-a")
    buffer = ocpprpc.CommandBuffer()
    station_router = Router()

    @station_router.on("Reset")
    async def reset(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        return {"status": "Accepted"}

    async with ocpprpc.serve(router=csms_router(), registry=restarted, command_buffer=buffer) as server:
        record = record_of(server, "CP1")
        assert record.boot is not None and record.boot.status == "Accepted"
        assert [t.transaction_id for t in record.transactions] == ["TX-7"]
        assert not record.connected  # nobody is connected to a process that just started
        queued = await server.try_send_to_client(
            "CP1", "Reset", {"type": "Immediate"}, queue=True, wait=False
        )
        assert queued.command is not None
        async with ocpprpc.connect(ws_url(server), "CP1", protocols=["ocpp2.0.1"], router=station_router):
            with anyio.fail_after(PROMPT):
                assert (await queued.command.wait()).result == {"status": "Accepted"}
    assert not restarted.store.__class__.__name__.startswith("Memory")


async def test_a_reconnect_that_evicts_keeps_the_station_connected() -> None:
    async with ocpprpc.serve(router=csms_router(), registry=True) as server:
        ended: list[str] = []
        server.security_events.subscribe(
            lambda event: ended.append(event.identity or "") if event.kind == "station_disconnected" else None
        )
        async with (
            station(server, "CP1", "ocpp1.6") as first,
            ocpprpc.connect(ws_url(server), "CP1", protocols=["ocpp1.6"]) as second,
        ):
            await eventually(lambda: ended == ["CP1"])  # the old connection's end, after the new began
            # The station's side learns it in its own task, maybe a loop pass after the server's.
            await eventually(lambda: first.close_reason is not None)
            await second.call("Heartbeat", {})
            # Connection writes are made in order: once OTHER's is, CP1's would have been.
            async with station(server, "OTHER", "ocpp1.6"):
                await eventually(lambda: is_connected(server, "OTHER"))
            assert record_of(server, "CP1").connected
        await eventually(lambda: not record_of(server, "CP1").connected)


async def test_hostile_stations_cannot_grow_the_registry() -> None:
    registry = StationRegistry(max_connectors=4, max_stations=50)
    async with ocpprpc.serve(router=csms_router(typed=False), registry=registry) as server:
        async with station(server, "JUNK", "ocpp1.6") as session:
            # Validation is off: junk reaches the handler and the registry, which keeps what it can read.
            for junk in (
                {"connectorId": "one", "status": 5, "errorCode": ["x"]},
                {"connectorId": 1, "status": {"nested": ["deep"] * 100}},
                {"connectorId": None},
                {},
                {"connectorId": 2, "status": "Available", "errorCode": "NoError", "extra": "x" * 60_000},
            ):
                assert await session.call("StatusNotification", junk) == {}
            await session.call("BootNotification", {"chargePointVendor": 5, "chargePointModel": {"x": 1}})
            record = record_of(server, "JUNK")
            assert record.boot is not None and (record.boot.vendor, record.boot.model) == (None, None)
            assert [(c.connector_id, c.status) for c in record.connectors] == [(2, "Available")]
            # A flood of statuses for ever new connectors: bounded per station.
            for n in range(300):
                await session.call(
                    "StatusNotification", {"connectorId": n, "errorCode": "NoError", "status": "Faulted"}
                )
            assert len(record_of(server, "JUNK").connectors) == 4
        # Identities the handshake refuses never reach the registry.
        for identity in ("A" * 49, "B" * 20_000, "has%2Fslash"):
            reply = await http_exchange(
                server.port,
                f"GET /ocpp/{identity} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                "Sec-WebSocket-Protocol: ocpp1.6\r\n\r\n".encode(),
            )
            assert reply.startswith(b"HTTP/1.1 4"), reply[:40]
        assert [r.identity for r in registry.list()] == ["JUNK"]


async def test_a_refused_call_is_still_a_sign_of_life() -> None:
    async with (
        ocpprpc.serve(router=csms_router(typed=False), registry=True, require_boot=True) as server,
        station(server, "EARLY", "ocpp1.6") as session,
    ):
        with pytest.raises(ocpprpc.OCPPError, match="BootNotification first"):
            await session.call(
                "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
            )
        record = record_of(server, "EARLY")
        assert record.connectors == () and record.boot is None  # refused: nothing learnt from it


class BrokenStore(ocpprpc.MemoryRegistryStore):
    async def put(self, record: ocpprpc.StationRecord) -> None:
        raise OSError("disk full")


async def test_a_failing_store_costs_no_station_its_answers(caplog: pytest.LogCaptureFixture) -> None:
    registry = StationRegistry(BrokenStore())
    async with (
        ocpprpc.serve(router=csms_router(typed=False), registry=registry) as server,
        station(server, "CP1", "ocpp1.6") as session,
    ):
        assert await session.call("Heartbeat", {}) == {"currentTime": NOW}
        assert await session.call("Heartbeat", {}) == {"currentTime": NOW}
        await eventually(lambda: "recording 'CP1''s connection failed" in caplog.text)


async def test_events_the_server_did_not_raise_are_harmless() -> None:
    server = Server(registry=True, session_state=True, command_buffer=ocpprpc.CommandBuffer())
    hub = server.security_events
    hub.emit(ocpprpc.StationConnected(timestamp=0.0, identity="GHOST", protocol="ocpp1.6"))  # no session
    hub.emit(ocpprpc.StationDisconnected(timestamp=0.0, identity="GHOST"))
    hub.emit(ocpprpc.StationDisconnected(timestamp=0.0, identity="NEVER-CONNECTED"))
    hub.emit(ocpprpc.StationConnected(timestamp=0.0, identity=None))
    # Before the services run (an embedding application starts them late), connections are kept
    # to be written once they do.
    server._clients["EARLY"] = SimpleNamespace(state=None)  # type: ignore[assignment]
    hub.emit(ocpprpc.StationConnected(timestamp=0.0, identity="EARLY", protocol="ocpp2.1"))
    assert server.session_states is not None and server.session_states.get("GHOST") is None  # not ours
    assert "StationObserver" in repr(server.session_options["middleware"][0])
    async with anyio.create_task_group() as group:
        await group.start(server.run_services)
        await eventually(lambda: is_connected(server, "EARLY"))
        assert record_of(server, "EARLY").protocol == "ocpp2.1"
        assert server._clients["EARLY"].state == {}
        with pytest.raises(RuntimeError, match="already running"):
            await server.run_services()
        group.cancel_scope.cancel()
    await Server().run_services()  # nothing configured: returns at once


async def test_the_observer_ignores_a_session_without_identity() -> None:
    from ocpprpc._csms.station_services import StationObserver

    registry = StationRegistry()
    async with registry:
        observer = StationObserver(registry, None)

        class Context:
            direction, kind, action, identity, protocol = "in", "call", "Heartbeat", None, "ocpp1.6"
            payload: ClassVar[dict[str, Any]] = {}

        async def call_next(ctx: Any) -> Any:
            return {"currentTime": NOW}

        assert await observer(Context(), call_next) == {"currentTime": NOW}  # type: ignore[arg-type]
        assert len(registry) == 0


async def test_a_registry_that_cannot_open_fails_serve_clearly(tmp_path: Path) -> None:
    registry = StationRegistry(ocpprpc.SQLiteRegistryStore(tmp_path / "missing-folder" / "stations.db"))
    with pytest.raises(sqlite3.OperationalError, match="unable to open"):
        async with ocpprpc.serve(registry=registry):
            pass  # pragma: no cover (never reached)


async def test_servers_sharing_one_hub_keep_their_own_stations() -> None:
    hub = ocpprpc.SecurityEvents()
    buffer = ocpprpc.CommandBuffer()
    other = Server(registry=True, session_state=True, command_buffer=buffer, security_events=hub)
    async with (
        ocpprpc.serve(router=csms_router(typed=False), registry=True, security_events=hub) as server,
        station(server, "CP1", "ocpp1.6") as session,
    ):
        await session.call("Heartbeat", {})
        await eventually(lambda: is_connected(server, "CP1"))
        assert other.registry is not None and other.registry.get("CP1") is None
        assert other.session_states is not None and other.session_states.get("CP1") is None
        assert not buffer.is_ready("CP1")


@pytest.mark.parametrize("store", ["memory", "sqlite"])
async def test_plain_handlers_stay_in_the_reader_only_with_a_store_that_never_waits(
    store: str, tmp_path: Path
) -> None:
    from ocpprpc._ops.registry_sqlite import SQLiteRegistryStore

    tasks: list[str] = []
    router = Router()

    @router.on("Heartbeat")
    def heartbeat(request: Any, ctx: CallContext) -> dict[str, Any]:
        tasks.append(anyio.get_current_task().name or "")
        return {"currentTime": NOW}

    registry = (
        StationRegistry(SQLiteRegistryStore(tmp_path / "r.db")) if store == "sqlite" else StationRegistry()
    )
    async with (
        ocpprpc.serve(router=router, registry=registry) as server,
        ocpprpc.connect(ws_url(server), "CP1", protocols=["ocpp1.6"]) as station,
    ):
        await station.call("Heartbeat")
    [task] = tasks
    # The CSMS reads each station in its connection's task; a handler worker is named for its role.
    assert task.startswith("ocpprpc handlers ") == (store == "sqlite"), task
