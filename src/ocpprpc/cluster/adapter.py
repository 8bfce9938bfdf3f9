"""The cluster adapter interface: what every node needs from the medium the nodes share.

A node (a process holding station sockets, or a caller holding none) gets from its
adapter: delivery of an :class:`Envelope` to another node's inbox, the envelopes
addressed to itself (:attr:`ClusterAdapter.received`), presence (which node and
connection holds an identity, fenced per connection), broadcast, liveness of other
nodes and metrics.  :mod:`.memory` implements it in one process (the embedded
default, and the same code paths tested without Redis); :mod:`.redis_adapter` over
Redis.

Semantics, the same for both: an envelope reaches a live node's inbox at least once and
is handed to the node once (dedup by ``id``; expired ones are dropped, never handed
out late); a call to a node that is not alive fails at once with
:class:`NodeUnavailable` -- the outcome is unknown and nothing retries it, because OCPP
commands (Reset, RemoteStart) are not idempotent.  Broadcast is at most once.
"""

from __future__ import annotations

import enum
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import anyio.abc
import msgspec

__all__ = [
    "BROADCAST",
    "Claim",
    "ClaimStatus",
    "ClusterAdapter",
    "ClusterError",
    "ClusterMetrics",
    "ClusterUnavailable",
    "Envelope",
    "Kind",
    "NodeUnavailable",
    "Presence",
    "envelope",
]

#: ``Envelope.dst`` of a broadcast.
BROADCAST = "*"

#: Default seconds between a node's liveness beats: silent for 3 (2.25 s), it counts as dead
#: and calls in flight to it fail (outcome unknown).  Longer tolerates longer event-loop stalls.
DEFAULT_HEARTBEAT = 0.75


class ClusterError(Exception):
    """Something about the cluster, not the station, prevented an answer."""


class NodeUnavailable(ClusterError):
    """The node holding the station is not alive: the call's outcome is unknown (never retried)."""

    def __init__(self, node: str, detail: str = "") -> None:
        message = f"node {node!r} is not alive: outcome unknown"
        super().__init__(f"{message} ({detail})" if detail else message)
        self.node = node


class ClusterUnavailable(ClusterError):
    """The shared medium (Redis) does not answer: nothing was sent."""


class Kind(enum.StrEnum):
    CALL = "call"
    RESULT = "res"
    ERROR = "err"
    #: Close the station's connection ``conn`` here: it connected elsewhere, or lost its presence.
    KICK = "kick"
    BROADCAST = "bcast"


class Envelope(msgspec.Struct, frozen=True, omit_defaults=True):
    """One message between nodes (JSON on the wire)."""

    id: str  # unique: dedup
    k: Kind
    src: str  # the sending node
    dst: str  # the station identity (or BROADCAST)
    dl: int  # deadline, epoch ms: not handed out after it
    ts: int  # created, epoch ms
    corr: str = ""  # a result's call id
    m: str = ""  # OCPP action
    p: Any = None  # payload: params, result, or error details
    conn: str = ""  # a kick's connection
    v: int = 1


def now_ms() -> int:
    return int(time.time() * 1000)


def envelope(kind: Kind, src: str, dst: str, *, timeout: float, **fields: Any) -> Envelope:
    """A new envelope with a fresh id and a deadline *timeout* seconds from now."""
    ts = now_ms()
    return Envelope(
        id=uuid.uuid4().hex, k=kind, src=src, dst=dst, dl=ts + int(timeout * 1000), ts=ts, **fields
    )


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Envelope)


def encode(env: Envelope) -> bytes:
    return _encoder.encode(env)


def decode(data: bytes) -> Envelope:
    """Raise ``msgspec.DecodeError`` (a ``ValueError``) on anything that is not an envelope."""
    return _decoder.decode(data)


