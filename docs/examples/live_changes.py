"""Change a running CSMS: raise a rate limit and tighten a timeout with a station connected.

Run it: ``python docs/examples/live_changes.py``.  A station is throttled at one
Heartbeat a minute; the operator raises the limit with ``reconfigure()`` and the
same connection's next Heartbeat goes through.  The change is reported on the
security-event hub.
"""

from __future__ import annotations

from typing import Any

import anyio

import ocpprpc

router = ocpprpc.Router()


@router.on("Heartbeat")
def heartbeat(request: Any, ctx: ocpprpc.CallContext) -> Any:
    return {"currentTime": "2024-01-01T00:00:00Z"}


async def main() -> None:
    strict = ocpprpc.StationLimits(
        per_action={"Heartbeat": ocpprpc.RateLimit.parse("1/60")}, on_breach=ocpprpc.OnBreach.CALLERROR
    )
    async with ocpprpc.serve(router=router, rate_limits=strict) as server:
        server.security_events.subscribe(lambda event: print("event:", event.to_json()))
        url = f"ws://127.0.0.1:{server.port}/ocpp"
        async with ocpprpc.connect(url, "CP1", protocols=["ocpp1.6"]) as station:
            await station.call("Heartbeat")
            try:
                await station.call("Heartbeat")
            except ocpprpc.OCPPError as refused:
                print("throttled:", refused.code.value, refused.description)
            changed = server.reconfigure(
                rate_limits=ocpprpc.StationLimits(per_action={"Heartbeat": ocpprpc.RateLimit.parse("10/1")}),
                handshake_timeout=5.0,
            )
            print("changed:", changed)
            print("after the change:", await station.call("Heartbeat"))


if __name__ == "__main__":
    anyio.run(main)
