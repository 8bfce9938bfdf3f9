"""Properties that hold for any input (hypothesis).

The engine's contract, after h11's fuzzing contract: whatever the peer sends,
``receive_message`` returns normally and reports it as events; any reply it
produces is a well-formed CALLERROR or CALLRESULTERROR.
"""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocpprpc import (
    BadMessage,
    Call,
    CallError,
    CallResult,
    Connection,
    ErrorCode,
    Event,
    InvalidResponse,
    JsonObjectCodec,
    Role,
    Send,
    Violation,
)

from .helpers import VERSIONS, ConnectionPair

SALVAGED = {Violation.UNKNOWN_MESSAGE_TYPE, Violation.UNREADABLE_ID, Violation.MALFORMED_FRAME}

json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(max_size=10), json_values, max_size=5)
message_ids = st.text(min_size=1, max_size=36)
actions = st.text(min_size=1, max_size=40)

# Frame-shaped arrays: a plausible type number, then anything.
frame_like = st.lists(json_values, max_size=6).flatmap(
    lambda rest: st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, -1, 2**40]).map(lambda t: [t, *rest])
)
# Nearly valid frames: right shape, one element possibly wrong.
near_frames = st.one_of(
    st.tuples(st.just(2), json_values | message_ids, json_values | actions, json_values | json_objects),
    st.tuples(st.just(3), json_values | message_ids, json_values | json_objects),
    st.tuples(
        st.just(4),
        json_values | message_ids,
        json_values | st.sampled_from(list(ErrorCode)),
        json_values,
        json_values,
    ),
    st.tuples(st.just(5), message_ids, st.text(), st.text(), json_objects),
    st.tuples(st.just(6), json_values | message_ids, actions, json_values | json_objects),
).map(list)


def _check(version: str, data: str | bytes, role: Role) -> list[Event]:
    engine = Connection(role, version, max_outstanding_calls=4, max_bad_messages=2)
    # Have something outstanding so answers can match.
    for message_id in ("a", "b"):
        engine.send(engine.new_call("Heartbeat", {}, message_id=message_id))
    engine.receive_message(data)
    events = list(engine.events())
    assert events, "every message produces at least one event"
    for event in events:
        reply = getattr(event, "reply", None)
        if reply is None:
            continue
        assert isinstance(event, BadMessage | InvalidResponse)
        frame = msgspec.json.decode(reply)
        assert isinstance(frame, list) and len(frame) == 5
        assert frame[0] in (4, 5)
        assert frame[0] == 4 or version == "ocpp2.1"  # CALLRESULTERROR only exists in 2.1
        assert isinstance(frame[1], str) and frame[1]
        assert isinstance(frame[2], str) and isinstance(frame[3], str) and isinstance(frame[4], dict)
        assert len(frame[3]) <= 255
    for event in events:
        # Ids salvaged from broken frames never exceed 36 characters (a well-formed frame's id
        # is reported verbatim, even over-long, so correlation never breaks).
        if isinstance(event, BadMessage) and event.violation in SALVAGED and event.message_id is not None:
            assert len(event.message_id) <= 36
    return events


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    version=st.sampled_from(VERSIONS),
    role=st.sampled_from([Role.CSMS, Role.CHARGING_STATION]),
    text=st.text(),
)
def test_any_text(version: str, role: Role, text: str) -> None:
    _check(version, text, role)
    _check(version, text.encode("utf-8", "surrogatepass"), role)


@settings(max_examples=300)
@given(version=st.sampled_from(VERSIONS), data=st.binary())
def test_any_bytes(version: str, data: bytes) -> None:
    _check(version, data, Role.CSMS)


@settings(max_examples=500)
@given(version=st.sampled_from(VERSIONS), frame=frame_like | near_frames)
def test_any_frame_shaped_json(version: str, frame: list[Any]) -> None:
    _check(version, msgspec.json.encode(frame), Role.CHARGING_STATION)


@settings(max_examples=200)
@given(
    version=st.sampled_from(VERSIONS),
    message_id=st.text(min_size=37, max_size=80),
    tail=st.lists(json_values, max_size=3),
)
def test_salvaged_ids_never_exceed_36(version: str, message_id: str, tail: list[Any]) -> None:
    for message_type in (2, 3, 4, 5, 6, 9):
        for event in _check(version, msgspec.json.encode([message_type, message_id, *tail]), Role.CSMS):
            if isinstance(event, BadMessage) and event.reply is not None:
                reply_id = msgspec.json.decode(event.reply)[1]
                # Only a well-formed CALL is answered under its (over-long) id; else "-1".
                assert reply_id == "-1" or (reply_id == message_id and message_type == 2)


