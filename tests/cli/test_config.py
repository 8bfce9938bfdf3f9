"""``python -m ocpprpc serve --config FILE``: a TOML file for everything the flags do, and more.

End to end through real ``python -m ocpprpc`` processes and sockets on loopback
(the documented example file runs and its rate limit applies; flags override
the file), every kind of mistake as one line and exit status 2, hostile files,
``--print-config``, and the parsing of ``[[routes]]`` and ``[[listeners]]``.
Plain tests: the backend under test is the CLI's ``--backend``.
"""

from __future__ import annotations

import json
import signal
import ssl
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import trustme

from ocpprpc import AdmissionPolicy, RateLimit
from ocpprpc._cli.args import UsageError, build_parser
from ocpprpc._cli.commands import main
from ocpprpc._cli.config import MAX_BYTES, _settings, load_config
from ocpprpc._cli.config_print import key_rows, key_table_rst
from ocpprpc._cli.config_schema import Setting, Table, config_schema

from .helpers import BACKENDS, WAIT, cli, csms, environment, one_error_line, station

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "csms.toml"
PASSWORD = "s3cret-pw"


def run(*args: str | Path, env: dict[bytes, bytes] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli(*map(str, args)), capture_output=True, text=True, timeout=WAIT, check=False, env=env
    )


def print_config(capsys: pytest.CaptureFixture[str], *args: str | Path) -> dict[str, Any]:
    """``serve ARGS --print-config`` through ``main()`` in this process, read back."""
    assert main(["serve", *map(str, args), "--print-config"]) == 0
    out, err = capsys.readouterr()
    assert err == "", err
    return tomllib.loads(out)


# -- the documented example, end to end ---------------------------------------------------------


@pytest.mark.parametrize("serve_backend", BACKENDS)
def test_the_documented_example_serves_and_limits_meter_values(tmp_path: Path, serve_backend: str) -> None:
    """docs/examples/csms.toml as it stands, with ``--port 0`` and ``--backend`` overriding it."""
    log_path = tmp_path / "serve.log"
    env = environment(CSMS_PASSWORD=PASSWORD)
    with csms(log_path, "--config", str(EXAMPLE), "--backend", serve_backend, env=env) as (server, url):
        # The file's MeterValues = "10/60" with on_breach = "callerror": the 11th is refused.
        flooder = station(url, "CP1", "--password", PASSWORD, "--meter-values", "12", "--protocol", "ocpp1.6")
        _, err = flooder.communicate(timeout=WAIT)
        assert flooder.returncode == 1
        assert "CP1: GenericError: rate limit exceeded: MeterValues limit 10/60s" in err
        neighbour = station(url, "CP2", "--password", PASSWORD, "--meter-values", "2")
        _, err = neighbour.communicate(timeout=WAIT)
        assert neighbour.returncode == 0 and err == "", err
        # security_profile = 1 with password_env: a wrong password is refused.
        intruder = station(url, "CP3", "--password", "wrong")
        _, err = intruder.communicate(timeout=WAIT)
        assert intruder.returncode == 1 and "HTTP 401" in err
        server.send_signal(signal.SIGTERM)
        assert server.wait(WAIT) == 0
    log = log_path.read_text()
    assert "Traceback" not in log
    events = [json.loads(line) for line in log.splitlines() if line.startswith("{")]  # security_log = true
    limited = [event for event in events if event["kind"] == "rate_limited"]
    assert [(e["identity"], e["action"], e["on_breach"]) for e in limited] == [
        ("CP1", "MeterValues", "callerror")
    ]
    assert any(e["kind"] == "auth_failed" and e["identity"] == "CP3" for e in events)


def test_flags_override_the_file_on_a_real_socket(tmp_path: Path) -> None:
    """The file limits MeterValues to 1/60 and answers 503 past one connection; the flags lift both."""
    config = tmp_path / "csms.toml"
    config.write_text(
        'port = 1\nprotocols = ["ocpp2.1"]\n[rate_limits]\nMeterValues = "1/60"\non_breach = "callerror"\n'
        "[csms]\nmax_connections = 1\n"
    )
    flags = ("--protocols", "ocpp1.6", "--rate-limit", "MeterValues=100/60", "--max-connections", "5")
    with csms(tmp_path / "serve.log", "--config", str(config), *flags) as (server, url):
        stations = [station(url, f"CP{n}", "--meter-values", "3") for n in range(3)]
        for process in stations:
            _, err = process.communicate(timeout=WAIT)
            assert process.returncode == 0, err
        server.send_signal(signal.SIGTERM)
        assert server.wait(WAIT) == 0


