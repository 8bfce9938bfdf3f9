"""The Lua scripts, constants and reply parsing of the Redis adapter (:mod:`.redis_adapter`).

Data, not behaviour: what each script does to which keys is stated beside it, so the
atomic steps of delivery and presence can be read in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import anyio

from .adapter import Claim, ClaimStatus, ClusterUnavailable, Presence
from .ops import RedisCommandError, RedisUnavailable, Script

GROUP = "rpc"

#: What a background loop waits out: no answer, or an error answer such as LOADING (a
#: restart reading its dump), READONLY (a failover in progress), OOM or BUSY.
_TRANSIENT = (RedisUnavailable, RedisCommandError)

#: KEYS: alive, inbox.  ARGV: maxlen, envelope.  The XADD only if the node is alive.
DELIVER = Script(
    "if redis.call('EXISTS', KEYS[1]) == 0 then return false end "
    "return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[2])"
)
#: KEYS: presence, token counter.  ARGV: node, conn, ttl ms, takeover (1/0).
CLAIM = Script(
    """
local cur = redis.call('GET', KEYS[1])
local prefix = ARGV[1] .. '|' .. ARGV[2] .. '|'
if cur and string.sub(cur, 1, #prefix) == prefix then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {'kept', cur}
end
if cur and ARGV[4] ~= '1' then return {'lost', cur} end
local value = prefix .. redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], value, 'PX', ARGV[3])
if cur then return {'taken_over', value, cur} end
return {'claimed', value}
"""
)
#: CLAIM without takeover for many identities in one call (a presence refresh).
#: KEYS: n presence keys, then their n token counters.  ARGV: node, ttl ms, then n conns.
#: One reply per identity: 'kept', 'claimed' or 'lost'.
REFRESH = Script(
    """
local n = #KEYS / 2
local out = {}
for i = 1, n do
  local cur = redis.call('GET', KEYS[i])
  local prefix = ARGV[1] .. '|' .. ARGV[2 + i] .. '|'
  if cur and string.sub(cur, 1, #prefix) == prefix then
    redis.call('PEXPIRE', KEYS[i], ARGV[2])
    out[i] = 'kept'
  elseif cur then
    out[i] = 'lost'
  else
    redis.call('SET', KEYS[i], prefix .. redis.call('INCR', KEYS[n + i]), 'PX', ARGV[2])
    out[i] = 'claimed'
  end
end
return out
"""
)
#: Identities per REFRESH call: Redis runs one for ~1 ms, other clients wait that long at most.
REFRESH_BATCH = 500
#: Seconds between checks of the nodes that calls in flight wait on.
WATCH_INTERVAL = 0.25
#: KEYS: presence.  ARGV: node, conn.  Delete only if that connection holds it.
RELEASE = Script(
    "local cur = redis.call('GET', KEYS[1]) "
    "local prefix = ARGV[1] .. '|' .. ARGV[2] .. '|' "
    "if cur and string.sub(cur, 1, #prefix) == prefix then return redis.call('DEL', KEYS[1]) end "
    "return 0"
)


#: Envelopes the outbox writer sends in one pipeline at most.
OUTBOX_BATCH = 512


@dataclass(eq=False)
class _Out:
    """One envelope in the outbox, and what became of it."""

    node: str
    data: bytes
    done: anyio.Event = field(default_factory=anyio.Event)
    #: Until the writer says otherwise: it stopped before sending this one.
    error: Exception | None = field(default_factory=lambda: ClusterUnavailable("the adapter is closed"))
    added: bool = False


class _CrossSlot(Exception):
    """A multi-key script spanned slots (Redis Cluster): fall back to one key per call."""


def _unavailable(exc: Exception) -> ClusterUnavailable:
    if isinstance(exc, RedisCommandError):
        return ClusterUnavailable(f"Redis refused: {exc}")
    return ClusterUnavailable(str(exc))


def _claim(reply: Any) -> Claim:
    status, holder = ClaimStatus(_text(reply[0])), Presence.decode(reply[1])
    assert holder is not None
    previous = Presence.decode(reply[2]) if len(reply) > 2 else None
    if status is ClaimStatus.LOST:
        return Claim(status, holder)
    return Claim(status, holder, previous)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
