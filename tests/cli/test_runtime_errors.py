"""Run-time failures: one line on stderr, exit status 1, on either ``--backend``.

Port in use, connection refused, HTTP 401 and a TLS certificate the station
cannot verify: each a real socket on loopback, each CLI run on both backends.
"""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

import pytest
import trustme

from .helpers import BACKENDS, WAIT, cli, csms, one_error_line, station

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("backend", BACKENDS)
def test_serve_on_a_port_in_use(backend: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            cli("serve", "--port", str(port), "--backend", backend),
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=False,
        )
    assert done.returncode == 1
    assert one_error_line(done.stderr).startswith(f"cannot listen on 127.0.0.1:{port}: ")
    assert done.stdout == ""


@pytest.mark.parametrize("backend", BACKENDS)
def test_once_station_with_nobody_listening(backend: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"ws://127.0.0.1:{sock.getsockname()[1]}"  # bound, never listening: refused
        refused = station(url, "CP1", "--backend", backend)
        _, err = refused.communicate(timeout=WAIT)
    assert refused.returncode == 1
    assert one_error_line(err).startswith(f"CP1: cannot connect to {url}/ocpp: ")


@pytest.mark.parametrize("backend", BACKENDS)
def test_wrong_password_is_http_401_with_and_without_once(tmp_path: Path, backend: str) -> None:
    serve_backend = next(other for other in BACKENDS if other != backend)
    args = ("--security-profile", "1", "--password", "s3cret", "--backend", serve_backend)
    with csms(tmp_path / "serve.log", *args) as (server, url):
        once = station(url, "CP1", "--password", "wrong", "--backend", backend)
        # Without --once the station reconnects after losses, but not after a 401: retrying cannot help.
        staying = subprocess.Popen(
            cli("station", f"{url}/ocpp", "CP2", "--password", "wrong", "--backend", backend),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        _, once_err = once.communicate(timeout=WAIT)
        staying_out, staying_err = staying.communicate(timeout=WAIT)
        server.send_signal(signal.SIGTERM)
        assert server.wait(WAIT) == 0
    assert once.returncode == 1
    assert one_error_line(once_err) == (
        f"CP1: cannot connect to {url}/ocpp: "
        "server rejected the WebSocket upgrade: HTTP 401 Unauthorized: Unauthorized"
    )
    assert staying.returncode == 1
    assert staying_out == ""
    assert one_error_line(staying_err) == (
        f"CP2: gave up connecting to {url}/ocpp: the CSMS answered the upgrade with HTTP 401"
        " (bad credentials); retrying cannot change that"
    )


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, and a CSMS certificate for 127.0.0.1 it signed (PEM files in a directory)."""
    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(folder / "ca.pem")
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.private_key_and_cert_chain_pem.write_to_path(folder / "csms.pem")
    trustme.CA().cert_pem.write_to_path(folder / "other-ca.pem")
    return folder


@pytest.mark.parametrize("backend", BACKENDS)
def test_tls_the_station_cannot_verify_and_then_can(tmp_path: Path, tls_files: Path, backend: str) -> None:
    serve_backend = next(other for other in BACKENDS if other != backend)
    (tmp_path / "password").write_text("s3cret\n")
    profile_2 = ("--security-profile", "2", "--password-file", str(tmp_path / "password"))
    with csms(
        tmp_path / "serve.log", *profile_2, "--cert", str(tls_files / "csms.pem"), "--backend", serve_backend
    ) as (server, url):
        assert url.startswith("wss://")
        untrusted = station(
            url, "CP1", "--password", "s3cret", "--ca", str(tls_files / "other-ca.pem"), "--backend", backend
        )
        trusted = station(
            url, "CP2", "--password", "s3cret", "--ca", str(tls_files / "ca.pem"), "--backend", backend
        )
        _, untrusted_err = untrusted.communicate(timeout=WAIT)
        trusted_out, trusted_err = trusted.communicate(timeout=WAIT)
        server.send_signal(signal.SIGTERM)
        assert server.wait(WAIT) == 0
    assert untrusted.returncode == 1
    line = one_error_line(untrusted_err)
    assert line.startswith(f"CP1: cannot connect to {url}/ocpp: "), line
    assert "certificate verify failed" in line, line
    assert trusted.returncode == 0, trusted_err
    assert "CP2 finished a charging session" in trusted_out
