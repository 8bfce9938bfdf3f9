"""The redis-server fixture itself: a private server, started and killed by the tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cluster.redis_server import SYSTEM_PORT, RedisClusterServers, RedisServer, answers, free_port


def test_session_server_answers_on_its_own_port(redis_server: RedisServer) -> None:
    assert redis_server.port != SYSTEM_PORT
    assert redis_server.running
    assert answers(redis_server.port)
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"


def test_kill_and_restart_keeps_the_port(own_redis: RedisServer) -> None:
    port = own_redis.port
    own_redis.kill()
    assert not own_redis.running
    assert not answers(port)
    own_redis.restart()  # restart from stopped is a start
    assert own_redis.port == port
    assert answers(port)
    own_redis.restart()  # and from running: killed, then started again
    assert answers(port)
    assert own_redis.starts == 3


def test_refuses_a_port_that_already_answers(redis_server: RedisServer, tmp_path: Path) -> None:
    intruder = RedisServer(tmp_path, port=redis_server.port)
    with pytest.raises(RuntimeError, match="already answers"):
        intruder.start()
    assert redis_server.running  # the other server is untouched


def test_never_the_system_port(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="6379"):
        RedisServer(tmp_path, port=SYSTEM_PORT)
    assert free_port() != SYSTEM_PORT


def test_a_server_that_cannot_start_says_why(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, binary="/bin/false")
    with pytest.raises(RuntimeError, match="exited"):
        server.start()
    assert not server.running


def test_a_three_primary_cluster_forms(redis_cluster: RedisClusterServers) -> None:
    for node in redis_cluster.nodes:
        info = node.command("CLUSTER", "INFO").decode()
        assert "cluster_state:ok" in info and "cluster_slots_assigned:16384" in info
        assert "cluster_size:3" in info
    assert redis_cluster.url == f"redis+cluster://127.0.0.1:{redis_cluster.nodes[0].port}"
    assert redis_cluster.slot_owner(16383) is redis_cluster.nodes[2]
