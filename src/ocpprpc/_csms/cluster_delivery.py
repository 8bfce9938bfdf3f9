"""Commanding stations held by other processes: the :class:`~.delivery.Delivery` over a cluster adapter.

``async with cluster_delivery(server, adapter):`` makes the server's
``send_to_client`` / ``try_send_to_client`` / ``broadcast`` reach every station of the
cluster: a station connected here is called directly; otherwise its presence names
the node holding it, the call goes to that node's inbox, that node calls its session
and replies to ours.  Presence follows the server's own connection events (the
security-event hub), so nothing in the server changes.  Where a station is, once read,
is reused for :data:`ROUTE_TTL` (calls in a burst skip the lookup's round trip).

Outcomes stay those of a local call (the answer, :class:`~ocpprpc.OCPPError`,
:class:`~ocpprpc.CallTimeout`, ``ConnectionLost``, :class:`StationNotConnected`), plus
:class:`~ocpprpc.cluster.adapter.NodeUnavailable` when the holding node is dead or
dies mid-call: the outcome is unknown and nothing retries it.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import msgspec

from .._engine.errors import OCPPError
from .._rpc.session import CallTimeout, InvalidResponseError, Session
from .._ws.transport import ConnectionLost
from ..cluster.adapter import (
    ClaimStatus,
    ClusterAdapter,
    ClusterError,
    Envelope,
    Kind,
    NodeUnavailable,
    Presence,
    envelope,
    now_ms,
)
from .delivery import LocalDelivery, StationNotConnected
from .security_events import SecurityEvent, StationConnected, StationDisconnected

if TYPE_CHECKING:
    from .server import Server

__all__ = ["ClusterDelivery", "cluster_delivery"]

log = logging.getLogger(__name__)

#: Seconds a station's presence is reused for further calls without asking the medium again.
#: A stale route costs one more lookup, never a lost or doubled call: the node no longer
#: holding the station answers "not connected" without calling it, a dead node takes
#: nothing, and the call is then sent once to where presence says the station is now.
ROUTE_TTL = 1.0

#: Close code for a connection another node now holds (the same as a local replacement).
_REPLACED = 1008


@dataclass
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


@dataclass(frozen=True)
class _Held:
    session: Session
    conn: str


class ClusterDelivery:
    """Local sessions first, else the node that holds the station (see the module docstring).

    :param call_timeout: used when ``send_to_client`` is given no timeout.
    :param grace: extra seconds a caller waits beyond the call's timeout for the reply to travel.
    :param concurrency: calls from other nodes served at once.
    """

    def __init__(
        self,
        server: Server,
        adapter: ClusterAdapter,
        *,
        call_timeout: float = 30.0,
        grace: float = 2.0,
        concurrency: int = 1000,
    ) -> None:
        self.server = server
        self.adapter = adapter
        self.call_timeout = call_timeout
        self.grace = grace
        self._local = LocalDelivery(lambda: server.clients)
        self._pending: dict[str, _Pending] = {}
        self._routes = _Routes(ROUTE_TTL)
        self._held: dict[str, _Held] = {}
        self._limiter = anyio.CapacityLimiter(concurrency)
        self._changes, self._changes_out = anyio.create_memory_object_stream[tuple[str, bool]](float("inf"))

    # -- calling ------------------------------------------------------------------------
    async def call(self, identity: str, request: Any, payload: Any, timeout: float | None) -> Any:  # noqa: ASYNC109 (bounds the answer, like call())
        if identity in self.server.clients:
            return await self._local.call(identity, request, payload, timeout)
        if isinstance(request, str):
            action, params, response_type = request, ({} if payload is None else payload), None
        else:
            action = type(request).__ocpp_action__
            params = msgspec.to_builtins(request)
            response_type = type(request).__ocpp_response__
        limit = self.call_timeout if timeout is None else timeout
        presence = self._routes.get(identity)
        cached = presence is not None
        if presence is None:
            presence = await self._resolve(identity)
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
        raise _error(identity, action, env.id, limit, reply.p)

    async def _resolve(self, identity: str) -> Presence:
        """Where *identity* is held now (from the medium), remembered for a moment."""
        presence = await self.adapter.presence(identity)
        if presence is None or presence.node == self.adapter.node_id:
            raise StationNotConnected(identity)
        self._routes.put(identity, presence)
        return presence

    async def _call_node(self, node: str, env: Envelope, limit: float) -> Envelope:
        """Send *env* to *node* and wait for its reply; :class:`NodeUnavailable` if it is dead or dies."""
        pending = self._pending[env.id] = _Pending(node)
        try:
            try:
                await self.adapter.deliver(node, env)
            except NodeUnavailable as exc:
                raise _Undelivered(node) from exc
            async with anyio.create_task_group() as watching:
                watching.start_soon(self._watch_node, pending)
                with anyio.move_on_after(limit + self.grace):
                    await pending.event.wait()
                watching.cancel_scope.cancel()
        finally:
            del self._pending[env.id]
        if pending.reply is None:
            if pending.node_down:
                raise NodeUnavailable(node, f"it died while calling {env.dst!r}")
            raise CallTimeout(env.m, env.id, limit)
        return pending.reply

    async def _watch_node(self, pending: _Pending) -> None:
        await self.adapter.wait_node_down(pending.node)
        pending.node_down = True
        pending.event.set()

    # -- serving ------------------------------------------------------------------------
    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve the cluster: presence of our stations, calls for them, replies to ours."""
        unsubscribe = self.server.security_events.subscribe(self._on_event)
        try:
            for identity in list(self.server.clients):  # connected before we started
                self._changes.send_nowait((identity, True))
            async with anyio.create_task_group() as group:
                group.start_soon(self._track_presence)
                task_status.started()
                received = self.adapter.received
                take_waiting = getattr(received, "receive_nowait", None)
                async for env in received:
                    self._dispatch(env, group)
                    # Everything already waiting in this turn: one loop turn per batch, not per envelope.
                    with contextlib.suppress(anyio.WouldBlock, anyio.EndOfStream):
                        while take_waiting is not None:
                            self._dispatch(take_waiting(), group)
        finally:
            unsubscribe()

    def _on_event(self, event: SecurityEvent) -> None:
        if isinstance(event, (StationConnected, StationDisconnected)) and event.identity is not None:
            self._changes.send_nowait((event.identity, isinstance(event, StationConnected)))

    async def _track_presence(self) -> None:
        async for identity, connected in self._changes_out:
            try:
                if connected:
                    await self._claim(identity)
                else:
                    held = self._held.get(identity)
                    if held is not None and self.server.clients.get(identity) is not held.session:
                        del self._held[identity]
                        await self.adapter.release(identity, held.conn)
            except ClusterError as exc:
                log.warning("presence of %r not updated: %s", identity, exc)
            except Exception:  # never the end of presence tracking for every other station
                log.exception("presence of %r not updated", identity)

    async def _claim(self, identity: str) -> None:
        session = self.server.clients.get(identity)
        if session is None:
            return
        held = self._held.get(identity)
        if held is None or held.session is not session:
            held = self._held[identity] = _Held(session, uuid.uuid4().hex)
        claim = await self.adapter.claim(identity, held.conn)
        previous = claim.previous
        if claim.status is ClaimStatus.TAKEN_OVER and previous is not None:
            kick = envelope(Kind.KICK, self.adapter.node_id, identity, timeout=60, conn=previous.conn)
            with contextlib.suppress(NodeUnavailable):  # its connections are gone with it
                await self.adapter.deliver(previous.node, kick)

    def _dispatch(self, env: Envelope, group: anyio.abc.TaskGroup) -> None:
        if env.k is Kind.CALL:
            group.start_soon(self._serve_call, env)
        elif env.k in (Kind.RESULT, Kind.ERROR):
            pending = self._pending.get(env.corr)
            if pending is not None:
                pending.reply = env
                pending.event.set()
        elif env.k is Kind.KICK:
            held = self._held.get(env.dst)
            if held is not None and held.conn == env.conn:
                group.start_soon(self._kick, held)

    async def _kick(self, held: _Held) -> None:
        await held.session.close(_REPLACED, "connected to another node", graceful=False)

    async def _serve_call(self, env: Envelope) -> None:
        async with self._limiter:
            session = self.server.clients.get(env.dst)
            remaining = (env.dl - now_ms()) / 1000
            if remaining <= 0:
                return  # the caller has given up: never act late
            kind: Kind = Kind.RESULT
            answer: Any = None
            if session is None:
                kind, answer = Kind.ERROR, {"kind": "not_connected"}
            else:
                try:
                    answer = await session.call(env.m, env.p, timeout=remaining)
                except OCPPError as exc:
                    kind = Kind.ERROR
                    answer = {"kind": "ocpp", "code": exc.code.value, "description": exc.description}
                    answer |= {"details": dict(exc.details)}
                except CallTimeout:
                    kind, answer = Kind.ERROR, {"kind": "timeout"}
                except ConnectionLost as exc:
                    kind, answer = Kind.ERROR, {"kind": "connection_lost", "description": str(exc)}
                except InvalidResponseError as exc:
                    kind = Kind.ERROR
                    answer = {
                        "kind": "invalid_response",
                        "code": exc.code.value,
                        "description": exc.description,
                    }
                except Exception as exc:  # a hostile or broken request: answered, never fatal here
                    kind, answer = Kind.ERROR, {"kind": "failed", "description": repr(exc)}
            reply = envelope(kind, self.adapter.node_id, env.dst, timeout=self.grace, corr=env.id, p=answer)
            try:
                await self.adapter.deliver(env.src, reply)
            except ClusterError as exc:  # the caller's node is gone: nobody to tell
                log.info("reply to %s for %r not delivered: %s", env.src, env.dst, exc)


def _error(identity: str, action: str, call_id: str, timeout: float, detail: Any) -> Exception:
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


@asynccontextmanager
async def cluster_delivery(
    server: Server, adapter: ClusterAdapter, **options: Any
) -> AsyncIterator[ClusterDelivery]:
    """Make *server* command stations across the cluster for the duration of the block."""
    delivery = ClusterDelivery(server, adapter, **options)
    previous = server.delivery
    async with anyio.create_task_group() as group:
        await group.start(delivery.run)
        server.delivery = delivery
        try:
            yield delivery
        finally:
            server.delivery = previous
            group.cancel_scope.cancel()
