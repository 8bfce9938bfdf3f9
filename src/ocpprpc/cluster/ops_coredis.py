""":class:`~.ops.RedisOps` on coredis: anyio-native, so the same code serves trio and asyncio.

coredis clients, pipelines and subscriptions are async context managers that own
tasks, so :func:`open_coredis` is one too.  The retry policy retries a command once on
a lost connection (a pooled connection found dead after a Redis restart) and then
reports :class:`~.ops.RedisUnavailable`: the adapter decides what to do, never an
endless retry inside the client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from typing import Any
from urllib.parse import unquote, urlsplit

import anyio
import coredis
import coredis.exceptions
from coredis.response.types import StreamPending
from coredis.retry import ConstantRetryPolicy

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

__all__ = ["CoredisOps", "open_coredis"]

_LOST = (
    coredis.exceptions.ConnectionError,
    TimeoutError,
    OSError,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
)


_TEARDOWN = (anyio.ClosedResourceError, anyio.BrokenResourceError)
_SUBSCRIPTION_RETRY = ConstantRetryPolicy((coredis.exceptions.ConnectionError,), retries=3, delay=0.1)


def _unavailable(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_unavailable(inner) for inner in exc.exceptions)
    return isinstance(exc, _LOST)


@contextmanager
def _translated() -> Iterator[None]:
    """coredis' failures as the three exceptions of :mod:`.ops`."""
    try:
        yield
    except coredis.exceptions.StreamConsumerGroupError as exc:
        if isinstance(exc, coredis.exceptions.StreamDuplicateConsumerGroupError):
            raise RedisCommandError(str(exc)) from exc
        raise NoGroup(str(exc)) from exc
    except coredis.exceptions.ResponseError as exc:
        if str(exc).startswith("NOGROUP"):
            raise NoGroup(str(exc)) from exc
        raise RedisCommandError(str(exc)) from exc
    except Exception as exc:
        if _unavailable(exc):
            raise RedisUnavailable(f"Redis unavailable: {exc!r}") from exc
        raise


def _value(reply: Any) -> Any:
    """A reply as the interface promises: lists for sequences, Exceptions translated."""
    if isinstance(reply, tuple):
        return [_value(item) for item in reply]
    if isinstance(reply, coredis.exceptions.ResponseError):
        return RedisCommandError(str(reply))
    if isinstance(reply, BaseException):
        return RedisUnavailable(repr(reply)) if _unavailable(reply) else reply
    return reply


