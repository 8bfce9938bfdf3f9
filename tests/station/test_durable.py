"""The durable outbox: the stores on their own, a station using them, and a killed station process."""

from __future__ import annotations

import signal
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
from anyio.streams.text import TextReceiveStream

import ocpprpc
from ocpprpc import (
    Backoff,
    CallDropped,
    ConnectionLost,
    Delivered,
    MemoryOutbox,
    MessageDropped,
    OCPPError,
    OutboxFull,
    OutboxStore,
    SQLiteOutbox,
    Station,
    TransactionRetry,
    is_transaction_message,
)
from tests.faults.proxy import fault_proxy
from tests.station.helpers import NOW, EventLog, Recorder

pytestmark = pytest.mark.timeout(40)

FAST = Backoff(base=0.02, cap=0.05, retry_first_connect=True)
START = {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": NOW}
STOP = {"transactionId": 1, "meterStop": 5, "timestamp": NOW}
SCRIPT = Path(__file__).with_name("durable_station.py")


def meter_values(n: int) -> dict[str, Any]:
    return {
        "connectorId": 1,
        "transactionId": 1,
        "meterValue": [{"timestamp": NOW, "sampledValue": [{"value": str(n)}]}],
    }


StoreFactory = Callable[[Path], OutboxStore]
STORES: dict[str, StoreFactory] = {
    "memory": lambda path: MemoryOutbox(),
    "sqlite": lambda path: SQLiteOutbox(path / "outbox.db"),
}


@pytest.fixture(params=sorted(STORES))
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], OutboxStore]:
    """A factory of stores on one backing place: for SQLite a fresh object on the same file."""
    factory = STORES[request.param]
    memory: list[OutboxStore] = []

    def make() -> OutboxStore:
        if request.param == "memory":
            # The memory store's records live in the object: "reopening" is reusing it.
            if not memory:
                memory.append(factory(tmp_path))
            return memory[0]
        return factory(tmp_path)

    return make


# -- the stores -------------------------------------------------------------------------------


async def test_store_keeps_the_order_of_adds_across_removes_and_reopens(
    make_store: Callable[[], OutboxStore],
) -> None:
    async with make_store() as store:
        for n in range(5):
            await store.add(f"id-{n}", "MeterValues", f'{{"n":{n}}}')
        await store.remove("id-1")
        await store.remove("no-such-id")  # ignored
        assert [r.message_id for r in await store.records()] == ["id-0", "id-2", "id-3", "id-4"]
        assert len(store) == 4
    async with make_store() as store:
        records = await store.records()
        assert [r.message_id for r in records] == ["id-0", "id-2", "id-3", "id-4"]
        assert records[0].decoded_payload() == {"n": 0} and records[0].action == "MeterValues"
        assert records[0].created_at > 0
        # New messages go after the ones stored by the earlier opening.
        added = await store.add("id-5", "StopTransaction", "{}")
        assert added.seq > records[-1].seq
        assert [r.message_id for r in await store.records()][-1] == "id-5"


async def test_store_persists_attempts_and_next_attempt_time(make_store: Callable[[], OutboxStore]) -> None:
    async with make_store() as store:
        record = await store.add("a", "StartTransaction", "{}")
        record.attempts = 2
        record.next_attempt_at = 1234.5
        # The store changes only on update(): what the station holds is its own copy.
        assert (await store.records())[0].attempts == 0
        await store.update(record)
    async with make_store() as store:
        (stored,) = await store.records()
        assert (stored.attempts, stored.next_attempt_at) == (2, 1234.5)


