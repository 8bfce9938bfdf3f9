"""Base classes of typed OCPP messages, and the per-version action registry shape.

Generated modules (``ocpprpc.v16``, ``ocpprpc.v201``, ``ocpprpc.v21``) and
protocols registered at runtime derive every payload type from these.  A
request type names its action and its response type as class variables, so
``call(request)`` can be typed end to end: ``call(Request[R]) -> R``.
"""

from __future__ import annotations

import builtins
import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import msgspec

__all__ = ["ActionSpec", "Direction", "Message", "OpenObject", "Request", "Response", "SendMessage"]


# Annotations below say ``builtins.type``: msgspec resolves inherited annotations in the
# subclass's namespace, where a payload field called ``type`` (2.x SecurityEventNotification,
# 2.1 Reset) would shadow the builtin.


class Message(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Any typed OCPP payload (a JSON object with camelCase keys on the wire)."""


class Response(Message):
    """The payload of a CALLRESULT."""


ResponseT = TypeVar("ResponseT", bound=Response)


class Request(Message, Generic[ResponseT]):
    """The payload of a CALL whose answer is a ``ResponseT``."""

    #: The OCPP action this payload is sent with.
    __ocpp_action__: ClassVar[str]
    #: The payload type of the CALLRESULT that answers it.
    __ocpp_response__: ClassVar[builtins.type[Any]]

    if TYPE_CHECKING:
        # Typing only (never defined at runtime): exposes ``ResponseT`` on the class
        # object, so ``Router.on(SomeRequest)`` can infer both the request class and
        # its response type from that one argument.
        def __ocpp_answer__(self) -> ResponseT: ...


class SendMessage(Message):
    """The payload of a 2.1 SEND: never answered, so it cannot be awaited."""

    __ocpp_action__: ClassVar[str]


class OpenObject(dict[str, Any]):
    """A JSON object that may carry keys no schema names (OCPP 2.x ``customData``).

    A Struct would silently drop unknown vendor keys, so an open object stays a
    ``dict``; only the properties the schema does name are checked, against
    the Struct in ``__ocpp_known__``.  Decoding needs the hook that
    :func:`ocpprpc.convert` and the schema codec pass to msgspec; without it
    msgspec reports ``Expected `CustomData`, got `dict```.
    """

    __slots__ = ()
    #: The Struct of the properties the schema names (extra keys are ignored by it).
    __ocpp_known__: ClassVar[builtins.type[Message]]


class Direction(enum.Flag):
    """Which side may initiate an action."""

    #: Charging station to CSMS.
    FROM_STATION = enum.auto()
    #: CSMS to charging station.
    FROM_CSMS = enum.auto()
    BOTH = FROM_STATION | FROM_CSMS


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """One action of one protocol version: its payload types and who sends it."""

    action: str
    request: type[Message]
    #: ``None`` for a SEND-only action (2.1 ``NotifyPeriodicEventStream``).
    response: type[Response] | None
    direction: Direction
