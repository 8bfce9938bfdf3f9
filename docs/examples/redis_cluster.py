"""A CSMS node and an API worker on Redis Cluster: the station's answer comes back across it.

Run it against a cluster (Redis >= 7: broadcasts use sharded pub/sub)::

    python docs/examples/redis_cluster.py redis+cluster://127.0.0.1:7000

Any primary's address will do: the client learns the others and follows slot
redirections.  Without a URL it says how to run it.  The tests run :func:`main` against a
3-primary cluster they start (``tests/cluster/test_redis_cluster.py``).
"""

from __future__ import annotations

import sys
from typing import Any

import anyio

import ocpprpc
from ocpprpc import CallContext, ClusterClient, RedisAdapter, Router, cluster_delivery, v16


def station_router() -> Router:
    router = Router()

    @router.on("Reset")
    async def reset(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        return {"status": "Accepted"}

    return router


async def main(url: str, namespace: str = "default") -> None:
    async with (
        # A CSMS node on the cluster, with a station connected to it ...
        ocpprpc.serve() as csms,
        RedisAdapter(url, node_id="csms-1", namespace=namespace) as node,
        cluster_delivery(csms, node),
        ocpprpc.connect(f"ws://127.0.0.1:{csms.port}/ocpp", "CP1", router=station_router()),
        # ... and a caller on the same cluster (in practice another process: a web worker).
        ClusterClient(url, namespace=namespace) as client,
    ):
        with anyio.fail_after(5):
            while (held := await client.where("CP1")) is None:  # noqa: ASYNC110 (the node claims it)
                await anyio.sleep(0.01)
        print("CP1 is held by", held.node)
        answer = await client.send_to_client("CP1", v16.ResetRequest(type=v16.ResetType.SOFT))
        print("CP1 answered:", answer.status)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python docs/examples/redis_cluster.py redis+cluster://HOST:PORT")
    else:
        anyio.run(main, sys.argv[1])
