"""Generate ocpprpc.v16, ocpprpc.v201 and ocpprpc.v21 from the schemas in schemas/.

Run with ``nox -s generate`` (or ``python tools/generate.py``); ``--check``
exits 1 if a committed module differs from what the schemas produce (the test
suite runs the same comparison).

The schemas say what a payload looks like but not who may send it, so the
direction of every action is written here by hand from the specifications'
message lists (sources next to each table).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path

from ocpprpc._typed.messages import Direction
from ocpprpc._typed.schema import build_model, load_schemas, render_module

ROOT = Path(__file__).resolve().parent.parent
STATION, CSMS, BOTH = Direction.FROM_STATION, Direction.FROM_CSMS, Direction.BOTH


def _table(station: str, csms: str) -> dict[str, Direction]:
    table: dict[str, Direction] = {}
    for action in station.split():
        table[action] = STATION
    for action in csms.split():
        table[action] = BOTH if action in table else CSMS
    return table


# OCPP 1.6 (2015-10-08) section 4 "Operations Initiated by Charge Point" and section 5
# "Operations Initiated by Central System"; OCPP 1.6 Security Whitepaper edition 2, sections
# 4-5 (the 11 security messages).  DataTransfer is in both lists.
DIRECTIONS_16 = _table(
    station="""
        Authorize BootNotification DataTransfer DiagnosticsStatusNotification FirmwareStatusNotification
        Heartbeat MeterValues StartTransaction StatusNotification StopTransaction
        LogStatusNotification SecurityEventNotification SignCertificate SignedFirmwareStatusNotification
    """,
    csms="""
        CancelReservation ChangeAvailability ChangeConfiguration ClearCache ClearChargingProfile DataTransfer
        GetCompositeSchedule GetConfiguration GetDiagnostics GetLocalListVersion RemoteStartTransaction
        RemoteStopTransaction ReserveNow Reset SendLocalList SetChargingProfile TriggerMessage UnlockConnector
        UpdateFirmware
        CertificateSigned DeleteCertificate ExtendedTriggerMessage GetInstalledCertificateIds GetLog
        InstallCertificate SignedUpdateFirmware
    """,
)

# OCPP 2.0.1 Part 2 (Specification), section "Messages" / each use case's message
# sequence: who sends the request.  DataTransfer is in both lists; PublishFirmware and
# UnpublishFirmware go from the CSMS to a Local Controller (a station role here).
_STATION_201 = """
    Authorize BootNotification ClearedChargingLimit DataTransfer FirmwareStatusNotification
    Get15118EVCertificate GetCertificateStatus Heartbeat LogStatusNotification MeterValues
    NotifyChargingLimit NotifyCustomerInformation NotifyDisplayMessages NotifyEVChargingNeeds
    NotifyEVChargingSchedule NotifyEvent NotifyMonitoringReport NotifyReport
    PublishFirmwareStatusNotification ReportChargingProfiles ReservationStatusUpdate
    SecurityEventNotification SignCertificate StatusNotification TransactionEvent
"""
_CSMS_201 = """
    CancelReservation CertificateSigned ChangeAvailability ClearCache ClearChargingProfile
    ClearDisplayMessage ClearVariableMonitoring CostUpdated CustomerInformation DataTransfer
    DeleteCertificate GetBaseReport GetChargingProfiles GetCompositeSchedule GetDisplayMessages
    GetInstalledCertificateIds GetLocalListVersion GetLog GetMonitoringReport GetReport
    GetTransactionStatus GetVariables InstallCertificate PublishFirmware RequestStartTransaction
    RequestStopTransaction ReserveNow Reset SendLocalList SetChargingProfile SetDisplayMessage
    SetMonitoringBase SetMonitoringLevel SetNetworkProfile SetVariableMonitoring SetVariables
    TriggerMessage UnlockConnector UnpublishFirmware UpdateFirmware
