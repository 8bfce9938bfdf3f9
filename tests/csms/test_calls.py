"""Calls both ways over real loopback WebSockets: typed and untyped, every version, validation on and off."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

import ocpprpc
from ocpprpc import CallContext, ErrorCode, OCPPError, Router, SchemaCodec, Session

from .flavours import FLAVOURS, PROTOCOLS
from .helpers import PROMPT, eventually, ws_url

pytestmark = pytest.mark.timeout(20)


@pytest.mark.parametrize("validation", [True, False], ids=["strict", "lax"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_typed_calls_both_ways(protocol: str, validation: bool) -> None:
    flavour = FLAVOURS[protocol]
    csms_seen: list[Any] = []
    station_seen: list[Any] = []
    from_on_connect: list[Any] = []
    called_back = anyio.Event()

    async def on_connect(session: Session) -> None:
        # The CSMS calls the station the moment it is admitted.
        from_on_connect.append(await session.call(flavour.change_availability))
        called_back.set()

    async with (
        ocpprpc.serve(
            router=flavour.csms_router(csms_seen), on_connect=on_connect, validation=validation
        ) as server,
        ocpprpc.connect(
            ws_url(server),
            "CP1",
            protocols=[protocol],
            router=flavour.station_router(station_seen),
            validation=validation,
        ) as station,
    ):
        assert station.protocol == protocol
        boot = await station.call(flavour.boot)
        assert isinstance(boot, flavour.boot_response)
        assert boot.status == "Accepted"
        assert boot.interval == 300
        beat = await station.call(flavour.heartbeat)
        assert isinstance(beat, flavour.heartbeat_response)

        # And through server.clients, from outside any handler.
        answer = await server.clients["CP1"].call(flavour.change_availability)
        assert isinstance(answer, flavour.change_availability_response)
        assert answer.status == "Accepted"

        with anyio.fail_after(PROMPT):
            await called_back.wait()
        assert isinstance(from_on_connect[0], flavour.change_availability_response)

    # Handlers registered with a Request class get that class, validated or not.
    assert [type(r) for r in csms_seen] == [type(flavour.boot), type(flavour.heartbeat)]
    assert csms_seen[0] == flavour.boot
    assert [type(r) for r in station_seen] == [type(flavour.change_availability)] * 2
    assert station_seen[0] == flavour.change_availability


@pytest.mark.parametrize("validation", [True, False], ids=["strict", "lax"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_untyped_calls_both_ways(protocol: str, validation: bool) -> None:
    flavour = FLAVOURS[protocol]
    csms = Router()
    station_router = Router()
    received: list[tuple[str, Any]] = []

    @csms.on("BootNotification")
    async def boot(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        received.append((ctx.action, request))
        return {"status": "Accepted", "currentTime": "2025-01-01T00:00:00Z", "interval": 60}

    @csms.on_any()
    async def anything(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        received.append((ctx.action, request))
        return {"currentTime": "2025-01-01T00:00:00Z"}

    @station_router.on("ChangeAvailability")
    async def change(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        received.append((ctx.action, request))
        assert ctx.identity == "CP 7:a"
        return {"status": "Rejected"}

    async with (
        ocpprpc.serve(router=csms, validation=validation) as server,
        ocpprpc.connect(
            ws_url(server), "CP 7:a", protocols=[protocol], router=station_router, validation=validation
        ) as station,
    ):
        assert await station.call("BootNotification", flavour.boot_dict) == {
            "status": "Accepted",
            "currentTime": "2025-01-01T00:00:00Z",
            "interval": 60,
        }
        assert await station.call("Heartbeat") == {"currentTime": "2025-01-01T00:00:00Z"}
        # The identity went through percent-encoding and back.
        assert list(server.clients) == ["CP 7:a"]
        answer = await server.clients["CP 7:a"].call("ChangeAvailability", flavour.change_availability_dict)
        assert answer == {"status": "Rejected"}

    # Name-keyed handlers get plain JSON values, validated or not.
    assert received == [
        ("BootNotification", flavour.boot_dict),
        ("Heartbeat", {}),
        ("ChangeAvailability", flavour.change_availability_dict),
    ]


async def test_strict_validation_across_the_wire() -> None:
    """What each side's validation catches, when the other side's is off."""
    csms = Router()

    @csms.on("Heartbeat")
    async def heartbeat(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        if ctx.data.get("bad answer"):
            return {"currentTime": 42}
        return {"currentTime": "2025-01-01T00:00:00Z"}

    @csms.on("Authorize")
    async def authorize(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        raise AssertionError("an invalid request must not reach the handler")

    strict = ocpprpc.serve(router=csms, validation=True, protocols=["ocpp1.6"])
    async with strict as server:
        async with ocpprpc.connect(ws_url(server), "LAX", validation=False) as lax:
            # The CSMS refuses our invalid request...
            with pytest.raises(OCPPError) as refused:
                await lax.call("Authorize", {"idTag": 7})
            assert refused.value.code in (ErrorCode.TYPE_CONSTRAINT_VIOLATION, ErrorCode.FORMAT_VIOLATION)
            # ...and will not send an invalid answer either: InternalError instead.
            server.clients["LAX"].data["bad answer"] = True
            with pytest.raises(OCPPError) as internal:
                await lax.call("Heartbeat")
            assert internal.value.code is ErrorCode.INTERNAL_ERROR
            server.clients["LAX"].data["bad answer"] = False
            assert await lax.call("Heartbeat") == {"currentTime": "2025-01-01T00:00:00Z"}

        async with ocpprpc.connect(ws_url(server), "STRICT", validation=True) as station:
            # Our own validation stops an invalid request before it is sent.
            with pytest.raises(ocpprpc.OutboundPayloadError):
                await station.call("Authorize", {})
            # validate=False sends it anyway; the CSMS still refuses it.
            with pytest.raises(OCPPError):
                await station.call("Authorize", {}, validate=False)
            assert await station.call("Heartbeat") == {"currentTime": "2025-01-01T00:00:00Z"}

    lax_csms = ocpprpc.serve(router=csms, validation=False, protocols=["ocpp1.6"])
    async with lax_csms as server, ocpprpc.connect(ws_url(server), "STRICT", validation=True) as station:
        await eventually(lambda: "STRICT" in server.clients)
        server.clients["STRICT"].data["bad answer"] = True
        with pytest.raises(ocpprpc.InvalidResponseError):
            await station.call("Heartbeat")
        with pytest.raises(ocpprpc.InvalidResponseError):
            await station.call(ocpprpc.v16.HeartbeatRequest())
        # The session survives an invalid answer.
        server.clients["STRICT"].data["bad answer"] = False
        beat = await station.call(ocpprpc.v16.HeartbeatRequest())
        assert beat.current_time.year == 2025


async def test_unknown_and_unsupported_actions() -> None:
    """An action the version lacks: NotImplemented; one it defines but nobody handles: NotSupported."""
    async with (
        ocpprpc.serve(validation=True) as server,
        ocpprpc.connect(ws_url(server), "CP1", protocols=["ocpp2.0.1"], validation=True) as station,
    ):
        with pytest.raises(OCPPError) as unknown:
            await station.call("NoSuchAction", {})
        assert unknown.value.code is ErrorCode.NOT_IMPLEMENTED
        with pytest.raises(OCPPError) as unsupported:
            await station.call(ocpprpc.v201.HeartbeatRequest())
        assert unsupported.value.code is ErrorCode.NOT_SUPPORTED
        # And the CSMS calling a station that has no router at all.
        with pytest.raises(OCPPError) as station_side:
            await server.clients["CP1"].call(
                ocpprpc.v201.ChangeAvailabilityRequest(
                    operational_status=ocpprpc.v201.OperationalStatusEnum.OPERATIVE
                )
            )
        assert station_side.value.code is ErrorCode.NOT_SUPPORTED


async def test_a_handler_calls_the_peer_back_before_answering() -> None:
    """Calls cross in both directions on one connection: each side has its own outstanding slot."""
    csms = Router()
    station_router = Router()

    @csms.on("DataTransfer")
    async def data_transfer(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        echoed = await ctx.session.call("DataTransfer", {"vendorId": "csms", "data": request["data"] + "!"})
        return {"status": "Accepted", "data": echoed["data"]}

    @station_router.on("DataTransfer")
    async def station_data_transfer(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        return {"status": "Accepted", "data": request["data"] + "?"}

    async with (
        ocpprpc.serve(router=csms, validation=True) as server,
        ocpprpc.connect(ws_url(server), "CP1", router=station_router, validation=True) as station,
    ):
        answer = await station.call("DataTransfer", {"vendorId": "station", "data": "hi"})
        assert answer == {"status": "Accepted", "data": "hi!?"}


async def test_stations_share_their_validation_opt_outs_and_policy() -> None:
    """A handler's validate=False holds for every station; they share one set and one policy.

    Rather than a policy and a set per station (~0.3 KB each, bench_idle); a handler added
    while the server runs counts for the stations that connect after.
    """
    csms = Router()

    @csms.on("DataTransfer", validate=False)
    def data_transfer(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        return {"status": "Accepted", "echo": request}  # not a valid response either: not checked

    async with (
        ocpprpc.serve(router=csms, validation=True, protocols=["ocpp1.6"]) as server,
        ocpprpc.connect(ws_url(server), "CP1", validation=False) as one,
        ocpprpc.connect(ws_url(server), "CP2", validation=False) as two,
    ):
        for station in (one, two):
            answer = await station.call("DataTransfer", {"vendorId": 7})  # vendorId must be a string
            assert answer == {"status": "Accepted", "echo": {"vendorId": 7}}
            with pytest.raises(OCPPError) as refused:  # other actions are still validated
                await station.call("Heartbeat", {"x": 1})
            assert refused.value.code is ErrorCode.FORMAT_VIOLATION
        first, second = server.clients["CP1"], server.clients["CP2"]
        assert first.unvalidated_actions is second.unvalidated_actions
        assert first.unvalidated_actions == {"DataTransfer"}
        codecs = [first.connection.codec, second.connection.codec]
        assert isinstance(codecs[0], SchemaCodec) and isinstance(codecs[1], SchemaCodec)
        assert codecs[0].policy is codecs[1].policy

        @csms.on("Authorize", validate=False)
        def authorize(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
            return {"idTagInfo": {"status": "Accepted"}}

        async with ocpprpc.connect(ws_url(server), "CP3", validation=False) as three:
            assert await three.call("Authorize", {"idTag": 5}) == {"idTagInfo": {"status": "Accepted"}}
            assert server.clients["CP3"].unvalidated_actions == {"DataTransfer", "Authorize"}
            with pytest.raises(OCPPError):  # connected before: validated as before
                await one.call("Authorize", {"idTag": 5})
