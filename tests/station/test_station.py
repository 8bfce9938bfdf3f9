"""The reconnecting station over real loopback sockets, through a fault-injecting proxy."""

from __future__ import annotations

import itertools
from typing import Any

import anyio
import pytest

import ocpprpc
from ocpprpc import (
    Backoff,
    CallContext,
    CallDropped,
    Connected,
    ConnectionLost,
    Disconnected,
    GaveUp,
    HandshakeRejected,
    OutboxFull,
    Reconnecting,
    Reject,
    Retry,
    Router,
    Station,
    StationState,
)
from tests.faults.proxy import fault_proxy
from tests.station.helpers import EventLog, Recorder

pytestmark = pytest.mark.timeout(30)

FAST = Backoff(base=0.02, cap=0.05)


async def test_station_survives_a_dropped_link_with_its_router_data_and_protocol() -> None:
    rec = Recorder()
    station_router = Router()

    @station_router.on("Reset")
    async def reset(request: Any, ctx: CallContext) -> Any:
        ctx.data["resets"] = ctx.data.get("resets", 0) + 1
        return {"status": "Accepted"}

    async with (
        ocpprpc.serve(router=rec.router, protocols=["ocpp2.0.1", "ocpp1.6"]) as server,
        fault_proxy(server.port) as proxy,
    ):
        log = EventLog()
        async with Station(
            proxy.url,
            "CP1",
            protocols=["ocpp1.6", "ocpp2.0.1"],
            reconnect=FAST,
            router=station_router,
            on_event=log,
        ) as station:
            assert station.state is StationState.OPEN
            assert station.protocol == "ocpp1.6"
            data = station.data
            await server.clients["CP1"].call("Reset", {"type": "Soft"})
            proxy.drop()
            disconnected = await log.wait_for(Disconnected)
            assert disconnected.reason.code == 1006
            await log.wait_for(Connected, 2)
            assert station.state is StationState.OPEN
            assert await station.call("Heartbeat", {}) == {"currentTime": "2024-01-01T00:00:00Z"}
            await server.clients["CP1"].call("Reset", {"type": "Soft"})
            assert station.data is data and data["resets"] == 2
            assert station.connections == 2
            # The pinned protocol: the reconnect offered only what the first connection spoke.
            assert server.clients["CP1"].protocol == "ocpp1.6"
            reconnecting = log.of(Reconnecting)[0]
            assert reconnecting.attempt == 1 and 0 <= reconnecting.delay <= FAST.base
        assert station.state.value == "closed"


async def test_calls_made_offline_wait_in_the_outbox_and_leave_in_order() -> None:
    rec = Recorder()
    async with ocpprpc.serve(router=rec.router) as server, fault_proxy(server.port) as proxy:
        log = EventLog()
        async with Station(proxy.url, "CP1", reconnect=FAST, on_event=log) as station:
            proxy.refuse = True
            proxy.drop()
            await log.wait_for(Reconnecting)
            answers: list[Any] = []

            async def call(n: int) -> None:
                answers.append((n, await station.call("DataTransfer", {"vendorId": "v", "data": str(n)})))

            async with anyio.create_task_group() as tg:
                for n in range(5):
                    tg.start_soon(call, n)
                    await anyio.wait_all_tasks_blocked()
                assert station.outbox_length == 5 and station.session is None
                proxy.refuse = False
            assert [payload["data"] for action, _, payload in rec.handled] == ["0", "1", "2", "3", "4"]
            assert sorted(n for n, _ in answers) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("policy", ["reject", "drop_oldest"])