"""
DIRECTIONS_201 = _table(_STATION_201, _CSMS_201)

# OCPP 2.1 Edition 1 Part 2: the 2.0.1 actions keep their direction; the 27 new ones below
# (secondary source: no transcription of the 2.1 document was available; checked against the
# use cases the messages belong to and against other implementations' message lists).
# NotifyPeriodicEventStream is the only SEND (Part 4 section 4.2.5): never answered.
DIRECTIONS_21 = _table(
    _STATION_201
    + """
    BatterySwap ClosePeriodicEventStream GetCertificateChainStatus NotifyDERAlarm NotifyDERStartStop
    NotifyPeriodicEventStream NotifyPriorityCharging NotifySettlement OpenPeriodicEventStream
    PullDynamicScheduleUpdate ReportDERControl VatNumberValidation
    """,
    _CSMS_201
    + """
    AFRRSignal AdjustPeriodicEventStream ChangeTransactionTariff ClearDERControl ClearTariffs
    GetDERControl GetPeriodicEventStream GetTariffs NotifyAllowedEnergyTransfer NotifyWebPaymentStarted
    RequestBatterySwap SetDERControl SetDefaultTariff UpdateDynamicSchedule UsePriorityCharging
    """,
)

# OCPP 1.6's schemas define their enums and objects inline, without names; these are the
# names the 1.6 specification (section 7, "Types") gives them.  2.x schemas name everything.
RENAMES_16 = {
    "IdTagInfoStatus": "AuthorizationStatus",
    "BootNotificationResponseStatus": "RegistrationStatus",
    "CancelReservationResponseStatus": "GenericStatus",  # every Accepted/Rejected status
    "ChangeAvailabilityResponseStatus": "AvailabilityStatus",
    "ChangeAvailabilityRequestType": "AvailabilityType",
    "ChangeConfigurationResponseStatus": "ConfigurationStatus",
    "ClearChargingProfileResponseStatus": "ClearChargingProfileStatus",
    "DataTransferResponseStatus": "DataTransferStatus",
    "DiagnosticsStatusNotificationRequestStatus": "DiagnosticsStatus",
    "FirmwareStatusNotificationRequestStatus": "FirmwareStatus",
    "Context": "ReadingContext",
    "Format": "ValueFormat",
    "SampledValueUnit": "UnitOfMeasure",
    # StopTransaction's unit list differs from MeterValues' (no "Hertz", see schemas/README.md).
    "StopTransactionRequestUnit": "StopTransactionUnitOfMeasure",
    "ReserveNowResponseStatus": "ReservationStatus",
    "ResetRequestType": "ResetType",
    "SendLocalListResponseStatus": "UpdateStatus",
    "SetChargingProfileResponseStatus": "ChargingProfileStatus",
    "ErrorCode": "ChargePointErrorCode",
    "StatusNotificationRequestStatus": "ChargePointStatus",
    "RequestedMessage": "MessageTrigger",
    "UnlockConnectorResponseStatus": "UnlockStatus",
    "MeterValueSampledValue": "SampledValue",
    "TransactionDataSampledValue": "StopTransactionSampledValue",
    "LocalAuthorizationList": "AuthorizationData",
}

VERSIONS: tuple[tuple[str, str, str, Mapping[str, Direction], Mapping[str, str]], ...] = (
    ("ocpp1.6", "v16", "OCPP 1.6 (with the Security Whitepaper messages)", DIRECTIONS_16, RENAMES_16),
    ("ocpp2.0.1", "v201", "OCPP 2.0.1", DIRECTIONS_201, {}),
    ("ocpp2.1", "v21", "OCPP 2.1 Edition 1", DIRECTIONS_21, {}),
)


def render(protocol: str, title: str, directions: Mapping[str, Direction], renames: Mapping[str, str]) -> str:
    """The module source for one protocol."""
    schemas = load_schemas(ROOT / "schemas" / protocol)
    missing = sorted({s.removesuffix("Request").removesuffix("Response") for s in schemas} - set(directions))
    if missing:
        raise SystemExit(f"{protocol}: no direction written down for {missing}")
    model = build_model(protocol, schemas, directions, renames=renames)
    extra = sorted(set(directions) - set(model.actions))
    if extra:
        raise SystemExit(f"{protocol}: directions for actions without a schema: {extra}")
    return render_module(
        model, title=f"Typed messages of {title}: one Struct per payload.", source=f"schemas/{protocol}/"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if a module is stale")
    args = parser.parse_args(argv)
    stale = []
    for protocol, package, title, directions, renames in VERSIONS:
        source = render(protocol, title, directions, renames)
        path = ROOT / "src" / "ocpprpc" / package / "__init__.py"
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == source:
            continue
        if args.check:
            stale.append(str(path.relative_to(ROOT)))
            continue
        path.parent.mkdir(exist_ok=True)
        path.write_text(source, encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print("stale generated modules (run `nox -s generate`):", *stale, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
