"""Run a command under valgrind's callgrind; return the instructions it executed (the probes' runner)."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Sequence


def instructions(command: Sequence[str]) -> int:
    """Total instructions of *command* (its children untraced), with ``PYTHONHASHSEED=0``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *command],
            check=True,
            capture_output=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
        with open(out) as f:
            match = re.search(r"^summary: (\d+)", f.read(), re.M)
        assert match is not None, "no summary line in callgrind's output"
        return int(match.group(1))
