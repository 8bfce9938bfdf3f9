"""``python -m ocpprpc serve`` at security profile 3: the station certificate must name the station.

Plain tests driving subprocesses (the CLI picks its own backend); certificates
made by trustme in the test and written to files, as a user would pass them.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from .helpers import BANNER

pytestmark = pytest.mark.timeout(60)

WAIT = 30.0


@dataclass
class Pki:
    """PEM files: the CSMS certificate and CA, the station CA, and station certificates."""

    root: Path
    ca: Path
    server: Path
    client_ca: Path
    stations: trustme.CA

    def station(self, name: str, common_name: str) -> Path:
        path = self.root / f"{name}.pem"
        cert = self.stations.issue_cert(f"{name}.example", common_name=common_name)
        cert.private_key_and_cert_chain_pem.write_to_path(str(path))
        return path


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca, stations = trustme.CA(), trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    stations.cert_pem.write_to_path(str(tmp_path / "client-ca.pem"))
    ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(
        str(tmp_path / "server.pem")
    )
    return Pki(tmp_path, tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "client-ca.pem", stations)


def ocpprpc(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "ocpprpc", *map(str, args)]


@contextmanager
def csms(log_path: Path, *args: str | Path) -> Iterator[str]:
    """Run ``serve --port 0`` with ``args``; yield its wss:// URL."""
    with (
        log_path.open("w") as log,
        subprocess.Popen(
            ocpprpc("serve", "--port", "0", *args), stdout=subprocess.PIPE, stderr=log, text=True
        ) as process,
    ):
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            match = BANNER.fullmatch(line)
            assert match, (line, log_path.read_text())
            yield match.group("url")
        finally:
            process.kill()


def station(url: str, identity: str, pki: Pki, cert: Path) -> tuple[int, str]:
    done = subprocess.run(
        ocpprpc(
            "station",
            f"{url}/ocpp",
            identity,
            "--once",
            "--interval",
            "0",
            "--quiet",
            "--ca",
            pki.ca,
            "--cert",
            cert,
        ),
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    return done.returncode, done.stderr


def test_profile_3_station_must_present_its_own_certificate(pki: Pki) -> None:
    cp001, cp002 = pki.station("cp001", "CP001"), pki.station("cp002", "CP002")
    profile_3 = ("--security-profile", "3", "--cert", pki.server, "--client-ca", pki.client_ca)
    with csms(pki.root / "serve.log", *profile_3) as url:
        code, err = station(url, "CP001", pki, cp002)
        assert code == 1 and "HTTP 403" in err, err
        code, err = station(url, "CP001", pki, cp001)
        assert code == 0, err
    assert "CP001: client certificate issued to another identity" in (pki.root / "serve.log").read_text()

    with csms(pki.root / "serve-unchecked.log", *profile_3, "--no-cert-identity-check") as url:
        code, err = station(url, "CP001", pki, cp002)
        assert code == 0, err


def tls12_cipher(url: str, ca: Path, cipher: str) -> str:
    """Complete a TLS 1.2 handshake offering only ``cipher``; the suite the CSMS agreed to."""
    host, port = url.removeprefix("wss://").split(":")
    context = ssl.create_default_context(cafile=str(ca))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(cipher)
    with (
        socket.create_connection((host, int(port)), timeout=WAIT) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        negotiated = tls.cipher()
        assert negotiated is not None
        return negotiated[0]


def test_serve_takes_an_rsa_and_an_ecdsa_certificate(tmp_path: Path) -> None:
    ca = trustme.CA(key_type=trustme.KeyType.RSA)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    args: list[str | Path] = ["--security-profile", "2", "--password", "a-long-password-0"]
    for key_type in ("rsa", "ecdsa"):
        cert = ca.issue_cert("127.0.0.1", "localhost", key_type=trustme.KeyType[key_type.upper()])
        cert.cert_chain_pems[0].write_to_path(str(tmp_path / f"{key_type}.crt"))
        cert.private_key_pem.write_to_path(str(tmp_path / f"{key_type}.key"))
        args += ["--cert", tmp_path / f"{key_type}.crt", "--key", tmp_path / f"{key_type}.key"]
    with csms(tmp_path / "serve.log", *args) as url:
        for cipher in ("AES128-GCM-SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384"):
            assert tls12_cipher(url, tmp_path / "ca.pem", cipher) == cipher

    mismatched = ocpprpc("serve", *args[:-2], "--port", "0")  # two certificates, one key
    done = subprocess.run(mismatched, capture_output=True, text=True, timeout=WAIT)
    assert done.returncode != 0 and "one --key per --cert" in done.stderr
