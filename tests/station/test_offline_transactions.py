"""OCPP 1.6 transactions started offline: provisional transaction ids, rewritten before they leave."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

import ocpprpc
from ocpprpc import (
    Backoff,
    CallDropped,
    Delivered,
    MemoryOutbox,
    MessageDropped,
    OCPPError,
    OutboxStore,
    ProvisionalTransaction,
    SQLiteOutbox,
    Station,
    TransactionNotStarted,
    TransactionRetry,
    v16,
)
from tests.faults.proxy import fault_proxy
from tests.station.helpers import NOW, EventLog, Recorder

pytestmark = pytest.mark.timeout(40)

FAST = Backoff(base=0.02, cap=0.05, retry_first_connect=True)
START = {"connectorId": 1, "idTag": "TAG", "meterStart": 0, "timestamp": NOW}
REAL_ID = 4242


def meter_values(transaction_id: int, n: int) -> dict[str, Any]:
    return {
        "connectorId": 1,
        "transactionId": transaction_id,
        "meterValue": [{"timestamp": NOW, "sampledValue": [{"value": str(n)}]}],
    }


def stop(transaction_id: int) -> dict[str, Any]:
    return {"transactionId": transaction_id, "meterStop": 5, "timestamp": NOW}


STORES: dict[str, Callable[[Path], OutboxStore | None]] = {
    "no-store": lambda path: None,
    "memory": lambda path: MemoryOutbox(),
    "sqlite": lambda path: SQLiteOutbox(path / "outbox.db"),
}


@pytest.mark.parametrize("kind", sorted(STORES))
async def test_a_transaction_started_offline_reaches_the_csms_with_the_real_transaction_id(
    kind: str, tmp_path: Path
) -> None:
    rec = Recorder()
    rec.transaction_id = REAL_ID
    store = STORES[kind](tmp_path)
    delivered: list[Delivered] = []
    async with (
        ocpprpc.serve(router=rec.router, replay_cache=100) as server,
        fault_proxy(server.port) as proxy,
    ):
        proxy.refuse = True  # the CSMS is unreachable while the transaction runs
        async with (
            Station(proxy.url, "CP1", reconnect=FAST, outbox=store, on_delivered=delivered.append) as station,
            anyio.create_task_group() as tg,
        ):
            start = await station.start_transaction(START)
            provisional = start.provisional_id
            assert provisional < 0 and start.transaction_id == provisional and not start.confirmed
            later = [*(("MeterValues", meter_values(provisional, n)) for n in range(5))]
            later.append(("StopTransaction", stop(provisional)))
            for action, payload in later:
                if store is None:
                    # Without a store every call waits for its answer: one task each, in order.
                    tg.start_soon(station.call, action, payload)
                    await anyio.wait_all_tasks_blocked()
                else:
                    await station.submit(action, payload)
            assert station.outbox_length == 7
            proxy.refuse = False
            answer = await start.answer()
            assert answer["transactionId"] == REAL_ID
            assert start.confirmed and start.transaction_id == REAL_ID
            await rec.wait_for(7)
        # Answered: the StopTransaction ended it, the station forgot the provisional id.
        assert station.transaction_id(provisional) is None

    assert rec.actions() == ["StartTransaction", *["MeterValues"] * 5, "StopTransaction"]
    assert [payload["transactionId"] for _, _, payload in rec.handled[1:]] == [REAL_ID] * 6
    values = [payload["meterValue"][0]["sampledValue"][0]["value"] for _, _, payload in rec.handled[1:6]]
    assert values == ["0", "1", "2", "3", "4"]
    assert len({mid for _, mid, _ in rec.handled}) == 7  # exactly once each
    if store is not None:
        # on_delivered sees what was sent (the real id) and which provisional id it stood for.
        assert [d.provisional_transaction_id for d in delivered] == [provisional] * 7
        assert delivered[6].payload["transactionId"] == REAL_ID
        async with store:
            assert await store.records() == [] and await store.transactions() == []


async def test_typed_requests_with_validation_are_rewritten_too() -> None:
    rec = Recorder()
    rec.transaction_id = REAL_ID
    when = datetime(2024, 1, 1, tzinfo=UTC)
    async with ocpprpc.serve(router=rec.router, validation=True) as server:
        url = f"ws://127.0.0.1:{server.port}/ocpp"
        async with Station(url, "CP1", outbox=MemoryOutbox(), validation=True) as station:
            start = await station.start_transaction(
                v16.StartTransactionRequest(connector_id=1, id_tag="T", meter_start=0, timestamp=when)
            )
            sampled = [v16.MeterValue(timestamp=when, sampled_value=[v16.SampledValue(value="1")])]
            meter = v16.MeterValuesRequest(
                connector_id=1, transaction_id=start.transaction_id, meter_value=sampled
            )
            assert start.transaction_id < 0  # a negative id is a valid 1.6 integer
            values, answer = await station.call(meter), await start.answer()
            assert isinstance(values, v16.MeterValuesResponse)
            assert isinstance(answer, v16.StartTransactionResponse) and answer.transaction_id == REAL_ID
            ended = await station.call(
                v16.StopTransactionRequest(transaction_id=start.provisional_id, meter_stop=1, timestamp=when)
            )
            assert isinstance(ended, v16.StopTransactionResponse)
    assert [p.get("transactionId") for _, _, p in rec.handled] == [None, REAL_ID, REAL_ID]


async def test_a_start_answered_not_accepted_still_gives_its_transaction_id() -> None:
    rec = Recorder()
    rec.transaction_id, rec.id_tag_status = 7, "Invalid"
    async with ocpprpc.serve(router=rec.router) as server:
        url = f"ws://127.0.0.1:{server.port}/ocpp"
        async with Station(url, "CP1") as station:
            start = await station.start_transaction(START)
            answer = await start.answer()
            assert answer["idTagInfo"]["status"] == "Invalid"
            # The transaction exists at the CSMS: the station stops it, under the CSMS's id,
            # even when the application still uses the provisional id after the answer.
            assert station.transaction_id(start.provisional_id) == 7
            await station.call("MeterValues", meter_values(start.provisional_id, 0))
            await station.call("StopTransaction", stop(start.provisional_id))
            assert station.transaction_id(start.provisional_id) is None
    assert [p.get("transactionId") for _, _, p in rec.handled] == [None, 7, 7]


async def test_a_stop_with_the_real_id_forgets_the_provisional_one_too(tmp_path: Path) -> None:
    rec = Recorder()
    rec.transaction_id = REAL_ID
    store = SQLiteOutbox(tmp_path / "outbox.db")
    async with ocpprpc.serve(router=rec.router) as server:
        url = f"ws://127.0.0.1:{server.port}/ocpp"
        async with Station(url, "CP1", outbox=store) as station:
            start = await station.start_transaction(START)
            await start.answer()
            async with SQLiteOutbox(tmp_path / "outbox.db") as peek:
                assert await peek.transactions() == [
                    ProvisionalTransaction(start.provisional_id, start.message_id, REAL_ID)
                ]
            await station.call("StopTransaction", stop(start.transaction_id))
            assert station.transaction_id(start.provisional_id) is None
    async with store:
        assert await store.transactions() == []


@pytest.mark.parametrize("kind", ["no-store", "memory"])
async def test_messages_of_a_start_that_was_given_up_fail_and_never_reach_the_csms(
    kind: str, tmp_path: Path
) -> None:
    router = ocpprpc.Router()
    handled: list[str] = []

    @router.on_any()
    async def refuse_starts(request: Any, ctx: ocpprpc.CallContext) -> Any:
        handled.append(ctx.action)
        raise OCPPError(ocpprpc.ErrorCode.INTERNAL_ERROR, "no transactions today")

    store = STORES[kind](tmp_path)
    log = EventLog()
    async with ocpprpc.serve(router=router) as server:
        url = f"ws://127.0.0.1:{server.port}/ocpp"
        async with (
            Station(
                url,
                "CP1",
                outbox=store,
                on_event=log,
                transaction_retry=TransactionRetry(attempts=1, interval=0),
            ) as station,
            anyio.create_task_group() as tg,
        ):
            outcomes: list[BaseException] = []

            async def call(action: str, payload: dict[str, Any]) -> None:
                with pytest.raises(Exception) as info:
                    await station.call(action, payload)
                outcomes.append(info.value)

            start = await station.start_transaction(START)
            tg.start_soon(call, "MeterValues", meter_values(start.provisional_id, 0))
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(call, "StopTransaction", stop(start.provisional_id))
            with pytest.raises(OCPPError, match="no transactions today"):
                await start.answer()
        assert station.transaction_id(start.provisional_id) is None
    assert handled == ["StartTransaction"]  # nothing went out with a made-up id
    assert all(isinstance(error, TransactionNotStarted) for error in outcomes) and len(outcomes) == 2
    assert "no transactions today" in str(outcomes[0])
    dropped = log.of(CallDropped) if store is None else log.of(MessageDropped)[1:]
    assert [event.action for event in dropped] == ["MeterValues", "StopTransaction"]
    if store is not None:
        async with store:
            assert await store.records() == [] and await store.transactions() == []


async def test_start_transaction_is_for_ocpp_1_6_only() -> None:
    async with Station("ws://127.0.0.1:9/ocpp", "CP1", protocols=["ocpp2.0.1"], reconnect=FAST) as station:
        with pytest.raises(ValueError, match=r"2\.x TransactionEvent"):
            await station.start_transaction(START)
    async with Station("ws://127.0.0.1:9/ocpp", "CP1", reconnect=FAST) as station:
        with pytest.raises(ValueError, match="not a StartTransaction"):
            await station.start_transaction(v16.HeartbeatRequest())


# -- the stores ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_stores_keep_provisional_ids_never_reused_and_across_reopening(
    kind: str, tmp_path: Path
) -> None:
    memory = MemoryOutbox()

    def make() -> OutboxStore:
        return memory if kind == "memory" else SQLiteOutbox(tmp_path / "outbox.db")

    async with make() as store:
        first = await store.add_transaction("start-1")
        second = await store.add_transaction("start-2")
        assert first == -1 and second == -2
        await store.set_transaction_id(first, 99)
        await store.remove_transaction(second)
        await store.remove_transaction(-12345)  # unknown: ignored
    async with make() as store:
        assert await store.transactions() == [ProvisionalTransaction(-1, "start-1", 99)]
        assert await store.add_transaction("start-3") == -3  # -2 is never handed out again


async def test_a_version_1_outbox_file_gains_the_transactions_table(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE outbox (seq INTEGER PRIMARY KEY, message_id TEXT NOT NULL UNIQUE,"
        " action TEXT NOT NULL, payload TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
        " next_attempt_at REAL NOT NULL DEFAULT 0, created_at REAL NOT NULL)"
    )
    db.execute("INSERT INTO outbox VALUES (1, 'm1', 'StartTransaction', '{}', 0, 0, 1.0)")
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()
    async with SQLiteOutbox(path) as store:
        assert [r.message_id for r in await store.records()] == ["m1"]
        assert await store.transactions() == []
        assert await store.add_transaction("m1") == -1
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone() == (2,)


async def test_a_store_without_provisional_ids_refuses_start_transaction_clearly() -> None:
    class OldStore(MemoryOutbox):
        add_transaction = OutboxStore.add_transaction  # as a store written before them

    async with ocpprpc.serve(router=Recorder().router) as server:
        url = f"ws://127.0.0.1:{server.port}/ocpp"
        async with Station(url, "CP1", outbox=OldStore()) as station:
            with pytest.raises(NotImplementedError, match="provisional transaction ids"):
                await station.start_transaction(START)
            assert station.outbox_length == 0


async def test_a_start_answered_without_a_transaction_id_fails_the_messages_naming_it() -> None:
    router = ocpprpc.Router()

    @router.on("StartTransaction")
    def no_id(request: Any, ctx: ocpprpc.CallContext) -> Any:
        return {"idTagInfo": {"status": "Accepted"}}  # a broken CSMS (validation is off)

    async with ocpprpc.serve(router=router) as server:
        url = f"ws://127.0.0.1:{server.port}/ocpp"
        async with Station(url, "CP1") as station:
            start = await station.start_transaction(START)
            await start.answer()
            assert not start.confirmed and station.transaction_id(start.provisional_id) is None
            with pytest.raises(TransactionNotStarted, match="without a transactionId"):
                await station.call("MeterValues", meter_values(start.provisional_id, 0))


async def test_a_start_that_does_not_fit_leaves_no_provisional_id_behind() -> None:
    store = MemoryOutbox(max_messages=1)
    async with ocpprpc.serve() as probe:
        port = probe.port  # nothing listens: everything stays queued
    async with Station(f"ws://127.0.0.1:{port}/ocpp", "CP1", reconnect=FAST, outbox=store) as station:
        await station.submit("StopTransaction", stop(1))
        with pytest.raises(ocpprpc.OutboxFull):
            await station.start_transaction(START)
        assert await store.transactions() == []
        assert station.outbox_length == 1
