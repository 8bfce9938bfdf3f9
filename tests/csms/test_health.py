"""The HTTP side door (``/health``, ``/metrics``) and ``server.stats()``, over real sockets.

Hostile requests to the side door get a clean answer and never disturb a station.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import ocpprpc
from ocpprpc import CallContext, Router, Server
from tests.csms.helpers import PROMPT, eventually, http_exchange, raw_station

GET_HEALTH = b"GET /health HTTP/1.1\r\nHost: csms\r\n\r\n"
GET_METRICS = b"GET /metrics HTTP/1.1\r\nHost: csms\r\n\r\n"


def parse(response: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status.split()[1]), headers, body


def router() -> Router:
    routes = Router()

    @routes.on("Heartbeat")
    def heartbeat(request: Any, ctx: CallContext) -> dict[str, Any]:
        return {"currentTime": "2025-01-01T00:00:00Z"}

    return routes


@asynccontextmanager
async def running(**options: Any) -> AsyncIterator[Server]:
    async with ocpprpc.serve(router=router(), protocols=["ocpp1.6"], **options) as server:
        yield server


async def heartbeat(server: Server, identity: str = "CP1") -> None:
    async with ocpprpc.connect(f"ws://127.0.0.1:{server.port}/ocpp", identity, protocols=["ocpp1.6"]) as st:
        await st.call("Heartbeat", {})


async def test_health_answers_json_with_the_stations_connected() -> None:
    async with running(http_endpoints=True) as server:
        assert server.metrics is None
        async with raw_station(server.port, "CP1"):
            await eventually(lambda: "CP1" in server.clients)
            status, headers, body = parse(await http_exchange(server.port, GET_HEALTH))
        assert status == 200
        assert headers["content-type"] == "application/json"
        assert headers["cache-control"] == "no-store"
        health = json.loads(body)
        assert health.keys() == {"status", "connections", "uptime", "version"}
        assert health["status"] == "ok"
        assert health["connections"] == 1  # the station; not the probe's own connection
        assert health["version"] == ocpprpc.__version__
        assert health["uptime"] >= 0
        # Without metrics there is no /metrics: the plain GET keeps its 426.
        status, headers, _ = parse(
            await http_exchange(server.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        )
        assert status == 426
        assert headers["upgrade"] == "websocket"
        # The probes are not refused handshakes; the 426 is (counted once its answer is sent).
        await eventually(lambda: server.stats().rejected_handshakes == {"http_426": 1})


async def test_health_is_503_while_shutting_down_on_both_ports() -> None:
    async with anyio.create_task_group() as tg:
        server = Server(router=router(), protocols=["ocpp1.6"], metrics=True, close_timeout=PROMPT)
        await tg.start(server.serve, "127.0.0.1", 0)
        side_port = await tg.start(server.serve_http, "127.0.0.1", 0)
        # A station that never answers the close frame holds the shutdown open.
        async with raw_station(server.port, "HOLDS"):
            await eventually(lambda: "HOLDS" in server.clients)
            tg.start_soon(server.shutdown)
            await eventually(lambda: server.stats().shutting_down)
            for port in (server.port, side_port):
                status, _, body = parse(await http_exchange(port, GET_HEALTH))
                assert status == 503
                assert json.loads(body)["status"] == "shutting_down"
            # An upgrade while shutting down: 503 too, counted.
            with pytest.raises(ocpprpc.HandshakeRejected) as refused:
                await heartbeat(server, "LATE")
            assert refused.value.status == 503
            await eventually(lambda: server.stats().rejected_handshakes == {"shutting_down": 1})
    # The station left, shutdown finished, both listeners are closed (serve and serve_http returned).


async def test_a_port_of_its_own_serves_only_the_side_door() -> None:
    async with anyio.create_task_group() as tg:
        server = Server(router=router(), protocols=["ocpp1.6"], metrics=True, http_endpoints=False)
        await tg.start(server.serve, "127.0.0.1", 0)
        port = await tg.start(server.serve_http, "127.0.0.1", 0)
        await heartbeat(server)
        status, _, body = parse(await http_exchange(port, GET_METRICS))
        assert status == 200
        assert b'ocpprpc_calls_total{action="Heartbeat",direction="in",outcome="ok"} 1.0' in body
        assert parse(await http_exchange(port, GET_HEALTH))[0] == 200
        # Any other path, an upgrade request included, is 404 there.
        for request in (
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /ocpp/CP1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        ):
            assert parse(await http_exchange(port, request))[0] == 404
        assert parse(await http_exchange(port, b"garbage\r\n\r\n"))[0] == 400
        assert parse(await http_exchange(port, b"GET / HTTP/1.1\r\nX: " + b"a" * 20_000))[0] == 431
        # ... and the station port has no side door (http_endpoints=False).
        assert parse(await http_exchange(server.port, GET_HEALTH))[0] == 426
        await server.shutdown()


HOSTILE: list[tuple[bytes, int]] = [
    (b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 405),
    (b"DELETE /health HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    (b"GET /health?verbose=1&x=%00 HTTP/1.1\r\nHost: x\r\n\r\n", 200),
    (b"GET /metrics?name[]=ocpprpc_calls_total HTTP/1.1\r\nHost: x\r\n\r\n", 200),
    (b"GET /x/../health HTTP/1.1\r\nHost: x\r\n\r\n", 426),
    (b"GET /health/ HTTP/1.1\r\nHost: x\r\n\r\n", 426),
    (b"GET /%2e%2e/metrics HTTP/1.1\r\nHost: x\r\n\r\n", 426),
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 426),
    (b"POST /ocpp/CP1 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n", 431),
    (b"GET /health HTTP/1.0\r\n\r\n", 200),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64, 400),  # a TLS hello on a plain port
]


@pytest.mark.parametrize(("request_bytes", "expected"), HOSTILE, ids=lambda v: repr(v)[:40])
async def test_hostile_requests_get_a_clean_answer(request_bytes: bytes, expected: int) -> None:
    async with (
        running(metrics=True) as server,
        ocpprpc.connect(f"ws://127.0.0.1:{server.port}/ocpp", "CP1", protocols=["ocpp1.6"]) as st,
    ):
        status, headers, _ = parse(await http_exchange(server.port, request_bytes))
        assert status == expected
        if status == 405:
            assert headers["allow"] == "GET, HEAD"
        await st.call("Heartbeat", {})  # the station never noticed


async def test_head_gives_the_headers_without_the_body() -> None:
    async with running(metrics=True) as server:
        _, get_headers, get_body = parse(await http_exchange(server.port, GET_HEALTH))
        status, headers, body = parse(
            await http_exchange(server.port, b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n")
        )
        assert status == 200
        assert body == b""
        assert get_headers["content-length"] == str(len(get_body))
        assert int(headers["content-length"]) > 0  # what GET would send (the uptime's digits vary)
        assert headers["content-type"] == get_headers["content-type"] == "application/json"
        status, headers, body = parse(
            await http_exchange(server.port, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        )
        assert status == 200
        assert body == b""
        assert headers["content-type"].startswith("text/plain; version=")


async def test_a_slowloris_on_the_side_door_is_dropped_at_the_handshake_timeout() -> None:
    async with running(metrics=True, handshake_timeout=0.3) as server:
        async with await anyio.connect_tcp("127.0.0.1", server.port) as slow:
            await slow.send(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # never finished
            await heartbeat(server)  # stations are served meanwhile
            with anyio.fail_after(PROMPT):
                with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                    await slow.receive()
        await eventually(lambda: server.stats().rejected_handshakes == {"timeout": 1})
        async with anyio.create_task_group() as tg:
            port = await tg.start(server.serve_http, "127.0.0.1", 0)
            async with await anyio.connect_tcp("127.0.0.1", port) as slow:
                await slow.send(b"GET /health HTTP/1.1\r\n")
                received = b""
                with anyio.fail_after(PROMPT):
                    try:
                        while True:
                            received += await slow.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        pass
                assert parse(received)[0] == 408
            tg.cancel_scope.cancel()


async def test_a_failing_endpoint_is_answered_500_and_costs_nothing_else() -> None:
    async with running(metrics=True) as server:

        def broken() -> ocpprpc.ServerStats:
            raise RuntimeError("a bug")

        server.http_endpoints.stats = broken
        assert parse(await http_exchange(server.port, GET_HEALTH))[0] == 500
        await heartbeat(server)


async def test_at_the_connection_cap_health_still_answers() -> None:
    async with running(http_endpoints=True, max_connections=1) as server:
        async with raw_station(server.port, "CP1"):
            await eventually(lambda: "CP1" in server.clients)
            status, _, body = parse(await http_exchange(server.port, GET_HEALTH))
            assert status == 200
            assert json.loads(body)["connections"] == 1
            with pytest.raises(ocpprpc.HandshakeRejected):
                await heartbeat(server, "CP2")
        await eventually(lambda: server.stats().rejected_handshakes == {"connection_cap": 1})


async def test_stats_reports_sessions_calls_in_flight_and_refusals() -> None:
    entered, release = anyio.Event(), anyio.Event()
    routes = router()

    @routes.on("Authorize")
    async def authorize(request: Any, ctx: CallContext) -> dict[str, Any]:
        entered.set()
        await release.wait()
        return {"idTagInfo": {"status": "Accepted"}}

    station_routes = Router()
    asked, answer = anyio.Event(), anyio.Event()

    @station_routes.on("Reset")
    async def reset(request: Any, ctx: CallContext) -> dict[str, Any]:
        asked.set()
        await answer.wait()
        return {"status": "Accepted"}

    async with ocpprpc.serve(router=routes, protocols=["ocpp2.0.1", "ocpp1.6"]) as server:
        before = server.stats()
        assert before.sessions == {} and before.connections == 0 and before.calls is None
        with pytest.raises(ocpprpc.HandshakeRejected):  # an identity over 48 characters: 400
            async with ocpprpc.connect(f"ws://127.0.0.1:{server.port}/ocpp", "X" * 49, protocols=["ocpp1.6"]):
                pass  # pragma: no cover
        await eventually(lambda: server.stats().rejected_handshakes == {"http_400": 1})
        url = f"ws://127.0.0.1:{server.port}/ocpp"
        async with (
            ocpprpc.connect(url, "OLD", protocols=["ocpp1.6"], router=station_routes) as old,
            ocpprpc.connect(url, "NEW", protocols=["ocpp2.0.1"]),
            anyio.create_task_group() as tg,
        ):
            await eventually(lambda: len(server.clients) == 2)
            tg.start_soon(old.call, "Authorize", {"idTag": "T1"})
            tg.start_soon(server.send_to_client, "OLD", "Reset", {"type": "Soft"})
            await entered.wait()
            await asked.wait()
            stats = server.stats()
            assert stats.sessions == {"ocpp1.6": 1, "ocpp2.0.1": 1}
            assert stats.connections == 2
            assert (stats.calls_in_flight_in, stats.calls_in_flight_out) == (1, 1)
            assert stats.accepted_handshakes == 2
            assert stats.rejected_handshakes == {"http_400": 1}
            assert stats.bytes_received > 0 and stats.bytes_sent > 0
            assert stats.bytes_buffered >= 0
            assert not stats.shutting_down
            assert json.loads(stats.to_json()) == stats.as_dict()
            release.set()
            answer.set()
        await eventually(lambda: server.stats().sessions == {})
        after = server.stats()
        # The sessions' bytes stay counted after they ended.
        assert after.bytes_received >= stats.bytes_received and after.bytes_sent >= stats.bytes_sent
        assert (after.calls_in_flight_in, after.calls_in_flight_out) == (0, 0)
        with pytest.raises(AttributeError):
            after.connections = 5  # type: ignore[misc]


async def test_a_request_trickled_a_byte_at_a_time_is_answered_on_both_ports() -> None:
    async with anyio.create_task_group() as tg:
        server = Server(router=router(), protocols=["ocpp1.6"], metrics=True)
        await tg.start(server.serve, "127.0.0.1", 0)
        side_port = await tg.start(server.serve_http, "127.0.0.1", 0)
        for port in (server.port, side_port):
            async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                for byte in GET_HEALTH:
                    await stream.send(bytes([byte]))
                    await anyio.lowlevel.checkpoint()
                received = b""
                with anyio.fail_after(PROMPT):
                    try:
                        while True:
                            received += await stream.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        pass
            assert parse(received)[0] == 200
        await server.shutdown()


def test_handshake_failures_are_counted_by_what_went_wrong() -> None:
    from ocpprpc._csms.stats import ServerCounters

    counters = ServerCounters()
    for failure in (
        ocpprpc.HandshakeTimeout("no complete handshake"),
        ocpprpc.HandshakeError("HTTP 426: not an upgrade", status=426),
        ocpprpc.HandshakeError("TLS handshake failed: SSLError(...)"),
        ocpprpc.HandshakeError("connection closed before a complete request"),
    ):
        counters.handshake_failed(failure)
    assert counters.rejected == {"timeout": 1, "http_426": 1, "tls": 1, "aborted": 1}


def test_plain_requests_and_responses_at_their_edges() -> None:
    from ocpprpc._ws.http_plain import PlainResponse, parse_plain_request, response_bytes

    assert parse_plain_request(b"GET /health HTTP/1.1\r\n") is None  # incomplete
    assert parse_plain_request(b"\x00\x01 nonsense\r\n\r\n") is None  # not HTTP
    request = parse_plain_request(b"GET /metrics?a=1 HTTP/1.1\r\nHost: x\r\nX-A: b\r\n\r\n")
    assert request is not None
    assert (request.method, request.path, request.query_string) == ("GET", "/metrics", "a=1")
    assert (b"x-a", b"b") in request.headers
    odd = response_bytes(PlainResponse(599, b"?"), "GET")
    assert odd.startswith(b"HTTP/1.1 599 \r\n") and odd.endswith(b"\r\n\r\n?")


async def test_a_request_abandoned_halfway_costs_the_side_port_nothing() -> None:
    async with anyio.create_task_group() as tg:
        server = Server(router=router(), protocols=["ocpp1.6"], metrics=True)
        await tg.start(server.serve, "127.0.0.1", 0)
        port = await tg.start(server.serve_http, "127.0.0.1", 0)
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(b"GET /health HTTP/1.1\r\n")
        assert parse(await http_exchange(port, GET_HEALTH))[0] == 200
        await server.shutdown()
