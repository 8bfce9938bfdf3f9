"""The two doors to the same options: keywords, or one object per group.

Run it: ``python docs/examples/options.py``.  It builds a CSMS and a station
both ways, shows that they end up with equal settings, talks over the
station built from objects, and shows a conflict being refused.
"""

from __future__ import annotations

from typing import Any

import anyio

import ocpprpc

router = ocpprpc.Router()


@router.on("Heartbeat")
async def heartbeat(request: Any, ctx: ocpprpc.CallContext) -> Any:
    return {"currentTime": "2024-01-01T00:00:00Z"}


async def main() -> None:
    by_keywords = ocpprpc.Server(
        router=router, max_message_size=128 * 1024, max_queued_calls=32, max_connections=500
    )
    by_objects = ocpprpc.Server(
        router=router,
        websocket=ocpprpc.WebSocketOptions(max_message_size=128 * 1024),
        session=ocpprpc.SessionOptions(max_queued_calls=32),
        csms=ocpprpc.CsmsOptions(max_connections=500),
    )
    for name in ("websocket_options", "session_settings", "csms_options"):
        same = getattr(by_keywords, name) == getattr(by_objects, name)
        print(f"server {name} equal: {same}")
        assert same
    print("server compression (the CSMS default):", by_objects.compression)

    transport = ocpprpc.WebSocketOptions(max_message_size=128 * 1024, close_timeout=2.0)
    session = ocpprpc.SessionOptions(call_timeout=5.0, max_bad_messages=3)
    async with ocpprpc.serve(csms=by_objects.csms_options, websocket=transport, router=router) as server:
        url = f"ws://127.0.0.1:{server.port}/ocpp"
        async with ocpprpc.connect(url, "CP1", websocket=transport, session=session) as station:
            answer = await station.call("Heartbeat", {})
            print("station (objects) got:", answer, "call_timeout:", station.call_timeout)
        async with ocpprpc.connect(
            url, "CP2", max_message_size=128 * 1024, close_timeout=2.0, max_bad_messages=3, call_timeout=5.0
        ) as station:
            answer = await station.call("Heartbeat", {})
            print("station (keywords) got:", answer, "call_timeout:", station.call_timeout)

    try:
        ocpprpc.Server(websocket=transport, compression=False)
    except TypeError as exc:
        print("refused:", exc)

    try:
        ocpprpc.Station("ws://127.0.0.1:1/ocpp", "CP3", session_options={"max_queued_calls": 0})
    except ValueError as exc:
        print("refused before connecting:", exc)


if __name__ == "__main__":
    anyio.run(main)
