"""The sans-IO codec on its own: a wsproto peer on one side, our codec on the other, no sockets."""

from __future__ import annotations

import struct
import zlib

import pytest
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.extensions import Extension, PerMessageDeflate

from ocpprpc._ws.wsproto_codec import (
    CloseReceived,
    CodecEvent,
    PingReceived,
    PongReceived,
    ProtocolFailure,
    WebSocketCodec,
    WsprotoCodec,
    deflate_extension,
)

from .helpers import frame


def make_pair(max_message_size: int = 1024, *, deflate: bool = False) -> tuple[WsprotoCodec, Connection]:
    """Our server-side codec and a wsproto client connection, as if after the handshake."""
    ours_ext: list[Extension] = [deflate_extension(max_message_size)] if deflate else []
    peer_ext: list[Extension] = [PerMessageDeflate()] if deflate else []
    for ext in ours_ext:
        ext.accept("permessage-deflate")
    for ext in peer_ext:
        ext.finalize("permessage-deflate")
    codec = WsprotoCodec(Connection(ConnectionType.SERVER, ours_ext), max_message_size=max_message_size)
    return codec, Connection(ConnectionType.CLIENT, peer_ext)


def peer_events(peer: Connection, data: bytes) -> list[object]:
    peer.receive_data(data)
    return list(peer.events())


def test_codec_satisfies_the_protocol() -> None:
    codec: WebSocketCodec = make_pair()[0]
    assert codec.open and not codec.closed


def test_text_both_ways() -> None:
    codec, peer = make_pair()
    assert codec.receive_data(peer.send(TextMessage(data='[2,"1","Heartbeat",{}]'))) == [
        '[2,"1","Heartbeat",{}]'
    ]
    (event,) = peer_events(peer, codec.send_text("ünïcödé"))
    assert isinstance(event, TextMessage) and event.data == "ünïcödé"


def test_several_messages_in_one_read_come_out_in_order() -> None:
    codec, peer = make_pair()
    data = b"".join(peer.send(TextMessage(data=str(i))) for i in range(5))
    assert codec.receive_data(data) == ["0", "1", "2", "3", "4"]


def test_fragments_are_reassembled_even_byte_by_byte() -> None:
    codec, peer = make_pair()
    data = (
        peer.send(TextMessage(data="[2,", message_finished=False))
        + peer.send(Ping(payload=b"mid"))  # control frames may sit between fragments
        + peer.send(TextMessage(data='"id","Ab', message_finished=False))
        + peer.send(TextMessage(data='c",{}]', message_finished=True))
    )
    events: list[CodecEvent] = []
    for i in range(len(data)):
        events += codec.receive_data(data[i : i + 1])
    assert events == [PingReceived(b"mid"), '[2,"id","Abc",{}]']


def test_ping_is_answered_with_a_pong() -> None:
    codec, peer = make_pair()
    assert codec.receive_data(peer.send(Ping(payload=b"keepalive"))) == [PingReceived(b"keepalive")]
    (pong,) = peer_events(peer, codec.data_to_send())
    assert isinstance(pong, Pong) and pong.payload == b"keepalive"
    assert codec.data_to_send() == b""


def test_pong_is_reported() -> None:
    codec, peer = make_pair()
    assert codec.receive_data(peer.send(Pong(payload=b"p"))) == [PongReceived(b"p")]
    (ping,) = peer_events(peer, codec.send_ping(b"x"))
    assert isinstance(ping, Ping)


def test_close_started_by_the_peer_is_echoed() -> None:
    codec, peer = make_pair()
    events = codec.receive_data(peer.send(CloseConnection(code=4001, reason="bye")))
    assert events == [CloseReceived(4001, "bye", initiated_by_peer=True)]
    assert not codec.open and codec.closed
    (echo,) = peer_events(peer, codec.data_to_send())
    assert isinstance(echo, CloseConnection) and echo.code == 4001
    with pytest.raises(RuntimeError):
        codec.send_text("too late")
    assert codec.send_close() == b"" and codec.send_ping() == b""
    assert codec.receive_data(b"more noise") == []


def test_close_started_by_us_completes_on_the_answer() -> None:
    codec, peer = make_pair()
    (close,) = peer_events(peer, codec.send_close(1001, "going away"))
    assert isinstance(close, CloseConnection) and close.code == 1001
    assert not codec.open and not codec.closed
    # Data crossing our close frame is still decoded; pings are no longer answered.
    events = codec.receive_data(frame(0x1, b"late") + frame(0x9, b""))
    assert events == ["late", PingReceived(b"")]
    assert codec.receive_data(peer.send(close.response())) == [
        CloseReceived(1001, "going away", initiated_by_peer=False)
    ]
    assert codec.closed and codec.data_to_send() == b""


