"""The exchange log: one line per message, IN and OUT, with the latency of every answer.

:class:`ExchangeLog` is a message middleware (``middleware=[ocpprpc.ExchangeLog()]`` on
:func:`~ocpprpc.serve`, :class:`~ocpprpc.Server`, :func:`~ocpprpc.connect` or a
:class:`~ocpprpc.Session`): it rides the same hook as any other middleware, so the
exchange log, metrics and tracing observe one event instead of three.  Each record
carries the structured extras of :func:`~ocpprpc.log_extra` (identity, protocol,
direction, kind, action, message id, latency), which :class:`~ocpprpc.JsonFormatter`
writes as fields; payloads only when asked, and then through a
:class:`~ocpprpc.Redactor` (id tokens masked, secrets replaced).

It never changes the exchange: it returns what the next layer returned and lets every
exception pass after logging it.  Records are built only when the logger is enabled for
the level, so a disabled exchange log costs one ``isEnabledFor`` per message and layer.

Part of ``_ops``, which imports no other part: the middleware context is read through
the :class:`ExchangeContext` protocol (the attributes of ``ocpprpc.MessageContext``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol

from .logfmt import log_extra
from .redact import Redactor

__all__ = ["ExchangeContext", "ExchangeLog"]

#: How an exchange that ended in an exception is named in the log, by exception class name.
_OUTCOMES: Final = {
    "CallTimeout": "TIMEOUT",
    "ConnectionLost": "CONNECTION LOST",
    "DroppedByMiddleware": "DROPPED",
    "InvalidResponseError": "INVALID RESPONSE",
}


class ExchangeContext(Protocol):
    """What the exchange log reads of a middleware context (``ocpprpc.MessageContext``)."""

    direction: str
    kind: str
    action: str
    message_id: str
    payload: Any

    @property
    def identity(self) -> str | None: ...

    @property
    def protocol(self) -> str: ...


class ExchangeLog:
    """Log every message through this session: the request, then its answer with the latency.

    :param logger: the logger name (``"ocpprpc.exchange"``); configure its level and
        handlers like any other.
    :param level: the level of the lines (INFO).  Errors answered to or by the peer
        are logged at the same level: they are part of the exchange, not failures
        of this process.
    :param payloads: include the payloads (redacted) in the message and in the
        ``payload`` extra.
    :param redactor: what masks payloads (default :class:`~ocpprpc.Redactor`).
    """

    #: An observer (see ``ocpprpc.MessageContext``'s middleware docs): awaits only
    #: ``call_next``, never suspends, returns its outcome; so plain handlers stay in the reader.
    inline = True

    def __init__(
        self,
        logger: str = "ocpprpc.exchange",
        *,
        level: int = logging.INFO,
        payloads: bool = False,
        redactor: Redactor | None = None,
    ) -> None:
        self.log = logging.getLogger(logger)
        self.level = level
        self.payloads = payloads
        self.redactor = redactor if redactor is not None else Redactor()

    async def __call__(self, ctx: ExchangeContext, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        if not self.log.isEnabledFor(self.level):
            return await call_next(ctx)
        # An inbound message arrived (IN) and its answer leaves (OUT); ours the other way round.
        there, back = ("IN", "OUT") if ctx.direction == "in" else ("OUT", "IN")
        kind = ctx.kind.upper()
        self._line(ctx, there, kind, None, ctx.payload)
        started = time.perf_counter()
        try:
            answer = await call_next(ctx)
        except BaseException as exc:
            latency = (time.perf_counter() - started) * 1000
            code = getattr(exc, "code", None)
            outcome = f"CALLERROR {code}" if code is not None else _OUTCOMES.get(type(exc).__name__)
            if outcome is not None or kind == "CALL":
                self._line(ctx, back, outcome or f"FAILED {type(exc).__name__}", latency, None)
            raise
        if kind == "CALL":
            latency = (time.perf_counter() - started) * 1000
            self._line(ctx, back, "CALLRESULT", latency, answer)
        return answer

    def _line(
        self, ctx: ExchangeContext, direction: str, kind: str, latency: float | None, payload: Any
    ) -> None:
        shown = self.redactor(payload) if self.payloads and payload is not None else None
        text = f"{ctx.identity} {direction} {kind} {ctx.action} id={ctx.message_id}"
        if latency is not None:
            text += f" {latency:.1f} ms"
        if shown is not None:
            text += f"  {shown}"
        self.log.log(
            self.level,
            "%s",
            text,
            extra=log_extra(
                identity=ctx.identity,
                protocol=ctx.protocol,
                direction=direction,
                kind=kind,
                action=ctx.action,
                message_id=ctx.message_id,
                latency_ms=None if latency is None else round(latency, 3),
                payload=shown,
            ),
        )
