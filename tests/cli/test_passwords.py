"""Passwords from the command line, the environment or a file; OCPP 1.6 passwords may be any bytes."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from .helpers import BACKENDS, WAIT, csms, environment, station

pytestmark = pytest.mark.timeout(60)

#: Not UTF-8: argv and the environment carry it as surrogate escapes, the CLI must send these bytes.
BINARY = b"\xff\xfe\x80s3cret\xc3"


@pytest.mark.parametrize("serve_backend", BACKENDS)
def test_a_binary_password_from_argv_env_or_file(tmp_path: Path, serve_backend: str) -> None:
    (tmp_path / "password").write_bytes(BINARY + b"\n")
    backend = next(other for other in BACKENDS if other != serve_backend)
    args = ("--security-profile", "1", "--password", BINARY, "--backend", serve_backend)
    with csms(tmp_path / "serve.log", *args) as (server, url):
        stations = {
            "argv": station(url, "CP1", "--password", BINARY, "--backend", backend),
            "env": station(url, "CP2", "--password-env", "CP_PASSWORD", env=environment(CP_PASSWORD=BINARY)),
            "file": station(url, "CP3", "--password-file", str(tmp_path / "password"), "--backend", backend),
        }
        for how, process in stations.items():
            out, err = process.communicate(timeout=WAIT)
            assert process.returncode == 0, (how, err)
            assert "finished a charging session" in out, how
        server.send_signal(signal.SIGTERM)
        assert server.wait(WAIT) == 0
    assert "Traceback" not in (tmp_path / "serve.log").read_text()


@pytest.mark.parametrize(
    ("source", "content"),
    [("file", b"s3cret"), ("file", b"s3cret\n"), ("file", b"s3cret\r\n"), ("env", b"s3cret")],
    ids=["file", "file-LF", "file-CRLF", "env"],
)
def test_serve_reads_its_password_from_a_file_or_the_environment(
    tmp_path: Path, source: str, content: bytes
) -> None:
    (tmp_path / "password").write_bytes(content)
    option = ("--password-file", str(tmp_path / "password")) if source == "file" else ("--password-env", "PW")
    env = environment(PW=content)
    with csms(tmp_path / "serve.log", "--security-profile", "1", *option, env=env) as (server, url):
        right, wrong = (
            station(url, "CP1", "--password", "s3cret"),
            station(url, "CP2", "--password", "s3cret\n"),
        )
        right.communicate(timeout=WAIT)
        wrong.communicate(timeout=WAIT)
        assert right.returncode == 0
        assert wrong.returncode == 1  # a file's trailing newline is the file's, not the password's
        server.send_signal(signal.SIGTERM)
        assert server.wait(WAIT) == 0
