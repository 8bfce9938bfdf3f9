"""libFuzzer target (atheris): any bytes sent as an upgrade request to a real CSMS get an HTTP
answer or a close; the server stays up and never echoes a credential.

The CSMS (``ocpprpc.Server``) runs on loopback in a background event loop
(``FUZZ_BACKEND``: asyncio, the default, or trio); each input is written to a new TCP
connection, which is then half-closed and read until the server closes it. Run through nox
(``nox -s fuzz``) or directly:
``python fuzz/fuzz_handshake.py -max_total_time=60 fuzz/corpus/handshake``.
"""

from __future__ import annotations

import os
import re
import socket
import sys

import anyio.from_thread
import atheris

with atheris.instrument_imports():
    # Names, not the package: ocpprpc imports its parts lazily, and only what is imported
    # inside this block is instrumented (the server, the handshake, h11 and wsproto with it).
    from ocpprpc import Server

#: Seeded in the corpus inside Authorization headers (Basic CP001:secret): never echoed.
CREDENTIAL = b"Q1AwMDE6c2VjcmV0"
STATUS_LINE = re.compile(rb"HTTP/1\.1 [1-5]\d\d ")
#: A missing answer within this long is a finding (the server holds a request it cannot read
#: for at most its handshake timeout, 1 s here).
ANSWER_WITHIN = 5.0


class Target:
    def __init__(self, backend: str) -> None:
        self._portal_cm = anyio.from_thread.start_blocking_portal(backend)
        self._portal = self._portal_cm.__enter__()
        self.server = Server(handshake_timeout=1.0)
        self._serving, _ = self._portal.start_task(self.server.serve, "127.0.0.1", 0)

    def port(self) -> int:
        """The server's port; if it stopped serving, what stopped it (a finding) is raised."""
        try:
            return self.server.port
        except RuntimeError:
            self._serving.result(timeout=ANSWER_WITHIN)
            raise AssertionError("the server stopped serving without an error") from None

    def exchange(self, data: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", self.port()), timeout=ANSWER_WITHIN) as sock:
            try:
                sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
            except (BrokenPipeError, ConnectionResetError):  # answered and closed before we finished
                pass
            answer = bytearray()
            while True:
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                answer += chunk
            return bytes(answer)


target: Target | None = None


def test_one_input(data: bytes) -> None:
    assert target is not None
    answer = target.exchange(data)
    if answer:
        assert STATUS_LINE.match(answer), answer[:200]
        assert CREDENTIAL not in answer, answer[:400]


def main() -> None:
    global target
    target = Target(os.environ.get("FUZZ_BACKEND", "asyncio"))
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
