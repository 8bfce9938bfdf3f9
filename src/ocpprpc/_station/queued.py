"""A call in the station's outbox (``_Outgoing``), and the handles the application gets for one."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import anyio

from .._options.policies import Retry
from .._rpc.session import Session, _Default
from .._typed.messages import Request
from .outbox import OutboxRecord

__all__ = ["QueuedCall", "TransactionStart"]

_T = TypeVar("_T")

_BOOT = "BootNotification"
_START = "StartTransaction"
_STOP = "StopTransaction"


class _Transaction:
    """A 1.6 transaction started through :meth:`Station.start_transaction`: provisional and real id."""

    __slots__ = ("failure", "provisional_id", "start_message_id", "transaction_id")

    def __init__(self, provisional_id: int, start_message_id: str, transaction_id: int | None = None) -> None:
        self.provisional_id = provisional_id
        self.start_message_id = start_message_id
        self.transaction_id = transaction_id
        # Why it will never get a transactionId (its StartTransaction failed), if so.
        self.failure: str | None = None


class _Outgoing:
    """One call in the outbox, and then in flight: its id stays fixed through every retry."""

    __slots__ = (
        "abandoned",
        "action",
        "after_reply",
        "done",
        "error",
        "message_id",
        "order",
        "payload",
        "record",
        "refused_unbooted",
        "request",
        "restored",
        "result",
        "retries_left",
        "retry",
        "scope",
        "sent",
        "session",
        "stored",
        "timeout",
        "transaction",
        "triggered",
        "validate",
    )

    def __init__(
        self,
        request: Request[Any] | str,
        payload: Any,
        message_id: str,
        timeout: float | _Default | None,
        validate: bool,
        retry: Retry | None,
    ) -> None:
        self.request = request
        self.action = request if isinstance(request, str) else type(request).__ocpp_action__
        self.payload = payload
        self.message_id = message_id
        self.timeout = timeout
        self.validate = validate
        self.retry = retry
        self.retries_left = retry.attempts if retry is not None else 0
        self.done = anyio.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self.scope: anyio.CancelScope | None = None
        # Set when the CALL's text was handed to the transport on the current attempt.
        self.sent = False
        # The caller stopped waiting (cancelled): deliver nothing more.
        self.abandoned = False
        # Its place in the order of calls, across both lanes.
        self.order = 0
        # Durable only: its record, and whether the store has it (it may leave only then).
        self.record: OutboxRecord | None = None
        self.stored = False
        # Loaded from the store at start: an earlier process queued it.
        self.restored = False
        # The 1.6 transaction it starts (a StartTransaction) or names (by its provisional id).
        self.transaction: _Transaction | None = None
        # Triggered by the CSMS (Station.call_triggered): passes the boot gate, over *session*
        # only, and not before the answer to the CALL with id *after_reply* was written.
        self.triggered = False
        self.session: Session | None = None
        self.after_reply: str | None = None
        # The CSMS refused it with SecurityError once and the station booted again for it.
        self.refused_unbooted = False

    def succeed(self, result: Any) -> None:
        self.result = result
        self.done.set()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.done.set()
        transaction = self.transaction
        if transaction is not None and self.action == _START and transaction.transaction_id is None:
            transaction.failure = f"its StartTransaction ({self.message_id}) failed: {error}"


class QueuedCall(Generic[_T]):
    """A call the station queued for you without waiting for its answer.

    Returned by :meth:`Station.call_triggered` and :meth:`Station.start_transaction`;
    ``await queued.answer()`` waits for the outcome.  Waiting is optional, and
    cancelling a wait does not withdraw the call.
    """

    __slots__ = ("_item",)

    def __init__(self, item: _Outgoing) -> None:
        self._item = item

    @property
    def action(self) -> str:
        """The OCPP action."""
        return self._item.action

    @property
    def message_id(self) -> str:
        """The CALL's message id."""
        return self._item.message_id

    @property
    def done(self) -> bool:
        """Whether the outcome is known (answered, or failed)."""
        return self._item.done.is_set()

    async def answer(self) -> _T:
        """Wait for the answer (as :meth:`Station.call` returns it), or raise why there is none."""
        await self._item.done.wait()
        if self._item.error is not None:
            raise self._item.error
        result: _T = self._item.result
        return result

    def __repr__(self) -> str:
        state = "done" if self.done else "queued"
        return f"<{type(self).__name__} {self.action} {self.message_id} {state}>"


class TransactionStart(QueuedCall[_T]):
    """An OCPP 1.6 StartTransaction queued by :meth:`Station.start_transaction`.

    Use :attr:`transaction_id` in the transaction's MeterValues and
    StopTransaction at once, answered or not: until the CSMS answers, it is the
    :attr:`provisional_id`, and the station puts the CSMS's ``transactionId``
    in its place before each such message leaves.
    """

    __slots__ = ("_transaction",)

    def __init__(self, item: _Outgoing, transaction: _Transaction) -> None:
        super().__init__(item)
        self._transaction = transaction

    @property
    def provisional_id(self) -> int:
        """The stand-in ``transactionId`` (negative), valid until the StopTransaction is answered."""
        return self._transaction.provisional_id

    @property
    def transaction_id(self) -> int:
        """The CSMS's ``transactionId`` once known, else the provisional id: either may be sent."""
        real = self._transaction.transaction_id
        return self.provisional_id if real is None else real

    @property
    def confirmed(self) -> bool:
        """Whether the CSMS answered the StartTransaction (its ``transactionId`` is known)."""
        return self._transaction.transaction_id is not None
