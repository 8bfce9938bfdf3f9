"""WebSocketStream's outgoing queue: one writer, coalesced writes, bounded backlog, failure reporting.

The byte stream under test is a gate: its ``send()`` blocks until the test
opens it, as a socket does when the peer stops reading, which a real socket
only does after megabytes of kernel buffers.
"""

from __future__ import annotations

import logging

import anyio
import anyio.abc
import pytest
from anyio import wait_all_tasks_blocked
from wsproto.connection import Connection, ConnectionType
from wsproto.events import Pong, TextMessage

from ocpprpc._ws.transport import CloseReason
from ocpprpc._ws.websocket import _HIGH_WATER, WebSocketStream
from ocpprpc._ws.wsproto_codec import WsprotoCodec


class GatedByteStream(anyio.abc.ByteStream):
    """Records each ``send()``; blocks them until ``gate`` is set; may then fail them."""

    def __init__(self, *, fail: bool = False) -> None:
        self.gate = anyio.Event()
        self.fail = fail
        self.writes: list[bytes] = []

    async def send(self, item: bytes) -> None:
        await self.gate.wait()
        if self.fail:
            raise anyio.BrokenResourceError
        self.writes.append(item)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        await anyio.sleep_forever()
        raise AssertionError  # pragma: no cover

    async def send_eof(self) -> None:
        pass

    async def aclose(self) -> None:
        # Closing fails a write still blocked, as closing a socket does.
        self.fail = True
        self.gate.set()


def client_stream(byte_stream: anyio.abc.ByteStream, send_timeout: float | None = None) -> WebSocketStream:
    codec = WsprotoCodec(Connection(ConnectionType.CLIENT))
    return WebSocketStream(
        byte_stream,
        codec,
        client=True,
        subprotocol="ocpp1.6",
        close_timeout=0.1,
        send_timeout=send_timeout,
        identity="CP7",
    )


def decode(writes: list[bytes]) -> list[str]:
    """The text messages in the written bytes, in wire order (as the server would read them)."""
    server = Connection(ConnectionType.SERVER)
    server.receive_data(b"".join(writes))
    return [event.data for event in server.events() if isinstance(event, TextMessage)]


MESSAGE_SIZE = 10_000
#: A client frame of one such message: 2 + 2 bytes of length + 4 of mask.
FRAME_SIZE = MESSAGE_SIZE + 8


async def test_senders_queue_behind_the_writer_up_to_the_high_water_mark() -> None:
    byte_stream = GatedByteStream()
    ws = client_stream(byte_stream)
    returned: list[int] = []
    sent: list[str] = []

    async def sender(i: int) -> None:
        message = f"{i:03d}" + "x" * (MESSAGE_SIZE - 3)
        sent.append(message)  # the order the senders start in
        await ws.send(message)
        returned.append(i)

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(sender, i)
        await wait_all_tasks_blocked()
        # One writer blocked in the byte stream; frames queued behind it with their
        # senders gone on until the high-water mark was passed; the rest wait to queue.
        assert byte_stream.writes == []
        queued = len(returned)
        assert queued == _HIGH_WATER // FRAME_SIZE
        assert _HIGH_WATER < ws.unsent <= _HIGH_WATER + FRAME_SIZE
        byte_stream.gate.set()
    assert sorted(returned) == list(range(20))
    assert ws.unsent == 0
    received = decode(byte_stream.writes)
    assert sorted(received) == sorted(sent)
    # The writer's own frame, then what queued without waiting, in call order and
    # joined into one write; the senders that waited follow, coalesced as well.
    assert received[: queued + 1] == sent[: queued + 1]
    assert decode(byte_stream.writes[1:2]) == sent[1 : queued + 1]
    assert len(byte_stream.writes) < 20


async def test_sequential_sends_keep_their_order() -> None:
    byte_stream = GatedByteStream()
    byte_stream.gate.set()
    ws = client_stream(byte_stream)
    messages = [f"m{i}" for i in range(50)]
    for message in messages:
        await ws.send(message)
    assert decode(byte_stream.writes) == messages


async def test_a_failed_write_fails_the_senders_waiting_for_it() -> None:
    byte_stream = GatedByteStream(fail=True)
    ws = client_stream(byte_stream)
    outcomes: list[str] = []

    async def sender(i: int) -> None:
        try:
            await ws.send("y" * MESSAGE_SIZE)
        except anyio.BrokenResourceError:
            outcomes.append("broken")
        else:
            outcomes.append("queued")

    async with anyio.create_task_group() as tg:
        for i in range(12):
            tg.start_soon(sender, i)
        await wait_all_tasks_blocked()
        byte_stream.gate.set()
    # The writer and every sender still waiting learn of the failure; the ones that
    # had only queued their frame hear it from receive(), like after a kernel buffer.
    assert outcomes.count("queued") == _HIGH_WATER // (MESSAGE_SIZE + 8)
    assert outcomes.count("broken") == 12 - outcomes.count("queued")
    close_reason = ws.close_reason
    assert close_reason is not None and close_reason.code == 1006
    with pytest.raises(anyio.BrokenResourceError):
        await ws.receive()
    with pytest.raises(anyio.BrokenResourceError):
        await ws.send("after the loss")


