"""Instructions per call and per booted station, end to end over loopback, on asyncio and trio.

Deterministic where the harness is not: under valgrind's callgrind the instruction
count of a run barely moves with the machine's load (a shared 2-core VM moves the
harness's rounds by 10-25%), so a lever of a few percent shows.  Two paths, each the
difference of a long and a short run, so start-up and imports cancel out:

* ``calls``: ``ocpprpc.serve()`` and ``ocpprpc.connect()`` in this process (strict
  validation, OCPP 1.6), Heartbeat calls one after another: instructions per call,
  both ends and every layer (engine, session, WebSocket, byte stream, event loop);
* ``boot``: ``ocpprpc.serve()`` alone; the stations are blocking raw sockets in a child
  process that valgrind does not trace, each upgrading, sending a BootNotification,
  reading the answer and staying connected: server instructions per booted station
  (their closing at the end included).

Counts only what runs in user space: the system calls a lever saves (``strace -c``
shows those) come on top.  Identical runs agree within about 0.7% (asyncio) and 1.5%
(trio).

Run: ``python bench/callgrind_paths.py`` (valgrind needed; a few minutes), or
``--paths calls --backends trio``.  ``--run PATH BACKEND N`` runs one path plainly.
"""

from __future__ import annotations

import argparse
import base64
import os
import socket
import sys
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "src"))

import anyio  # noqa: E402
import callgrind  # noqa: E402  (bench/callgrind.py)

import ocpprpc  # noqa: E402

#: (short, long) run sizes per path: the difference divided by long - short.
SIZES = {"calls": (100, 600), "boot": (50, 300)}


def _router() -> ocpprpc.Router:
    router = ocpprpc.Router()

    @router.on("Heartbeat")
    def heartbeat(request: Any, ctx: ocpprpc.CallContext) -> dict[str, Any]:
        return {"currentTime": "2026-01-01T00:00:00.000Z"}

    @router.on("BootNotification")
    def boot(request: Any, ctx: ocpprpc.CallContext) -> dict[str, Any]:
        return {"status": "Accepted", "currentTime": "2026-01-01T00:00:00.000Z", "interval": 300}

    return router


async def calls(n: int) -> None:
    async with (
        ocpprpc.serve(router=_router(), protocols=["ocpp1.6"], validation=True) as server,
        ocpprpc.connect(f"ws://127.0.0.1:{server.port}/ocpp", "CP1", protocols=["ocpp1.6"]) as station,
    ):
        for _ in range(20 + n):
            await station.call("Heartbeat", {})


async def boot(n: int) -> None:
    async with (
        ocpprpc.serve(router=_router(), protocols=["ocpp1.6"], validation=True) as server,
        await anyio.open_process([sys.executable, __file__, "--stations", str(server.port), str(n)]) as child,
    ):
        assert child.stdout is not None and child.stdin is not None
        seen = b""
        async for chunk in child.stdout:
            seen += chunk
            if b"booted" in seen:
                break
        assert seen.startswith(b"booted"), seen
        await child.stdin.send(b"\n")  # the stations hang up


def _masked_text(text: bytes) -> bytes:
    mask = os.urandom(4)
    assert len(text) < 126
    return bytes([0x81, 0x80 | len(text)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(text))


def stations(port: int, n: int) -> None:
    """The child: *n* stations over blocking sockets, one after another; they stay until stdin says."""
    call = _masked_text(b'[2,"1","BootNotification",{"chargePointVendor":"v","chargePointModel":"m"}]')
    held = []
    for i in range(n):
        sock = socket.create_connection(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            (
                f"GET /ocpp/CP{i} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                "Sec-WebSocket-Protocol: ocpp1.6\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 101"), head
        sock.sendall(call)
        answer = head.split(b"\r\n\r\n", 1)[1]
        while b"Accepted" not in answer:
            answer += sock.recv(65536)
        held.append(sock)
    print("booted", flush=True)
    sys.stdin.readline()


def instructions(path: str, backend: str, n: int) -> int:
    return callgrind.instructions([sys.executable, __file__, "--run", path, backend, str(n)])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--paths", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--backends", nargs="+", default=["asyncio", "trio"], choices=["asyncio", "trio"])
    parser.add_argument("--run", nargs=3, metavar=("PATH", "BACKEND", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--stations", nargs=2, type=int, metavar=("PORT", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stations:
        stations(*args.stations)
        return
    if args.run:
        path, backend, n = args.run
        anyio.run({"calls": calls, "boot": boot}[path], int(n), backend=backend)
        return
    print(f"{'path':6} {'backend':8} {'instructions per op':>20}")
    for path in args.paths:
        short, long = SIZES[path]
        for backend in args.backends:
            per = (instructions(path, backend, long) - instructions(path, backend, short)) / (long - short)
            print(f"{path:6} {backend:8} {per:20,.0f}", flush=True)


if __name__ == "__main__":
    main()