@dataclass(frozen=True, slots=True)
class Presence:
    """Who holds an identity: the node, the connection there, and the fencing token of that claim."""

    node: str
    conn: str
    token: int

    def encode(self) -> str:
        return f"{self.node}|{self.conn}|{self.token}"

    @classmethod
    def decode(cls, raw: bytes | str | None) -> Presence | None:
        if raw is None:
            return None
        text = raw.decode() if isinstance(raw, bytes) else raw
        node, _, rest = text.partition("|")
        conn, _, token = rest.rpartition("|")
        try:
            return cls(node, conn, int(token))
        except ValueError:
            return None  # not ours: treated as free


class ClaimStatus(enum.StrEnum):
    #: Free (or expired): now ours, with a new token.
    CLAIMED = "claimed"
    #: Already ours (same node and connection): kept, same token.
    KEPT = "kept"
    #: Another connection held it and *takeover* took it: ``previous`` should be kicked.
    TAKEN_OVER = "taken_over"
    #: Another connection holds it and no takeover was asked: not ours.
    LOST = "lost"


@dataclass(frozen=True, slots=True)
class Claim:
    status: ClaimStatus
    #: The holder after the claim.
    holder: Presence
    #: The holder before, when it was another connection.
    previous: Presence | None = None


@dataclass
class ClusterMetrics:
    """Counters of one node's adapter, plus what the medium reports about its inbox."""

    sent: int = 0
    received: int = 0
    duplicates: int = 0
    expired: int = 0
    malformed: int = 0
    node_unavailable: int = 0
    broadcasts_sent: int = 0
    broadcasts_received: int = 0
    subscriber_restarts: int = 0
    rehydrations: int = 0
    unavailable: int = 0
    #: Entries in the inbox not yet read (Redis: XINFO GROUPS ``lag``); ``None``: unknown.
    inbox_lag: int | None = 0
    #: Read and not acknowledged (handed off, ack not yet written; or read by a node that died);
    #: ``None``: unknown (Redis did not answer).
    inbox_pending: int | None = 0
    #: Age of the oldest pending entry, ms.
    oldest_pending_ms: int | None = None
    extra: dict[str, int] = field(default_factory=dict)


class Dedup:
    """The ids seen lately (bounded LRU): a redelivered envelope is handed out once."""

    def __init__(self, size: int = 50_000) -> None:
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._size = size

    def first_time(self, identifier: str) -> bool:
        if identifier in self._seen:
            self._seen.move_to_end(identifier)
            return False
        self._seen[identifier] = None
        if len(self._seen) > self._size:
            self._seen.popitem(last=False)
        return True


class ClusterAdapter(Protocol):
    """One node's view of the cluster (an async context manager: its tasks run while entered)."""

    @property
    def node_id(self) -> str: ...

    @property
    def received(self) -> anyio.abc.ObjectReceiveStream[Envelope]:
        """Envelopes for this node, each handed out once: calls, results, kicks, broadcasts."""
        ...

    async def deliver(self, node: str, env: Envelope) -> None:
        """Put *env* in *node*'s inbox; :class:`NodeUnavailable` if that node is not alive."""
        ...

    async def broadcast(self, env: Envelope) -> None:
        """Every other node receives *env* (at most once)."""
        ...

    async def node_alive(self, node: str) -> bool: ...

    async def wait_node_down(self, node: str) -> None:
        """Return once *node* is seen dead (liveness lapsed): fails calls to it fast."""
        ...

    async def presence(self, identity: str) -> Presence | None: ...

    async def presences(self, identities: Iterable[str]) -> Mapping[str, Presence | None]: ...

    async def claim(self, identity: str, conn: str, *, takeover: bool = True) -> Claim:
        """Claim *identity* for connection *conn* of this node (a new connection takes over)."""
        ...

    async def refresh(self) -> list[str]:
        """Renew every claim of this node; the identities lost to another connection."""
        ...

    async def release(self, identity: str, conn: str) -> bool:
        """Give up *identity* if connection *conn* of this node still holds it."""
        ...

    async def metrics(self) -> ClusterMetrics: ...
