"""ocpprpc on an existing ``trio_websocket.WebSocketConnection`` (trio only; extra ``trio-websocket``).

For trio applications that already accept or open their WebSockets with
trio-websocket: wrap the connection and run an ocpprpc :class:`~ocpprpc.Session`
on it.  This module is the only place in ocpprpc that imports trio (through
trio-websocket); nothing imports it unless you do.

::

    from ocpprpc.trio_websocket import open_session

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept(subprotocol="ocpp1.6")
        async with open_session(ws, ocpprpc.Role.CSMS, identity=ws.path.rsplit("/", 1)[-1],
                                router=router, validation=True) as session:
            await session.closed.wait()
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import trio_websocket

from ._engine.rules import Role
from ._rpc.protocols import ValidationArg, session_parts
from ._rpc.router import Router
from ._rpc.session import Session
from ._ws.transport import CloseReason, MessageStream

__all__ = ["TrioWebSocketStream", "open_session"]

# RFC 6455 7.4.1: the message type is not one we accept (OCPP-J is text only).
_UNSUPPORTED_DATA = 1003


class TrioWebSocketStream(MessageStream):
    """A :class:`~ocpprpc.MessageStream` over a ``trio_websocket.WebSocketConnection``."""

    def __init__(self, websocket: trio_websocket.WebSocketConnection) -> None:
        self.websocket = websocket
        self._closed_by_us = False
        self._close_reason: CloseReason | None = None

    @property
    def subprotocol(self) -> str | None:
        return self.websocket.subprotocol

    @property
    def close_reason(self) -> CloseReason | None:
        if self._close_reason is None and self.websocket.closed is not None:
            self._close_reason = self._reason(self.websocket.closed)
        return self._close_reason

    def _reason(self, closed: trio_websocket.CloseReason | None) -> CloseReason:
        if closed is None:
            return CloseReason(1006, "connection lost", by_peer=not self._closed_by_us)
        return CloseReason(closed.code, closed.reason or "", by_peer=not self._closed_by_us)

    async def receive(self) -> str:
        try:
            message = await self.websocket.get_message()
        except trio_websocket.ConnectionClosed as exc:
            self._close_reason = self._reason(exc.reason)
            if self._close_reason.code == 1006:
                raise anyio.BrokenResourceError from exc
            raise anyio.EndOfStream from exc
        if isinstance(message, bytes):
            await self.close(_UNSUPPORTED_DATA, "OCPP-J messages are text")
            raise anyio.BrokenResourceError
        return message

    async def send(self, item: str) -> None:
        try:
            await self.websocket.send_message(item)
        except trio_websocket.ConnectionClosed as exc:
            self._close_reason = self._reason(exc.reason)
            if self._closed_by_us:
                raise anyio.ClosedResourceError from exc
            raise anyio.BrokenResourceError from exc

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.websocket.closed is None:
            self._closed_by_us = True
        with anyio.CancelScope(shield=True):
            await self.websocket.aclose(code, reason or None)
        if self._close_reason is None and self.websocket.closed is not None:
            self._close_reason = self._reason(self.websocket.closed)


@asynccontextmanager
async def open_session(
    websocket: trio_websocket.WebSocketConnection,
    role: Role,
    *,
    protocol: str | None = None,
    identity: str | None = None,
    router: Router | None = None,
    validation: ValidationArg = False,
    max_outstanding_calls: int | None = None,
    detailed_errors: bool = False,
    **session_options: Any,
) -> AsyncIterator[Session]:
    """Run a :class:`~ocpprpc.Session` on an open trio-websocket connection.

    :param role: ``Role.CSMS`` for an accepted connection, ``Role.CHARGING_STATION``
        for one you opened.
    :param protocol: the OCPP version; default: the negotiated subprotocol.

    Other parameters as for :func:`ocpprpc.connect`.
    """
    chosen = protocol or websocket.subprotocol
    if chosen is None:
        raise ValueError("no OCPP protocol: the WebSocket negotiated no subprotocol and none was given")
    connection, options = session_parts(
        role, chosen, validation, max_outstanding_calls=max_outstanding_calls, detailed_errors=detailed_errors
    )
    session = Session(
        TrioWebSocketStream(websocket),
        connection,
        router=router,
        identity=identity,
        **options,
        **session_options,
    )
    async with session:
        yield session
