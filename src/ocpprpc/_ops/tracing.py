"""OpenTelemetry tracing: a span per station connection and per message, both directions.

:class:`Tracing` observes through the hooks that already exist, so tracing adds no
hook of its own:

* as a **message middleware** (``middleware=[tracing]`` on :func:`~ocpprpc.serve`,
  :class:`~ocpprpc.Server`, :func:`~ocpprpc.connect` or a :class:`~ocpprpc.Session`;
  ``session_options={"middleware": [tracing]}`` on a :class:`~ocpprpc.Station`) it
  opens one span around every inbound and outbound CALL and SEND, with its outcome,
  and makes it the current span while the rest of the onion runs: an inbound CALL's
  handler runs *inside* its span, so
  ``opentelemetry.trace.get_current_span()`` there is the call's span, spans the
  handler starts are its children, and a CALL the handler makes to a station nests
  under it;
* as a **security-event subscriber** (``server.security_events.subscribe(
  tracing.on_security_event)``) it turns the hub's ``StationConnected`` and
  ``StationDisconnected`` into one ``ocpp.connection`` span per station connection.
  The hub calls plain subscribers inline, in the task that then runs the station's
  session, so the connection span is made current *in that task*: every task of the
  session inherits it (the handler workers, ``on_connect``), and the call spans of
  the connection are its children.  Other events for a connected identity
  (``rate_limited``, ``identity_evicted``, ...) become events on its span.

A call made from outside the session (``server.send_to_client`` from an HTTP API's
task) nests under whatever span is current there, with a link to the station's
connection span; with no current span its parent is the connection span.

OCPP-J has no place for W3C ``traceparent`` on the wire (a CALL is
``[2, id, action, payload]``; extra payload keys break strict peers), so a trace
never crosses from station to CSMS: each side traces its own view, and the two
are joined by ``ocpp.message_id`` and ``ocpp.identity``.

Zero cost when unused: importing :mod:`ocpprpc` (or this module) imports no
OpenTelemetry; only constructing a :class:`Tracing` does, and fails with an
:class:`ImportError` naming the ``ocpprpc[otel]`` extra when it is not installed.
A session without the middleware pays nothing; ``enabled=False`` passes every
message through after one attribute test.

Part of ``_ops``, which imports no other part: the middleware context is read
through the :class:`TracedContext` protocol and events by their ``kind`` tag.
"""

from __future__ import annotations

import contextvars
import enum
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, Protocol

import msgspec

from .redact import Redactor

if TYPE_CHECKING:
    from opentelemetry.trace import Span, TracerProvider

__all__ = ["TracedContext", "Tracing"]

#: The instrumentation scope the spans are recorded under.
TRACER_NAME: Final = "ocpprpc"
#: Longest text put into a span name or attribute from the wire (actions, ids,
#: descriptions are the peer's to choose).
MAX_TEXT: Final = 128

#: ``ocpp.outcome`` of an exchange that ended in an exception, by exception class name.
_OUTCOMES: Final = {
    "OCPPError": "callerror",
    "CallTimeout": "timeout",
    "ConnectionLost": "connection_lost",
    "DroppedByMiddleware": "dropped",
    "InvalidResponseError": "invalid_response",
}


