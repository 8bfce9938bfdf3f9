"""Shared pieces of the resilience tests: a recording CSMS router and event waits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio

from ocpprpc import CallContext, Router, StationEvent

NOW = "2024-01-01T00:00:00Z"


class Recorder:
    """A CSMS router that answers the 1.6 core messages and records what it handled."""

    def __init__(self) -> None:
        self.router = Router()
        self.handled: list[tuple[str, str, Any]] = []  # (action, message id, payload)
        self.changed = anyio.Event()
        self.boot_answers: list[str] = []
        #: What StartTransaction answers: the transactionId and the idTag status.
        self.transaction_id = 1
        self.id_tag_status = "Accepted"
        self.router.add_any(self._any)

    async def _any(self, request: Any, ctx: CallContext) -> Any:
        self.handled.append((ctx.action, ctx.message_id, request))
        self.changed.set()
        self.changed = anyio.Event()
        if ctx.action == "BootNotification":
            status = self.boot_answers.pop(0) if self.boot_answers else "Accepted"
            return {"status": status, "currentTime": NOW, "interval": 0 if status != "Accepted" else 300}
        if ctx.action == "Heartbeat":
            return {"currentTime": NOW}
        if ctx.action == "StartTransaction":
            return {"transactionId": self.transaction_id, "idTagInfo": {"status": self.id_tag_status}}
        if ctx.action in ("StopTransaction",):
            return {"idTagInfo": {"status": "Accepted"}}
        return {}

    def actions(self) -> list[str]:
        return [action for action, _, _ in self.handled]

    async def wait_for(self, count: int) -> None:
        while len(self.handled) < count:
            await self.changed.wait()


class EventLog:
    """Collects a station's events with their times; waits for one that matches."""

    def __init__(self) -> None:
        self.events: list[tuple[float, StationEvent]] = []
        self._changed = anyio.Event()

    def __call__(self, event: StationEvent) -> None:
        self.events.append((anyio.current_time(), event))
        self._changed.set()
        self._changed = anyio.Event()

    def of(self, kind: type[Any]) -> list[Any]:
        return [event for _, event in self.events if isinstance(event, kind)]

    async def wait_for(self, kind: type[Any], count: int = 1, where: Callable[[Any], bool] = bool) -> Any:
        while True:
            matching = [event for event in self.of(kind) if where(event) or where is bool]
            if len(matching) >= count:
                return matching[count - 1]
            await self._changed.wait()
