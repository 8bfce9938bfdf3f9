"""The frame decoders: one per set of message types, and one shared ``decode`` per decoder."""

from __future__ import annotations

import msgspec
import pytest

from ocpprpc._engine.frames import (
    CallFrame,
    PlainCallFrame,
    decode_function_for,
    decoder_for,
    plain_decoder_for,
)
from ocpprpc._engine.rules import MessageType

TYPES = frozenset({MessageType.CALL, MessageType.CALL_RESULT, MessageType.CALL_ERROR})
CALL = '[2,"1","Heartbeat",{"a":1}]'


def test_decoders_are_made_once_per_set_of_types() -> None:
    assert decoder_for(TYPES) is decoder_for(frozenset(TYPES))
    assert plain_decoder_for(TYPES) is plain_decoder_for(frozenset(TYPES))
    assert plain_decoder_for(TYPES) is not decoder_for(TYPES)


def test_every_connection_shares_one_decode_function() -> None:
    """A connection keeps the function it reads frames with: one object for all (bench_idle)."""
    plain = decode_function_for(TYPES, plain=True)
    assert plain is decode_function_for(frozenset(TYPES), plain=True)
    assert plain is not decode_function_for(TYPES, plain=False)
    frame = plain(CALL)
    assert isinstance(frame, PlainCallFrame) and frame.payload == {"a": 1}
    raw = decode_function_for(TYPES, plain=False)(CALL)
    assert isinstance(raw, CallFrame) and isinstance(raw.payload, msgspec.Raw)
    with pytest.raises(msgspec.ValidationError):  # SEND is not among the types
        plain('[6,"1","NotifyPeriodicEventStream",{}]')
