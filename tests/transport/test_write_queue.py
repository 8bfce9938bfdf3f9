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
from wsproto.events import TextMessage

from ocpprpc._transport import CloseReason
from ocpprpc._websocket import _HIGH_WATER, WebSocketStream
from ocpprpc._wsproto_codec import WsprotoCodec


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
