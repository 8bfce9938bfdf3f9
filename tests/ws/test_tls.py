"""Security profiles 2 and 3 over loopback TLS with certificates minted by trustme, on asyncio and trio."""

from __future__ import annotations

import ssl
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.abc
import pytest
import trustme
from anyio.streams.tls import TLSAttribute
from wsproto.events import BytesMessage, CloseConnection

from ocpprpc import HandshakeError
from ocpprpc._ws.handshake import StationRequest, accept_websocket, open_websocket
from ocpprpc._ws.tls import OCPP_TLS12_CIPHERS, client_ssl_context, server_ssl_context

from .helpers import RawWebSocket, echo_until_closed, tcp_server

# Every test here runs on both frame codecs (tests/ws/conftest.py).
pytestmark = pytest.mark.usefixtures("ws_codec")


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA(organization_name="CSMS operator")


@pytest.fixture
def station_ca() -> trustme.CA:
    return trustme.CA(organization_name="Station manufacturer")


class TLSGate:
    """A TLS CSMS that records requests (with their client certificates) and handshake errors."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.requests: list[StationRequest] = []
        self.errors: list[HandshakeError] = []
        self.done = anyio.Event()

    async def handle(self, stream: anyio.abc.SocketStream) -> None:
        try:
            request = await accept_websocket(stream, protocols=["ocpp2.0.1"], ssl_context=self.context)
        except HandshakeError as exc:
            self.errors.append(exc)
            self.done.set()
            return
        self.requests.append(request)
        ws = await request.accept()
        try:
            await echo_until_closed(ws)
        finally:
            self.done.set()


@asynccontextmanager
async def tls_server(context: ssl.SSLContext) -> AsyncIterator[tuple[TLSGate, str]]:
    gate = TLSGate(context)
    async with tcp_server(gate.handle) as port:
        yield gate, f"wss://localhost:{port}/ocpp"


def csms_context(ca: trustme.CA, station_ca: trustme.CA | None = None) -> ssl.SSLContext:
    context = server_ssl_context(client_cadata=station_ca.cert_pem.bytes().decode() if station_ca else None)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    return context


async def test_profile_2_tls_with_basic_auth(ca: trustme.CA) -> None:
    async with tls_server(csms_context(ca)) as (gate, url):
        ws = await open_websocket(
            url,
            "CP001",
            protocols=["ocpp2.0.1"],
            password="a-password-of-16+",
            ssl_context=client_ssl_context(cadata=ca.cert_pem.bytes().decode()),
        )
        await ws.send("over TLS")
        assert await ws.receive() == "over TLS"
        await ws.close()
        await gate.done.wait()
    (request,) = gate.requests
    assert request.password == b"a-password-of-16+"
    assert request.client_certificate is None  # profile 2: no client certificate asked


async def test_profile_2_with_files(ca: trustme.CA, tmp_path: Path) -> None:
    server_cert = ca.issue_cert("localhost")
    cert_file = tmp_path / "csms.pem"
    ca_file = tmp_path / "ca.pem"
    server_cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    ca.cert_pem.write_to_path(str(ca_file))
    async with tls_server(server_ssl_context(cert_file)) as (gate, url):
        ws = await open_websocket(
            url, "CP001", protocols=["ocpp2.0.1"], ssl_context=client_ssl_context(cafile=ca_file)
        )
        await ws.close()
    assert gate.requests[0].identity == "CP001"


async def test_untrusted_server_certificate_fails_on_both_sides(ca: trustme.CA) -> None:
    stranger = trustme.CA()
    async with tls_server(csms_context(ca)) as (gate, url):
        with pytest.raises(HandshakeError, match="TLS") as caught:
            await open_websocket(
                url,
                "CP001",
                protocols=["ocpp2.0.1"],
                ssl_context=client_ssl_context(cadata=stranger.cert_pem.bytes().decode()),
            )
        await gate.done.wait()
    assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)
    assert "TLS handshake failed" in str(gate.errors[0]) and not gate.requests


async def test_default_client_context_does_not_trust_a_private_ca(ca: trustme.CA) -> None:
    async with tls_server(csms_context(ca)) as (gate, url):
        with pytest.raises(HandshakeError, match="TLS"):
            await open_websocket(url, "CP001", protocols=["ocpp2.0.1"])
        await gate.done.wait()


async def test_profile_3_client_certificate_reaches_the_server(
    ca: trustme.CA, station_ca: trustme.CA
) -> None:
    client_context = client_ssl_context(cadata=ca.cert_pem.bytes().decode())
    station_ca.issue_cert("cp001.example", common_name="CP001", organization_name="CPO Inc").configure_cert(
        client_context
    )
    async with tls_server(csms_context(ca, station_ca)) as (gate, url):
        ws = await open_websocket(url, "CP001", protocols=["ocpp2.0.1"], ssl_context=client_context)
        await ws.send("mutual")
        assert await ws.receive() == "mutual"
        await ws.close()
    (request,) = gate.requests
    assert request.client_certificate is not None
    subject = dict(pair for rdn in request.client_certificate["subject"] for pair in rdn)
    assert subject["commonName"] == "CP001" and subject["organizationName"] == "CPO Inc"
    assert isinstance(request.client_certificate_der, bytes) and request.client_certificate_der
    assert request.password is None


async def test_profile_3_without_a_client_certificate_fails(ca: trustme.CA, station_ca: trustme.CA) -> None:
    async with tls_server(csms_context(ca, station_ca)) as (gate, url):
        with pytest.raises(HandshakeError):
            await open_websocket(
                url,
                "CP001",
                protocols=["ocpp2.0.1"],
                ssl_context=client_ssl_context(cadata=ca.cert_pem.bytes().decode()),
            )
        await gate.done.wait()
    assert "TLS handshake failed" in str(gate.errors[0]) and not gate.requests


async def test_profile_3_certificate_from_another_ca_fails(ca: trustme.CA, station_ca: trustme.CA) -> None:
    client_context = client_ssl_context(cadata=ca.cert_pem.bytes().decode())
    trustme.CA().issue_cert("cp001.example", common_name="CP001").configure_cert(client_context)
    async with tls_server(csms_context(ca, station_ca)) as (gate, url):
        with pytest.raises(HandshakeError):
            await open_websocket(url, "CP001", protocols=["ocpp2.0.1"], ssl_context=client_context)
        await gate.done.wait()
    assert not gate.requests


async def test_plain_client_on_a_tls_port_is_dropped(ca: trustme.CA) -> None:
    async with tls_server(csms_context(ca)) as (gate, url):
        with pytest.raises(HandshakeError):
            await open_websocket(url.replace("wss://", "ws://"), "CP001", protocols=["ocpp2.0.1"])
        await gate.done.wait()
    assert "TLS handshake failed" in str(gate.errors[0])


async def test_binary_frame_over_tls_fails_with_1003(ca: trustme.CA) -> None:
    async with tls_server(csms_context(ca)) as (gate, url):
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        raw = await RawWebSocket.connect(
            port,
            ssl_context=client_ssl_context(cadata=ca.cert_pem.bytes().decode()),
            subprotocols=["ocpp2.0.1"],
        )
        await raw.send(BytesMessage(data=b"\x00"))
        event = await raw.next_event()
        assert isinstance(event, CloseConnection) and event.code == 1003
        await gate.done.wait()  # no half-close on TLS: the server hangs up without lingering
        await raw.aclose()


def test_contexts_refuse_anything_older_than_tls_1_2() -> None:
    for context in (client_ssl_context(), server_ssl_context()):
        assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
        assert context.options & ssl.OP_NO_COMPRESSION
    assert client_ssl_context().verify_mode == ssl.CERT_REQUIRED
    assert client_ssl_context().check_hostname
    assert server_ssl_context().verify_mode == ssl.CERT_NONE


# -- OCPP's TLS 1.2 suites, RSA and ECDSA certificates side by side --------------------------


@pytest.fixture(scope="module")
def dual_certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path, Path]:
    """A CA, and the CSMS's RSA and ECDSA certificates (key inside) as files."""
    ca = trustme.CA(key_type=trustme.KeyType.RSA)
    folder = tmp_path_factory.mktemp("dual")
    files = []
    for key_type in (trustme.KeyType.RSA, trustme.KeyType.ECDSA):
        path = folder / f"csms-{key_type.name.lower()}.pem"
        ca.issue_cert("localhost", key_type=key_type).private_key_and_cert_chain_pem.write_to_path(str(path))
        files.append(path)
    return ca, files[0], files[1]


