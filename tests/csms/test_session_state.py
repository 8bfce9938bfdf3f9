"""Session state that survives a reconnect: the same dict per identity, bounded by a TTL and an LRU."""

from __future__ import annotations

from typing import Any

import pytest

import ocpprpc
from ocpprpc import CallContext, Router, SessionStates

from .helpers import eventually, ws_url

pytestmark = pytest.mark.timeout(60)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def counting_router() -> Router:
    router = Router()

    @router.on("Heartbeat")
    async def heartbeat(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        ctx.state["beats"] = ctx.state.get("beats", 0) + 1
        return {"currentTime": f"2026-12-07T09:00:{ctx.state['beats']:02}Z"}

    return router


async def beats(url: str, identity: str, count: int) -> str:
    """Connect, send *count* heartbeats, leave; the CSMS's last answer (its counter)."""
    answer = ""
    async with ocpprpc.connect(url, identity, protocols=["ocpp1.6"]) as station:
        for _ in range(count):
            answer = (await station.call("Heartbeat", {}))["currentTime"]
    return answer[-3:-1]


async def test_state_survives_a_reconnect_and_expires_after_the_ttl() -> None:
    clock = Clock()
    states = SessionStates(ttl=60, clock=clock)
    async with ocpprpc.serve(router=counting_router(), session_state=states) as server:
        assert server.session_states is states
        url = ws_url(server)
        assert await beats(url, "CP1", 2) == "02"
        await eventually(lambda: "CP1" not in server.clients)
        kept = states.get("CP1")
        assert kept == {"beats": 2} and states.kept == 1
        clock.now += 59  # back within the TTL: the same mapping
        async with ocpprpc.connect(url, "CP1", protocols=["ocpp1.6"]) as station:
            await station.call("Heartbeat", {})
            assert server.clients["CP1"].state is kept and kept == {"beats": 3}
        await eventually(lambda: "CP1" not in server.clients)
        clock.now += 61  # gone longer than the TTL: a fresh state
        assert await beats(url, "CP1", 1) == "01"
        assert states.get("CP1") is not kept


async def test_the_kept_states_are_bounded_least_recently_gone_first() -> None:
    states = SessionStates(max_identities=2, clock=Clock())
    async with ocpprpc.serve(router=counting_router(), session_state=states) as server:
        url = ws_url(server)
        for identity in ("A", "B", "C"):
            await beats(url, identity, 1)
            await eventually(lambda: identity not in server.clients)  # noqa: B023 (awaited here)
        assert states.get("A") is None and states.get("B") == {"beats": 1} and states.kept == 2
        assert await beats(url, "A", 1) == "01"


async def test_two_connections_of_one_identity_share_the_state() -> None:
    states = SessionStates()
    async with ocpprpc.serve(router=counting_router(), session_state=states) as server:
        url = ws_url(server)
        async with ocpprpc.connect(url, "CP1", protocols=["ocpp1.6"]) as first:
            await first.call("Heartbeat", {})
            old = server.clients["CP1"]
            async with ocpprpc.connect(url, "CP1", protocols=["ocpp1.6"]) as second:  # evicts the first
                await second.call("Heartbeat", {})
                assert server.clients["CP1"] is not old and server.clients["CP1"].state is old.state
                assert old.state == {"beats": 2}
        await eventually(lambda: "CP1" not in server.clients)
        assert states.get("CP1") == {"beats": 2} and len(states) == 1


async def test_without_session_state_each_connection_has_its_own() -> None:
    async with ocpprpc.serve(router=counting_router()) as server:
        url = ws_url(server)
        assert server.session_states is None
        assert await beats(url, "CP1", 2) == "02"
        assert await beats(url, "CP1", 1) == "01"


def test_session_states_alone() -> None:
    clock = Clock()
    states = SessionStates(ttl=10, max_identities=5, clock=clock)
    first = states.acquire("A")
    assert states.acquire("A") is first  # two connections at once
    states.release("A")
    assert states.kept == 0 and states.get("A") is first
    states.release("A")
    states.release("A")  # one release too many: ignored
    states.release("unknown")
    assert states.kept == 1 and "kept=1" in repr(states)
    clock.now += 11
    assert states.get("A") is None and len(states) == 0  # expired when looked at
    states.acquire("B")
    states.release("B")
    clock.now += 11
    states.acquire("C")
    states.release("C")  # leaving sweeps the expired ones
    assert states.get("B") is None and states.kept == 1
    assert states.forget("C") and not states.forget("C")
    assert states.get("nobody") is None


@pytest.mark.parametrize("options", [{"ttl": 0}, {"ttl": float("nan")}, {"max_identities": 0}])
def test_bad_bounds_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SessionStates(**options)


def test_a_wrong_type_is_refused() -> None:
    with pytest.raises(TypeError, match="session_state must be a SessionStates"):
        ocpprpc.Server(session_state={})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="registry must be a StationRegistry"):
        ocpprpc.Server(registry="stations.db")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="command_buffer must be a CommandBuffer"):
        ocpprpc.Server(command_buffer=10)  # type: ignore[arg-type]
