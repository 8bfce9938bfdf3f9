"""The MeterValues payload every benchmark here sends: the shared harness's (10 sampled values).

One definition, so that the engine, validation, codec and outbox benchmarks measure the same
message; each passes what it varies (transaction id, timestamp, whether values carry a location).
"""

from __future__ import annotations

from typing import Any

# (measurand, value, phase, unit), as in the harness's common/payloads.json.
MEASURANDS = (
    ("Energy.Active.Import.Register", "123456.7", None, "Wh"),
    ("Power.Active.Import", "11040.0", None, "W"),
    ("Current.Import", "16.02", "L1", "A"),
    ("Current.Import", "15.98", "L2", "A"),
    ("Current.Import", "16.05", "L3", "A"),
    ("Voltage", "230.1", "L1-N", "V"),
    ("Voltage", "229.8", "L2-N", "V"),
    ("Voltage", "230.4", "L3-N", "V"),
    ("SoC", "57", None, "Percent"),
    ("Temperature", "31.5", None, "Celsius"),
)


def meter_values(
    *,
    transaction_id: int = 1234567,
    timestamp: str = "2025-01-01T12:00:00.000Z",
    location: bool = True,
) -> dict[str, Any]:
    """A 1.6 MeterValues request with 10 sampled values (~1.3 KB as a CALL frame with locations)."""
    sampled = []
    for measurand, value, phase, unit in MEASURANDS:
        entry = {"value": value, "context": "Sample.Periodic", "measurand": measurand, "unit": unit}
        if phase:
            entry["phase"] = phase
        if location:
            entry["location"] = "EV" if measurand == "SoC" else "Outlet"
        sampled.append(entry)
    return {
        "connectorId": 1,
        "transactionId": transaction_id,
        "meterValue": [{"timestamp": timestamp, "sampledValue": sampled}],
    }
