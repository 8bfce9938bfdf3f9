"""ocpprpc's own frame codec (:mod:`ocpprpc._ws.frame_codec`): what the differential suite does not show.

``tests/ws/test_codec_differential.py`` runs it against websockets' and wsproto's codecs
(same messages, same close codes, any read boundaries, every hostile case); here are the
parts that are its own: the masking fallback, a frame that trickles in, the rules where it
is stricter than websockets (RFC 7692 6.1), inflation errors, and its API edges.
"""

from __future__ import annotations

import os
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.speedups import apply_mask

from ocpprpc._ws import frame_codec
from ocpprpc._ws.frame_codec import Deflate, FrameCodec, deflate_params
from ocpprpc._ws.wsproto_codec import (
    CloseReceived,
    PingReceived,
    PongReceived,
    ProtocolFailure,
    deflate_extension,
)

from .helpers import frame

LIMIT = 65536


def pair(deflate: Deflate | None = None) -> tuple[FrameCodec, FrameCodec]:
    """(station, csms): a client and a server end of one connection."""
    return FrameCodec(client=True, deflate=deflate), FrameCodec(client=False, deflate=deflate)


def test_the_rfc_example_masks_as_specified() -> None:
    """RFC 6455 5.7: "Hello" masked with 37 fa 21 3d."""
    key = bytes.fromhex("37fa213d")
    assert frame_codec._xor_mask(b"Hello", key) == bytes.fromhex("7f9f4d5158")
    assert FrameCodec(client=False).receive_data(bytes.fromhex("818537fa213d7f9f4d5158")) == ["Hello"]


@given(data=st.binary(max_size=600), key=st.binary(min_size=4, max_size=4))
def test_the_pure_python_mask_equals_the_c_one(data: bytes, key: bytes) -> None:
    assert frame_codec._xor_mask(data, key) == apply_mask(data, key)


def test_without_the_c_mask_the_codec_still_works(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frame_codec, "_apply_mask", frame_codec._xor_mask)
    station, csms = pair()
    text = '[2,"1","MeterValues",{"x":"' + "é" * 300 + '"}]'
    assert csms.receive_data(station.send_text(text)) == [text]


def test_a_client_masks_every_frame_with_a_fresh_key() -> None:
    station, csms = pair()
    first, second = station.send_text("same"), station.send_text("same")
    assert first[1] & 0x80 and second[1] & 0x80
    assert first != second  # the keys differ
    assert csms.receive_data(first + second) == ["same", "same"]
    assert csms.send_text("same") == b"\x81\x04same"  # a server never masks


def test_masking_keys_are_drawn_in_bulk_and_never_repeat_within_a_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One os.urandom() per 1,024 frames, not a system call per frame; every key its own."""
    station, _ = pair()
    draws = []
    real = os.urandom

    def counted(n: int) -> bytes:
        draws.append(n)
        return real(n)

    frame_codec._mask_keys.clear()
    monkeypatch.setattr(os, "urandom", counted)
    keys = [station.send_text("x")[2:6] for _ in range(3 * frame_codec._MASK_KEYS_PER_DRAW)]
    assert draws == [4 * frame_codec._MASK_KEYS_PER_DRAW] * 3
    assert len(set(keys)) > len(keys) - 5  # 4-byte random keys: a collision or two is chance


def test_a_forked_child_draws_keys_of_its_own() -> None:
    frame_codec._masking_key()  # the parent holds a pool
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, b"%d" % len(frame_codec._mask_keys))
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 16) == b"0"
    os.close(read)
    os.close(write)


def test_a_frame_that_trickles_in_byte_by_byte() -> None:
    """Each read appends to the one buffer; the message comes out whole, once, at the last byte."""
    station, csms = pair()
    text = "x" * 5000
    data = station.send_text(text) + station.send_ping(b"p")
    events = [event for i in range(len(data)) for event in csms.receive_data(data[i : i + 1])]
    assert events == [text, PingReceived(b"p")]
    assert csms._buffer is None


def test_a_frame_split_after_a_whole_one_keeps_only_the_rest() -> None:
    station, csms = pair()
    one, two = station.send_text("one"), station.send_text("two" * 100)
    assert csms.receive_data(one + two[:7]) == ["one"]
    assert csms._buffer == bytearray(two[:7])
    assert csms.receive_data(two[7:]) == ["two" * 100]
    assert csms._buffer is None


def test_rsv1_on_a_continuation_fails_with_1002() -> None:
    """RFC 7692 6.1: only the first frame of a compressed message has RSV1 (websockets lets it pass)."""
    csms = FrameCodec(client=False, deflate=Deflate())
    compressor = zlib.compressobj(wbits=-15)
    body = compressor.compress(b"hello world") + compressor.flush(zlib.Z_SYNC_FLUSH)
    data = frame(0x1, body[:4], fin=False, rsv1=True) + frame(0x0, body[4:-4], rsv1=True)
    assert csms.receive_data(data) == [ProtocolFailure(1002, "reserved bits must be 0")]


def test_rsv1_without_deflate_fails_with_1002() -> None:
    assert FrameCodec(client=False).receive_data(frame(0x1, b"hi", rsv1=True)) == [
        ProtocolFailure(1002, "reserved bits must be 0")
    ]


def test_a_corrupt_deflate_stream_fails_with_1007_and_a_readable_close() -> None:
    station, csms = pair(Deflate())
    events = csms.receive_data(frame(0x1, b"\xff\xff\xff\xff", rsv1=True))
    assert len(events) == 1 and isinstance(events[0], ProtocolFailure)
    assert events[0].code == 1007 and events[0].reason.startswith("decompression failed")
    assert station.receive_data(csms.data_to_send()) == [CloseReceived(1007, events[0].reason, True)]


def test_a_control_frame_announcing_a_terabyte_fails_before_its_payload() -> None:
    head = frame(0x9, b"", length=1 << 40, key=bytes(4))
    assert FrameCodec(client=False).receive_data(head) == [ProtocolFailure(1002, "control frame too long")]


def test_a_ping_longer_than_125_bytes_is_refused_before_it_is_sent() -> None:
    station, _ = pair()
    with pytest.raises(ValueError, match="125 bytes"):
        station.send_ping(b"p" * 126)
    assert station.open


def test_frames_that_came_with_the_handshake_are_reported_once() -> None:
    server = FrameCodec(client=False)
    early = server.send_text("first") + server.send_ping(b"x")
    station = FrameCodec(client=True, initial_data=early)
    assert station.data_to_send()[0] & 0x0F == 0xA  # the pong is queued already
    assert station.receive_data(b"") == ["first", PingReceived(b"x")]
    assert station.receive_data(b"") == []


def test_a_pong_and_our_own_close_answered() -> None:
    station, csms = pair()
    assert csms.receive_data(station.send_ping(b"")) == [PingReceived(b"")]
    assert station.receive_data(csms.data_to_send()) == [PongReceived(b"")]
    goodbye = csms.send_close(1001, "bye")
    assert not csms.open and not csms.closed
    assert station.receive_data(goodbye) == [CloseReceived(1001, "bye", True)]
    assert csms.receive_data(station.data_to_send()) == [CloseReceived(1001, "bye", False)]
    assert csms.closed and station.closed


def test_messages_still_arrive_after_our_close_frame() -> None:
    """RFC 6455 7.1.2: after sending a close frame an endpoint still reads until the peer's."""
    station, csms = pair()
    csms.send_close(1000)
    assert csms.receive_data(station.send_text("late")) == ["late"]


