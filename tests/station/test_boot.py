"""The station's boot gate in its corners: triggered messages while Pending, SecurityError from a CSMS."""

from __future__ import annotations

from typing import Any, Literal

import anyio
import pytest

import ocpprpc
from ocpprpc import (
    Backoff,
    BootAnswered,
    CallContext,
    CallDropped,
    Connected,
    ConnectionLost,
    MemoryOutbox,
    OCPPError,
    Router,
    Station,
    TransactionRetry,
)
from ocpprpc._csms.guard import GuardedRouter
from ocpprpc.v16 import MessageTrigger, TriggerMessageRequest
from tests.faults.proxy import fault_proxy
from tests.station.helpers import NOW, EventLog, Recorder

pytestmark = pytest.mark.timeout(30)

BOOT = {"chargePointVendor": "V", "chargePointModel": "M"}
STATUS = {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
FAST = Backoff(base=0.02, cap=0.05, retry_first_connect=True)


def triggering_router(stations: list[Station]) -> Router:
    """A station's TriggerMessage handler: queue the requested message, answer Accepted."""
    router = Router()

    @router.on("TriggerMessage")
    def trigger(request: Any, ctx: CallContext) -> Any:
        (station,) = stations
        if request["requestedMessage"] == "BootNotification":
            station.call_triggered(ctx, "BootNotification")  # the station's own boot payload
        else:
            station.call_triggered(ctx, "StatusNotification", STATUS)
        return {"status": "Accepted"}

    return router


async def test_a_pending_station_sends_only_what_the_csms_triggers_and_after_the_trigger_answer() -> None:
    rec = Recorder()
    rec.boot_answers = ["Pending", "Accepted"]  # Pending with interval 0: the station waits 60 s
    wire: list[tuple[str, str]] = []

    def exchange(identity: str, direction: Literal["in", "out"], text: str) -> None:
        wire.append((direction, text))

    stations: list[Station] = []
    async with ocpprpc.serve(router=rec.router, on_message=exchange) as server:
        url = f"ws://127.0.0.1:{server.port}/ocpp"
        log = EventLog()
        station = Station(
            url, "CP1", boot=BOOT, boot_retry_interval=60, router=triggering_router(stations), on_event=log
        )
        stations.append(station)
        async with station, anyio.create_task_group() as tg:
            await log.wait_for(BootAnswered)
            assert station.boot_status == "Pending" and not station.booted
            heartbeat = anyio.Event()

            async def beat() -> None:
                await station.call("Heartbeat", {})
                heartbeat.set()

            tg.start_soon(beat)
            await anyio.wait_all_tasks_blocked()
            csms = server.clients["CP1"]
            trigger = {"requestedMessage": "StatusNotification", "connectorId": 1}
            assert await csms.call("TriggerMessage", trigger) == {"status": "Accepted"}
            await rec.wait_for(2)
            # The triggered message went out while Pending; the application's Heartbeat did not.
            assert rec.actions() == ["BootNotification", "StatusNotification"]
            assert not station.booted and not heartbeat.is_set()
            # A triggered BootNotification is a boot: accepted, the gate opens and the Heartbeat leaves.
            assert await csms.call("TriggerMessage", {"requestedMessage": "BootNotification"})
            await heartbeat.wait()
            assert station.booted and station.heartbeat_interval == 300
    assert rec.actions() == ["BootNotification", "StatusNotification", "BootNotification", "Heartbeat"]
    assert [event.status for event in log.of(BootAnswered)] == ["Pending", "Accepted"]
    # OCPP 1.6: the TriggerMessage.conf reaches the CSMS before the message it asked for.
    received = [text for direction, text in wire if direction == "in"]
    assert received[1].startswith("[3,") and '"StatusNotification"' in received[2]
    assert received[3].startswith("[3,") and '"BootNotification"' in received[4]


async def test_a_triggered_call_ends_with_its_connection_and_a_stale_context_is_refused() -> None:
    rec = Recorder()
    contexts: list[CallContext] = []
    queued: list[ocpprpc.QueuedCall[Any]] = []
    router = Router()

    @router.on("TriggerMessage")
    def never_answered(request: Any, ctx: CallContext) -> Any:
        contexts.append(ctx)
        queued.append(station.call_triggered(ctx, "StatusNotification", STATUS))
        return ocpprpc.NO_REPLY  # its answer is never written, so the triggered call waits

    async with ocpprpc.serve(router=rec.router) as server, fault_proxy(server.port) as proxy:
        log = EventLog()
        backoff = Backoff(base=0.02, cap=0.05)
        station = Station(proxy.url, "CP1", reconnect=backoff, router=router, on_event=log)
        async with station:
            csms = server.clients["CP1"]
            with pytest.raises(ocpprpc.CallTimeout):
                await csms.call("TriggerMessage", {"requestedMessage": "StatusNotification"}, timeout=0.2)
            assert station.outbox_length == 1 and not queued[0].done
            proxy.drop()
            dropped = await log.wait_for(CallDropped)
            assert dropped.message_id == queued[0].message_id
            with pytest.raises(ConnectionLost):
                await queued[0].answer()
            await log.wait_for(Connected, 2)
            with pytest.raises(ConnectionLost, match="triggered"):
                station.call_triggered(contexts[0], "StatusNotification", STATUS)
    assert "StatusNotification" not in rec.actions()


async def test_after_the_boot_a_triggered_call_follows_its_answer_and_returns_the_csms_answer() -> None:
    rec = Recorder()
    stations: list[Station] = []
    async with ocpprpc.serve(router=rec.router) as server:
        url = f"ws://127.0.0.1:{server.port}/ocpp"
        station = Station(url, "CP1", boot=BOOT, router=triggering_router(stations))
        stations.append(station)
        async with station:
            assert await station.call("Heartbeat", {})
            trigger = {"requestedMessage": "StatusNotification"}
            assert await server.clients["CP1"].call("TriggerMessage", trigger) == {"status": "Accepted"}
            await rec.wait_for(3)
    assert rec.actions() == ["BootNotification", "Heartbeat", "StatusNotification"]


async def test_a_security_error_after_a_csms_restart_boots_again_and_the_call_is_not_lost() -> None:
    rec = Recorder()
    async with ocpprpc.serve() as probe:
        port = probe.port
    url = f"ws://127.0.0.1:{port}/ocpp"
    log = EventLog()
    async with Station(url, "CP1", boot=BOOT, reconnect=FAST, on_event=log) as station:
        async with ocpprpc.serve(port=port, router=rec.router, require_boot=True, boot_registry={}):
            assert await station.call("Heartbeat", {})
        # The CSMS restarts and has forgotten the boot (a fresh registry); the station only reconnects.
        async with ocpprpc.serve(port=port, router=rec.router, require_boot=True, boot_registry={}):
            await log.wait_for(Connected, 2)
            assert station.booted  # a reconnect is not a reboot: the station still thinks it is accepted
            answer = await station.call("Heartbeat", {}, message_id="hb-2")
            assert answer["currentTime"] == NOW
            assert station.booted and station.boot_status == "Accepted"
    # The refused Heartbeat never reached the handler; it went again, under its id, after the new boot.
    assert rec.actions() == ["BootNotification", "Heartbeat", "BootNotification", "Heartbeat"]
    assert rec.handled[-1][1] == "hb-2"
    assert [event.status for event in log.of(BootAnswered)] == ["Accepted", "Accepted"]


async def test_a_durable_message_refused_with_security_error_does_not_spend_an_attempt() -> None:
    rec = Recorder()
    registry: dict[str, bool] = {}
    async with ocpprpc.serve(router=rec.router, require_boot=True, boot_registry=registry) as server:
        url = f"ws://127.0.0.1:{server.port}/ocpp"
        retry = TransactionRetry(attempts=1, interval=0)  # one failed send would drop it
        async with Station(url, "CP1", boot=BOOT, outbox=MemoryOutbox(), transaction_retry=retry) as station:
            assert await station.call("Heartbeat", {})
            registry.clear()  # the CSMS forgot the station booted
            start = {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": NOW}
            answer = await station.call("StartTransaction", start, message_id="start-1")
            assert answer["transactionId"] == 1
    assert rec.actions() == ["BootNotification", "Heartbeat", "BootNotification", "StartTransaction"]


async def test_a_call_refused_with_security_error_again_after_booting_fails_without_a_boot_loop() -> None:
    rec = Recorder()
    original = rec._any

    async def refuse_heartbeats(request: Any, ctx: CallContext) -> Any:
        answer = await original(request, ctx)
        if ctx.action == "Heartbeat":
            raise OCPPError(ocpprpc.ErrorCode.SECURITY_ERROR, "not for you")
        return answer

    rec.router.remove_any()
    rec.router.add_any(refuse_heartbeats)
    async with ocpprpc.serve(router=rec.router) as server:
        url = f"ws://127.0.0.1:{server.port}/ocpp"
        async with Station(url, "CP1", boot=BOOT) as station:
            with pytest.raises(OCPPError) as info:
                await station.call("Heartbeat", {})
            assert info.value.code is ocpprpc.ErrorCode.SECURITY_ERROR
            assert station.booted
        # Without a boot payload the station cannot boot again: the error is the caller's at once.
        async with Station(url, "CP2") as station:
            with pytest.raises(OCPPError):
                await station.call("Heartbeat", {})
    assert rec.actions() == ["BootNotification", "Heartbeat", "BootNotification", "Heartbeat", "Heartbeat"]


async def test_a_call_triggered_after_the_trigger_was_answered_goes_at_once() -> None:
    rec = Recorder()
    rec.boot_answers = ["Pending"]  # and Accepted after the 60 s wait: never, in this test
    contexts: list[CallContext] = []
    router = Router()

    @router.on("TriggerMessage")
    def remember(request: Any, ctx: CallContext) -> Any:
        contexts.append(ctx)
        return {"status": "Accepted"}

    async with ocpprpc.serve(router=rec.router) as server:
        url = f"ws://127.0.0.1:{server.port}/ocpp"
        log = EventLog()
        async with Station(
            url, "CP1", boot=BOOT, boot_retry_interval=60, router=router, on_event=log
        ) as station:
            await log.wait_for(BootAnswered)
            await server.clients["CP1"].call("TriggerMessage", {"requestedMessage": "StatusNotification"})
            # The application sends the triggered message later (from its own task): it still goes.
            queued = station.call_triggered(contexts[0], "StatusNotification", STATUS)
            assert await queued.answer() == {}
            assert not station.booted
    assert rec.actions() == ["BootNotification", "StatusNotification"]


async def test_the_csms_boot_gate_lets_through_what_it_triggered_until_the_next_boot() -> None:
    rec = Recorder()
    rec.boot_answers = ["Pending", "Accepted"]
    answers = {
        "StatusNotification": "Accepted",
        "MeterValues": "Rejected",
        "SignChargePointCertificate": "Accepted",
    }
    station_router = Router()

    @station_router.on("TriggerMessage")
    @station_router.on("ExtendedTriggerMessage")
    def trigger(request: Any, ctx: CallContext) -> Any:
        return {"status": answers[request["requestedMessage"]]}

    meter = {"connectorId": 1, "meterValue": [{"timestamp": NOW, "sampledValue": [{"value": "1"}]}]}
    async with ocpprpc.serve(router=rec.router, require_boot=True, boot_registry={}) as server:
        url = f"ws://127.0.0.1:{server.port}/ocpp"
        # A bare session (no station-side gate), so the CSMS's gate is what is tested.
        async with ocpprpc.connect(url, "CP1", router=station_router) as station:
            assert (await station.call("BootNotification", BOOT))["status"] == "Pending"
            with pytest.raises(ocpprpc.OCPPError) as refused:
                await station.call("StatusNotification", STATUS)
            assert refused.value.code is ocpprpc.ErrorCode.SECURITY_ERROR
            csms = server.clients["CP1"]
            await csms.call("TriggerMessage", {"requestedMessage": "StatusNotification"})
            # One trigger may bring a message per connector: both pass.
            await station.call("StatusNotification", STATUS)
            await station.call("StatusNotification", {**STATUS, "connectorId": 2})
            # A trigger the station rejected lets nothing through.
            await csms.call("TriggerMessage", {"requestedMessage": "MeterValues"})
            with pytest.raises(ocpprpc.OCPPError):
                await station.call("MeterValues", meter)
            # 1.6 security extension: SignChargePointCertificate is answered with SignCertificate.
            await csms.call("ExtendedTriggerMessage", {"requestedMessage": "SignChargePointCertificate"})
            await station.call(
                "SignCertificate", {"csr": "-----BEGIN CERTIFICATE REQUEST-----"}, validate=False
            )
            # The next boot withdraws what was triggered; Accepted opens everything.
            assert (await station.call("BootNotification", BOOT))["status"] == "Accepted"
            await station.call("MeterValues", meter)
    assert rec.actions() == [
        "BootNotification",
        "StatusNotification",
        "StatusNotification",
        "SignCertificate",
        "BootNotification",
        "MeterValues",
    ]


async def test_a_pending_station_is_refused_what_was_triggered_before_its_new_boot() -> None:
    rec = Recorder()
    rec.boot_answers = ["Pending", "Pending"]
    station_router = Router()

    @station_router.on("TriggerMessage")
    def trigger(request: Any, ctx: CallContext) -> Any:
        return {"status": "Accepted"}

    async with ocpprpc.serve(router=rec.router, require_boot=True, boot_registry={}) as server:
        url = f"ws://127.0.0.1:{server.port}/ocpp"
        async with ocpprpc.connect(url, "CP1", router=station_router) as station:
            await station.call("BootNotification", BOOT)
            await server.clients["CP1"].call("TriggerMessage", {"requestedMessage": "StatusNotification"})
            await station.call("StatusNotification", STATUS)
            await station.call("BootNotification", BOOT)  # Pending again: the allowance is gone
            with pytest.raises(ocpprpc.OCPPError) as refused:
                await station.call("StatusNotification", STATUS)
            assert refused.value.code is ocpprpc.ErrorCode.SECURITY_ERROR


def test_the_trigger_allowance_ignores_malformed_and_unrelated_calls() -> None:
    guard = GuardedRouter(Router(), require_boot=True)
    watch = guard.watch("CP1")
    # Not a trigger, no requestedMessage, a non-string one, a payload that is not an object: nothing allowed.
    for action, payload in [
        ("Reset", {"type": "Soft"}),
        ("TriggerMessage", {}),
        ("TriggerMessage", {"requestedMessage": 7}),
        ("TriggerMessage", ["StatusNotification"]),
        ("TriggerMessage", None),
    ]:
        assert watch(action, payload) is None
    assert guard._triggered.get("CP1", {}) == {}
    # A typed request is read by its wire names; an answer that is not an object withdraws it.
    done = watch("TriggerMessage", TriggerMessageRequest(requested_message=MessageTrigger.HEARTBEAT))
    assert done is not None and guard._triggered["CP1"] == {"Heartbeat": 1}
    done("garbage")
    assert guard._triggered["CP1"] == {}
