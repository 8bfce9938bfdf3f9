"""Calling stations from a process that holds none: a web worker, a scheduler, a script.

``async with ClusterClient("redis://...") as client:`` joins the cluster as a caller
only -- a node with an inbox for replies, no listener, no stations, no presence of its
own -- and offers what a server offers for commanding:
:meth:`~ClusterClient.send_to_client`, :meth:`~ClusterClient.try_send_to_client`,
:meth:`~ClusterClient.broadcast`, and presence lookups (:meth:`~ClusterClient.where`).
The calling is :class:`~.cluster_caller.ClusterCaller`'s, the same as a server's
:class:`~.cluster_delivery.ClusterDelivery` uses, so the outcomes are the same.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.abc

from ..cluster.adapter import (
    DEFAULT_HEARTBEAT,
    ClusterAdapter,
    ClusterError,
    ClusterUnavailable,
    Envelope,
    Kind,
    Presence,
    envelope,
)
from ..cluster.ops_open import ClientChoice, client_url, open_ops
from ..cluster.redis_adapter import RedisAdapter
from .cluster_caller import ClusterCaller
from .delivery import SendOutcome, broadcast, try_send

__all__ = ["ClusterClient", "transient_redis_adapter"]

log = logging.getLogger(__name__)


@asynccontextmanager
async def transient_redis_adapter(
    url: str,
    *,
    node_id: str,
    namespace: str,
    prefer: ClientChoice = "auto",
    heartbeat: float = DEFAULT_HEARTBEAT,
) -> AsyncIterator[RedisAdapter]:
    """A Redis adapter for a node that will not come back under its name (a caller, a ``HOSTNAME-PID``
    node): its inbox, a stream nobody would read again, is removed from Redis when it leaves."""
    async with open_ops(url, prefer=prefer) as ops:
        adapter = RedisAdapter(ops=ops, node_id=node_id, namespace=namespace, heartbeat=heartbeat)
        try:
            async with adapter:
                yield adapter
        finally:
            with anyio.move_on_after(1, shield=True), contextlib.suppress(Exception):  # Redis gone: it stays
                await ops.delete([adapter.inbox_key(node_id)])


class ClusterClient:
    """A caller-only member of the cluster (see the module docstring).

    :param adapter: a cluster adapter you entered yourself (``MemoryCluster().node(...)``,
        a :class:`~ocpprpc.RedisAdapter`), or a Redis URL (``redis://HOST:PORT/DB``,
        ``redis+cluster://HOST:PORT`` for Redis Cluster): the client then runs its own
        Redis adapter (node id *node_id*, default ``client-<random>``) and removes its
        inbox from Redis when it leaves.
    :param namespace: with a URL: the cluster's namespace (the servers' ``namespace``).
    :param prefer: with a URL: which Redis client (``"auto"``: redis-py on asyncio, coredis on trio).
    :param call_timeout: seconds a call waits when given no timeout.
    :param grace: extra seconds for a reply to travel back.
    """

    def __init__(
        self,
        adapter: ClusterAdapter | str,
        *,
        node_id: str | None = None,
        namespace: str = "default",
        prefer: ClientChoice = "auto",
        call_timeout: float = 30.0,
        grace: float = 2.0,
    ) -> None:
        if isinstance(adapter, str):
            client_url(adapter)  # a malformed URL is a ValueError now
            self._url: str | None = adapter
            self.node_id = node_id or f"client-{uuid.uuid4().hex[:16]}"
            self._adapter: ClusterAdapter | None = None
        else:
            if node_id is not None:
                raise ValueError("node_id is the adapter's own when an adapter is given")
            self._url = None
            self.node_id = adapter.node_id
            self._adapter = adapter
        self.namespace = namespace
        self._prefer: ClientChoice = prefer
        self._call_timeout = call_timeout
        self._grace = grace
        if call_timeout <= 0 or grace < 0:
            raise ValueError("call_timeout must be positive and grace not negative")
        self._caller: ClusterCaller | None = None
        self._stack: AsyncExitStack | None = None

    @property
    def adapter(self) -> ClusterAdapter:
        if self._adapter is None or self._caller is None:
            raise RuntimeError("use the ClusterClient inside 'async with'")
        return self._adapter

    @property
    def caller(self) -> ClusterCaller:
        if self._caller is None:
            raise RuntimeError("use the ClusterClient inside 'async with'")
        return self._caller

    async def __aenter__(self) -> Self:
        if self._stack is not None:
            raise RuntimeError("this ClusterClient is already entered")
        stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            if self._url is not None:
                try:
                    self._adapter = await stack.enter_async_context(
                        transient_redis_adapter(
                            self._url, node_id=self.node_id, namespace=self.namespace, prefer=self._prefer
                        )
                    )
                except BaseExceptionGroup as failures:  # coredis' task group wraps it
                    unavailable, _ = failures.split(ClusterUnavailable)
                    if unavailable is None:
                        raise
                    raise _first(unavailable) from None
            assert self._adapter is not None
            self._caller = ClusterCaller(self._adapter, call_timeout=self._call_timeout, grace=self._grace)
            group = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(group.cancel_scope.cancel)  # runs before the group's exit waits
            stack.enter_context(self._caller.serve(group))
            group.start_soon(self._receive, self._adapter, self._caller, group)
        except BaseException:
            self._caller = None
            await stack.aclose()
            raise
        self._stack = stack
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        assert self._stack is not None
        stack, self._stack = self._stack, None
        try:
            return await stack.__aexit__(kind, exc, tb)
        finally:
            self._caller = None
            if self._url is not None:
                self._adapter = None

    async def _receive(
        self, adapter: ClusterAdapter, caller: ClusterCaller, group: anyio.abc.TaskGroup
    ) -> None:
        async for env in adapter.received:
            if env.k in (Kind.RESULT, Kind.ERROR):
                caller.on_reply(env)
            elif env.k is Kind.CALL:  # nobody should call us; answer at once rather than let it wait
                group.start_soon(self._refuse, adapter, env)
            # broadcasts and kicks: nothing here to act on

    async def _refuse(self, adapter: ClusterAdapter, env: Envelope) -> None:
        reply = envelope(
            Kind.ERROR,
            adapter.node_id,
            env.dst,
            timeout=self._grace,
            corr=env.id,
            p={"kind": "not_connected"},
        )
        try:
            await adapter.deliver(env.src, reply)
        except ClusterError as exc:
            log.info("refusal to %s for %r not delivered: %s", env.src, env.dst, exc)

    # -- commanding stations --------------------------------------------------------------
    async def send_to_client(
        self,
        identity: str,
        request: Any,
        payload: Any = None,
        /,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 (bounds the answer, like call())
    ) -> Any:
        """Call the station *identity* wherever it is connected; return its answer.

        Raises what :meth:`Server.send_to_client <ocpprpc.Server.send_to_client>` raises:
        :class:`~ocpprpc.StationNotConnected`, :class:`~ocpprpc.CallTimeout`,
        :class:`~ocpprpc.OCPPError` (the station's CALLERROR), ``ConnectionLost``,
        :class:`~ocpprpc.NodeUnavailable` (its node died: outcome unknown) and
        :class:`~ocpprpc.ClusterUnavailable` (Redis unreachable: nothing sent).
        """
        return await self.caller.call(identity, request, payload, timeout)

    async def try_send_to_client(
        self,
        identity: str,
        request: Any,
        payload: Any = None,
        /,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 (bounds the answer, like call())
    ) -> SendOutcome:
        """Like :meth:`send_to_client`, every outcome returned as a :class:`~ocpprpc.SendOutcome`."""
        return await try_send(self.caller, identity, request, payload, timeout)

    async def broadcast(
        self,
        identities: Iterable[str],
        request: Any,
        payload: Any = None,
        /,
        *,
        concurrency: int = 32,
        timeout: float | None = None,  # noqa: ASYNC109 (bounds each answer, like call())
    ) -> dict[str, SendOutcome]:
        """Call every station in *identities*, at most *concurrency* at once; one outcome each."""
        return await broadcast(
            self.caller, identities, request, payload, concurrency=concurrency, timeout=timeout
        )

    # -- presence ---------------------------------------------------------------------------
    async def where(self, identity: str) -> Presence | None:
        """Which node (and connection) holds *identity* now; ``None`` if none does."""
        return await self.adapter.presence(identity)

    async def where_many(self, identities: Iterable[str]) -> Mapping[str, Presence | None]:
        """:meth:`where` for many identities in one round trip."""
        return await self.adapter.presences(identities)

    async def is_connected(self, identity: str) -> bool:
        """Whether some node holds *identity* (and that node is alive)."""
        found = await self.where(identity)
        return found is not None and await self.adapter.node_alive(found.node)


def _first(group: BaseException) -> BaseException:
    while isinstance(group, BaseExceptionGroup):
        group = group.exceptions[0]
    return group
