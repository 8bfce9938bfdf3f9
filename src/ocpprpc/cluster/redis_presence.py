"""Presence of a Redis node's stations: claims fenced per connection, refreshed and released.

A mixin of :class:`~.redis_adapter.RedisAdapter` (see its module docstring): every claim
is a Lua script conditional on the connection that made it; a refresh renews all of a
node's claims in pipelined batches (one claim per identity on Redis Cluster), and a claim
found lost becomes a kick in the node's own inbox.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .adapter import Claim, ClaimStatus, Envelope, Kind, Presence, envelope
from .ops import Eval, RedisCommandError, RedisOps
from .redis_scripts import (
    _TRANSIENT,
    CLAIM,
    REFRESH,
    REFRESH_BATCH,
    RELEASE,
    _claim,
    _CrossSlot,
    _text,
    _unavailable,
)


class _PresenceClaims:
    """The presence half of the Redis adapter (claim, refresh, release, lookups)."""

    if TYPE_CHECKING:
        node_id: str
        presence_ttl_ms: int
        _claims: dict[str, str]
        _per_key_refresh: bool
        _kicks: MemoryObjectSendStream[Envelope]
        _kicks_out: MemoryObjectReceiveStream[Envelope]
        _send: MemoryObjectSendStream[Envelope]

        @property
        def ops(self) -> RedisOps: ...

        def presence_key(self, identity: str) -> str: ...

        def token_key(self, identity: str) -> str: ...

        def _count_failure(self, exc: Exception) -> None: ...

    async def presence(self, identity: str) -> Presence | None:
        try:
            return Presence.decode(await self.ops.get(self.presence_key(identity)))
        except _TRANSIENT as exc:
            raise _unavailable(exc) from exc

    async def presences(self, identities: Iterable[str]) -> Mapping[str, Presence | None]:
        wanted = list(dict.fromkeys(identities))
        try:
            values = await self.ops.mget([self.presence_key(identity) for identity in wanted])
        except _TRANSIENT as exc:
            raise _unavailable(exc) from exc
        return {identity: Presence.decode(value) for identity, value in zip(wanted, values, strict=True)}

    def _claim_args(self, identity: str, conn: str, takeover: bool) -> tuple[list[str], list[str | int]]:
        keys = [self.presence_key(identity), self.token_key(identity)]
        return keys, [self.node_id, conn, self.presence_ttl_ms, 1 if takeover else 0]

    async def claim(self, identity: str, conn: str, *, takeover: bool = True) -> Claim:
        if "|" in conn or not conn:
            raise ValueError(f"connection id must be non-empty and without '|': {conn!r}")
        keys, args = self._claim_args(identity, conn, takeover)
        try:
            claim = _claim(await self.ops.run_script(CLAIM, keys, args))
        except _TRANSIENT as exc:
            raise _unavailable(exc) from exc
        if claim.status is ClaimStatus.LOST:
            self._claims.pop(identity, None)
        else:
            self._claims[identity] = conn
        return claim

    async def _renew_claims(self) -> list[str]:
        """Claim-if-free for every local identity; the ones lost.

        One REFRESH script per :data:`REFRESH_BATCH` identities, all in one pipeline: Redis
        pays one script call per batch instead of one per identity.  On Redis Cluster, where
        a batch would span slots, one CLAIM per identity instead, pipelined (the client
        sends each node its share); a Redis that refuses a batch as CROSSSLOT (a proxy in
        front of a cluster) switches to that too.
        """
        claims = list(self._claims.items())
        if not self._per_key_refresh:
            try:
                return await self._renew_batched(claims)
            except _CrossSlot:
                self._per_key_refresh = True
        return await self._renew_per_key(claims)

    async def _renew_batched(self, claims: list[tuple[str, str]]) -> list[str]:
        lost = []
        for start in range(0, len(claims), 20 * REFRESH_BATCH):
            chunks = [
                claims[at : at + REFRESH_BATCH]
                for at in range(start, min(len(claims), start + 20 * REFRESH_BATCH), REFRESH_BATCH)
            ]
            commands = [
                Eval(
                    REFRESH,
                    [self.presence_key(i) for i, _ in chunk] + [self.token_key(i) for i, _ in chunk],
                    [self.node_id, self.presence_ttl_ms, *(conn for _, conn in chunk)],
                )
                for chunk in chunks
            ]
            replies = await self.ops.pipeline(commands)
            if any(isinstance(reply, RedisCommandError) and "CROSSSLOT" in str(reply) for reply in replies):
                raise _CrossSlot  # before any is acted on: the per-key pass redoes them all
            for chunk, reply in zip(chunks, replies, strict=True):
                if isinstance(reply, BaseException):
                    continue  # kept; tried again next time
                for (identity, conn), status in zip(chunk, reply, strict=True):
                    if _text(status) == ClaimStatus.LOST:
                        lost += self._lose(identity, conn)
        return lost

    async def _renew_per_key(self, claims: list[tuple[str, str]]) -> list[str]:
        lost = []
        for start in range(0, len(claims), 1000):
            chunk = claims[start : start + 1000]
            commands = [Eval(CLAIM, *self._claim_args(identity, conn, False)) for identity, conn in chunk]
            for (identity, conn), reply in zip(chunk, await self.ops.pipeline(commands), strict=True):
                if isinstance(reply, BaseException):
                    continue  # kept; tried again next time
                if _claim(reply).status is ClaimStatus.LOST:
                    lost += self._lose(identity, conn)
        return lost

    def _lose(self, identity: str, conn: str) -> list[str]:
        if self._claims.get(identity) != conn:
            return []  # released or claimed anew meanwhile
        del self._claims[identity]
        # The node learns it through its inbox stream, like a kick from another node.
        self._kicks.send_nowait(envelope(Kind.KICK, self.node_id, identity, timeout=60, conn=conn))
        return [identity]

    async def _forward_kicks(self) -> None:
        async for kick in self._kicks_out:
            await self._send.send(kick)

    async def refresh(self) -> list[str]:
        try:
            return await self._renew_claims()
        except _TRANSIENT as exc:
            raise _unavailable(exc) from exc

    async def _refresher(self) -> None:
        interval = self.presence_ttl_ms / 3000
        while True:
            await anyio.sleep(interval * random.uniform(0.9, 1.0))
            try:
                await self._renew_claims()
            except _TRANSIENT as exc:
                self._count_failure(exc)

    async def release(self, identity: str, conn: str) -> bool:
        if self._claims.get(identity) == conn:
            del self._claims[identity]
        try:
            released = await self.ops.run_script(RELEASE, [self.presence_key(identity)], [self.node_id, conn])
        except _TRANSIENT as exc:
            raise _unavailable(exc) from exc
        return bool(released)
