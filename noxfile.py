"""Automation: `nox -s tests lint typecheck docs bench generate` (the CI runs the first four)."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

PYPROJECT = nox.project.load_toml("pyproject.toml")
# The sans-IO engine: held to 100% branch coverage.
ENGINE = ["_codec", "_connection", "_errors", "_events", "_frames", "_rules"]
# The anyio session layer: reported on its own, gated lower (a few defensive paths,
# such as a task group failing to start, are not worth contorting tests for).
SESSION = ["_router", "_session", "testing"]
# The WebSocket transport (real sockets; a few cancellation races are not reproducible on demand).
TRANSPORT = [
    "_aio_stream",
    "_handshake",
    "_raw_stream",
    "_tcp",
    "_tls",
    "_websocket",
    "_ws_errors",
    "_websockets_codec",
    "_wsproto_codec",
]
# Typed messages and strict validation (issue 3), also held to 100%: the schema machinery,
# the validating codec and the message base classes (generated modules are data).
TYPED = ["_messages", "_schema", "_validation"]


def _install(session: nox.Session, *groups: str) -> None:
    session.install("-e", ".", *nox.project.dependency_groups(PYPROJECT, *groups))


@nox.session
def tests(session: nox.Session) -> None:
    """The full test suite (every async test on asyncio and trio), with coverage gates."""
    _install(session, "test")
    session.run("coverage", "erase")
    session.run("coverage", "run", "-m", "pytest", *session.posargs)
    session.run("coverage", "report")
    engine = ",".join(f"src/ocpprpc/{module}.py" for module in ENGINE)
    session.run("coverage", "report", f"--include={engine}", "--fail-under=100")
    rpc = ",".join(f"src/ocpprpc/{module}.py" for module in SESSION)
    session.run("coverage", "report", f"--include={rpc}", "--fail-under=95")
    transport = ",".join(f"src/ocpprpc/{module}.py" for module in TRANSPORT)
    session.run("coverage", "report", f"--include={transport}", "--fail-under=90")
    typed = ",".join(f"src/ocpprpc/{module}.py" for module in TYPED)
    session.run("coverage", "report", f"--include={typed}", "--fail-under=100")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over src, tests, docs examples and bench."""
    _install(session, "typecheck")
    session.run("mypy", "--strict")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the docs with warnings as errors."""
    _install(session, "docs")
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html")


@nox.session
def generate(session: nox.Session) -> None:
    """Regenerate ocpprpc.v16/v201/v21 from schemas/ (pass --check to only compare)."""
    session.install("-e", ".")
    session.run("python", "tools/generate.py", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Engine round trips, validation vs the `ocpp` package, outbox, WebSocket codecs, transport.

    posargs go to bench_engine.
    """
    _install(session, "bench")
    session.run("python", "bench/bench_engine.py", *session.posargs)
    session.run("python", "bench/bench_validation.py")
    session.run("python", "bench/bench_outbox.py")
    session.run("python", "bench/bench_ws_codec.py")
    session.run("python", "bench/bench_transport.py")
