"""Outbox stores: where a station keeps the messages it must not lose.

A :class:`~ocpprpc.Station` queues every call in memory, in the order it was
made, with the caller waiting on it.  Messages that must survive a process
restart (by default the transaction messages, :func:`is_transaction_message`)
are *also* written to an :class:`OutboxStore` before they may leave, and are
deleted from it only once the CSMS answered them.  On the next start the
station reads back what is left and sends it first, under the same message
ids, so a CSMS with a replay cache (``Server(replay_cache=...)``) hands each
one to its handler exactly once.

The store is deliberately small: it persists records, the station decides
what to send when.  Two implementations:

* :class:`MemoryOutbox` keeps records in a dict.  Nothing survives the
  process, but the records survive the :class:`Station` object, so a new
  station given the same store picks them up (tests, and applications that
  want OCPP's transaction-message attempts without a disk);
* :class:`SQLiteOutbox` keeps them in a SQLite file (stdlib ``sqlite3``, WAL
  journal).  Every database call runs in a worker thread
  (:func:`anyio.to_thread.run_sync`) through one connection, one call at a
  time, so a slow disk never stalls the event loop.

Order is fixed when :meth:`OutboxStore.add` is *called* (its sequence number
is taken before the first suspension), not when the write finishes.

A store also keeps the *provisional transaction ids* of OCPP 1.6 transactions
started offline (:meth:`~ocpprpc.Station.start_transaction`): the stand-in
each got, and the CSMS's ``transactionId`` once the StartTransaction is
answered, so the messages queued under the stand-in are sent with the real id
even after a restart (:class:`ProvisionalTransaction`).
"""

from __future__ import annotations

import abc
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import astuple, dataclass, fields, replace
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

import anyio
import anyio.to_thread
import msgspec

__all__ = [
    "MemoryOutbox",
    "OutboxFull",
    "OutboxRecord",
    "OutboxStore",
    "ProvisionalTransaction",
    "SQLiteOutbox",
    "TRANSACTION_ACTIONS",
    "is_transaction_message",
]

log = logging.getLogger("ocpprpc.outbox")

_T = TypeVar("_T")

#: Actions that are always transaction messages (1.6 and 2.x).  1.6 MeterValues
#: is one only when it carries a ``transactionId``.
TRANSACTION_ACTIONS = frozenset({"StartTransaction", "StopTransaction", "TransactionEvent"})


def is_transaction_message(action: str, payload: Mapping[str, Any]) -> bool:
    """The default durability rule: OCPP's transaction-related messages.

    1.6: StartTransaction, StopTransaction, and MeterValues carrying a
    ``transactionId`` (OCPP 1.6 section 4.10 calls exactly these
    "transaction-related"); 2.0.1 and 2.1: TransactionEvent.  *payload* is the
    message's JSON object (wire names).
    """
    if action in TRANSACTION_ACTIONS:
        return True
    return action == "MeterValues" and payload.get("transactionId") is not None


class OutboxFull(Exception):
    """A call did not fit in the station's outbox (or its durable store).

    Raised in the new call (policy ``REJECT``, and always for a durable store:
    transaction messages are never dropped to make room) or in the oldest
    queued call, which is dropped to make room (policy ``DROP_OLDEST``).  Never
    silent: the dropped call's caller gets this, a warning is logged and a
    :class:`~ocpprpc.CallDropped` event is published.
    """

    def __init__(self, action: str, message_id: str, limit: int, dropped: bool) -> None:
        self.action = action
        self.message_id = message_id
        self.limit = limit
        self.dropped = dropped
        what = "dropped to make room for a newer call" if dropped else "refused"
        super().__init__(f"{action} ({message_id}) {what}: the outbox holds at most {limit} calls")


@dataclass(slots=True)
class OutboxRecord:
    """One stored message.

    :param seq: its place in the delivery order (increasing).
    :param message_id: the CALL's id, reused by every retry.
    :param action: the OCPP action.
    :param payload: the payload as JSON text (wire names).
    :param attempts: sends the CSMS failed to process (a CALLERROR, or no
        answer in time).  Sends cut short by a lost link do not count.
    :param next_attempt_at: wall-clock time (:func:`time.time`) before which it
        must not be sent again (0: at once).
    :param created_at: wall-clock time it was stored.
    """

    seq: int
    message_id: str
    action: str
    payload: str
    attempts: int = 0
    next_attempt_at: float = 0.0
    created_at: float = 0.0

    def decoded_payload(self) -> Any:
        """The payload as JSON values (a ``dict``)."""
        return msgspec.json.decode(self.payload)


