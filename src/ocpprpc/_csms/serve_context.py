"""``ocpprpc.serve``: a :class:`~ocpprpc.Server` on one or more listeners for an ``async with`` block.

The shortest way to run a CSMS: the block starts every listener before it is
entered and shuts the server down gracefully when it is left.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio

from .._rpc.groups import raise_single
from .listener import Listener
from .server import Server

__all__ = ["serve"]


@asynccontextmanager
async def serve(
    host: str | None = "127.0.0.1",
    port: int = 0,
    *,
    listeners: Sequence[Listener] | None = None,
    **options: Any,
) -> AsyncIterator[Server]:
    """Run a :class:`Server` on *host*:*port* for the duration of the block.

    ::

        async with ocpprpc.serve("0.0.0.0", 9000, router=router) as server:
            await anyio.sleep_forever()

    Port 0 picks a free port (``server.port``).  Leaving the block shuts the
    server down gracefully (:meth:`Server.shutdown`).

    *listeners*: several addresses instead of *host*:*port*, each a
    :class:`Listener` with its own TLS context and routes (docs: routing).
    """
    if listeners is not None:
        if (host, port) != ("127.0.0.1", 0):
            raise TypeError("serve() takes host and port, or listeners, not both")
        if not listeners:
            raise ValueError("listeners must name at least one Listener")
        if not all(isinstance(listener, Listener) for listener in listeners):
            raise TypeError("listeners must be ocpprpc.Listener objects")
    server = Server(**options)
    try:
        async with anyio.create_task_group() as task_group:
            for listener in listeners or [Listener(host, port)]:
                await task_group.start(
                    functools.partial(
                        server.serve,
                        listener.host,
                        listener.port,
                        ssl_context=listener.ssl_context,
                        routes=listener.routes,
                        name=listener.name,
                    )
                )
            try:
                yield server
            finally:
                with anyio.CancelScope(shield=True):
                    await server.shutdown()
    except BaseExceptionGroup as group:
        raise_single(group)
        raise
