"""WebSocketStream's outgoing queue: one writer, coalesced writes, bounded backlog, failure reporting.

The byte stream under test is a gate: its ``send()`` blocks until the test
opens it, as a socket does when the peer stops reading, which a real socket
only does after megabytes of kernel buffers.
"""

from __future__ import annotations

import anyio
import anyio.abc
import pytest
from anyio import wait_all_tasks_blocked
from wsproto.connection import Connection, ConnectionType
from wsproto.events import TextMessage

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
        pass


def client_stream(byte_stream: anyio.abc.ByteStream) -> WebSocketStream:
    codec = WsprotoCodec(Connection(ConnectionType.CLIENT))
    return WebSocketStream(byte_stream, codec, client=True, subprotocol="ocpp1.6", close_timeout=0.1)


def decode(writes: list[bytes]) -> list[str]:
    """The text messages in the written bytes, in wire order (as the server would read them)."""
    server = Connection(ConnectionType.SERVER)
    server.receive_data(b"".join(writes))
    return [event.data for event in server.events() if isinstance(event, TextMessage)]


MESSAGE_SIZE = 10_000


async def test_senders_queue_behind_the_writer_and_leave_in_one_write() -> None:
    byte_stream = GatedByteStream()
    ws = client_stream(byte_stream)
    returned: list[int] = []
    sent: list[str] = []

    async def sender(i: int) -> None:
        message = f"{i:03d}" + "x" * (MESSAGE_SIZE - 3)
        sent.append(message)  # the order the frames are queued in
        await ws.send(message)
        returned.append(i)

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(sender, i)
        await wait_all_tasks_blocked()
        # One writer blocked in the byte stream; up to the high-water mark of frames
        # queued behind it with their senders gone on; the rest wait for the writer.
        assert byte_stream.writes == []
        assert 0 < len(returned) <= _HIGH_WATER // MESSAGE_SIZE
        byte_stream.gate.set()
    assert sorted(returned) == list(range(20))
    # The writer's own frame, then everything queued meanwhile joined into one write.
    assert len(byte_stream.writes) == 2
    assert decode(byte_stream.writes) == sent


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