@dataclass(slots=True)
class ProvisionalTransaction:
    """A 1.6 transaction started before the CSMS answered its StartTransaction.

    :param provisional_id: the stand-in ``transactionId`` the station handed out
        (negative, never reused by the same store).
    :param start_message_id: the message id of its StartTransaction.
    :param transaction_id: the CSMS's ``transactionId``, once the StartTransaction
        was answered; ``None`` before.
    """

    provisional_id: int
    start_message_id: str
    transaction_id: int | None = None


class OutboxStore(abc.ABC):
    """Where durable messages wait until the CSMS answers them.

    A store serves one station.  :class:`~ocpprpc.Station` opens it when
    entered and closes it on exit; ``async with store:`` does the same for
    inspecting one by hand.

    :param max_messages: the most records it holds (``None``: no limit);
        :meth:`add` raises :class:`OutboxFull` beyond it.
    """

    def __init__(self, *, max_messages: int | None = None) -> None:
        if max_messages is not None and max_messages < 1:
            raise ValueError("max_messages must be at least 1 (or None for no limit)")
        self.max_messages = max_messages
        self._count = 0
        self._next_seq = 1

    def __len__(self) -> int:
        """Records stored (counting adds in progress)."""
        return self._count

    async def add(self, message_id: str, action: str, payload: str) -> OutboxRecord:
        """Store a new message at the end of the order; returns once it is stored.

        :raises OutboxFull: the store holds ``max_messages`` already.
        :raises ValueError: *message_id* is stored already.
        """
        # Both before the first suspension: the order of calls is the order of delivery.
        if self.max_messages is not None and self._count >= self.max_messages:
            raise OutboxFull(action, message_id, self.max_messages, dropped=False)
        record = OutboxRecord(self._next_seq, message_id, action, payload, created_at=time.time())
        self._next_seq += 1
        self._count += 1
        try:
            await self._insert(record)
        except BaseException:
            self._count -= 1
            raise
        return record

    async def open(self) -> list[OutboxRecord]:
        """Open the store and return the records it holds, in delivery order."""
        records = await self._open()
        self._count = len(records)
        self._next_seq = max((record.seq for record in records), default=0) + 1
        return records

    async def remove(self, message_id: str) -> None:
        """Forget a message (answered, or given up); unknown ids are ignored."""
        if await self._delete(message_id):
            self._count -= 1

    # -- provisional transaction ids (OCPP 1.6 transactions started offline) -------------------
    # Not abstract: a store written before these existed still works, without offline 1.6
    # transactions (Station.start_transaction() then fails with NotImplementedError).

    async def add_transaction(self, start_message_id: str) -> int:
        """Store a new provisional transaction for the StartTransaction *start_message_id*.

        Returns its provisional id: negative, and never handed out twice by
        this store (not even after it was removed).
        """
        raise NotImplementedError(f"{type(self).__name__} does not keep provisional transaction ids")

    async def set_transaction_id(self, provisional_id: int, transaction_id: int) -> None:
        """Save the CSMS's *transaction_id* for *provisional_id*."""
        raise NotImplementedError(f"{type(self).__name__} does not keep provisional transaction ids")

    async def remove_transaction(self, provisional_id: int) -> None:
        """Forget *provisional_id* (its transaction ended); unknown ids are ignored."""
        raise NotImplementedError(f"{type(self).__name__} does not keep provisional transaction ids")

    async def transactions(self) -> list[ProvisionalTransaction]:
        """The provisional transactions stored (oldest first); none by default."""
        return []

    @abc.abstractmethod
    async def _open(self) -> list[OutboxRecord]: ...

    @abc.abstractmethod
    async def _insert(self, record: OutboxRecord) -> None: ...

    @abc.abstractmethod
    async def _delete(self, message_id: str) -> bool: ...

    @abc.abstractmethod
    async def update(self, record: OutboxRecord) -> None:
        """Save *record*'s ``attempts`` and ``next_attempt_at``."""

    @abc.abstractmethod
    async def records(self) -> list[OutboxRecord]:
        """The stored records, in delivery order."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the store's resources (it may be opened again)."""

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with anyio.CancelScope(shield=True):
            await self.close()