def tls12_station(ca: trustme.CA, cipher: str) -> ssl.SSLContext:
    """A station that speaks TLS 1.2 with just one suite."""
    context = client_ssl_context(cadata=ca.cert_pem.bytes().decode())
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(cipher)
    return context


async def negotiated(url: str, context: ssl.SSLContext) -> tuple[str, str]:
    ws = await open_websocket(url, "CP001", protocols=["ocpp2.0.1"], ssl_context=context)
    try:
        name, version, _ = ws.extra(TLSAttribute.cipher)
        return name, version
    finally:
        await ws.close()


@pytest.mark.parametrize(
    ("cipher", "key_type"),
    [
        ("AES128-GCM-SHA256", "RSA"),  # TLS_RSA_WITH_AES_128_GCM_SHA256: plain RSA key exchange
        ("AES256-GCM-SHA384", "RSA"),
        ("ECDHE-RSA-AES128-GCM-SHA256", "RSA"),
        ("ECDHE-RSA-AES256-GCM-SHA384", "RSA"),
        ("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDSA"),
        ("ECDHE-ECDSA-AES256-GCM-SHA384", "ECDSA"),
    ],
)
async def test_ocpp_tls12_suites_with_rsa_and_ecdsa_certificates_at_once(
    dual_certs: tuple[trustme.CA, Path, Path], cipher: str, key_type: str
) -> None:
    ca, rsa, ecdsa = dual_certs
    context = server_ssl_context(rsa, extra_certs=[(ecdsa, None)])
    async with tls_server(context) as (gate, url):
        assert await negotiated(url, tls12_station(ca, cipher)) == (cipher, "TLSv1.2")
    assert gate.requests  # the station reached the CSMS over that suite


