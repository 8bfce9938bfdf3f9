"""A CSMS run in a child process with few file descriptors (see test_exhaustion.py).

Usage: ``python exhaustion_server.py BACKEND TCP_STREAM FD_LIMIT``; prints the
port once listening, serves until its stdin closes, then shuts down (exit 0).
"""

from __future__ import annotations

import logging
import resource
import sys
from typing import Any

import anyio
import anyio.to_thread

import ocpprpc
from ocpprpc import CallContext, Router


async def main(tcp_stream: str) -> None:
    router = Router()

    @router.on("Heartbeat")
    def heartbeat(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        return {"currentTime": "2024-01-01T00:00:00Z"}

    # A long handshake timeout: the flood's idle connections hold their descriptors.
    async with ocpprpc.serve(router=router, tcp_stream=tcp_stream, handshake_timeout=60) as server:
        sys.stdout.write(f"{server.port}\n")
        sys.stdout.flush()
        await anyio.to_thread.run_sync(sys.stdin.read)


if __name__ == "__main__":
    backend, stream, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    anyio.run(main, stream, backend=backend)
