"""Session state that survives a reconnect: one dict per identity, kept a while after it leaves.

``Server(session_state=SessionStates(ttl=..., max_identities=...))`` (or ``True``
for the defaults) gives every station's session a :attr:`~ocpprpc.Session.state`
dict that is *the same mapping* when the identity connects again within ``ttl``
seconds of its last connection ending: what a handler learnt (a firmware
upload in progress, the last meter value, a pending configuration) is still
there after a link flap.  An identity connected twice at once (a reconnect
evicting the old link) shares one dict.

Bounded: at most ``max_identities`` states of stations that are gone are
kept, the one gone longest is forgotten first, and one older than ``ttl`` is
forgotten when it is next looked at (or when another leaves).  The states of
connected stations are bounded by the connections.  The dict itself is the
application's: keep it small.  Nothing here survives a CSMS restart (the
station registry does that for what the messages say).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

__all__ = ["SessionStates"]


class SessionStates:
    """The per-identity state dicts of a server, kept ``ttl`` seconds past each disconnect.

    :param ttl: seconds a gone station's state is kept for its return.
    :param max_identities: gone stations whose state is kept at most (LRU).
    :param clock: monotonic seconds (replaceable in tests).
    """

    def __init__(
        self,
        *,
        ttl: float = 3600.0,
        max_identities: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not ttl > 0:
            raise ValueError(f"ttl must be positive, got {ttl!r}")
        if max_identities < 1:
            raise ValueError(f"max_identities must be at least 1, got {max_identities!r}")
        self.ttl = ttl
        self.max_identities = max_identities
        self._clock = clock
        # identity -> [state, connections]
        self._live: dict[str, tuple[dict[str, Any], int]] = {}
        # identity -> (state, when it was released), gone longest first
        self._kept: OrderedDict[str, tuple[dict[str, Any], float]] = OrderedDict()

    def acquire(self, identity: str) -> dict[str, Any]:
        """*identity* connected: its state (kept from before if it is back within ``ttl``)."""
        live = self._live.get(identity)
        if live is not None:
            state, count = live
            self._live[identity] = (state, count + 1)
            return state
        kept = self._kept.pop(identity, None)
        state = kept[0] if kept is not None and self._clock() - kept[1] <= self.ttl else {}
        self._live[identity] = (state, 1)
        return state

    def release(self, identity: str) -> None:
        """A connection of *identity* ended; its state is kept once the last one did."""
        live = self._live.get(identity)
        if live is None:
            return
        state, count = live
        if count > 1:
            self._live[identity] = (state, count - 1)
            return
        del self._live[identity]
        now = self._clock()
        self._kept[identity] = (state, now)
        kept = self._kept
        # The one just kept is neither over the bound nor expired: this stops before it.
        while len(kept) > self.max_identities or now - next(iter(kept.values()))[1] > self.ttl:
            kept.popitem(last=False)

    def get(self, identity: str) -> dict[str, Any] | None:
        """*identity*'s state if it is connected or still kept (``None`` otherwise)."""
        live = self._live.get(identity)
        if live is not None:
            return live[0]
        kept = self._kept.get(identity)
        if kept is None:
            return None
        if self._clock() - kept[1] > self.ttl:
            del self._kept[identity]
            return None
        return kept[0]

    def forget(self, identity: str) -> bool:
        """Drop the kept state of a gone *identity* (a connected one keeps its dict)."""
        return self._kept.pop(identity, None) is not None

    @property
    def kept(self) -> int:
        """Gone stations whose state is kept (at most ``max_identities``)."""
        return len(self._kept)

    def __len__(self) -> int:
        """Identities with a state: connected, or gone and kept."""
        return len(self._live) + len(self._kept)

    def __repr__(self) -> str:
        return f"<SessionStates connected={len(self._live)} kept={len(self._kept)} ttl={self.ttl}>"
