"""Security events: their JSON shape, and the hub's promises (never blocks, never raises, bounded)."""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from ocpprpc._csms.security_events import (
    SECURITY_EVENT_KINDS,
    AuthFailed,
    AuthTimedOut,
    BadMessageFlood,
    CertificateIdentityMismatch,
    ConnectionRefused,
    HandshakeAborted,
    IdentityEvicted,
    RateLimited,
    SecurityEvent,
    SecurityEvents,
    ServerReconfigured,
    StationConnected,
    StationDisconnected,
    TlsUpdated,
)

T = 1_700_000_000.25
COMMON = ["schema", "kind", "severity", "time", "timestamp", "identity", "peer", "route", "reason"]

EXAMPLES: list[tuple[SecurityEvent, dict[str, Any]]] = [
    (AuthFailed(timestamp=T, identity="CP1", peer="192.0.2.1", reason="bad password"),
     {"kind": "auth_failed", "severity": "warning", "method": "basic", "status": 401}),
    (AuthTimedOut(timestamp=T, timeout=5.0), {"kind": "auth_timed_out", "timeout": 5.0}),
    (RateLimited(timestamp=T, identity="CP1", action="MeterValues", limit="10/60s", scope="MeterValues",
                 on_breach="callerror"),
     {"kind": "rate_limited", "action": "MeterValues", "limit": "10/60s", "scope": "MeterValues",
      "on_breach": "callerror"}),
    (ConnectionRefused(timestamp=T, peer="2001:db8::1", refusal="upgrade_rate", status=429),
     {"kind": "connection_refused", "severity": "info", "refusal": "upgrade_rate", "status": 429}),
    (HandshakeAborted(timestamp=T, route="/ocpp/{identity}"),
     {"kind": "handshake_aborted", "route": "/ocpp/{identity}"}),
    (IdentityEvicted(timestamp=T, identity="CP1", previous_peer="192.0.2.2"),
     {"kind": "identity_evicted", "previous_peer": "192.0.2.2"}),
    (BadMessageFlood(timestamp=T, count=20), {"kind": "bad_message_flood", "count": 20}),
    (CertificateIdentityMismatch(timestamp=T, identity="CP1", certificate_subject="CP2"),
     {"kind": "certificate_identity_mismatch", "severity": "critical", "certificate_subject": "CP2"}),
    (StationConnected(timestamp=T, identity="CP1", protocol="ocpp2.0.1"),
     {"kind": "station_connected", "severity": "info", "protocol": "ocpp2.0.1"}),
    (StationDisconnected(timestamp=T, identity="CP1", protocol="ocpp1.6", code=1006, by_peer=True,
                         duration=2.5),
     {"kind": "station_disconnected", "severity": "info", "code": 1006, "by_peer": True, "duration": 2.5}),
    (ServerReconfigured(timestamp=T, changes={"max_connections": "100"}),
     {"kind": "server_reconfigured", "severity": "info", "changes": {"max_connections": "100"}}),
    (TlsUpdated(timestamp=T, listener="tls"), {"kind": "tls_updated", "severity": "info", "listener": "tls"}),
]  # fmt: skip


@pytest.mark.parametrize(("event", "expected"), EXAMPLES, ids=lambda e: getattr(e, "kind", ""))
def test_every_kind_has_a_flat_stable_json_shape(event: SecurityEvent, expected: dict[str, Any]) -> None:
    data = event.as_dict()
    assert list(data)[: len(COMMON)] == COMMON
    assert data["schema"] == 1
    assert data["time"] == "2023-11-14T22:13:20.250+00:00"
    assert data["timestamp"] == T
    for key, value in expected.items():
        assert data[key] == value
    assert json.loads(event.to_json()) == data
    assert SECURITY_EVENT_KINDS[data["kind"]] is type(event)


def test_the_kinds_are_all_listed() -> None:
    assert set(SECURITY_EVENT_KINDS) == {type(event).kind for event, _ in EXAMPLES}


def test_events_are_immutable_and_keyword_only() -> None:
    event = AuthFailed(timestamp=T)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.identity = "CP9"  # type: ignore[misc]
    with pytest.raises(TypeError):
        AuthFailed(T)  # type: ignore[call-arg]
    assert event.as_dict()["identity"] is None


def test_to_json_keeps_non_ascii_and_is_one_line() -> None:
    text = AuthFailed(timestamp=T, identity="Ladesäule\n1").to_json()
    assert "Ladesäule" in text and "\n" not in text


# -- the hub ------------------------------------------------------------------------------------------


def event(n: int = 0) -> SecurityEvent:
    return BadMessageFlood(timestamp=T, count=n)


def test_sync_subscribers_get_events_inline_and_can_unsubscribe() -> None:
    hub = SecurityEvents()
    seen: list[SecurityEvent] = []
    unsubscribe = hub.subscribe(seen.append)
    hub.emit(event(1))
    assert seen == [event(1)]
    unsubscribe()
    unsubscribe()  # twice is harmless
    hub.emit(event(2))
    assert seen == [event(1)]