def test_an_empty_close_frame_is_1005_and_echoed_empty() -> None:
    csms = FrameCodec(client=False)
    assert csms.receive_data(frame(0x8, b"")) == [CloseReceived(1005, "", True)]
    assert csms.data_to_send() == b"\x88\x00"  # the peer's own (empty) payload, unmasked
    assert csms.data_to_send() == b"" and csms.closed


def test_a_small_remote_window_inflates() -> None:
    """A peer told to compress with 8-bit windows (zlib uses 9) is still read."""
    station = FrameCodec(client=True, deflate=Deflate(local_max_window_bits=8))
    csms = FrameCodec(client=False, deflate=Deflate(remote_max_window_bits=8))
    text = "abc" * 2000 + os.urandom(64).hex()
    assert csms.receive_data(station.send_text(text)) == [text]


def test_max_message_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        FrameCodec(client=True, max_message_size=0)


def test_an_extension_offered_but_not_agreed_gives_no_deflate() -> None:
    assert deflate_params([deflate_extension(LIMIT)], client=True) is None
    assert deflate_params([], client=False) is None


def test_a_64_bit_length_split_across_reads() -> None:
    station = FrameCodec(client=True)
    csms = FrameCodec(client=False, max_message_size=100_000)
    data = station.send_text("z" * 70_000)
    assert data[1] & 0x7F == 127
    assert csms.receive_data(data[:5]) == []  # the 8 length bytes are not all there
    assert csms.receive_data(data[5:]) == ["z" * 70_000]


def test_a_new_message_inside_a_fragmented_one_fails_with_1002() -> None:
    csms = FrameCodec(client=False)
    data = frame(0x1, b"a", fin=False) + frame(0x1, b"b", fin=False)
    assert csms.receive_data(data) == [ProtocolFailure(1002, "expected a continuation frame")]


def test_a_close_frame_inside_a_fragmented_message_fails_with_1002() -> None:
    csms = FrameCodec(client=False)
    data = frame(0x1, b"a", fin=False) + frame(0x8, b"\x03\xe8")
    assert csms.receive_data(data) == [ProtocolFailure(1002, "incomplete fragmented message")]
    assert csms.data_to_send()[:4] == b"\x88\x1f\x03\xea"  # our 1002, not an echo


def test_a_failure_after_our_close_frame_sends_no_second_one() -> None:
    csms = FrameCodec(client=False)
    csms.send_close(1000)
    assert csms.receive_data(frame(0x2, b"binary")) == [
        ProtocolFailure(1003, "binary frames are not accepted")
    ]
    assert csms.data_to_send() == b"" and csms.closed


def test_reserved_bits_on_a_control_frame_fail_with_1002() -> None:
    csms = FrameCodec(client=False, deflate=Deflate())
    assert csms.receive_data(frame(0x9, b"p", rsv1=True)) == [
        ProtocolFailure(1002, "reserved bits must be 0")
    ]