def test_close_without_status_code_is_1005() -> None:
    codec, _ = make_pair()
    events = codec.receive_data(frame(0x8, b""))
    assert events == [CloseReceived(1005, "", initiated_by_peer=True)]


def fails_with(codec: WsprotoCodec, data: bytes, code: int) -> ProtocolFailure:
    events = codec.receive_data(data)
    failure = events[-1]
    assert isinstance(failure, ProtocolFailure), events
    assert failure.code == code
    assert not codec.open and codec.closed
    close = Connection(ConnectionType.CLIENT)
    close.receive_data(codec.data_to_send())
    (sent,) = close.events()
    assert isinstance(sent, CloseConnection) and sent.code == code
    assert codec.receive_data(b"anything") == []
    return failure


def test_binary_message_fails_with_1003() -> None:
    codec, peer = make_pair()
    fails_with(codec, peer.send(BytesMessage(data=b"\x00\x01")), 1003)


def test_invalid_utf8_fails_with_1007() -> None:
    codec, _ = make_pair()
    fails_with(codec, frame(0x1, b"ok \xff"), 1007)


def test_invalid_utf8_split_across_fragments_fails_with_1007() -> None:
    codec, _ = make_pair()
    # "é" is C3 A9; a fragment ending in C3 followed by one starting with 0x41 is invalid.
    assert codec.receive_data(frame(0x1, b"caf\xc3", fin=False)) == []
    fails_with(codec, frame(0x0, b"A"), 1007)


def test_bad_framing_fails_with_1002() -> None:
    codec, _ = make_pair()
    fails_with(codec, frame(0x1, b"x", mask=False), 1002)  # clients must mask


def test_unknown_close_code_fails_with_1002() -> None:
    codec, _ = make_pair()
    fails_with(codec, frame(0x8, struct.pack("!H", 1005)), 1002)


def test_message_at_the_limit_passes_one_byte_more_fails_with_1009() -> None:
    codec, peer = make_pair(max_message_size=100)
    assert codec.receive_data(peer.send(TextMessage(data="a" * 100))) == ["a" * 100]
    failure = fails_with(codec, peer.send(TextMessage(data="a" * 101)), 1009)
    assert "100" in failure.reason


def test_size_counts_utf8_bytes_not_characters() -> None:
    codec, peer = make_pair(max_message_size=100)
    assert codec.receive_data(peer.send(TextMessage(data="é" * 50))) == ["é" * 50]
    fails_with(codec, peer.send(TextMessage(data="é" * 51)), 1009)


def test_oversized_message_is_refused_before_it_is_complete() -> None:
    codec, _ = make_pair(max_message_size=1000)
    # A frame header announcing 10 MB, then only the first 1001 bytes of payload.
    header = frame(0x1, b"", length=10_000_000, key=bytes(4))
    assert codec.receive_data(header + b"a" * 600) == []
    fails_with(codec, b"a" * 401, 1009)


def test_oversized_fragmented_message_fails_with_1009() -> None:
    codec, peer = make_pair(max_message_size=100)
    assert codec.receive_data(peer.send(TextMessage(data="a" * 60, message_finished=False))) == []
    fails_with(codec, peer.send(TextMessage(data="a" * 60, message_finished=False)), 1009)


def test_size_resets_between_messages() -> None:
    codec, peer = make_pair(max_message_size=100)
    for _ in range(5):
        assert codec.receive_data(peer.send(TextMessage(data="a" * 90))) == ["a" * 90]


def test_permessage_deflate_round_trip() -> None:
    codec, peer = make_pair(deflate=True)
    message = '[2,"1","MeterValues",' + '{"v":1},' * 50 + "{}]"
    wire = peer.send(TextMessage(data=message))
    assert len(wire) < len(message) // 4  # really compressed
    assert codec.receive_data(wire) == [message]
    # Context takeover: the second message compresses against the first.
    assert codec.receive_data(peer.send(TextMessage(data=message))) == [message]
    (event,) = peer_events(peer, codec.send_text(message))
    assert isinstance(event, TextMessage) and event.data == message


def test_deflate_bomb_is_refused_without_inflating_it() -> None:
    codec, _ = make_pair(max_message_size=1000, deflate=True)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = compressor.compress(b"a" * 10_000_000) + compressor.flush(zlib.Z_SYNC_FLUSH)[:-4]
    assert len(bomb) < 20_000
    failure = fails_with(codec, frame(0x1, bomb, rsv1=True), 1009)
    assert failure.reason == "message bigger than 1000 bytes"


def test_deflate_limit_counts_inflated_bytes() -> None:
    codec, peer = make_pair(max_message_size=1000, deflate=True)
    assert codec.receive_data(peer.send(TextMessage(data="a" * 1000))) == ["a" * 1000]
    fails_with(codec, peer.send(TextMessage(data="a" * 1001)), 1009)


def test_max_message_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        WsprotoCodec(Connection(ConnectionType.SERVER), max_message_size=0)
