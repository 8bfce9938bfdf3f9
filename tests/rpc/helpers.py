"""Shared pieces for the session tests: small typed messages, a recording codec, a raw peer."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import anyio
import msgspec

from ocpprpc import (
    Connection,
    ErrorCode,
    JsonObjectCodec,
    PayloadError,
    PayloadKind,
    Request,
    Response,
    Role,
    Router,
    SendMessage,
    Session,
)
from ocpprpc._ws.transport import _MemoryMessageStream, memory_message_stream_pair


class HeartbeatResponse(Response, rename="camel"):
    current_time: str


class HeartbeatRequest(Request[HeartbeatResponse]):
    __ocpp_action__: ClassVar[str] = "Heartbeat"
    __ocpp_response__: ClassVar[type[Any]] = HeartbeatResponse


class BootResponse(Response, rename="camel"):
    status: str
    interval: int = 300


class BootRequest(Request[BootResponse], rename="camel"):
    __ocpp_action__: ClassVar[str] = "BootNotification"
    __ocpp_response__: ClassVar[type[Any]] = BootResponse
    charge_point_vendor: str
    charge_point_model: str = "M"


class Boot16Request(BootRequest, rename="camel"):
    """The same action, declared as belonging to one protocol version."""

    __ocpp_protocol__: ClassVar[str] = "ocpp1.6"


class StreamMessage(SendMessage, rename="camel"):
    __ocpp_action__: ClassVar[str] = "NotifyPeriodicEventStream"
    seq: int


@dataclass
class RecordingCodec:
    """The dict codec, recording every call's ``validate`` hint.

    It applies a policy like the typed codec will: an action listed in
    ``opted_out`` is decoded without validation; ``reject`` lists (action, kind)
    pairs it refuses when validating, to provoke validation failures.
    """

    opted_out: set[str] = field(default_factory=set)
    reject: set[tuple[str, PayloadKind]] = field(default_factory=set)
    calls: list[tuple[str, str, PayloadKind, bool]] = field(default_factory=list)
    _inner: JsonObjectCodec = field(default_factory=JsonObjectCodec)

    def decode(
        self, action: str, kind: PayloadKind, data: bytes | memoryview, *, validate: bool = True
    ) -> Any:
        validate = validate and action not in self.opted_out
        self.calls.append(("decode", action, kind, validate))
        if validate and (action, kind) in self.reject:
            raise PayloadError(ErrorCode.PROPERTY_CONSTRAINT_VIOLATION, "rejected by the test codec")
        return self._inner.decode(action, kind, data)

    def encode(self, action: str, kind: PayloadKind, payload: Any, *, validate: bool = True) -> bytes:
        self.calls.append(("encode", action, kind, validate))
        if validate and (action, kind) in self.reject:
            raise PayloadError(ErrorCode.PROPERTY_CONSTRAINT_VIOLATION, "rejected by the test codec")
        return self._inner.encode(action, kind, payload)


@dataclass
class RawPeer:
    """The far end of a session's stream, driven by hand: raw frames in and out."""

    stream: _MemoryMessageStream

    async def send(self, frame: Any) -> None:
        await self.stream.send(frame if isinstance(frame, str) else msgspec.json.encode(frame).decode())

    async def receive(self) -> list[Any]:
        frame: list[Any] = msgspec.json.decode(await self.stream.receive())
        return frame


@asynccontextmanager
async def session_with_raw_peer(
    protocol: str = "ocpp1.6",
    *,
    role: Role = Role.CHARGING_STATION,
    router: Router | None = None,
    engine_options: dict[str, Any] | None = None,
    **options: Any,
) -> AsyncIterator[tuple[Session, RawPeer]]:
    """A running session whose peer is a :class:`RawPeer`."""
    ours, theirs = memory_message_stream_pair(protocol)
    session = Session(ours, Connection(role, protocol, **(engine_options or {})), router=router, **options)
    try:
        async with session:
            yield session, RawPeer(theirs)
    finally:
        theirs.abort()  # release the far end's memory streams


def task_names() -> list[str]:
    """Names of the running tasks (to prove a session left none behind)."""
    return sorted(task.name or "" for task in anyio.get_running_tasks())


class Records(logging.Handler):
    """Collects log records of the session logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self) -> list[str]:
        return [record.getMessage() for record in self.records]
