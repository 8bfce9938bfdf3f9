"""OCPP security profiles 1-3 through connect()/serve(), with certificates made by trustme in the test."""

from __future__ import annotations

import base64
import logging
import ssl
from collections.abc import Mapping
from typing import Any

import anyio
import pytest
import trustme

import ocpprpc
from ocpprpc import Accept, HandshakeError, HandshakeRejected, Reject, StationRequest

from .helpers import PROMPT, ws_url

pytestmark = pytest.mark.timeout(20)

PASSWORD = b"s3cret:with colon \xff"  # 1.6 passwords may be binary
SECRET = b"Zm9vYmFyLXNlY3JldC10b2tlbg-7"


class PasswordCheck:
    """The auth callback a profile 1/2 CSMS writes: compare the Basic-auth password."""

    def __init__(self) -> None:
        self.requests: list[StationRequest] = []

    async def __call__(self, request: StationRequest) -> Accept | Reject:
        self.requests.append(request)
        if request.password != PASSWORD:
            return Reject(401)
        return Accept(data={"password checked": True})


def server_context(cert: trustme.LeafCert, client_ca: trustme.CA | None = None) -> ssl.SSLContext:
    context = ocpprpc.server_ssl_context(
        client_cadata=client_ca.cert_pem.bytes().decode() if client_ca is not None else None
    )
    cert.configure_cert(context)
    return context


def station_context(ca: trustme.CA, cert: trustme.LeafCert | None = None) -> ssl.SSLContext:
    context = ocpprpc.client_ssl_context(cadata=ca.cert_pem.bytes().decode())
    if cert is not None:
        cert.configure_cert(context)
    return context


async def heartbeat_ok(station: ocpprpc.Session) -> None:
    with pytest.raises(ocpprpc.OCPPError) as answer:  # no router: answered, just not supported
        await station.call("Heartbeat")
    assert answer.value.code is ocpprpc.ErrorCode.NOT_SUPPORTED


@pytest.mark.parametrize("identity", ["CP1", "CP:1"])
async def test_profile_1_basic_auth(identity: str) -> None:
    auth = PasswordCheck()
    async with ocpprpc.serve(auth=auth) as server:
        async with ocpprpc.connect(ws_url(server), identity, password=PASSWORD) as station:
            await heartbeat_ok(station)
            assert server.clients[identity].data == {"password checked": True}
        assert auth.requests[-1].identity == identity
        assert auth.requests[-1].username == identity

        with pytest.raises(HandshakeRejected) as wrong:
            async with ocpprpc.connect(ws_url(server), identity, password="wrong"):
                pass
        assert wrong.value.status == 401
        assert (b"www-authenticate", b'Basic realm="ocpp", charset="UTF-8"') in wrong.value.headers

        with pytest.raises(HandshakeRejected) as missing:
            async with ocpprpc.connect(ws_url(server), identity):
                pass
        assert missing.value.status == 401
        assert auth.requests[-1].password is None

        # A username other than the identity is refused before the application is asked.
        asked = len(auth.requests)
        token = base64.b64encode(b"OTHER:" + PASSWORD).decode()
        with pytest.raises(HandshakeRejected) as impostor:
            async with ocpprpc.connect(ws_url(server), identity, headers={"Authorization": f"Basic {token}"}):
                pass
        assert impostor.value.status == 401
        assert len(auth.requests) == asked


async def test_profile_2_tls_and_basic_auth(
    ca: trustme.CA, server_cert: trustme.LeafCert, station_ca: trustme.CA
) -> None:
    auth = PasswordCheck()
    async with ocpprpc.serve(auth=auth, ssl_context=server_context(server_cert)) as server:
        url = ws_url(server, secure=True)
        async with ocpprpc.connect(url, "CP2", password=PASSWORD, ssl_context=station_context(ca)) as station:
            await heartbeat_ok(station)

        with pytest.raises(HandshakeRejected) as wrong:
            async with ocpprpc.connect(url, "CP2", password=b"nope", ssl_context=station_context(ca)):
                pass
        assert wrong.value.status == 401

        # A station that trusts another CA does not talk to this CSMS at all.
        with pytest.raises(HandshakeError) as untrusted:
            wrong_ca = station_context(station_ca)
            async with ocpprpc.connect(url, "CP2", password=PASSWORD, ssl_context=wrong_ca):
                pass
        assert not isinstance(untrusted.value, HandshakeRejected)
        assert "certificate" in str(untrusted.value).lower()

        # Plain ws:// to a TLS port fails cleanly too.
        with pytest.raises(HandshakeError):
            async with ocpprpc.connect(ws_url(server), "CP2", password=PASSWORD, connect_timeout=PROMPT):
                pass

        async with ocpprpc.connect(url, "CP2", password=PASSWORD, ssl_context=station_context(ca)) as station:
            await heartbeat_ok(station)


