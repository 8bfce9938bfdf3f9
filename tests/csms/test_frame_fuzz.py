"""Random frame sequences from a station after a proper upgrade: the CSMS answers, or closes
that station with a protocol close code, and never anything else; a bystander station keeps
being answered, and the server shuts down with no task left behind.

Frames are drawn valid and invalid alike: every opcode (reserved ones too), FIN or not,
masked or not, payloads that are OCPP calls, broken JSON, invalid UTF-8, empty, or over the
message size limit, so that fragmentation, control frames inside fragmented messages, bad
close codes and the size bounds are all exercised against the real server.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wsproto.events import CloseConnection, TextMessage

import ocpprpc
from ocpprpc import CallContext, Router

from .helpers import PROMPT, raw_station, settled, task_count, ws_url

pytestmark = pytest.mark.timeout(120)

#: What a server may close a misbehaving station with (RFC 6455 7.4.1); 1011 (our own failure)
#: or anything else is a finding.
PROTOCOL_CLOSES = {1000, 1001, 1002, 1003, 1007, 1008, 1009}

payloads = st.sampled_from(
    [
        b'[2,"m1","Heartbeat",{}]',
        b'[2,"m2","Heartbeat",{"x":1}]',
        b'[2,"m3","NoSuchAction",{}]',
        b'[3,"never-sent",{}]',
        b"not json",
        b"[" * 5000,
        b"",
        b"\xff\xfe\xfd",
        b'[2,"m4","Heartbeat",{}',
        struct.pack("!H", 1000) + b"bye",
        struct.pack("!H", 999),
        struct.pack("!H", 4999) + b"\xff",
        b"x" * 70_000,
    ]
)


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    opcode = draw(st.sampled_from([0x0, 0x1, 0x2, 0x8, 0x9, 0xA, 0x3, 0x7, 0xB, 0xF]))
    fin = draw(st.booleans())
    masked = draw(st.sampled_from([True, True, True, False]))
    rsv = draw(st.sampled_from([0, 0, 0, 0x40, 0x20]))
    payload = draw(payloads)
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    size = len(payload)
    mask_bit = 0x80 if masked else 0
    if size < 126:
        head += bytes([mask_bit | size])
    elif size < 65536:
        head += bytes([mask_bit | 126]) + struct.pack("!H", size)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", size)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def router() -> Router:
    csms = Router()

    @csms.on("Heartbeat")
    def heartbeat(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        return {"currentTime": "2025-01-01T00:00:00Z"}

    return csms


@settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sequence=st.lists(frames(), min_size=1, max_size=8))
async def test_any_frame_sequence_is_answered_or_closed_and_harms_nobody(sequence: list[bytes]) -> None:
    baseline = task_count()
    async with (
        ocpprpc.serve(router=router(), close_timeout=1.0, validation=True) as server,
        ocpprpc.connect(ws_url(server), "BYSTANDER") as bystander,
    ):
        async with raw_station(server.port, "FUZZ") as fuzz:
            try:
                for data in sequence:
                    await fuzz.send_raw(data)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                pass  # closed on us mid-sequence: what it was closed with is checked below
            with anyio.move_on_after(0.5):
                while (event := await fuzz.next_event()) is not None:
                    if isinstance(event, CloseConnection):
                        assert event.code in PROTOCOL_CLOSES, (event.code, event.reason)
                        break
                    if isinstance(event, TextMessage):
                        reply = json.loads(event.data)
                        assert reply[0] in (3, 4), reply
            assert await bystander.call("Heartbeat", {}) == {"currentTime": "2025-01-01T00:00:00Z"}
        with anyio.fail_after(PROMPT):
            assert await bystander.call("Heartbeat", {}) == {"currentTime": "2025-01-01T00:00:00Z"}
        assert "BYSTANDER" in server.clients
    await settled(baseline)
