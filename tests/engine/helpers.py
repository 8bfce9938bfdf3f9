"""Two engines wired back to back, as h11's ConnectionPair: no sockets, no loop."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from ocpprpc import Connection, Event, ProtocolRules, Role

VERSIONS = ("ocpp1.6", "ocpp2.0.1", "ocpp2.1")
ROLES = (Role.CHARGING_STATION, Role.CSMS)


def counter_ids(prefix: str) -> Callable[[], str]:
    """A deterministic message-id factory: ``prefix-1``, ``prefix-2``, ..."""
    numbers = itertools.count(1)
    return lambda: f"{prefix}-{next(numbers)}"


def other(role: Role) -> Role:
    return Role.CSMS if role is Role.CHARGING_STATION else Role.CHARGING_STATION


class ConnectionPair:
    """A charging station and a CSMS engine joined by a fake link."""

    def __init__(self, protocol: str | ProtocolRules = "ocpp1.6", **options: Any) -> None:
        self.conn = {
            role: Connection(role, protocol, id_factory=counter_ids(role.value), **options) for role in ROLES
        }

    def send(self, sender: Role, event: Event) -> list[Event]:
        """Send *event* from *sender*; return the events the receiver produced."""
        data = self.conn[sender].send(event)
        receiver = self.conn[other(sender)]
        receiver.receive_message(data)
        return list(receiver.events())

    def deliver(self, receiver: Role, data: str | bytes | None) -> list[Event]:
        """Hand raw *data* to *receiver*; return its events."""
        self.conn[receiver].receive_message(data)
        return list(self.conn[receiver].events())


def answer_own_call(version: str, answer: str, **options: Any) -> tuple[str, list[Event]]:
    """A station engine sends one Heartbeat CALL; feed it *answer* (``{id}`` is replaced).

    Returns the CALL's message id and the events the answer produced.
    """
    engine = Connection(Role.CHARGING_STATION, version, **options)
    call = engine.new_call("Heartbeat", {})
    engine.send(call)
    engine.receive_message(answer.replace("{id}", call.message_id))
    return call.message_id, engine.events()
