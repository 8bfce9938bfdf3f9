"""Delivering the outbox over one connection: order, retries, the durable lane, lost links."""

from __future__ import annotations

import inspect
import logging
import math
import time
from typing import Any

import anyio

from .._engine.errors import OCPPError
from .._engine.rules import ErrorCode
from .._rpc.session import CallTimeout, Session
from .._ws.transport import ConnectionLost
from .boot import _BootGate
from .events import CallDropped, Delivered, MessageDropped, StationState
from .outbox import OutboxRecord
from .queued import _BOOT, _START, _Outgoing

log = logging.getLogger("ocpprpc.station")


class _Delivery(_BootGate):
    """The sender: takes calls from the lanes in order and delivers each through the session."""

    async def _next_item(self) -> _Outgoing:
        """The next call to send: a triggered one, else the oldest of both lanes.

        A durable message waiting out its retry interval lets volatile calls
        pass (never other durable ones); one still being stored holds
        everything made after it.
        """
        while True:
            if self._triggered and self._triggered[0].after_reply is None:
                return self._triggered.popleft()
            volatile = self._outbox[0] if self._outbox else None
            wait = math.inf
            if self._durable:
                head = self._durable[0]
                first = volatile is None or head.order < volatile.order
                if not head.stored:
                    if first:
                        volatile = None
                else:
                    assert head.record is not None
                    wait = head.record.next_attempt_at - time.time()
                    if wait <= 0 and first:
                        return self._durable.popleft()
            if volatile is not None:
                return self._outbox.popleft()
            self._wakeup = anyio.Event()
            with anyio.move_on_after(wait):
                await self._wakeup.wait()

    async def _serve_outbox(self, session: Session) -> None:
        """Deliver queued calls in order over *session* until its connection ends."""
        seen: anyio.Event | None = None
        try:
            while True:
                # Booting again when the gate closed (a SecurityError, a triggered boot answered
                # Pending): closing it puts a new Event in _booted, so the identity test suffices.
                if self._booted is not seen:
                    if not self._booted.is_set():
                        await self._boot(session)
                    seen = self._booted
                item = await self._next_item()
                # _send_one() inlined: this is every call's path.
                if item.abandoned and item.record is None:
                    continue
                if item.triggered or self._transactions:
                    if not await self._send_one(session, item):
                        continue
                elif item.record is not None:
                    await self._deliver_durable(session, item, item.record)
                else:
                    await self._deliver(session, item)
                if self.send_interval > 0:
                    await anyio.sleep(self.send_interval)
        except ConnectionLost:
            return

    async def _send_one(self, session: Session, item: _Outgoing) -> bool:
        """Deliver *item* over *session*; ``False`` if it was not sent after all.

        :raises ConnectionLost: the link went.
        """
        if item.abandoned and item.record is None:
            return False
        if item.triggered and item.session is not session:
            self._drop_triggered_item(item, ConnectionLost(None, "the connection that triggered it ended"))
            return False
        if self._transactions and not await self._settle_transaction_id(item):
            return False
        if item.record is not None:
            await self._deliver_durable(session, item, item.record)
        else:
            await self._deliver(session, item)
        return True

    def _drop_triggered_item(self, item: _Outgoing, error: BaseException) -> None:
        log.info("%s: triggered %s (%s) not sent: %s", self, item.action, item.message_id, error)
        item.fail(error)
        self._emit(CallDropped(item.action, item.message_id, error))

    async def _deliver(self, session: Session, item: _Outgoing) -> None:
        """Deliver one call (with its retries); :class:`ConnectionLost` when the link went."""
        while True:
            item.sent = False
            self._in_flight = item
            self._in_flight_prefix = f'[2,"{item.message_id}"'
            scope = item.scope = anyio.CancelScope()
            timed_out: CallTimeout | None = None
            result: Any = None
            try:
                with scope:
                    result = await self._call(session, item)
            except CallTimeout as exc:
                timed_out = exc
            except ConnectionLost as exc:
                self._lost_in_flight(item, exc)
                raise
            except anyio.get_cancelled_exc_class():
                # The connection ended under us (the station cancels its sender then).
                self._lost_in_flight(item, ConnectionLost(session.close_reason))
                raise
            except OCPPError as exc:
                if self._refused_unbooted(item, exc):
                    self._outbox.appendleft(item)  # first in line once booted again
                else:
                    item.fail(exc)
                return
            except Exception as exc:
                item.fail(exc)
                return
            finally:
                self._in_flight = None
                item.scope = None
            if timed_out is None:
                if not scope.cancelled_caught:
                    if item.triggered or item.transaction is not None:
                        await self._answered(item, result)
                    ended = self._transaction_ended(item) if self._transactions else None
                    item.succeed(result)
                    if ended is not None:
                        await self._forget_stored(ended)
                return  # delivered, or abandoned by its caller
            if item.retries_left <= 0:
                item.fail(timed_out)
                return
            assert item.retry is not None
            item.retries_left -= 1
            delay = item.retry.next_delay()
            log.info("%s: %s unanswered; resending in %.3g s", self, item.action, delay)
            # The wait is part of the delivery: a drop meanwhile puts the call back first in line.
            try:
                await anyio.sleep(delay)
            except anyio.get_cancelled_exc_class():
                if item.triggered:
                    self._drop_triggered_item(item, ConnectionLost(session.close_reason))
                elif not item.abandoned:
                    self._outbox.appendleft(item)
                raise
            if item.abandoned:
                return

    async def _call(self, session: Session, item: _Outgoing) -> Any:
        if isinstance(item.request, str):
            return await session.call(
                item.request,
                item.payload,
                timeout=item.timeout,
                validate=item.validate,
                message_id=item.message_id,
            )
        return await session.call(
            item.request, timeout=item.timeout, validate=item.validate, message_id=item.message_id
        )

    async def _deliver_durable(self, session: Session, item: _Outgoing, record: OutboxRecord) -> None:
        """Send one durable message once; on failure, schedule its retry or drop it.

        :raises ConnectionLost: the link went (the message goes back first in its lane).
        """
        item.sent = False
        self._in_flight = item
        self._in_flight_prefix = f'[2,"{item.message_id}"'
        failure: Exception
        try:
            result = await self._call(session, item)
        except ConnectionLost:
            self._requeue_durable(item)
            raise
        except anyio.get_cancelled_exc_class():
            self._requeue_durable(item)
            raise
        except (OCPPError, CallTimeout) as exc:
            if isinstance(exc, OCPPError) and self._refused_unbooted(item, exc):
                self._requeue_durable(item)  # not a failed attempt: it goes first once booted again
                return
            failure = exc
        except Exception as exc:
            # The payload fails validation, or the CSMS's answer does (InvalidResponseError:
            # it did process the message).  Sending it again cannot change either.
            await self._drop_durable(item, record, exc)
            return
        else:
            await self._delivered(item, record, result)
            return
        finally:
            self._in_flight = None
        record.attempts += 1
        policy = self.transaction_retry
        if record.attempts >= policy.attempts:
            await self._drop_durable(item, record, failure)
            return
        delay = policy.delay(record.attempts)
        record.next_attempt_at = time.time() + delay
        log.warning(
            "%s: %s (%s) failed (%s); attempt %d of %d in %g s",
            self,
            item.action,
            item.message_id,
            failure,
            record.attempts + 1,
            policy.attempts,
            delay,
        )
        with anyio.CancelScope(shield=True):
            await self._store_call(self._require_store().update, record)
        self._requeue_durable(item)

    async def _delivered(self, item: _Outgoing, record: OutboxRecord, result: Any) -> None:
        """Answered: hand the answer over, then forget the message (in that order: at least once)."""
        if item.transaction is not None:
            await self._answered(item, result)  # a StartTransaction's id is stored before it is deleted
        ended = self._transaction_ended(item) if self._transactions else None
        item.succeed(result)
        if self.on_delivered is not None:
            transaction = item.transaction
            delivered = Delivered(
                item.action,
                item.message_id,
                record.decoded_payload(),
                result,
                item.restored,
                None if transaction is None else transaction.provisional_id,
            )
            try:
                outcome = self.on_delivered(delivered)
                if inspect.isawaitable(outcome):
                    await outcome
            except anyio.get_cancelled_exc_class():
                # Not acknowledged: it goes again (the CSMS's replay cache answers) and is handed over again.
                self._requeue_durable(item)
                raise
            except Exception:
                log.exception("%s: on_delivered failed for %s (%s)", self, item.action, item.message_id)
        with anyio.CancelScope(shield=True):
            await self._store_call(self._require_store().remove, record.message_id)
        # After the delete: a StopTransaction restored from the store needs the mapping.
        if ended is not None:
            await self._forget_stored(ended)

    async def _drop_durable(self, item: _Outgoing, record: OutboxRecord, error: BaseException) -> None:
        """Give a durable message up: never silently (an error log, an event, its caller told)."""
        log.error(
            "%s: dropping %s (%s) after %d failed attempt(s): %s",
            self,
            item.action,
            item.message_id,
            record.attempts,
            error,
        )
        with anyio.CancelScope(shield=True):
            await self._store_call(self._require_store().remove, record.message_id)
        self._emit(MessageDropped(item.action, item.message_id, record.attempts, error))
        ended = self._transaction_ended(item)
        item.fail(error)
        await self._forget_stored(ended)

    def _requeue_durable(self, item: _Outgoing) -> None:
        if self._state is StationState.CLOSED:
            item.fail(self._kept_error())
        else:
            self._durable.appendleft(item)

    def _lost_in_flight(self, item: _Outgoing, error: ConnectionLost) -> None:
        """The link dropped during *item*'s delivery: queue it again, or fail it."""
        if item.abandoned:
            return
        if item.triggered:
            # It answered the lost connection's request: not sent again on another.
            if item.sent:
                item.fail(error)
            else:
                self._drop_triggered_item(item, error)
            return
        retry = item.retry
        if not item.sent:
            # Never left: nothing to be unsure about, it goes first after the reconnect.
            self._outbox.appendleft(item)
        elif retry is not None and retry.on_connection_lost and item.retries_left > 0:
            item.retries_left -= 1
            log.info("%s: link lost with %s in flight; will resend it", self, item.action)
            self._outbox.appendleft(item)
        else:
            log.info("%s: link lost with %s (%s) in flight", self, item.action, item.message_id)
            item.fail(error)

    # -- answers that change the station's state -------------------------------------------------

    async def _answered(self, item: _Outgoing, result: Any) -> None:
        """What an answer means beyond its caller: a triggered boot's status, a transaction's id."""
        if item.triggered and item.action == _BOOT and self.boot is not None:
            self._boot_wait = self._boot_answered(result)
        if item.action == _START and item.transaction is not None:
            await self._started(item.transaction, result)

    def _refused_unbooted(self, item: _Outgoing, error: OCPPError) -> bool:
        """A SecurityError for a call past the gate: the CSMS does not take us as accepted.

        OCPP 2.0.1 B02.FR.09/B03.FR.07: a CSMS answers SecurityError to a station it
        has not accepted, e.g. one it forgot by restarting.  The gate closes, the
        station boots again, and the call goes first once accepted; a call refused
        again after that fails with the error (no boot loop).
        """
        if (
            error.code is not ErrorCode.SECURITY_ERROR
            or self.boot is None
            or item.triggered
            or item.action == _BOOT
            or item.refused_unbooted
        ):
            return False
        item.refused_unbooted = True
        log.warning(
            "%s: the CSMS refused %s (%s) with SecurityError (it does not take the station as"
            " booted: restarted and forgot?); booting again, then sending it again",
            self,
            item.action,
            item.message_id,
        )
        self.boot_status = None
        self._close_gate()
        return True
