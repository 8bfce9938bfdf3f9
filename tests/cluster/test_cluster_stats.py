"""Cluster health in ``server.stats()`` and ``/metrics``: a scripted scenario on a real redis-server.

The scenario, against node ``b`` (a server with metrics, its station CP1): three calls from a
:class:`~ocpprpc.ClusterClient`, a kick delivered twice (a duplicate), one delivered past its
deadline (expired), a junk inbox entry (malformed), a call from ``b`` to a station whose node is
dead (node unavailable), a broadcast each way, and two inbox entries read by a consumer that
died before acking them (pending).  Every figure is asserted exactly, in ``stats()`` and in
``/metrics`` as parsed by prometheus_client's own parser.
"""

from __future__ import annotations

import dataclasses
import logging
from contextlib import AsyncExitStack
from typing import Any

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

import ocpprpc
from ocpprpc import ClusterClient, ClusterStats, NodeUnavailable
from ocpprpc._csms.cluster_delivery import ClusterDelivery, cluster_delivery
from ocpprpc.cluster.adapter import BROADCAST, ClusterMetrics, Kind, envelope, now_ms
from ocpprpc.cluster.redis_adapter import RedisAdapter
from ocpprpc.cluster.redis_scripts import GROUP
from tests.cluster.conftest import Flavour
from tests.cluster.redis_server import RedisServer
from tests.cluster.test_adapter import MEDIA, Cluster, Medium
from tests.cluster.test_cluster_delivery import station_router
from tests.csms.helpers import eventually, http_exchange, ws_url

