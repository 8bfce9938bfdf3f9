"""Formatters, redaction and the registry load no I/O library: only the SQLite store does."""

from __future__ import annotations

import json
import subprocess
import sys

IO = ("anyio", "asyncio", "trio", "socket", "ssl", "sqlite3", "wsproto", "websockets")


def test_the_pure_operations_modules_load_no_io_library() -> None:
    code = (
        "import json, sys, ocpprpc._ops.logfmt, ocpprpc._ops.redact, ocpprpc._ops.registry\n"
        f"print(json.dumps([m for m in {IO!r} if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert json.loads(out.stdout) == []


def test_the_lazy_exports_load_them_on_first_use_only() -> None:
    code = (
        "import json, sys, ocpprpc\n"
        "before = 'ocpprpc._ops.redact' in sys.modules\n"
        "ocpprpc.Redactor\n"
        f"print(json.dumps([before, [m for m in {IO!r} if m in sys.modules]]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert json.loads(out.stdout) == [False, []]
