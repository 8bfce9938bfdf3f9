"""Interop with a peer nobody here wrote: the ``ocpp`` package (mobilityhouse) on ``websockets``.

The peer runs as a subprocess (ocpp_peer.py, asyncio only) and reports each step
as a JSON line; our side runs on asyncio and on trio, with strict validation.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

import ocpprpc
from ocpprpc import Session

from ..csms.flavours import FLAVOURS, PROTOCOLS

pytestmark = pytest.mark.timeout(30)

PEER = Path(__file__).with_name("ocpp_peer.py")
#: Generous: the peer is a fresh interpreter importing ocpp, on a busy machine.
STEP = 15.0


class Peer:
    """The running peer process and its JSON-line reports."""

    def __init__(self, process: anyio.abc.Process) -> None:
        assert process.stdout is not None
        self.process = process
        self._lines = BufferedByteReceiveStream(process.stdout)
        self.seen: list[dict[str, Any]] = []

    async def until(self, **fields: Any) -> dict[str, Any]:
        """The first report matching *fields*, read so far or still to come (steps may interleave)."""

        def matches(report: dict[str, Any]) -> bool:
            return all(report.get(key) == value for key, value in fields.items())

        for report in self.seen:
            if matches(report):
                return report
        with anyio.fail_after(STEP):
            while True:
                line: dict[str, Any] = json.loads(await self._lines.receive_until(b"\n", 65536))
                self.seen.append(line)
                if matches(line):
                    return line


@asynccontextmanager
async def peer(*args: str) -> AsyncIterator[Peer]:
    process = await anyio.open_process([sys.executable, str(PEER), *args], stderr=None)
    async with process:
        try:
            yield Peer(process)
        finally:
            if process.returncode is None:
                process.terminate()
            with anyio.fail_after(STEP):
                await process.wait()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_ocpp_package_station_against_our_csms(protocol: str) -> None:
    flavour = FLAVOURS[protocol]
    seen: list[Any] = []
    answers: list[Any] = []

    async def on_connect(session: Session) -> None:
        answers.append(await session.call(flavour.change_availability))

    async with ocpprpc.serve(
        router=flavour.csms_router(seen), on_connect=on_connect, validation=True
    ) as server:
        url = f"ws://127.0.0.1:{server.port}/ocpp"
        async with peer("station", "--url", url, "--identity", "MH1", "--protocol", protocol) as station:
            assert (await station.until(event="connected"))["subprotocol"] == protocol
            boot = await station.until(event="answer", action="BootNotification")
            assert boot["status"] == "Accepted"
            assert boot["interval"] == 300
            await station.until(event="answer", action="Heartbeat")
            await station.until(event="received", action="ChangeAvailability")
            await station.until(event="done")
            with anyio.fail_after(STEP):
                assert await station.process.wait() == 0
    assert [type(request) for request in seen] == [type(flavour.boot), type(flavour.heartbeat)]
    assert len(answers) == 1
    assert isinstance(answers[0], flavour.change_availability_response)
    assert answers[0].status == "Accepted"


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_our_station_against_the_ocpp_package_csms(protocol: str) -> None:
    flavour = FLAVOURS[protocol]
    seen: list[Any] = []
    async with peer("csms", "--protocol", protocol) as csms:
        port = (await csms.until(event="ready"))["port"]
        async with ocpprpc.connect(
            f"ws://127.0.0.1:{port}/ocpp",
            "OCPPRPC1",
            protocols=[protocol],
            router=flavour.station_router(seen),
            validation=True,
        ) as station:
            assert station.protocol == protocol
            assert (await csms.until(event="connected"))["identity"] == "OCPPRPC1"
            boot = await station.call(flavour.boot)
            assert isinstance(boot, flavour.boot_response)
            assert boot.status == "Accepted"
            assert boot.interval == 300
            beat = await station.call(flavour.heartbeat)
            assert isinstance(beat, flavour.heartbeat_response)
            # The ocpp package's CSMS calls us; our router answers.
            answer = await csms.until(event="answer", action="ChangeAvailability")
            assert answer["status"] == "Accepted"
        await csms.until(event="disconnected", identity="OCPPRPC1")
    assert [type(request) for request in seen] == [type(flavour.change_availability)]
    assert seen[0] == flavour.change_availability
