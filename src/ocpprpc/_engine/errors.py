"""The exceptions of ocpprpc.

Two families, as in h11 and wsproto:

* :class:`LocalProtocolError`: *you* asked for something the protocol forbids
  (sending on a closed connection, a CALLERROR that answers no CALL, a fourth CALL
  while the limit is one).  Fix the calling code.
* :class:`RemoteProtocolError`: the *peer* misbehaved in a way that fails an
  operation of yours (for example it answered your CALL with an unprocessable
  CALLRESULT).  The engine itself reports remote misbehaviour as events; the
  transports raise this type into the caller that the misbehaviour affects.

:class:`OCPPError` is neither: it is the application-level CALLERROR, raised by a
handler to answer a CALL with an error, and raised into a caller whose CALL was
answered with one.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from .rules import ErrorCode, parse_error_code

__all__ = [
    "LocalProtocolError",
    "OCPPError",
    "OutboundPayloadError",
    "PayloadError",
    "ProtocolError",
    "RemoteProtocolError",
    "TooManyOutstandingCalls",
]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


class ProtocolError(Exception):
    """Base of the engine's protocol errors; never raised itself."""

    def __init__(self, message: str) -> None:
        if type(self) is ProtocolError:
            raise TypeError("ProtocolError is abstract: raise LocalProtocolError or RemoteProtocolError")
        super().__init__(message)


class LocalProtocolError(ProtocolError):
    """The local application asked for something OCPP-J does not allow."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol in a way that fails a local operation."""


class TooManyOutstandingCalls(LocalProtocolError):
    """Sending this CALL would exceed the outstanding-call limit.

    The transports queue calls around this; a direct user of the engine must wait
    for a result (or abandon a call) before sending the next one.
    """


class OCPPError(Exception):
    """An OCPP-J CALLERROR: an error code, a description and details.

    Raise it from a handler to answer the CALL with exactly this error; callers
    receive it when the peer answered their CALL with a CALLERROR.  *code* is an
    :class:`ErrorCode` or any version's spelling of one (``"FormationViolation"``
    and ``"FormatViolation"`` are the same code; the wire spelling is chosen per
    version when it is sent).
    """

    def __init__(
        self,
        code: ErrorCode | str,
        description: str = "",
        details: Mapping[str, Any] | None = None,
    ) -> None:
        parsed = code if isinstance(code, ErrorCode) else parse_error_code(code)
        if parsed is None:
            raise ValueError(f"{code!r} is not an OCPP-J error code")
        self.code = parsed
        self.description = description
        self.details: Mapping[str, Any] = details if details is not None else _EMPTY
        super().__init__(f"{self.code.value}: {description}" if description else self.code.value)


class PayloadError(Exception):
    """A payload codec could not read or write a payload.

    Raised by a :class:`~ocpprpc.PayloadCodec`; the engine turns it into the
    right answer (a CALLERROR to the peer, or :class:`OutboundPayloadError` to
    the local caller).  *details* typically carries the JSON path of the fault.
    """

    def __init__(
        self,
        code: ErrorCode,
        description: str,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        self.code = code
        self.description = description
        self.details: Mapping[str, Any] = details if details is not None else _EMPTY
        super().__init__(f"{code.value}: {description}")


class OutboundPayloadError(LocalProtocolError):
    """A payload we were about to send failed the codec; nothing was sent."""

    def __init__(self, action: str, error: PayloadError) -> None:
        self.action = action
        self.code = error.code
        self.description = error.description
        self.details = error.details
        super().__init__(f"invalid payload for {action}: {error}")
