"""The station's calls: queueing them in the outbox (volatile, durable or triggered lane)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, TypeVar, overload

import anyio
import msgspec

from .._engine.connection import uuid4_message_id
from .._options.policies import OutboxFullPolicy, Retry
from .._rpc.router import CallContext
from .._rpc.session import _DEFAULT, _Default
from .._typed.messages import Request, Response
from .._ws.transport import ConnectionLost
from .delivery import _Delivery
from .events import CallDropped, StationState
from .outbox import OutboxFull
from .queued import _BOOT, _START, QueuedCall, TransactionStart, _Outgoing, _Transaction

log = logging.getLogger("ocpprpc.station")

_R = TypeVar("_R", bound=Response)


class _Calls(_Delivery):
    """The calling API of a station: every call is queued, then delivered by the sender."""

    @overload
    async def call(
        self,
        request: Request[_R],
        /,
        *,
        timeout: float | _Default | None = _DEFAULT,  # noqa: ASYNC109 (bounds the answer)
        validate: bool = True,
        message_id: str | None = None,
        retry: Retry | _Default | None = _DEFAULT,
    ) -> _R: ...

    @overload
    async def call(
        self,
        action: str,
        payload: Any = None,
        /,
        *,
        timeout: float | _Default | None = _DEFAULT,  # noqa: ASYNC109 (bounds the answer)
        validate: bool = True,
        message_id: str | None = None,
        retry: Retry | _Default | None = _DEFAULT,
    ) -> Any: ...

    async def call(
        self,
        request: Request[Any] | str,
        payload: Any = None,
        /,
        *,
        timeout: float | _Default | None = _DEFAULT,  # noqa: ASYNC109 (bounds the answer)
        validate: bool = True,
        message_id: str | None = None,
        retry: Retry | _Default | None = _DEFAULT,
    ) -> Any:
        """Send a CALL through the outbox and return the answer (as :meth:`Session.call`).

        While disconnected (or before the boot is accepted) the call waits in the
        outbox; calls leave it in the order they were made.  Cancel the caller
        (e.g. ``with anyio.fail_after(60):``) to bound the whole wait.

        :param timeout: seconds to wait for the answer once the CALL is written
            (time in the outbox not counted); the station's ``call_timeout`` by default.
        :param message_id: the CALL's id (idempotency key), kept across retries
            and reconnects; a fresh UUID4 by default.
        :param retry: a :class:`Retry` for this call; the station's default if omitted.
        :raises OutboxFull: the outbox was full (or this call was dropped from it).
        :raises ConnectionLost: the link dropped after the CALL was written (and
            no retry was asked for), or the station closed or gave up.
        :raises CallTimeout: no answer in time (after the retries).

        A *durable* message (with ``outbox=``, picked by the ``durable`` rule) is
        stored before it may leave; cancelling the caller does not withdraw it,
        and it is retried per ``transaction_retry`` instead of ``retry``: the
        call returns the answer, or raises the last failure once the attempts
        are used up (:class:`MessageDropped`), or :class:`ConnectionLost` if
        the station closes first (the message stays stored and goes on the
        next start).  :class:`OutboxFull` here means the store is full.
        """
        self._check_open()
        if isinstance(request, str) and payload is None:
            payload = {}
        item = _Outgoing(
            request,
            payload,
            message_id or uuid4_message_id(),
            timeout,
            validate,
            self.retry if isinstance(retry, _Default) else retry,
        )
        wire = self._durable_payload(item)
        if wire is None:
            self._enqueue(item)
        else:
            await self._put_durable(item, wire)
        try:
            await item.done.wait()
        finally:
            if not item.done.is_set() and item.record is None:
                # The caller gave up waiting: take it out of the queue, or stop its delivery.
                item.abandoned = True
                try:
                    self._outbox.remove(item)
                except ValueError:
                    if item.scope is not None:
                        item.scope.cancel()
        if item.error is not None:
            raise item.error
        return item.result

    async def submit(
        self, request: Request[Any] | str, payload: Any = None, /, *, message_id: str | None = None
    ) -> str:
        """Store a durable message and return its message id, without waiting for the answer.

        Returns once the store holds the message: from then on it is delivered
        even if this process dies (on the next start).  Its answer goes to
        ``on_delivered``; a message that uses up its attempts is published as
        :class:`MessageDropped`.

        :raises ValueError: the station has no store, or the ``durable`` rule
            does not pick this message.
        :raises OutboxFull: the store is full.
        """
        self._check_open()
        if isinstance(request, str) and payload is None:
            payload = {}
        item = _Outgoing(request, payload, message_id or uuid4_message_id(), _DEFAULT, True, None)
        wire = self._durable_payload(item)
        if wire is None:
            why = "the station has no outbox store" if self.store is None else "the durable rule refused it"
            raise ValueError(f"cannot submit {item.action}: {why} (use call())")
        await self._put_durable(item, wire)
        return item.message_id

    @overload
    async def start_transaction(
        self,
        request: Request[_R],
        /,
        *,
        timeout: float | _Default | None = _DEFAULT,  # noqa: ASYNC109 (bounds the answer)
        validate: bool = True,
        message_id: str | None = None,
        retry: Retry | _Default | None = _DEFAULT,
    ) -> TransactionStart[_R]: ...

    @overload
    async def start_transaction(
        self,
        request: Mapping[str, Any],
        /,
        *,
        timeout: float | _Default | None = _DEFAULT,  # noqa: ASYNC109 (bounds the answer)
        validate: bool = True,
        message_id: str | None = None,
        retry: Retry | _Default | None = _DEFAULT,
    ) -> TransactionStart[Any]: ...

    async def start_transaction(
        self,
        request: Request[Any] | Mapping[str, Any],
        /,
        *,
        timeout: float | _Default | None = _DEFAULT,  # noqa: ASYNC109 (bounds the answer)
        validate: bool = True,
        message_id: str | None = None,
        retry: Retry | _Default | None = _DEFAULT,
    ) -> TransactionStart[Any]:
        """Queue an OCPP 1.6 StartTransaction and return at once, with a provisional transactionId.

        A 1.6 station learns its ``transactionId`` from the StartTransaction's
        answer; offline, that answer may be hours away while the transaction's
        MeterValues and StopTransaction are already being queued.  Give them
        :attr:`TransactionStart.transaction_id` (the provisional id, a negative
        number, until the CSMS answers): the station sends each with the
        CSMS's ``transactionId`` in its place.  That holds for messages queued
        before the answer and after it, and, with a store (``outbox=``), across
        a restart: the store keeps the pair (:meth:`transaction_id` reads it).

        The id is kept whatever the answer's ``idTagInfo`` status: the
        transaction exists at the CSMS either way.  If the StartTransaction is
        given up unanswered, the messages naming its provisional id fail with
        :class:`TransactionNotStarted` instead of going out with a made-up id.
        The station forgets the provisional id once a StopTransaction naming it
        (or its real id) is answered.

        With a store the StartTransaction is durable (whatever the ``durable``
        rule says), and so is every message naming its provisional id; this
        returns once it is stored.  ``await start.answer()`` waits for the
        answer; options as for :meth:`call`.

        :raises ValueError: the station speaks (or offers) only OCPP 2.x, whose
            TransactionEvent carries a ``transactionId`` the station chose itself.
        :raises NotImplementedError: the store cannot keep provisional ids.
        :raises OutboxFull: as for :meth:`call` (:meth:`submit` with a store).
        """
        self._check_open()
        versions = (self._protocol,) if self._protocol is not None else self._protocols
        if "ocpp1.6" not in versions:
            raise ValueError(
                f"start_transaction() is for OCPP 1.6 (this station speaks {', '.join(versions)}):"
                " a 2.x TransactionEvent carries the transactionId the station chose"
            )
        if isinstance(request, Request):
            if type(request).__ocpp_action__ != _START:
                raise ValueError(f"not a StartTransaction request: {type(request).__name__}")
            item = _Outgoing(request, None, message_id or uuid4_message_id(), timeout, validate, None)
        else:
            item = _Outgoing(_START, dict(request), message_id or uuid4_message_id(), timeout, validate, None)
        item.retry = self.retry if isinstance(retry, _Default) else retry
        item.retries_left = item.retry.attempts if item.retry is not None else 0
        store = self.store
        if store is None:
            self._last_provisional -= 1
            provisional = self._last_provisional
        else:
            provisional = await store.add_transaction(item.message_id)
        transaction = item.transaction = _Transaction(provisional, item.message_id)
        self._transactions[provisional] = transaction
        try:
            if store is None:
                self._enqueue(item)
            else:
                await self._put_durable(item, self._wire(item))
        except BaseException:
            del self._transactions[provisional]
            if store is not None:
                with anyio.CancelScope(shield=True):
                    await self._store_call(store.remove_transaction, provisional)
            raise
        log.info(
            "%s: StartTransaction (%s) queued; provisional transactionId %d",
            self,
            item.message_id,
            provisional,
        )
        return TransactionStart(item, transaction)

    @overload
    def call_triggered(
        self,
        ctx: CallContext,
        request: Request[_R],
        /,
        *,
        timeout: float | _Default | None = _DEFAULT,
        validate: bool = True,
        message_id: str | None = None,
    ) -> QueuedCall[_R]: ...

    @overload
    def call_triggered(
        self,
        ctx: CallContext,
        action: str,
        payload: Any = None,
        /,
        *,
        timeout: float | _Default | None = _DEFAULT,
        validate: bool = True,
        message_id: str | None = None,
    ) -> QueuedCall[Any]: ...

    def call_triggered(
        self,
        ctx: CallContext,
        request: Request[Any] | str,
        payload: Any = None,
        /,
        *,
        timeout: float | _Default | None = _DEFAULT,
        validate: bool = True,
        message_id: str | None = None,
    ) -> QueuedCall[Any]:
        """Queue the message the CSMS asked for with the CALL *ctx* answers (TriggerMessage).

        For a TriggerMessage handler: queue the requested message here, then
        return the handler's answer (or queue it from a task the handler
        started, before or after the answer went).  Do not await the answer
        inside the handler: it cannot come before the handler returns::

            @router.on("TriggerMessage")
            def trigger(request, ctx):
                station.call_triggered(ctx, "StatusNotification", status_now())
                return {"status": "Accepted"}

        A triggered call:

        * passes the boot gate: while the BootNotification is ``Pending`` (or
          ``Rejected``) a station sends requests only when the CSMS triggers
          them (OCPP 1.6 section 4.2.1, 2.0.1 B02);
        * leaves once the answer to *ctx*'s CALL is written (OCPP 1.6: the
          TriggerMessage.conf goes first), ahead of other queued calls;
        * goes over *ctx*'s connection only: if it ends first, the call fails
          with :class:`ConnectionLost` (a :class:`CallDropped` event); the CSMS
          may trigger again.  It is never stored in the durable outbox.

        A triggered ``BootNotification`` without a payload sends the station's
        ``boot``; its answer opens (``Accepted``) or keeps closed the gate, like
        the station's own.

        :raises ConnectionLost: *ctx*'s connection ended already.
        """
        self._check_open()
        if ctx.session.closed.is_set():
            raise ConnectionLost(ctx.session.close_reason, "the connection that triggered it ended")
        if request == _BOOT and payload is None and self.boot is not None:
            item = self._boot_item(ctx.protocol)
        else:
            if isinstance(request, str) and payload is None:
                payload = {}
            item = _Outgoing(request, payload, message_id or uuid4_message_id(), timeout, validate, None)
        item.triggered = True
        item.session = ctx.session
        # Not among the CALLs awaiting our answer: it was written already (or it was a SEND).
        unanswered = ctx.session.connection.inbound_calls
        item.after_reply = ctx.message_id if ctx.message_id in unanswered else None
        item.order = next(self._order)
        self._triggered.append(item)
        self._wakeup.set()
        return QueuedCall(item)

    def _check_open(self) -> None:
        if self._state is StationState.CLOSED or self._stopping:
            raise ConnectionLost(None, self._closed_message())
        if not self._entered:
            raise RuntimeError("the station was never started (use 'async with station:')")

    def _durable_payload(self, item: _Outgoing) -> dict[str, Any] | None:
        """*item*'s payload as JSON values if it goes to the store, else ``None``.

        A message naming a provisional transaction id is durable whatever the
        rule says: it must stay behind its StartTransaction (which is durable).
        """
        if self.store is None:
            return None
        payload = item.payload if isinstance(item.request, str) else item.request
        wire = payload if type(payload) is dict else msgspec.to_builtins(payload)
        if not isinstance(wire, dict):
            return None
        if self.durable(item.action, wire) or (
            self._transactions and self._named_transaction(item.action, wire) is not None
        ):
            return wire
        return None

    async def _put_durable(self, item: _Outgoing, wire: dict[str, Any]) -> None:
        """Queue *item* in the durable lane and store it; it may leave once stored."""
        assert self.store is not None
        text = msgspec.json.encode(wire).decode()
        # Queued before the write: the order of calls is the order of delivery.
        item.order = next(self._order)
        self._durable.append(item)
        try:
            item.record = await self.store.add(item.message_id, item.action, text)
        except BaseException:
            # Not stored, hence never sent (the sender takes stored messages only).
            if item in self._durable:
                self._durable.remove(item)
            self._wakeup.set()  # stored messages behind it may go now
            raise
        item.stored = True
        self._wakeup.set()

    def _enqueue(self, item: _Outgoing) -> None:
        item.order = next(self._order)
        if len(self._outbox) >= self.outbox_size:
            if self.outbox_full is OutboxFullPolicy.REJECT:
                log.warning("%s: outbox full (%d); refusing %s", self, self.outbox_size, item.action)
                raise OutboxFull(item.action, item.message_id, self.outbox_size, dropped=False)
            oldest = self._outbox.popleft()
            error = OutboxFull(oldest.action, oldest.message_id, self.outbox_size, dropped=True)
            log.warning("%s: outbox full (%d); dropping the oldest call, %s", self, self.outbox_size, error)
            oldest.fail(error)
            self._emit(CallDropped(oldest.action, oldest.message_id, error))
        self._outbox.append(item)
        self._wakeup.set()
