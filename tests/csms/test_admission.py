"""Who gets in: the auth callback's decisions, and a second connection for an identity already connected."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import anyio.abc
import pytest

import ocpprpc
from ocpprpc import (
    Accept,
    CallContext,
    DuplicatePolicy,
    HandshakeRejected,
    Reject,
    Router,
    Session,
    StationRequest,
)
from tests.faults.proxy import fault_proxy

from .helpers import PROMPT, eventually, ws_url

pytestmark = pytest.mark.timeout(20)


def csms_router() -> Router:
    router = Router()

    @router.on("DataTransfer")
    async def whoami(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        return {"status": "Accepted", "data": f"{ctx.identity} {ctx.protocol} {sorted(ctx.data.items())}"}

    return router


def station_router(name: str) -> Router:
    router = Router()

    @router.on("DataTransfer")
    async def whoami(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        return {"status": "Accepted", "data": name}

    return router


def transfer() -> dict[str, Any]:
    return {"vendorId": "test"}


async def test_accept_chooses_the_protocol_and_attaches_session_data() -> None:
    async def auth(request: StationRequest) -> Accept:
        assert request.proposed_subprotocols == ["ocpp2.1", "ocpp2.0.1", "ocpp1.6"]
        assert request.subprotocol == "ocpp2.1"  # the station's preference, by default
        assert request.query == {"site": "depot 4"}
        assert request.header("X-Fleet") == "blue"
        return Accept(protocol="ocpp2.0.1", data={"tenant": request.query["site"]})

    async with (
        ocpprpc.serve(router=csms_router(), auth=auth) as server,
        ocpprpc.connect(
            ws_url(server),
            "CP1",
            protocols=["ocpp2.1", "ocpp2.0.1", "ocpp1.6"],
            query={"site": "depot 4"},
            headers={"X-Fleet": "blue"},
        ) as station,
    ):
        assert station.protocol == "ocpp2.0.1"
        answer = await station.call("DataTransfer", transfer())
        assert answer["data"] == "CP1 ocpp2.0.1 [('tenant', 'depot 4')]"
        assert server.clients["CP1"].data == {"tenant": "depot 4"}
        assert server.clients["CP1"].protocol == "ocpp2.0.1"


async def test_reject_answers_the_chosen_status() -> None:
    async def auth(request: StationRequest) -> Reject | None:
        if request.identity == "BANNED":
            return Reject(403, "this station is banned")
        return None  # None accepts

    async with ocpprpc.serve(auth=auth) as server:
        with pytest.raises(HandshakeRejected) as rejected:
            async with ocpprpc.connect(ws_url(server), "BANNED"):
                pass
        assert rejected.value.status == 403
        assert rejected.value.body == b"this station is banned"
        assert "403" in str(rejected.value)
        assert not server.clients
        async with ocpprpc.connect(ws_url(server), "WELCOME"):
            await eventually(lambda: "WELCOME" in server.clients)


async def test_an_auth_callback_that_raises_gives_500_and_the_server_carries_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def auth(request: StationRequest) -> Accept:
        if request.identity == "BUG":
            raise RuntimeError("database down")
        return Accept()

    with caplog.at_level(logging.ERROR, logger="ocpprpc.server"):
        async with ocpprpc.serve(auth=auth, router=csms_router()) as server:
            for _ in range(2):
                with pytest.raises(HandshakeRejected) as failed:
                    async with ocpprpc.connect(ws_url(server), "BUG"):
                        pass
                assert failed.value.status == 500
            async with ocpprpc.connect(ws_url(server), "OK") as station:
                assert (await station.call("DataTransfer", transfer()))["status"] == "Accepted"
    assert any("database down" in str(record.exc_info[1]) for record in caplog.records if record.exc_info)


async def test_accepting_a_protocol_the_station_did_not_offer_is_an_application_error() -> None:
    async def auth(request: StationRequest) -> Accept:
        return Accept(protocol="ocpp2.1")

    async with ocpprpc.serve(auth=auth) as server:
        with pytest.raises(HandshakeRejected) as refused:
            async with ocpprpc.connect(ws_url(server), "CP1", protocols=["ocpp1.6"]):
                pass
        assert refused.value.status == 500
        assert not server.clients


async def test_a_duplicate_identity_evicts_the_old_connection() -> None:
    admitted: list[Session] = []

    async def on_connect(session: Session) -> None:
        admitted.append(session)

    async with (
        ocpprpc.serve(on_connect=on_connect, duplicate=DuplicatePolicy.EVICT) as server,
        ocpprpc.connect(ws_url(server), "CP1", router=station_router("old")) as old,
    ):
        await eventually(lambda: len(admitted) == 1)
        async with ocpprpc.connect(ws_url(server), "CP1", router=station_router("new")) as new:
            with anyio.fail_after(PROMPT):
                await old.closed.wait()
            assert old.close_reason is not None
            assert old.close_reason.code == 1008
            assert old.close_reason.by_peer
            await eventually(lambda: len(admitted) == 2)
            assert server.clients["CP1"] is admitted[1]
            assert admitted[0].closed.is_set()
            answer = await server.clients["CP1"].call("DataTransfer", transfer())
            assert answer["data"] == "new"
            assert new.close_reason is None
        await eventually(lambda: not server.clients)


async def test_a_duplicate_identity_can_be_refused() -> None:
    async with (
        ocpprpc.serve(duplicate="refuse") as server,
        ocpprpc.connect(ws_url(server), "CP1", router=station_router("first")) as first,
    ):
        await eventually(lambda: "CP1" in server.clients)
        with pytest.raises(HandshakeRejected) as refused:
            async with ocpprpc.connect(ws_url(server), "CP1"):
                pass
        assert refused.value.status == 409
        answer = await server.clients["CP1"].call("DataTransfer", transfer())
        assert answer["data"] == "first"
        assert first.close_reason is None


async def test_a_hanging_auth_callback_is_answered_503_within_the_handshake_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hanging = anyio.Event()

    async def auth(request: StationRequest) -> Accept:
        if request.identity == "HANG":
            hanging.set()
            await anyio.sleep_forever()  # a database that never answers
        return Accept()

    refused: list[HandshakeRejected] = []

    async def hung_station(url: str) -> None:
        with pytest.raises(HandshakeRejected) as info:
            async with ocpprpc.connect(url, "HANG", password="s3cret-pw"):
                pass
        refused.append(info.value)

    with caplog.at_level(logging.WARNING, logger="ocpprpc.server"):
        async with ocpprpc.serve(router=csms_router(), auth=auth, handshake_timeout=1.0) as server:
            async with anyio.create_task_group() as tg:
                tg.start_soon(hung_station, ws_url(server))
                with anyio.fail_after(PROMPT):
                    await hanging.wait()
                    # Another station is admitted and served while the callback hangs.
                    async with ocpprpc.connect(ws_url(server), "OK") as station:
                        assert (await station.call("DataTransfer", transfer()))["status"] == "Accepted"
                with anyio.fail_after(PROMPT):  # the hung one is answered, not left waiting
                    while not refused:  # noqa: ASYNC110 (the task reports by appending)
                        await anyio.sleep(0.01)
            assert refused[0].status == 503
            assert b"timed out" in refused[0].body
            assert "HANG" not in server.clients
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert any("'HANG'" in record.getMessage() for record in warnings)
    assert not any("s3cret-pw" in record.getMessage() for record in caplog.records)


async def test_simultaneous_connections_for_one_identity_leave_exactly_one_session() -> None:
    count = 20
    admitted: list[Session] = []
    stations: dict[int, ocpprpc.Session] = {}
    leave = anyio.Event()

    async def on_connect(session: Session) -> None:
        admitted.append(session)

    async def station(url: str, n: int) -> None:
        async with ocpprpc.connect(url, "CP1", router=station_router(str(n))) as session:
            stations[n] = session
            await leave.wait()

    async with ocpprpc.serve(on_connect=on_connect) as server, anyio.create_task_group() as tg:
        for n in range(count):
            tg.start_soon(station, ws_url(server), n)
        await eventually(lambda: len(stations) == count and len(admitted) == count)
        await eventually(lambda: sum(not session.closed.is_set() for session in admitted) == 1)
        # Every evicted station was told why (1008), on both ends; one station is left.
        await eventually(lambda: sum(session.closed.is_set() for session in stations.values()) == count - 1)
        survivors = [n for n, session in stations.items() if not session.closed.is_set()]
        assert len(survivors) == 1
        for n, session in stations.items():
            if n != survivors[0]:
                assert session.close_reason is not None and session.close_reason.code == 1008, n
        assert list(server.clients) == ["CP1"]
        current = server.clients["CP1"]
        assert not current.closed.is_set()
        assert [session for session in admitted if not session.closed.is_set()] == [current]
        answer = await current.call("DataTransfer", transfer())
        assert answer["data"] == str(survivors[0])
        leave.set()
    assert not server.clients


async def test_simultaneous_connections_for_one_identity_with_refuse_admit_only_one() -> None:
    count = 10
    results: dict[int, int] = {}
    leave = anyio.Event()

    async def station(url: str, n: int) -> None:
        try:
            async with ocpprpc.connect(url, "CP1"):
                results[n] = 101
                await leave.wait()
        except HandshakeRejected as refused:
            results[n] = refused.status or 0

    async with ocpprpc.serve(duplicate="refuse") as server, anyio.create_task_group() as tg:
        for n in range(count):
            tg.start_soon(station, ws_url(server), n)
        await eventually(lambda: len(results) == count)
        assert sorted(results.values()) == [101] + [409] * (count - 1)
        await eventually(lambda: "CP1" in server.clients)
        leave.set()


async def test_reconnecting_while_the_old_link_is_dead_does_not_stall_the_new_connection() -> None:
    close_timeout = 30.0
    router = Router()

    @router.on("Heartbeat")
    def heartbeat(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        return {"currentTime": "2024-01-01T00:00:00Z"}

    admitted: list[Session] = []

    async def on_connect(session: Session) -> None:
        admitted.append(session)

    async with (
        ocpprpc.serve(router=router, on_connect=on_connect, close_timeout=close_timeout) as server,
        fault_proxy(server.port) as proxy,
        ocpprpc.connect(proxy.url, "CP1", close_timeout=0.1),
    ):
        await eventually(lambda: len(admitted) == 1)
        proxy.blackhole()  # the old link dies silently: no FIN, no reset
        async with ocpprpc.connect(ws_url(server), "CP1", close_timeout=1) as new:
            try:
                # Well before the close timeout the old link's close handshake may take.
                with anyio.fail_after(close_timeout / 3):
                    answer = await new.call("Heartbeat", {})
            finally:
                proxy.drop()  # the old session's close ends now, not after close_timeout
            assert answer == {"currentTime": "2024-01-01T00:00:00Z"}
            assert server.clients["CP1"] is admitted[1]
            with anyio.fail_after(PROMPT):
                await admitted[0].closed.wait()
            assert admitted[0].close_reason is not None
            assert admitted[0].close_reason.code == 1008


async def test_the_auth_callback_sees_the_stations_address() -> None:
    """``request.remote_address`` is the station's end of the connection (read once per connection)."""
    seen: list[Any] = []

    async def auth(request: StationRequest) -> Accept:
        seen.append(request.remote_address)
        return Accept()

    async with (
        ocpprpc.serve(router=csms_router(), protocols=["ocpp1.6"], auth=auth) as server,
        ocpprpc.connect(ws_url(server), "CP1", protocols=["ocpp1.6"]) as station,
    ):
        await station.call("DataTransfer", transfer())
        local = station.stream.extra(anyio.abc.SocketAttribute.local_address)
    assert seen == [local]
