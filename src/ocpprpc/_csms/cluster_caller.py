"""The caller half of clustering: call a station held by another node, and wait for its reply.

Shared by :class:`~.cluster_delivery.ClusterDelivery` (a server: its own sessions first,
then this) and :class:`~.cluster_client.ClusterClient` (a caller that holds no station):
look the station's presence up, put a CALL envelope in the holding node's inbox, and
wait for the RESULT / ERROR envelope that node sends back to ours -- or for that node to
be seen dead, which fails the call at once with :class:`NodeUnavailable` (outcome unknown,
never retried).  Whoever owns the adapter's :attr:`~.ClusterAdapter.received` stream hands
replies in through :meth:`ClusterCaller.on_reply`.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import msgspec

from .._engine.errors import OCPPError
from .._rpc.session import CallTimeout, InvalidResponseError
from .._ws.transport import ConnectionLost
from ..cluster.adapter import (
    ClusterAdapter,
    ClusterError,
    Envelope,
    Kind,
    NodeUnavailable,
    Presence,
    envelope,
)
from .delivery import StationNotConnected

__all__ = ["ROUTE_TTL", "ClusterCaller", "error_from_reply"]

#: Seconds a station's presence, once read, is reused for calls to it (a burst of calls skips
#: the lookup's round trip).  A stale route costs one more lookup, never a lost or doubled
#: call: the node without the station answers "not connected" without calling anything, and a
#: dead node takes nothing.
ROUTE_TTL = 1.0


@dataclass(eq=False)
class _Pending:
    node: str
    event: anyio.Event = field(default_factory=anyio.Event)
    reply: Envelope | None = None
    node_down: bool = False


class _Routes:
    """Identity -> presence, for *ttl* seconds, at most *size* of them (oldest dropped first)."""

    def __init__(self, ttl: float, size: int = 10_000) -> None:
        self._ttl, self._size = ttl, size
        self._entries: OrderedDict[str, tuple[float, Presence]] = OrderedDict()

    def get(self, identity: str) -> Presence | None:
        entry = self._entries.get(identity)
        if entry is None:
            return None
        if entry[0] < time.monotonic():
            del self._entries[identity]
            return None
        return entry[1]

    def put(self, identity: str, presence: Presence) -> None:
        if self._ttl <= 0:
            return
        self._entries[identity] = (time.monotonic() + self._ttl, presence)
        self._entries.move_to_end(identity)
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def forget(self, identity: str, presence: Presence | None) -> None:
        """Drop *identity*'s route (only if it is still *presence*, when given: fencing)."""
        entry = self._entries.get(identity)
        if entry is not None and (presence is None or entry[1] == presence):
            del self._entries[identity]


class _Undelivered(NodeUnavailable):
    """The node was dead before the call reached its inbox: nothing was sent."""


def _not_connected(reply: Envelope) -> bool:
    return reply.k is Kind.ERROR and isinstance(reply.p, dict) and reply.p.get("kind") == "not_connected"


