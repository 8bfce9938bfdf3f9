"""Calls both ways, typed and untyped, and what the caller sees for each kind of answer."""

from __future__ import annotations

import functools
from typing import Any

import anyio
import msgspec
import pytest
from anyio import wait_all_tasks_blocked

from ocpprpc import (
    CallContext,
    ErrorCode,
    InvalidResponseError,
    LocalProtocolError,
    OCPPError,
    OutboundPayloadError,
    PayloadKind,
    Role,
    Router,
)
from ocpprpc.testing import session_pair

from .helpers import (
    BootRequest,
    BootResponse,
    HeartbeatRequest,
    HeartbeatResponse,
    RecordingCodec,
    Records,
    StreamMessage,
    session_with_raw_peer,
)


def csms_router() -> Router:
    router = Router()

    @router.on(BootRequest)
    async def boot(request: BootRequest, ctx: CallContext) -> BootResponse:
        return BootResponse(status="Accepted" if request.charge_point_vendor == "V" else "Rejected")

    @router.on("Heartbeat")
    async def heartbeat(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        return {"currentTime": "2024-01-01T00:00:00Z"}

    return router


async def test_typed_call_returns_the_response_type() -> None:
    async with session_pair(csms_router=csms_router()) as (station, _):
        answer = await station.call(BootRequest(charge_point_vendor="V"))
        assert answer == BootResponse(status="Accepted")
        heartbeat = await station.call(HeartbeatRequest())
        assert heartbeat == HeartbeatResponse(current_time="2024-01-01T00:00:00Z")


async def test_untyped_call_returns_the_decoded_dict() -> None:
    async with session_pair(csms_router=csms_router()) as (station, _):
        # omit_defaults: the default interval is not on the wire.
        assert await station.call("BootNotification", {"chargePointVendor": "X"}) == {"status": "Rejected"}
        assert await station.call("Heartbeat") == {"currentTime": "2024-01-01T00:00:00Z"}


async def test_calls_from_the_csms_to_the_station() -> None:
    station_router = Router()

    @station_router.on("Reset")
    async def reset(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        assert ctx.session.connection.role is Role.CHARGING_STATION
        return {"status": "Accepted" if request["type"] == "Soft" else "Rejected"}

    async with session_pair(station_router=station_router) as (_, csms):
        assert await csms.call("Reset", {"type": "Soft"}) == {"status": "Accepted"}


async def test_handler_calls_back_the_peer_from_inside_a_handler() -> None:
    """A handler may call the peer while the peer waits for its answer: the reader keeps running."""
    station_router, router = Router(), Router()

    @station_router.on("GetConfiguration")
    async def get_configuration(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        return {"configurationKey": []}

    @router.on("BootNotification")
    async def boot(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        config = await ctx.session.call("GetConfiguration", {})
        return {"status": "Accepted", "keys": len(config["configurationKey"])}

    async with session_pair(station_router=station_router, csms_router=router) as (station, _):
        assert await station.call("BootNotification", {}) == {"status": "Accepted", "keys": 0}


async def test_callerror_raises_ocpperror() -> None:
    router = Router()

    @router.on("Authorize")
    async def authorize(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        raise OCPPError(ErrorCode.SECURITY_ERROR, "nope", {"why": "test"})

    async with session_pair(csms_router=router) as (station, _):
        with pytest.raises(OCPPError) as info:
            await station.call("Authorize", {"idTag": "1"})
    assert info.value.code is ErrorCode.SECURITY_ERROR
    assert info.value.description == "nope"
    assert info.value.details == {"why": "test"}


async def test_dict_answer_that_does_not_fit_the_response_type() -> None:
    router = Router()

    @router.on("Heartbeat")
    async def heartbeat(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        return {"currentTime": 5}

    async with session_pair(csms_router=router) as (station, _):
        with pytest.raises(InvalidResponseError) as info:
            await station.call(HeartbeatRequest())
    assert info.value.action == "Heartbeat"
    assert info.value.code is ErrorCode.FORMAT_VIOLATION


async def test_typed_answer_of_a_struct_codec_is_converted() -> None:
    """A codec may hand back a Struct of another class: it is converted to the response type."""

    class Other(msgspec.Struct, rename="camel"):
        current_time: str

    class StructCodec(RecordingCodec):
        def decode(
            self, action: str, kind: PayloadKind, data: bytes | memoryview, *, validate: bool = True
        ) -> Any:
            return msgspec.convert(super().decode(action, kind, data, validate=validate), Other)

    router = Router()

    @router.on("Heartbeat")
    async def heartbeat(request: Any, ctx: CallContext) -> dict[str, Any]:
        return {"currentTime": "now"}

    async with session_pair(csms_router=router, station_codec=StructCodec()) as (station, _):
        assert await station.call(HeartbeatRequest()) == HeartbeatResponse(current_time="now")


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.1"])
async def test_invalid_callresult_fails_the_caller(protocol: str) -> None:
    """1.6: nothing is sent back; 2.1: the peer gets a CALLRESULTERROR.  The caller fails either way."""
    codec = RecordingCodec(reject={("Heartbeat", PayloadKind.RESPONSE)})
    async with session_with_raw_peer(protocol, engine_options={"codec": codec}) as (session, peer):
        async with anyio.create_task_group() as tg:
            errors: list[InvalidResponseError] = []

            async def caller() -> None:
                with pytest.raises(InvalidResponseError) as info:
                    await session.call("Heartbeat", {})
                errors.append(info.value)

            tg.start_soon(caller)
            _, message_id, *_ = await peer.receive()
            await peer.send([3, message_id, {"currentTime": "x"}])
        assert errors[0].code is ErrorCode.PROPERTY_CONSTRAINT_VIOLATION
        if protocol == "ocpp2.1":
            assert await peer.receive() == [
                5,
                message_id,
                "PropertyConstraintViolation",
                "rejected by the test codec",
                {},
            ]
        # The session is still usable.
        async with anyio.create_task_group() as tg:
            tg.start_soon(functools.partial(session.call, "Heartbeat", {}, validate=False))
            _, message_id, *_ = await peer.receive()
            await peer.send([3, message_id, {}])


async def test_outbound_payload_error_reaches_the_caller_and_nothing_is_sent() -> None:
    codec = RecordingCodec(reject={("Heartbeat", PayloadKind.REQUEST)})
    async with session_with_raw_peer(engine_options={"codec": codec}) as (session, _):
        with pytest.raises(OutboundPayloadError):
            await session.call("Heartbeat", {})
        assert not session.connection.outstanding_calls


async def test_per_call_validate_false_reaches_the_codec_both_ways() -> None:
    station_codec = RecordingCodec()
    router = Router()

    @router.on("Heartbeat")
    async def heartbeat(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        return {"currentTime": "now"}

    async with session_pair(csms_router=router, station_codec=station_codec) as (station, _):
        await station.call("Heartbeat", {}, validate=False)
        await station.call("Heartbeat", {})
    assert station_codec.calls == [
        ("encode", "Heartbeat", PayloadKind.REQUEST, False),
        ("decode", "Heartbeat", PayloadKind.RESPONSE, False),
        ("encode", "Heartbeat", PayloadKind.REQUEST, True),
        ("decode", "Heartbeat", PayloadKind.RESPONSE, True),
    ]


async def test_handler_validate_false_is_exported_and_used_for_the_response() -> None:
    """A handler's opt-out lands in the session's set (for the codec) and on its response."""
    router = Router()

    @router.on("DataTransfer", validate=False)
    async def data_transfer(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        return {"status": "Accepted"}

    @router.on("Heartbeat")
    async def heartbeat(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        return {"currentTime": "now"}

    opted_out: set[str] = set()
    csms_codec = RecordingCodec(opted_out=opted_out)
    async with session_pair(csms_router=router, csms_codec=csms_codec, unvalidated_actions=opted_out) as (
        station,
        csms,
    ):
        assert opted_out == {"DataTransfer"}
        assert csms.unvalidated_actions is opted_out
        await station.call("DataTransfer", {"vendorId": "x"})
        await station.call("Heartbeat", {})
    assert csms_codec.calls == [
        ("decode", "DataTransfer", PayloadKind.REQUEST, False),
        ("encode", "DataTransfer", PayloadKind.RESPONSE, False),
        ("decode", "Heartbeat", PayloadKind.REQUEST, True),
        ("encode", "Heartbeat", PayloadKind.RESPONSE, True),
    ]


async def test_send_on_21() -> None:
    received: list[tuple[Any, bool]] = []
    got = anyio.Event()
    router = Router()

    @router.on("NotifyPeriodicEventStream")
    async def stream(request: dict[str, Any], ctx: CallContext) -> None:
        received.append((request, ctx.is_send))
        got.set()

    async with session_pair("ocpp2.1", csms_router=router) as (station, _):
        await station.send(StreamMessage(seq=1))
        await got.wait()
        got = anyio.Event()
        await station.send("NotifyPeriodicEventStream", {"seq": 2})
        await got.wait()
    assert received == [({"seq": 1}, True), ({"seq": 2}, True)]


async def test_unhandled_send_gets_no_answer(session_log: Records) -> None:
    async with session_with_raw_peer("ocpp2.1") as (_, peer):
        await peer.send([6, "s1", "Unknown", {}])
        await wait_all_tasks_blocked()
        # A CALL after it is answered first: nothing was sent for the SEND.
        await peer.send([2, "c1", "Unknown", {}])
        assert (await peer.receive())[:3] == [4, "c1", "NotImplemented"]
    assert any("no handler for SEND Unknown" in message for message in session_log.messages())


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1"])
async def test_send_is_refused_before_21(protocol: str) -> None:
    async with session_pair(protocol) as (station, _):
        with pytest.raises(LocalProtocolError):
            await station.send("NotifyPeriodicEventStream", {})


async def test_on_message_hook_sees_the_exchange() -> None:
    exchange: list[tuple[str, str]] = []
    router = Router()

    @router.on("Heartbeat")
    async def heartbeat(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        return {"currentTime": "now"}

    def hook(direction: str, text: str) -> None:
        exchange.append((direction, text))

    async with session_pair(
        csms_router=router, engine_options={"id_factory": lambda: "id1"}, on_message=hook
    ) as (station, _):
        await station.call("Heartbeat", {})
    assert exchange == [
        ("out", '[2,"id1","Heartbeat",{}]'),
        ("in", '[2,"id1","Heartbeat",{}]'),
        ("out", '[3,"id1",{"currentTime":"now"}]'),
        ("in", '[3,"id1",{"currentTime":"now"}]'),
    ]


async def test_a_failing_hook_is_logged_not_fatal(session_log: Records) -> None:
    def hook(direction: str, text: str) -> None:
        raise RuntimeError("hook bug")

    async with session_pair(on_message=hook) as (station, _), anyio.create_task_group():
        with pytest.raises(OCPPError):
            await station.call("Heartbeat", {})
    assert any("on_message hook failed" in message for message in session_log.messages())


async def test_bad_messages_are_answered_and_the_session_continues(session_log: Records) -> None:
    router = Router()

    @router.on("Heartbeat")
    async def heartbeat(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        return {"currentTime": "now"}

    async with session_with_raw_peer("ocpp2.0.1", router=router) as (_, peer):
        await peer.send("not json")
        assert (await peer.receive())[:3] == [4, "-1", "RpcFrameworkError"]
        await peer.send([2, "c1", "Heartbeat", [1]])
        assert (await peer.receive())[:3] == [4, "c1", "FormatViolation"]
        await peer.send("")  # ignored
        await peer.send([3, "nobody", {}])  # unmatched: dropped
        await peer.send([2, "c2", "Heartbeat", {}])
        assert await peer.receive() == [3, "c2", {"currentTime": "now"}]
    messages = session_log.messages()
    assert any("bad message from the peer" in message for message in messages)
    assert any("unknown message id nobody" in message for message in messages)


async def test_callresulterror_from_the_peer_is_logged(session_log: Records) -> None:
    router = Router()

    @router.on("Heartbeat")
    async def heartbeat(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        return {"currentTime": "now"}

    async with session_with_raw_peer("ocpp2.1", router=router) as (_, peer):
        await peer.send([2, "c1", "Heartbeat", {}])
        assert await peer.receive() == [3, "c1", {"currentTime": "now"}]
        await peer.send([5, "c1", "FormatViolation", "bad time", {}])
        await peer.send([2, "c2", "Heartbeat", {}])
        await peer.receive()
    assert any(
        "could not process our answer to Heartbeat (c1): FormatViolation bad time" in message
        for message in session_log.messages()
    )