def test_flags_override_the_file_key_by_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "pw").write_text(PASSWORD)
    (tmp_path / "cfg.toml").write_text(
        'host = "0.0.0.0"\nport = 9100\nsecurity_profile = 1\npassword_env = "NOPE"\nquiet = true\n'
        '[rate_limits]\n"*" = "100/60"\nMeterValues = "10/60"\non_breach = "disconnect"\n'
        '[admission]\nallow_ips = ["10.0.0.0/8"]\ndeny_ips = ["10.1.0.0/16"]\nupgrade_rate = "5/1"\n'
        '[csms]\nmax_connections = 10\nduplicate = "refuse"\n[session]\nmax_bad_messages = 3\n'
    )
    effective = print_config(
        capsys,
        "--config",
        tmp_path / "cfg.toml",
        "--port",
        "0",
        "--password-file",  # replaces the file's password_env (one password source)
        tmp_path / "pw",
        "--rate-limit",
        "Heartbeat=1/60",  # replaces the file's limits; on_breach stays the file's
        "--allow",  # an abbreviation is a flag given, too
        "127.0.0.0/8",
        "--max-connections",
        "3",
    )
    assert (effective["host"], effective["port"], effective["quiet"]) == ("0.0.0.0", 0, True)
    assert effective["password_file"] == str(tmp_path / "pw") and "password_env" not in effective
    assert effective["rate_limits"] == {"Heartbeat": "1/60", "on_breach": "disconnect"}
    admission = effective["admission"]
    assert (admission["allow_ips"], admission["deny_ips"]) == (["127.0.0.0/8"], ["10.1.0.0/16"])
    assert admission["upgrade_rate"] == "5/1"
    assert (effective["csms"]["max_connections"], effective["csms"]["duplicate"]) == (3, "refuse")
    assert effective["session"]["max_bad_messages"] == 3


def test_print_config_round_trips_and_hides_the_password(tmp_path: Path) -> None:
    first = run("serve", "--config", EXAMPLE, "--password", "hunter2", "--print-config")
    assert first.returncode == 0, first.stderr
    assert "hunter2" not in first.stdout and "# password = (given; not shown)" in first.stdout
    (tmp_path / "effective.toml").write_text(first.stdout)
    second = run("serve", "--config", tmp_path / "effective.toml", "--password", "x", "--print-config")
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines()[1:] == first.stdout.splitlines()[1:]
    effective = tomllib.loads(second.stdout)
    assert effective["websocket"]["keepalive"] == {
        "interval": 30.0,
        "timeout": 10.0,
        "jitter": 0.25,
        "defer_on_traffic": False,
    }
    assert effective["session"]["max_outstanding_calls"] == "none"


# -- mistakes: one line, exit status 2 ----------------------------------------------------------