pytestmark = pytest.mark.timeout(120)
PROMPT = 5.0
Scraped = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(text: str) -> Scraped:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def metrics_of(server: ocpprpc.Server) -> Scraped:
    """``GET /metrics`` on the station port, as Prometheus scrapes it."""
    answer = await http_exchange(server.port, b"GET /metrics HTTP/1.1\r\nHost: csms\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    return scrape(body.decode())


def cluster_families(scraped: Scraped) -> set[str]:
    return {name for name, _ in scraped if name.startswith("ocpprpc_cluster_")}


@pytest.fixture
def anyio_backend(flavour: Flavour) -> str:
    return flavour.backend


async def test_a_scripted_scenario_in_stats_and_metrics(
    redis_server: RedisServer, flavour: Flavour, ns: str
) -> None:
    inbox = f"ocpprpc:{{{ns}:b}}:inbox"
    # Before b runs: two entries read by a consumer of b's group that died before acking them.
    # Ids of their own (1000 ms after the epoch): the age of the oldest is known.
    redis_server.command("XGROUP", "CREATE", inbox, GROUP, "0", "MKSTREAM")
    for entry_id in ("1000-0", "1000-1"):
        redis_server.command("XADD", inbox, entry_id, "e", "read, never acked")
    assert (
        redis_server.command("XREADGROUP", "GROUP", GROUP, "crashed", "STREAMS", inbox, ">").count(
            b"read, never acked"
        )
        == 2
    )
    # A station held by a node that is not alive (its liveness key is gone).
    redis_server.command("SET", f"ocpprpc:{ns}:presence:{{CP9}}", "c|conn-9|1")
    async with AsyncExitStack() as stack:
        b = await stack.enter_async_context(ocpprpc.serve(metrics=True))
        adapter = await stack.enter_async_context(
            RedisAdapter(redis_server.url, node_id="b", namespace=ns, prefer=flavour.client, block=0.2)
        )
        # One sample at the start, then none for an hour: the test samples when it wants to.
        delivery = await stack.enter_async_context(cluster_delivery(b, adapter, stats_interval=3600))
        await stack.enter_async_context(ocpprpc.connect(ws_url(b), "CP1", router=station_router()))
        client = await stack.enter_async_context(
            ClusterClient(redis_server.url, namespace=ns, prefer=flavour.client)
        )
        with anyio.fail_after(PROMPT):
            while await client.where("CP1") is None:  # noqa: ASYNC110 (b claims it in another task)
                await anyio.sleep(0.01)

        for _ in range(3):
            assert await client.send_to_client("CP1", "Reset", {"type": "Soft"}) == {"status": "Accepted"}
        kick = envelope(Kind.KICK, client.node_id, "CP1", timeout=30, conn="no-such-connection")
        await client.adapter.deliver("b", kick)
        await client.adapter.deliver("b", kick)  # the same envelope again: a duplicate
        late = envelope(Kind.KICK, client.node_id, "CP1", timeout=-1, conn="no-such-connection")
        await client.adapter.deliver("b", late)  # past its deadline already
        redis_server.command("XADD", inbox, "*", "e", "{not an envelope")
        with pytest.raises(NodeUnavailable):
            await b.send_to_client("CP9", "Reset", {"type": "Soft"})
        await adapter.broadcast(envelope(Kind.BROADCAST, "b", BROADCAST, timeout=30, m="Ping"))
        await client.adapter.broadcast(
            envelope(Kind.BROADCAST, client.node_id, BROADCAST, timeout=30, m="Ping")
        )

        async def settled() -> bool:
            s = await delivery.sample_stats()
            return (s.duplicates, s.expired, s.malformed, s.broadcasts_received, s.inbox_pending) == (
                1,
                1,
                1,
                1,
                2,
            )

        with anyio.fail_after(PROMPT):
            while not await settled():  # noqa: ASYNC110 (b's consumer and subscriber count them)
                await anyio.sleep(0.02)
        expected = ClusterStats(
            node="b",
            age=0.0,
            sent=3,  # the three replies
            received=4,  # the three calls and the kick
            duplicates=1,
            expired=1,
            malformed=1,
            node_unavailable=1,
            broadcasts_sent=1,
            broadcasts_received=1,
            subscriber_restarts=0,
            rehydrations=0,
            unavailable=0,
            inbox_lag=0,
            inbox_pending=2,  # the crashed consumer's two (b's own are acked)
            oldest_pending_ms=0,
        )
        stats = b.stats().cluster  # sync, no I/O: the sample just taken
        assert stats is not None
        assert stats.oldest_pending_ms is not None
        assert 0 <= now_ms() - 1000 - stats.oldest_pending_ms < 60_000
        assert 0 <= stats.age < 60
        assert dataclasses.replace(stats, age=0.0, oldest_pending_ms=0) == expected
        assert b.stats().as_dict()["cluster"]["inbox_pending"] == 2

        scraped = await metrics_of(b)
        for name, figure in (
            ("sent_total", 3),
            ("received_total", 4),
            ("node_unavailable_total", 1),
            ("broadcasts_sent_total", 1),
            ("broadcasts_received_total", 1),
            ("subscriber_restarts_total", 0),
            ("rehydrations_total", 0),
            ("unavailable_total", 0),
            ("inbox_lag", 0),
            ("inbox_pending", 2),
        ):
            assert scraped[(f"ocpprpc_cluster_{name}", frozenset())] == figure, name
        for reason in ("duplicate", "expired", "malformed"):
            assert scraped[("ocpprpc_cluster_dropped_total", frozenset({("reason", reason)}))] == 1
        assert scraped[("ocpprpc_cluster_node_info", frozenset({("node", "b")}))] == 1
        oldest = scraped[("ocpprpc_cluster_oldest_pending_seconds", frozenset())]
        assert 0 <= now_ms() / 1000 - 1 - oldest < 60
        assert 0 <= scraped[("ocpprpc_cluster_sample_age_seconds", frozenset())] < 60


@pytest.mark.parametrize(("medium", "anyio_backend"), [(m, m.backend) for m in MEDIA], ids=map(str, MEDIA))
async def test_sampled_periodically_and_only_while_in_a_cluster(
    medium: Medium, redis_server: RedisServer, ns: str
) -> None:
    async with AsyncExitStack() as stack:
        c = Cluster(medium, redis_server, ns, stack)
        other = await c.start("a")
        server = await stack.enter_async_context(ocpprpc.serve(metrics=True))
        assert server.stats().cluster is None  # not in a cluster: nothing sampled, nothing scraped
        assert cluster_families(await metrics_of(server)) == set()
        adapter = await stack.enter_async_context(c.adapter("b"))
        async with cluster_delivery(server, adapter, stats_interval=0.02):
            kick = envelope(Kind.KICK, "a", "CP1", timeout=30, conn="no-such-connection")
            await other.deliver("b", kick)
            await eventually(lambda: server.stats().cluster.received == 1, PROMPT)  # type: ignore[union-attr]
            scraped = await metrics_of(server)
            assert scraped[("ocpprpc_cluster_received_total", frozenset())] == 1
        assert server.stats().cluster is None  # left the cluster
        assert cluster_families(await metrics_of(server)) == set()


class _Failing:
    """An adapter whose metrics fail (a user's adapter with a bug): the node goes on."""

    def __init__(self, adapter: Any) -> None:
        self._adapter = adapter

    def __getattr__(self, name: str) -> Any:
        return getattr(self._adapter, name)

    async def metrics(self) -> ClusterMetrics:
        raise RuntimeError("no metrics today")


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_a_failing_sample_is_logged_and_ages(caplog: pytest.LogCaptureFixture) -> None:
    medium = ocpprpc.MemoryCluster()
    async with (
        ocpprpc.serve() as server,
        medium.node("b") as adapter,
        cluster_delivery(server, _Failing(adapter), stats_interval=0.01),
    ):
        await eventually(lambda: "cluster metrics not sampled" in caplog.text, PROMPT)
        stats = server.stats().cluster
        assert stats is not None
        # Never sampled: nothing counted, the inbox unknown; the age says since when.
        assert (stats.received, stats.inbox_lag, stats.inbox_pending) == (0, None, None)
        assert stats.age > 0
    assert any(r.levelno == logging.ERROR for r in caplog.records)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("interval", [0, -1.0, float("nan")])
async def test_stats_interval_must_be_positive(interval: float) -> None:
    async with ocpprpc.serve() as server, ocpprpc.MemoryCluster().node("b") as adapter:
        with pytest.raises(ValueError, match="stats_interval must be positive"):
            ClusterDelivery(server, adapter, stats_interval=interval)
