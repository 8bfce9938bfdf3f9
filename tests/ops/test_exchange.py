"""The exchange log: a middleware that writes one line per message, IN and OUT, with latency."""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio
import pytest

import ocpprpc
from ocpprpc import CallContext, ExchangeLog, JsonFormatter, OCPPError, Router
from ocpprpc.testing import session_pair

LOGGER = "ocpprpc.exchange"


def csms_router() -> Router:
    router = Router()

    @router.on("Heartbeat")
    def heartbeat(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        return {"currentTime": "2025-01-01T00:00:00Z"}

    @router.on("Authorize")
    def authorize(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        if request["idTag"] == "BLOCKED":
            raise OCPPError("SecurityError", "blocked tag")
        return {"idTagInfo": {"status": "Accepted"}}

    return router


def lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    formatter = JsonFormatter()
    return [json.loads(formatter.format(r)) for r in caplog.records if r.name == LOGGER]


async def test_each_message_and_its_answer_is_one_line_with_latency(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with session_pair("ocpp1.6", csms_router=csms_router(), middleware=[ExchangeLog()]) as (station, _):
        assert await station.call("Heartbeat", {}) == {"currentTime": "2025-01-01T00:00:00Z"}
    records = lines(caplog)
    # The station logs OUT CALL and IN CALLRESULT; the CSMS logs IN CALL and OUT CALLRESULT.
    assert sorted((r["direction"], r["kind"]) for r in records) == [
        ("IN", "CALL"),
        ("IN", "CALLRESULT"),
        ("OUT", "CALL"),
        ("OUT", "CALLRESULT"),
    ]
    assert {r["action"] for r in records} == {"Heartbeat"}
    assert len({r["message_id"] for r in records}) == 1
    assert {r["identity"] for r in records} == {"CP001"} and {r["protocol"] for r in records} == {"ocpp1.6"}
    answers = [r for r in records if r["kind"] == "CALLRESULT"]
    assert all(r["latency_ms"] >= 0 for r in answers)
    assert all("latency_ms" not in r for r in records if r["kind"] == "CALL")
    assert all("payload" not in r for r in records)  # payloads only when asked


async def test_payloads_when_asked_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with session_pair(
        "ocpp1.6", csms_router=csms_router(), middleware=[ExchangeLog(payloads=True)]
    ) as (station, _):
        await station.call("Authorize", {"idTag": "04E3A1B2C3D4"})
    records = lines(caplog)
    requests = [r for r in records if r["kind"] == "CALL"]
    assert requests and all(r["payload"]["idTag"].endswith("C3D4") for r in requests)
    assert "04E3A1B2C3D4" not in caplog.text
    assert any("idTagInfo" in str(r.get("payload")) for r in records if r["kind"] == "CALLRESULT")


async def test_a_callerror_is_logged_with_its_code_and_still_raised(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with session_pair("ocpp1.6", csms_router=csms_router(), middleware=[ExchangeLog()]) as (station, _):
        with pytest.raises(OCPPError, match="blocked tag"):
            await station.call("Authorize", {"idTag": "BLOCKED"})
    kinds = {(r["direction"], r["kind"]) for r in lines(caplog)}
    assert ("OUT", "CALLERROR SecurityError") in kinds  # the CSMS answers
    assert ("IN", "CALLERROR SecurityError") in kinds  # the station receives


async def test_a_timeout_is_logged_as_such(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    router = Router()

    @router.on("Heartbeat")
    async def slow(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        await anyio.sleep(5)
        return {"currentTime": "2025-01-01T00:00:00Z"}

    async with session_pair("ocpp1.6", csms_router=router, middleware=[ExchangeLog()]) as (station, _):
        with pytest.raises(ocpprpc.CallTimeout):
            await station.call("Heartbeat", {}, timeout=0.05)
    assert any(r["kind"] == "TIMEOUT" and r["direction"] == "IN" for r in lines(caplog))


async def test_disabled_it_logs_nothing_and_changes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    async with session_pair("ocpp1.6", csms_router=csms_router(), middleware=[ExchangeLog()]) as (station, _):
        assert await station.call("Heartbeat", {}) == {"currentTime": "2025-01-01T00:00:00Z"}
    assert not lines(caplog)


async def test_over_real_sockets_on_the_server(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with (
        ocpprpc.serve(router=csms_router(), middleware=[ExchangeLog(level=logging.WARNING)]) as server,
        ocpprpc.connect(f"ws://127.0.0.1:{server.port}/ocpp", "CP7") as station,
    ):
        await station.call("Heartbeat", {})
    records = lines(caplog)
    assert [(r["direction"], r["kind"], r["level"]) for r in records] == [
        ("IN", "CALL", "WARNING"),
        ("OUT", "CALLRESULT", "WARNING"),
    ]
    assert records[0]["identity"] == "CP7"


SEND_PAYLOAD = {"id": 1, "pending": 0, "basetime": "2025-01-01T00:00:00Z", "data": []}


async def test_a_send_is_one_line_each_way_and_never_answered(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    received = anyio.Event()
    router = Router()

    @router.on("NotifyPeriodicEventStream")
    def stream(request: dict[str, Any], ctx: CallContext) -> None:
        received.set()

    async with session_pair("ocpp2.1", csms_router=router, middleware=[ExchangeLog()]) as (station, _):
        await station.send("NotifyPeriodicEventStream", SEND_PAYLOAD)
        with anyio.fail_after(5):
            await received.wait()
    assert sorted((r["direction"], r["kind"]) for r in lines(caplog)) == [("IN", "SEND"), ("OUT", "SEND")]


async def test_a_send_that_fails_further_in_is_logged_once_and_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)

    async def refuse(ctx: Any, call_next: Any) -> Any:
        raise OCPPError("SecurityError", "not now")

    async with session_pair("ocpp2.1", middleware=[ExchangeLog(), refuse]) as (station, _):
        with pytest.raises(OCPPError):
            await station.send("NotifyPeriodicEventStream", SEND_PAYLOAD)

    async def broken(ctx: Any, call_next: Any) -> Any:
        raise RuntimeError("a bug further in")

    async with session_pair("ocpp2.1", middleware=[ExchangeLog(), ocpprpc.fail_closed(broken)]) as (
        station,
        _,
    ):
        with pytest.raises(RuntimeError):
            await station.send("NotifyPeriodicEventStream", SEND_PAYLOAD)
    kinds = [(r["direction"], r["kind"]) for r in lines(caplog)]
    # The refused one: its SEND line, then the CALLERROR that refused it; the broken one: its line only.
    assert kinds == [("OUT", "SEND"), ("IN", "CALLERROR SecurityError"), ("OUT", "SEND")]