class CoredisOps:
    """The operations on one ``coredis.Redis`` or ``coredis.RedisCluster`` (opened by :func:`open_coredis`).

    On a cluster, coredis splits MGET and DEL across slots itself (``non_atomic_cross_slot``).
    """

    def __init__(self, client: coredis.Redis[bytes] | coredis.RedisCluster[bytes]) -> None:
        self.cluster = isinstance(client, coredis.RedisCluster)
        self.client = client

    async def ping(self) -> None:
        with _translated():
            await self.client.ping()

    async def get(self, key: str) -> bytes | None:
        with _translated():
            return await self.client.get(key)

    async def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        with _translated():
            return list(await self.client.mget(keys))

    async def set(self, key: str, value: bytes, *, px: int | None = None, nx: bool = False) -> bool:
        with _translated():
            done = await self.client.set(key, value, px=px, condition=coredis.PureToken.NX if nx else None)
        return bool(done)

    async def set_get(self, key: str, value: bytes, *, px: int | None = None) -> bytes | None:
        with _translated():
            old = await self.client.set(key, value, px=px, get=True)
        return old if isinstance(old, bytes) else None

    async def delete(self, keys: Sequence[str]) -> int:
        with _translated():
            return await self.client.delete(keys)

    async def pexpire(self, key: str, ms: int) -> bool:
        with _translated():
            return await self.client.pexpire(key, ms)

    async def xadd(self, key: str, fields: Mapping[str, bytes], *, maxlen: int | None = None) -> str:
        with _translated():
            identifier = await self.client.xadd(key, fields, **_trim(maxlen))
        assert identifier is not None  # only NOMKSTREAM makes it None
        return text(identifier)

    async def xgroup_create(self, key: str, group: str, start_id: str = "0") -> bool:
        try:
            with _translated():
                return await self.client.xgroup_create(key, group, start_id, mkstream=True)
        except RedisCommandError as exc:
            if "BUSYGROUP" in str(exc) or "already exists" in str(exc):
                return False
            raise

    async def xreadgroup(
        self, key: str, group: str, consumer: str, start_id: str, *, count: int, block_ms: int | None = None
    ) -> list[Entry]:
        with _translated():
            reply = await self.client.xreadgroup(
                group, consumer, {key: start_id}, count=count, block=block_ms
            )
        return _entries(reply)

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
        acked: int | Exception
        with _translated():
            async with self.client.pipeline(transaction=False, raise_on_error=False) as pipe:
                ack_request = pipe.xack(key, group, ack)
                read_request = pipe.xreadgroup(group, consumer, {key: start_id}, count=count, block=block_ms)
            try:
                acked = await ack_request
            except Exception as exc:  # raise_on_error=False returns most failures, not all
                acked = exc
            reply = await read_request
            if isinstance(reply, BaseException):
                raise reply
        return (_value(acked) if isinstance(acked, BaseException) else int(acked)), _entries(reply)

    async def xack(self, key: str, group: str, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        with _translated():
            return await self.client.xack(key, group, ids)

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
        with _translated():
            reply = await self.client.xautoclaim(key, group, consumer, min_idle_ms, start_id, count=count)
        cursor, items = reply[0], reply[1]
        return text(cursor), [entry(item.identifier, item.field_values) for item in items if item is not None]

    async def xpending(self, key: str, group: str) -> PendingSummary:
        with _translated():
            reply = await self.client.xpending(key, group)
        assert isinstance(reply, StreamPending)
        oldest, newest = reply.minimum_identifier, reply.maximum_identifier
        return PendingSummary(
            reply.pending, text(oldest) if oldest else None, text(newest) if newest else None
        )

    async def xinfo_groups(self, key: str) -> list[GroupInfo]:
        with _translated():
            return [group_info(raw) for raw in await self.client.xinfo_groups(key)]

    async def run_script(self, script: Script, keys: Sequence[str], args: Sequence[str | bytes | int]) -> Any:
        with _translated():
            try:
                return _value(await self.client.evalsha(script.sha, keys, args))
            except coredis.exceptions.NoScriptError:
                return _value(await self.client.eval(script.source, keys, args))

    async def pipeline(self, commands: Sequence[PipelineCommand]) -> list[Any]:
        if not commands:
            return []
        with _translated():
            async with self.client.pipeline(transaction=False, raise_on_error=False) as pipe:
                pending = [_queue(pipe, command) for command in commands]
            results = []
            for request in pending:
                try:
                    results.append(_value(await request))
                except Exception as exc:  # raise_on_error=False keeps most, not all
                    results.append(_value(exc))
        return [_normalise(command, result) for command, result in zip(commands, results, strict=True)]

    async def publish(self, channel: str, message: bytes) -> int:
        with _translated():
            if self.cluster:
                return int(await self.client.spublish(channel, message))
            return int(await self.client.publish(channel, message))

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[bytes]]:
        try:
            with _translated():
                # A bounded retry: a subscription that cannot be restored ends (raises) promptly,
                # and the adapter's supervisor subscribes again -- never an endless silent retry.
                client = self.client
                if isinstance(client, coredis.RedisCluster):
                    # A keyed command in the channel's slot: a MOVED reply (the slot moved since
                    # the client last looked) updates the client's slot map before it subscribes.
                    await client.exists([channel])
                subscribe: Any = (
                    client.sharded_pubsub if isinstance(client, coredis.RedisCluster) else client.pubsub
                )
                # Sharded: the subscribe messages are wanted, a SUNSUBSCRIBE from Redis (the slot
                # moved) ends the iterator, so the supervisor subscribes again at the new owner.
                async with subscribe(
                    channels=[channel],
                    ignore_subscribe_messages=not self.cluster,
                    retry_policy=_SUBSCRIPTION_RETRY,
                ) as pubsub:
                    yield _Messages(pubsub)
        except BaseExceptionGroup as group:
            # coredis 6.9 unsubscribes on a connection it already closed when the
            # subscription is cancelled (ClosedResourceError from its cleanup, next to
            # the cancellation): noise of its teardown, dropped; the rest goes on.
            _, rest = group.split(_TEARDOWN)
            if rest is None:
                raise RedisUnavailable("the subscription's connection closed") from group
            if rest is group:
                raise
            raise rest from None