@settings(max_examples=200)
@given(
    version=st.sampled_from(VERSIONS),
    message_id=message_ids,
    action=actions,
    payload=json_objects,
    result=json_objects,
    code=st.sampled_from(list(ErrorCode)),
    description=st.text(max_size=300),
    details=json_objects,
)
def test_round_trips(
    version: str,
    message_id: str,
    action: str,
    payload: dict[str, Any],
    result: dict[str, Any],
    code: ErrorCode,
    description: str,
    details: dict[str, Any],
) -> None:
    for answer_with_error in (False, True):
        pair = ConnectionPair(version)
        call = Call(message_id=message_id, action=action, payload=payload)
        assert pair.send(Role.CHARGING_STATION, call) == [call]
        if answer_with_error:
            (error,) = pair.send(
                Role.CSMS,
                CallError(message_id=message_id, code=code, description=description, details=details),
            )
            assert isinstance(error, CallError)
            # 1.6 has no RpcFrameworkError/MessageTypeNotSupported: they arrive as GenericError.
            degraded = version == "ocpp1.6" and code in (
                ErrorCode.RPC_FRAMEWORK_ERROR,
                ErrorCode.MESSAGE_TYPE_NOT_SUPPORTED,
            )
            assert error.code is (ErrorCode.GENERIC_ERROR if degraded else code)
            assert (error.description, error.details, error.action) == (description[:255], details, action)
        else:
            assert pair.send(Role.CSMS, CallResult(message_id=message_id, payload=result)) == [
                CallResult(message_id=message_id, payload=result, action=action)
            ]
    if version == "ocpp2.1":
        pair = ConnectionPair(version)
        send = Send(message_id=message_id, action=action, payload=payload)
        assert pair.send(Role.CSMS, send) == [send]


class _GeneralPath(JsonObjectCodec):
    """JsonObjectCodec's behaviour, but a subclass: the engine takes no shortcut for it."""


def _both_paths(version: str, role: Role, data: str | bytes) -> None:
    outcomes = []
    for codec in (JsonObjectCodec(), _GeneralPath()):
        engine = Connection(role, version, codec=codec, max_outstanding_calls=4, max_bad_messages=2)
        for message_id in ("a", "b"):
            engine.send(engine.new_call("Heartbeat", {}, message_id=message_id))
        engine.receive_message(data)
        outcomes.append(engine.events())
    assert outcomes[0] == outcomes[1]


@settings(max_examples=500)
@given(
    version=st.sampled_from(VERSIONS),
    role=st.sampled_from([Role.CSMS, Role.CHARGING_STATION]),
    data=(frame_like | near_frames).map(msgspec.json.encode) | st.text(),
)
def test_shortcuts_change_no_outcome(version: str, role: Role, data: str | bytes) -> None:
    """The engine's shortcuts for its own codecs give exactly the general path's events."""
    _both_paths(version, role, data)


@settings(max_examples=200)
@given(version=st.sampled_from(VERSIONS), payload=json_objects | json_values, message_id=message_ids)
def test_shortcuts_write_the_same_frames(version: str, payload: Any, message_id: str) -> None:
    frames = []
    for codec in (JsonObjectCodec(), _GeneralPath()):
        engine = Connection(Role.CHARGING_STATION, version, codec=codec)
        try:
            frames.append(engine.send(Call(message_id=message_id, action="A", payload=payload)))
        except Exception as exc:  # the same refusal either way
            frames.append(f"{type(exc).__name__}: {exc}")
    assert frames[0] == frames[1]


@settings(max_examples=100)
@given(
    version=st.sampled_from(VERSIONS),
    frame=near_frames,
    depth=st.integers(min_value=0, max_value=5000),
    where=st.integers(min_value=0, max_value=4),
    opener=st.sampled_from(["[", '{"a":']),
)
def test_nesting_at_any_depth(version: str, frame: list[Any], depth: int, where: int, opener: str) -> None:
    """Nesting around the interpreter's recursion limit, anywhere in a frame, is answered, never raised."""
    closer = "]" if opener == "[" else "}"
    elements = [msgspec.json.encode(item).decode() for item in frame]
    elements[min(where, len(elements) - 1)] = opener * depth + "1" + closer * depth
    _check(version, "[" + ",".join(elements) + "]", Role.CSMS)
