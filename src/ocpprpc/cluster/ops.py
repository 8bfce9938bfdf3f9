"""The Redis operations the cluster adapter needs: one small interface over two clients.

redis-py's asyncio client is the fast one but runs on asyncio only; coredis is
anyio-native and serves trio (``../shared/reference/redis-research.md``).  The adapter
is written against :class:`RedisOps` alone, so its logic and tests do not depend on
which client is below, and only :mod:`.ops_redispy` / :mod:`.ops_coredis` import one.

Replies are normalised here (bytes for values, ``str`` for stream ids, ``None`` for a
missing key), and failures become three exceptions: :class:`RedisUnavailable` (no
answer: refused, reset, timed out), :class:`NoGroup` (the stream or its group is gone,
e.g. Redis restarted empty) and :class:`RedisCommandError` (Redis answered an error).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias

__all__ = [
    "Delete",
    "Entry",
    "Eval",
    "GroupInfo",
    "NoGroup",
    "PExpire",
    "PendingSummary",
    "PipelineCommand",
    "RedisCommandError",
    "RedisOps",
    "RedisUnavailable",
    "Script",
    "Set",
    "XAdd",
]


class RedisUnavailable(ConnectionError):
    """Redis did not answer (down, unreachable, connection lost or timed out)."""


class RedisCommandError(Exception):
    """Redis answered a command with an error."""


class NoGroup(RedisCommandError):
    """The stream or its consumer group does not exist (NOGROUP): recreate it."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One stream entry."""

    id: str
    fields: Mapping[str, bytes]


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """One consumer group, as XINFO GROUPS reports it (``lag`` needs Redis >= 7)."""

    name: str
    consumers: int
    pending: int
    last_delivered_id: str
    entries_read: int | None
    lag: int | None


@dataclass(frozen=True, slots=True)
class PendingSummary:
    """XPENDING's summary form: how many entries were delivered and not acked, oldest first."""

    count: int
    oldest_id: str | None
    newest_id: str | None


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script, run by SHA (EVALSHA) and loaded again when Redis forgot it."""

    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode(), usedforsecurity=False).hexdigest())


# Commands a pipeline carries (one round trip for many; no transaction).
@dataclass(frozen=True, slots=True)
class XAdd:
    key: str
    fields: Mapping[str, bytes]
    maxlen: int | None = None  # trimmed approximately (MAXLEN ~)


@dataclass(frozen=True, slots=True)
class Set:
    key: str
    value: bytes
    px: int | None = None
    #: SET ... GET: the reply is the old value (bytes or None) instead of a bool.
    get: bool = False


@dataclass(frozen=True, slots=True)
class PExpire:
    key: str
    ms: int


@dataclass(frozen=True, slots=True)
class Delete:
    keys: Sequence[str]


@dataclass(frozen=True, slots=True)
class Eval:
    script: Script
    keys: Sequence[str]
    args: Sequence[str | bytes | int]


PipelineCommand: TypeAlias = XAdd | Set | PExpire | Delete | Eval


class RedisOps(Protocol):
    """The handful of Redis commands the cluster adapter uses (both clients implement it).

    On Redis Cluster (:attr:`cluster`): keys a script or a command touches together share
    a hash slot; :meth:`mget`, :meth:`delete` and :meth:`pipeline` take keys in any
    slots; :meth:`publish` / :meth:`subscribe` are sharded (SPUBLISH / SSUBSCRIBE).
    """

    #: Whether this is Redis Cluster (a multi-key script must not span slots there).
    cluster: bool

    async def ping(self) -> None: ...

    async def get(self, key: str) -> bytes | None: ...

    async def mget(self, keys: Sequence[str]) -> list[bytes | None]: ...

    async def set(self, key: str, value: bytes, *, px: int | None = None, nx: bool = False) -> bool:
        """SET [NX] [PX]; False when NX found the key taken."""
        ...

    async def set_get(self, key: str, value: bytes, *, px: int | None = None) -> bytes | None:
        """SET ... GET: set and return the previous value."""
        ...

    async def delete(self, keys: Sequence[str]) -> int: ...

    async def pexpire(self, key: str, ms: int) -> bool: ...

    async def xadd(self, key: str, fields: Mapping[str, bytes], *, maxlen: int | None = None) -> str: ...

    async def xgroup_create(self, key: str, group: str, start_id: str = "0") -> bool:
        """XGROUP CREATE ... MKSTREAM; False when the group already exists (BUSYGROUP)."""
        ...

    async def xreadgroup(
        self, key: str, group: str, consumer: str, start_id: str, *, count: int, block_ms: int | None = None
    ) -> list[Entry]:
        """XREADGROUP from one stream: ``">"`` for new entries, ``"0"`` for our own pending ones."""
        ...

    async def xack(self, key: str, group: str, ids: Sequence[str]) -> int: ...

    async def xack_xreadgroup(
        self,
        key: str,
        group: str,
        consumer: str,
        start_id: str,
        *,
        ack: Sequence[str],
        count: int,
        block_ms: int | None = None,
    ) -> tuple[int | Exception, list[Entry]]:
        """XACK *ack* (non-empty), then XREADGROUP as :meth:`xreadgroup`, in one round trip.

        The ack's count, or its failure as an exception instance (the read goes on
        regardless), and the entries; a failed read raises as :meth:`xreadgroup` does.
        """
        ...

    async def xautoclaim(
        self,
        key: str,
        group: str,
        consumer: str,
        *,
        min_idle_ms: int,
        start_id: str = "0-0",
        count: int = 100,
    ) -> tuple[str, list[Entry]]:
        """Take over entries pending longer than *min_idle_ms*; the cursor to go on from."""
        ...

    async def xpending(self, key: str, group: str) -> PendingSummary: ...

    async def xinfo_groups(self, key: str) -> list[GroupInfo]: ...

    async def run_script(self, script: Script, keys: Sequence[str], args: Sequence[str | bytes | int]) -> Any:
        """EVALSHA, loading the script when Redis does not know it (after a restart)."""
        ...

    async def pipeline(self, commands: Sequence[PipelineCommand]) -> list[Any]:
        """Run *commands* in one round trip; a failed command's slot holds its exception."""
        ...

    async def publish(self, channel: str, message: bytes) -> int:
        """PUBLISH; SPUBLISH on Redis Cluster (the channel's shard only, Redis >= 7)."""
        ...

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """Subscribed once entered; the iterator ends or raises when the subscription ends.

        SSUBSCRIBE on Redis Cluster: a slot migration ends the subscription (SUNSUBSCRIBE
        from the old owner), and the caller subscribes again.
        """
        ...


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def group_info(raw: Mapping[Any, Any]) -> GroupInfo:
    """XINFO GROUPS' mapping (byte or str keys) as a :class:`GroupInfo`."""
    info = {text(key): value for key, value in raw.items()}
    return GroupInfo(
        name=text(info["name"]),
        consumers=int(info["consumers"]),
        pending=int(info["pending"]),
        last_delivered_id=text(info["last-delivered-id"]),
        entries_read=None if info.get("entries-read") is None else int(info["entries-read"]),
        lag=None if info.get("lag") is None else int(info["lag"]),
    )


def entry(identifier: bytes | str, fields: Mapping[Any, Any] | None) -> Entry:
    return Entry(text(identifier), {text(k): v for k, v in (fields or {}).items()})
