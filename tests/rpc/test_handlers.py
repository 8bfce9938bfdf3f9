"""Routing and handler outcomes: precedence, registration rules, errors, no reply, concurrency."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from ocpprpc import NO_REPLY, CallContext, NoReply, PayloadKind, Router
from ocpprpc.testing import session_pair

from .helpers import (
    Boot16Request,
    BootRequest,
    BootResponse,
    HeartbeatResponse,
    RecordingCodec,
    Records,
    session_with_raw_peer,
)


async def echo(request: Any, ctx: CallContext) -> dict[str, Any]:
    return {"action": ctx.action}


def test_precedence_version_specific_then_generic_then_catch_all() -> None:
    router = Router()

    async def specific(request: Any, ctx: CallContext) -> dict[str, Any]:
        return {}

    async def catch_all(request: Any, ctx: CallContext) -> dict[str, Any]:
        return {}

    router.add("Heartbeat", echo)
    router.add("Heartbeat", specific, protocol="ocpp2.0.1")
    router.add_any(catch_all)
    heartbeat_201 = router.resolve("Heartbeat", "ocpp2.0.1")
    heartbeat_16 = router.resolve("Heartbeat", "ocpp1.6")
    other = router.resolve("Reset", "ocpp2.0.1")
    assert heartbeat_201 is not None and heartbeat_201.handler is specific
    assert heartbeat_16 is not None and heartbeat_16.handler is echo
    assert other is not None and other.handler is catch_all
    router.remove_any()
    assert router.resolve("Reset", "ocpp2.0.1") is None


def test_registering_twice_raises() -> None:
    router = Router()
    router.add("Heartbeat", echo)
    with pytest.raises(ValueError, match="already registered"):
        router.add("Heartbeat", echo)
    router.add("Heartbeat", echo, protocol="ocpp1.6")  # a different key
    with pytest.raises(ValueError, match="already registered"):
        router.on("Heartbeat", protocol="ocpp1.6")(echo)
    router.add_any(echo)
    with pytest.raises(ValueError, match="catch-all"):
        router.on_any()(echo)


def test_request_class_keys() -> None:
    router = Router()

    @router.on(BootRequest)
    async def generic(request: BootRequest, ctx: CallContext) -> BootResponse:
        return BootResponse(status="Accepted")

    @router.on(Boot16Request)
    async def for_16(request: Boot16Request, ctx: CallContext) -> dict[str, Any]:
        return {"status": "Accepted"}

    assert BootRequest in router and "BootNotification" in router
    assert Boot16Request in router  # its own key: ("ocpp1.6", "BootNotification")
    router.remove(Boot16Request)
    assert Boot16Request not in router and BootRequest in router
    router.add(Boot16Request, for_16)
    route_16 = router.resolve("BootNotification", "ocpp1.6")
    route_201 = router.resolve("BootNotification", "ocpp2.0.1")
    assert route_16 is not None and route_16.handler is for_16
    assert route_201 is not None and route_201.handler is generic
    with pytest.raises(ValueError, match=r"'BootNotification' on ocpp1\.6"):
        router.add("BootNotification", echo, protocol="ocpp1.6")


def test_remove() -> None:
    router = Router()
    router.add(BootRequest, echo)
    router.add("Heartbeat", echo, protocol="ocpp1.6")
    router.remove("BootNotification")
    router.remove("Heartbeat", protocol="ocpp1.6")
    assert router.resolve("BootNotification", "ocpp1.6") is None
    with pytest.raises(KeyError):
        router.remove(BootRequest)
    with pytest.raises(KeyError):
        router.remove_any()


def test_bad_keys() -> None:
    router = Router()
    with pytest.raises(ValueError):
        router.add("", echo)
    with pytest.raises(TypeError):
        router.add(int, echo)  # type: ignore[call-overload]
    assert 5 not in router and int not in router


def test_unvalidated_actions_per_protocol() -> None:
    router = Router()
    router.add("DataTransfer", echo, validate=False)
    router.add("DataTransfer", echo, protocol="ocpp2.0.1")  # validated on 2.0.1
    router.add("Reset", echo, protocol="ocpp1.6", validate=False)
    assert router.unvalidated_actions("ocpp1.6") == {"DataTransfer", "Reset"}
    assert router.unvalidated_actions("ocpp2.0.1") == set()


def test_no_reply_is_a_readable_sentinel() -> None:
    assert repr(NO_REPLY) == "NO_REPLY"
    assert NO_REPLY is NoReply.NO_REPLY


async def test_context_carries_the_message_and_the_session() -> None:
    seen: list[CallContext] = []
    router = Router()

    @router.on("Heartbeat")
    async def heartbeat(request: Any, ctx: CallContext) -> dict[str, Any]:
        seen.append(ctx)
        ctx.data["beats"] = ctx.data.get("beats", 0) + 1
        return {}

    async with session_pair("ocpp2.0.1", csms_router=router, engine_options={"id_factory": lambda: "m1"}) as (
        station,
        csms,
    ):
        await station.call("Heartbeat")
        assert csms.data == {"beats": 1}
    (ctx,) = seen
    assert (ctx.message_id, ctx.action, ctx.protocol, ctx.session, ctx.is_send) == (
        "m1",
        "Heartbeat",
        "ocpp2.0.1",
        csms,
        False,
    )
    assert ctx.identity == "CP001"


async def test_typed_handler_gets_a_struct_even_from_the_dict_codec() -> None:
    got: list[Any] = []
    router = Router()

    @router.on(BootRequest)
    async def boot(request: BootRequest, ctx: CallContext) -> BootResponse:
        got.append(request)
        return BootResponse(status="Accepted")

    async with session_pair(csms_router=router) as (station, _):
        await station.call("BootNotification", {"chargePointVendor": "V"})
        # A payload that does not fit the class is refused before the handler runs.
        with pytest.raises(Exception, match="FormatViolation"):
            await station.call("BootNotification", {"chargePointVendor": 5})
    assert got == [BootRequest(charge_point_vendor="V")]


async def test_handler_exception_becomes_internal_error_and_the_session_survives(
    session_log: Records,
) -> None:
    router = Router()

    @router.on("Heartbeat")
    async def heartbeat(request: Any, ctx: CallContext) -> dict[str, Any]:
        raise ZeroDivisionError("secret internals")

    router.add("Authorize", echo)
    async with session_with_raw_peer(router=router) as (_, peer):
        await peer.send([2, "c1", "Heartbeat", {}])
        # No exception text leaks to the peer (detailed_errors is off).
        assert await peer.receive() == [4, "c1", "InternalError", "", {}]
        await peer.send([2, "c2", "Authorize", {}])
        assert await peer.receive() == [3, "c2", {"action": "Authorize"}]
    (record,) = [r for r in session_log.records if "failed" in r.getMessage()]
    assert record.exc_info is not None and isinstance(record.exc_info[1], ZeroDivisionError)


async def test_raise_handler_errors_fails_the_session_after_answering() -> None:
    router = Router()

    @router.on("Heartbeat")
    async def heartbeat(request: Any, ctx: CallContext) -> dict[str, Any]:
        raise ZeroDivisionError("bug")

    with pytest.raises(ZeroDivisionError):
        async with session_with_raw_peer(router=router, raise_handler_errors=True) as (_, peer):
            await peer.send([2, "c1", "Heartbeat", {}])
            assert (await peer.receive())[:3] == [4, "c1", "InternalError"]
            await anyio.sleep_forever()


async def test_invalid_response_from_a_handler_becomes_internal_error(session_log: Records) -> None:
    codec = RecordingCodec(reject={("Heartbeat", PayloadKind.RESPONSE)})
    router = Router()
    router.add("Heartbeat", echo)

    @router.on("Authorize")
    async def authorize(request: Any, ctx: CallContext) -> None:
        return None  # forgot to return: not a JSON object

    async with session_with_raw_peer(router=router, engine_options={"codec": codec}) as (_, peer):
        await peer.send([2, "c1", "Heartbeat", {}])
        expected = [4, "c1", "InternalError", "the handler's response failed validation", {}]
        assert await peer.receive() == expected
        await peer.send([2, "c2", "Authorize", {}])
        assert (await peer.receive())[:3] == [4, "c2", "InternalError"]
    assert any("response to Heartbeat (c1) is invalid" in m for m in session_log.messages())


async def test_no_reply() -> None:
    router = Router()

    @router.on("Heartbeat")
    async def heartbeat(request: Any, ctx: CallContext) -> NoReply:
        return NO_REPLY

    router.add("Authorize", echo)
    async with session_with_raw_peer(router=router) as (session, peer):
        await peer.send([2, "c1", "Heartbeat", {}])
        await peer.send([2, "c2", "Authorize", {}])
        assert await peer.receive() == [3, "c2", {"action": "Authorize"}]
        await wait_all_tasks_blocked()
        assert not session.connection.inbound_calls


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1"])
async def test_not_implemented_versus_not_supported(protocol: str) -> None:
    async with session_with_raw_peer(protocol, known_actions={"Reset"}) as (_, peer):
        await peer.send([2, "c1", "Reset", {}])
        assert (await peer.receive())[:3] == [4, "c1", "NotSupported"]
        await peer.send([2, "c2", "Frobnicate", {}])
        assert (await peer.receive())[:3] == [4, "c2", "NotImplemented"]


async def test_handlers_run_concurrently_up_to_the_bound_and_queue_beyond() -> None:
    running = 0
    peak = 0
    release = anyio.Event()
    router = Router()

    @router.on("Heartbeat")
    async def heartbeat(request: Any, ctx: CallContext) -> dict[str, Any]:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await release.wait()
        running -= 1
        return {}

    async with session_with_raw_peer(router=router, max_concurrent_handlers=3) as (_, peer):
        for n in range(5):
            await peer.send([2, f"c{n}", "Heartbeat", {}])
        await wait_all_tasks_blocked()
        assert (running, peak) == (3, 3)
        release.set()
        answered = {tuple((await peer.receive())[:2]) for _ in range(5)}
    assert answered == {(3, f"c{n}") for n in range(5)}
    assert peak == 3


async def test_a_shared_capacity_limiter_bounds_several_sessions() -> None:
    limiter = anyio.CapacityLimiter(1)
    release = anyio.Event()
    router = Router()

    @router.on("Heartbeat")
    async def heartbeat(request: Any, ctx: CallContext) -> dict[str, Any]:
        await release.wait()
        return {}

    async with (
        session_with_raw_peer(router=router, max_concurrent_handlers=limiter) as (_, peer1),
        session_with_raw_peer(router=router, max_concurrent_handlers=limiter) as (_, peer2),
    ):
        await peer1.send([2, "a", "Heartbeat", {}])
        await peer2.send([2, "b", "Heartbeat", {}])
        await wait_all_tasks_blocked()
        assert limiter.borrowed_tokens == 1
        assert limiter.statistics().tasks_waiting == 1
        release.set()
        assert (await peer1.receive())[:2] == [3, "a"]
        assert (await peer2.receive())[:2] == [3, "b"]


async def test_ordered_handlers_run_one_at_a_time_in_arrival_order() -> None:
    order: list[str] = []
    gates = {f"c{n}": anyio.Event() for n in range(4)}
    router = Router()

    @router.on("Heartbeat")
    async def heartbeat(request: Any, ctx: CallContext) -> dict[str, Any]:
        order.append(f"start {ctx.message_id}")
        await gates[ctx.message_id].wait()
        order.append(f"end {ctx.message_id}")
        return {}

    async with session_with_raw_peer(router=router, ordered_handlers=True) as (_, peer):
        for n in range(4):
            await peer.send([2, f"c{n}", "Heartbeat", {}])
        # Release in reverse: an ordered session still finishes them in arrival order.
        for n in reversed(range(4)):
            gates[f"c{n}"].set()
        answers = [(await peer.receive())[1] for _ in range(4)]
    assert answers == ["c0", "c1", "c2", "c3"]
    assert order == [f"{what} c{n}" for n in range(4) for what in ("start", "end")]


def test_typed_registration_is_checked_by_mypy() -> None:
    """mypy --strict runs over the tests with warn_unused_ignores: each ignore below must be needed.

    So this proves, statically, that a handler registered for a Request class must
    accept that class and return its response type (or a dict, or NO_REPLY).
    """
    router = Router()

    async def good(request: BootRequest, ctx: CallContext) -> BootResponse:
        return BootResponse(status="Accepted")

    async def good_dict(request: BootRequest, ctx: CallContext) -> dict[str, Any]:
        return {}

    async def wrong_request(request: Boot16Request, ctx: CallContext) -> BootResponse:
        return BootResponse(status="Accepted")

    async def wrong_response(request: BootRequest, ctx: CallContext) -> HeartbeatResponse:
        return HeartbeatResponse(current_time="now")

    router.add(BootRequest, good)
    router.add(BootRequest, good_dict, protocol="a")
    router.add(BootRequest, wrong_request, protocol="b")  # type: ignore[call-overload]
    router.on(BootRequest, protocol="c")(wrong_response)  # type: ignore[arg-type]
    router.add("BootNotification", wrong_response, protocol="d")  # untyped keys accept any handler


def test_unvalidated_actions_is_one_set_until_the_routes_change() -> None:
    """Sessions share it (and their codecs consult it): made once per protocol, again after a change."""
    router = Router()
    router.add("DataTransfer", echo, validate=False)
    first = router.unvalidated_actions("ocpp1.6")
    assert router.unvalidated_actions("ocpp1.6") is first and first == {"DataTransfer"}
    router.add("Reset", echo, validate=False)
    assert router.unvalidated_actions("ocpp1.6") == {"DataTransfer", "Reset"}
    router.remove("DataTransfer")
    assert router.unvalidated_actions("ocpp1.6") == {"Reset"}
    assert first == {"DataTransfer"}  # a set handed out before is never changed


async def test_a_frozen_unvalidated_set_must_hold_the_routers_opt_outs() -> None:
    """A session cannot add the router's opt-outs to an immutable set: it says so, up front."""
    router = Router()
    router.add("DataTransfer", echo, validate=False)
    with pytest.raises(ValueError, match=r"lacks the router's opt-outs \['DataTransfer'\]"):
        async with session_pair(csms_router=router, unvalidated_actions=frozenset()):
            pass  # pragma: no cover - the session is refused before it runs
    held = frozenset({"DataTransfer", "Reset"})
    async with session_pair(csms_router=router, unvalidated_actions=held) as (_, csms):
        assert csms.unvalidated_actions is held