#: id -> (file content, extra flags, the line after ``python -m ocpprpc: error: ``).
#: ``{cfg}``: the file as named on the command line; ``{tmp}``: its directory.
CASES: dict[str, tuple[str | bytes, tuple[str, ...], str]] = {
    "unknown-key": ("colour = 1\n", (), "{cfg}: colour: unknown key"),
    "unknown-key-suggestion": (
        'protocol = ["ocpp1.6"]\n',
        (),
        "{cfg}: protocol: unknown key (did you mean protocols?)",
    ),
    "unknown-nested-key": (
        "[websocket]\nmax_msg_size = 1\n",
        (),
        "{cfg}: websocket.max_msg_size: unknown key (did you mean max_message_size?)",
    ),
    "wrong-type-top": ('port = "9000"\n', (), "{cfg}: port: expected an integer, got a string '9000'"),
    "wrong-type-table": ("websocket = 5\n", (), "{cfg}: websocket: expected a table, got an integer 5"),
    "wrong-type-subtable": (
        "[websocket]\nkeepalive = true\n",
        (),
        "{cfg}: websocket.keepalive: expected a table, got a boolean True",
    ),
    "wrong-type-deepest": (
        '[websocket.keepalive]\ninterval = "fast"\n',
        (),
        "{cfg}: websocket.keepalive.interval: expected a number, got a string 'fast'",
    ),
    "cluster-heartbeat-zero": (
        "[cluster]\nheartbeat = 0\n",
        (),
        "{cfg}: cluster.heartbeat: must be more than 0, got 0",
    ),
    "cluster-heartbeat-text": (
        '[cluster]\nheartbeat = "fast"\n',
        (),
        "{cfg}: cluster.heartbeat: expected a number, got a string 'fast'",
    ),
    "gc-threshold-negative": (
        "gc_threshold = -1\n",
        (),
        "{cfg}: gc_threshold: must be from 0 to 10000000, got -1",
    ),
    "gc-threshold-huge": (
        "gc_threshold = 100000000\n",
        (),
        "{cfg}: gc_threshold: must be from 0 to 10000000, got 100000000",
    ),
    "gc-freeze-text": (
        'gc_freeze = "yes"\n',
        (),
        "{cfg}: gc_freeze: expected true or false, got a string 'yes'",
    ),
    "gc-freeze-integer": (
        "gc_freeze = 1\n",
        (),
        "{cfg}: gc_freeze: expected true or false, got an integer 1",
    ),
    "wrong-type-array-item": (
        'protocols = ["ocpp1.6", 2]\n',
        (),
        "{cfg}: protocols[1]: expected a string, got an integer 2",
    ),
    "routes-as-table": (
        "[routes]\n",
        (),
        "{cfg}: routes: expected an array of tables ([[routes]]), got a table",
    ),
    "date-for-port": (
        "port = 1979-05-27\n",
        (),
        "{cfg}: port: expected an integer, got a date/time datetime.date(1979, 5, 27)",
    ),
    "float-for-port": ("port = 1.5\n", (), "{cfg}: port: expected an integer, got a float 1.5"),
    "array-for-host": ('host = ["a"]\n', (), "{cfg}: host: expected a string, got an array"),
    "empty-host": ('host = ""\n', (), "{cfg}: host: must not be empty"),
    "env-name-with-equals": (
        'security_profile = 1\npassword_env = "A=B"\n',
        (),
        "{cfg}: password_env: not an environment variable name: 'A=B'",
    ),
    "port-range": ("port = 65536\n", (), "{cfg}: port: must be from 0 to 65535, got 65536"),
    "rate-zero-seconds": (
        '[rate_limits]\nMeterValues = "10/0"\n',
        (),
        "{cfg}: rate_limits.MeterValues: invalid rate limit '10/0':"
        " per_seconds must be positive and finite, got 0.0",
    ),
    "rate-not-text": (
        '[rate_limits]\n"*" = 10\n',
        (),
        '{cfg}: rate_limits."*": expected a rate such as "10/60", got an integer 10',
    ),
    "rate-action-with-space": (
        '[rate_limits]\n"Meter Values" = "1/60"\n',
        (),
        "{cfg}: rate_limits.\"Meter Values\": 'Meter Values' is not an OCPP action name"
        " (e.g. MeterValues) or '*'",
    ),
    "rate-action-unicode": (
        '[rate_limits]\n"M\u00e9terValues" = "1/60"\n',
        (),
        "{cfg}: rate_limits.\"M\\u00e9terValues\": 'M\\xe9terValues' is not an OCPP action name"
        " (e.g. MeterValues) or '*'",
    ),
    "burst-zero": (
        '[rate_limits]\nMeterValues = { rate = "10/60", burst = 0 }\n',
        (),
        "{cfg}: rate_limits.MeterValues.burst: must be at least 1, got 0",
    ),
    "burst-rate-bad": (
        '[rate_limits]\nMeterValues = { rate = "ten/60" }\n',
        (),
        "{cfg}: rate_limits.MeterValues.rate: invalid rate limit 'ten/60': expected COUNT/PERIOD"
        " with PERIOD a number of seconds or NUMBER+UNIT (s, m, h, d), e.g. '10/60', '10/1m', '100/h'",
    ),
    "burst-without-rate": (
        "[rate_limits]\nMeterValues = { burst = 5 }\n",
        (),
        '{cfg}: rate_limits.MeterValues: a limit table needs a rate, e.g. { rate = "10/60", burst = 20 }',
    ),
    "burst-unknown-key": (
        '[rate_limits]\nMeterValues = { rate = "1/1", bust = 5 }\n',
        (),
        "{cfg}: rate_limits.MeterValues.bust: unknown key (a limit has rate and burst)",
    ),
    "on-breach-unknown": (
        '[rate_limits]\n"*" = "1/1"\non_breach = "ignore"\n',
        (),
        "{cfg}: rate_limits.on_breach: 'ignore' is not one of 'drop', 'callerror', 'disconnect'",
    ),
    "on-breach-alone": (
        '[rate_limits]\non_breach = "callerror"\n',
        (),
        "{cfg}: rate_limits.on_breach: on_breach needs at least one limit in the table",
    ),
    "cidr-host-bits": (
        '[admission]\nallow_ips = ["127.0.0.0/8", "10.0.0.5/24"]\n',
        (),
        "{cfg}: admission.allow_ips[1]: invalid IP network '10.0.0.5/24': 10.0.0.5/24 has host bits set",
    ),
    "cidr-junk": (
        '[admission]\ndeny_ips = ["example.com"]\n',
        (),
        "{cfg}: admission.deny_ips[0]: invalid IP network 'example.com':"
        " 'example.com' does not appear to be an IPv4 or IPv6 network",
    ),
    "cidr-as-string": (
        '[admission]\ntrusted_proxies = "10.0.0.0/8"\n',
        (),
        "{cfg}: admission.trusted_proxies: expected an array, got a string '10.0.0.0/8'",
    ),
    "origin-bad": (
        '[admission]\nallow_origins = ["ops.example.com"]\n',
        (),
        "{cfg}: admission.allow_origins[0]: invalid origin 'ops.example.com':"
        " expected scheme://host[:port], e.g. 'https://ops.example.com'",
    ),
    "upgrade-rate-zero": (
        '[admission]\nupgrade_rate = "0/60"\n',
        (),
        "{cfg}: admission.upgrade_rate: invalid rate limit '0/60':"
        " a rate limit allows at least 1 message, got count=0",
    ),
    "tracked-ips-zero": (
        "[admission]\nmax_tracked_ips = 0\n",
        (),
        "{cfg}: admission.max_tracked_ips: must be at least 1, got 0",
    ),
    "negative-queue": (
        "[session]\nmax_queued_calls = -1\n",
        (),
        '{cfg}: session.max_queued_calls: must be at least 1 (or "none" for no bound), got -1',
    ),
    "negative-timeout": (
        "[websocket]\nclose_timeout = -1\n",
        (),
        "{cfg}: websocket.close_timeout: must not be negative, got -1.0",
    ),
    "nan-timeout": (
        "[websocket]\nsend_timeout = nan\n",
        (),
        "{cfg}: websocket.send_timeout: must be a finite number, got nan"
        ' (write "none" where there is no bound)',
    ),
    "max-connections-zero": (
        "[csms]\nmax_connections = 0\n",
        (),
        '{cfg}: csms.max_connections: must be at least 1 (or "none": no limit)',
    ),
    "duplicate-policy": (
        '[csms]\nduplicate = "kick"\n',
        (),
        "{cfg}: csms.duplicate: 'kick' is not one of 'evict', 'refuse'",
    ),
    "keepalive-jitter": (
        "[websocket.keepalive]\njitter = 1.5\n",
        (),
        "{cfg}: websocket.keepalive.jitter: must be in [0, 1), got 1.5",
    ),
    "unknown-protocol": (
        'protocols = ["ocpp1.6", "2.1"]\n',
        (),
        "{cfg}: protocols[1]: unknown protocol '2.1' (did you mean 'ocpp2.1'?)",
    ),
    "protocol-twice": (
        'protocols = ["ocpp1.6", "ocpp1.6"]\n',
        (),
        "{cfg}: protocols[1]: ocpp1.6 is listed twice",
    ),
    "no-protocols": ("protocols = []\n", (), "{cfg}: protocols: must not be empty"),
    "missing-cert": (
        'security_profile = 2\npassword = "pw"\ncert = "missing.pem"\n',
        (),
        "{cfg}: cert: no such file: '{tmp}/missing.pem'",
    ),
    "cert-not-pem": (
        'security_profile = 2\npassword = "pw"\ncert = ["junk.pem"]\n',
        (),
        "{cfg}: cert {tmp}/junk.pem: not usable as PEM TLS files (or the key does not match the certificate):"
        " [SSL] PEM lib",
    ),
    "profile-needs-password": (
        "security_profile = 1\n",
        (),
        "{cfg}: security_profile: security profile 1 needs a password"
        " (--password, --password-env or --password-file)",
    ),
    "password-at-profile-0": (
        'password = "pw"\n',
        (),
        "{cfg}: password: security profile 0 uses no password; the password is for profiles 1 and 2",
    ),
    "password-env-unset": (
        'security_profile = 1\npassword_env = "OCPPRPC_TEST_UNSET"\n',
        (),
        "{cfg}: password_env: the environment variable OCPPRPC_TEST_UNSET is not set",
    ),
    "two-password-sources": (
        'password = "pw"\npassword_env = "PW"\n',
        (),
        "{cfg}: password_env: give one of password, password_env and password_file, not also password",
    ),
    "empty-password": ('password = ""\n', (), "{cfg}: password: the password is empty"),
    "control-character": (
        'host = "local\\u0000host"\n',
        (),
        "{cfg}: host: control characters are not allowed: 'local\\x00host'",
    ),
    "cert-identity-below-3": (
        "cert_identity_check = false\n",
        (),
        "{cfg}: cert_identity_check: station certificates are for security profile 3",
    ),
    "invalid-toml": ("port = \n", (), "{cfg}: invalid TOML: Invalid value (at line 1, column 8)"),
    "duplicate-key": (
        "port = 1\nport = 2\n",
        (),
        "{cfg}: invalid TOML: Cannot overwrite a value (at line 2, column 9)",
    ),
    "not-utf8": (b"port = 1\n# \xff\n", (), "{cfg}: not UTF-8 text (line 2, byte 11)"),
    "oversized": ("#" * MAX_BYTES + "\n", (), "{cfg}: the configuration file is larger than 1024 KiB"),
    "nested-arrays": (
        "a = " + "[" * 5000 + "]" * 5000 + "\n",
        (),
        "{cfg}: invalid TOML: arrays or inline tables nested too deeply",
    ),
    "nested-inline-tables": (
        "a = " + "{b = " * 5000 + "1" + "}" * 5000 + "\n",
        (),
        "{cfg}: invalid TOML: arrays or inline tables nested too deeply",
    ),
    "deep-dotted-key": (
        "port = 1\n" + "a." * 200_000 + "b = 1\n",
        (),
        "{cfg}: line 2: a dotted key of more than 32 parts",
    ),
    "deep-table-header": ("[" + "a." * 100 + "b]\n", (), "{cfg}: line 1: a dotted key of more than 32 parts"),
    "key-with-newline": ('"po\\nrt" = 1\n', (), '{cfg}: "po\\nrt": unknown key (did you mean port?)'),
    "key-with-bidi-override": (
        '"\u202eport" = 1\n',
        (),
        '{cfg}: "\\u202eport": unknown key (did you mean port?)',
    ),
    "key-with-escape": (
        '[websocket]\n"\\u001b[31m" = 1\n',
        (),
        '{cfg}: websocket."\\u001b[31m": unknown key',
    ),
    "route-bad-pattern": (
        '[[routes]]\npattern = "/ocpp/{tenant}"\n',
        (),
        "{cfg}: routes[0].pattern: route pattern '/ocpp/{tenant}': must end with '/{identity}'"
        " (OCPP-J: the identity is the last segment)",
    ),
    "listener-unknown-route": (
        '[[routes]]\npattern = "/a/{identity}"\nname = "a"\n[[listeners]]\nport = 0\nroutes = ["a", "b"]\n',
        (),
        "{cfg}: listeners[0].routes[1]: no [[routes]] entry is named 'b'",
    ),
}


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("config")
    (tmp / "junk.pem").write_text("not a certificate\n")
    return tmp


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_file_is_one_line_naming_the_key_and_exit_status_2(case: str, scratch: Path) -> None:
    content, flags, expected = CASES[case]
    config = scratch / f"{case}.toml"
    config.write_bytes(content if isinstance(content, bytes) else content.encode())
    env = environment()
    env.pop(b"OCPPRPC_TEST_UNSET", None)
    done = run("serve", "--config", config, *flags, env=env)
    line = one_error_line(done.stderr)
    wanted = expected.replace("{cfg}", str(config)).replace("{tmp}", str(scratch))
    # An OpenSSL message ends in its source location, which varies between builds.
    assert line == wanted or line.startswith(wanted + " ("), (line, wanted)
    assert len(line) < 500
    assert done.returncode == 2 and done.stdout == ""


