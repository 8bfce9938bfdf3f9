"""The session's reader: every message from the peer, fed to the engine and acted on."""

from __future__ import annotations

import logging

import anyio

from .._engine.events import (
    BadMessage,
    Call,
    CallError,
    CallResult,
    CallResultError,
    Event,
    InvalidResponse,
    Send,
    TooManyBadMessages,
    UnmatchedResponse,
    Violation,
)
from .._ws.transport import CloseReason
from .closing import _Closing
from .inbound import _QUEUED, _REFUSED
from .session_base import _PROTOCOL_ERROR, _Pending

log = logging.getLogger("ocpprpc.session")


class _Reader(_Closing):
    """The one reader task: answers to our calls, inbound CALLs, bad messages."""

    async def _reader(self) -> None:
        stream = self.stream
        conn = self.connection
        inbox = self._inbox
        budget = self.inbound_budget
        # Dropped after each message: an idle reader would otherwise keep its last message
        # (text, event, and the call it answered) alive until the next one (bench/README.md, issue 17).
        text: str | None = None
        event: Event | None = None
        pending: _Pending | None = None
        try:
            while True:
                if (inbox or (budget is not None and budget.used >= budget.limit)) and self._full():
                    await self._make_room()
                text = await stream.receive()
                if self.on_message is not None:
                    self._hook("in", text)
                log.debug("%s < %s", self, text)
                conn.receive_message(text)
                for event in conn.events():
                    # The hot events inline (no coroutine per message); the rest below.
                    if isinstance(event, (Call, Send)):
                        size = len(text)
                        route = self._dispatch(event, size)
                        if route is not _QUEUED:
                            if route is _REFUSED:
                                await self._refuse(event)
                            else:
                                await self._run_inline(event, route, size)
                    elif isinstance(event, (CallResult, CallError)):
                        pending = self._pending.get(event.message_id)
                        if pending is not None:
                            pending.resolve(event)
                    else:
                        await self._on_event(event)
                text = event = pending = None
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        reason = stream.close_reason or CloseReason(1006, "connection lost")
        if not self._shutting_down:
            log.info("%s: connection ended by the peer: %s", self, reason)
        await self._shutdown(reason, peer_ended=True)

    async def _on_event(self, event: Event) -> None:
        match event:
            # Call, Send, CallResult and CallError are handled inline by the reader.
            case InvalidResponse(message_id=message_id):
                log.warning(
                    "%s: invalid answer to %s (%s): %s", self, event.action, message_id, event.description
                )
                pending = self._pending.get(message_id)
                if pending is not None:
                    pending.resolve(event)
                if event.reply is not None:
                    await self._write_reply(event.reply)
            case BadMessage(violation=Violation.EMPTY):
                log.debug("%s: ignored an empty message", self)
            case BadMessage():
                log.warning(
                    "%s: bad message from the peer (%s): %s", self, event.violation.value, event.description
                )
                if event.reply is not None:
                    await self._write_reply(event.reply)
            case UnmatchedResponse(late=True):
                log.info("%s: dropped a late answer to %s (%s)", self, event.action, event.message_id)
            case UnmatchedResponse():
                log.warning("%s: dropped an answer to an unknown message id %s", self, event.message_id)
            case CallResultError():
                log.warning(
                    "%s: the peer could not process our answer to %s (%s): %s %s",
                    self,
                    event.action,
                    event.message_id,
                    event.wire_code,
                    event.description,
                )
            case TooManyBadMessages():
                log.warning("%s: %d bad messages in a row; closing", self, event.count)
                await self._shutdown(CloseReason(_PROTOCOL_ERROR, "too many bad messages", by_peer=False))
            case _:  # pragma: no cover - the engine emits no other event here
                log.debug("%s: ignored %r", self, event)