async def test_a_full_outbox_rejects_or_drops_the_oldest_never_silently(policy: str) -> None:
    rec = Recorder()
    async with ocpprpc.serve(router=rec.router) as server, fault_proxy(server.port) as proxy:
        log = EventLog()
        async with Station(
            proxy.url, "CP1", reconnect=FAST, on_event=log, outbox_size=2, outbox_full=policy
        ) as station:
            proxy.refuse = True
            proxy.drop()
            await log.wait_for(Reconnecting)
            outcomes: dict[int, Any] = {}

            async def call(n: int) -> None:
                try:
                    outcomes[n] = await station.call("Heartbeat", {})
                except OutboxFull as exc:
                    outcomes[n] = exc

            async with anyio.create_task_group() as tg:
                for n in range(3):
                    tg.start_soon(call, n)
                    await anyio.wait_all_tasks_blocked()
                proxy.refuse = False
            failed = [n for n, outcome in outcomes.items() if isinstance(outcome, OutboxFull)]
            if policy == "reject":
                assert failed == [2] and not outcomes[2].dropped
                assert not log.of(CallDropped)
            else:
                assert failed == [0] and outcomes[0].dropped
                assert [event.message_id for event in log.of(CallDropped)] == [outcomes[0].message_id]
            assert len(rec.handled) == 2


async def test_a_call_in_flight_when_the_link_drops_fails_at_once() -> None:
    router = Router()
    reached = anyio.Event()

    @router.on("Heartbeat")
    async def slow(request: Any, ctx: CallContext) -> Any:
        reached.set()
        await anyio.sleep_forever()

    async with (
        ocpprpc.serve(router=router) as server,
        fault_proxy(server.port) as proxy,
        Station(proxy.url, "CP1", reconnect=FAST, call_timeout=20) as station,
    ):

        async def cut() -> None:
            await reached.wait()
            proxy.drop()

        async with anyio.create_task_group() as tg:
            tg.start_soon(cut)
            started = anyio.current_time()
            with pytest.raises(ConnectionLost):
                await station.call("Heartbeat", {})
            assert anyio.current_time() - started < 5  # at once, not at the 20 s timeout


async def test_a_call_in_flight_is_resent_under_its_id_and_answered_once() -> None:
    rec = Recorder()
    retry = Retry(attempts=3, delay=0.01)
    async with (
        ocpprpc.serve(router=rec.router, replay_cache=100) as server,
        fault_proxy(server.port) as proxy,
        Station(proxy.url, "CP1", reconnect=FAST, retry=retry) as station,
    ):
        # The CSMS gets the CALL; its answer vanishes; then the link drops.
        proxy.blackhole(to_server=False)

        async def cut() -> None:
            await rec.wait_for(1)
            proxy.blackhole(False)
            proxy.drop()

        async with anyio.create_task_group() as tg:
            tg.start_soon(cut)
            answer = await station.call("Heartbeat", {}, message_id="idem-1")
        assert answer == {"currentTime": "2024-01-01T00:00:00Z"}
        assert [mid for _, mid, _ in rec.handled] == ["idem-1"]  # the handler ran once
        assert server.replay_cache is not None and server.replay_cache.replays == 1


async def test_a_timed_out_call_is_retried_under_the_same_message_id() -> None:
    router = Router()
    seen: list[str] = []

    @router.on("Heartbeat")
    async def first_unanswered(request: Any, ctx: CallContext) -> Any:
        seen.append(ctx.message_id)
        return ocpprpc.NO_REPLY if len(seen) == 1 else {"currentTime": "2024-01-01T00:00:00Z"}

    async with ocpprpc.serve(router=router) as server:
        url = f"ws://127.0.0.1:{server.port}/ocpp"
        async with Station(url, "CP1", reconnect=FAST) as station:
            answer = await station.call(
                "Heartbeat", {}, timeout=0.1, message_id="mine-1", retry=Retry(attempts=1, delay=0.01)
            )
            assert answer["currentTime"]
            assert seen == ["mine-1", "mine-1"]


