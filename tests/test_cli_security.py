"""``python -m ocpprpc serve`` at security profile 3: the station certificate must name the station.

Plain tests driving subprocesses (the CLI picks its own backend); certificates
made by trustme in the test and written to files, as a user would pass them.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

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
            match = re.fullmatch(r"ocpprpc CSMS listening on (wss://127\.0\.0\.1:\d+)/\n", line)
            assert match, (line, log_path.read_text())
            yield match.group(1)
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