@pytest.mark.parametrize("case", list(CASES))
def test_the_same_mistakes_in_process(
    case: str, scratch: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cases above once more through ``main()`` in this process (fast, and measured by coverage)."""
    content, flags, expected = CASES[case]
    config = scratch / f"in-process-{case}.toml"
    config.write_bytes(content if isinstance(content, bytes) else content.encode())
    monkeypatch.delenv("OCPPRPC_TEST_UNSET", raising=False)
    assert main(["serve", "--config", str(config), *flags]) == 2
    out, err = capsys.readouterr()
    line = one_error_line(err)
    wanted = expected.replace("{cfg}", str(config)).replace("{tmp}", str(scratch))
    assert line == wanted or line.startswith(wanted + " ("), (line, wanted)
    assert out == ""


def test_print_config_without_a_file_shows_every_default(capsys: pytest.CaptureFixture[str]) -> None:
    defaults = print_config(capsys)
    assert (defaults["port"], defaults["validation"], defaults["rate_limits"]) == (9000, True, {})
    assert defaults["admission"]["upgrade_rate"] == "none" and defaults["admission"]["allow_ips"] == []
    assert defaults["csms"]["max_connections"] == "none" and "keepalive" not in defaults["websocket"]
    assert defaults["cluster"] == {
        "url": "none",
        "node_name": "none",
        "namespace": "default",
        "heartbeat": 0.75,
    }
    assert [key for key in defaults if isinstance(defaults[key], dict)] == [
        "rate_limits",
        "cluster",
        "admission",
        "websocket",
        "session",
        "csms",
    ]


def test_print_config_shows_routes_and_listeners(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tls_files: Path
) -> None:
    config = tls_files / "print.toml"
    config.write_text(
        'password = "hunter2"\nsecurity_profile = 1\n[rate_limits]\n"*" = "5/1"\nHeartbeat = "3/0.00001"\n'
        'MeterValues = { rate = "10/1m", burst = 20 }\n'
        "[websocket.keepalive]\ninterval = 5\n"
        '[[routes]]\npattern = "/t/{tenant}/{identity}"\nname = "t"\nprotocols = ["ocpp1.6"]\n'
        'validation = false\nmax_message_size = 10\nrate_limits = { Heartbeat = "1/2" }\n'
        '[[routes]]\npattern = "/u/{identity}"\n'
        '[[listeners]]\nport = 8443\ncert = "server.pem"\nclient_ca = "ca.pem"\nroutes = ["t"]\n'
    )
    assert main(["serve", "--config", str(config), "--print-config"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "hunter2" not in out
    effective = tomllib.loads(out)
    assert effective["rate_limits"] == {
        "*": "5/1",
        "Heartbeat": "3/0.00001",
        "MeterValues": {"rate": "10/60", "burst": 20},
        "on_breach": "drop",
    }
    assert effective["routes"] == [
        {
            "pattern": "/t/{tenant}/{identity}",
            "name": "t",
            "protocols": ["ocpp1.6"],
            "validation": False,
            "max_message_size": 10,
            "rate_limits": {"Heartbeat": "1/2"},
        },
        {"pattern": "/u/{identity}", "name": "/u/{identity}"},
    ]
    assert effective["websocket"]["keepalive"]["interval"] == 5.0
    assert effective["listeners"] == [
        {
            "name": "127.0.0.1:8443",
            "host": "127.0.0.1",
            "port": 8443,
            "cert": [str(tls_files / "server.pem")],
            "client_ca": str(tls_files / "ca.pem"),
            "require_client_cert": False,
            "routes": ["t"],
        }
    ]


@pytest.mark.parametrize(
    ("what", "name", "expected"),
    [
        ("missing", "nope.toml", "cannot read the configuration file: No such file or directory"),
        ("directory", ".", "cannot read the configuration file: Is a directory"),
    ],
)
def test_an_unreadable_file_is_one_line(
    tmp_path: Path, what: str, name: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / name
    done = run("serve", "--config", path)
    assert one_error_line(done.stderr) == f"{path}: {expected}"
    assert done.returncode == 2
    assert main(["serve", "--config", str(path)]) == 2
    assert one_error_line(capsys.readouterr().err) == f"{path}: {expected}"


def test_a_file_name_with_a_nul_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """Not possible from a shell (argv cannot hold NUL), but main() takes any list."""
    assert main(["serve", "--config", "a\x00b.toml"]) == 2
    assert one_error_line(capsys.readouterr().err) == (
        "a\\x00b.toml: cannot read the configuration file: embedded null byte"
    )


def test_a_huge_value_is_named_briefly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "cfg.toml").write_text('port = "' + "9" * 500_000 + '"\n')
    done = run("serve", "--config", tmp_path / "cfg.toml")
    line = one_error_line(done.stderr)
    assert line == f"{tmp_path}/cfg.toml: port: expected an integer, got a string '{'9' * 50}...'"
    assert done.returncode == 2
    assert main(["serve", "--config", str(tmp_path / "cfg.toml")]) == 2
    assert one_error_line(capsys.readouterr().err) == line


# -- every key, every level: a value of the wrong type ------------------------------------------


def _wrong_for(spec: Setting | Table) -> object:
    """A value of the wrong TOML type for *spec*."""
    if isinstance(spec, Table):
        return 7 if not spec.many else {"x": 1}
    return {"x": 1} if "{ rate" not in spec.kind else True


def _every_key(table: Table, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Setting | Table]]:
    found: list[tuple[tuple[str, ...], Setting | Table]] = []
    for name, spec in table.keys.items():
        found.append(((*path, name), spec))
        if isinstance(spec, Table):
            found += _every_key(spec, (*path, name, "0") if spec.many else (*path, name))
    if table.other is not None:
        found.append(((*path, "SomeAction"), table.other[1]))
    return found


def _document(path: tuple[str, ...], value: object) -> dict[str, Any]:
    """The smallest document holding *value* at *path* (``0`` indexes an array of tables)."""
    document: dict[str, Any] = {}
    here = document
    for index, name in enumerate(path[:-1]):
        if name == "0":
            continue
        if index + 1 < len(path) and path[index + 1] == "0":
            item: dict[str, Any] = {"pattern": "/a/{identity}"} if name == "routes" else {"port": 0}
            here[name] = [item]
            here = item
        else:
            here = here.setdefault(name, {})
    here[path[-1]] = value
    return document


def _dump(document: dict[str, Any]) -> str:
    """Just enough TOML for these documents: everything as inline tables and arrays."""

    def value(item: object) -> str:
        if isinstance(item, dict):
            return "{ " + ", ".join(f"{json.dumps(k)} = {value(v)}" for k, v in item.items()) + " }"
        if isinstance(item, list):
            return "[" + ", ".join(value(v) for v in item) + "]"
        return json.dumps(item)

    return "".join(f"{json.dumps(key)} = {value(item)}\n" for key, item in document.items())


def test_a_wrong_type_at_every_key_is_named(tmp_path: Path) -> None:
    """Each key of the schema, at every depth, given a value of the wrong type: a UsageError naming it."""
    keys = _every_key(config_schema())
    assert len(keys) > 60
    for path, spec in keys:
        config = tmp_path / "cfg.toml"
        config.write_text(_dump(_document(path, _wrong_for(spec))))
        with pytest.raises(UsageError) as raised:
            load_config(str(config))
        message = str(raised.value)
        dotted = ".".join(f"[{p}]" if p == "0" else p for p in path).replace(".[", "[").replace("*", '"*"')
        assert message.startswith(f"{config}: {dotted}: expected "), (path, message)
        assert "\n" not in message


# -- [[routes]] and [[listeners]]: parsed and checked for the integration -----------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(tmp / "server.pem"))
    ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
    return tmp


def test_routes_and_listeners_are_read_into_plain_values(tls_files: Path) -> None:
    config = tls_files / "cfg.toml"
    config.write_text(
        """
[[routes]]
pattern = "/ocpp/{tenant}/{identity}"
name = "tenants"
protocols = ["ocpp2.0.1"]
validation = true
max_message_size = 4096
rate_limits = { "*" = "100/60", MeterValues = "10/1m", Heartbeat = { rate = "2/1" }, on_breach = "drop" }

[[routes]]
pattern = "/legacy/{identity}"

[[listeners]]
port = 9000

[[listeners]]
name = "profile-3"
host = "::1"
port = 9443
cert = "server.pem"
client_ca = "ca.pem"
require_client_cert = true
routes = ["tenants"]

[[listeners]]
port = 9444
cert = ["server.pem"]
client_ca = "ca.pem"
"""
    )
    loaded = load_config(str(config))
    tenants, legacy = loaded.routes
    assert (tenants.pattern, tenants.name, tenants.protocols) == (
        "/ocpp/{tenant}/{identity}",
        "tenants",
        ("ocpp2.0.1",),
    )
    assert (tenants.validation, tenants.max_message_size, tenants.on_breach) == (True, 4096, "drop")
    assert tenants.rate_limits == (
        ("*", RateLimit(100, 60.0)),
        ("MeterValues", RateLimit(10, 60.0)),
        ("Heartbeat", RateLimit(2, 1.0)),
    )
    assert (tenants.where, legacy.where) == ("routes[0]", "routes[1]")
    assert (legacy.name, legacy.protocols, legacy.rate_limits) == ("/legacy/{identity}", None, None)
    plain, mutual, optional = loaded.listeners
    assert (plain.host, plain.port, plain.name, plain.ssl_context) == (
        "127.0.0.1",
        9000,
        "127.0.0.1:9000",
        None,
    )
    assert (mutual.name, mutual.host, mutual.routes, mutual.where) == (
        "profile-3",
        "::1",
        ("tenants",),
        "listeners[1]",
    )
    assert mutual.cert == (str(tls_files / "server.pem"),)  # relative to the file
    assert mutual.ssl_context is not None and mutual.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert optional.ssl_context is not None and optional.ssl_context.verify_mode == ssl.CERT_OPTIONAL


ROUTE_AND_LISTENER_ERRORS: dict[str, tuple[str, str]] = {
    "no-pattern": (
        '[[routes]]\nname = "x"\n',
        'routes[0]: a route needs a pattern, e.g. pattern = "/ocpp/{tenant}/{identity}"',
    ),
    "relative-pattern": (
        '[[routes]]\npattern = "ocpp/{identity}"\n',
        "routes[0].pattern: route pattern 'ocpp/{identity}': must start with '/'",
    ),
    "empty-segment": (
        '[[routes]]\npattern = "/ocpp//{identity}"\n',
        "routes[0].pattern: route pattern '/ocpp//{identity}': has an empty segment ('//' or a trailing '/')",
    ),
    "half-parameter": (
        '[[routes]]\npattern = "/t-{t}/{identity}"\n',
        "routes[0].pattern: route pattern '/t-{t}/{identity}': a parameter must be a whole "
        "segment, not 't-{t}'",
    ),
    "parameter-twice": (
        '[[routes]]\npattern = "/{identity}/{identity}"\n',
        "routes[0].pattern: route pattern '/{identity}/{identity}': parameter 'identity' appears twice",
    ),
    "bad-parameter": (
        '[[routes]]\npattern = "/{1x}/{identity}"\n',
        "routes[0].pattern: route pattern '/{1x}/{identity}': '{1x}' is not a valid parameter name",
    ),
    "dot-segment": (
        '[[routes]]\npattern = "/../{identity}"\n',
        "routes[0].pattern: route pattern '/../{identity}': '..' is not a path segment",
    ),
    "route-rate": (
        '[[routes]]\npattern = "/{identity}"\nrate_limits = { Heartbeat = "1/0" }\n',
        "routes[0].rate_limits.Heartbeat: invalid rate limit '1/0': per_seconds must be positive "
        "and finite, got 0.0",
    ),
    "route-size": (
        '[[routes]]\npattern = "/{identity}"\nmax_message_size = 0\n',
        "routes[0].max_message_size: must be at least 1, got 0",
    ),
    "route-protocol": (
        '[[routes]]\npattern = "/{identity}"\nprotocols = ["ocpp1.5"]\n',
        "routes[0].protocols[0]: unknown protocol 'ocpp1.5' (did you mean 'ocpp1.6'?)",
    ),
    "route-name-twice": (
        '[[routes]]\npattern = "/a/{identity}"\nname = "x"\n[[routes]]\npattern = '
        '"/b/{identity}"\nname = "x"\n',
        "routes[1].name: route name 'x' is also routes[0]'s",
    ),
    "pattern-twice": (
        '[[routes]]\npattern = "/a/{identity}"\n[[routes]]\npattern = "/a/{identity}"\n',
        "routes[1].name: route name '/a/{identity}' is also routes[0]'s",
    ),
    "route-unknown-key": (
        '[[routes]]\npattern = "/a/{identity}"\nauth = "x"\n',
        "routes[0].auth: unknown key",
    ),
    "no-port": (
        '[[listeners]]\nhost = "::"\n',
        "listeners[0]: a listener needs a port",
    ),
    "port-range": (
        "[[listeners]]\nport = -1\n",
        "listeners[0].port: must be from 0 to 65535, got -1",
    ),
    "same-address": (
        "[[listeners]]\nport = 9000\n[[listeners]]\nport = 9000\n",
        "listeners[1].port: 127.0.0.1:9000 is also listeners[0]'s",
    ),
    "key-without-cert": (
        '[[listeners]]\nport = 1\nkey = "server.pem"\n',
        "listeners[0].key: key needs cert",
    ),
    "ca-without-cert": (
        '[[listeners]]\nport = 1\nclient_ca = "ca.pem"\n',
        "listeners[0].client_ca: client_ca needs cert",
    ),
    "require-without-ca": (
        '[[listeners]]\nport = 1\ncert = "server.pem"\nrequire_client_cert = true\n',
        "listeners[0].require_client_cert: require_client_cert needs client_ca",
    ),
    "missing-ca": (
        '[[listeners]]\nport = 1\ncert = "server.pem"\nclient_ca = "nope.pem"\n',
        "listeners[0].client_ca: no such file: '{tmp}/nope.pem'",
    ),
    "bad-pem": (
        '[[listeners]]\nport = 1\ncert = "ca.pem"\n',
        "listeners[0].cert: not usable as PEM TLS files (or the key does not match the "
        "certificate): [SSL] PEM lib",
    ),
    "key-count": (
        '[[listeners]]\nport = 1\ncert = "server.pem"\nkey = ["server.pem", "server.pem"]\n',
        "listeners[0].key: give one key per cert, in the same order (or none: keys inside the cert files)",
    ),
    "listener-routes-type": (
        "[[listeners]]\nport = 1\nroutes = [1]\n",
        "listeners[0].routes[0]: expected a string, got an integer 1",
    ),
}


@pytest.mark.parametrize("case", list(ROUTE_AND_LISTENER_ERRORS))
def test_route_and_listener_mistakes_name_the_entry(case: str, tls_files: Path) -> None:
    content, expected = ROUTE_AND_LISTENER_ERRORS[case]
    config = tls_files / f"{case}.toml"
    config.write_text(content)
    with pytest.raises(UsageError) as raised:
        load_config(str(config))
    wanted = f"{config}: {expected.replace('{tmp}', str(tls_files))}"
    assert str(raised.value) == wanted or str(raised.value).startswith(wanted + " ("), str(raised.value)


# -- the schema, the flags and the docs agree ---------------------------------------------------


def test_every_serve_flag_has_a_key() -> None:
    parser = build_parser()
    serve_dests = set(vars(parser.parse_args(["serve"]))) - {"command", "config", "print_config"}
    by_key = set(_settings(config_schema())) | {"rate_limit", "rate_limit_action"}
    assert serve_dests - by_key == set(), "serve flags without a key in config_schema()"
    flags = {row[3].split()[0] for row in key_rows() if row[3]}
    assert {
        "--rate-limit",
        "--rate-limit-action",
        "--max-connections",
        "--upgrade-rate",
        "--allow-ip",
    } <= flags


def test_the_option_model_is_the_source_of_its_tables() -> None:
    from dataclasses import fields

    from ocpprpc._options.model import GROUPS

    schema = config_schema()
    for group, options in GROUPS.items():
        table = schema.keys[group]
        assert isinstance(table, Table)
        assert list(table.keys) == [f.name for f in fields(options)], group
    admission = schema.keys["admission"]
    assert isinstance(admission, Table)
    assert list(admission.keys) == [f.name for f in fields(AdmissionPolicy) if f.init]


def test_the_docs_hold_the_key_table_of_the_loader() -> None:
    page = (ROOT / "docs" / "cli.rst").read_text(encoding="utf-8")
    assert key_table_rst() in page, (
        "docs/cli.rst's key table is out of date: paste the output of"
        " python -c 'from ocpprpc._cli.config_print import key_table_rst; print(key_table_rst())'"
    )
    assert ".. literalinclude:: examples/csms.toml" in page