async def test_profile_3_mutual_tls(
    ca: trustme.CA, server_cert: trustme.LeafCert, station_ca: trustme.CA
) -> None:
    certificates: list[dict[str, Any] | None] = []

    async def auth(request: StationRequest) -> Accept | Reject:
        certificates.append(request.client_certificate)
        assert request.client_certificate is not None  # CERT_REQUIRED: never None here
        subject = dict(rdn[0] for rdn in request.client_certificate["subject"])
        if subject.get("commonName") != request.identity:
            return Reject(403, "certificate issued to another station")
        return Accept(data={"der": request.client_certificate_der})

    station_cert = station_ca.issue_cert("cp3.example", common_name="CP3")
    context = server_context(server_cert, client_ca=station_ca)
    async with ocpprpc.serve(auth=auth, ssl_context=context) as server:
        url = ws_url(server, secure=True)
        async with ocpprpc.connect(url, "CP3", ssl_context=station_context(ca, station_cert)) as station:
            await heartbeat_ok(station)
            der = server.clients["CP3"].data["der"]
            assert isinstance(der, bytes) and der
        assert certificates and certificates[0] is not None

        # The same certificate presented by another identity: the application refuses it.
        with pytest.raises(HandshakeRejected) as other:
            async with ocpprpc.connect(url, "CP4", ssl_context=station_context(ca, station_cert)):
                pass
        assert other.value.status == 403

        # No certificate: the TLS handshake fails; the application is never asked.
        asked = len(certificates)
        with pytest.raises(HandshakeError) as no_cert:
            async with ocpprpc.connect(url, "CP3", ssl_context=station_context(ca)):
                pass
        assert not isinstance(no_cert.value, HandshakeRejected)

        # A certificate from a CA the CSMS does not trust: the same.
        foreign = ca.issue_cert("cp3.example", common_name="CP3")
        with pytest.raises(HandshakeError) as untrusted:
            async with ocpprpc.connect(url, "CP3", ssl_context=station_context(ca, foreign)):
                pass
        assert not isinstance(untrusted.value, HandshakeRejected)
        assert len(certificates) == asked

        async with ocpprpc.connect(url, "CP3", ssl_context=station_context(ca, station_cert)) as station:
            await heartbeat_ok(station)


# -- the certificate must name the station (ocpprpc.certificate_identity) -----------------


async def outcome(url: str, identity: str, context: ssl.SSLContext, password: bytes | None = None) -> int:
    """101 for accepted, else the HTTP status the station was refused with."""
    try:
        async with ocpprpc.connect(url, identity, ssl_context=context, password=password):
            return 101
    except HandshakeRejected as refused:
        assert refused.status is not None
        return refused.status


async def test_certificate_identity_refuses_another_stations_certificate(
    ca: trustme.CA, server_cert: trustme.LeafCert, station_ca: trustme.CA
) -> None:
    cp001 = station_context(ca, station_ca.issue_cert("cp001.example", common_name="CP001"))
    cp002 = station_context(ca, station_ca.issue_cert("cp002.example", common_name="CP002"))
    context = server_context(server_cert, client_ca=station_ca)
    async with ocpprpc.serve(auth=ocpprpc.certificate_identity(), ssl_context=context) as server:
        url = ws_url(server, secure=True)
        assert await outcome(url, "CP001", cp001) == 101
        assert await outcome(url, "CP002", cp002) == 101
        with pytest.raises(HandshakeRejected) as refused:
            async with ocpprpc.connect(url, "CP001", ssl_context=cp002):
                pass
        assert refused.value.status == 403
        assert refused.value.body == b"the client certificate was not issued to this station identity"
        # The DNS name is a name of the certificate too (default fields: CN, DNS, URI).
        assert await outcome(url, "cp002.example", cp002) == 101
        assert await outcome(url, "cp002", cp002) == 403  # exact match only


async def test_certificate_identity_fields_and_mapping_are_configurable(
    ca: trustme.CA, server_cert: trustme.LeafCert, station_ca: trustme.CA
) -> None:
    cert = station_context(
        ca, station_ca.issue_cert("cp9.example", common_name="CP9", organization_name="CPO")
    )
    context = server_context(server_cert, client_ca=station_ca)
    async with ocpprpc.serve(auth=ocpprpc.certificate_identity(fields=["CN"]), ssl_context=context) as server:
        url = ws_url(server, secure=True)
        assert await outcome(url, "CP9", cert) == 101
        assert await outcome(url, "cp9.example", cert) == 403

    def by_organization(certificate: Mapping[str, Any]) -> list[str]:
        subject = dict(pair for rdn in certificate["subject"] for pair in rdn)
        return [f"{subject['organizationName']}-{subject['commonName']}"]

    check = ocpprpc.certificate_identity(names=by_organization, status=401)
    async with ocpprpc.serve(auth=check, ssl_context=context) as server:
        url = ws_url(server, secure=True)
        assert await outcome(url, "CPO-CP9", cert) == 101
        assert await outcome(url, "CP9", cert) == 401


async def test_certificate_identity_without_a_certificate_is_refused(
    ca: trustme.CA, server_cert: trustme.LeafCert
) -> None:
    # Profile 2 server (no client CA): no certificate is asked for, so none is seen.
    check = ocpprpc.certificate_identity()
    async with ocpprpc.serve(auth=check, ssl_context=server_context(server_cert)) as server:
        assert await outcome(ws_url(server, secure=True), "CP001", station_context(ca)) == 403


