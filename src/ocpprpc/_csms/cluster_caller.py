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

from dataclasses import dataclass, field
from typing import Any

import anyio
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

__all__ = ["ClusterCaller", "error_from_reply"]


@dataclass
class _Pending:
    node: str
    event: anyio.Event = field(default_factory=anyio.Event)
    reply: Envelope | None = None
    node_down: bool = False


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

    async def call(
        self,
        identity: str,
        request: Any,
        payload: Any,
        timeout: float | None,  # noqa: ASYNC109 (bounds the answer, like call())
        *,
        presence: Presence | None = None,
    ) -> Any:
        """Call *identity* on the node its presence names (looked up unless given)."""
        if presence is None:
            presence = await self.adapter.presence(identity)
        if presence is None or presence.node == self.adapter.node_id:
            raise StationNotConnected(identity)  # ours but not in our sessions: stale, gone
        if isinstance(request, str):
            action, params, response_type = request, ({} if payload is None else payload), None
        else:
            action = type(request).__ocpp_action__
            params = msgspec.to_builtins(request)
            response_type = type(request).__ocpp_response__
        limit = self.call_timeout if timeout is None else timeout
        env = envelope(Kind.CALL, self.adapter.node_id, identity, timeout=limit, m=action, p=params)
        pending = self.pending[env.id] = _Pending(presence.node)
        try:
            await self.adapter.deliver(presence.node, env)
            async with anyio.create_task_group() as watching:
                watching.start_soon(self._watch_node, pending)
                with anyio.move_on_after(limit + self.grace):
                    await pending.event.wait()
                watching.cancel_scope.cancel()
        finally:
            del self.pending[env.id]
        reply = pending.reply
        if reply is None:
            if pending.node_down:
                raise NodeUnavailable(presence.node, f"it died while calling {identity!r}")
            raise CallTimeout(action, env.id, limit)
        if reply.k is Kind.RESULT:
            return reply.p if response_type is None else msgspec.convert(reply.p, response_type)
        raise error_from_reply(identity, action, env.id, limit, reply.p)

    async def _watch_node(self, pending: _Pending) -> None:
        await self.adapter.wait_node_down(pending.node)
        pending.node_down = True
        pending.event.set()

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