class TracedContext(Protocol):
    """What the tracing middleware reads of a middleware context (``ocpprpc.MessageContext``).

    Read-only members, so that ``MessageContext`` (whose ``direction`` is a ``Literal``)
    matches, and ``Tracing`` type-checks as a ``Middleware``.
    """

    @property
    def direction(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def action(self) -> str: ...

    @property
    def message_id(self) -> str: ...

    @property
    def payload(self) -> Any: ...

    @property
    def route(self) -> str | None: ...

    @property
    def identity(self) -> str | None: ...

    @property
    def protocol(self) -> str: ...

    @property
    def session(self) -> Any: ...


class _Connection:
    """A connection span made current in the task that runs the station's session."""

    __slots__ = ("identity", "span", "token")

    def __init__(self, identity: str | None, span: Span, token: object) -> None:
        self.identity = identity
        self.span = span
        self.token = token


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "\u2026"


def _is_csms(session: Any) -> bool:
    """Whether *session* is a CSMS's (its engine's role; ``_ops`` does not import the engine)."""
    role = getattr(getattr(session, "connection", None), "role", None)
    return getattr(role, "value", None) == "csms"


def _import_otel() -> Any:
    try:
        from opentelemetry import context, trace
    except ImportError as exc:
        raise ImportError("ocpprpc.Tracing needs the OpenTelemetry API: pip install 'ocpprpc[otel]'") from exc
    return context, trace


class Tracing:
    """OpenTelemetry spans for every station connection and every message, both directions.

    :param tracer_provider: where the spans go; default: the global provider
        (``opentelemetry.trace.set_tracer_provider``).
    :param enabled: record spans; ``False`` passes every message through untouched
        (the attribute may be changed at any time).
    :param record_payloads: put the request and the answer, as JSON redacted by
        *redactor*, into the ``ocpp.request`` and ``ocpp.response`` attributes.
    :param redactor: what masks payloads (default :class:`~ocpprpc.Redactor`).

    Put it first in the middleware list (outermost), so its spans cover the other
    middleware and see their verdicts.  Span names: ``ocpp.call IN <Action>`` and
    ``ocpp.call OUT <Action>`` (``ocpp.send ...`` for an OCPP 2.1 SEND), and
    ``ocpp.connection`` (docs: operations, "Tracing", for the attributes).
    """

    #: It awaits nothing but ``call_next``: sessions keep plain handlers in their reader.
    never_waits = True

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        *,
        enabled: bool = True,
        record_payloads: bool = False,
        redactor: Redactor | None = None,
    ) -> None:
        self._context, self._trace = _import_otel()
        kinds = self._trace.SpanKind
        #: (direction, kind) -> the span kind: a CALL we answer is a server span, ours a client
        #: span; a SEND is a message (consumer in, producer out).
        self._kinds: dict[tuple[str, str], Any] = {
            ("in", "call"): kinds.SERVER,
            ("out", "call"): kinds.CLIENT,
            ("in", "send"): kinds.CONSUMER,
            ("out", "send"): kinds.PRODUCER,
        }
        self._server_kind = kinds.SERVER
        self._error = self._trace.StatusCode.ERROR
        self.tracer = self._trace.get_tracer(TRACER_NAME, tracer_provider=tracer_provider)
        self.enabled = enabled
        self.record_payloads = record_payloads
        self.redactor = redactor if redactor is not None else Redactor()
        #: The open connection spans by identity (the newest, while a replaced one closes).
        self._open: dict[str, Span] = {}
        #: The connection span of the session this task belongs to (the session's tasks
        #: inherit it); one variable per instance, so two Tracings on one hub keep apart.
        self._connection: contextvars.ContextVar[_Connection | None] = contextvars.ContextVar(
            f"ocpprpc_tracing_connection_{id(self):x}", default=None
        )

    # -- the message middleware ----------------------------------------------------------------

    async def __call__(self, ctx: TracedContext, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        if not self.enabled:
            return await call_next(ctx)
        inbound = ctx.direction == "in"
        action = self._action_name(ctx)
        attributes: dict[str, Any] = {
            "rpc.system": "ocpp",
            "rpc.method": _clip(ctx.action),
            "ocpp.protocol": ctx.protocol,
            "ocpp.direction": ctx.direction,
            "ocpp.kind": ctx.kind,
            "ocpp.message_id": _clip(ctx.message_id),
        }
        if ctx.identity is not None:
            attributes["ocpp.identity"] = ctx.identity
        if ctx.route is not None:
            attributes["ocpp.route"] = ctx.route
        if self.record_payloads:
            attributes["ocpp.request"] = self._json(ctx.payload)
        parent, links = self._parent(ctx, inbound)
        span = self.tracer.start_span(
            f"ocpp.{ctx.kind} {'IN' if inbound else 'OUT'} {action}",
            context=parent,
            kind=self._kinds[ctx.direction, ctx.kind],
            attributes=attributes,
            links=links,
        )
        token = self._context.attach(self._trace.set_span_in_context(span))
        try:
            answer = await call_next(ctx)
        except BaseException as exc:
            self._failed(span, exc)
            raise
        else:
            if isinstance(answer, enum.Enum) and answer.name == "DROP":  # ocpprpc.DROP, further in
                span.set_attribute("ocpp.outcome", "dropped")
            else:
                span.set_attribute("ocpp.outcome", "result" if ctx.kind == "call" else "sent")
                if self.record_payloads and ctx.kind == "call":
                    span.set_attribute("ocpp.response", self._json(answer))
            return answer
        finally:
            self._context.detach(token)
            span.end()

    @staticmethod
    def _action_name(ctx: TracedContext) -> str:
        """The action for the span name: a peer's unknown action is ``unknown`` (bounded names)."""
        known = getattr(ctx.session, "known_actions", None)
        if ctx.direction == "in" and known and ctx.action not in known:
            return "unknown"
        return _clip(ctx.action)

    def _parent(self, ctx: TracedContext, inbound: bool) -> tuple[Any, Any]:
        """The parent context of an exchange's span (``None``: the current one) and its links.

        A message from the peer hangs on this instance's connection span (inherited by
        the session's tasks; on a station, whatever is current).  Our calls made inside
        the session's tasks hang on what is current there (a handler's span, the
        connection's); only those made from elsewhere need the station's connection
        span looked up: as the parent when nothing is current, else as a link.
        """
        connection = self._connection.get()
        if inbound:
            return (None if connection is None else self._trace.set_span_in_context(connection.span)), None
        if connection is not None or ctx.identity is None or not self._open:
            return None, None
        if not _is_csms(ctx.session):
            return None, None  # a station's session: the connection spans are the CSMS's
        span = self._open.get(ctx.identity)
        if span is None:
            return None, None
        if self._trace.get_current_span().get_span_context().is_valid:
            # A call from an API's task: part of that trace, linked to the station's.
            return None, [self._trace.Link(span.get_span_context())]
        return self._trace.set_span_in_context(span), None

    def _failed(self, span: Span, exc: BaseException) -> None:
        name = type(exc).__name__
        outcome = _OUTCOMES.get(name)
        if outcome is None:
            outcome = "failed" if isinstance(exc, Exception) else "cancelled"
        span.set_attribute("ocpp.outcome", outcome)
        if outcome in ("dropped", "cancelled"):
            return  # a verdict, or our own caller giving up: not an error of the exchange
        code = getattr(exc, "code", None)
        code = getattr(code, "value", code)
        if isinstance(code, str):
            span.set_attribute("ocpp.error_code", code)
            span.set_attribute("error.type", code)
            description = getattr(exc, "description", "")
            text = f"{code}: {description}" if description else code
        else:
            span.set_attribute("error.type", name)
            text = str(exc) or name
            if outcome == "failed":
                span.record_exception(exc)
        span.set_status(self._trace.Status(self._error, _clip(text)))

    def _json(self, payload: Any) -> str:
        # The redactor never raises and leaves only JSON values (others become a marker string).
        return msgspec.json.encode(self.redactor(payload)).decode()

    # -- the connection spans, from the server's security events ---------------------------------

    def on_security_event(self, event: Any) -> None:
        """A security-event subscriber: ``server.security_events.subscribe(tracing.on_security_event)``.

        ``station_connected`` opens the station's connection span and makes it
        current in the emitting task (the one that runs the session);
        ``station_disconnected`` ends it.  Other events about a connected
        identity are added to its span as span events.
        """
        kind = getattr(event, "kind", None)
        if not self.enabled and kind != "station_disconnected":
            return  # a span opened before disabling still ends
        if kind == "station_connected":
            self._connected(event)
        elif kind == "station_disconnected":
            self._disconnected(event)
        else:
            identity = getattr(event, "identity", None)
            span = None if identity is None else self._open.get(identity)
            if span is not None:
                span.add_event(str(kind), {"ocpp.reason": _clip(str(getattr(event, "reason", "")))})

    def _connected(self, event: Any) -> None:
        identity: str | None = event.identity
        attributes: dict[str, Any] = {"rpc.system": "ocpp", "ocpp.protocol": event.protocol}
        if identity is not None:
            attributes["ocpp.identity"] = identity
        if event.peer is not None:
            attributes["client.address"] = event.peer
        if event.route is not None:
            attributes["ocpp.route"] = event.route
        # A root span: a connection is not part of whatever the server's task was doing.
        span = self.tracer.start_span(
            "ocpp.connection", context=self._context.Context(), kind=self._server_kind, attributes=attributes
        )
        token = self._context.attach(self._trace.set_span_in_context(span))
        self._connection.set(_Connection(identity, span, token))
        if identity is not None:
            self._open[identity] = span

    def _disconnected(self, event: Any) -> None:
        identity: str | None = event.identity
        connection = self._connection.get()
        if connection is not None and connection.identity == identity:
            span = connection.span
            self._connection.set(None)
            self._context.detach(connection.token)
        elif identity is not None and identity in self._open:
            span = self._open[identity]  # emitted from another task than the connection's
        else:
            return
        if identity is not None and self._open.get(identity) is span:
            del self._open[identity]
        if event.code is not None:
            span.set_attribute("ocpp.close_code", event.code)
        if event.by_peer is not None:
            span.set_attribute("ocpp.closed_by", "peer" if event.by_peer else "self")
        span.end()
