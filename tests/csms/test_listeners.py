"""One server, several listeners: profile 1 on one port, profile 3 on another, one view of stations.

Real CSMS on loopback (both backends, both TCP streams), certificates made by
trustme for the run.
"""

from __future__ import annotations

import functools
import json
import ssl
from typing import Any

import anyio
import anyio.abc
import pytest
import trustme

import ocpprpc
from ocpprpc import (
    CallContext,
    HandshakeRejected,
    Listener,
    PasswordTable,
    Route,
    Router,
    SecurityEvent,
    SecurityEvents,
)

from .helpers import eventually

pytestmark = pytest.mark.timeout(30)


class Recorder:
    def __init__(self) -> None:
        self.hub = SecurityEvents()
        self.events: list[SecurityEvent] = []
        self.hub.subscribe(self.events.append)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [json.loads(event.to_json()) for event in self.events if event.kind == kind]


def counting_router() -> tuple[Router, list[str]]:
    router, handled = Router(), []

    @router.on("Heartbeat")
    def heartbeat(request: Any, ctx: CallContext) -> dict[str, Any]:
        handled.append(f"{ctx.session.identity}@{ctx.session.data.get('listener')}")
        return {"currentTime": "2026-01-01T00:00:00Z"}

    return router, handled


def profile3_context(server_cert: trustme.LeafCert, station_ca: trustme.CA) -> ssl.SSLContext:
    context = ocpprpc.server_ssl_context(client_cadata=station_ca.cert_pem.bytes().decode())
    server_cert.configure_cert(context)
    return context


def station_context(ca: trustme.CA, station_ca: trustme.CA, identity: str) -> ssl.SSLContext:
    context = ocpprpc.client_ssl_context(cadata=ca.cert_pem.bytes().decode())
    station_ca.issue_cert(f"{identity.lower()}.example", common_name=identity).configure_cert(context)
    return context


async def test_profile_1_and_profile_3_on_two_ports_one_view_of_stations(
    ca: trustme.CA, server_cert: trustme.LeafCert, station_ca: trustme.CA
) -> None:
    router, handled = counting_router()
    recorder = Recorder()
    passwords = PasswordTable({"CP1": "profile-1-password", "CP2": "profile-1-password"}, plaintext=True)

    async def basic(request: ocpprpc.StationRequest) -> ocpprpc.Accept | ocpprpc.Reject:
        verdict = await passwords(request)
        if isinstance(verdict, ocpprpc.Reject):
            return verdict
        return ocpprpc.Accept(data={"listener": "plain"})

    async def certificate(request: ocpprpc.StationRequest) -> ocpprpc.Accept | ocpprpc.Reject | None:
        verdict = await ocpprpc.certificate_identity()(request)
        if isinstance(verdict, ocpprpc.Reject):
            return verdict
        return ocpprpc.Accept(data={"listener": "tls"})

    listeners = [
        Listener("127.0.0.1", 0, routes=[Route("/ocpp/{identity}", auth=basic)], name="plain"),
        Listener(
            "127.0.0.1",
            0,
            ssl_context=profile3_context(server_cert, station_ca),
            routes=[Route("/ocpp/{identity}", auth=certificate)],
            name="tls",
        ),
    ]
    async with ocpprpc.serve(listeners=listeners, router=router, security_events=recorder.hub) as server:
        plain, tls = server.listener("plain"), server.listener("tls")
        assert server.ports == [plain.port, tls.port] and server.port == plain.port
        assert plain.port != tls.port and plain.ssl_context is None and tls.ssl_context is not None
        with pytest.raises(LookupError):
            server.listener("nope")
        plain_url, tls_url = f"ws://127.0.0.1:{plain.port}/ocpp", f"wss://127.0.0.1:{tls.port}/ocpp"
        # Each listener's own profile: no password on the plain port, no certificate on the TLS one.
        with pytest.raises(HandshakeRejected) as no_password:
            async with ocpprpc.connect(plain_url, "CP1"):
                pass
        assert no_password.value.status == 401
        wrong_certificate = station_context(ca, station_ca, "CP9")
        with pytest.raises(HandshakeRejected) as mismatch:
            async with ocpprpc.connect(tls_url, "CP3", ssl_context=wrong_certificate):
                pass
        assert mismatch.value.status == 403
        with pytest.raises((HandshakeRejected, ssl.SSLError, ocpprpc.HandshakeError)):
            async with ocpprpc.connect(f"ws://127.0.0.1:{tls.port}/ocpp", "CP3"):  # plain text to TLS
                pass
        async with (
            ocpprpc.connect(plain_url, "CP1", password="profile-1-password") as one,
            ocpprpc.connect(tls_url, "CP3", ssl_context=station_context(ca, station_ca, "CP3")) as three,
        ):
            await one.call("Heartbeat", {})
            await three.call("Heartbeat", {})
            assert set(server.clients) == {"CP1", "CP3"}
            # The same identity on the other listener replaces the first connection.
            cp1_certificate = station_context(ca, station_ca, "CP1")
            async with ocpprpc.connect(tls_url, "CP1", ssl_context=cp1_certificate) as again:
                await again.call("Heartbeat", {})
                await eventually(lambda: one.close_reason is not None)
                assert one.close_reason is not None and one.close_reason.code == 1008
                assert server.clients["CP1"].data == {"listener": "tls"}
                # Commands reach stations whatever their listener (they answer NotImplemented:
                # a station without handlers).
                outcomes = await server.broadcast(["CP1", "CP3"], "Heartbeat", {})
                assert {identity: outcome.status.value for identity, outcome in outcomes.items()} == {
                    "CP1": "error",
                    "CP3": "error",
                }
        assert handled == ["CP1@plain", "CP3@tls", "CP1@tls"]
    [evicted] = recorder.of("identity_evicted")
    assert (evicted["identity"], evicted["route"]) == ("CP1", "/ocpp/{identity}")
    # Shutdown stopped every listener.
    for port in (plain.port, tls.port):
        with pytest.raises(OSError):
            await anyio.connect_tcp("127.0.0.1", port)


