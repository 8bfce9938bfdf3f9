"""Static typing checks, run by ``mypy --strict`` over tests/ (the typecheck session).

Each ``assert_type`` is a claim mypy verifies; each ``type: ignore[...]`` is a
claim that mypy *rejects* the line (``warn_unused_ignores`` turns a line that
stops being an error into a failure).  ``call`` and ``send`` have the shape
the session's ``call()``/``send()`` use: a request type carries its response
type, so the answer's type follows from the request.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TypeVar, assert_type

from msgspec import UNSET, UnsetType

from ocpprpc import ActionSpec, Request, Response, SendMessage, convert, v16, v21, v201

R = TypeVar("R", bound=Response)


async def call(request: Request[R]) -> R:
    """A stand-in with the session's ``call`` signature."""
    return convert({}, request.__ocpp_response__)  # type: ignore[no-any-return]


async def send(message: SendMessage) -> None:
    """A stand-in with the session's ``send`` signature: nothing comes back."""


async def station_side() -> None:
    boot = v16.BootNotificationRequest(charge_point_vendor="X", charge_point_model="Y")
    answer = await call(boot)
    assert_type(answer, v16.BootNotificationResponse)
    assert_type(answer.status, v16.RegistrationStatus)
    assert_type(answer.interval, int)
    assert_type(answer.current_time, datetime)

    event = v201.TransactionEventRequest(
        event_type=v201.TransactionEventEnum.STARTED,
        timestamp=datetime.now(UTC),
        trigger_reason=v201.TriggerReasonEnum.AUTHORIZED,
        seq_no=0,
        transaction_info=v201.Transaction(transaction_id="t1"),
    )
    assert_type(await call(event), v201.TransactionEventResponse)
    assert_type(event.evse, v201.EVSE | UnsetType)
    if event.evse is not UNSET:
        assert_type(event.evse.id, int)

    # The 2.1 SEND-only message cannot be awaited for a response ...
    stream = v21.NotifyPeriodicEventStream(id=1, pending=0, basetime=datetime.now(UTC), data=[])
    await call(stream)  # type: ignore[arg-type]
    # ... it is sent, and nothing comes back.
    assert_type(await send(stream), None)

    # Fields are checked statically too.
    v16.BootNotificationRequest(charge_point_vendor="X")  # type: ignore[call-arg]
    v16.BootNotificationRequest(charge_point_vendor="X", charge_point_model="Y", imsi=7)  # type: ignore[arg-type]


async def handle_boot(request: v201.BootNotificationRequest) -> v201.BootNotificationResponse:
    """A typed handler: the request's fields, the response it must return."""
    assert_type(request.charging_station.vendor_name, str)
    assert_type(request.reason, v201.BootReasonEnum)
    return v201.BootNotificationResponse(
        current_time=datetime.now(UTC), interval=300, status=v201.RegistrationStatusEnum.ACCEPTED
    )


def registries() -> None:
    assert_type(v16.ACTIONS, Mapping[str, ActionSpec])
    spec = v21.ACTIONS["NotifyPeriodicEventStream"]
    assert_type(spec.response, type[Response] | None)
    custom = v201.CustomData(vendorId="acme", anything=[1, 2])
    assert_type(v201.HeartbeatRequest(custom_data=custom).custom_data, v201.CustomData | UnsetType)
