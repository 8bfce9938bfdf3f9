"""Seeing a CSMS: ``server.stats()``, ``GET /health`` and ``GET /metrics``.

Run it: ``python docs/examples/metrics.py`` (needs ``pip install 'ocpprpc[metrics]'``).
A CSMS with metrics on answers two stations, then the example reads its snapshot, asks
``/health`` and scrapes ``/metrics`` over plain sockets, as a load balancer and
Prometheus would, and checks what it got.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
from prometheus_client.parser import text_string_to_metric_families

import ocpprpc

router = ocpprpc.Router()


@router.on("Heartbeat")
def heartbeat(request: Any, ctx: ocpprpc.CallContext) -> dict[str, Any]:
    return {"currentTime": "2025-01-01T00:00:00Z"}


async def http_get(port: int, path: str) -> tuple[int, bytes]:
    """What a probe does: one plain GET, read until the server closes."""
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(f"GET {path} HTTP/1.1\r\nHost: csms\r\n\r\n".encode())
        received = b""
        try:
            while True:
                received += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            pass
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def main() -> None:
    # metrics=True: the Metrics middleware and hub subscriber, and /health + /metrics on this port.
    async with ocpprpc.serve(router=router, protocols=["ocpp1.6"], metrics=True) as server:
        url = f"ws://127.0.0.1:{server.port}/ocpp"
        async with (
            ocpprpc.connect(url, "CP-1", protocols=["ocpp1.6"]) as one,
            ocpprpc.connect(url, "CP-2", protocols=["ocpp1.6"]) as two,
        ):
            for station in (one, two):
                await station.call("Heartbeat", {})

            stats = server.stats()
            print(stats.to_json())
            assert stats.sessions == {"ocpp1.6": 2}
            assert stats.calls == {"Heartbeat": {"in": {"ok": 2}}}

            status, body = await http_get(server.port, "/health")
            health = json.loads(body)
            print(status, health)
            assert status == 200 and health["status"] == "ok" and health["connections"] == 2

            status, body = await http_get(server.port, "/metrics")
            scraped = {
                (sample.name, tuple(sorted(sample.labels.items()))): sample.value
                for family in text_string_to_metric_families(body.decode())
                for sample in family.samples
            }
            heartbeats = (
                "ocpprpc_calls_total",
                (("action", "Heartbeat"), ("direction", "in"), ("outcome", "ok")),
            )
            print(status, "heartbeats:", scraped[heartbeats])
            assert scraped[heartbeats] == 2
            assert scraped[("ocpprpc_connections", (("protocol", "ocpp1.6"),))] == 2


if __name__ == "__main__":
    anyio.run(main)