async def test_401_403_404_stop_the_retries_and_say_why() -> None:
    async def refuse(request: ocpprpc.StationRequest) -> Reject:
        return Reject(404 if request.identity == "unknown" else 401)

    async with ocpprpc.serve(auth=refuse) as server:
        url = f"ws://127.0.0.1:{server.port}/ocpp"
        with pytest.raises(HandshakeRejected) as info:
            async with Station(url, "CP1", reconnect=FAST):
                pass
        assert info.value.status == 401
        log = EventLog()
        async with Station(
            url, "unknown", reconnect=Backoff(base=0.01, retry_first_connect=True), on_event=log
        ) as station:
            gave_up = await log.wait_for(GaveUp)
            assert "404" in gave_up.reason and "unknown station" in gave_up.reason
            assert station.state is StationState.CLOSED
            assert len(log.of(ocpprpc.Connecting)) == 1  # no retry
            with pytest.raises(ConnectionLost, match="gave up"):
                await station.call("Heartbeat", {})


async def test_max_attempts_then_give_up() -> None:
    async with ocpprpc.serve() as server:
        port = server.port
    log = EventLog()  # the server is gone: nothing listens on the port now
    async with Station(
        f"ws://127.0.0.1:{port}/ocpp",
        "CP1",
        reconnect=Backoff(base=0.01, cap=0.02, max_attempts=3, retry_first_connect=True),
        on_event=log,
    ) as station:
        gave_up = await log.wait_for(GaveUp)
        assert "3 reconnect attempt(s)" in gave_up.reason
        assert [event.attempt for event in log.of(Reconnecting)] == [1, 2, 3]
        assert isinstance(gave_up.error, OSError)
        assert station.state is StationState.CLOSED


async def test_without_retry_first_connect_a_failed_first_connect_raises() -> None:
    async with ocpprpc.serve() as server:
        port = server.port
    with pytest.raises(OSError):
        async with Station(f"ws://127.0.0.1:{port}/ocpp", "CP1", reconnect=FAST):
            pass


async def test_event_stream_and_reconnect_after_a_server_restart_on_the_same_port() -> None:
    rec = Recorder()
    async with ocpprpc.serve() as probe:
        port = probe.port
    url = f"ws://127.0.0.1:{port}/ocpp"
    backoff = Backoff(base=0.05, cap=0.2, retry_first_connect=True)
    async with Station(url, "CP1", reconnect=backoff) as station, station.events() as events:

        async def next_of(kind: type[Any]) -> Any:
            async for event in events:
                if isinstance(event, kind):
                    return event
            raise AssertionError("the event stream ended")

        async with ocpprpc.serve(port=port, router=rec.router):
            await next_of(Connected)
            assert await station.call("Heartbeat", {})
        # The CSMS shut down (1001, going away); start it again on the same port.
        assert (await next_of(Disconnected)).reason.code == 1001
        async with ocpprpc.serve(port=port, router=rec.router):
            await next_of(Connected)
            assert await station.call("Heartbeat", {})
        assert rec.actions() == ["Heartbeat", "Heartbeat"]


async def test_station_takes_every_session_option_connect_takes() -> None:
    async with ocpprpc.serve() as server:
        url = f"ws://127.0.0.1:{server.port}/ocpp"
        log = EventLog()
        async with Station(
            url,
            "CP1",
            reconnect=FAST,
            on_event=log,
            max_bad_messages=2,
            session_options={"ordered_handlers": True, "close_timeout": 1.5},
        ) as station:
            session = station.session
            assert session is not None
            assert session.ordered_handlers and session.close_timeout == 1.5
            assert session.connection.max_bad_messages == 2
            # A CSMS that sends garbage: the station closes with 1002 after two, and reconnects.
            csms = server.clients["CP1"]
            await csms.stream.send("not OCPP")
            await csms.stream.send("not OCPP either")
            disconnected = await log.wait_for(Disconnected)
            assert disconnected.reason.code == 1002
            await log.wait_for(Connected, 2)
            assert station.session is not None and station.session.connection.max_bad_messages == 2
        # Engine options by name in session_options flow too.
        async with Station(url, "CP2", session_options={"max_bad_messages": 3}) as station:
            assert station.session is not None and station.session.connection.max_bad_messages == 3
    # The station's own parameters are refused there.
    with pytest.raises(ValueError, match="call_timeout, data"):
        Station(url, "CP1", session_options={"data": {}, "call_timeout": 1})


