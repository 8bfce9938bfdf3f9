"""Per-message cost of the two WebSocket frame codecs behind ocpprpc's codec seam.

Codec only (no sockets, no event loop): one message = the sender's
``send_text()`` producing the frame plus the receiver's ``receive_data()``
turning it back into the text, with both ends the same codec.  Measured for:

* ``wsproto`` (:class:`ocpprpc._ws.wsproto_codec.WsprotoCodec`) and ``websockets``
  (:class:`ocpprpc._ws.websockets_codec.WebsocketsCodec`);
* both directions: station -> CSMS (masked frames: the client masks, the
  server unmasks) and CSMS -> station (unmasked);
* permessage-deflate off and on (context takeover, 15-bit windows: what a
  station and our server negotiate by default);
* a Heartbeat CALL (57 bytes) and a MeterValues CALL with 10 sampled values
  (about 1.3 KB), each with a fresh UUID4 message id, as on the wire.

Reported: CPU time per message (``time.process_time_ns``), split into
encode and decode, the median over timed batches; rounds interleave the codecs
and the websockets/wsproto ratio is taken within a round (a shared VM drifts),
then the median over rounds.

``--loopback`` adds an end-to-end figure: sequential echo round trips between
our client and our server (``open_websocket``/``accept_websocket``) over
loopback TCP in one process, on asyncio and trio, CPU time per round trip
(both ends, all layers: anyio streams, the WebSocketStream, the codec).

Run: ``python bench/bench_ws_codec.py [--rounds 3] [--loopback] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import itertools
import json
import platform
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import msgspec
import payloads  # bench/payloads.py: the shared MeterValues
from wsproto.connection import Connection, ConnectionType

from ocpprpc._ws.frame_codec import FrameCodec, deflate_params
from ocpprpc._ws.websockets_codec import WebsocketsCodec, websockets_extensions
from ocpprpc._ws.wsproto_codec import WebSocketCodec, WsprotoCodec, deflate_extension

CODECS = ("wsproto", "websockets", "ocpprpc")
MAX = 65536


def heartbeat() -> str:
    return msgspec.json.encode([2, str(uuid.uuid4()), "Heartbeat", {}]).decode()


def meter_values() -> str:
    payload = payloads.meter_values(transaction_id=4711, timestamp="2026-11-20T12:00:00.000Z", location=False)
    return msgspec.json.encode([2, str(uuid.uuid4()), "MeterValues", payload]).decode()


MESSAGES: dict[str, Callable[[], str]] = {"Heartbeat": heartbeat, "MeterValues": meter_values}


def make_codec(kind: str, *, client: bool, deflate: bool) -> WebSocketCodec:
    """One end of a connection as the handshake would leave it (deflate already negotiated)."""
    extensions = [deflate_extension(MAX)] if deflate else []
    for ext in extensions:
        if client:
            ext.finalize("permessage-deflate")
        else:
            ext.accept("permessage-deflate")
    if kind == "wsproto":
        side = ConnectionType.CLIENT if client else ConnectionType.SERVER
        return WsprotoCodec(Connection(side, list(extensions)), max_message_size=MAX)
    if kind == "ocpprpc":
        return FrameCodec(
            client=client, max_message_size=MAX, deflate=deflate_params(extensions, client=client)
        )
    return WebsocketsCodec(
        client=client, max_message_size=MAX, extensions=websockets_extensions(extensions, client=client)
    )


def measure(kind: str, direction: str, deflate: bool, texts: list[str], batches: int) -> tuple[float, float]:
    """Median µs per message for (encode, decode) over ``batches`` runs through ``texts``."""
    client = make_codec(kind, client=True, deflate=deflate)
    server = make_codec(kind, client=False, deflate=deflate)
    sender, receiver = (client, server) if direction == "station->csms" else (server, client)
    send, receive = sender.send_text, receiver.receive_data
    clock = time.process_time_ns  # CPU time: robust to a shared, busy machine
    encode: list[float] = []
    decode: list[float] = []
    for _ in range(batches + 1):  # the first batch warms up (and with deflate fills the window)
        t0 = clock()
        frames = [send(text) for text in texts]
        t1 = clock()
        for data in frames:
            receive(data)
        t2 = clock()
        encode.append((t1 - t0) / len(texts) / 1000)
        decode.append((t2 - t1) / len(texts) / 1000)
    check = receive(send(texts[0]))
    assert check == [texts[0]], check
    return statistics.median(encode[1:]), statistics.median(decode[1:])


def codec_rounds(rounds: int, count: int, batches: int) -> list[dict[str, Any]]:
    rows: dict[tuple[str, str, bool], dict[str, list[float]]] = {}
    for _ in range(rounds):
        for message, direction, deflate in itertools.product(
            MESSAGES, ("station->csms", "csms->station"), (False, True)
        ):
            make = MESSAGES[message]
            texts = [make() for _ in range(count)]
            per_codec = {kind: measure(kind, direction, deflate, texts, batches) for kind in CODECS}
            row = rows.setdefault((message, direction, deflate), {})
            for kind, (enc, dec) in per_codec.items():
                row.setdefault(f"{kind}_encode", []).append(enc)
                row.setdefault(f"{kind}_decode", []).append(dec)
                row.setdefault(kind, []).append(enc + dec)
            row.setdefault("ratio", []).append(sum(per_codec["websockets"]) / sum(per_codec["wsproto"]))
            row.setdefault("ours", []).append(sum(per_codec["ocpprpc"]) / sum(per_codec["websockets"]))
    out = []
    for (message, direction, deflate), row in rows.items():
        result: dict[str, Any] = {"message": message, "direction": direction, "deflate": deflate}
        result.update({key: statistics.median(values) for key, values in row.items()})
        result["ratio_range"] = (min(row["ratio"]), max(row["ratio"]))
        result["ours_range"] = (min(row["ours"]), max(row["ours"]))
        out.append(result)
    return out


async def _loopback(kind: str, seconds: float, deflate: bool) -> float:
    """CPU µs per sequential echo round trip, both ends in this process."""
    import anyio
    import anyio.abc
    from anyio.abc import SocketAttribute

    from ocpprpc._ws.handshake import accept_websocket, open_websocket, resolve_ws_codec

    codec = resolve_ws_codec(kind)

    async def serve(stream: anyio.abc.SocketStream) -> None:
        request = await accept_websocket(stream, protocols=["ocpp1.6"], ws_codec=codec)
        ws = await request.accept()
        try:
            while True:
                await ws.send(await ws.receive())
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            pass
        finally:
            await ws.aclose()

    text = heartbeat()
    async with (
        await anyio.create_tcp_listener(local_host="127.0.0.1") as listener,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(listener.serve, serve)
        port = listener.extra(SocketAttribute.local_port)
        ws = await open_websocket(
            f"ws://127.0.0.1:{port}/ocpp",
            "CP001",
            protocols=["ocpp1.6"],
            compression=deflate,
            ws_codec=codec,
        )
        for _ in range(200):
            await ws.send(text)
            await ws.receive()
        n = 0
        cpu0 = time.process_time()
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            for _ in range(100):
                await ws.send(text)
                await ws.receive()
            n += 100
        cpu = time.process_time() - cpu0
        await ws.aclose()
        tg.cancel_scope.cancel()
    return cpu / n * 1e6


def loopback_rounds(rounds: int, seconds: float) -> list[dict[str, Any]]:
    import anyio

    rows: dict[tuple[str, bool], dict[str, list[float]]] = {}
    for _ in range(rounds):
        for backend, deflate in itertools.product(("asyncio", "trio"), (False, True)):
            row = rows.setdefault((backend, deflate), {})
            for kind in CODECS:
                row.setdefault(kind, []).append(anyio.run(_loopback, kind, seconds, deflate, backend=backend))
            row.setdefault("ratio", []).append(row["websockets"][-1] / row["wsproto"][-1])
            row.setdefault("ours", []).append(row["ocpprpc"][-1] / row["websockets"][-1])
    out = []
    for (backend, deflate), row in rows.items():
        result: dict[str, Any] = {"backend": backend, "deflate": deflate}
        result.update({key: statistics.median(values) for key, values in row.items()})
        result["ratio_range"] = (min(row["ratio"]), max(row["ratio"]))
        result["ours_range"] = (min(row["ours"]), max(row["ours"]))
        out.append(result)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--count", type=int, default=500, help="messages per batch")
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--loopback", action="store_true", help="also measure echo round trips over TCP")
    parser.add_argument("--seconds", type=float, default=1.0, help="per loopback measurement")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()

    versions = {
        name: importlib.metadata.version(name) for name in ("ocpprpc", "wsproto", "websockets", "anyio")
    }
    print(f"Python {platform.python_version()}, " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    results: dict[str, Any] = {"versions": versions, "python": platform.python_version()}

    codec = codec_rounds(args.rounds, args.count, args.batches)
    results["codec"] = codec
    print(f"\ncodec only, µs per message (encode + decode), median of {args.rounds} round(s)")
    print(
        f"{'message':<12} {'direction':<14} {'deflate':<8} {'wsproto':>8} {'websockets':>11} {'ocpprpc':>8}"
        f" {'ws/wsproto':>10} {'ours/ws':>8}"
    )
    for row in codec:
        print(
            f"{row['message']:<12} {row['direction']:<14} {'on' if row['deflate'] else 'off':<8} "
            f"{row['wsproto']:>8.2f} {row['websockets']:>11.2f} {row['ocpprpc']:>8.2f}"
            f" {row['ratio']:>10.2f} {row['ours']:>8.2f}"
        )
    if args.loopback:
        loop = loopback_rounds(args.rounds, args.seconds)
        results["loopback"] = loop
        print("\nloopback echo, CPU µs per round trip (client + server in one process)")
        print(
            f"{'backend':<8} {'deflate':<8} {'wsproto':>8} {'websockets':>11} {'ocpprpc':>8}"
            f" {'ws/wsproto':>10} {'ours/ws':>8}"
        )
        for row in loop:
            print(
                f"{row['backend']:<8} {'on' if row['deflate'] else 'off':<8} "
                f"{row['wsproto']:>8.1f} {row['websockets']:>11.1f} {row['ocpprpc']:>8.1f}"
                f" {row['ratio']:>10.2f} {row['ours']:>8.2f}"
            )
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=2)


if __name__ == "__main__":
    main()
