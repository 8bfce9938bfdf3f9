"""The ready-made CSMS and station behaviour behind ``python -m ocpprpc``.

:func:`demo_csms_router` answers every station-initiated action of every
built-in version with a valid response; :func:`demo_station_router` answers
every CSMS-initiated action.  Bodies come from :func:`sample_payload` (the
smallest valid response, enums preferring ``"Accepted"``) plus the few fields
a real CSMS must choose (heartbeat interval, transaction id, current time).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .._rpc.router import CallContext, Router
from .._typed.messages import Direction
from .._typed.sample import sample_payload
from .._typed.validation import protocol_types
from .scenario import now_iso

__all__ = ["BUILTIN_PROTOCOLS", "demo_csms_router", "demo_station_router"]

log = logging.getLogger("ocpprpc.demo")

BUILTIN_PROTOCOLS = ("ocpp2.1", "ocpp2.0.1", "ocpp1.6")

Overrides = Callable[[Any, CallContext], Mapping[str, Any]]


def _summary(payload: Any) -> str:
    """The one field a human wants to see in a response (``status``), if it has one."""
    if isinstance(payload, Mapping):
        for key in ("status", "idTagInfo", "idTokenInfo"):
            value = payload.get(key)
            if isinstance(value, Mapping):
                value = value.get("status")
            if value is not None:
                return str(value)
    return "ok"


def _handler(response_type: type[Any] | None, overrides: Overrides | None) -> Any:
    async def answer(request: Any, ctx: CallContext) -> Any:
        if response_type is None:  # a SEND: nothing to answer
            log.info("%s -> %s (SEND)", ctx.identity, ctx.action)
            return None
        payload = sample_payload(response_type, overrides(request, ctx) if overrides else None)
        log.info("%s -> %s -> %s", ctx.identity, ctx.action, _summary(payload))
        return payload

    return answer


def _router(direction: Direction, overrides: Mapping[str, Overrides], protocols: Iterable[str]) -> Router:
    router = Router()
    for protocol in protocols:
        for action, spec in protocol_types(protocol).actions.items():
            if spec.direction & direction:
                router.on(action, protocol=protocol)(_handler(spec.response, overrides.get(action)))
    return router


def demo_csms_router(
    protocols: Iterable[str] = BUILTIN_PROTOCOLS, *, heartbeat_interval: int = 300
) -> Router:
    """Handlers for every station-initiated action: what ``python -m ocpprpc serve`` runs."""
    transaction_ids = itertools.count(1)

    def boot(request: Any, ctx: CallContext) -> Mapping[str, Any]:
        return {"status": "Accepted", "currentTime": now_iso(), "interval": heartbeat_interval}

    def heartbeat(request: Any, ctx: CallContext) -> Mapping[str, Any]:
        return {"currentTime": now_iso()}

    def start_transaction(request: Any, ctx: CallContext) -> Mapping[str, Any]:
        return {"transactionId": next(transaction_ids), "idTagInfo": {"status": "Accepted"}}

    return _router(
        Direction.FROM_STATION,
        {"BootNotification": boot, "Heartbeat": heartbeat, "StartTransaction": start_transaction},
        protocols,
    )


def demo_station_router(protocols: Iterable[str] = BUILTIN_PROTOCOLS) -> Router:
    """Handlers for every CSMS-initiated action: what ``python -m ocpprpc station`` runs."""
    return _router(Direction.FROM_CSMS, {}, protocols)
