"""The seam between WebSocket transports and the RPC session: a stream of text messages.

A :class:`MessageStream` is an ``anyio.abc.ObjectStream[str]`` that can also
close with a WebSocket close code and tells how it ended.  The session only
ever sees this interface, so the wsproto transport, a faster codec, the
trio-websocket adapter and the in-memory pair used by tests are interchangeable.

Contract of ``receive()``: returns the next text message; raises
``anyio.EndOfStream`` once the peer closed (``close_reason`` then says how) and
``anyio.BrokenResourceError`` if the link died without a close handshake
(``close_reason`` is then an abnormal 1006).  ``send()`` after the stream
ended raises ``anyio.ClosedResourceError`` (closed by us) or
``anyio.BrokenResourceError`` (closed by the peer or lost).

Contract of ``send()``: safe for concurrent callers; each message goes out
whole, and messages go out in the order of the ``send()`` calls (the session
relies on this and takes no write lock of its own).  It may return once the
message is queued for the wire rather than written, as long as the queue is
bounded; a message lost with the link is reported by ``receive()``.
"""

from __future__ import annotations

import abc
import contextlib
from dataclasses import dataclass

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

__all__ = ["CloseReason", "ConnectionLost", "MessageStream", "memory_message_stream_pair"]


@dataclass(frozen=True, slots=True)
class CloseReason:
    """How a connection ended: the WebSocket close code and reason (RFC 6455 7.4)."""

    code: int
    reason: str = ""
    #: ``True`` when the peer started the close (or vanished), ``False`` when we did.
    by_peer: bool = True

    def __str__(self) -> str:
        who = "peer" if self.by_peer else "us"
        return f"{self.code} ({self.reason or 'no reason'}, closed by {who})"


class ConnectionLost(Exception):
    """The connection ended before the operation could complete.

    Raised in a waiting ``call()`` the moment the connection goes (not at its
    timeout), and by ``call()``/``send()`` on a session that is already closed.
    """

    def __init__(self, reason: CloseReason | None = None, message: str = "") -> None:
        self.reason = reason
        super().__init__(message or (f"connection closed: {reason}" if reason else "connection closed"))


class MessageStream(anyio.abc.ObjectStream[str]):
    """A bidirectional stream of OCPP-J text messages over some transport."""

    @property
    @abc.abstractmethod
    def subprotocol(self) -> str | None:
        """The negotiated WebSocket subprotocol (the OCPP version), if any."""

    @property
    @abc.abstractmethod
    def close_reason(self) -> CloseReason | None:
        """How the stream ended; ``None`` while it is open."""

    @abc.abstractmethod
    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with a WebSocket close code, waiting (bounded) for the peer's reply."""

    @property
    def buffered(self) -> int:
        """How many messages are already received and waiting for ``receive()`` (0: unknown).

        A hint for the session: with more input at hand (a pipelined burst), it
        leaves answering to its worker tasks, whose writes the stream can join
        into one, instead of answering each message from the reader.
        """
        return 0

    async def aclose(self) -> None:
        await self.close()

    async def send_eof(self) -> None:
        # A WebSocket has no half-close; ending our side is a close.
        await self.close()


class _MemoryMessageStream(MessageStream):
    """One end of an in-memory message link (tests, in-process peers)."""

    def __init__(
        self,
        send: MemoryObjectSendStream[str | CloseReason],
        receive: MemoryObjectReceiveStream[str | CloseReason],
        subprotocol: str | None,
    ) -> None:
        self._send = send
        self._receive = receive
        self._subprotocol = subprotocol
        self._close_reason: CloseReason | None = None

    @property
    def subprotocol(self) -> str | None:
        return self._subprotocol

    @property
    def close_reason(self) -> CloseReason | None:
        return self._close_reason

    @property
    def buffered(self) -> int:
        return self._receive.statistics().current_buffer_used

    async def receive(self) -> str:
        if self._close_reason is not None:
            raise anyio.EndOfStream
        try:
            item = await self._receive.receive()
        except anyio.EndOfStream:
            # The other end vanished without a close frame.
            self._close_reason = CloseReason(1006, "connection lost", by_peer=True)
            raise anyio.BrokenResourceError from None
        if isinstance(item, CloseReason):
            self._close_reason = CloseReason(item.code, item.reason, by_peer=True)
            self._send.close()
            raise anyio.EndOfStream
        return item

    async def send(self, item: str) -> None:
        if self._close_reason is not None:
            if self._close_reason.by_peer:
                raise anyio.BrokenResourceError
            raise anyio.ClosedResourceError
        try:
            await self._send.send(item)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            raise anyio.BrokenResourceError from None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self._close_reason is None:
            self._close_reason = CloseReason(code, reason, by_peer=False)
            with contextlib.suppress(anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._send.send_nowait(CloseReason(code, reason))
        self._send.close()
        self._receive.close()

    def abort(self) -> None:
        """Vanish without a close frame (the peer sees a 1006), as a dead TCP link would."""
        if self._close_reason is None:
            self._close_reason = CloseReason(1006, "aborted", by_peer=False)
        self._send.close()
        self._receive.close()


def memory_message_stream_pair(
    subprotocol: str | None = None, buffer: int = 64
) -> tuple[_MemoryMessageStream, _MemoryMessageStream]:
    """Two connected in-memory :class:`MessageStream` ends (for tests and in-process peers)."""
    a_send, b_receive = anyio.create_memory_object_stream[str | CloseReason](buffer)
    b_send, a_receive = anyio.create_memory_object_stream[str | CloseReason](buffer)
    return (
        _MemoryMessageStream(a_send, a_receive, subprotocol),
        _MemoryMessageStream(b_send, b_receive, subprotocol),
    )
