"""A station registry store in a SQLite file (stdlib ``sqlite3``, in a worker thread).

One row per identity: the record as JSON (:func:`encode_record`), plus the
columns an operator queries by hand (``connected``, ``last_seen``).  Every
database call runs in a worker thread (:func:`anyio.to_thread.run_sync`)
through one connection, one call at a time and in the order asked, so the
event loop never waits on the disk.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable
from typing import Any, Final, TypeVar

import anyio
import anyio.to_thread

from .registry import RegistryStore, StationRecord, decode_record, encode_record

__all__ = ["SQLiteRegistryStore"]

log = logging.getLogger("ocpprpc.registry")

_T = TypeVar("_T")
_SCHEMA_VERSION: Final = 1
_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS stations ("
    " identity TEXT PRIMARY KEY,"
    " connected INTEGER NOT NULL,"
    " last_seen REAL NOT NULL,"
    " record TEXT NOT NULL)"
)


class SQLiteRegistryStore(RegistryStore):
    """Station records in a SQLite file: they survive a restart.

    ::

        registry = ocpprpc.StationRegistry(ocpprpc.SQLiteRegistryStore("stations.db"))

    The journal is WAL with ``synchronous=NORMAL``: a killed process loses
    nothing, a power cut at most the last updates (a registry is rebuilt by the
    stations' next messages anyway).  A row that does not decode (written by
    hand, or by a newer ocpprpc) is skipped with a warning.

    :param path: the database file (created if missing).
    :param busy_timeout: seconds a write waits for another process's lock.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 5.0) -> None:
        self.path = os.fspath(path)
        self.busy_timeout = busy_timeout
        self._db: sqlite3.Connection | None = None
        self._limiter: anyio.CapacityLimiter | None = None

    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run *fn(db, *args)* in a worker thread, one at a time, in the order asked."""
        if self._db is None or self._limiter is None:
            raise RuntimeError(f"{self!r} is not open")
        return await anyio.to_thread.run_sync(fn, self._db, *args, limiter=self._limiter)

    async def open(self) -> None:
        if self._db is not None:
            return
        self._limiter = anyio.CapacityLimiter(1)
        self._db = await anyio.to_thread.run_sync(self._connect, limiter=self._limiter)

    def _connect(self) -> sqlite3.Connection:
        # check_same_thread=False: worker threads differ, the limiter serialises them.
        db = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            (version,) = db.execute("PRAGMA user_version").fetchone()
            if version > _SCHEMA_VERSION:
                raise RuntimeError(f"{self.path} was written by a newer ocpprpc (registry schema {version})")
            db.execute(_SCHEMA)
            db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        except BaseException:
            db.close()
            raise
        return db

    async def close(self) -> None:
        if self._db is None:
            return
        try:
            await self._run(sqlite3.Connection.close)
        finally:
            self._db = None

    async def get(self, identity: str) -> StationRecord | None:
        rows = await self._run(_select, "WHERE identity = ?", (identity,))
        return rows[0] if rows else None

    async def put(self, record: StationRecord) -> None:
        await self._run(_upsert, record)

    async def delete(self, identity: str) -> None:
        await self._run(_delete, identity)

    async def list(self) -> list[StationRecord]:
        return await self._run(_select, "", ())

    def __repr__(self) -> str:
        return f"<SQLiteRegistryStore {self.path!r}>"


def _upsert(db: sqlite3.Connection, record: StationRecord) -> None:
    db.execute(
        "INSERT OR REPLACE INTO stations (identity, connected, last_seen, record) VALUES (?, ?, ?, ?)",
        (record.identity, int(record.connected), record.last_seen, encode_record(record).decode()),
    )


def _delete(db: sqlite3.Connection, identity: str) -> None:
    db.execute("DELETE FROM stations WHERE identity = ?", (identity,))


def _select(db: sqlite3.Connection, where: str, args: tuple[Any, ...]) -> list[StationRecord]:
    records = []
    rows = db.execute(f"SELECT identity, record FROM stations {where} ORDER BY identity", args)
    for identity, text in rows:
        try:
            records.append(decode_record(text))
        except Exception as exc:  # one bad row must not hide the others
            log.warning("registry store %s: the row of %r does not decode, skipped: %s", db, identity, exc)
    return records