async def test_serve_can_run_several_times_on_one_server() -> None:
    router, handled = counting_router()
    server = ocpprpc.Server(router=router)
    assert server.ports == []
    with pytest.raises(RuntimeError):
        _ = server.port
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve, "127.0.0.1", 0)
        await tg.start(
            lambda task_status: server.serve(
                "127.0.0.1", 0, routes=[Route("/only/{identity}")], name="second", task_status=task_status
            )
        )
        first, second = server.ports
        assert server.listener("second").port == second
        async with ocpprpc.connect(f"ws://127.0.0.1:{first}/anything", "CP1") as one:
            await one.call("Heartbeat", {})
        async with ocpprpc.connect(f"ws://127.0.0.1:{second}/only", "CP2") as two:
            await two.call("Heartbeat", {})
        with pytest.raises(HandshakeRejected) as unrouted:
            async with ocpprpc.connect(f"ws://127.0.0.1:{second}/anything", "CP3"):
                pass
        assert unrouted.value.status == 404
        await server.shutdown()
    assert server.ports == [] and handled == ["CP1@None", "CP2@None"]


async def test_a_listener_stopped_alone_leaves_the_others_serving_and_reporting() -> None:
    hub = SecurityEvents()
    delivered: list[str] = []
    got = anyio.Event()

    async def sink(event: SecurityEvent) -> None:  # an async subscriber: needs the hub's run()
        if event.kind == "station_connected":
            delivered.append(f"{event.identity}")
            got.set()

    hub.subscribe(sink)
    server = ocpprpc.Server(security_events=hub)
    async with anyio.create_task_group() as tg:
        first_scope = anyio.CancelScope()

        async def first(task_status: anyio.abc.TaskStatus[ocpprpc.Server]) -> None:
            with first_scope:
                await server.serve("127.0.0.1", 0, name="first", task_status=task_status)

        await tg.start(first)
        await tg.start(functools.partial(server.serve, "127.0.0.1", 0, name="second"))
        assert hub.running
        second = server.listener("second").port
        first_scope.cancel()
        await eventually(lambda: len(server.ports) == 1)
        with pytest.raises(LookupError):
            server.listener("first")
        async with ocpprpc.connect(f"ws://127.0.0.1:{second}", "CP1"):
            with anyio.fail_after(5):
                await got.wait()
        assert delivered == ["CP1"] and hub.running
        await server.shutdown()
    assert not hub.running


async def test_serve_with_listeners_checks_its_arguments() -> None:
    with pytest.raises(TypeError, match="not both"):
        async with ocpprpc.serve("0.0.0.0", 9000, listeners=[Listener()]):
            pass
    with pytest.raises(ValueError, match="at least one"):
        async with ocpprpc.serve(listeners=[]):
            pass
    with pytest.raises(TypeError, match="Listener"):
        async with ocpprpc.serve(listeners=[("127.0.0.1", 0)]):  # type: ignore[list-item]
            pass
    with pytest.raises(TypeError, match="Route"):
        Listener(routes=["/ocpp/{identity}"])  # type: ignore[list-item]
    # A port already taken: the error of the bind, and the first listener closed again.
    async with ocpprpc.serve() as taken:
        with pytest.raises(OSError):
            async with ocpprpc.serve(listeners=[Listener(), Listener("127.0.0.1", taken.port)]):
                pass