class ClusterCaller:
    """Calls through *adapter* to the node holding a station; replies come in by :meth:`on_reply`.

    :param call_timeout: used when a call is given no timeout.
    :param grace: extra seconds a caller waits beyond the call's timeout for the reply to travel.
    """

    def __init__(self, adapter: ClusterAdapter, *, call_timeout: float = 30.0, grace: float = 2.0) -> None:
        if call_timeout <= 0 or grace < 0:
            raise ValueError("call_timeout must be positive and grace not negative")
        self.adapter = adapter
        self.call_timeout = call_timeout
        self.grace = grace
        #: Calls waiting for their reply, by envelope id.
        self.pending: dict[str, _Pending] = {}
        #: Where the node watchers run: the owner's task group, set while it serves.
        self.watchers: anyio.abc.TaskGroup | None = None
        self._waiting: dict[str, set[_Pending]] = {}
        self._routes = _Routes(ROUTE_TTL)

    async def call(
        self,
        identity: str,
        request: Any,
        payload: Any,
        timeout: float | None,  # noqa: ASYNC109 (bounds the answer, like call())
        *,
        presence: Presence | None = None,
    ) -> Any:
        """Call *identity* on the node its presence names (looked up, or reused, unless given)."""
        if isinstance(request, str):
            action, params, response_type = request, ({} if payload is None else payload), None
        else:
            action = type(request).__ocpp_action__
            params = msgspec.to_builtins(request)
            response_type = type(request).__ocpp_response__
        limit = self.call_timeout if timeout is None else timeout
        cached = False
        if presence is None:
            presence = self._routes.get(identity)
            cached = presence is not None
            if presence is None:
                presence = await self._resolve(identity)
        elif presence.node == self.adapter.node_id:
            raise StationNotConnected(identity)  # ours but not in our sessions: stale, gone
        env = envelope(Kind.CALL, self.adapter.node_id, identity, timeout=limit, m=action, p=params)
        reply: Envelope | None
        try:
            reply = await self._call_node(presence.node, env, limit)
        except NodeUnavailable as exc:
            self._routes.forget(identity, presence)
            if not (cached and isinstance(exc, _Undelivered)):
                raise
            reply = None  # the route was stale (cached): the call went nowhere
        if reply is None or (cached and _not_connected(reply)):
            # A stale route (the station moved, or its node died): the call was not made
            # anywhere, so asking presence again and sending it once more is safe.
            self._routes.forget(identity, presence)
            fresh = await self._resolve(identity)
            env = envelope(Kind.CALL, self.adapter.node_id, identity, timeout=limit, m=action, p=params)
            reply = await self._call_node(fresh.node, env, limit)
        if reply.k is Kind.RESULT:
            return reply.p if response_type is None else msgspec.convert(reply.p, response_type)
        if _not_connected(reply):
            self._routes.forget(identity, None)
        raise error_from_reply(identity, action, env.id, limit, reply.p)

    async def _resolve(self, identity: str) -> Presence:
        """Where *identity* is held now (from the medium), remembered for a moment."""
        presence = await self.adapter.presence(identity)
        if presence is None or presence.node == self.adapter.node_id:
            raise StationNotConnected(identity)  # ours but not in our sessions: stale, gone
        self._routes.put(identity, presence)
        return presence

    async def _call_node(self, node: str, env: Envelope, limit: float) -> Envelope:
        """Send *env* to *node* and wait for its reply; :class:`NodeUnavailable` if it is dead or dies."""
        pending = self.pending[env.id] = _Pending(node)
        try:
            try:
                await self.adapter.deliver(node, env)
            except NodeUnavailable as exc:
                raise _Undelivered(node) from exc
            calls = self._watched(node)
            calls.add(pending)
            try:
                with anyio.move_on_after(limit + self.grace):
                    await pending.event.wait()
            finally:
                calls.discard(pending)
        finally:
            del self.pending[env.id]
        if pending.reply is None:
            if pending.node_down:
                raise NodeUnavailable(node, f"it died while calling {env.dst!r}")
            raise CallTimeout(env.m, env.id, limit)
        return pending.reply

    def _watched(self, node: str) -> set[_Pending]:
        """The calls waiting on *node*, failed together when it is seen dead (one watcher per node)."""
        calls = self._waiting.get(node)
        if calls is None:
            if self.watchers is None:
                raise RuntimeError("the ClusterCaller's owner has not started it (no watchers task group)")
            calls = self._waiting[node] = set()
            self.watchers.start_soon(self._watch_node, node, calls)
        return calls

    async def _watch_node(self, node: str, calls: set[_Pending]) -> None:
        await self.adapter.wait_node_down(node)
        if self._waiting.get(node) is calls:  # calls from now on watch it anew
            del self._waiting[node]
        for pending in calls:
            pending.node_down = True
            pending.event.set()

    @contextmanager
    def serve(self, group: anyio.abc.TaskGroup) -> Iterator[None]:
        """Run node watchers in *group* for the duration of the block (the owner's serving)."""
        self.watchers = group
        try:
            yield
        finally:
            self.watchers = None
            self._waiting.clear()

    def on_reply(self, env: Envelope) -> None:
        """Hand a RESULT or ERROR envelope to the call waiting for it (a stray one is dropped)."""
        pending = self.pending.get(env.corr)
        if pending is not None:
            pending.reply = env
            pending.event.set()


def error_from_reply(identity: str, action: str, call_id: str, timeout: float, detail: Any) -> Exception:
    """The exception a local call would have raised, from a remote node's error reply."""
    info = detail if isinstance(detail, dict) else {}
    kind = info.get("kind")
    description = str(info.get("description", ""))
    if kind == "ocpp":
        try:
            return OCPPError(str(info.get("code")), description, info.get("details") or {})
        except ValueError:
            pass
    elif kind == "not_connected":
        return StationNotConnected(identity)
    elif kind == "timeout":
        return CallTimeout(action, call_id, timeout)
    elif kind == "connection_lost":
        return ConnectionLost(None, description)
    elif kind == "invalid_response":
        try:
            return InvalidResponseError(action, call_id, OCPPError(str(info.get("code"))).code, description)
        except ValueError:
            pass
    elif kind == "failed":
        return ClusterError(f"the node holding {identity!r} could not make the call: {description}")
    return ClusterError(f"unreadable error reply for {identity!r}: {detail!r}")