class MemoryOutbox(OutboxStore):
    """A store in a dict: the records outlive a :class:`~ocpprpc.Station`, not the process."""

    def __init__(self, *, max_messages: int | None = None) -> None:
        super().__init__(max_messages=max_messages)
        self._records: dict[str, OutboxRecord] = {}
        self._transactions: dict[int, ProvisionalTransaction] = {}
        self._last_provisional = 0

    async def _open(self) -> list[OutboxRecord]:
        return await self.records()

    async def _insert(self, record: OutboxRecord) -> None:
        if record.message_id in self._records:
            raise ValueError(f"message id {record.message_id!r} is stored already")
        # A copy: the station mutates its own record; the store changes only on update().
        self._records[record.message_id] = replace(record)

    async def _delete(self, message_id: str) -> bool:
        return self._records.pop(message_id, None) is not None

    async def update(self, record: OutboxRecord) -> None:
        stored = self._records.get(record.message_id)
        if stored is not None:
            stored.attempts = record.attempts
            stored.next_attempt_at = record.next_attempt_at

    async def records(self) -> list[OutboxRecord]:
        # Insertion order is seq order: add() takes its seq and inserts without suspending.
        return [replace(record) for record in self._records.values()]

    async def close(self) -> None:
        pass

    async def add_transaction(self, start_message_id: str) -> int:
        self._last_provisional -= 1
        provisional = self._last_provisional
        self._transactions[provisional] = ProvisionalTransaction(provisional, start_message_id)
        return provisional

    async def set_transaction_id(self, provisional_id: int, transaction_id: int) -> None:
        stored = self._transactions.get(provisional_id)
        if stored is not None:
            stored.transaction_id = transaction_id

    async def remove_transaction(self, provisional_id: int) -> None:
        self._transactions.pop(provisional_id, None)

    async def transactions(self) -> list[ProvisionalTransaction]:
        return [
            ProvisionalTransaction(t.provisional_id, t.start_message_id, t.transaction_id)
            for t in self._transactions.values()
        ]

    def __repr__(self) -> str:
        return f"<MemoryOutbox {len(self._records)} messages>"


# Version 2 added the transactions table; opening a version-1 file adds it.
_SCHEMA_VERSION = 2
_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL UNIQUE,
    action TEXT NOT NULL,
    payload TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
)
""",
    # The provisional id is -id; AUTOINCREMENT never hands out an id twice.
    """
