"""Usage errors: one line on stderr, exit status 2, before any event loop starts.

Every case runs in its own ``python -m ocpprpc`` process.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from .helpers import WAIT, Arg, cli, environment, one_error_line

pytestmark = pytest.mark.timeout(60)

STATION = ("station", "ws://127.0.0.1:9/ocpp", "CP1")

#: id -> (arguments, the error line after ``python -m ocpprpc: error: ``).  ``{tmp}``: a scratch dir.
CASES: dict[str, tuple[tuple[Arg, ...], str]] = {
    "no-command": ((), "the following arguments are required: {serve,station,call}"),
    "unknown-flag": (("serve", "--colour"), "unrecognized arguments: --colour"),
    "port-not-a-number": (("serve", "--port", "x"), "argument --port: not a port number: 'x'"),
    "port-out-of-range": (("serve", "--port", "70000"), "argument --port: port 70000 is not in 0-65535"),
    "metrics-port-alone": (("serve", "--metrics-port", "9100"), "--metrics-port needs --metrics"),
    "metrics-port-is-the-port": (
        ("serve", "--port", "9000", "--metrics", "--metrics-port", "9000"),
        "--metrics-port 9000 is the station port (--port); pick another",
    ),
    "metrics-port-out-of-range": (
        ("serve", "--metrics", "--metrics-port", "-1"),
        "argument --metrics-port: port -1 is not in 0-65535",
    ),
    "bad-backend": (
        ("serve", "--backend", "curio"),
        "argument --backend: invalid choice: 'curio' (choose from 'asyncio', 'trio')",
    ),
    "heartbeat-interval-zero": (
        ("serve", "--heartbeat-interval", "0"),
        "argument --heartbeat-interval: must be at least 1, got 0",
    ),
    "negative-interval": (
        (*STATION, "--interval", "-1"),
        "argument --interval: must be a finite number of seconds >= 0, got '-1'",
    ),
    "rate-limit-no-equals": (
        ("serve", "--rate-limit", "MeterValues"),
        "argument --rate-limit: expected ACTION=COUNT/SECONDS (or '*=COUNT/SECONDS' for all CALLs), "
        "got 'MeterValues'",
    ),
    "rate-limit-bad-rate": (
        ("serve", "--rate-limit", "MeterValues=ten/60"),
        "argument --rate-limit: invalid rate limit 'ten/60': expected COUNT/PERIOD with PERIOD a number "
        "of seconds or NUMBER+UNIT (s, m, h, d), e.g. '10/60', '10/1m', '100/h'",
    ),
    "rate-limit-bad-action": (
        ("serve", "--rate-limit", "Meter Values=1/60"),
        "argument --rate-limit: 'Meter Values' is not an OCPP action name (e.g. MeterValues) or '*'",
    ),
    "rate-limit-twice": (
        ("serve", "--rate-limit", "*=1/60", "--rate-limit", "*=2/60"),
        "--rate-limit: * limited more than once",
    ),
    "rate-limit-action-alone": (
        ("serve", "--rate-limit-action", "disconnect"),
        "--rate-limit-action needs at least one --rate-limit",
    ),
    "rate-limit-action-unknown": (
        ("serve", "--rate-limit", "*=1/60", "--rate-limit-action", "ignore"),
        "argument --rate-limit-action: invalid choice: 'ignore' "
        "(choose from 'drop', 'callerror', 'disconnect')",
    ),
    "gc-threshold-negative": (
        ("serve", "--gc-threshold", "-5"),
        "argument --gc-threshold: must not be negative, got -5",
    ),
    "gc-threshold-huge": (
        ("serve", "--gc-threshold", "99999999999"),
        "argument --gc-threshold: must be at most 10000000, got 99999999999",
    ),
    "gc-threshold-text": (
        ("serve", "--gc-threshold", "lots"),
        "argument --gc-threshold: not a whole number: 'lots'",
    ),
    "max-connections-zero": (
        ("serve", "--max-connections", "0"),
        "argument --max-connections: must be at least 1, got 0",
    ),
    "upgrade-rate-bad": (
        ("serve", "--upgrade-rate", "0/60"),
        "argument --upgrade-rate: invalid rate limit '0/60': "
        "a rate limit allows at least 1 message, got count=0",
    ),
    "allow-ip-host-bits": (
        ("serve", "--allow-ip", "10.0.0.5/24"),
        "argument --allow-ip: invalid IP network '10.0.0.5/24': 10.0.0.5/24 has host bits set",
    ),
    "allow-ip-junk": (
        ("serve", "--allow-ip", "example.com"),
        "argument --allow-ip: invalid IP network 'example.com': "
        "'example.com' does not appear to be an IPv4 or IPv6 network",
    ),
    "reconnect-delay-zero": (
        (*STATION, "--max-reconnect-delay", "0"),
        "argument --max-reconnect-delay: must be more than 0 seconds",
    ),
    "url-without-scheme": (
        ("station", "127.0.0.1:9000/ocpp", "CP1"),
        "argument url: '127.0.0.1:9000/ocpp' is not a ws:// or wss:// URL (e.g. ws://127.0.0.1:9000/ocpp)",
    ),
    "http-url": (
        ("station", "http://127.0.0.1:9000/ocpp", "CP1"),
        "argument url: 'http://127.0.0.1:9000/ocpp' is not a ws:// or wss:// URL (e.g. ws://127.0.0.1:9000/ocpp)",
    ),
    "url-bad-port": (
        ("station", "ws://127.0.0.1:99999/ocpp", "CP1"),
        "argument url: invalid URL 'ws://127.0.0.1:99999/ocpp': Port out of range 0-65535",
    ),
    "identity-with-slash": (
        ("station", "ws://127.0.0.1:9/ocpp", "CP/1"),
        "argument identity: invalid station identity 'CP/1':"
        " must not contain '/' or '\\' (also not percent-encoded)",
    ),
    "identity-too-long": (
        ("station", "ws://127.0.0.1:9/ocpp", "C" * 49),
        f"argument identity: invalid station identity '{'C' * 49}': must be 1 to 48 characters long, not 49",
    ),
    "identity-dot-dot": (
        ("station", "ws://127.0.0.1:9/ocpp", ".."),
        "argument identity: invalid station identity '..': must not be '.' or '..'",
    ),
    "key-count-differs": (
        (
            "serve",
            "--security-profile",
            "3",
            "--cert",
            "{tmp}/cert.pem",
            "--cert",
            "{tmp}/cert.pem",
            "--key",
            "{tmp}/cert.pem",
            "--client-ca",
            "{tmp}/cert.pem",
        ),
        "give one --key per --cert, in the same order (or none: keys inside the --cert files)",
    ),
    "cert-identity-flag-below-profile-3": (
        ("serve", "--no-cert-identity-check"),
        "--no-cert-identity-check: station certificates are for security profile 3",
    ),
    "protocol-1.6": (
        (*STATION, "--protocol", "1.6"),
        "argument --protocol: unknown protocol '1.6' (did you mean 'ocpp1.6'?)",
    ),
    "protocol-2.0.1": (
        (*STATION, "--protocol", "2.0.1"),
        "argument --protocol: unknown protocol '2.0.1' (did you mean 'ocpp2.0.1'?)",
    ),
    "protocol-201": (
        (*STATION, "--protocol", "201"),
        "argument --protocol: unknown protocol '201' (did you mean 'ocpp2.0.1'?)",
    ),
    "protocol-2.1": (
        ("serve", "--protocols", "ocpp1.6,2.1"),
        "argument --protocols: unknown protocol '2.1' (did you mean 'ocpp2.1'?)",
    ),
    "protocol-OCPP1.6": (
        (*STATION, "--protocol", "OCPP1.6"),
        "argument --protocol: unknown protocol 'OCPP1.6' (did you mean 'ocpp1.6'?)",
    ),
    "protocol-unknown": (
        (*STATION, "--protocol", "mqtt"),
        "argument --protocol: unknown protocol 'mqtt' (choose from ocpp2.1, ocpp2.0.1, ocpp1.6)",
    ),
    "protocol-twice": (
        ("serve", "--protocols", "ocpp1.6,ocpp1.6"),
        "argument --protocols: ocpp1.6 is listed twice",
    ),
    "profile-1-without-password": (
        ("serve", "--security-profile", "1"),
        "security profile 1 needs a password (--password, --password-env or --password-file)",
    ),
    "profile-2-without-cert": (
        ("serve", "--security-profile", "2", "--password", "s3cret"),
        "security profile 2 needs --cert (and --key unless it is inside --cert)",
    ),
    "profile-3-without-client-ca": (
        ("serve", "--security-profile", "3", "--cert", "{tmp}/cert.pem"),
        "security profile 3 needs --client-ca (the CA that signs station certificates)",
    ),
    "password-with-profile-0": (
        ("serve", "--password", "s3cret"),
        "--password: security profile 0 uses no password; the password is for profiles 1 and 2",
    ),
    "cert-with-profile-1": (
        ("serve", "--security-profile", "1", "--password", "s3cret", "--cert", "{tmp}/cert.pem"),
        "--cert: TLS is for security profiles 2 and 3",
    ),
    "client-ca-with-profile-2": (
        (
            "serve",
            "--security-profile",
            "2",
            "--password",
            "s3cret",
            "--cert",
            "{tmp}/cert.pem",
            "--client-ca",
            "{tmp}/cert.pem",
        ),
        "--client-ca: station certificates are for security profile 3",
    ),
    "tls-file-missing": (
        ("serve", "--security-profile", "2", "--password", "s3cret", "--cert", "{tmp}/missing.pem"),
        "argument --cert: no such file: '{tmp}/missing.pem'",
    ),
    "tls-file-not-pem": (
        ("serve", "--security-profile", "2", "--password", "s3cret", "--cert", "{tmp}/cert.pem"),
        "--cert {tmp}/cert.pem: not usable as PEM TLS files (or the key does not match the certificate):"
        " [SSL] PEM lib",
    ),
    "station-ca-missing": (
        ("station", "wss://127.0.0.1:9/ocpp", "CP1", "--ca", "{tmp}/missing.pem"),
        "argument --ca: no such file: '{tmp}/missing.pem'",
    ),
    "station-tls-on-ws-url": (
        (*STATION, "--ca", "{tmp}/cert.pem"),
        "--ca: TLS needs a wss:// URL",
    ),
    "station-key-without-cert": (
        ("station", "wss://127.0.0.1:9/ocpp", "CP1", "--key", "{tmp}/cert.pem"),
        "--key needs --cert",
    ),
    "two-password-sources": (
        (*STATION, "--password", "a", "--password-env", "B"),
        "argument --password-env: not allowed with argument --password",
    ),
    "password-env-unset": (
        (*STATION, "--password-env", "OCPPRPC_TEST_UNSET"),
        "--password-env: the environment variable OCPPRPC_TEST_UNSET is not set",
    ),
    "password-env-empty": (
        (*STATION, "--password-env", "OCPPRPC_TEST_EMPTY"),
        "--password-env OCPPRPC_TEST_EMPTY: the password is empty",
    ),
    "password-file-missing": (
        (*STATION, "--password-file", "{tmp}/missing.txt"),
        "argument --password-file: no such file: '{tmp}/missing.txt'",
    ),
    "password-file-empty": (
        (*STATION, "--password-file", "{tmp}/empty.txt"),
        "--password-file {tmp}/empty.txt: the password is empty",
    ),
}


def _fill(arg: Arg, tmp: Path) -> Arg:
    return arg.replace("{tmp}", str(tmp)) if isinstance(arg, str) else arg


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files the cases name: a PEM file that is not one, an empty password file."""
    tmp = tmp_path_factory.mktemp("usage")
    (tmp / "cert.pem").write_text("not a certificate\n")
    (tmp / "empty.txt").write_bytes(b"\n")
    return tmp


