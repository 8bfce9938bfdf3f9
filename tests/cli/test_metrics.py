"""``python -m ocpprpc serve --metrics`` (and ``--metrics-port``), run as a user runs it, on each backend."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .helpers import BACKENDS, WAIT, cli, csms, one_error_line, station

pytestmark = pytest.mark.timeout(90)


def get(port: int, path: str) -> tuple[int, bytes]:
    """A plain HTTP GET over a real socket: the status and the body."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_serve_metrics_on_the_station_port(tmp_path: Path, backend: str) -> None:
    with csms(tmp_path / "serve.log", "--backend", backend, "--metrics", "--quiet") as (process, url):
        assert process.stdout is not None
        metrics_url = process.stdout.readline().strip()
        port = port_of(url)
        assert metrics_url == f"metrics on http://127.0.0.1:{port}/metrics (and /health)"
        done = station(url, "CP1", "--backend", backend)
        _, err = done.communicate(timeout=WAIT)
        assert done.returncode == 0, err
        status, body = get(port, "/metrics")
        assert status == 200
        values = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body.decode())
            for sample in family.samples
        }
        labels = (("action", "BootNotification"), ("direction", "in"), ("outcome", "ok"))
        boot = ("ocpprpc_calls_total", labels)
        assert values[boot] == 1
        assert values[("ocpprpc_handshakes_total", (("outcome", "accepted"),))] == 1
        status, body = get(port, "/health")
        assert status == 200
        assert json.loads(body)["status"] == "ok"


@pytest.mark.parametrize("backend", BACKENDS)
def test_serve_metrics_on_a_port_of_its_own(tmp_path: Path, backend: str) -> None:
    args = ("--backend", backend, "--metrics", "--metrics-port", "0", "--quiet")
    with csms(tmp_path / "serve.log", *args) as (process, url):
        assert process.stdout is not None
        line = process.stdout.readline()
        metrics_port = port_of(line.split("http://", 1)[1].split("/metrics")[0])
        assert metrics_port != port_of(url)
        assert get(metrics_port, "/health")[0] == 200
        assert get(metrics_port, "/metrics")[0] == 200
        assert get(metrics_port, "/elsewhere")[0] == 404
        assert get(port_of(url), "/metrics")[0] == 426  # the station port has no side door then


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_metrics_port_in_use_is_one_line_and_exit_status_1(backend: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            cli("serve", "--port", "0", "--backend", backend, "--metrics", "--metrics-port", str(port)),
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=False,
        )
    assert done.returncode == 1
    assert one_error_line(done.stderr).startswith(f"cannot listen on 127.0.0.1:{port}: ")
