"""The sans-IO promise, enforced: importing the engine loads no I/O library."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = ("anyio", "trio", "wsproto", "redis", "websockets", "asyncio", "socket", "ssl")


def test_engine_imports_no_io_library() -> None:
    code = (
        "import sys, ocpprpc._engine.connection, ocpprpc\n"
        f"loaded = [m for m in {FORBIDDEN!r} if m in sys.modules]\n"
        "print(','.join(loaded))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == ""
