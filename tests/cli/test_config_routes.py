"""``serve --config`` with ``[[routes]]`` and ``[[listeners]]``: served, on real sockets."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import pytest
import trustme

from .helpers import BACKENDS, WAIT, cli

LISTENING = re.compile(r"ocpprpc CSMS listening on (?P<url>wss?://127\.0\.0\.1:\d+)/ \((?P<name>\w+)\)\n")

CONFIG = """
protocols = ["ocpp1.6"]

[[routes]]
name = "acme"
pattern = "/acme/{{identity}}"
[routes.rate_limits]
MeterValues = "1/60"
on_breach = "callerror"

[[routes]]
name = "open"
pattern = "/open/{{identity}}"

[[listeners]]
name = "plain"
host = "127.0.0.1"
port = 0
routes = ["acme"]

[[listeners]]
name = "secure"
host = "127.0.0.1"
port = 0
cert = "{cert}"
key = "{key}"
routes = ["open"]
"""


def station(url: str, identity: str, *args: str) -> tuple[int, str]:
    done = subprocess.run(
        cli("station", url, identity, "--once", "--interval", "0", "--quiet", "--protocol", "ocpp1.6", *args),
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    return done.returncode, done.stderr


@pytest.mark.parametrize("serve_backend", BACKENDS)
def test_routes_and_listeners_from_the_file_are_served(tmp_path: Path, serve_backend: str) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    leaf.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    config = tmp_path / "csms.toml"
    config.write_text(CONFIG.format(cert="server.pem", key="server.pem"))
    log_path = tmp_path / "serve.log"
    with (
        log_path.open("w") as log,
        subprocess.Popen(
            cli("serve", "--config", str(config), "--backend", serve_backend),
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        ) as server,
    ):
        try:
            assert server.stdout is not None
            urls = {}
            for _ in range(2):
                line = server.stdout.readline()
                match = LISTENING.fullmatch(line)
                assert match, (line, log_path.read_text())
                urls[match.group("name")] = match.group("url")
            assert urls["plain"].startswith("ws://") and urls["secure"].startswith("wss://")
            # The acme route's own limit: one MeterValues a minute, the second refused.
            code, err = station(f"{urls['plain']}/acme", "CP1", "--meter-values", "2")
            assert code == 1 and "rate limit exceeded: MeterValues limit 1/60s" in err, err
            # The open route on the TLS listener: no limit.
            code, err = station(
                f"{urls['secure']}/open", "CP2", "--meter-values", "2", "--ca", str(tmp_path / "ca.pem")
            )
            assert code == 0 and err == "", err
            # The plain listener serves acme only: any other path is 404.
            code, err = station(f"{urls['plain']}/open", "CP3")
            assert code == 1 and "HTTP 404" in err, err
            server.send_signal(signal.SIGTERM)
            assert server.wait(WAIT) == 0
        finally:
            if server.poll() is None:
                server.kill()
    assert "Traceback" not in log_path.read_text()