class _Messages:
    """A subscription's payloads (a class, not an async generator: nothing left to finalise)."""

    def __init__(self, pubsub: Any) -> None:
        self._pubsub = pubsub

    def __aiter__(self) -> _Messages:
        return self

    async def __anext__(self) -> bytes:
        while True:
            with _translated():
                message = await self._pubsub.__anext__()
            if message["type"] in ("message", "smessage") and isinstance(message["data"], bytes):
                return message["data"]
            if message["type"] == "sunsubscribe":
                raise StopAsyncIteration


def _trim(maxlen: int | None) -> dict[str, Any]:
    if maxlen is None:
        return {}
    return {
        "trim_strategy": coredis.PureToken.MAXLEN,
        "threshold": maxlen,
        "trim_operator": coredis.PureToken.APPROXIMATELY,
    }


def _entries(reply: Any) -> list[Entry]:
    if not reply:
        return []
    return [entry(item.identifier, item.field_values) for items in reply.values() for item in items]


def _queue(pipe: Any, command: PipelineCommand) -> Any:
    match command:
        case XAdd(key, fields, maxlen):
            return pipe.xadd(key, fields, **_trim(maxlen))
        case Set(key, value, px, get):
            return pipe.set(key, value, px=px, get=True if get else None)
        case PExpire(key, ms):
            return pipe.pexpire(key, ms)
        case Delete(keys):
            return pipe.delete(keys)
        case Eval(script, keys, args):
            # EVAL, not EVALSHA: a pipeline cannot load a forgotten script halfway.
            return pipe.eval(script.source, keys, args)


def _normalise(command: PipelineCommand, result: Any) -> Any:
    if isinstance(result, BaseException):
        return result
    if isinstance(command, XAdd):
        return text(result)
    if isinstance(command, Set) and not command.get:
        return bool(result)
    return result


@asynccontextmanager
async def open_coredis(
    url: str,
    *,
    cluster: bool | None = None,
    connect_timeout: float = 1.0,
    stream_timeout: float | None = 10.0,
    max_connections: int | None = 32,
) -> AsyncIterator[CoredisOps]:
    """A coredis client for *url* (``redis[s]://host:port/db``), as :class:`CoredisOps`.

    *cluster*: True for a ``RedisCluster`` starting from that node, None to ask the
    server (``INFO cluster``) and take whichever fits.
    """
    options: dict[str, Any] = {
        "decode_responses": False,
        "connect_timeout": connect_timeout,
        "stream_timeout": stream_timeout,
        "max_connections": max_connections,
        "retry_policy": ConstantRetryPolicy((coredis.exceptions.ConnectionError,), retries=1, delay=0.05),
    }
    if cluster is None:
        cluster = await _cluster_enabled(url, connect_timeout)
    client: coredis.Redis[bytes] | coredis.RedisCluster[bytes]
    if cluster:  # not from_url: coredis 6.9's warns (DeprecationWarning) on its own startup nodes
        parts = urlsplit(url)
        if parts.query:
            raise ValueError(
                "URL options (?...) are not read for Redis Cluster on coredis: "
                "pass your own coredis.RedisCluster client instead"
            )
        client = coredis.RedisCluster(
            parts.hostname,
            parts.port or 6379,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            ssl=parts.scheme == "rediss",
            **options,
        )
    else:
        client = coredis.Redis.from_url(url, **options)
    async with AsyncExitStack() as stack:
        try:
            await stack.enter_async_context(client)
        except Exception as exc:  # a cluster client that cannot reach any node fails on entry
            if cluster and _unavailable_cluster(exc):
                raise RedisUnavailable(f"Redis unavailable: {exc!r}") from exc
            raise
        yield CoredisOps(client)  # what the body raises goes through as it is


def _unavailable_cluster(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_unavailable_cluster(inner) for inner in exc.exceptions)
    return isinstance(exc, (*_LOST, coredis.exceptions.RedisClusterError))


async def _cluster_enabled(url: str, connect_timeout: float) -> bool:
    """Whether *url* names a Redis Cluster node (False when it cannot tell: not reachable)."""
    probe: coredis.Redis[bytes] = coredis.Redis.from_url(
        url, decode_responses=False, connect_timeout=connect_timeout, stream_timeout=connect_timeout
    )
    try:
        async with probe:
            info = await probe.info("cluster")
    except Exception:
        return False
    return bool(info.get("cluster_enabled"))
