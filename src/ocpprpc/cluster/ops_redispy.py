""":class:`~.ops.RedisOps` on redis-py's ``redis.asyncio`` client: asyncio only, the faster one there.

Users may pass their own ``redis.asyncio.Redis`` (their pool, TLS, auth, Sentinel) or
``redis.asyncio.RedisCluster``; it must not decode responses.  redis-py does not run on
trio (the research measured why), so the adapter picks coredis there.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from types import TracebackType
from typing import Any

import anyio
import redis.asyncio
import redis.exceptions
from redis.asyncio.cluster import RedisCluster

from .ops import (
    Delete,
    Entry,
    Eval,
    GroupInfo,
    NoGroup,
    PendingSummary,
    PExpire,
    PipelineCommand,
    RedisCommandError,
    RedisUnavailable,
    Script,
    Set,
    XAdd,
    entry,
    group_info,
    text,
)

__all__ = ["RedisPyOps", "open_redispy"]

#: Bound on closing the client's connections (shielded: a cancelled node still closes them).
_CLOSE_TIMEOUT = 2.0


def _translation(exc: BaseException) -> Exception | None:
    """*exc* as one of the three exceptions of :mod:`.ops`, or None to let it through."""
    if isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)):
        return RedisUnavailable(f"Redis unavailable: {exc!r}")
    if isinstance(
        exc,  # Redis Cluster: no node answers, or the slot's node is gone / not known
        (
            redis.exceptions.RedisClusterUnreachableError,
            redis.exceptions.SlotNotCoveredError,
            redis.exceptions.ClusterDownError,
        ),
    ):
        return RedisUnavailable(f"Redis unavailable: {type(exc).__name__}: {exc}")
    if isinstance(exc, redis.exceptions.ResponseError):
        if str(exc).startswith("NOGROUP"):
            return NoGroup(str(exc))
        return RedisCommandError(str(exc))
    if isinstance(exc, redis.exceptions.RedisClusterException):  # e.g. keys across slots
        return RedisCommandError(str(exc))
    return None


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        translated = _translation(exc)
        if translated is None:
            raise
        raise translated from exc


class _Turn:
    """A command's turn: translated failures, and on Redis Cluster a bounded number in flight.

    redis-py's cluster client refuses a command (MaxConnectionsError) when its node's pool
    is full, where the single-Redis blocking pool waits: a burst of callers waits its turn
    here instead.
    """

    __slots__ = ("_limit",)

    def __init__(self, limit: asyncio.Semaphore | None) -> None:
        self._limit = limit

    async def __aenter__(self) -> None:
        if self._limit is not None:
            await self._limit.acquire()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._limit is not None:
            self._limit.release()
        if exc is not None:
            translated = _translation(exc)
            if translated is not None:
                raise translated from exc


#: Connections per node kept for subscriptions beyond the commands in flight (redis-py's
#: cluster pub/sub borrows them from the node's pool).
_SUBSCRIPTION_HEADROOM = 4


def _value(reply: Any) -> Any:
    if isinstance(reply, tuple):
        return [_value(item) for item in reply]
    if isinstance(reply, redis.exceptions.ResponseError):
        return RedisCommandError(str(reply))
    if isinstance(reply, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
        return RedisUnavailable(repr(reply))
    return reply


class RedisPyOps:
    """The operations on one ``redis.asyncio.Redis`` or ``RedisCluster`` (``decode_responses=False``)."""

    def __init__(self, client: redis.asyncio.Redis | RedisCluster) -> None:
        self.cluster = isinstance(client, RedisCluster)
        options = client.get_connection_kwargs()
        if options.get("decode_responses"):
            raise ValueError("the cluster needs a client with decode_responses=False")
        self.client: Any = client
        limit = None
        if self.cluster:
            per_node = int(options.get("max_connections") or 100)
            limit = asyncio.Semaphore(max(1, per_node - _SUBSCRIPTION_HEADROOM))
        self._turn = _Turn(limit)

    async def ping(self) -> None:
        async with self._turn:
            await self.client.ping()

    async def get(self, key: str) -> bytes | None:
        async with self._turn:
            value: Any = await self.client.get(key)
        return value  # type: ignore[no-any-return]

    async def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        async with self._turn:
            if self.cluster:  # keys in any slots: one MGET per slot
                values: list[Any] = await self.client.mget_nonatomic(keys)
            else:
                values = await self.client.mget(keys)
        return values

    async def set(self, key: str, value: bytes, *, px: int | None = None, nx: bool = False) -> bool:
        async with self._turn:
            return bool(await self.client.set(key, value, px=px, nx=nx))

    async def set_get(self, key: str, value: bytes, *, px: int | None = None) -> bytes | None:
        async with self._turn:
            old = await self.client.set(key, value, px=px, get=True)
        return old if isinstance(old, bytes) else None

    async def delete(self, keys: Sequence[str]) -> int:
        async with self._turn:
            return int(await self.client.delete(*keys))

    async def pexpire(self, key: str, ms: int) -> bool:
        async with self._turn:
            return bool(await self.client.pexpire(key, ms))

    async def xadd(self, key: str, fields: Mapping[str, bytes], *, maxlen: int | None = None) -> str:
        async with self._turn:
            return text(await self.client.xadd(key, _fields(fields), maxlen=maxlen, approximate=True))

    async def xgroup_create(self, key: str, group: str, start_id: str = "0") -> bool:
        try:
            async with self._turn:
                return bool(await self.client.xgroup_create(key, group, start_id, mkstream=True))
        except RedisCommandError as exc:
            if str(exc).startswith("BUSYGROUP"):
                return False
            raise

    async def xreadgroup(
        self, key: str, group: str, consumer: str, start_id: str, *, count: int, block_ms: int | None = None
    ) -> list[Entry]:
        async with self._turn:
            reply: Any = await self.client.xreadgroup(
                group, consumer, {key: start_id}, count=count, block=block_ms
            )
        return _entries(reply)

    async def xack(self, key: str, group: str, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        async with self._turn:
            return int(await self.client.xack(key, group, *ids))

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
        pipe = self.client.pipeline(transaction=False)
        pipe.xack(key, group, *ack)
        pipe.xreadgroup(group, consumer, {key: start_id}, count=count, block=block_ms)
        with _translated():
            acked, reply = await pipe.execute(raise_on_error=False)
            if isinstance(reply, Exception):
                raise reply
        return (_value(acked) if isinstance(acked, Exception) else int(acked)), _entries(reply)

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
        async with self._turn:
            reply = await self.client.xautoclaim(key, group, consumer, min_idle_ms, start_id, count=count)
        return text(reply[0]), [entry(i, f) for i, f in reply[1] if i is not None]

    async def xpending(self, key: str, group: str) -> PendingSummary:
        async with self._turn:
            reply = await self.client.xpending(key, group)
        oldest, newest = reply.get("min"), reply.get("max")
        return PendingSummary(
            int(reply["pending"]), text(oldest) if oldest else None, text(newest) if newest else None
        )

    async def xinfo_groups(self, key: str) -> list[GroupInfo]:
        async with self._turn:
            return [group_info(raw) for raw in await self.client.xinfo_groups(key)]

    async def run_script(self, script: Script, keys: Sequence[str], args: Sequence[str | bytes | int]) -> Any:
        async with self._turn:
            try:
                return _value(await self.client.evalsha(script.sha, len(keys), *keys, *args))
            except redis.exceptions.NoScriptError:
                return _value(await self.client.eval(script.source, len(keys), *keys, *args))

    async def pipeline(self, commands: Sequence[PipelineCommand]) -> list[Any]:
        if not commands:
            return []
        pipe = self.client.pipeline(transaction=False)
        for command in commands:
            match command:
                case XAdd(key, fields, maxlen):
                    pipe.xadd(key, _fields(fields), maxlen=maxlen, approximate=True)
                case Set(key, value, px, get):
                    pipe.set(key, value, px=px, get=get)
                case PExpire(key, ms):
                    pipe.pexpire(key, ms)
                case Delete(keys):
                    pipe.delete(*keys)
                case Eval(script, keys, args):
                    pipe.eval(script.source, len(keys), *keys, *args)
        async with self._turn:
            results = await pipe.execute(raise_on_error=False)
        return [
            _normalise(command, _value(result)) for command, result in zip(commands, results, strict=True)
        ]

    async def publish(self, channel: str, message: bytes) -> int:
        async with self._turn:
            if self.cluster:
                return int(await self.client.spublish(channel, message))
            return int(await self.client.publish(channel, message))

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[bytes]]:
        if self.cluster:
            async with self._ssubscribe(channel) as messages:
                yield messages
            return
        pubsub = self.client.pubsub()
        try:
            with _translated():
                await pubsub.subscribe(channel)
                # Entered means subscribed: wait for Redis to confirm.
                while True:
                    confirmed = await pubsub.get_message(timeout=5.0)
                    if confirmed is None:
                        raise RedisUnavailable("SUBSCRIBE was not confirmed")
                    if confirmed["type"] == "subscribe":
                        break
            yield _Messages(pubsub)
        finally:
            with anyio.move_on_after(_CLOSE_TIMEOUT, shield=True):  # closed even when cancelled
                await pubsub.aclose()

    @asynccontextmanager
    async def _ssubscribe(self, channel: str) -> AsyncIterator[AsyncIterator[bytes]]:
        """SSUBSCRIBE on the node that owns *channel*'s slot (redis-py's ``ClusterPubSub``)."""
        pubsub = self.client.pubsub()
        try:
            with _translated():
                # A keyed command in the channel's slot: a MOVED reply (the slot moved since the
                # client last looked) updates the client's slot map before it subscribes.
                await self.client.exists(channel)
                node = self.client.get_node_from_key(channel)
                await pubsub.ssubscribe(channel)
                with anyio.fail_after(5.0):  # entered means subscribed: wait for Redis to confirm
                    while True:
                        confirmed = await pubsub.get_sharded_message(timeout=5.0, target_node=node)
                        if confirmed is not None and confirmed["type"] == "ssubscribe":
                            break
            yield _ShardedMessages(pubsub, node)
        except TimeoutError:
            raise RedisUnavailable("SSUBSCRIBE was not confirmed") from None
        finally:
            with anyio.move_on_after(_CLOSE_TIMEOUT, shield=True):  # closed even when cancelled
                await pubsub.aclose()


class _ShardedMessages:
    """A sharded subscription's payloads; ends when the node drops it (its slot moved)."""

    def __init__(self, pubsub: Any, node: Any) -> None:
        self._pubsub, self._node = pubsub, node

    def __aiter__(self) -> _ShardedMessages:
        return self

    async def __anext__(self) -> bytes:
        while True:
            with _translated():
                message = await self._pubsub.get_sharded_message(timeout=None, target_node=self._node)
            if message is None:
                if self._node.name not in self._pubsub.node_pubsub_mapping:
                    raise StopAsyncIteration  # redis-py dropped the node's subscription (slot moved)
                continue
            if message["type"] == "smessage":
                return message["data"]  # type: ignore[no-any-return]
            if message["type"] == "sunsubscribe":
                raise StopAsyncIteration