CREATE TABLE IF NOT EXISTS transactions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    start_message_id TEXT NOT NULL,
    transaction_id INTEGER
)
""",
)
_COLUMNS = ", ".join(field.name for field in fields(OutboxRecord))  # the order astuple() gives


class SQLiteOutbox(OutboxStore):
    """A durable store in a SQLite file: messages survive a crash or a restart.

    ::

        async with ocpprpc.Station(url, "CP1", outbox=ocpprpc.SQLiteOutbox("outbox.db")) as station:
            ...

    One connection per store, used by one worker thread at a time (the event
    loop never touches the file).  The journal is WAL.  With
    ``synchronous="FULL"`` (the default) every stored message is on disk
    before :meth:`add` returns, so it survives a power cut; ``"NORMAL"``
    survives a killed process but may lose the last messages on a power cut,
    for several times the write rate (see ``bench/README.md``).

    Give each station its own file.

    :param path: the database file (created if missing).
    :param max_messages: the most messages it holds (``None``: no limit).
    :param synchronous: SQLite's ``synchronous`` pragma, ``"FULL"`` or ``"NORMAL"``.
    :param busy_timeout: seconds a write waits for another process's lock.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_messages: int | None = 100_000,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        busy_timeout: float = 5.0,
    ) -> None:
        super().__init__(max_messages=max_messages)
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be 'FULL' or 'NORMAL', got {synchronous!r}")
        self.path = os.fspath(path)
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        self._db: sqlite3.Connection | None = None
        self._limiter: anyio.CapacityLimiter | None = None

    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run *fn(db, *args)* in a worker thread, one at a time, in the order asked."""
        if self._db is None or self._limiter is None:
            raise RuntimeError(f"{self!r} is not open")
        db = self._db
        return await anyio.to_thread.run_sync(fn, db, *args, limiter=self._limiter)

    async def _open(self) -> list[OutboxRecord]:
        if self._db is not None:
            return await self.records()
        # The limiter (FIFO) makes the worker threads take turns on the one connection.
        self._limiter = anyio.CapacityLimiter(1)
        self._db = await anyio.to_thread.run_sync(self._connect, limiter=self._limiter)
        log.debug("%r: opened", self)
        return await self.records()

    def _connect(self) -> sqlite3.Connection:
        # check_same_thread=False: worker threads differ, the limiter serialises them.
        db = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self.synchronous}")
            (version,) = db.execute("PRAGMA user_version").fetchone()
            if version > _SCHEMA_VERSION:
                raise RuntimeError(f"{self.path} was written by a newer ocpprpc (schema {version})")
            for statement in _SCHEMA:
                db.execute(statement)
            db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        except BaseException:
            db.close()
            raise
        return db

    async def _insert(self, record: OutboxRecord) -> None:
        try:
            await self._run(_insert, record)
        except sqlite3.IntegrityError as exc:
            raise ValueError(f"message id {record.message_id!r} is stored already") from exc

    async def _delete(self, message_id: str) -> bool:
        return await self._run(_delete, message_id)

    async def update(self, record: OutboxRecord) -> None:
        await self._run(_update, record)

    async def records(self) -> list[OutboxRecord]:
        return await self._run(_select)

    async def add_transaction(self, start_message_id: str) -> int:
        return await self._run(_insert_transaction, start_message_id)

    async def set_transaction_id(self, provisional_id: int, transaction_id: int) -> None:
        await self._run(_update_transaction, provisional_id, transaction_id)

    async def remove_transaction(self, provisional_id: int) -> None:
        await self._run(_delete_transaction, provisional_id)

    async def transactions(self) -> list[ProvisionalTransaction]:
        return await self._run(_select_transactions)

    async def close(self) -> None:
        if self._db is None:
            return
        try:
            await self._run(sqlite3.Connection.close)
        finally:
            self._db = None
            log.debug("%r: closed", self)

    def __repr__(self) -> str:
        return f"<SQLiteOutbox {self.path!r}>"


def _insert(db: sqlite3.Connection, record: OutboxRecord) -> None:
    db.execute(
        f"INSERT INTO outbox ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
        astuple(record),
    )


def _delete(db: sqlite3.Connection, message_id: str) -> bool:
    return db.execute("DELETE FROM outbox WHERE message_id = ?", (message_id,)).rowcount > 0


def _update(db: sqlite3.Connection, record: OutboxRecord) -> None:
    db.execute(
        "UPDATE outbox SET attempts = ?, next_attempt_at = ? WHERE message_id = ?",
        (record.attempts, record.next_attempt_at, record.message_id),
    )


def _select(db: sqlite3.Connection) -> list[OutboxRecord]:
    rows = db.execute(f"SELECT {_COLUMNS} FROM outbox ORDER BY seq").fetchall()
    return [OutboxRecord(*row) for row in rows]


def _insert_transaction(db: sqlite3.Connection, start_message_id: str) -> int:
    cursor = db.execute("INSERT INTO transactions (start_message_id) VALUES (?)", (start_message_id,))
    assert cursor.lastrowid is not None
    return -cursor.lastrowid


def _update_transaction(db: sqlite3.Connection, provisional_id: int, transaction_id: int) -> None:
    db.execute("UPDATE transactions SET transaction_id = ? WHERE id = ?", (transaction_id, -provisional_id))


def _delete_transaction(db: sqlite3.Connection, provisional_id: int) -> None:
    db.execute("DELETE FROM transactions WHERE id = ?", (-provisional_id,))


def _select_transactions(db: sqlite3.Connection) -> list[ProvisionalTransaction]:
    rows = db.execute("SELECT id, start_message_id, transaction_id FROM transactions ORDER BY id").fetchall()
    return [ProvisionalTransaction(-row_id, start, transaction_id) for row_id, start, transaction_id in rows]
