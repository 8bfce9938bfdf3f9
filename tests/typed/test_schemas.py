"""The shipped schemas are the verbatim OCA files, and the generated modules match them."""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import ocpprpc
from ocpprpc import Direction, SendMessage, v16, v21, v201

ROOT = Path(__file__).resolve().parent.parent.parent
SCHEMAS = ROOT / "schemas"


def test_file_counts_match_the_ocpp_package() -> None:
    counts = {v: len(list((SCHEMAS / v).glob("*.json"))) for v in ("ocpp1.6", "ocpp2.0.1", "ocpp2.1")}
    assert counts == {"ocpp1.6": 78, "ocpp2.0.1": 128, "ocpp2.1": 181}


def test_every_file_matches_its_recorded_hash() -> None:
    recorded: dict[str, str] = {}
    for line in (SCHEMAS / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ", 1)
        recorded[name] = digest
    actual = {
        str(p.relative_to(SCHEMAS)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in SCHEMAS.glob("*/*.json")
    }
    assert actual == recorded


def test_schema_path_finds_the_schemas() -> None:
    for version in ("ocpp1.6", "ocpp2.0.1", "ocpp2.1"):
        assert (ocpprpc.schema_path(version) / "BootNotificationResponse.json").is_file()
    with pytest.raises(FileNotFoundError):
        ocpprpc.schema_path("ocpp9")


def test_the_wheel_carries_the_schemas() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    force_include = config["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    assert force_include == {"schemas": "ocpprpc/_schemas"}


def test_generated_modules_are_up_to_date() -> None:
    """Regenerating from schemas/ must not change the committed modules (`nox -s generate`)."""
    spec = importlib.util.spec_from_file_location("generate", ROOT / "tools" / "generate.py")
    assert spec is not None and spec.loader is not None
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    for protocol, package, title, directions, renames in generate.VERSIONS:
        committed = (ROOT / "src" / "ocpprpc" / package / "__init__.py").read_text(encoding="utf-8")
        assert generate.render(protocol, title, directions, renames) == committed, package


def test_generator_check_mode_reports_clean() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "generate.py"), "--check"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr


def test_action_registries() -> None:
    assert (len(v16.ACTIONS), len(v201.ACTIONS), len(v21.ACTIONS)) == (39, 64, 91)
    assert v16.ACTIONS["BootNotification"].direction is Direction.FROM_STATION
    assert v16.ACTIONS["RemoteStartTransaction"].direction is Direction.FROM_CSMS
    assert v16.ACTIONS["DataTransfer"].direction is Direction.BOTH
    assert v16.ACTIONS["SignCertificate"].direction is Direction.FROM_STATION
    assert v201.ACTIONS["TransactionEvent"].request is v201.TransactionEventRequest
    assert v201.ACTIONS["TransactionEvent"].response is v201.TransactionEventResponse
    assert v21.ACTIONS["NotifyWebPaymentStarted"].direction is Direction.FROM_CSMS
    send = v21.ACTIONS["NotifyPeriodicEventStream"]
    assert send.response is None and issubclass(send.request, SendMessage)
    assert send.direction is Direction.FROM_STATION
    for registry in (v16.ACTIONS, v201.ACTIONS, v21.ACTIONS):
        for action, spec in registry.items():
            assert spec.action == action == spec.request.__ocpp_action__  # type: ignore[attr-defined]
            if spec.response is not None:
                assert spec.request.__ocpp_response__ is spec.response  # type: ignore[attr-defined]


def test_wire_names_are_exact() -> None:
    assert v21.SetDERControlRequest.__struct_encode_fields__ is not None
    fields = dict(
        zip(
            v16.BootNotificationRequest.__struct_fields__,
            v16.BootNotificationRequest.__struct_encode_fields__,
            strict=True,
        )
    )
    assert fields["charge_point_vendor"] == "chargePointVendor"
    # 2.1 names that are not lowerCamel keep their spelling on the wire.
    limits = dict(
        zip(
            v21.ChargingSchedulePeriod.__struct_fields__,
            v21.ChargingSchedulePeriod.__struct_encode_fields__,
            strict=True,
        )
    )
    assert limits["limit_l2"] == "limit_L2"


def test_the_typing_checks_import() -> None:
    """tests/typed/typed_calls.py is checked by mypy; here it must at least import cleanly."""
    from . import typed_calls

    assert typed_calls.call.__doc__
