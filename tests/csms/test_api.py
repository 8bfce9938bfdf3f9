"""The public entry points as an application uses them: embedding, and the exception-group policy."""

from __future__ import annotations

from typing import Any, NoReturn

import anyio
import anyio.abc
import pytest

import ocpprpc
from ocpprpc import CallContext, CloseReason, HandshakeRejected, Router, Server

from .helpers import PROMPT, eventually, settled, task_count, ws_url

pytestmark = pytest.mark.timeout(20)


def csms_router() -> Router:
    router = Router()

    @router.on("Heartbeat")
    async def heartbeat(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        return {"currentTime": "2025-01-01T00:00:00Z"}

    return router


async def test_embedding_server_handle_in_our_own_listener() -> None:
    """An application runs the listener and the task group; the Server only handles connections."""
    server = Server(router=csms_router())
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    url = f"ws://127.0.0.1:{port}/ocpp"
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, server.handle, tg)
        async with ocpprpc.connect(url, "CP1") as station:
            assert await station.call("Heartbeat") == {"currentTime": "2025-01-01T00:00:00Z"}
            assert list(server.clients) == ["CP1"]

            # shutdown() works without serve(): stations are closed with 1001...
            await server.shutdown(timeout=PROMPT)
            with anyio.fail_after(PROMPT):
                await station.closed.wait()
            assert station.close_reason is not None
            assert station.close_reason.code == 1001
        # ...and newcomers are turned away while our listener still accepts.
        with pytest.raises(HandshakeRejected) as refused:
            async with ocpprpc.connect(url, "CP2"):
                pass
        assert refused.value.status == 503
        await eventually(lambda: not server.clients)
        tg.cancel_scope.cancel()


async def test_server_serve_in_our_task_group_reports_the_port() -> None:
    server = Server(router=csms_router())
    async with anyio.create_task_group() as tg:
        started = await tg.start(server.serve, "127.0.0.1", 0)
        assert started is server
        async with ocpprpc.connect(ws_url(server), "CP1") as station:
            assert await station.call("Heartbeat") == {"currentTime": "2025-01-01T00:00:00Z"}
        await server.shutdown()
    # serve() returned by itself after shutdown (the task group could end).
    with pytest.raises(RuntimeError):
        server.port  # noqa: B018 (the property raises once the listener is closed)


class Boom(Exception):
    pass


class Bang(Exception):
    pass


async def test_a_single_error_in_the_connect_body_comes_out_unwrapped() -> None:
    async with ocpprpc.serve(router=csms_router()) as server:
        baseline = task_count()
        with pytest.raises(Boom) as raised:
            async with ocpprpc.connect(ws_url(server), "CP1") as station:
                await station.call("Heartbeat")
                await eventually(lambda: "CP1" in server.clients)
                on_server = server.clients["CP1"]
                raise Boom("in the body")
        assert type(raised.value) is Boom
        assert station.close_reason == CloseReason(1011, "", by_peer=False)
        with anyio.fail_after(PROMPT):
            await on_server.closed.wait()
        assert on_server.close_reason is not None
        assert on_server.close_reason.code == 1011
        await settled(baseline)


async def test_connection_lost_in_the_connect_body_comes_out_unwrapped() -> None:
    async with ocpprpc.serve(router=csms_router()) as server:
        with pytest.raises(ocpprpc.ConnectionLost):
            async with ocpprpc.connect(ws_url(server), "CP1") as station:
                await eventually(lambda: "CP1" in server.clients)
                await server.clients["CP1"].close(4001, graceful=False)
                await station.closed.wait()
                await station.call("Heartbeat")


async def test_two_concurrent_errors_in_the_connect_body_stay_a_group() -> None:
    async def fail(exc: Exception) -> NoReturn:
        raise exc

    async with ocpprpc.serve(router=csms_router()) as server:
        with pytest.raises(ExceptionGroup) as raised:
            async with ocpprpc.connect(ws_url(server), "CP1"), anyio.create_task_group() as tg:
                tg.start_soon(fail, Boom())
                tg.start_soon(fail, Bang())
        assert raised.group_contains(Boom)
        assert raised.group_contains(Bang)
        await eventually(lambda: not server.clients)


async def test_a_single_error_in_the_serve_body_comes_out_unwrapped() -> None:
    with pytest.raises(Boom) as raised:
        async with ocpprpc.serve(router=csms_router()) as server:
            async with ocpprpc.connect(ws_url(server), "CP1") as station:
                await station.call("Heartbeat")
            raise Boom("in the serve body")
    assert type(raised.value) is Boom


async def test_a_station_failing_inside_the_serve_body_comes_out_unwrapped() -> None:
    """The error crosses two entry points (connect inside serve) and is still unwrapped."""
    with pytest.raises(Boom):
        async with (
            ocpprpc.serve(router=csms_router()) as server,
            ocpprpc.connect(ws_url(server), "CP1") as station,
        ):
            await station.call("Heartbeat")
            raise Boom


async def test_two_concurrent_errors_in_the_serve_body_stay_a_group() -> None:
    async def fail(exc: Exception) -> NoReturn:
        raise exc

    with pytest.raises(ExceptionGroup) as raised:
        async with ocpprpc.serve(), anyio.create_task_group() as tg:
            tg.start_soon(fail, Boom())
            tg.start_soon(fail, Bang())
    assert raised.group_contains(Boom)
    assert raised.group_contains(Bang)