class _Messages:
    """A subscription's payloads (a class, not an async generator: nothing left to finalise)."""

    def __init__(self, pubsub: Any) -> None:
        self._pubsub = pubsub

    def __aiter__(self) -> _Messages:
        return self

    async def __anext__(self) -> bytes:
        while self._pubsub.subscribed:
            with _translated():
                message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
            if message is not None and message["type"] == "message":
                return message["data"]  # type: ignore[no-any-return]
        raise StopAsyncIteration


def _entries(reply: Any) -> list[Entry]:
    if isinstance(reply, dict):  # RESP3
        return [entry(i, f) for items in reply.values() for batch in items for i, f in batch]
    return [entry(identifier, fields) for _, items in reply or [] for identifier, fields in items]


def _fields(fields: Mapping[str, bytes]) -> dict[Any, Any]:
    return dict(fields)


def _normalise(command: PipelineCommand, result: Any) -> Any:
    if isinstance(result, BaseException):
        return result
    if isinstance(command, XAdd):
        return text(result)
    if isinstance(command, Set) and not command.get:
        return bool(result)
    return result


@asynccontextmanager
async def open_redispy(
    url: str,
    *,
    cluster: bool | None = None,
    connect_timeout: float = 1.0,
    stream_timeout: float | None = 10.0,
    max_connections: int = 64,
) -> AsyncIterator[RedisPyOps]:
    """A redis-py asyncio client for *url* (``redis[s]://``), closed on exit.

    *cluster*: True for a ``RedisCluster`` starting from that node, None to ask the
    server (``INFO cluster``) and take whichever fits.  The single-Redis pool blocks
    (up to *stream_timeout*) when all *max_connections* are busy, as coredis' does: a
    burst of callers waits its turn instead of failing.
    """
    if cluster is None:
        cluster = await _cluster_enabled(url, connect_timeout)
    if cluster:
        cluster_client = RedisCluster.from_url(
            url,
            decode_responses=False,
            socket_connect_timeout=connect_timeout,
            socket_timeout=stream_timeout,
            max_connections=max_connections,
        )
        try:
            yield RedisPyOps(cluster_client)
        finally:
            with anyio.move_on_after(_CLOSE_TIMEOUT, shield=True):  # closed even when cancelled
                await cluster_client.aclose()
        return
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=stream_timeout,
        decode_responses=False,
        socket_connect_timeout=connect_timeout,
        socket_timeout=stream_timeout,
    )
    client = redis.asyncio.Redis.from_pool(pool)
    try:
        yield RedisPyOps(client)
    finally:
        with anyio.move_on_after(_CLOSE_TIMEOUT, shield=True):  # closed even when cancelled
            await client.aclose()


async def _cluster_enabled(url: str, connect_timeout: float) -> bool:
    """Whether *url* names a Redis Cluster node (False when it cannot tell: not reachable)."""
    client = redis.asyncio.Redis.from_url(
        url, decode_responses=False, socket_connect_timeout=connect_timeout, socket_timeout=connect_timeout
    )
    try:
        with contextlib.suppress(redis.exceptions.RedisError, OSError):
            info = await client.info("cluster")
            return bool(info.get("cluster_enabled"))
        return False
    finally:
        with anyio.move_on_after(_CLOSE_TIMEOUT, shield=True):
            await client.aclose()
