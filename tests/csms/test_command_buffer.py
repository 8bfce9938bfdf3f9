"""The command buffer: commands for stations that are away, sent once they are back and booted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import anyio
import pytest

import ocpprpc
from ocpprpc import (
    CallContext,
    CommandBuffer,
    CommandBufferFull,
    CommandCancelled,
    CommandExpired,
    CommandState,
    Router,
    SendStatus,
    Server,
    StationNotConnected,
)

from .helpers import PROMPT, eventually, ws_url

pytestmark = pytest.mark.timeout(120)

BOOT_16 = {"chargePointVendor": "V", "chargePointModel": "M"}
BOOT_201 = {"reason": "PowerUp", "chargingStation": {"vendorName": "V", "model": "M"}}


def csms_router(boot_status: dict[str, str] | None = None) -> Router:
    """Boots answered Accepted, unless *boot_status* (identity -> status) says otherwise."""
    router = Router()

    @router.on("BootNotification")
    async def boot(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        status = (boot_status or {}).get(ctx.identity or "", "Accepted")
        return {"currentTime": "2026-12-07T09:00:00Z", "interval": 300, "status": status}

    @router.on("Heartbeat")
    async def heartbeat(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        return {"currentTime": "2026-12-07T09:00:00Z"}

    return router


class Station:
    """What a station received: every DataTransfer's ``data`` and Reset, in order, across connections."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self.busy = 0
        self.peak = 0
        self.router = Router()
        self.close_on: str | None = None

        @self.router.on("DataTransfer")
        async def data_transfer(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
            self.busy += 1
            self.peak = max(self.peak, self.busy)
            try:
                self.received.append(request["data"])
                await anyio.sleep(0.005)  # long enough for a second command to overlap, were it sent
                if request["data"] == self.close_on:
                    await ctx.session.close(1000, "gone before answering", graceful=False)
                    await anyio.sleep_forever()
            finally:
                self.busy -= 1
            return {"status": "Accepted", "data": request["data"]}

        @self.router.on("Reset")
        async def reset(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
            self.received.append("Reset")
            return {"status": "Accepted"}

    @asynccontextmanager
    async def online(
        self,
        server: Server,
        identity: str = "CP1",
        *,
        boot: bool = True,
        protocol: Literal["ocpp1.6", "ocpp2.0.1"] = "ocpp1.6",
    ) -> AsyncIterator[ocpprpc.Session]:
        async with ocpprpc.connect(
            ws_url(server), identity, router=self.router, protocols=[protocol]
        ) as session:
            await eventually(lambda: identity in server.clients)
            if boot:
                await session.call("BootNotification", BOOT_16 if protocol == "ocpp1.6" else BOOT_201)
            yield session


def data(n: int | str) -> dict[str, Any]:
    return {"vendorId": "test", "data": str(n)}


async def test_waiting_caller_gets_the_answer_once_the_station_is_back_and_booted() -> None:
    station = Station()
    written: list[str] = []
    buffer = CommandBuffer()
    async with ocpprpc.serve(
        router=csms_router(),
        command_buffer=buffer,
        on_message=lambda i, d, t: written.append(t) if d == "out" else None,
    ) as server:
        assert server.command_buffer is buffer
        answers: list[Any] = []

        async def command() -> None:
            answers.append(await server.send_to_client("CP1", "DataTransfer", data(1), queue=True))

        async with anyio.create_task_group() as group:
            group.start_soon(command)
            await eventually(lambda: len(buffer) == 1)
            (queued,) = buffer.pending("CP1")
            assert queued.state is CommandState.QUEUED and queued.action == "DataTransfer"
            assert buffer.get(queued.id) is queued and not buffer.is_ready("CP1")
            async with station.online(server, boot=False) as session:
                assert station.received == [] and len(buffer) == 1  # connected, not booted: it waits
                await session.call("BootNotification", BOOT_16)
                with anyio.fail_after(PROMPT):
                    await eventually(lambda: bool(answers))
        assert answers == [{"status": "Accepted", "data": "1"}]
        assert station.received == ["1"] and len(buffer) == 0 and buffer.get(queued.id) is None
        # The boot's answer left before the first buffered command.
        boot_answer = next(i for i, text in enumerate(written) if '"interval"' in text)
        command_call = next(i for i, text in enumerate(written) if '"DataTransfer"' in text)
        assert boot_answer < command_call


async def test_queued_mode_returns_at_once_and_a_reconnect_without_boot_is_enough() -> None:
    station = Station()
    async with ocpprpc.serve(router=csms_router(), command_buffer=CommandBuffer()) as server:
        async with station.online(server):  # booted, accepted, then gone
            pass
        await eventually(lambda: "CP1" not in server.clients)
        outcome = await server.try_send_to_client("CP1", "DataTransfer", data("x"), queue=True, wait=False)
        assert outcome.status is SendStatus.QUEUED and not outcome.ok
        command = outcome.command
        assert command is not None and not command.done and command.identity == "CP1"
        async with station.online(server, boot=False):  # only lost its link: does not boot again
            with anyio.fail_after(PROMPT):
                final = await command.wait()
        assert final.status is SendStatus.OK and final.result == {"status": "Accepted", "data": "x"}
        assert final.command is command and command.outcome is final and command.done
        assert station.received == ["x"]


async def test_a_station_that_boots_pending_or_rejected_waits_for_an_accepted_boot() -> None:
    station = Station()
    statuses = {"CP1": "Pending"}
    buffer = CommandBuffer()
    async with ocpprpc.serve(router=csms_router(statuses), command_buffer=buffer) as server:
        outcome = await server.try_send_to_client("CP1", "Reset", {"type": "Soft"}, queue=True, wait=False)
        assert outcome.command is not None
        async with station.online(server, protocol="ocpp2.0.1") as session:  # Pending
            assert not buffer.is_ready("CP1") and len(buffer) == 1
            statuses["CP1"] = "Accepted"
            await session.call("BootNotification", BOOT_201)
            with anyio.fail_after(PROMPT):
                assert (await outcome.command.wait()).ok
            statuses["CP1"] = "Rejected"
            await session.call("BootNotification", BOOT_201)  # rebooted, and refused this time
            assert not buffer.is_ready("CP1")
            later = await server.try_send_to_client("CP1", "Reset", {"type": "Soft"}, queue=True, wait=False)
            assert later.status is SendStatus.QUEUED and len(buffer) == 1
        assert station.received == ["Reset"]


async def test_commands_leave_in_order_one_at_a_time_each_once() -> None:
    station = Station()
    async with ocpprpc.serve(router=csms_router(), command_buffer=CommandBuffer()) as server:
        outcomes = [
            await server.try_send_to_client("CP1", "DataTransfer", data(n), queue=True, wait=False)
            for n in range(8)
        ]
        async with station.online(server):
            with anyio.fail_after(PROMPT):
                finals = [await o.command.wait() for o in outcomes if o.command is not None]
            # Online and idle: a queued command still goes through the buffer, after the others.
            assert (await server.send_to_client("CP1", "DataTransfer", data(8), queue=True))["data"] == "8"
    assert [f.result["data"] for f in finals] == [str(n) for n in range(8)]
    assert station.received == [str(n) for n in range(9)] and station.peak == 1


async def test_a_command_in_flight_when_the_link_dies_is_never_sent_again() -> None:
    station = Station()
    station.close_on = "1"
    buffer = CommandBuffer()
    async with ocpprpc.serve(router=csms_router(), command_buffer=buffer) as server:
        first = await server.try_send_to_client("CP1", "DataTransfer", data(1), queue=True, wait=False)
        second = await server.try_send_to_client("CP1", "DataTransfer", data(2), queue=True, wait=False)
        assert first.command is not None and second.command is not None
        async with station.online(server):
            with anyio.fail_after(PROMPT):
                lost = await first.command.wait()
        assert lost.status is SendStatus.CONNECTION_LOST
        await eventually(lambda: "CP1" not in server.clients)
        assert second.command.state is CommandState.QUEUED  # not sent to a station that left
        station.close_on = None
        async with station.online(server, boot=False):
            with anyio.fail_after(PROMPT):
                assert (await second.command.wait()).ok
    assert station.received == ["1", "2"]  # "1" once: the station may have acted on it


async def test_deadlines_expire_commands_unsent() -> None:
    station = Station()
    buffer = CommandBuffer(default_deadline=0.05)
    async with ocpprpc.serve(router=csms_router(), command_buffer=buffer) as server:
        with pytest.raises(CommandExpired, match="'CP1' was not back and booted") as raised:
            await server.send_to_client("CP1", "DataTransfer", data(1), queue=True)
        assert isinstance(raised.value, StationNotConnected)  # handled where "not connected" is
        outcome = await server.try_send_to_client("CP1", "DataTransfer", data(2), queue=True, deadline=0.05)
        assert outcome.status is SendStatus.EXPIRED and isinstance(outcome.error, CommandExpired)
        # A later deadline than the one the buffer sleeps for, then an earlier one.
        slow = await server.try_send_to_client(
            "CP1", "DataTransfer", data(3), queue=True, deadline=60, wait=False
        )
        fast = await server.try_send_to_client(
            "CP1", "DataTransfer", data(4), queue=True, deadline=0.05, wait=False
        )
        assert fast.command is not None and slow.command is not None
        with anyio.fail_after(PROMPT):
            assert (await fast.command.wait()).status is SendStatus.EXPIRED
        assert [c.payload["data"] for c in buffer.pending("CP1")] == ["3"]
        async with station.online(server):
            with anyio.fail_after(PROMPT):
                assert (await slow.command.wait()).ok
    assert station.received == ["3"]


async def test_the_buffer_is_bounded_per_station_and_in_total() -> None:
    buffer = CommandBuffer(max_per_station=2, max_total=3)
    async with ocpprpc.serve(command_buffer=buffer) as server:

        async def queue(identity: str) -> ocpprpc.SendOutcome:
            return await server.try_send_to_client(
                identity, "Reset", {"type": "Soft"}, queue=True, wait=False
            )

        assert (await queue("A")).status is SendStatus.QUEUED
        assert (await queue("A")).status is SendStatus.QUEUED
        full = await queue("A")
        assert full.status is SendStatus.BUFFER_FULL and "max_per_station" in str(full.error)
        assert (await queue("B")).status is SendStatus.QUEUED
        full = await queue("C")
        assert full.status is SendStatus.BUFFER_FULL and "max_total" in str(full.error)
        with pytest.raises(CommandBufferFull):
            await server.send_to_client("C", "Reset", {"type": "Soft"}, queue=True)
        assert len(buffer) == 3 and [c.identity for c in buffer.pending()] == ["A", "A", "B"]
        # Many more commands come and go: nothing piles up.
        assert buffer.pending("B")[0].cancel()
        for _ in range(500):
            outcome = await queue("D")
            assert outcome.command is not None and outcome.command.cancel()
        assert len(buffer) == 2 and len(buffer._deadlines) <= 2 * 3 + 64 + 1


async def test_cancellation_takes_a_command_out() -> None:
    station = Station()
    buffer = CommandBuffer()
    async with ocpprpc.serve(router=csms_router(), command_buffer=buffer) as server:
        with anyio.move_on_after(0.05) as scope:
            await server.send_to_client("CP1", "DataTransfer", data("waiter"), queue=True)
        assert scope.cancelled_caught and len(buffer) == 0  # the cancelled caller took it out
        kept = await server.try_send_to_client("CP1", "DataTransfer", data("kept"), queue=True, wait=False)
        by_id = await server.try_send_to_client("CP1", "DataTransfer", data("by id"), queue=True, wait=False)
        by_handle = await server.try_send_to_client(
            "CP1", "DataTransfer", data("handle"), queue=True, wait=False
        )
        assert kept.command and by_id.command and by_handle.command
        assert buffer.cancel(by_id.command.id) and not buffer.cancel(by_id.command.id)
        assert not buffer.cancel("no such id")
        assert by_handle.command.cancel()
        cancelled = await by_handle.command.wait()
        assert cancelled.status is SendStatus.CANCELLED and isinstance(cancelled.error, CommandCancelled)
        async with station.online(server):
            with anyio.fail_after(PROMPT):
                assert (await kept.command.wait()).ok
        assert not kept.command.cancel()  # done: nothing to cancel
    assert station.received == ["kept"]


async def test_stopping_the_server_cancels_what_waits() -> None:
    buffer = CommandBuffer()
    async with ocpprpc.serve(command_buffer=buffer) as server:
        outcome = await server.try_send_to_client("CP1", "Reset", {"type": "Soft"}, queue=True, wait=False)
    assert outcome.command is not None
    assert (await outcome.command.wait()).status is SendStatus.CANCELLED
    assert len(buffer) == 0 and not buffer.running


async def test_boot_registry_says_a_station_booted_before_this_process_started() -> None:
    station = Station()
    async with ocpprpc.serve(
        router=csms_router(), command_buffer=CommandBuffer(), require_boot=True, boot_registry={"CP1": True}
    ) as server:
        outcome = await server.try_send_to_client("CP1", "Reset", {"type": "Hard"}, queue=True, wait=False)
        assert outcome.command is not None
        async with station.online(server, boot=False):
            with anyio.fail_after(PROMPT):
                assert (await outcome.command.wait()).ok
    assert station.received == ["Reset"]


async def test_misuse_is_answered_clearly() -> None:
    async with ocpprpc.serve() as server:
        with pytest.raises(RuntimeError, match="needs a command buffer"):
            await server.send_to_client("CP1", "Reset", {"type": "Soft"}, queue=True)
        with pytest.raises(ValueError, match="wait=False needs queue=True"):
            await server.try_send_to_client("CP1", "Reset", {"type": "Soft"}, wait=False)
    buffer = CommandBuffer()
    idle = Server(command_buffer=buffer)
    with pytest.raises(RuntimeError, match="not running"):
        await idle.try_send_to_client("CP1", "Reset", {"type": "Soft"}, queue=True)
    with pytest.raises(ValueError, match="already belongs to a server"):
        Server(command_buffer=buffer)
    with pytest.raises(RuntimeError, match="inside a server"):
        await CommandBuffer().run()
    async with ocpprpc.serve(command_buffer=CommandBuffer()) as server:
        for deadline in (0, -1.0, float("nan")):
            with pytest.raises(ValueError, match="deadline must be positive"):
                await server.try_send_to_client("CP1", "Reset", {}, queue=True, deadline=deadline)
        assert server.command_buffer is not None
        with pytest.raises(RuntimeError, match="already running"):
            await server.command_buffer.run()
        # A request the session refuses before sending is raised to whoever awaits it.
        outcome = await server.try_send_to_client("CP1", object(), queue=True, wait=False)
        assert outcome.command is not None and outcome.command.action == "object"
        assert "object" in repr(outcome.command) and "commands=1" in repr(server.command_buffer)


@pytest.mark.parametrize(
    "options",
    [
        {"max_per_station": 0},
        {"max_total": 0},
        {"remember_boots": 0},
        {"default_deadline": 0},
        {"default_deadline": float("nan")},
    ],
)
def test_bad_bounds_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        CommandBuffer(**options)


async def test_a_request_that_cannot_be_sent_fails_its_waiter_not_the_buffer() -> None:
    station = Station()
    async with ocpprpc.serve(router=csms_router(), command_buffer=CommandBuffer()) as server:
        bad = await server.try_send_to_client("CP1", 42, queue=True, wait=False)  # not a request at all
        good = await server.try_send_to_client("CP1", "DataTransfer", data("after"), queue=True, wait=False)
        assert bad.command is not None and good.command is not None
        async with station.online(server):
            with anyio.fail_after(PROMPT):
                with pytest.raises(Exception):  # noqa: B017 (whatever call() raises for it)
                    await bad.command.wait()
                assert (await good.command.wait()).ok
    assert station.received == ["after"]


class FakeDelivery:
    """A delivery without sockets: absent, present, or never answering, as a test says."""

    def __init__(self) -> None:
        self.calls: list[Any] = []
        self.absent = True
        self.hang = False

    async def call(self, identity: str, request: Any, payload: Any, timeout: float | None) -> Any:  # noqa: ASYNC109
        self.calls.append(payload)
        if self.absent:
            raise StationNotConnected(identity)
        if self.hang:
            await anyio.sleep_forever()
        return {"echo": payload}


async def test_a_command_never_written_keeps_its_place_and_boots_are_remembered_bounded() -> None:
    delivery = FakeDelivery()
    buffer = CommandBuffer(remember_boots=1)
    buffer.bind(lambda: delivery, lambda identity: False)
    async with anyio.create_task_group() as group:
        await group.start(buffer.run)
        first, second = (buffer.enqueue("CP1", "DataTransfer", n).command for n in (1, 2))
        assert first is not None and second is not None
        buffer.station_connected("CP1")
        buffer.station_booted("CP1", True)  # ready, but the delivery finds no session after all
        await eventually(lambda: not buffer.is_ready("CP1"))
        assert delivery.calls == [1] and [c.payload for c in buffer.pending("CP1")] == [1, 2]
        assert first.state is CommandState.QUEUED
        delivery.absent = False
        buffer.station_booted("ELSEWHERE", True)  # not connected here; and CP1's boot is forgotten (1 kept)
        buffer.station_disconnected("CP1")
        buffer.station_connected("CP1")
        assert not buffer.is_ready("CP1")  # no boot known any more: it waits for one
        outcomes: list[ocpprpc.SendOutcome] = []

        async def waiter() -> None:
            outcomes.append(await first.wait())

        group.start_soon(waiter)
        group.start_soon(waiter)  # two wait for one command
        buffer.station_booted("CP1", True)
        with anyio.fail_after(PROMPT):
            assert (await second.wait()).result == {"echo": 2}
        await eventually(lambda: len(outcomes) == 2)
        assert outcomes[0] is outcomes[1] and outcomes[0].result == {"echo": 1}
        assert delivery.calls == [1, 1, 2]  # the first attempt wrote nothing
        # A deadline entry left by a cancelled command is skipped when it comes due.
        gone = buffer.enqueue("NOBODY", "DataTransfer", "gone", deadline=0.01).command
        assert gone is not None and gone.cancel()
        due = buffer.enqueue("NOBODY", "DataTransfer", "due", deadline=0.02).command
        assert due is not None
        with anyio.fail_after(PROMPT):
            assert (await due.wait()).status is SendStatus.EXPIRED
        # Stopping the buffer while a command is in flight ends it CANCELLED (fate unknown).
        delivery.hang = True
        stuck = buffer.enqueue("CP1", "DataTransfer", "stuck").command
        assert stuck is not None
        await eventually(lambda: stuck.state is CommandState.SENDING)
        group.cancel_scope.cancel()
    assert stuck is not None
    final = await stuck.wait()
    assert final.status is SendStatus.CANCELLED and "stopped" in str(final.error)
