"""Two CSMS nodes, one cluster: a command reaches a station connected to the other node.

Run it: ``python docs/examples/clustering.py``.  Then node b's cluster health, as
``server.stats().cluster`` shows it.  Both nodes live in this process and
share a :class:`~ocpprpc.MemoryCluster`; across processes and machines they share Redis
instead -- replace ``medium.node(name)`` by
``RedisAdapter("redis://127.0.0.1:6379/0", node_id=name)`` and nothing else changes.
"""

from __future__ import annotations

from typing import Any

import anyio

import ocpprpc
from ocpprpc import CallContext, MemoryCluster, Router, cluster_delivery


def station_router() -> Router:
    router = Router()

    @router.on("Reset")
    async def reset(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        return {"status": "Accepted"}

    return router


async def main() -> None:
    medium = MemoryCluster()
    async with (
        ocpprpc.serve() as csms_a,
        medium.node("node-a") as adapter_a,
        cluster_delivery(csms_a, adapter_a),
        ocpprpc.serve() as csms_b,
        medium.node("node-b") as adapter_b,
        cluster_delivery(csms_b, adapter_b) as delivery_b,
        # The station connects to node b ...
        ocpprpc.connect(f"ws://127.0.0.1:{csms_b.port}/ocpp", "CP1", router=station_router()),
    ):
        with anyio.fail_after(5):
            while await adapter_a.presence("CP1") is None:  # noqa: ASYNC110 (another task claims it)
                await anyio.sleep(0.01)
        # ... and node a commands it.
        answer = await csms_a.send_to_client("CP1", "Reset", {"type": "Soft"})
        print("node-a -> CP1 on node-b:", answer)
        outcome = await csms_b.try_send_to_client("CP404", "Reset", {"type": "Soft"})
        print("a station connected nowhere:", outcome.status)

        # Cluster health: sampled every stats_interval (5 s); sample_stats() takes one now.
        await delivery_b.sample_stats()
        health = csms_b.stats().cluster  # sync, no I/O: the last sample, and its age
        assert health is not None
        print(f"node-b: {health.received} envelope received, {health.inbox_lag} waiting (sampled just now)")
        assert (health.received, health.inbox_lag) == (1, 0)  # node a's call


if __name__ == "__main__":
    anyio.run(main)
