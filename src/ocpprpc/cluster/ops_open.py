"""Choosing the Redis client: redis-py on asyncio, coredis on trio (or whichever the user passes).

URLs: ``redis://HOST:PORT[/DB]`` (``rediss://`` for TLS) for one Redis, and
``redis+cluster://HOST:PORT`` (``rediss+cluster://``) for Redis Cluster: the client
starts from that node and finds the others (slot redirections included).  A plain
``redis://`` URL that turns out to name a cluster node (``INFO cluster`` says
``cluster_enabled:1``: a managed "configuration endpoint", say) is opened in cluster
mode too, so the scheme only forces it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal
from urllib.parse import urlsplit

from .ops import RedisOps

__all__ = ["ClientChoice", "client_url", "open_ops", "redis_url_problem", "running_on_asyncio"]

logger = logging.getLogger(__name__)

#: Scheme -> (the clients' scheme, cluster mode forced).
_SCHEMES = {
    "redis": ("redis", False),
    "rediss": ("rediss", False),
    "redis+cluster": ("redis", True),
    "rediss+cluster": ("rediss", True),
}
_EXPECTED = (
    "expected redis://HOST:PORT[/DB], rediss:// for TLS, or redis+cluster://HOST:PORT for Redis Cluster"
)


def redis_url_problem(text: str) -> str | None:
    """Why *text* is not a usable Redis URL, or None (see the module docstring for the forms)."""
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 (raises ValueError for a port out of range or not a number)
    except ValueError as exc:
        return f"not a valid URL: {exc}"
    if parts.scheme not in _SCHEMES:
        return _EXPECTED
    if not parts.hostname:
        return f"names no host ({_EXPECTED})"
    if parts.fragment:
        return "has a #fragment"
    database = parts.path.strip("/")
    if database and not (database.isascii() and database.isdigit()):
        return f"the database must be a number (redis://HOST:PORT/0), got {database!r}"
    if _SCHEMES[parts.scheme][1] and database not in ("", "0"):
        return f"Redis Cluster has only database 0, got /{database}"
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        return "has control characters"
    return None


def client_url(url: str) -> tuple[str, bool]:
    """*url* as the Redis clients take it, and whether cluster mode is forced; ValueError if unusable."""
    problem = redis_url_problem(url)
    if problem is not None:
        raise ValueError(f"not a usable Redis URL: {problem}")
    parts = urlsplit(url)
    scheme, cluster = _SCHEMES[parts.scheme]
    return parts._replace(scheme=scheme).geturl(), cluster


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
    """Operations on *client* (a ``redis.asyncio.Redis`` / ``RedisCluster`` or a ``coredis.Redis`` /
    ``RedisCluster``, left open), or on *url* (see the module docstring).

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
            raise TypeError(
                "expected a redis.asyncio.Redis / RedisCluster or a coredis.Redis / RedisCluster client, "
                f"got {type(client)!r}"
            )
        return
    if url is None:
        raise ValueError("give a Redis URL or a client")
    plain_url, cluster = client_url(url)
    if prefer == "redis-py" or (prefer == "auto" and running_on_asyncio() and _have_redispy()):
        if not running_on_asyncio():
            raise RuntimeError("redis-py runs on asyncio only; use coredis on trio")
        from .ops_redispy import open_redispy

        async with open_redispy(plain_url, cluster=cluster or None, connect_timeout=connect_timeout) as ops:
            yield ops
    else:
        from .ops_coredis import open_coredis

        async with open_coredis(
            plain_url, cluster=cluster or None, connect_timeout=connect_timeout
        ) as coredis_ops:
            yield coredis_ops


def _have_redispy() -> bool:
    try:
        import redis.asyncio  # noqa: F401
    except ImportError:
        return False
    return True
