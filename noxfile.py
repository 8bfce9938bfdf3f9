"""Automation: `nox -s tests lint typecheck docs bench generate` (the CI runs the first four).

Every session CI runs installs the versions recorded in ``constraints.txt`` (the lock), so a
fresh clone tests against the tools that were green; ``tests_latest`` runs the suite against
the newest releases on purpose, and ``lock`` rewrites ``constraints.txt`` from them
(docs/development.rst says when and how).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

PYPROJECT = nox.project.load_toml("pyproject.toml")
# The sans-IO engine: held to 100% branch coverage.
ENGINE = [
    "_engine/codec",
    "_engine/connection",
    "_engine/errors",
    "_engine/events",
    "_engine/frames",
    "_engine/ids",
    "_engine/rules",
]
# The anyio session layer: reported on its own, gated lower (a few defensive paths,
# such as a task group failing to start, are not worth contorting tests for).
SESSION = [
    "_rpc/backpressure",
    "_rpc/calls",
    "_rpc/closing",
    "_rpc/dispatch",
    "_rpc/inbound",
    "_rpc/middleware",
    "_rpc/reader",
    "_rpc/router",
    "_rpc/session",
    "_rpc/session_base",
    "testing",
]
# The CSMS's auth helpers and pure protection blocks: every branch is a security decision.
PROTECTION = [
    "_csms/auth",
    "_csms/admission",
    "_csms/ratelimit",
    "_csms/security_events",
    "_csms/routing",
    "_csms/upgrade",
    "_csms/listener",
    "_csms/live",
]
# The WebSocket transport (real sockets; a few cancellation races are not reproducible on demand).
TRANSPORT = [
    "_ws/aio_stream",
    "_ws/client_handshake",
    "_ws/handshake",
    "_ws/handshake_shared",
    "_ws/http_plain",
    "_ws/raw_stream",
    "_ws/server_handshake",
    "_ws/tcp",
    "_ws/tls",
    "_ws/websocket",
    "_ws/errors",
    "_ws/websockets_codec",
    "_ws/wsproto_codec",
    "_ws/frame_codec",
    "_ws/upgrade_fast",
    "_ws/socket_attributes",
]
# Typed messages and strict validation (issue 3), also held to 100%: the schema machinery,
# the validating codec and the message base classes (generated modules are data).
TYPED = [
    "_typed/checks",
    "_typed/error_codes",
    "_typed/messages",
    "_typed/quirks",
    "_typed/registry",
    "_typed/render",
    "_typed/repairs",
    "_typed/runtime_types",
    "_typed/schema",
    "_typed/type_model",
    "_typed/validation",
]
# Operations (issue 15): log formatters, redaction (a leak is a bug), the station registry and its stores,
# tracing, metrics, and the station state a server keeps (registry wiring, command buffer: at most once;
# session state).
OPS = [
    "_ops/exchange",
    "_ops/logfmt",
    "_ops/metrics",
    "_ops/redact",
    "_ops/registry",
    "_ops/registry_sqlite",
    "_ops/tracing",
    "_csms/command_buffer",
    "_csms/session_state",
    "_csms/station_services",
]


#: The lock: exact versions of every tool and dependency the CI sessions install.
CONSTRAINTS = "constraints.txt"
#: Every dependency group and extra the lock covers, plus the tools that build and drive it
#: (the build backend and nox itself, so `pip install -e .` and .ci/run are pinned as well).
LOCKED_GROUPS = ("test", "lint", "typecheck", "docs", "bench", "fuzz")
LOCKED_EXTRAS = "trio,trio-websocket,otel,metrics,redis"
LOCKED_TOOLS = ("hatchling", "nox")


def _lock(session: nox.Session) -> None:
    """Pin every install of *session* to the lock, build environments included.

    Through the environment rather than ``-c``: pip passes it on to the isolated
    environment in which it builds ocpprpc, so the build backend is pinned too.
    """
    session.env["PIP_CONSTRAINT"] = str(Path(CONSTRAINTS).resolve())


def _install(session: nox.Session, *groups: str, locked: bool = True) -> None:
    """ocpprpc (editable) and the dependency *groups*, at the locked versions unless told not to."""
    if locked:
        _lock(session)
        pins = []
    else:
        pins = ["--upgrade", "--upgrade-strategy", "eager"]
    session.install(*pins, "-e", ".", *nox.project.dependency_groups(PYPROJECT, *groups))


@nox.session
def tests(session: nox.Session) -> None:
    """The full test suite (every async test on asyncio and trio), with coverage gates."""
    _install(session, "test")
    session.run("coverage", "erase")
    # One worker per core (OCPPRPC_TEST_WORKERS overrides; 0 runs in this process), work-stealing
    # so the few long subprocess proofs do not leave a core idle; pytest-cov combines the workers'
    # coverage into the one data file the gates below read.
    workers = os.environ.get("OCPPRPC_TEST_WORKERS", "auto")
    session.run("pytest", "-n", workers, "--dist", "worksteal", "--cov", "--cov-report=", *session.posargs)
    session.run("coverage", "report")
    engine = ",".join(f"src/ocpprpc/{module}.py" for module in ENGINE)
    session.run("coverage", "report", f"--include={engine}", "--fail-under=100")
    rpc = ",".join(f"src/ocpprpc/{module}.py" for module in SESSION)
    session.run("coverage", "report", f"--include={rpc}", "--fail-under=95")
    transport = ",".join(f"src/ocpprpc/{module}.py" for module in TRANSPORT)
    session.run("coverage", "report", f"--include={transport}", "--fail-under=90")
    typed = ",".join(f"src/ocpprpc/{module}.py" for module in TYPED)
    session.run("coverage", "report", f"--include={typed}", "--fail-under=100")
    protection = ",".join(f"src/ocpprpc/{module}.py" for module in PROTECTION)
    session.run("coverage", "report", f"--include={protection}", "--fail-under=100")
    ops = ",".join(f"src/ocpprpc/{module}.py" for module in OPS)
    session.run("coverage", "report", f"--include={ops}", "--fail-under=100")


@nox.session
def tests_latest(session: nox.Session) -> None:
    """The suite against the newest releases of every dependency (no lock): an upstream break
    is seen here on purpose before ``lock`` moves CI onto it."""
    _install(session, "test", locked=False)
    session.run("pip", "list", "--format=freeze", silent=False)
    session.run("pytest", "-n", os.environ.get("OCPPRPC_TEST_WORKERS", "auto"), *session.posargs)


@nox.session
def lock(session: nox.Session) -> None:
    """Rewrite constraints.txt with the newest releases of everything the CI sessions install.

    Run ``nox -s tests_latest lint typecheck docs`` after it: commit the new lock only when
    they pass (docs/development.rst).
    """
    session.install(
        "--upgrade",
        "--upgrade-strategy",
        "eager",
        f".[{LOCKED_EXTRAS}]",
        *LOCKED_TOOLS,
        *nox.project.dependency_groups(PYPROJECT, *LOCKED_GROUPS),
    )
    frozen = session.run("pip", "freeze", "--exclude-editable", silent=True)
    assert isinstance(frozen, str)
    pins = sorted(
        (line for line in frozen.splitlines() if line and not line.lower().startswith("ocpprpc")),
        key=str.lower,
    )
    header = (
        "# The lock: exact versions the CI sessions install (pip -c). Generated by `nox -s lock`;\n"
        "# refresh on purpose, after `nox -s tests_latest` passes (docs/development.rst).\n"
    )
    with open(CONSTRAINTS, "w", encoding="utf-8") as out:
        out.write(header + "\n".join(pins) + "\n")
    session.log(f"wrote {len(pins)} pins to {CONSTRAINTS}")


@nox.session
def fuzz(session: nox.Session) -> None:
    """Coverage-guided fuzzing (atheris/libFuzzer) of the engine and of a live server's handshake.

    Each target runs for ``FUZZ_SECONDS`` (default 20) from the corpus in ``fuzz/corpus``;
    libFuzzer options may be passed as posargs (``nox -s fuzz -- -max_total_time=600``).
    A finding is written to ``fuzz/findings/`` and fails the session.
    """
    _install(session, "fuzz")
    seconds = os.environ.get("FUZZ_SECONDS", "20")  # session.env holds only what a session set
    findings = Path("fuzz/findings")
    findings.mkdir(parents=True, exist_ok=True)
    runs = [("engine", "asyncio"), ("handshake", "asyncio"), ("handshake", "trio")]
    for target, backend in runs:
        corpus = Path(session.create_tmp()) / f"corpus-{target}-{backend}"
        if corpus.exists():
            shutil.rmtree(corpus)
        shutil.copytree(Path("fuzz/corpus") / target, corpus)
        session.run(
            "python",
            f"fuzz/fuzz_{target}.py",
            f"-dict=fuzz/{target}.dict",
            f"-max_total_time={seconds}",
            f"-artifact_prefix={findings}/{target}-{backend}-",
            "-print_final_stats=1",
            *session.posargs,
            str(corpus),
            env={"FUZZ_BACKEND": backend},
        )


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    _lock(session)
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
    _lock(session)
    session.install("-e", ".")
    session.run("python", "tools/generate.py", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Engine, validation vs `ocpp`, outbox, codecs, transport, tracing, flood, cluster, idle and GC, layers.

    posargs go to bench_engine.
    """
    _install(session, "bench")
    session.run("python", "bench/bench_engine.py", *session.posargs)
    session.run("python", "bench/bench_validation.py")
    session.run("python", "bench/bench_outbox.py")
    session.run("python", "bench/bench_ws_codec.py")
    session.run("python", "bench/bench_transport.py")
    session.run("python", "bench/bench_tracing.py")
    session.run("python", "bench/bench_flood.py")
    session.run("python", "bench/callgrind_layers.py")
    session.run("python", "bench/callgrind_paths.py")
    session.run("python", "bench/bench_cluster.py")
    session.run("python", "bench/bench_idle.py")
    session.run(
        "python",
        "bench/bench_transport.py",
        "--connections",
        "20",
        "--callers",
        "1",
        "--strict",
        "--layers",
        "middleware",
        "waiting-middleware",
        "ratelimit",
        "events",
        "exchangelog",
        "middleware,ratelimit,events",
    )