async def test_a_writer_without_progress_for_send_timeout_drops_the_link(
    caplog: pytest.LogCaptureFixture,
) -> None:
    byte_stream = GatedByteStream()  # the peer never reads: the gate never opens
    ws = client_stream(byte_stream, send_timeout=0.05)
    outcomes: list[str] = []

    async def sender(i: int) -> None:
        try:
            await ws.send("z" * MESSAGE_SIZE)
        except anyio.BrokenResourceError:
            outcomes.append("broken")
        else:
            outcomes.append("queued")

    async def pinger() -> None:
        with pytest.raises(anyio.BrokenResourceError):
            await ws.ping(b"1")

    with caplog.at_level(logging.WARNING, "ocpprpc._websocket"):
        async with anyio.create_task_group() as tg:
            for i in range(12):
                tg.start_soon(sender, i)
            await wait_all_tasks_blocked()
            assert _HIGH_WATER < ws.unsent <= _HIGH_WATER + FRAME_SIZE
            unsent = ws.unsent
            tg.start_soon(pinger)  # waits for room too, and fails with the others
    # The writer and the senders waiting to queue fail; those that had queued hear it from receive().
    assert outcomes.count("queued") == _HIGH_WATER // FRAME_SIZE
    assert outcomes.count("broken") == 12 - outcomes.count("queued")
    assert ws.close_reason == CloseReason(1006, f"peer stopped reading: {unsent} bytes unsent for 0.05 s")
    assert ws.unsent == 0
    with pytest.raises(anyio.BrokenResourceError):
        await ws.receive()
    [warning] = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert "CP7" in warning.getMessage() and "peer stopped reading" in warning.getMessage()


async def test_without_send_timeout_a_stalled_writer_is_waited_for() -> None:
    byte_stream = GatedByteStream()
    ws = client_stream(byte_stream, send_timeout=None)
    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(ws.send, "w" * MESSAGE_SIZE)
        await wait_all_tasks_blocked()
        assert ws.close_reason is None
        byte_stream.gate.set()
    assert len(decode(byte_stream.writes)) == 10
    assert ws.close_reason is None


class CountingByteStream(GatedByteStream):
    """Open from the start; counts the bytes taken by each ``send()``."""

    def __init__(self) -> None:
        super().__init__()
        self.gate.set()


async def test_a_large_message_is_written_in_steps_of_the_high_water_mark() -> None:
    byte_stream = CountingByteStream()
    ws = client_stream(byte_stream, send_timeout=1)
    message = "L" * (3 * _HIGH_WATER + 100)
    await ws.send(message)
    assert [len(write) for write in byte_stream.writes] == [_HIGH_WATER] * 3 + [100 + 14]
    assert decode(byte_stream.writes) == [message]
    assert ws.unsent == 0


async def test_a_ping_waits_until_the_writer_has_written_it() -> None:
    byte_stream = GatedByteStream()
    ws = client_stream(byte_stream)
    pinged = anyio.Event()

    async def pinger() -> None:
        await ws.ping(b"p")
        pinged.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(ws.send, "first")  # the writer, blocked
        await wait_all_tasks_blocked()
        tg.start_soon(pinger)
        await wait_all_tasks_blocked()
        assert not pinged.is_set()  # queued behind the writer, not yet written
        byte_stream.gate.set()
    assert pinged.is_set()
    assert ws.unsent == 0


class PingingByteStream(GatedByteStream):
    """A peer that sends one ping (an unmasked server frame), then nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.pinged = False

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if not self.pinged:
            self.pinged = True
            return b"\x89\x01!"  # FIN + ping, 1 byte of payload
        return await super().receive(max_bytes)


async def test_the_reader_waits_for_room_before_queueing_a_pong() -> None:
    byte_stream = PingingByteStream()
    ws = client_stream(byte_stream)
    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(ws.send, "q" * MESSAGE_SIZE)
        await wait_all_tasks_blocked()
        full = ws.unsent
        assert full > _HIGH_WATER
        tg.start_soon(ws.receive)  # reads the ping; its pong must wait for room
        await wait_all_tasks_blocked()
        assert ws.unsent == full
        byte_stream.gate.set()
        await wait_all_tasks_blocked()
        tg.cancel_scope.cancel()  # the reader, waiting for more
    # The pong went out after the messages that were queued before it.
    server = Connection(ConnectionType.SERVER)
    server.receive_data(b"".join(byte_stream.writes))
    events = list(server.events())
    [pong] = [index for index, event in enumerate(events) if isinstance(event, Pong)]
    assert pong >= _HIGH_WATER // FRAME_SIZE + 1
    assert sum(isinstance(event, TextMessage) for event in events) == 8
    assert ws.unsent == 0


async def test_a_writer_cancelled_mid_write_fails_the_connection() -> None:
    byte_stream = GatedByteStream()
    ws = client_stream(byte_stream)
    with anyio.move_on_after(0.01):
        await ws.send("never written")
    close_reason = ws.close_reason
    assert close_reason is not None
    assert close_reason.code == 1006
    assert close_reason.reason.startswith("a write was interrupted (")
    with pytest.raises(anyio.BrokenResourceError):
        await ws.send("after")


async def test_a_sender_waiting_for_room_fails_when_the_connection_ends_meanwhile() -> None:
    byte_stream = GatedByteStream(fail=True)
    ws = client_stream(byte_stream)
    outcomes: list[str] = []

    async def sender() -> None:
        try:
            await ws.send("r" * MESSAGE_SIZE)
        except anyio.BrokenResourceError:
            outcomes.append("broken")

    async with anyio.create_task_group() as tg:
        for _ in range(9):
            tg.start_soon(sender)
        await wait_all_tasks_blocked()
        byte_stream.gate.set()  # the write fails: every sender still waiting for room hears it
    assert len(outcomes) == 9 - _HIGH_WATER // FRAME_SIZE
