"""OCPP 1.6 transactions started offline: provisional transaction ids and their real ones.

See "Theory of operation" in :mod:`ocpprpc._station.station`.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import msgspec

from .base import _StationBase
from .events import CallDropped, TransactionNotStarted
from .queued import _STOP, _Outgoing, _Transaction

log = logging.getLogger("ocpprpc.station")

#: OCPP 1.6 messages from the station whose top-level ``transactionId`` names a transaction.
_NAMES_TRANSACTION = frozenset({"MeterValues", _STOP})


class _OfflineTransactions(_StationBase):
    """Provisional ids for transactions started offline (:meth:`Station.start_transaction`)."""

    def _wire(self, item: _Outgoing) -> Any:
        """*item*'s payload as JSON values (wire names)."""
        payload = item.payload if isinstance(item.request, str) else item.request
        return payload if type(payload) is dict else msgspec.to_builtins(payload)

    def _named_transaction(self, action: str, wire: Any) -> _Transaction | None:
        """The provisional transaction a 1.6 message names in its ``transactionId``, if any."""
        if action not in _NAMES_TRANSACTION or not isinstance(wire, dict):
            return None
        named = wire.get("transactionId")
        return self._transactions.get(named) if type(named) is int else None

    async def _settle_transaction_id(self, item: _Outgoing) -> bool:
        """Put the CSMS's ``transactionId`` in place of a provisional one before *item* leaves.

        ``False`` (and *item* failed, never silently) when the provisional id
        will never have a real one.
        """
        if item.transaction is not None or item.action not in _NAMES_TRANSACTION:
            return True
        wire = self._wire(item)
        transaction = self._named_transaction(item.action, wire)
        if transaction is None:
            return True
        item.transaction = transaction
        real = transaction.transaction_id
        if real is not None:
            rewritten = {**wire, "transactionId": real}
            if isinstance(item.request, str):
                item.payload = rewritten
            else:
                field = _field_named(type(item.request), "transactionId")
                item.request = msgspec.structs.replace(item.request, **{field: real})
            if item.record is not None:
                # In memory only: after a restart the stored mapping rewrites it again.
                item.record.payload = msgspec.json.encode(rewritten).decode()
            return True
        why = transaction.failure or "its StartTransaction is not answered yet"
        error = TransactionNotStarted(item.action, item.message_id, transaction.provisional_id, why)
        if item.record is not None:
            await self._drop_durable(item, item.record, error)
        else:
            log.error("%s: %s", self, error)
            ended = self._transaction_ended(item)
            item.fail(error)
            self._emit(CallDropped(item.action, item.message_id, error))
            await self._forget_stored(ended)
        return False

    async def _started(self, transaction: _Transaction, result: Any) -> None:
        """The StartTransaction is answered: keep its ``transactionId`` (whatever the idTag status)."""
        if transaction.transaction_id is not None:
            return
        answer = msgspec.to_builtins(result) if isinstance(result, msgspec.Struct) else result
        real = answer.get("transactionId") if isinstance(answer, dict) else None
        if type(real) is not int:
            transaction.failure = (
                f"the CSMS answered its StartTransaction without a transactionId: {answer!r}"
            )
            log.error(
                "%s: provisional transaction %d: %s", self, transaction.provisional_id, transaction.failure
            )
            return
        # Kept even when idTagInfo is not Accepted: the transaction exists at the CSMS and
        # goes on until the station stops it (1.6 StopTransactionOnInvalidId).
        transaction.transaction_id = real
        log.info("%s: provisional transaction %d is transaction %d", self, transaction.provisional_id, real)
        if self.store is not None:
            with anyio.CancelScope(shield=True):
                await self._store_call(self.store.set_transaction_id, transaction.provisional_id, real)

    def _transaction_ended(self, item: _Outgoing) -> _Transaction | None:
        """A StopTransaction was answered or given up: forget the provisional id it names.

        Returns the transaction to forget in the store too, which the caller does
        only once the StopTransaction itself left the store (a restored one
        needs the pair).
        """
        if item.action != _STOP or not self._transactions:
            return None
        transaction = item.transaction
        if transaction is None:
            named = self._wire(item).get("transactionId")
            if type(named) is int:
                transaction = next(
                    (t for t in self._transactions.values() if t.transaction_id == named), None
                )
        if transaction is None or self._transactions.pop(transaction.provisional_id, None) is None:
            return None
        log.debug("%s: forgetting provisional transaction %d", self, transaction.provisional_id)
        return transaction

    async def _forget_stored(self, transaction: _Transaction | None) -> None:
        if transaction is not None and self.store is not None:
            with anyio.CancelScope(shield=True):
                await self._store_call(self.store.remove_transaction, transaction.provisional_id)


def _field_named(cls: type[Any], wire_name: str) -> str:
    """The attribute of the Struct *cls* whose JSON name is *wire_name*."""
    for field in msgspec.structs.fields(cls):
        if field.encode_name == wire_name:
            return field.name
    raise LookupError(f"{cls.__name__} has no field {wire_name!r}")