def test_a_raising_subscriber_is_logged_once_per_cause_and_stays(caplog: pytest.LogCaptureFixture) -> None:
    hub = SecurityEvents()
    seen: list[int] = []

    def flaky(e: SecurityEvent) -> None:
        assert isinstance(e, BadMessageFlood)
        seen.append(e.count)
        if e.count < 3:
            raise ValueError("siem down")
        if e.count < 5:
            raise KeyError("other cause")

    after: list[SecurityEvent] = []
    hub.subscribe(flaky)
    hub.subscribe(after.append)
    with caplog.at_level(logging.DEBUG, logger="ocpprpc.security"):
        for n in range(6):
            hub.emit(event(n))  # never raises
    assert seen == [0, 1, 2, 3, 4, 5]
    assert len(after) == 6  # a failing subscriber costs the others nothing
    assert hub.subscriber_errors == 5
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.exc_info[0] for r in errors if r.exc_info] == [ValueError, KeyError]
    assert "stays subscribed" in errors[0].getMessage()


def test_buffer_must_hold_something() -> None:
    with pytest.raises(ValueError, match="at least one event"):
        SecurityEvents(buffer=0)


def test_clock_is_injectable() -> None:
    assert SecurityEvents(clock=lambda: 42.0).clock() == 42.0


def test_without_async_subscribers_nothing_is_buffered() -> None:
    hub = SecurityEvents(buffer=1)
    for n in range(5):
        hub.emit(event(n))
    assert hub.dropped == 0


async def test_async_subscribers_get_events_in_order_through_run() -> None:
    hub = SecurityEvents()
    seen: list[SecurityEvent] = []
    got_three = anyio.Event()

    async def record(e: SecurityEvent) -> None:
        await anyio.lowlevel.checkpoint()
        seen.append(e)
        if len(seen) == 3:
            got_three.set()

    hub.subscribe(record)
    hub.emit(event(0))  # before run() starts: waits in the buffer
    async with anyio.create_task_group() as tg:
        tg.start_soon(hub.run)
        await anyio.lowlevel.checkpoint()
        hub.emit(event(1))
        hub.emit(event(2))
        with anyio.fail_after(10):
            await got_three.wait()
        tg.cancel_scope.cancel()
    assert seen == [event(0), event(1), event(2)]


async def test_callable_objects_with_async_call_are_async_subscribers() -> None:
    class Sink:
        def __init__(self) -> None:
            self.seen: list[SecurityEvent] = []
            self.done = anyio.Event()

        async def __call__(self, e: SecurityEvent) -> None:
            self.seen.append(e)
            self.done.set()

    hub = SecurityEvents()
    sink = Sink()
    hub.subscribe(sink)
    async with anyio.create_task_group() as tg:
        tg.start_soon(hub.run)
        hub.emit(event(7))
        with anyio.fail_after(10):
            await sink.done.wait()
        tg.cancel_scope.cancel()
    assert sink.seen == [event(7)]


async def test_overflow_drops_the_oldest_and_counts() -> None:
    hub = SecurityEvents(buffer=3)
    seen: list[int] = []
    drained = anyio.Event()

    async def record(e: SecurityEvent) -> None:
        assert isinstance(e, BadMessageFlood)
        seen.append(e.count)
        if e.count == 9:
            drained.set()

    hub.subscribe(record)
    for n in range(10):  # run() not started: a slow or absent consumer
        hub.emit(event(n))
    assert hub.dropped == 7
    async with anyio.create_task_group() as tg:
        tg.start_soon(hub.run)
        with anyio.fail_after(10):
            await drained.wait()
        tg.cancel_scope.cancel()
    assert seen == [7, 8, 9]


async def test_a_raising_async_subscriber_stays_subscribed(caplog: pytest.LogCaptureFixture) -> None:
    hub = SecurityEvents()
    calls: list[int] = []
    done = anyio.Event()

    async def flaky(e: SecurityEvent) -> None:
        assert isinstance(e, BadMessageFlood)
        calls.append(e.count)
        if e.count == 2:
            done.set()
        raise RuntimeError("webhook down")

    hub.subscribe(flaky)
    with caplog.at_level(logging.ERROR, logger="ocpprpc.security"):
        async with anyio.create_task_group() as tg:
            tg.start_soon(hub.run)
            for n in range(3):
                hub.emit(event(n))
            with anyio.fail_after(10):
                await done.wait()
            tg.cancel_scope.cancel()
    assert calls == [0, 1, 2]
    assert hub.subscriber_errors == 3
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1


async def test_emit_never_waits_for_a_slow_async_subscriber() -> None:
    hub = SecurityEvents()
    release = anyio.Event()
    seen: list[SecurityEvent] = []

    all_seen = anyio.Event()

    async def slow(e: SecurityEvent) -> None:
        await release.wait()
        seen.append(e)
        if len(seen) == 100:
            all_seen.set()

    hub.subscribe(slow)
    async with anyio.create_task_group() as tg:
        tg.start_soon(hub.run)
        await anyio.lowlevel.checkpoint()
        for n in range(100):
            hub.emit(event(n))  # returns at once although the subscriber is stuck
        assert seen == []
        release.set()
        with anyio.fail_after(10):
            await all_seen.wait()
        tg.cancel_scope.cancel()


async def test_run_is_single() -> None:
    hub = SecurityEvents()
    async with anyio.create_task_group() as tg:
        tg.start_soon(hub.run)
        with anyio.fail_after(10):
            while not hub.running:
                await anyio.lowlevel.checkpoint()
        with pytest.raises(RuntimeError, match="already running"):
            await hub.run()
        tg.cancel_scope.cancel()
    assert not hub.running
    # After it stopped it may run again.
    with anyio.move_on_after(0.01):
        await hub.run()
