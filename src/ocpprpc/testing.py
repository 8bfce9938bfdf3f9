"""Helpers for testing code built on ocpprpc, without sockets.

:func:`session_pair` runs a charging station session and a CSMS session joined
by an in-memory link, so handlers can be exercised end to end (framing, codec,
routing, error mapping) in a plain async test::

    from ocpprpc import Router
    from ocpprpc.testing import session_pair

    csms_router = Router()

    @csms_router.on("Heartbeat")
    async def heartbeat(request, ctx):
        return {"currentTime": "2024-01-01T00:00:00Z"}

    async def test_heartbeat() -> None:
        async with session_pair("ocpp1.6", csms_router=csms_router) as (station, csms):
            answer = await station.call("Heartbeat", {})
            assert answer == {"currentTime": "2024-01-01T00:00:00Z"}

It works under any anyio backend (the anyio pytest plugin, ``trio.run``,
``asyncio.run``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from ._engine.codec import PayloadCodec
from ._engine.connection import Connection
from ._engine.rules import ProtocolRules, Role
from ._rpc.router import Router
from ._rpc.session import Session
from ._ws.transport import memory_message_stream_pair

__all__ = ["session_pair"]


@asynccontextmanager
async def session_pair(
    protocol: str | ProtocolRules = "ocpp1.6",
    *,
    station_router: Router | None = None,
    csms_router: Router | None = None,
    station_codec: PayloadCodec | None = None,
    csms_codec: PayloadCodec | None = None,
    identity: str = "CP001",
    engine_options: Mapping[str, Any] | None = None,
    raise_handler_errors: bool = True,
    **session_options: Any,
) -> AsyncIterator[tuple[Session, Session]]:
    """Two connected, running sessions: ``(station, csms)``.

    :param protocol: the subprotocol both ends speak.
    :param station_router: handlers for CALLs the CSMS sends to the station.
    :param csms_router: handlers for CALLs the station sends to the CSMS.
    :param station_codec: the station engine's payload codec (plain dicts by default).
    :param csms_codec: the CSMS engine's payload codec.
    :param identity: the station identity both sessions report.
    :param engine_options: extra :class:`~ocpprpc.Connection` options for both engines
        (``max_outstanding_calls``, ``id_factory``, ...).
    :param raise_handler_errors: on by default here, unlike in :class:`Session`: a
        handler bug fails the test (the exception leaves the ``async with``)
        instead of only becoming an ``InternalError`` for the peer.
    :param session_options: further :class:`Session` options for both ends.

    Leaving the block closes both sessions gracefully; nothing is left running.
    """
    options = dict(engine_options or {})
    rules_name = protocol if isinstance(protocol, str) else protocol.protocol
    station_stream, csms_stream = memory_message_stream_pair(rules_name)
    try:
        station = Session(
            station_stream,
            Connection(Role.CHARGING_STATION, protocol, codec=station_codec, **options),
            router=station_router,
            identity=identity,
            raise_handler_errors=raise_handler_errors,
            **session_options,
        )
        csms = Session(
            csms_stream,
            Connection(Role.CSMS, protocol, codec=csms_codec, **options),
            router=csms_router,
            identity=identity,
            raise_handler_errors=raise_handler_errors,
            **session_options,
        )
    except BaseException:  # bad options: nothing is left open
        await station_stream.aclose()
        await csms_stream.aclose()
        raise
    # Leaving: the CSMS closes gracefully first, the station sees the peer close.
    async with station, csms:
        yield station, csms
