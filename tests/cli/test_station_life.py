"""A station without ``--once`` lives like a real one: it waits for its CSMS, survives a
CSMS restart, logs what its BootNotifications were answered, and stops cleanly on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

import ocpprpc

from .helpers import BACKENDS, WAIT, cli, csms, free_port

pytestmark = pytest.mark.timeout(60)


def _next_line(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    return process.stdout.readline()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_station_started_before_its_csms_connects_when_it_appears_and_after_a_restart(
    tmp_path: Path, backend: str
) -> None:
    serve_backend = next(other for other in BACKENDS if other != backend)
    port = free_port()
    url = f"ws://127.0.0.1:{port}"
    with (
        (tmp_path / "station.log").open("w") as log,
        subprocess.Popen(
            cli(
                "station", f"{url}/ocpp", "CP1", "--interval", "0", "--max-reconnect-delay", "0.5",
                "--heartbeat", "0.2", "--backend", backend,
            ),
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        ) as station,
    ):  # fmt: skip
        try:
            # Nobody listens yet: the station says so and keeps trying.
            _wait_for_text(tmp_path / "station.log", f"CP1: cannot connect to {url}/ocpp: ")
            assert station.poll() is None
            for life in ("first", "restarted"):
                with csms(tmp_path / f"serve-{life}.log", "--backend", serve_backend, port=port) as (
                    server,
                    _,
                ):
                    assert _next_line(station) == f"CP1 connected to {url}/ocpp speaking ocpp1.6\n"
                    if life == "first":
                        assert _next_line(station) == "CP1 finished a charging session\n"
                    else:
                        _wait_for_text(tmp_path / "serve-restarted.log", "CP1 -> Heartbeat")
                    server.send_signal(signal.SIGTERM)
                    assert server.wait(WAIT) == 0
            station.send_signal(signal.SIGTERM)
            assert station.wait(WAIT) == 0
            assert _next_line(station) == ""  # no error, nothing more said
        finally:
            if station.poll() is None:
                station.kill()
    logged = (tmp_path / "station.log").read_text()
    assert "Traceback" not in logged
    assert logged.count("BootNotification Accepted") == 1  # booted once: a reconnect is not a reboot
    assert "disconnected: 1001 (the CSMS is shutting down, closed by peer)" in logged
    assert "received SIGTERM, shutting down" in logged
    assert " ERROR " not in logged


def _wait_for_text(path: Path, text: str) -> None:
    """Until *text* is in the log at *path* (a synchronous test: polling the file is fine)."""
    deadline = time.monotonic() + WAIT
    while text not in path.read_text():
        assert time.monotonic() < deadline, (text, path.read_text())
        time.sleep(0.05)


def _boot_answers(statuses: list[str]) -> ocpprpc.Router:
    """A CSMS router answering the station's BootNotifications with *statuses* in turn, then Accepted."""
    router = ocpprpc.Router()
    answers = iter(statuses)

    @router.on("BootNotification")
    async def boot(request: Any, ctx: ocpprpc.CallContext) -> dict[str, Any]:
        return {"status": next(answers, "Accepted"), "currentTime": "2025-01-01T00:00:00Z", "interval": 1}

    others: dict[str, dict[str, Any]] = {
        "StatusNotification": {},
        "Heartbeat": {"currentTime": "2025-01-01T00:00:00Z"},
        "Authorize": {"idTagInfo": {"status": "Accepted"}},
        "StartTransaction": {"transactionId": 1, "idTagInfo": {"status": "Accepted"}},
        "MeterValues": {},
        "StopTransaction": {},
    }

    async def answer(request: Any, ctx: ocpprpc.CallContext) -> dict[str, Any]:
        return others[ctx.action]

    for action in others:
        router.on(action)(answer)
    return router


@pytest.mark.parametrize("once", [True, False], ids=["once", "staying"])
async def test_the_station_logs_how_its_boot_was_answered(once: bool) -> None:
    server = ocpprpc.Server(router=_boot_answers(["Pending", "Rejected"]), protocols=["ocpp1.6"])
    async with anyio.create_task_group() as task_group:
        await task_group.start(server.serve, "127.0.0.1", 0)
        command = cli(
            "station", f"ws://127.0.0.1:{server.port}/ocpp", "CP1", "--interval", "0",
            *(["--once"] if once else []),
        )  # fmt: skip
        async with await anyio.open_process(command) as station:
            assert station.stdout is not None and station.stderr is not None
            out = b""
            with anyio.fail_after(WAIT):
                async for chunk in station.stdout:
                    out += chunk
                    if b"finished a charging session" in out:
                        break
            if not once:
                station.send_signal(signal.SIGTERM)
            with anyio.fail_after(WAIT):
                assert await station.wait() == 0
            err = b"".join([chunk async for chunk in station.stderr]).decode()
        await server.shutdown(timeout=1)
    assert "Traceback" not in err
    pending, rejected, accepted = (
        err.index("CP1: BootNotification Pending; booting again in 1 s"),
        err.index("CP1: BootNotification Rejected; booting again in 1 s"),
        err.index("CP1: BootNotification Accepted (heartbeat interval 1 s)"),
    )
    assert pending < rejected < accepted