@pytest.mark.parametrize("case", list(CASES))
def test_a_usage_error_is_one_line_and_exit_status_2(case: str, scratch: Path) -> None:
    args, expected = CASES[case]
    env = environment(OCPPRPC_TEST_EMPTY="")
    env.pop(b"OCPPRPC_TEST_UNSET", None)
    done = subprocess.run(
        cli(*(_fill(arg, scratch) for arg in args)),
        capture_output=True,
        text=True,
        env=env,
        timeout=WAIT,
        check=False,
    )
    line = one_error_line(done.stderr)
    wanted = str(_fill(expected, scratch))
    # An OpenSSL message ends in its source location, which varies between builds.
    assert line == wanted or line.startswith(wanted + " ("), (line, wanted)
    assert done.returncode == 2
    assert done.stdout == ""


@pytest.mark.parametrize("command", [(), ("serve",), ("station",)], ids=["main", "serve", "station"])
def test_help_shows_defaults_and_no_markup(command: tuple[str, ...]) -> None:
    done = subprocess.run(cli(*command, "--help"), capture_output=True, text=True, timeout=WAIT, check=False)
    assert done.returncode == 0
    assert done.stderr == ""
    assert "``" not in done.stdout and ":mod:" not in done.stdout
    assert done.stdout.startswith(f"usage: python -m ocpprpc {' '.join(command)}".rstrip())
    if command == ("serve",):
        for default in ("(default: 9000)", "(default: 127.0.0.1)", "(default: ocpp2.1,ocpp2.0.1,ocpp1.6)"):
            assert default in " ".join(done.stdout.split()), default
        assert "visible in the process list" in done.stdout
    if command == ("station",):
        for default in ("(default: ocpp1.6)", "(default: 3)", "(default: 30.0)"):
            assert default in " ".join(done.stdout.split()), default
    assert "(default: None)" not in done.stdout and "(default: False)" not in done.stdout
