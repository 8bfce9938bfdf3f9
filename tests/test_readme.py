"""The README's quick start, run as a new user runs it: a fresh venv, the README's install line.

The project's own test environment has every extra installed, so a README block that needs
one (``backend="trio"`` after a plain ``pip install .``) would pass in-process and fail for a
user. Here the README's shell blocks run verbatim with bash in a copy of the project, in a new
virtual environment holding only what the README installs (pinned to the lock, as CI is);
only the port is changed, to a free one. Then every Python block runs in that venv.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
#: What building the wheel needs (pyproject's wheel target and its metadata).
PROJECT_FILES = ("pyproject.toml", "README.md", "LICENSE", "src", "schemas")
SERVE = "python3 -m ocpprpc serve"
README_PORT = "9000"


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", README, flags=re.DOTALL | re.MULTILINE)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_readme_has_the_blocks_this_test_runs() -> None:
    install, station, test_command = blocks("sh")[:3]
    assert "python3 -m venv .venv" in install and SERVE in install.splitlines()[-1]
    assert "ocpprpc station" in station and f":{README_PORT}/" in station
    assert "nox -s tests" in test_command
    assert blocks("python")


def test_the_test_command_is_the_one_ci_runs() -> None:
    """.ci/run calls the README's test command, word for word."""
    command = next(line for line in blocks("sh")[2].splitlines() if not line.startswith("#"))
    assert command in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


@pytest.mark.timeout(600)
def test_quick_start_runs_as_pasted_in_a_fresh_venv(tmp_path: Path) -> None:
    project = tmp_path / "ocpprpc"
    project.mkdir()
    for name in PROJECT_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, project / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, project / name)
    env = {**os.environ, "PIP_CONSTRAINT": str(ROOT / "constraints.txt"), "PIP_QUIET": "1"}
    for variable in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"):
        env.pop(variable, None)
    # Nothing of the test environment's interpreter leaks in: "python3" is the machine's.
    env["PATH"] = os.pathsep.join(
        part for part in env["PATH"].split(os.pathsep) if Path(sys.prefix) not in Path(part).parents
    )

    install, station, _ = blocks("sh")[:3]
    setup = [line for line in install.splitlines() if not line.startswith(SERVE)]
    serve_line = next(line for line in install.splitlines() if line.startswith(SERVE))
    done = subprocess.run(
        ["bash", "-euc", "\n".join(setup)], cwd=project, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    venv_python = project / ".venv" / "bin" / "python3"
    installed = subprocess.run(
        [venv_python, "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True, check=True
    ).stdout
    assert "ocpprpc==" in installed and "pytest" not in installed

    port = str(free_port())
    activate = ". .venv/bin/activate\n"
    with subprocess.Popen(
        ["bash", "-euc", activate + "exec " + serve_line.replace(f"--port {README_PORT}", f"--port {port}")],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as server:
        try:
            assert server.stdout is not None
            banner = server.stdout.readline()
            assert f":{port}/" in banner, (banner, server.stderr and server.stderr.read())
            ran = subprocess.run(
                ["bash", "-euc", station.replace(f":{README_PORT}/", f":{port}/")],
                cwd=project,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert ran.returncode == 0, ran.stderr
            assert "CP001" in ran.stdout and "finished a charging session" in ran.stdout
        finally:
            server.send_signal(signal.SIGTERM)
            server.communicate(timeout=30)
        assert server.returncode == 0

    for number, snippet in enumerate(blocks("python"), 1):
        ran = subprocess.run(
            [venv_python, "-c", snippet], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert ran.returncode == 0, f"README python block {number}:\n{ran.stderr}"
