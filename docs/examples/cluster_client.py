"""A process that holds no station calls one held by a CSMS node: :class:`~ocpprpc.ClusterClient`.

Run it: ``python docs/examples/cluster_client.py``.  The CSMS node and the caller share a
:class:`~ocpprpc.MemoryCluster` here (one process); across processes they share Redis:
``ClusterClient("redis://redis.internal:6379/0")`` joins the cluster by itself.
"""

from __future__ import annotations

from typing import Any

import anyio

import ocpprpc
from ocpprpc import CallContext, ClusterClient, MemoryCluster, Router, cluster_delivery, v16


def station_router() -> Router:
    router = Router()

    @router.on("Reset")
    async def reset(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        return {"status": "Accepted"}

    return router


async def main() -> None:
    medium = MemoryCluster()
    async with (
        # A CSMS node with a station connected to it ...
        ocpprpc.serve() as csms,
        medium.node("csms-1") as csms_node,
        cluster_delivery(csms, csms_node),
        ocpprpc.connect(f"ws://127.0.0.1:{csms.port}/ocpp", "CP1", router=station_router()),
        # ... and a web worker or a script: a caller only, no listener, no stations.
        medium.node("api-worker") as worker_node,
        ClusterClient(worker_node) as client,
    ):
        with anyio.fail_after(5):
            while (held := await client.where("CP1")) is None:  # noqa: ASYNC110 (the node claims it)
                await anyio.sleep(0.01)
        print("CP1 is held by", held.node, "connection", held.conn)
        answer = await client.send_to_client("CP1", v16.ResetRequest(type=v16.ResetType.SOFT))
        print("CP1 answered:", answer.status)
        outcomes = await client.broadcast(["CP1", "CP404"], "Reset", {"type": "Soft"})
        for identity, outcome in outcomes.items():
            print(identity, outcome.status)


if __name__ == "__main__":
    anyio.run(main)