async def test_closing_the_station_publishes_disconnected_then_closed_last() -> None:
    async with ocpprpc.serve() as server:
        url = f"ws://127.0.0.1:{server.port}/ocpp"
        log = EventLog()
        async with Station(url, "CP1", on_event=log) as station:
            events = station.events()
        with events:
            streamed = [type(event).__name__ async for event in events]
        kinds = [type(event).__name__ for _, event in log.events]
        assert kinds == ["Connecting", "Connected", "Disconnected", "Closed"]
        assert streamed == ["Disconnected", "Closed"]  # subscribed after Connected; ends after Closed
        assert log.of(Disconnected)[0].reason.code == 1000
        assert log.of(ocpprpc.Closed)[0].reason == "the station is closed"
        # A stream asked for once the station is closed ends at once (rather than waiting forever).
        async with station.events() as late:
            assert [event async for event in late] == []


async def test_a_station_that_gives_up_publishes_gave_up_then_closed() -> None:
    async with ocpprpc.serve() as server:
        url = f"ws://127.0.0.1:{server.port}/ocpp"
        log = EventLog()
        async with Station(url, "CP1", reconnect=None, on_event=log) as station:
            await server.clients["CP1"].close()
            await log.wait_for(ocpprpc.Closed)
            assert station.state is StationState.CLOSED
    kinds = [type(event).__name__ for _, event in log.events]
    assert kinds == ["Connecting", "Connected", "Disconnected", "GaveUp", "Closed"]
    assert "reconnecting is off" in log.of(ocpprpc.Closed)[0].reason


async def test_send_interval_throttles_the_flush_after_a_reconnect() -> None:
    router = Router()
    arrived: list[float] = []

    @router.on("Heartbeat")
    def beat(request: Any, ctx: CallContext) -> Any:
        arrived.append(anyio.current_time())
        return {"currentTime": "2024-01-01T00:00:00Z"}

    async with ocpprpc.serve(router=router) as server, fault_proxy(server.port) as proxy:
        log = EventLog()
        async with Station(proxy.url, "CP1", reconnect=FAST, on_event=log, send_interval=0.1) as station:
            proxy.refuse = True
            proxy.drop()
            await log.wait_for(Reconnecting)
            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    tg.start_soon(station.call, "Heartbeat", {})
                await anyio.wait_all_tasks_blocked()
                assert station.outbox_length == 4
                proxy.refuse = False
    assert len(arrived) == 4
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrived)]
    assert all(gap >= 0.09 for gap in gaps), gaps  # never faster than one call per send_interval


async def test_a_csms_that_closes_at_once_makes_the_waits_grow_until_a_connection_lasts() -> None:
    closing = True
    lasting = anyio.Event()

    async def on_connect(session: ocpprpc.Session) -> None:
        if closing:
            await session.close(1000, "accepted, then closed at once")
        else:
            lasting.set()

    log = EventLog()
    async with ocpprpc.serve(on_connect=on_connect) as server:
        backoff = Backoff(base=0.001, cap=0.05, stable_after=0.3, retry_first_connect=True)
        async with Station(f"ws://127.0.0.1:{server.port}/ocpp", "CP1", reconnect=backoff, on_event=log):
            await log.wait_for(Reconnecting, 4)
            # Each short-lived connection counts as a failed attempt: the ceiling keeps growing.
            assert [event.attempt for event in log.of(Reconnecting)][:4] == [1, 2, 3, 4]
            assert len(log.of(Connected)) >= 4
            closing = False
            await lasting.wait()
            await anyio.sleep(0.4)  # longer than stable_after: this connection counts as recovered
            reconnects = len(log.of(Reconnecting))
            await server.clients["CP1"].close(1001, "restart")
            after = await log.wait_for(Reconnecting, reconnects + 1)
            assert after.attempt == 1


def test_stable_after_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="stable_after"):
        Backoff(stable_after=-1)
