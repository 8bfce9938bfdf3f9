"""The cluster adapter over Redis (design: ``shared/reference/redis-research.md`` section 3).

* Each node reads its own inbox stream through a consumer group (XREADGROUP) and acks
  an entry only after handing it to the node (:attr:`received`); after a restart it
  first drains its own pending entries (read but never acked by the previous run).
  Dedup by envelope id; entries past their deadline are dropped, never handed out late.
* A node's liveness key lives 3 heartbeats.  Delivery is one Lua script that XADDs only
  if the target's key exists, so a call to a dead node fails at once with
  :class:`~.adapter.NodeUnavailable`, and :meth:`wait_node_down` fails calls already
  in flight within the dead node's liveness TTL plus :data:`WATCH_INTERVAL` (the nodes
  with an envelope of ours before its deadline are polled that often, apart from our own
  heartbeat, so a caller learns of a death as soon as the key lapses; other watched nodes
  once a heartbeat).  Nothing is retried blindly.
* Presence ``<node>|<conn>|<token>`` per identity, claimed, refreshed and released by Lua
  conditional on ownership; the token (an INCR per identity) fences each new claim.
* Broadcast over pub/sub under a supervisor that subscribes again whenever the
  subscription ends or fails (coredis on trio can end one silently after a restart);
  sharded pub/sub (SPUBLISH / SSUBSCRIBE, Redis >= 7) on Redis Cluster.
* Redis Cluster: the keys a script touches share a hash slot (``{namespace:node}`` for a
  node's inbox and liveness key, ``{identity}`` for a presence and its token counter).
* The heartbeat's ``SET ... GET`` finds our own key gone (Redis restarted empty, flushed,
  or we were away longer than the TTL), or the inbox read finds its group gone (usually
  first: it reads again as soon as Redis answers): the liveness key is set, the inbox
  group recreated at ``0`` and the presence of every local identity claimed again
  (claim-if-free, never a blind SET).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.abc
import msgspec

from .adapter import (
    DEFAULT_HEARTBEAT,
    ClusterMetrics,
    ClusterUnavailable,
    Dedup,
    Envelope,
    NodeUnavailable,
    decode,
    encode,
    now_ms,
)
from .ops import Eval, NoGroup, RedisCommandError, RedisOps
from .ops_open import ClientChoice, client_url, open_ops
from .redis_presence import _PresenceClaims
from .redis_scripts import (
    _TRANSIENT,
    DELIVER,
    GROUP,
    OUTBOX_BATCH,
    WATCH_INTERVAL,
    _Out,
    _unavailable,
)

__all__ = ["RedisAdapter"]

logger = logging.getLogger(__name__)


class RedisAdapter(_PresenceClaims):
    """One node over Redis: ``async with RedisAdapter(url, node_id="node-a") as adapter``.

    Give *url* (the client is chosen for the backend: redis-py on asyncio, coredis on
    trio, or *prefer* one; ``redis+cluster://HOST:PORT`` for Redis Cluster, which a
    ``redis://`` URL naming a cluster node also gets), *client* (your own
    ``redis.asyncio.Redis`` / ``RedisCluster`` or ``coredis.Redis`` / ``RedisCluster``,
    left open), or *ops* (any :class:`~.ops.RedisOps`).  A malformed *url* is a
    ``ValueError`` here.
    *node_id* should be stable across restarts (the pod name): a restarted node drains
    what its previous run left pending.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        node_id: str,
        namespace: str = "default",
        client: Any = None,
        ops: RedisOps | None = None,
        prefer: ClientChoice = "auto",
        prefix: str = "ocpprpc",
        heartbeat: float = DEFAULT_HEARTBEAT,
        presence_ttl: float = 300.0,
        inbox_maxlen: int = 10_000,
        read_count: int = 256,
        block: float = 1.0,
    ) -> None:
        for name, value in (("node_id", node_id), ("namespace", namespace)):
            if not value or any(c in value for c in "|{}") or not value.isprintable():
                raise ValueError(f"{name} must be printable, non-empty, without '|', '{{' or '}}': {value!r}")
        if heartbeat <= 0 or presence_ttl <= 0 or block <= 0 or inbox_maxlen < 1 or read_count < 1:
            raise ValueError("heartbeat, presence_ttl, block, inbox_maxlen and read_count must be positive")
        if sum(x is not None for x in (url, client, ops)) != 1:
            raise ValueError("give exactly one of url, client or ops")
        if url is not None:
            client_url(url)  # a clear ValueError now, not at the first connection
        self.node_id = node_id
        self._url, self._client, self._ops_given, self._prefer = url, client, ops, prefer
        self.namespace = namespace
        self.heartbeat = heartbeat
        self.liveness_ttl_ms = int(heartbeat * 3000)
        self.presence_ttl_ms = int(presence_ttl * 1000)
        self.inbox_maxlen = inbox_maxlen
        self.read_count = read_count
        self.block_ms = int(block * 1000)
        self._prefix = prefix
        #: This run of the node (the liveness key's value).
        self.incarnation = uuid.uuid4().hex
        self._metrics = ClusterMetrics()
        self._dedup = Dedup()
        self._claims: dict[str, str] = {}
        self._watch: dict[str, anyio.Event] = {}
        #: Per node, the latest deadline (ms) of an envelope we delivered to it.
        self._busy_until: dict[str, int] = {}
        #: Set when a node is watched while none was (wakes :meth:`_watcher`).
        self._watched: anyio.Event | None = None
        # Room for one read: a batch is handed over at once (see _consume).
        self._send, self.received = anyio.create_memory_object_stream[Envelope](read_count)
        # Kicks for lost claims queue here: the heartbeat or a refresh never waits on the node.
        self._kicks, self._kicks_out = anyio.create_memory_object_stream[Envelope](float("inf"))
        self._outbox, self._outbox_out = anyio.create_memory_object_stream[_Out](float("inf"))
        self._stack: AsyncExitStack | None = None
        self._ops: RedisOps | None = None
        self._down = False
        self._beaten = False
        self._per_key_refresh = False

    # -- keys ---------------------------------------------------------------------------
    def inbox_key(self, node: str) -> str:
        return f"{self._prefix}:{{{self.namespace}:{node}}}:inbox"

    def alive_key(self, node: str) -> str:
        return f"{self._prefix}:{{{self.namespace}:{node}}}:alive"

    def presence_key(self, identity: str) -> str:
        return f"{self._prefix}:{self.namespace}:presence:{{{identity}}}"

    def token_key(self, identity: str) -> str:
        return f"{self._prefix}:{self.namespace}:token:{{{identity}}}"

    @property
    def channel(self) -> str:
        return f"{self._prefix}:{self.namespace}:broadcast"

    @property
    def ops(self) -> RedisOps:
        if self._ops is None:
            raise RuntimeError("use the adapter inside 'async with'")
        return self._ops

    # -- lifecycle ------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            try:
                if self._ops_given is not None:
                    self._ops = self._ops_given
                else:  # a cluster client finds its nodes here: it may fail already
                    self._ops = await stack.enter_async_context(
                        open_ops(self._url, client=self._client, prefer=self._prefer)
                    )
                # Redis Cluster: a REFRESH batch would span slots; one CLAIM per identity instead.
                self._per_key_refresh = self._ops.cluster
                await self._beat()
                await self._ensure_group()
            except _TRANSIENT as exc:
                raise _unavailable(exc) from exc
            group = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(group.cancel_scope.cancel)  # runs before the group's exit waits
            group.start_soon(self._consume)
            group.start_soon(self._watchdog)
            group.start_soon(self._watcher)
            group.start_soon(self._refresher)
            group.start_soon(self._forward_kicks)
            group.start_soon(self._write_outbox)
            await group.start(self._subscriber)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        assert self._stack is not None
        stack, self._stack = self._stack, None
        with anyio.move_on_after(1, shield=True):
            with contextlib.suppress(*_TRANSIENT):  # callers fail fast now, not after the TTL
                await self.ops.delete([self.alive_key(self.node_id)])
        try:
            return await stack.__aexit__(kind, exc, tb)
        finally:
            self._send.close()
            self._kicks.close()
            self._kicks_out.close()
            self._outbox.close()
            self._ops = None

    # -- inbox ----------------------------------------------------------------------------
    async def _ensure_group(self) -> None:
        # At "0", never "$": entries added between a Redis restart and now are not skipped.
        await self.ops.xgroup_create(self.inbox_key(self.node_id), GROUP, "0")

    async def _consume(self) -> None:
        inbox = self.inbox_key(self.node_id)
        start = "0"  # first our own pending entries: read by a previous run, never acked
        backoff = 0.1
        #: Handed off, not yet acked: acked in the same round trip as the next read.
        acks: list[str] = []
        reread = False
        while True:
            try:
                block = None if start == "0" else self.block_ms
                if acks:
                    acked, entries = await self.ops.xack_xreadgroup(
                        inbox, GROUP, self.node_id, start, ack=acks, count=self.read_count, block_ms=block
                    )
                    acks = []
                    if isinstance(acked, Exception):  # still pending: read again via "0" (duplicates)
                        self._count_failure(acked)
                        reread = True
                else:
                    entries = await self.ops.xreadgroup(
                        inbox, GROUP, self.node_id, start, count=self.read_count, block_ms=block
                    )
            except NoGroup:
                acks = []  # the group is gone, and its pending entries with it
                await self._repair_quietly()
                start = "0"
                continue
            except _TRANSIENT as exc:  # the acks (if any) are sent again with the next read
                self._count_failure(exc)
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = 0.1
            if reread:
                reread, start = False, "0"
            elif start == "0" and not entries:
                start = ">"
                continue
            for item in entries:
                env = self._accept(item.fields.get("e"))
                if env is not None:
                    try:  # the whole batch at once: the node takes it in one turn, not one per entry
                        self._send.send_nowait(env)
                    except anyio.WouldBlock:
                        await self._send.send(env)
                    self._metrics.received += 1
            await self._taken()  # the hand-off; acked after it
            acks = [item.id for item in entries]

    async def _taken(self) -> None:
        """Return once the node has taken every envelope handed to it (nothing left in the buffer).

        Only then are they acked: what a node that stops leaves untaken stays pending in Redis
        and is read again by its next run.
        """
        delay = 0.0
        while self._send.statistics().current_buffer_used:
            await anyio.sleep(delay)
            delay = min(delay * 2 or 0.0002, 0.005)

    def _accept(self, data: bytes | None) -> Envelope | None:
        if data is None:  # trimmed away while pending
            return None
        try:
            env = decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self._metrics.malformed += 1
            logger.warning("dropped a malformed envelope from the inbox of %s", self.node_id)
            return None
        if not self._dedup.first_time(env.id):
            self._metrics.duplicates += 1
            return None
        if env.dl < now_ms():
            self._metrics.expired += 1
            return None
        return env

    async def deliver(self, node: str, env: Envelope) -> None:
        """Through the outbox: envelopes delivered at the same time share one pipeline."""
        out = _Out(node, encode(env))
        try:
            self._outbox.send_nowait(out)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            raise ClusterUnavailable("the adapter is closed") from None
        await out.done.wait()
        if out.error is not None:
            self._metrics.unavailable += 1
            raise _unavailable(out.error) from out.error
        if not out.added:
            self._metrics.node_unavailable += 1
            raise NodeUnavailable(node)
        self._metrics.sent += 1
        if env.dl > self._busy_until.get(node, 0):
            self._busy_until[node] = env.dl  # its answer is awaited until then: watch it closely

    async def _write_outbox(self) -> None:
        """Send what callers deliver: one DELIVER alone, or all that queued meanwhile in one pipeline.

        Callers wait on their own entry; whatever the writer leaves behind when it stops
        (the adapter closing) fails with :class:`ClusterUnavailable`, never hangs.
        """
        try:
            async for first in self._outbox_out:
                batch = [first]
                with contextlib.suppress(anyio.WouldBlock):
                    while len(batch) < OUTBOX_BATCH:
                        batch.append(self._outbox_out.receive_nowait())
                try:
                    await self._write(batch)
                finally:
                    for out in batch:
                        out.done.set()
        finally:  # no checkpoint in here: nothing can be queued between the drain and the close
            with contextlib.suppress(anyio.EndOfStream, anyio.WouldBlock):
                while True:
                    self._outbox_out.receive_nowait().done.set()
            self._outbox_out.close()

    async def _write(self, batch: list[_Out]) -> None:
        commands = [
            Eval(DELIVER, [self.alive_key(out.node), self.inbox_key(out.node)], [self.inbox_maxlen, out.data])
            for out in batch
        ]
        try:
            if len(commands) == 1:  # EVALSHA: the script's source does not travel
                replies = [await self.ops.run_script(commands[0].script, commands[0].keys, commands[0].args)]
            else:
                replies = await self.ops.pipeline(commands)
        except _TRANSIENT as exc:
            for out in batch:
                out.error = exc
            return
        for out, reply in zip(batch, replies, strict=True):
            if isinstance(reply, Exception):
                out.error = reply
            else:
                out.error, out.added = None, reply is not None

    # -- liveness ---------------------------------------------------------------------------
    async def _beat(self) -> None:
        """Renew our liveness key; repair when it had vanished (Redis lost our data)."""
        old = await self.ops.set_get(
            self.alive_key(self.node_id), self.incarnation.encode(), px=self.liveness_ttl_ms
        )
        lost = self._beaten and old is None
        if lost or self._down:
            await self._repair()
        self._beaten = True
        self._down = False

    async def _repair(self) -> None:
        self._metrics.rehydrations += 1
        logger.info(
            "node %s: Redis lost our data or was away; recreating the group, claiming again", self.node_id
        )
        # Alive first (deliveries to us are taken again), then the group at "0" (what they add
        # meanwhile is read), then presence: callers find our stations once both are back.
        await self.ops.set(self.alive_key(self.node_id), self.incarnation.encode(), px=self.liveness_ttl_ms)
        await self._ensure_group()
        await self._renew_claims()
        self._down = False

    async def _repair_quietly(self) -> None:
        try:
            await self._repair()
        except _TRANSIENT as exc:
            self._count_failure(exc)
            await anyio.sleep(0.1)

    def _count_failure(self, exc: Exception) -> None:
        self._metrics.unavailable += 1
        if isinstance(exc, RedisCommandError):
            logger.warning("node %s: Redis refused a command: %s", self.node_id, exc)

    async def _watchdog(self) -> None:
        while True:
            await anyio.sleep(self.heartbeat)
            try:
                await self._beat()
            except _TRANSIENT as exc:
                self._count_failure(exc)
                self._down = True

    async def _watcher(self) -> None:
        """The liveness keys of the watched nodes: every WATCH_INTERVAL those with an envelope of
        ours still before its deadline (calls in flight), the others once a heartbeat."""
        every = max(1, round(self.heartbeat / WATCH_INTERVAL))
        tick = 0
        while True:
            if not self._watch:
                self._watched = watched = anyio.Event()
                await watched.wait()
            await anyio.sleep(WATCH_INTERVAL)
            tick += 1
            now = now_ms()
            if tick % every == 0:
                self._busy_until = {node: dl for node, dl in self._busy_until.items() if dl >= now}
                nodes = list(self._watch)
            else:
                nodes = [node for node in self._watch if self._busy_until.get(node, 0) >= now]
            with contextlib.suppress(*_TRANSIENT):  # counted by the watchdog; tried again
                await self._check_watched(nodes)

    async def _check_watched(self, nodes: list[str]) -> None:
        if not nodes:
            return
        values = await self.ops.mget([self.alive_key(node) for node in nodes])
        for node, value in zip(nodes, values, strict=True):
            if value is None and node in self._watch:
                self._watch.pop(node).set()

    async def node_alive(self, node: str) -> bool:
        try:
            return await self.ops.get(self.alive_key(node)) is not None
        except _TRANSIENT as exc:
            raise _unavailable(exc) from exc

    async def wait_node_down(self, node: str) -> None:
        event = self._watch.setdefault(node, anyio.Event())
        if self._watched is not None:
            self._watched.set()
        await event.wait()

    # -- broadcast --------------------------------------------------------------------------
    async def broadcast(self, env: Envelope) -> None:
        try:
            await self.ops.publish(self.channel, encode(env))
        except _TRANSIENT as exc:
            self._metrics.unavailable += 1
            raise _unavailable(exc) from exc
        self._metrics.broadcasts_sent += 1

    async def _subscriber(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Subscribed for as long as the adapter runs: a subscription that ends is made again."""
        started = False
        backoff = 0.05
        while True:
            try:
                async with self.ops.subscribe(self.channel) as messages:
                    backoff = 0.05
                    if not started:
                        started = True
                        task_status.started()
                    async for data in messages:
                        env = self._accept(data)
                        if env is not None and env.src != self.node_id:
                            self._metrics.broadcasts_received += 1
                            await self._send.send(env)
            except Exception as exc:
                logger.info(
                    "node %s: broadcast subscription failed (%r); subscribing again", self.node_id, exc
                )
            self._metrics.subscriber_restarts += 1
            if not started:  # Redis was down at start: do not hold the start up
                started = True
                task_status.started()
            await anyio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    # -- metrics --------------------------------------------------------------------------
    async def metrics(self) -> ClusterMetrics:
        """The counters, and the inbox figures read now (``None`` where Redis does not say)."""
        inbox = self.inbox_key(self.node_id)
        metrics = self._metrics
        metrics.inbox_lag = metrics.inbox_pending = metrics.oldest_pending_ms = None
        try:
            groups = await self.ops.xinfo_groups(inbox)
            pending = await self.ops.xpending(inbox, GROUP)
        except _TRANSIENT:
            return metrics  # unknown: never the figures of an earlier read shown as current
        for group in groups:
            if group.name == GROUP:
                metrics.inbox_lag = group.lag
                metrics.inbox_pending = group.pending
        if pending.oldest_id is not None:
            metrics.oldest_pending_ms = max(0, now_ms() - int(pending.oldest_id.partition("-")[0]))
        return metrics