async def test_plain_rsa_suite_with_the_rsa_certificate_alone(
    dual_certs: tuple[trustme.CA, Path, Path],
) -> None:
    ca, rsa, _ = dual_certs
    async with tls_server(server_ssl_context(rsa)) as (_, url):
        assert await negotiated(url, tls12_station(ca, "AES128-GCM-SHA256")) == (
            "AES128-GCM-SHA256",
            "TLSv1.2",
        )
        # The ECDSA suites need the ECDSA certificate.
        with pytest.raises(HandshakeError, match="TLS"):
            await negotiated(url, tls12_station(ca, "ECDHE-ECDSA-AES128-GCM-SHA256"))


async def test_tls13_and_suites_outside_the_list(dual_certs: tuple[trustme.CA, Path, Path]) -> None:
    ca, rsa, ecdsa = dual_certs
    async with tls_server(server_ssl_context(rsa, extra_certs=[(ecdsa, None, None)])) as (_, url):
        modern = client_ssl_context(cadata=ca.cert_pem.bytes().decode())
        assert (await negotiated(url, modern))[1] == "TLSv1.3"
        for outside in (
            "ECDHE-RSA-CHACHA20-POLY1305",
            "ECDHE-RSA-AES128-SHA256",
            "DHE-RSA-AES128-GCM-SHA256",
        ):
            with pytest.raises(HandshakeError, match="TLS"):
                await negotiated(url, tls12_station(ca, outside))


async def test_tls_1_1_station_is_refused(dual_certs: tuple[trustme.CA, Path, Path]) -> None:
    ca, rsa, ecdsa = dual_certs
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(cadata=ca.cert_pem.bytes().decode())
    with warnings.catch_warnings():  # what we build is the deprecated thing a CSMS must refuse
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("DEFAULT:@SECLEVEL=0")  # OpenSSL 3 speaks TLS < 1.2 only at level 0
    async with tls_server(server_ssl_context(rsa, extra_certs=[(ecdsa, None)])) as (gate, url):
        with pytest.raises(HandshakeError, match="TLS"):
            await negotiated(url, old)
        await gate.done.wait()
    assert "TLS handshake failed" in str(gate.errors[0]) and not gate.requests


def test_server_context_offers_exactly_the_ocpp_tls12_suites() -> None:
    tls12 = {c["name"] for c in server_ssl_context().get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert tls12 == set(OCPP_TLS12_CIPHERS.split(":"))
    default = {c["name"] for c in server_ssl_context(ciphers=None).get_ciphers()}
    assert "AES128-GCM-SHA256" not in default  # why the default list will not do