async def test_certificate_identity_and_password_combined(
    ca: trustme.CA, server_cert: trustme.LeafCert, station_ca: trustme.CA
) -> None:
    cp001 = station_context(ca, station_ca.issue_cert("cp001.example", common_name="CP001"))
    cp002 = station_context(ca, station_ca.issue_cert("cp002.example", common_name="CP002"))
    table = ocpprpc.PasswordTable({"CP001": PASSWORD, "CP002": PASSWORD}, plaintext=True)
    check = ocpprpc.all_of(ocpprpc.certificate_identity(), table)
    async with ocpprpc.serve(auth=check, ssl_context=server_context(server_cert, station_ca)) as server:
        url = ws_url(server, secure=True)
        assert await outcome(url, "CP001", cp001, PASSWORD) == 101
        assert await outcome(url, "CP001", cp001) == 401  # right certificate, no password
        assert await outcome(url, "CP001", cp002, PASSWORD) == 403  # right password, wrong certificate


def test_certificate_names_reads_cn_and_subject_alternative_names() -> None:
    certificate = {
        "subject": ((("organizationName", "CPO"),), (("commonName", "CP001"),)),
        "subjectAltName": (
            ("DNS", "cp001.example"),
            ("URI", "urn:ocpp:cs:CP001"),
            ("IP Address", "10.0.0.1"),
        ),
    }
    assert ocpprpc.certificate_names(certificate) == ["CP001", "cp001.example", "urn:ocpp:cs:CP001"]
    assert ocpprpc.certificate_names(certificate, ["URI"]) == ["urn:ocpp:cs:CP001"]
    assert ocpprpc.certificate_names(certificate, ["CN", "IP Address"]) == ["CP001", "10.0.0.1"]
    assert ocpprpc.certificate_names({}) == []
    with pytest.raises(TypeError):
        ocpprpc.certificate_identity(fields=[b"CN"])  # type: ignore[list-item]


# -- station identities -------------------------------------------------------------------


async def test_server_refuses_identities_ocpp_does_not_allow() -> None:
    seen: list[str] = []

    async def auth(request: StationRequest) -> Accept:
        seen.append(request.identity)
        return Accept()

    async with ocpprpc.serve(auth=auth) as server:
        for hostile in ("../../etc/passwd", "..", "CP\u041e01", "CP\x00", "x" * 49):
            with pytest.raises(HandshakeRejected) as refused:
                async with ocpprpc.connect(ws_url(server), hostile):
                    pass
            assert refused.value.status == 400 and b"invalid station identity" in refused.value.body
        async with ocpprpc.connect(ws_url(server), "CP001"):
            pass
    assert seen == ["CP001"]  # the application never saw the others


async def test_server_identity_check_is_configurable() -> None:
    def registry_names(identity: str) -> None:
        if not identity.startswith("site-") or "/" in identity:
            raise ValueError("is not a registered site name")

    async with ocpprpc.serve(identity_check=registry_names) as server:
        async with ocpprpc.connect(ws_url(server), "site-Ladesäule-" + "7" * 48):
            pass
        with pytest.raises(HandshakeRejected) as refused:
            async with ocpprpc.connect(ws_url(server), "CP001"):
                pass
        assert refused.value.body == b"invalid station identity: it is not a registered site name\n"


# -- credentials never echoed ---------------------------------------------------------------


async def raw_request(server: ocpprpc.Server, request: bytes) -> bytes:
    """Send ``request`` over a plain socket; return everything the server answers."""
    answer = b""
    async with await anyio.connect_tcp("127.0.0.1", server.port) as stream:
        await stream.send(request)
        with anyio.fail_after(PROMPT):
            try:
                while True:
                    answer += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
    return answer


@pytest.mark.parametrize(
    "line",
    [
        b"Authorization Basic " + base64.b64encode(b"CP001:" + SECRET),  # no colon
        b"Authorization: Basic " + base64.b64encode(b"CP001:" + SECRET) + b"\x00",
        b"authorization : Basic " + base64.b64encode(b"CP001:" + SECRET),
        b"Proxy-Authorization " + SECRET,
        b"Cookie: session=" + SECRET + b"\r\n folded\x00",
    ],
    ids=["no-colon", "nul", "space-before-colon", "proxy", "cookie-folded"],
)
async def test_malformed_credentials_are_never_echoed_or_logged(
    line: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    request = b"GET /ocpp/CP001 HTTP/1.1\r\nHost: localhost\r\n" + line + b"\r\n\r\n"
    async with ocpprpc.serve(auth=ocpprpc.PasswordTable({"CP001": SECRET}, plaintext=True)) as server:
        answer = await raw_request(server, request)
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert answer.endswith(b"\r\n\r\nmalformed HTTP request (illegal header line)\n")
    for secret in (SECRET, base64.b64encode(b"CP001:" + SECRET)):
        assert secret not in answer
        assert secret.decode() not in caplog.text
    assert "handshake refused: HTTP 400: malformed HTTP request (illegal header line)" in caplog.text
