"""Running out of file descriptors, and the connection limit: the server survives and recovers."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import anyio.abc
import pytest

import ocpprpc
import ocpprpc._ws.tcp
from ocpprpc import HandshakeRejected

from .helpers import PROMPT, eventually, ws_url

pytestmark = pytest.mark.timeout(40)

CHILD = Path(__file__).with_name("exhaustion_server.py")
SRC = Path(ocpprpc.__file__).resolve().parent.parent
#: The child's descriptor limit, and how many idle connections the test opens (more than that).
FD_LIMIT = 256
FLOOD = 400


async def heartbeat(url: str, identity: str) -> None:
    async with ocpprpc.connect(url, identity) as station:
        with anyio.fail_after(PROMPT):
            assert await station.call("Heartbeat", {}) == {"currentTime": "2024-01-01T00:00:00Z"}


async def test_a_server_out_of_file_descriptors_keeps_serving_and_recovers(anyio_backend: str) -> None:
    # The child runs the backend and TCP stream this test runs with (both streams, both backends).
    stream = "anyio" if ocpprpc._ws.tcp.DEFAULT_TCP_STREAM == "anyio" else "auto"
    child = await anyio.open_process(
        [sys.executable, str(CHILD), anyio_backend, stream, str(FD_LIMIT)],
        env={"PYTHONPATH": str(SRC), "PATH": ""},
    )
    assert child.stdout is not None and child.stdin is not None and child.stderr is not None
    log = bytearray()

    async def read_log(stderr: anyio.abc.ByteReceiveStream) -> None:
        async for chunk in stderr:
            log.extend(chunk)

    flood: list[anyio.abc.SocketStream] = []
    async with child, anyio.create_task_group() as tg:
        tg.start_soon(read_log, child.stderr)
        with anyio.fail_after(10):
            port = int((await child.stdout.receive()).decode())
        url = f"ws://127.0.0.1:{port}/ocpp"
        try:
            async with ocpprpc.connect(url, "CP0") as station:
                for _ in range(FLOOD):  # idle connections: the kernel completes them all
                    flood.append(await anyio.connect_tcp("127.0.0.1", port))  # noqa: PERF401
                await eventually(lambda: b"cannot accept connections" in log, timeout=10)
                await anyio.sleep(1)  # ten back-offs' worth of retrying while out of descriptors
                # The established station is still served, the process alive.
                with anyio.fail_after(PROMPT):
                    assert await station.call("Heartbeat", {}) == {"currentTime": "2024-01-01T00:00:00Z"}
                assert child.returncode is None
        finally:
            for sock in flood:
                await sock.aclose()
        # Descriptors free up: the server accepts again by itself.
        with anyio.fail_after(20):
            while True:
                try:
                    await heartbeat(url, "CP1")
                    break
                except (OSError, HandshakeRejected, ocpprpc.ConnectionLost, TimeoutError):
                    await anyio.sleep(0.2)
        await child.stdin.aclose()
        with anyio.fail_after(20):
            assert await child.wait() == 0
    text = log.decode(errors="replace")
    warnings = [line for line in text.splitlines() if line.startswith("WARNING")]
    assert 1 <= len(warnings) <= 10, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    assert "accepting connections again" in text


async def test_max_connections_answers_503_and_admits_again_after_a_close() -> None:
    async with ocpprpc.serve(max_connections=2) as server:
        async with ocpprpc.connect(ws_url(server), "CP1"), ocpprpc.connect(ws_url(server), "CP2"):
            with pytest.raises(HandshakeRejected) as refused:
                async with ocpprpc.connect(ws_url(server), "CP3"):
                    pass
            assert refused.value.status == 503
            assert b"connection limit" in refused.value.body
            assert "CP3" not in server.clients
        await eventually(lambda: server.connection_count == 0)
        async with ocpprpc.connect(ws_url(server), "CP3"):
            await eventually(lambda: "CP3" in server.clients)


async def test_a_burst_of_connections_does_not_exceed_max_connections() -> None:
    outcomes: list[int] = []
    leave = anyio.Event()

    async def station(url: str, n: int) -> None:
        try:
            async with ocpprpc.connect(url, f"CP{n}"):
                outcomes.append(101)
                await leave.wait()
        except HandshakeRejected as refused:
            outcomes.append(refused.status or 0)

    async with ocpprpc.serve(max_connections=3) as server, anyio.create_task_group() as tg:
        for n in range(12):
            tg.start_soon(station, ws_url(server), n)
        await eventually(lambda: len(outcomes) == 12)
        assert sorted(outcomes) == [101] * 3 + [503] * 9
        assert server.connection_count == 3
        leave.set()


def test_max_connections_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_connections"):
        ocpprpc.Server(max_connections=0)
