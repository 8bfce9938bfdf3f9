"""Choosing the Redis client: redis-py on asyncio, coredis on trio (or whichever the user passes)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

from .ops import RedisOps

__all__ = ["ClientChoice", "open_ops", "running_on_asyncio"]

ClientChoice = Literal["auto", "redis-py", "coredis"]


def running_on_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@asynccontextmanager
async def open_ops(
    url: str | None = None,
    *,
    client: Any = None,
    prefer: ClientChoice = "auto",
    connect_timeout: float = 1.0,
) -> AsyncIterator[RedisOps]:
    """Operations on *client* (a ``redis.asyncio.Redis`` or a ``coredis.Redis``, left open), or on *url*.

    ``"auto"``: redis-py on asyncio when it is installed, else coredis (the only one that runs on trio).
    """
    if client is not None:
        module = type(client).__module__.partition(".")[0]
        if module == "redis":
            from .ops_redispy import RedisPyOps

            yield RedisPyOps(client)
        elif module == "coredis":
            from .ops_coredis import CoredisOps

            yield CoredisOps(client)
        else:
            raise TypeError(f"expected a redis.asyncio.Redis or a coredis.Redis client, got {type(client)!r}")
        return
    if url is None:
        raise ValueError("give a Redis URL or a client")
    if prefer == "redis-py" or (prefer == "auto" and running_on_asyncio() and _have_redispy()):
        if not running_on_asyncio():
            raise RuntimeError("redis-py runs on asyncio only; use coredis on trio")
        from .ops_redispy import open_redispy

        async with open_redispy(url, connect_timeout=connect_timeout) as ops:
            yield ops
    else:
        from .ops_coredis import open_coredis

        async with open_coredis(url, connect_timeout=connect_timeout) as coredis_ops:
            yield coredis_ops


def _have_redispy() -> bool:
    try:
        import redis.asyncio  # noqa: F401
    except ImportError:
        return False
    return True
