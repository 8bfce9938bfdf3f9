"""Running ``python -m ocpprpc`` as a user does: fresh interpreters, real sockets on loopback."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: Generous: fresh interpreters on a busy machine.
WAIT = 30.0
BACKENDS = ("asyncio", "trio")
#: The first line ``serve`` prints: where it listens, and the URL stations use.
BANNER = re.compile(
    r"ocpprpc CSMS listening on (?P<url>wss?://127\.0\.0\.1:\d+)/;"
    r" stations connect to (?P=url)/ocpp/<identity>\n"
)

Arg = str | bytes


def cli(*args: Arg) -> list[Arg]:
    return [sys.executable, "-m", "ocpprpc", *args]


def environment(**extra: str | bytes) -> dict[bytes, bytes]:
    """This process's environment plus *extra* (bytes allowed: passwords need not be UTF-8)."""
    env = {os.fsencode(key): os.fsencode(value) for key, value in os.environ.items()}
    env.update({os.fsencode(key): os.fsencode(value) for key, value in extra.items()})
    return env


@contextmanager
def csms(
    log_path: Path, *args: Arg, port: int = 0, env: dict[bytes, bytes] | None = None
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Run ``serve``; yield the process and its base URL (logs go to *log_path*)."""
    with (
        log_path.open("w") as log,
        subprocess.Popen(
            cli("serve", "--port", str(port), *args),
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=env,
        ) as process,
    ):
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            match = BANNER.fullmatch(line)
            assert match, (line, log_path.read_text())
            yield process, match.group("url")
        finally:
            if process.poll() is None:
                process.kill()


def station(
    url: str, identity: str, *args: Arg, env: dict[bytes, bytes] | None = None
) -> subprocess.Popen[str]:
    """A ``--once`` station: one session, then its exit status says how it went."""
    return subprocess.Popen(
        cli("station", f"{url}/ocpp", identity, "--once", "--interval", "0", "--quiet", *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def one_error_line(stderr: str) -> str:
    """The single error line a failed command prints, without its ``prog: error:`` prefix."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    prefix = "python -m ocpprpc: error: "
    assert lines[0].startswith(prefix), stderr
    return lines[0].removeprefix(prefix)


def free_port() -> int:
    """A port nothing listens on right now (for a CSMS that must come back on the same port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
