"""``python -m ocpprpc serve`` and ``station`` talking to each other, as a user runs them.

Plain (synchronous) tests driving subprocesses: the backend under test is the
CLI's ``--backend``, not the test's, so these need not run once per anyio backend.
Stations run concurrently to keep the whole file to a few seconds.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from .helpers import BACKENDS, WAIT, csms, station

pytestmark = pytest.mark.timeout(60)

VERSIONS = ("ocpp1.6", "ocpp2.0.1", "ocpp2.1")


@pytest.mark.parametrize(
    ("serve_backend", "stop"),
    [("asyncio", signal.SIGTERM), ("trio", signal.SIGINT)],
    ids=["asyncio-SIGTERM", "trio-SIGINT"],
)
def test_serve_and_station_talk_on_every_version_and_backend(
    tmp_path: Path, serve_backend: str, stop: signal.Signals
) -> None:
    with csms(tmp_path / "serve.log", "--backend", serve_backend) as (server, url):
        # Each version on each backend, across the two runs: stations on the other backend than the CSMS.
        backend = next(other for other in BACKENDS if other != serve_backend)
        stations = {
            (version, backend): station(
                url, f"CP-{version}-{backend}", "--protocol", version, "--backend", backend
            )
            for version in VERSIONS
        }
        for (version, backend), process in stations.items():
            out, err = process.communicate(timeout=WAIT)
            assert process.returncode == 0, (version, backend, err)
            assert f"CP-{version}-{backend} connected to {url}/ocpp speaking {version}" in out
            assert f"CP-{version}-{backend} finished a charging session" in out
            assert err == ""  # --quiet: warnings and errors only; validation passed both ways
        server.send_signal(stop)
        assert server.wait(WAIT) == 0
    exchange = (tmp_path / "serve.log").read_text()
    assert "Traceback" not in exchange
    assert "WARNING" not in exchange and "ERROR" not in exchange
    for version in VERSIONS:
        assert f"station 'CP-{version}-{backend}' connected ({version})" in exchange


def test_a_station_that_cannot_connect_says_why_in_one_line(tmp_path: Path) -> None:
    with csms(tmp_path / "serve.log", "--security-profile", "1", "--password", "s3cret") as (server, url):
        wrong = station(url, "CP1", "--password", "wrong")
        _, err = wrong.communicate(timeout=WAIT)
        assert wrong.returncode == 1
        assert err.splitlines() == [
            f"python -m ocpprpc: error: CP1: cannot connect to {url}/ocpp: "
            "server rejected the WebSocket upgrade: HTTP 401 Unauthorized: Unauthorized"
        ]
        right = station(url, "CP1", "--password", "s3cret")
        out, err = right.communicate(timeout=WAIT)
        assert right.returncode == 0, err
        assert "CP1 finished a charging session" in out

        server.send_signal(signal.SIGTERM)
        assert server.wait(WAIT) == 0

    # Nobody listening any more: one line too.
    gone = station(url, "CP3")
    _, err = gone.communicate(timeout=WAIT)
    assert gone.returncode == 1
    assert len(err.splitlines()) == 1
    assert err.startswith(f"python -m ocpprpc: error: CP3: cannot connect to {url}/ocpp: ")


def test_serve_rate_limits_and_logs_security_events_as_json(tmp_path: Path) -> None:
    """``--rate-limit`` refuses a station's surplus MeterValues; ``--security-log`` prints each as JSON."""
    log_path = tmp_path / "serve.log"
    flags = ["--rate-limit", "MeterValues=1/60", "--rate-limit", "*=100/1m"]
    flags += ["--rate-limit-action", "callerror"]
    admission = ("--max-connections", "10", "--upgrade-rate", "20/10", "--allow-ip", "127.0.0.0/8")
    with csms(log_path, *flags, *admission, "--security-log") as (server, url):
        flooder = station(url, "CP1", "--meter-values", "3")
        _, err = flooder.communicate(timeout=WAIT)
        assert flooder.returncode == 1  # --once: a refused call fails the session, in one line
        assert "CP1: GenericError: rate limit exceeded: MeterValues limit 1/60s" in err
        neighbour = station(url, "CP2", "--meter-values", "1")
        _, err = neighbour.communicate(timeout=WAIT)
        assert neighbour.returncode == 0 and err == "", err
        server.send_signal(signal.SIGTERM)
        assert server.wait(WAIT) == 0
    events = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    assert [(e["kind"], e["identity"]) for e in events] == [
        ("station_connected", "CP1"),
        ("rate_limited", "CP1"),
        ("station_disconnected", "CP1"),
        ("station_connected", "CP2"),
        ("station_disconnected", "CP2"),
    ]
    limited = events[1]
    assert (limited["action"], limited["on_breach"]) == ("MeterValues", "callerror")
    assert limited["limit"] == "1/60s" and limited["peer"] == "127.0.0.1"
