"""The proof, as a user runs it: three ``python -m ocpprpc serve --cluster`` processes share one
private redis-server; a station on one node is reached by ``python -m ocpprpc call`` and by a
:class:`~ocpprpc.ClusterClient`, moves to another node (evicted from the first), and a node
SIGKILLed mid-call fails the caller fast with "outcome unknown".  Plus every mistake of the
``call`` and ``serve --cluster`` command lines as one line and its exit status.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
from prometheus_client.parser import text_string_to_metric_families

import ocpprpc
from ocpprpc import CallContext, ClusterClient, Router
from tests.cli.helpers import WAIT, cli, csms, one_error_line
from tests.cluster.redis_server import RedisServer, command
from tests.csms.helpers import http_exchange

pytestmark = pytest.mark.timeout(180)


def cluster_args(redis: RedisServer, ns: str) -> list[str]:
    return ["--cluster", redis.url, "--cluster-namespace", ns]


async def call(*args: str) -> subprocess.CompletedProcess[bytes]:
    with anyio.fail_after(WAIT):
        return await anyio.run_process(cli("call", *args), check=False)


def station_router(started: list[anyio.Event]) -> Router:
    """Answers Reset (refuses a hard one); DataTransfer sets ``started[-1]``, sleeps ``data`` seconds."""
    router = Router()

    @router.on("Reset")
    async def reset(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        if request["type"] == "Hard":
            raise ocpprpc.OCPPError("NotSupported", "no hard resets", {"why": "policy"})
        return {"status": "Accepted"}

    @router.on("DataTransfer")
    async def slow(request: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        started[-1].set()
        await anyio.sleep(float(request.get("data", "0")))
        return {"status": "Accepted"}

    return router


async def held_by(client: ClusterClient, identity: str, node: str) -> None:
    with anyio.fail_after(10):
        while True:
            found = await client.where(identity)
            if found is not None and found.node == node:
                return
            await anyio.sleep(0.05)


async def test_three_serve_processes_a_station_the_call_cli_and_a_client(
    redis_server: RedisServer, ns: str, tmp_path: Path
) -> None:
    with ExitStack() as processes:
        nodes = {}
        for name, backend in (("a", "asyncio"), ("b", "trio"), ("c", "asyncio")):
            args = [*cluster_args(redis_server, ns), "--node-name", name, "--backend", backend]
            if name == "b":  # the node SIGKILLed below: dead 1.5 s after its last beat
                args += ["--cluster-heartbeat", "0.5"]
            nodes[name] = processes.enter_context(csms(tmp_path / f"{name}.log", *args))
        started = [anyio.Event()]
        router = station_router(started)
        async with (
            ClusterClient(redis_server.url, namespace=ns) as client,
            ocpprpc.connect(f"{nodes['a'][1]}/ocpp", "CP1", router=router) as on_a,
        ):
            await held_by(client, "CP1", "a")
            answered = await call(*cluster_args(redis_server, ns), "CP1", "Reset", '{"type": "Soft"}')
            assert (answered.returncode, answered.stderr) == (0, b"")
            assert json.loads(answered.stdout) == {"status": "Accepted"}
            assert await client.send_to_client("CP1", "Reset", {"type": "Soft"}) == {"status": "Accepted"}
            refused = await call(*cluster_args(redis_server, ns), "CP1", "Reset", '{"type": "Hard"}')
            assert refused.returncode == 5 and refused.stdout == b""
            assert one_error_line(refused.stderr.decode()) == (
                """'CP1' answered Reset with CALLERROR NotSupported: no hard resets {"why": "policy"}"""
            )
            invalid = await call(*cluster_args(redis_server, ns), "CP1", "Reset", '{"type": "Bogus"}')
            assert invalid.returncode == 1
            assert one_error_line(invalid.stderr.decode()).startswith(
                "Reset to 'CP1': the node holding 'CP1' could not make the call: invalid payload for Reset"
            )
            slow = await call(
                *cluster_args(redis_server, ns), "--timeout", "0.3", "CP1", "DataTransfer",
                '{"vendorId": "x", "data": "2"}',
            )  # fmt: skip
            assert slow.returncode == 4
            assert one_error_line(slow.stderr.decode()) == "'CP1' did not answer DataTransfer within 0.3 s"

            # The station connects to node b: it is held there, and a's connection is evicted.
            async with ocpprpc.connect(f"{nodes['b'][1]}/ocpp", "CP1", router=router):
                await held_by(client, "CP1", "b")
                with anyio.fail_after(10):
                    await on_a.closed.wait()
                moved = await call(*cluster_args(redis_server, ns), "CP1", "Reset", '{"type": "Soft"}')
                assert (moved.returncode, json.loads(moved.stdout)) == (0, {"status": "Accepted"})
                assert await client.send_to_client("CP1", "Reset", {"type": "Soft"}) == {"status": "Accepted"}

                # Node b SIGKILLed mid-call: the caller fails fast, well under its 60 s timeout.
                started.append(anyio.Event())
                results: list[subprocess.CompletedProcess[bytes]] = []

                async def doomed() -> None:
                    payload = '{"vendorId": "x", "data": "50"}'
                    args = [*cluster_args(redis_server, ns), "--timeout", "60"]
                    results.append(await call(*args, "CP1", "DataTransfer", payload))

                async with anyio.create_task_group() as group:
                    group.start_soon(doomed)
                    with anyio.fail_after(WAIT):
                        await started[-1].wait()
                    nodes["b"][0].kill()
                    killed = time.monotonic()
                    # b's liveness TTL (1.5 s) + the caller's watch interval (0.25 s) + the call
                    # process printing and exiting: far below its 60 s timeout.
                    with anyio.fail_after(3):
                        while not results:  # noqa: ASYNC110 (the other task's subprocess)
                            await anyio.sleep(0.02)
                    print(  # noqa: T201 (the measured time, shown with pytest -s)
                        f"SIGKILLed node: its caller failed {time.monotonic() - killed:.2f} s after the kill"
                    )
                assert results[0].returncode == 6, results[0].stderr
                line = one_error_line(results[0].stderr.decode())
                assert line.startswith("DataTransfer to 'CP1': node 'b' is not alive: outcome unknown"), line

        unknown = await call(*cluster_args(redis_server, ns), "CP404", "Reset", '{"type": "Soft"}')
        assert unknown.returncode == 3 and unknown.stdout == b""
        assert one_error_line(unknown.stderr.decode()) == "station 'CP404' is not connected to any node"


DEAD = "redis://127.0.0.1:1/0"
#: id -> (arguments of ``call``, exit status, the one line after ``python -m ocpprpc: error: ``).
CALL_MISTAKES: dict[str, tuple[list[str], int, str]] = {
    "no-cluster": (["CP1", "Reset"], 2, "the following arguments are required: --cluster"),
    "not-redis": (
        ["--cluster", "http://127.0.0.1:6380", "CP1", "Reset"],
        2,
        "argument --cluster: 'http://127.0.0.1:6380' is not a usable Redis URL:"
        " expected redis://HOST:PORT[/DB], rediss:// for TLS, or redis+cluster://HOST:PORT for Redis Cluster",
    ),
    "cluster-db": (
        ["--cluster", "redis+cluster://127.0.0.1:7000/2", "CP1", "Reset"],
        2,
        "argument --cluster: 'redis+cluster://127.0.0.1:7000/2' is not a usable Redis URL:"
        " Redis Cluster has only database 0, got /2",
    ),
    "bad-port": (
        ["--cluster", "redis://127.0.0.1:99999/0", "CP1", "Reset"],
        2,
        "argument --cluster: 'redis://127.0.0.1:99999/0' is not a usable Redis URL:"
        " not a valid URL: Port out of range 0-65535",
    ),
    "bad-db": (
        ["--cluster", "redis://:hunter2@127.0.0.1:6380/zero", "CP1", "Reset"],
        2,
        "argument --cluster: 'redis://:***@127.0.0.1:6380/zero' is not a usable Redis URL:"
        " the database must be a number (redis://HOST:PORT/0), got 'zero'",
    ),
    "no-host": (
        ["--cluster", "redis:///0", "CP1", "Reset"],
        2,
        "argument --cluster: 'redis:///0' is not a usable Redis URL: names no host (expected redis://HOST:PORT[/DB],",
    ),
    "bad-json": (["--cluster", DEAD, "CP1", "Reset", "{"], 2, "PAYLOAD is not JSON: Expecting property name"),
    "not-object": (
        ["--cluster", DEAD, "CP1", "Reset", "[1]"],
        2,
        "PAYLOAD must be a JSON object ({...}), got list",
    ),
    "nan": (
        ["--cluster", DEAD, "CP1", "Reset", '{"a": NaN}'],
        2,
        "PAYLOAD is not JSON: NaN is not a JSON number",
    ),
    "deep": (["--cluster", DEAD, "CP1", "Reset", "[" * 100_000], 2, "PAYLOAD is not JSON"),
    "bad-identity": (
        ["--cluster", DEAD, "CP/1", "Reset"],
        2,
        "argument identity: invalid station identity 'CP/1'",
    ),
    "bad-action": (
        ["--cluster", DEAD, "CP1", "Re-set"],
        2,
        "argument action: 'Re-set' is not an OCPP action name (e.g. Reset)",
    ),
    "bad-timeout": (
        ["--cluster", DEAD, "--timeout", "0", "CP1", "Reset"],
        2,
        "argument --timeout: must be more",
    ),
    "bad-namespace": (
        ["--cluster", DEAD, "--cluster-namespace", "a|b", "CP1", "Reset"],
        2,
        "argument --cluster-namespace: 'a|b' must be printable, without spaces, '|', '{' or '}'",
    ),
    "redis-unreachable": (
        ["--cluster", "redis://:hunter2@127.0.0.1:1/0", "CP1", "Reset"],
        1,
        "cannot reach the cluster at redis://:***@127.0.0.1:1/0: Redis unavailable",
    ),
    "redis-unreachable-trio": (
        ["--backend", "trio", "--cluster", DEAD, "CP1", "Reset"],
        1,
        f"cannot reach the cluster at {DEAD}: Redis unavailable",
    ),
    "redis-cluster-unreachable": (
        ["--cluster", "redis+cluster://:hunter2@127.0.0.1:1", "CP1", "Reset"],
        1,
        "cannot reach the cluster at redis+cluster://:***@127.0.0.1:1: Redis unavailable",
    ),
}


@pytest.mark.parametrize("case", list(CALL_MISTAKES))
def test_call_mistakes_are_one_line_with_their_exit_status(case: str) -> None:
    args, status, line = CALL_MISTAKES[case]
    done = subprocess.run(cli("call", *args), capture_output=True, text=True, timeout=WAIT, check=False)
    assert (done.returncode, done.stdout) == (status, ""), done.stderr
    assert one_error_line(done.stderr).startswith(line)
    assert "hunter2" not in done.stderr


@pytest.mark.parametrize(
    ("args", "status", "line"),
    [
        (["--cluster", DEAD], 1, f"cannot reach the cluster at {DEAD}: Redis unavailable"),
        (
            ["--backend", "trio", "--cluster", DEAD],
            1,
            f"cannot reach the cluster at {DEAD}: Redis unavailable",
        ),
        (
            ["--cluster", "redis://h/0", "--node-name", "a{b}"],
            2,
            "argument --node-name: 'a{b}' must be printable",
        ),
        (
            ["--cluster", "unix:///tmp/redis.sock"],
            2,
            "argument --cluster: 'unix:///tmp/redis.sock' is not a usable",
        ),
        (
            ["--cluster", "redis://h/0", "--cluster-heartbeat", "0"],
            2,
            "argument --cluster-heartbeat: must be more than 0 seconds",
        ),
        (
            ["--cluster", "redis://h/0", "--cluster-heartbeat", "inf"],
            2,
            "argument --cluster-heartbeat: must be a finite number of seconds >= 0, got 'inf'",
        ),
    ],
)
def test_serve_cluster_mistakes_are_one_line(args: list[str], status: int, line: str) -> None:
    done = subprocess.run(
        cli("serve", "--port", "0", *args), capture_output=True, text=True, timeout=WAIT, check=False
    )
    assert done.returncode == status, done.stderr
    assert one_error_line(done.stderr).startswith(line)


def test_the_cluster_table_of_a_config_file(tmp_path: Path) -> None:
    config = tmp_path / "csms.toml"
    config.write_text('[cluster]\nurl = "redis://:hunter2@10.0.0.5:6380/2"\nnode_name = "csms-1"\n')
    shown = subprocess.run(
        cli("serve", "--config", str(config), "--print-config"), capture_output=True, text=True, check=False
    )
    assert shown.returncode == 0, shown.stderr
    assert "hunter2" not in shown.stdout and "# url = (has a password; not shown)" in shown.stdout
    assert 'node_name = "csms-1"' in shown.stdout and 'namespace = "default"' in shown.stdout
    flags_win = subprocess.run(
        cli("serve", "--config", str(config), "--cluster", "redis://127.0.0.1:6390/0", "--print-config"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert 'url = "redis://127.0.0.1:6390/0"' in flags_win.stdout
    for content, line in (
        ('[cluster]\nurl = "http://x"\n', "cluster.url: expected redis://HOST:PORT[/DB]"),
        ('[cluster]\nnode_name = "a|b"\n', "cluster.node_name: must be printable"),
        ("[cluster]\nurl = 5\n", "cluster.url: expected a string"),
        ('[cluster]\nnodename = "a"\n', "cluster.nodename: unknown key (did you mean node_name?)"),
    ):
        config.write_text(content)
        done = subprocess.run(
            cli("serve", "--config", str(config)), capture_output=True, text=True, timeout=WAIT, check=False
        )
        assert done.returncode == 2, done.stderr
        assert one_error_line(done.stderr).startswith(f"{config}: {line}"), done.stderr


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_node_without_a_name_leaves_nothing_in_redis(
    redis_server: RedisServer, ns: str, backend: str
) -> None:
    """``HOSTNAME-PID`` never comes back: stopped by SIGTERM, the node takes its keys along."""
    with subprocess.Popen(
        cli("serve", "--port", "0", "--backend", backend, *cluster_args(redis_server, ns)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None
        process.stdout.readline()
        joined = process.stdout.readline()
        assert joined.startswith("cluster node ") and f"(namespace {ns})" in joined, joined
        assert command(redis_server.port, "KEYS", f"*{ns}*") != b"*0\r\n"  # inbox and liveness
        process.send_signal(signal.SIGTERM)
        assert process.wait(WAIT) == 0
    assert command(redis_server.port, "KEYS", f"*{ns}*") == b"*0\r\n"


#: What a call may end in while Redis is away: a clear error, never a hang.
CLEAR_FAILURES = (ocpprpc.ClusterError, ocpprpc.StationNotConnected, ocpprpc.CallTimeout)


async def test_redis_restarted_empty_under_traffic(
    own_redis: RedisServer, ns: str, tmp_path: Path, anyio_backend: str
) -> None:
    """Two ``serve`` processes; a caller starts a call to a station on each every 20 ms.  Redis
    SIGKILLed and restarted empty: every call ends within its timeout (plus the reply's grace)
    with an answer or a clear error, presence and the inbox groups come back, and calls succeed
    again soon after Redis does."""
    timeout, grace = 1.0, 0.5
    with ExitStack() as processes:
        urls = {}
        for name in ("a", "b"):
            args = [
                *cluster_args(own_redis, ns),
                "--node-name",
                name,
                "--backend",
                anyio_backend,
                "--metrics",
            ]
            urls[name] = processes.enter_context(csms(tmp_path / f"{name}.log", *args))[1]
        router = station_router([anyio.Event()])
        async with (
            ClusterClient(own_redis.url, namespace=ns, call_timeout=timeout, grace=grace) as client,
            ocpprpc.connect(f"{urls['a']}/ocpp", "CP-A", router=router),
            ocpprpc.connect(f"{urls['b']}/ocpp", "CP-B", router=router),
        ):
            await held_by(client, "CP-A", "a")
            await held_by(client, "CP-B", "b")
            down = anyio.Event()
            back_at = float("inf")
            #: Per identity: when a call started after Redis returned first succeeded (since then).
            recovered: dict[str, float] = {}
            failures: list[BaseException] = []
            answered = 0
            longest = 0.0

            async def one_call(identity: str) -> None:
                nonlocal answered, longest
                began = anyio.current_time()
                try:
                    answer = await client.send_to_client(identity, "Reset", {"type": "Soft"})
                except CLEAR_FAILURES as exc:
                    failures.append(exc)
                    down.set()
                else:
                    assert answer == {"status": "Accepted"}
                    answered += 1
                    if began >= back_at:
                        recovered.setdefault(identity, anyio.current_time() - back_at)
                finally:
                    longest = max(longest, anyio.current_time() - began)

            async def traffic(*, task_status: anyio.abc.TaskStatus[None]) -> None:
                async with anyio.create_task_group() as calls:
                    task_status.started()
                    while len(recovered) < 2:
                        for identity in ("CP-A", "CP-B"):
                            calls.start_soon(one_call, identity)
                        await anyio.sleep(0.02)

            async with anyio.create_task_group() as group:
                await group.start(traffic)
                with anyio.fail_after(WAIT):
                    while answered < 10:  # noqa: ASYNC110 (the callers' results)
                        await anyio.sleep(0.01)
                assert not failures, failures
                own_redis.kill()
                with anyio.fail_after(timeout + grace + 2):
                    await down.wait()
                await anyio.to_thread.run_sync(own_redis.start)  # empty: no presence, group or liveness
                back_at = anyio.current_time()
                with anyio.fail_after(5):  # generous; the time is measured and printed below
                    while len(recovered) < 2:  # noqa: ASYNC110 (the callers' results)
                        await anyio.sleep(0.01)
            kinds = sorted({type(failure).__name__ for failure in failures})
            print(  # noqa: T201 (the measured recovery, shown with pytest -s)
                f"\n{anyio_backend}: calls succeed again {max(recovered.values()):.3f} s after Redis"
                f" returned; {len(failures)} failed meanwhile ({', '.join(kinds)});"
                f" the longest call took {longest:.3f} s"
            )
            assert longest < timeout + grace + 1.0  # none past its timeout and the reply's grace
            assert (await client.where("CP-A")).node == "a"  # type: ignore[union-attr]
            assert (await client.where("CP-B")).node == "b"  # type: ignore[union-attr]
            for name in ("a", "b"):  # each node's inbox group is back
                inbox = f"ocpprpc:{{{ns}:{name}}}:inbox"
                assert b"rpc" in command(own_redis.port, "XINFO", "GROUPS", inbox)
            # serve --cluster --metrics: the node's cluster health is in its /metrics.
            port = int(urls["a"].rpartition(":")[2])
            answer = await http_exchange(port, b"GET /metrics HTTP/1.1\r\nHost: csms\r\n\r\n")
            families = {
                f.name: f for f in text_string_to_metric_families(answer.partition(b"\r\n\r\n")[2].decode())
            }
            assert [s.labels for s in families["ocpprpc_cluster_node_info"].samples] == [{"node": "a"}]
            assert (
                "ocpprpc_cluster_rehydrations" in families
                and "ocpprpc_cluster_sample_age_seconds" in families
            )
