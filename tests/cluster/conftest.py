"""Fixtures of the clustering tests: a private redis-server (never the machine's own on 6379)."""

from __future__ import annotations

import gc
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ocpprpc.cluster.ops_open import ClientChoice
from tests.cluster.redis_server import RedisClusterServers, RedisServer


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One server for the run; tests keep apart by namespace (:func:`ns`), so none flushes it."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A server of this test alone: for the tests that kill and restart it."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def ns() -> str:
    """A namespace of this test's own: no two tests share a key."""
    return f"t{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class Flavour:
    """A backend and the Redis client the cluster uses on it."""

    backend: str
    client: ClientChoice

    def __str__(self) -> str:
        return f"{self.backend}+{self.client}"


#: redis-py runs on asyncio only; coredis on both.
FLAVOURS = [Flavour("asyncio", "redis-py"), Flavour("asyncio", "coredis"), Flavour("trio", "coredis")]


@pytest.fixture(params=FLAVOURS, ids=str)
def flavour(request: pytest.FixtureRequest) -> Flavour:
    """For the Redis tests: their module sets ``anyio_backend`` from it (see :func:`redis_backend`)."""
    return request.param  # type: ignore[no-any-return]


def redis_backend(flavour: Flavour) -> str:
    """The ``anyio_backend`` of a Redis test module: every client on every backend it supports."""
    return flavour.backend


#: coredis 6.9 creates memory streams per connection object and never closes those of a
#: connection that failed to connect (coredis/connection/_base.py): ResourceWarnings in
#: ``__del__`` when Redis is down.  Theirs, not ours; every test here carries this mark
#: (the objects are collected whenever the GC runs, so in whichever test comes next).
COREDIS_UNCLOSED_STREAMS = pytest.mark.filterwarnings(
    r"ignore:Exception ignored in. <function MemoryObject(Send|Receive)Stream.__del__"
    ":pytest.PytestUnraisableExceptionWarning"
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(COREDIS_UNCLOSED_STREAMS)


@pytest.fixture(autouse=True)
def _collect_coredis_leftovers() -> Iterator[None]:
    """Collect those streams in the test that left them (where the mark applies), not at exit."""
    yield
    gc.collect()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    """One real 3-primary Redis Cluster for the run (tests keep apart by namespace)."""
    cluster = RedisClusterServers(tmp_path_factory.mktemp("redis-cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.kill()
