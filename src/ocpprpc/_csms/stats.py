"""``server.stats()``: a snapshot of a CSMS, and the few counters only the server can keep.

The snapshot is computed when asked: live numbers (connections, sessions,
calls in flight, bytes buffered) are read off the sessions then, so nothing is
paid on the message path for them.  What must be counted as it happens is
counted where it happens, O(1) each: handshakes (accepted, refused by reason)
on the connection path, bytes by the WebSocket (one addition per read, the
bytes written it counted already), malformed messages by the engine (on the
failure path); a session's totals move to the server when it ends.  Per-action
call counters are what the :class:`~ocpprpc.Metrics` middleware counts, so
without metrics they are ``None`` and the message path is untouched.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from .._rpc.session import Session
from .._ws.errors import HandshakeError, HandshakeTimeout

__all__ = ["ClusterStats", "ServerStats"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterStats:
    """This node's cluster adapter, as last sampled (``server.stats().cluster``; docs: clustering).

    Sampled by the :class:`~ocpprpc.ClusterDelivery` every ``stats_interval`` seconds (the
    inbox figures cost Redis two commands), so reading it costs nothing; :attr:`age` says
    how old the sample is.  Counters count since the adapter was entered.
    """

    #: This node's id in the cluster.
    node: str
    #: Seconds since the sample was taken.
    age: float
    #: Envelopes put in other nodes' inboxes (calls, replies, kicks).
    sent: int
    #: Envelopes handed to this node from its inbox.
    received: int
    #: Envelopes read again (a redelivery) and dropped: each is handed out once.
    duplicates: int
    #: Envelopes read after their deadline and dropped, never acted on late.
    expired: int
    #: Inbox entries that were not envelopes, dropped.
    malformed: int
    #: Deliveries refused because the target node was not alive (callers got NodeUnavailable).
    node_unavailable: int
    #: Broadcasts published by this node.
    broadcasts_sent: int
    #: Broadcasts of other nodes received.
    broadcasts_received: int
    #: Times the broadcast subscription ended or failed and was made again.
    subscriber_restarts: int
    #: Times this node found Redis had lost its data (or had been away) and registered again.
    rehydrations: int
    #: Operations the shared medium (Redis) did not answer or refused.
    unavailable: int
    #: Inbox entries not yet read; ``None``: unknown (Redis did not answer the sample, or cannot say).
    inbox_lag: int | None
    #: Inbox entries read and not acknowledged (handed off, or read by a run that died);
    #: ``None``: unknown (Redis did not answer the sample).
    inbox_pending: int | None
    #: Age of the oldest pending entry, ms; ``None``: none pending (or unknown).
    oldest_pending_ms: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerStats:
    """What a :class:`~ocpprpc.Server` is doing, at one moment (``server.stats()``).

    Every field is a plain number, string or dict of them; :meth:`as_dict` and
    :meth:`to_json` give the JSON form (the same field names).
    """

    #: The ocpprpc version.
    version: str
    #: Seconds since the server was made.
    uptime: float
    #: ``True`` once :meth:`~ocpprpc.Server.shutdown` began.
    shutting_down: bool
    #: Connections being served, handshakes included (what ``max_connections`` bounds).
    connections: int
    #: Running station sessions by OCPP protocol (``{"ocpp1.6": 3}``).
    sessions: dict[str, int]
    #: The stations' CALLs being handled or queued for a handler.
    calls_in_flight_in: int
    #: Our calls to stations under way.
    calls_in_flight_out: int
    #: Bytes held in memory: station CALLs queued for handlers plus frames not yet written.
    bytes_buffered: int
    #: Bytes read from stations since the server was made (WebSocket frames, after the upgrade).
    bytes_received: int
    #: Bytes written (or queued) to stations since the server was made.
    bytes_sent: int
    #: Messages from stations the engine refused (malformed, failing validation, invalid answers).
    bad_messages: int
    #: Upgrade requests accepted (sessions started).
    accepted_handshakes: int
    #: Upgrade requests refused, by reason (see the operations docs for the reasons).
    rejected_handshakes: dict[str, int]
    #: ``{action: {direction: {outcome: count}}}`` as counted by the server's
    #: :class:`~ocpprpc.Metrics`; ``None`` without metrics (nothing counted per message).
    calls: dict[str, dict[str, dict[str, int]]] | None
    #: This node's cluster adapter as last sampled (:class:`ClusterStats`); ``None`` when the
    #: server is not in a cluster (no ``cluster_delivery``).
    cluster: ClusterStats | None = None

    def as_dict(self) -> dict[str, Any]:
        """The snapshot as a dict of JSON values."""
        return asdict(self)

    def to_json(self) -> str:
        """The snapshot as one line of JSON."""
        return json.dumps(self.as_dict(), separators=(",", ":"), sort_keys=False)


class ServerCounters:
    """The server's own counters: handshakes by outcome, and the totals of ended sessions."""

    __slots__ = ("accepted", "bad_messages", "bytes_received", "bytes_sent", "rejected", "started")

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.accepted = 0
        self.rejected: dict[str, int] = {}
        self.bytes_received = 0
        self.bytes_sent = 0
        self.bad_messages = 0

    def reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1

    def handshake_failed(self, exc: HandshakeError) -> None:
        """Count a handshake :func:`accept_websocket` refused or lost, by what it answered."""
        if isinstance(exc, HandshakeTimeout):
            self.reject("timeout")
        elif exc.status is not None:
            self.reject(f"http_{exc.status}")
        elif str(exc).startswith("TLS handshake failed"):
            self.reject("tls")
        else:
            self.reject("aborted")

    def session_ended(self, session: Session) -> None:
        """Keep an ending session's totals (its stream and engine go with it)."""
        self.bytes_received += getattr(session.stream, "bytes_received", 0)
        self.bytes_sent += getattr(session.stream, "bytes_sent", 0)
        self.bad_messages += session.connection.bad_messages

    def snapshot(
        self,
        sessions: Iterable[Session],
        *,
        connections: int,
        shutting_down: bool,
        version: str,
        calls: dict[str, dict[str, dict[str, int]]] | None,
        cluster: ClusterStats | None = None,
    ) -> ServerStats:
        by_protocol: dict[str, int] = {}
        inbound = outbound = buffered = 0
        received, sent, bad = self.bytes_received, self.bytes_sent, self.bad_messages
        for session in sessions:
            protocol = session.protocol
            by_protocol[protocol] = by_protocol.get(protocol, 0) + 1
            inbound += session.inbound_in_flight
            outbound += session.outbound_in_flight
            stream = session.stream
            buffered += session.queued_bytes + getattr(stream, "unsent", 0)
            received += getattr(stream, "bytes_received", 0)
            sent += getattr(stream, "bytes_sent", 0)
            bad += session.connection.bad_messages
        return ServerStats(
            version=version,
            uptime=time.monotonic() - self.started,
            shutting_down=shutting_down,
            connections=connections,
            sessions=by_protocol,
            calls_in_flight_in=inbound,
            calls_in_flight_out=outbound,
            bytes_buffered=buffered,
            bytes_received=received,
            bytes_sent=sent,
            bad_messages=bad,
            accepted_handshakes=self.accepted,
            rejected_handshakes=dict(self.rejected),
            calls=calls,
            cluster=cluster,
        )