async def test_store_refuses_a_duplicate_id_and_beyond_its_limit(tmp_path: Path) -> None:
    for store in (MemoryOutbox(max_messages=2), SQLiteOutbox(tmp_path / "small.db", max_messages=2)):
        async with store:
            await store.add("a", "StartTransaction", "{}")
            with pytest.raises(ValueError, match="stored already"):
                await store.add("a", "StartTransaction", "{}")
            await store.add("b", "StopTransaction", "{}")
            with pytest.raises(OutboxFull) as info:
                await store.add("c", "StopTransaction", "{}")
            assert info.value.limit == 2 and not info.value.dropped
            assert len(store) == 2
    with pytest.raises(ValueError):
        MemoryOutbox(max_messages=0)
    with pytest.raises(ValueError):
        SQLiteOutbox(tmp_path / "x.db", synchronous="OFF")  # type: ignore[arg-type]


async def test_sqlite_store_writes_off_the_event_loop_and_keeps_concurrent_adds_in_order(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    async with SQLiteOutbox(path) as store:
        # Another process (here: another connection) holds the write lock; our
        # writes wait for it in worker threads while the event loop keeps running.
        blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        blocker.execute("BEGIN IMMEDIATE")
        started = anyio.Event()
        called: list[str] = []
        finished: list[str] = []

        async def add(n: int) -> None:
            started.set()
            # trio runs new tasks in no fixed order: the order that counts is that of the calls.
            called.append(f"id-{n}")
            await store.add(f"id-{n}", "MeterValues", "{}")
            finished.append(f"id-{n}")

        async with anyio.create_task_group() as tg:
            for n in range(20):
                tg.start_soon(add, n)
            await started.wait()
            ticks = 0
            with anyio.move_on_after(0.3):
                while True:
                    await anyio.sleep(0.01)
                    ticks += 1
            assert finished == [] and ticks >= 10  # the loop ran; nothing got through the lock
            blocker.execute("COMMIT")
            blocker.close()
        assert len(finished) == 20
        assert [r.message_id for r in await store.records()] == called
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_sqlite_store_used_closed_or_from_a_newer_schema_fails_clearly(tmp_path: Path) -> None:
    store = SQLiteOutbox(tmp_path / "outbox.db")
    with pytest.raises(RuntimeError, match="not open"):
        await store.add("a", "StartTransaction", "{}")
    async with store:
        pass
    await store.close()  # closing twice is fine
    db = sqlite3.connect(tmp_path / "outbox.db")
    db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(RuntimeError, match="newer"):
        async with SQLiteOutbox(tmp_path / "outbox.db"):
            pass


def test_transaction_messages_are_the_durable_ones_by_default() -> None:
    assert is_transaction_message("StartTransaction", START)
    assert is_transaction_message("StopTransaction", STOP)
    assert is_transaction_message("MeterValues", meter_values(1))
    assert is_transaction_message("TransactionEvent", {"eventType": "Started"})
    assert not is_transaction_message("MeterValues", {"connectorId": 1, "meterValue": []})
    assert not is_transaction_message("Heartbeat", {})
    assert not is_transaction_message("StatusNotification", {"connectorId": 1})


def test_transaction_retry_waits_longer_after_each_failure() -> None:
    policy = TransactionRetry(attempts=3, interval=10)
    assert [policy.delay(n) for n in (1, 2, 3)] == [10, 20, 30]
    with pytest.raises(ValueError):
        TransactionRetry(attempts=0)
    with pytest.raises(ValueError):
        TransactionRetry(interval=-1)


# -- a station with a store ----------------------------------------------------------------------


async def test_stored_messages_outlive_the_station_and_go_first_on_the_next_start(
    make_store: Callable[[], OutboxStore],
) -> None:
    rec = Recorder()
    async with ocpprpc.serve(router=rec.router) as probe:
        port = probe.port  # nothing listens here now: the CSMS is down
    url = f"ws://127.0.0.1:{port}/ocpp"
    log = EventLog()
    async with Station(url, "CP1", reconnect=FAST, outbox=make_store(), on_event=log) as station:
        ids = [await station.submit("StartTransaction", START)]
        ids += [await station.submit("MeterValues", meter_values(n)) for n in range(5)]
        ids.append(await station.submit("StopTransaction", STOP))
        assert station.outbox_length == 7
        with pytest.raises(ValueError, match="durable rule"):
            await station.submit("Heartbeat", {})
    assert not log.of(CallDropped)  # kept, not dropped

    delivered: list[Delivered] = []
    async with (
        make_store() as store,
        ocpprpc.serve(port=port, router=rec.router),
    ):
        assert [r.message_id for r in await store.records()] == ids
        await store.close()
        async with Station(
            url, "CP1", reconnect=FAST, outbox=store, on_delivered=delivered.append
        ) as station:
            # A new call waits behind what the earlier station stored.
            assert await station.call("Heartbeat", {})
        assert [mid for _, mid, _ in rec.handled] == [*ids, rec.handled[-1][1]]
        assert rec.actions() == ["StartTransaction", *["MeterValues"] * 5, "StopTransaction", "Heartbeat"]
        assert [d.message_id for d in delivered] == ids and all(d.restored for d in delivered)
        assert delivered[0].answer == {"transactionId": 1, "idTagInfo": {"status": "Accepted"}}
        assert delivered[1].payload == meter_values(0)
        async with store:
            assert await store.records() == []


async def test_a_typed_request_is_stored_in_wire_form_and_answered_typed(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from ocpprpc import v16

    rec = Recorder()
    store = SQLiteOutbox(tmp_path / "outbox.db")
    delivered: list[Delivered] = []

    request = v16.StartTransactionRequest(
        connector_id=1, id_tag="T", meter_start=0, timestamp=datetime(2024, 1, 1, tzinfo=UTC)
    )
    async with ocpprpc.serve(router=rec.router) as server:
        url = f"ws://127.0.0.1:{server.port}/ocpp"
        async with Station(
            url, "CP1", outbox=store, validation=True, on_delivered=delivered.append
        ) as station:
            answer = await station.call(request)
    assert isinstance(answer, v16.StartTransactionResponse) and answer.transaction_id == 1
    assert rec.handled[0][2]["connectorId"] == 1  # the CSMS got the wire names
    # Picked by the default (dict-based) rule, stored and handed over as JSON values.
    (delivery,) = delivered
    assert delivery.payload == {
        "connectorId": 1,
        "idTag": "T",
        "meterStart": 0,
        "timestamp": "2024-01-01T00:00:00Z",
    }
    assert delivery.answer is answer


async def test_a_callerror_is_retried_after_the_interval_under_the_same_id(tmp_path: Path) -> None:
    router = ocpprpc.Router()
    seen: list[tuple[str, float]] = []

    @router.on("StartTransaction")
    async def flaky(request: Any, ctx: ocpprpc.CallContext) -> Any:
        seen.append((ctx.message_id, anyio.current_time()))
        if len(seen) < 3:
            raise OCPPError(ocpprpc.ErrorCode.INTERNAL_ERROR, "database busy")
        return {"transactionId": 7, "idTagInfo": {"status": "Accepted"}}

    store = SQLiteOutbox(tmp_path / "outbox.db")
    delivered: list[Delivered] = []

    async def on_delivered(delivery: Delivered) -> None:  # awaited: may do I/O
        await anyio.lowlevel.checkpoint()
        delivered.append(delivery)

    async with ocpprpc.serve(router=router) as server:
        url = f"ws://127.0.0.1:{server.port}/ocpp"
        retry = TransactionRetry(attempts=3, interval=0.1)
        async with Station(
            url, "CP1", outbox=store, transaction_retry=retry, on_delivered=on_delivered
        ) as station:
            answer = await station.call("StartTransaction", START, message_id="start-1")
    assert answer["transactionId"] == 7
    assert [mid for mid, _ in seen] == ["start-1"] * 3
    # interval * failures: 0.1 s after the first failure, 0.2 s after the second.
    assert seen[1][1] - seen[0][1] >= 0.09 and seen[2][1] - seen[1][1] >= 0.19
    assert [(d.message_id, d.restored) for d in delivered] == [("start-1", False)]
    async with store:
        assert len(store) == 0


async def test_no_answer_counts_as_a_failure_and_a_failing_on_delivered_is_only_logged(
    make_store: Callable[[], OutboxStore], caplog: pytest.LogCaptureFixture
) -> None:
    router = ocpprpc.Router()
    seen: list[str] = []

    @router.on("TransactionEvent")
    async def first_unanswered(request: Any, ctx: ocpprpc.CallContext) -> Any:
        seen.append(ctx.message_id)
        return ocpprpc.NO_REPLY if len(seen) == 1 else {}

    def broken(delivery: Delivered) -> None:
        raise RuntimeError("application bug")

    store = make_store()
    async with ocpprpc.serve(router=router, protocols=["ocpp2.0.1"]) as server:
        url = f"ws://127.0.0.1:{server.port}/ocpp"
        retry = TransactionRetry(attempts=2, interval=0.01)
        async with Station(
            url, "CP1", protocols=["ocpp2.0.1"], outbox=store, transaction_retry=retry, on_delivered=broken
        ) as station:
            event = {"eventType": "Started", "timestamp": NOW, "triggerReason": "Authorized", "seqNo": 0}
            assert await station.call("TransactionEvent", event, timeout=0.1, message_id="tx-1") == {}
    assert seen == ["tx-1", "tx-1"]
    assert "on_delivered failed" in caplog.text
    async with store:
        assert len(store) == 0  # answered: forgotten even though the callback failed


async def test_a_store_that_cannot_open_stops_the_station_from_starting(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "outbox.db")
    db.execute("PRAGMA user_version=99")
    db.close()
    station = Station("ws://127.0.0.1:9/ocpp", "CP1", outbox=SQLiteOutbox(tmp_path / "outbox.db"))
    with pytest.raises(RuntimeError, match="newer"):
        async with station:
            pass
    assert station.state is ocpprpc.StationState.CLOSED


async def test_attempts_used_up_drop_the_message_with_an_event_never_silently(
    make_store: Callable[[], OutboxStore],
) -> None:
    router = ocpprpc.Router()

    @router.on("StopTransaction")
    async def refuse(request: Any, ctx: ocpprpc.CallContext) -> Any:
        raise OCPPError(ocpprpc.ErrorCode.INTERNAL_ERROR, "no")

    store = make_store()
    log = EventLog()
    async with ocpprpc.serve(router=router) as server:
        url = f"ws://127.0.0.1:{server.port}/ocpp"
        retry = TransactionRetry(attempts=2, interval=0.01)
        async with Station(url, "CP1", outbox=store, transaction_retry=retry, on_event=log) as station:
            with pytest.raises(OCPPError, match="no"):
                await station.call("StopTransaction", STOP)
    (dropped,) = log.of(MessageDropped)
    assert dropped.action == "StopTransaction" and dropped.attempts == 2
    assert isinstance(dropped.error, OCPPError)
    async with store:
        assert len(store) == 0


async def test_a_message_the_csms_cannot_validate_is_dropped_at_once(tmp_path: Path) -> None:
    rec = Recorder()
    store = SQLiteOutbox(tmp_path / "outbox.db")
    log = EventLog()
    async with ocpprpc.serve(router=rec.router) as server:
        url = f"ws://127.0.0.1:{server.port}/ocpp"
        # Strict validation on the station: this payload can never be sent, retrying cannot help.
        async with Station(url, "CP1", outbox=store, on_event=log, validation=True) as station:
            with pytest.raises(ocpprpc.OutboundPayloadError):
                await station.call("StartTransaction", {"connectorId": "not a number"})
    (dropped,) = log.of(MessageDropped)
    assert dropped.attempts == 0 and not rec.handled


async def test_a_volatile_call_overtakes_a_durable_one_waiting_out_its_interval(tmp_path: Path) -> None:
    rec = Recorder()
    fails = [True]
    original = rec._any

    async def flaky(request: Any, ctx: ocpprpc.CallContext) -> Any:
        answer = await original(request, ctx)
        if ctx.action == "StartTransaction" and fails and fails.pop():
            raise OCPPError(ocpprpc.ErrorCode.INTERNAL_ERROR, "later")
        return answer

    rec.router.remove_any()
    rec.router.add_any(flaky)
    async with ocpprpc.serve(router=rec.router) as server:
        url = f"ws://127.0.0.1:{server.port}/ocpp"
        retry = TransactionRetry(attempts=3, interval=0.5)
        async with (
            Station(url, "CP1", outbox=MemoryOutbox(), transaction_retry=retry) as station,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(station.call, "StartTransaction", START)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(station.call, "MeterValues", meter_values(0))  # durable: waits its turn
            await rec.wait_for(1)
            assert await station.call("Heartbeat", {})  # not held 0.5 s behind the retry
            assert rec.actions() == ["StartTransaction", "Heartbeat"]
    assert rec.actions() == ["StartTransaction", "Heartbeat", "StartTransaction", "MeterValues"]


async def test_a_lost_link_resends_without_using_an_attempt_and_the_csms_handles_it_once(
    tmp_path: Path,
) -> None:
    rec = Recorder()
    async with (
        ocpprpc.serve(router=rec.router, replay_cache=100) as server,
        fault_proxy(server.port) as proxy,
    ):
        original = rec._any
        cut = [True]

        async def cutting(request: Any, ctx: ocpprpc.CallContext) -> Any:
            answer = await original(request, ctx)
            if cut and cut.pop():
                proxy.drop()  # the answer never reaches the station
            return answer

        rec.router.remove_any()
        rec.router.add_any(cutting)
        retry = TransactionRetry(attempts=1, interval=0.01)  # no failure allowed at all
        store = SQLiteOutbox(tmp_path / "outbox.db")
        async with Station(
            proxy.url, "CP1", reconnect=FAST, outbox=store, transaction_retry=retry
        ) as station:
            answer = await station.call("StartTransaction", START, message_id="s-1")
            assert answer["transactionId"] == 1
            assert station.connections == 2
        assert [mid for _, mid, _ in rec.handled] == ["s-1"]
        assert server.replay_cache is not None and server.replay_cache.replays == 1


async def test_closing_keeps_pending_durable_messages_and_tells_their_callers(tmp_path: Path) -> None:
    async with ocpprpc.serve() as probe:
        port = probe.port
    store = SQLiteOutbox(tmp_path / "outbox.db")
    log = EventLog()
    errors: list[BaseException] = []

    async def call() -> None:
        try:
            await station.call("StartTransaction", START)
        except ConnectionLost as exc:
            errors.append(exc)

    station = Station(f"ws://127.0.0.1:{port}/ocpp", "CP1", reconnect=FAST, outbox=store, on_event=log)
    async with station, anyio.create_task_group() as tg:
        tg.start_soon(call)
        while not len(store):
            await anyio.wait_all_tasks_blocked()
        await station.close()
    assert len(errors) == 1 and "stays in the durable outbox" in str(errors[0])
    assert not log.of(CallDropped)
    async with store:
        assert [r.action for r in await store.records()] == ["StartTransaction"]
    with pytest.raises(ValueError, match="no outbox store"):
        async with Station(f"ws://127.0.0.1:{port}/ocpp", "CP1", reconnect=FAST) as plain:
            await plain.submit("StartTransaction", START)


# -- a station process killed mid-way -------------------------------------------------------------


class _Lines:
    """The lines a subprocess prints, with a wait for one that starts with a prefix."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._changed = anyio.Event()

    async def read(self, stream: anyio.abc.ByteReceiveStream) -> None:
        buffer = ""
        async for chunk in TextReceiveStream(stream):
            buffer += chunk
            *complete, buffer = buffer.split("\n")
            self.lines.extend(complete)
            self._changed.set()
            self._changed = anyio.Event()

    async def wait_for(self, prefix: str) -> str:
        while True:
            for line in self.lines:
                if line.startswith(prefix):
                    return line
            await self._changed.wait()


@asynccontextmanager
async def station_process(
    tmp_path: Path, name: str, *args: str
) -> AsyncIterator[tuple[anyio.abc.Process, _Lines]]:
    """Run durable_station.py; its stderr goes to a file shown when the test fails."""
    lines = _Lines()
    with (tmp_path / f"{name}.stderr").open("wb") as stderr:
        process = await anyio.open_process([sys.executable, str(SCRIPT), *args], stderr=stderr)
        try:
            async with anyio.create_task_group() as tg:
                assert process.stdout is not None
                tg.start_soon(lines.read, process.stdout)
                yield process, lines
        finally:
            if process.returncode is None:
                process.kill()
            with anyio.CancelScope(shield=True):
                await process.wait()
                await process.aclose()


def _stored_rows(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        (count,) = db.execute("SELECT count(*) FROM outbox").fetchone()
        return int(count)
    finally:
        db.close()


async def test_a_killed_station_process_delivers_every_message_exactly_once_after_restart(
    anyio_backend: str, tmp_path: Path
) -> None:
    """SIGKILL between a CALL and its answer, a restart on the same file, and a cut link after it.

    The station process runs on the test's backend; asyncio speaks 1.6
    (StartTransaction, MeterValues, StopTransaction), trio 2.0.1 (TransactionEvent).
    """
    protocol = "ocpp1.6" if anyio_backend == "asyncio" else "ocpp2.0.1"
    db = tmp_path / "outbox.db"
    rec = Recorder()
    kill_at, cut_at = 20, 40
    async with (
        ocpprpc.serve(router=rec.router, protocols=["ocpp2.0.1", "ocpp1.6"], replay_cache=1000) as server,
        fault_proxy(server.port) as proxy,
    ):
        proxy.refuse = True  # the CSMS is unreachable while the transaction is generated
        args = (proxy.url, str(db), anyio_backend, protocol)
        victim: list[anyio.abc.Process] = []
        killed = anyio.Event()
        original = rec._any

        async def faulty(request: Any, ctx: ocpprpc.CallContext) -> Any:
            answer = await original(request, ctx)
            if len(rec.handled) == kill_at and victim:
                victim.pop().send_signal(signal.SIGKILL)  # handled, never answered
                killed.set()
            elif len(rec.handled) == cut_at:
                proxy.drop()  # handled, the answer lost with the link
            return answer

        rec.router.remove_any()
        rec.router.add_any(faulty)

        async with station_process(tmp_path, "first", *args, "generate") as (first, first_out):
            assert await first_out.wait_for("stored") == "stored 52"
            victim.append(first)
            proxy.refuse = False
            await killed.wait()
            assert await first.wait() == -signal.SIGKILL
        # 19 answered and deleted; the 20th was handled by the CSMS but its answer never arrived.
        assert _stored_rows(db) == 52 - (kill_at - 1)
        assert len([line for line in first_out.lines if line.startswith("delivered")]) == kill_at - 1

        async with station_process(tmp_path, "second", *args, "resume") as (second, second_out):
            with anyio.fail_after(30):
                code = await second.wait()
        assert code == 0, (tmp_path / "second.stderr").read_text()
        assert second_out.lines[0] == "restored 33"

    # Exactly once, in order, at the CSMS handler.
    mids = [mid for _, mid, _ in rec.handled]
    assert len(mids) == 52 and len(set(mids)) == 52
    if protocol == "ocpp1.6":
        assert rec.actions() == ["StartTransaction", *["MeterValues"] * 50, "StopTransaction"]
        values = [p["meterValue"][0]["sampledValue"][0]["value"] for a, _, p in rec.handled[1:-1]]
        assert values == [str(n) for n in range(50)]
    else:
        assert [p["seqNo"] for _, _, p in rec.handled] == list(range(52))
        assert [p["eventType"] for _, _, p in rec.handled] == ["Started", *["Updated"] * 50, "Ended"]
    assert server.replay_cache is not None and server.replay_cache.replays == 2  # the kill and the cut
    # Every answer reached the station application once: 19 in the first life, 33 (restored) in the second.
    delivered = [line.split() for line in first_out.lines + second_out.lines if line.startswith("delivered")]
    assert [fields[2] for fields in delivered] == mids
    assert [fields[3] for fields in delivered[kill_at - 1 :]] == ["True"] * 33
    assert _stored_rows(db) == 0


async def test_a_transaction_started_offline_keeps_its_real_id_across_a_killed_station_process(
    anyio_backend: str, tmp_path: Path
) -> None:
    """1.6 offline start: the CSMS's transactionId reaches the messages a second process sends.

    The first process starts a transaction (provisional id) and queues 5 meter
    values and the stop while the CSMS is unreachable, then is killed right
    after the CSMS handled the second meter value (its answer never arrives):
    the StartTransaction was answered, so the pair provisional -> real is in the
    file.  The second process sends the rest with the real id.
    """
    db = tmp_path / "outbox.db"
    rec = Recorder()
    rec.transaction_id = 4242
    kill_at = 3  # StartTransaction, MeterValues 0, MeterValues 1 (unanswered)
    async with (
        ocpprpc.serve(router=rec.router, replay_cache=1000) as server,
        fault_proxy(server.port) as proxy,
    ):
        proxy.refuse = True
        args = (proxy.url, str(db), anyio_backend, "ocpp1.6")
        victim: list[anyio.abc.Process] = []
        killed = anyio.Event()
        original = rec._any

        async def faulty(request: Any, ctx: ocpprpc.CallContext) -> Any:
            answer = await original(request, ctx)
            if len(rec.handled) == kill_at and victim:
                victim.pop().send_signal(signal.SIGKILL)
                killed.set()
            return answer

        rec.router.remove_any()
        rec.router.add_any(faulty)

        async with station_process(tmp_path, "first", *args, "provisional") as (first, first_out):
            assert await first_out.wait_for("stored") == "stored 7"
            provisional = int((await first_out.wait_for("provisional")).split()[1])
            assert provisional < 0
            victim.append(first)
            proxy.refuse = False
            await killed.wait()
            assert await first.wait() == -signal.SIGKILL
        async with station_process(tmp_path, "second", *args, "resume") as (second, second_out):
            with anyio.fail_after(30):
                code = await second.wait()
        assert code == 0, (tmp_path / "second.stderr").read_text()
        assert second_out.lines[0] == "restored 5"

    # Exactly once, in order, every message after the start with the CSMS's id.
    assert rec.actions() == ["StartTransaction", *["MeterValues"] * 5, "StopTransaction"]
    assert [p["transactionId"] for _, _, p in rec.handled[1:]] == [4242] * 6
    values = [p["meterValue"][0]["sampledValue"][0]["value"] for _, _, p in rec.handled[1:6]]
    assert values == ["0", "1", "2", "3", "4"]
    assert len({mid for _, mid, _ in rec.handled}) == 7
    assert server.replay_cache is not None and server.replay_cache.replays == 1  # the kill
    # Each answer reached the application once, with what was sent and the id it stood for.
    delivered = [line.split() for line in first_out.lines + second_out.lines if line.startswith("delivered")]
    assert [fields[2] for fields in delivered] == [mid for _, mid, _ in rec.handled]
    assert [fields[4] for fields in delivered] == ["None", *["4242"] * 6]
    assert {fields[5] for fields in delivered} == {str(provisional)}
    assert [fields[3] for fields in delivered] == ["False", "False", *["True"] * 5]
    assert _stored_rows(db) == 0
    db_rows = sqlite3.connect(db).execute("SELECT count(*) FROM transactions").fetchone()
    assert db_rows == (0,)  # the stop ended it: the pair is gone from the file too
