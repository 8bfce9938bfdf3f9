"""The station registry: what a CSMS knows of each station, kept as messages pass.

Per identity: the negotiated protocol, the last BootNotification (vendor,
model, firmware, serial number, the answer), each connector's status from
StatusNotification, the open transactions, when it was last seen, whether it
is connected and to which node.  It is fed by plain method calls
(:meth:`StationRegistry.observe_call` with the request and the response,
:meth:`~StationRegistry.connected`, :meth:`~StationRegistry.disconnected`), so
a message middleware, a handler or a test can drive it alike, and read with
plain ones (:meth:`~StationRegistry.get`, :meth:`~StationRegistry.list`,
:meth:`~StationRegistry.find`) that never wait.

Theory of operation
-------------------
The registry's dict is the view: every change is computed from it without
suspending (so two messages of one station cannot lose each other's update),
then written through to a :class:`RegistryStore` (awaited, in the order made).
The store is what survives a restart: :meth:`StationRegistry.open` reads it
back.  :class:`MemoryRegistryStore` (the default) keeps nothing beyond the
process; :class:`~ocpprpc.SQLiteRegistryStore` keeps a file.

Bounded: at most ``max_stations`` records (the least recently seen is
forgotten first), a disconnected station is forgotten ``disconnected_ttl``
seconds after it was last seen, and per station at most
``max_connectors`` statuses and ``max_transactions`` open transactions, every
text cut to ``max_text`` characters.  A payload that is not what the schema
says (a field missing or of the wrong type) changes nothing it cannot read
and is logged at DEBUG; nothing here raises on a station's payload.  Id tokens
are never kept.
"""

from __future__ import annotations

import abc
import builtins
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Final, Self

import msgspec

__all__ = [
    "BootInfo",
    "ConnectorStatus",
    "MemoryRegistryStore",
    "OpenTransaction",
    "RegistryStore",
    "StationRecord",
    "StationRegistry",
]

log = logging.getLogger("ocpprpc.registry")

_MISSING: Final = object()


@dataclass(frozen=True, slots=True)
class BootInfo:
    """What the last BootNotification said, and how it was answered.

    :param vendor: 1.6 ``chargePointVendor``, 2.x ``chargingStation.vendorName``.
    :param model: 1.6 ``chargePointModel``, 2.x ``chargingStation.model``.
    :param firmware: ``firmwareVersion``.
    :param serial: 1.6 ``chargePointSerialNumber`` (else ``chargeBoxSerialNumber``),
        2.x ``chargingStation.serialNumber``.
    :param status: the answer's ``status`` (``"Accepted"``...), ``None`` if unanswered.
    :param at: when it was seen (:func:`time.time`).
    """

    vendor: str | None = None
    model: str | None = None
    firmware: str | None = None
    serial: str | None = None
    status: str | None = None
    at: float = 0.0


@dataclass(frozen=True, slots=True)
class ConnectorStatus:
    """One connector's last StatusNotification.

    :param evse_id: the EVSE (2.x); ``None`` on 1.6.
    :param connector_id: the connector (1.6: ``0`` is the whole charge point).
    :param status: 1.6 ``status``, 2.x ``connectorStatus``.
    :param error_code: 1.6 ``errorCode``; ``None`` on 2.x.
    :param at: when it was seen.
    """

    evse_id: int | None
    connector_id: int
    status: str
    error_code: str | None = None
    at: float = 0.0


@dataclass(frozen=True, slots=True)
class OpenTransaction:
    """A transaction started and not yet ended.

    :param transaction_id: 1.6 the CSMS's ``transactionId`` (as text), 2.x the station's.
    :param evse_id: 2.x ``evse.id`` when given.
    :param connector_id: 1.6 ``connectorId``, 2.x ``evse.connectorId`` when given.
    :param started_at: when its start was seen.
    """

    transaction_id: str
    evse_id: int | None = None
    connector_id: int | None = None
    started_at: float = 0.0


@dataclass(frozen=True, slots=True)
class StationRecord:
    """Everything the registry knows of one station (immutable: a new one per change)."""

    identity: str
    #: The negotiated subprotocol (``"ocpp1.6"``, ``"ocpp2.0.1"``...).
    protocol: str | None = None
    boot: BootInfo | None = None
    #: Sorted by EVSE then connector.
    connectors: tuple[ConnectorStatus, ...] = ()
    #: In the order they started.
    transactions: tuple[OpenTransaction, ...] = ()
    first_seen: float = 0.0
    last_seen: float = 0.0
    connected: bool = False
    #: The node it is (or was last) connected to.
    node: str | None = None

    def connector(self, connector_id: int, evse_id: int | None = None) -> ConnectorStatus | None:
        """The status of one connector, ``None`` if none was reported."""
        return next(
            (c for c in self.connectors if c.connector_id == connector_id and c.evse_id == evse_id),
            None,
        )


_record_decoder = msgspec.json.Decoder(StationRecord)
_encoder = msgspec.json.Encoder()


def encode_record(record: StationRecord) -> bytes:
    """A record as JSON (what a store may keep)."""
    return _encoder.encode(record)


def decode_record(data: bytes | str) -> StationRecord:
    """A record back from :func:`encode_record`'s JSON."""
    return _record_decoder.decode(data)


# -- stores ------------------------------------------------------------------------------------


class RegistryStore(abc.ABC):
    """Where station records outlive the process (one record per identity).

    Every method is async so a store may do I/O (a file, a database shared by
    nodes); the registry awaits each write in the order it made them.
    """

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Open the store (the registry calls it once, before anything else)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release what :meth:`open` took."""

    @abc.abstractmethod
    async def get(self, identity: str) -> StationRecord | None:
        """The record of *identity*, ``None`` if there is none."""

    @abc.abstractmethod
    async def put(self, record: StationRecord) -> None:
        """Store *record*, replacing the one of its identity."""

    @abc.abstractmethod
    async def delete(self, identity: str) -> None:
        """Forget *identity* (unknown identities are ignored)."""

    @abc.abstractmethod
    async def list(self) -> list[StationRecord]:
        """Every record."""


class MemoryRegistryStore(RegistryStore):
    """Records in a dict: they outlive a registry object, not the process."""

    def __init__(self) -> None:
        self._records: dict[str, StationRecord] = {}

    async def get(self, identity: str) -> StationRecord | None:
        return self._records.get(identity)

    async def put(self, record: StationRecord) -> None:
        self._records[record.identity] = record

    async def delete(self, identity: str) -> None:
        self._records.pop(identity, None)

    async def list(self) -> list[StationRecord]:
        return list(self._records.values())

    def __repr__(self) -> str:
        return f"<MemoryRegistryStore records={len(self._records)}>"


# -- the registry ------------------------------------------------------------------------------


class StationRegistry:
    """What is known of every station, fed by the messages that pass.

    ::

        registry = ocpprpc.StationRegistry()
        async with registry:
            await registry.connected("CP1", "ocpp1.6", node="csms-a")
            status = {"connectorId": 1, "status": "Faulted", "errorCode": "GroundFailure"}
            await registry.observe_call("CP1", "ocpp1.6", "StatusNotification", status, {})
            registry.find(status="Faulted")  # [StationRecord(identity='CP1', ...)]

    :param store: where records persist (default: a :class:`MemoryRegistryStore`).
    :param node: this process's name, recorded on stations that connect here.
    :param max_stations: the most records kept; the least recently seen goes first.
    :param disconnected_ttl: seconds a disconnected station is remembered after
        it was last seen (``None``: until evicted by ``max_stations``).
    :param max_connectors: connector statuses kept per station.
    :param max_transactions: open transactions kept per station (the oldest goes first).
    :param max_text: characters kept of any text a station sent.
    :param clock: the wall clock (seconds), replaceable in tests.
    """

    def __init__(
        self,
        store: RegistryStore | None = None,
        *,
        node: str | None = None,
        max_stations: int = 100_000,
        disconnected_ttl: float | None = 7 * 24 * 3600.0,
        max_connectors: int = 128,
        max_transactions: int = 64,
        max_text: int = 255,
        clock: Callable[[], float] = time.time,
    ) -> None:
        for name, value in (
            ("max_stations", max_stations),
            ("max_connectors", max_connectors),
            ("max_transactions", max_transactions),
            ("max_text", max_text),
        ):
            if value < 1:
                raise ValueError(f"{name} must be at least 1")
        if disconnected_ttl is not None and disconnected_ttl <= 0:
            raise ValueError("disconnected_ttl must be positive (or None)")
        self.store = store if store is not None else MemoryRegistryStore()
        self.node = node
        self.max_stations = max_stations
        self.disconnected_ttl = disconnected_ttl
        self.max_connectors = max_connectors
        self.max_transactions = max_transactions
        self.max_text = max_text
        self._clock = clock
        # least recently seen first
        self._records: OrderedDict[str, StationRecord] = OrderedDict()
        self._open = False

    # -- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the store and read its records back.

        A record left ``connected`` to this node (or to no node) by a previous
        run is marked disconnected: a process that just started holds no
        connection.
        """
        if self._open:
            return
        await self.store.open()
        records = sorted(await self.store.list(), key=lambda record: record.last_seen)
        self._records = OrderedDict((record.identity, record) for record in records)
        self._open = True
        for record in records:
            if record.connected and record.node in (None, self.node):
                # in place: being marked is no sign of life, the order of recency stays
                self._records[record.identity] = replace(record, connected=False)
                await self.store.put(self._records[record.identity])
        await self.prune()
        while len(self._records) > self.max_stations:
            await self._evict_oldest()
        log.debug("station registry opened: %d stations from %r", len(self._records), self.store)

    async def close(self) -> None:
        """Close the store."""
        if self._open:
            self._open = False
            await self.store.close()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- feeding -------------------------------------------------------------------------------

    async def connected(
        self, identity: str, protocol: str | None, *, node: str | None = None
    ) -> StationRecord:
        """*identity* connected (with *protocol*) to *node* (default: the registry's)."""
        record = self._touch(identity)
        return await self._write(
            replace(record, protocol=protocol, connected=True, node=node if node is not None else self.node)
        )

    async def disconnected(self, identity: str) -> StationRecord | None:
        """*identity*'s connection closed (``None`` if it was not known)."""
        self._require_open()
        if identity not in self._records:
            return None
        return await self._write(replace(self._touch(identity), connected=False))

    async def observe_call(
        self,
        identity: str,
        protocol: str | None,
        action: str,
        request: Any,
        response: Any = None,
    ) -> StationRecord:
        """A CALL of *identity* and its answer (JSON objects or typed messages).

        *response* is ``None`` when the CALL was not answered with a result.
        Any action counts as a sign of life; BootNotification,
        StatusNotification, StartTransaction, StopTransaction and
        TransactionEvent change what is known.
        """
        record = self._touch(identity, protocol)
        request_object = _as_object(request)
        response_object = _as_object(response)
        if request_object is None:
            log.debug("%s: %s request is not an object; only the sign of life is kept", identity, action)
        else:
            record = self._apply(record, action, request_object, response_object)
        return await self._write(record)

    # -- reading -------------------------------------------------------------------------------

    def get(self, identity: str) -> StationRecord | None:
        """The record of *identity*, ``None`` if it is not known (or expired)."""
        record = self._records.get(identity)
        return None if record is None or self._expired(record, self._clock()) else record

    def list(self, *, connected: bool | None = None) -> list[StationRecord]:
        """Every known station (only the connected, or only the others, if asked), by identity."""
        return self.find(connected=connected)

    def find(
        self,
        *,
        status: str | None = None,
        connected: bool | None = None,
        protocol: str | None = None,
        vendor: str | None = None,
        model: str | None = None,
        in_transaction: bool | None = None,
    ) -> builtins.list[StationRecord]:
        """The stations matching every criterion given, by identity.

        :param status: a connector reports this status (``"Faulted"``).
        :param connected: connected now (or not).
        :param protocol: negotiated this subprotocol.
        :param vendor: booted with this vendor.
        :param model: booted with this model.
        :param in_transaction: has an open transaction (or none).
        """
        now = self._clock()
        found = [
            record
            for record in self._records.values()
            if not self._expired(record, now)
            and (status is None or any(c.status == status for c in record.connectors))
            and (connected is None or record.connected == connected)
            and (protocol is None or record.protocol == protocol)
            and (vendor is None or (record.boot is not None and record.boot.vendor == vendor))
            and (model is None or (record.boot is not None and record.boot.model == model))
            and (in_transaction is None or bool(record.transactions) == in_transaction)
        ]
        return sorted(found, key=lambda record: record.identity)

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, identity: object) -> bool:
        return isinstance(identity, str) and self.get(identity) is not None

    # -- forgetting ----------------------------------------------------------------------------

    async def forget(self, identity: str) -> bool:
        """Drop *identity*'s record (``False`` if it was not known)."""
        self._require_open()
        if self._records.pop(identity, None) is None:
            return False
        await self.store.delete(identity)
        return True

    async def prune(self) -> int:
        """Forget the disconnected stations not seen for ``disconnected_ttl``; how many went."""
        self._require_open()
        now = self._clock()
        expired = [identity for identity, record in self._records.items() if self._expired(record, now)]
        for identity in expired:
            del self._records[identity]
            await self.store.delete(identity)
        if expired:
            log.debug("station registry: %d disconnected stations expired", len(expired))
        return len(expired)

    # -- internals -----------------------------------------------------------------------------

    def _require_open(self) -> None:
        if not self._open:
            raise RuntimeError(
                "the station registry is not open: `async with registry:` or `await registry.open()`"
            )

    def _expired(self, record: StationRecord, now: float) -> bool:
        ttl = self.disconnected_ttl
        return ttl is not None and not record.connected and now - record.last_seen > ttl

    def _touch(self, identity: str, protocol: str | None = None) -> StationRecord:
        """*identity*'s record, seen now (new if unknown), speaking *protocol* if given."""
        self._require_open()
        now = self._clock()
        record = self._records.get(identity)
        if record is None or self._expired(record, now):
            return StationRecord(identity, protocol, first_seen=now, last_seen=now)
        # The constructor, not dataclasses.replace() (7x slower): this runs for every message observed.
        return StationRecord(
            identity,
            record.protocol if protocol is None else protocol,
            record.boot,
            record.connectors,
            record.transactions,
            record.first_seen,
            now,
            record.connected,
            record.node,
        )

    async def _write(self, record: StationRecord) -> StationRecord:
        new = record.identity not in self._records
        self._records[record.identity] = record
        self._records.move_to_end(record.identity)
        if new and len(self._records) > self.max_stations:
            await self.prune()
            while len(self._records) > self.max_stations:
                await self._evict_oldest()
        await self.store.put(record)
        return record

    async def _evict_oldest(self) -> None:
        identity, record = self._records.popitem(last=False)
        level = logging.WARNING if record.connected else logging.DEBUG
        log.log(level, "station registry full (%d stations): forgetting %s", self.max_stations, identity)
        await self.store.delete(identity)

    def _apply(
        self,
        record: StationRecord,
        action: str,
        request: Mapping[str, Any],
        response: Mapping[str, Any] | None,
    ) -> StationRecord:
        now = record.last_seen
        if action == "BootNotification":
            return replace(record, boot=self._boot(request, response, now))
        if action == "StatusNotification":
            return self._status(record, request, now)
        if action == "StartTransaction":
            transaction_id = _int(_get(response, "transactionId"))
            if transaction_id is None:
                log.debug("%s: StartTransaction without a transactionId in its answer", record.identity)
                return record
            opened = OpenTransaction(str(transaction_id), None, _int(request.get("connectorId")), now)
            return self._open_transaction(record, opened)
        if action == "StopTransaction":
            transaction_id = _int(request.get("transactionId"))
            if transaction_id is None:
                log.debug("%s: StopTransaction without a transactionId: ignored", record.identity)
                return record
            return _close_transaction(record, str(transaction_id))
        if action == "TransactionEvent":
            return self._transaction_event(record, request, now)
        return record

    def _text(self, value: Any) -> str | None:
        return value[: self.max_text] if isinstance(value, str) else None

    def _boot(self, request: Mapping[str, Any], response: Mapping[str, Any] | None, now: float) -> BootInfo:
        status = self._text(_get(response, "status"))
        station = request.get("chargingStation", _MISSING)
        if station is _MISSING:  # 1.6
            serial = request.get("chargePointSerialNumber")
            if serial is None:
                serial = request.get("chargeBoxSerialNumber")
            return BootInfo(
                vendor=self._text(request.get("chargePointVendor")),
                model=self._text(request.get("chargePointModel")),
                firmware=self._text(request.get("firmwareVersion")),
                serial=self._text(serial),
                status=status,
                at=now,
            )
        return BootInfo(
            vendor=self._text(_get(station, "vendorName")),
            model=self._text(_get(station, "model")),
            firmware=self._text(_get(station, "firmwareVersion")),
            serial=self._text(_get(station, "serialNumber")),
            status=status,
            at=now,
        )

    def _status(self, record: StationRecord, request: Mapping[str, Any], now: float) -> StationRecord:
        connector_id = _int(request.get("connectorId"))
        if "connectorStatus" in request:  # 2.x
            evse_id = _int(request.get("evseId"))
            status = self._text(request.get("connectorStatus"))
            error_code = None
            complete = evse_id is not None
        else:
            evse_id = None
            status = self._text(request.get("status"))
            error_code = self._text(request.get("errorCode"))
            complete = True
        if connector_id is None or status is None or not complete:
            log.debug("%s: StatusNotification without a usable connector or status: ignored", record.identity)
            return record
        others = [c for c in record.connectors if (c.evse_id, c.connector_id) != (evse_id, connector_id)]
        if len(others) >= self.max_connectors:
            log.debug("%s: more than %d connectors: status ignored", record.identity, self.max_connectors)
            return record
        others.append(ConnectorStatus(evse_id, connector_id, status, error_code, now))
        others.sort(key=lambda c: (c.evse_id if c.evse_id is not None else -1, c.connector_id))
        return replace(record, connectors=tuple(others))

    def _transaction_event(
        self, record: StationRecord, request: Mapping[str, Any], now: float
    ) -> StationRecord:
        event_type = request.get("eventType")
        transaction_id = self._text(_get(request.get("transactionInfo"), "transactionId"))
        if transaction_id is None or event_type not in ("Started", "Updated", "Ended"):
            log.debug("%s: TransactionEvent without a transactionId or eventType: ignored", record.identity)
            return record
        if event_type == "Ended":
            return _close_transaction(record, transaction_id)
        if any(t.transaction_id == transaction_id for t in record.transactions):
            return record
        evse = request.get("evse")
        opened = OpenTransaction(transaction_id, _int(_get(evse, "id")), _int(_get(evse, "connectorId")), now)
        return self._open_transaction(record, opened)

    def _open_transaction(self, record: StationRecord, opened: OpenTransaction) -> StationRecord:
        kept = [t for t in record.transactions if t.transaction_id != opened.transaction_id]
        kept.append(opened)
        if len(kept) > self.max_transactions:
            log.debug("%s: over %d open transactions: the oldest forgotten", record.identity, len(kept) - 1)
            kept = kept[-self.max_transactions :]
        return replace(record, transactions=tuple(kept))

    def __repr__(self) -> str:
        return f"<StationRegistry stations={len(self._records)} store={self.store!r}>"


def _close_transaction(record: StationRecord, transaction_id: str) -> StationRecord:
    kept = tuple(t for t in record.transactions if t.transaction_id != transaction_id)
    return replace(record, transactions=kept)


def _as_object(payload: Any) -> Mapping[str, Any] | None:
    """A payload as a JSON object: a dict as it is, a typed message by its wire names."""
    if payload is None or isinstance(payload, Mapping):
        return payload
    try:
        value = msgspec.to_builtins(payload)
    except (TypeError, ValueError, RecursionError):
        return None
    return value if isinstance(value, Mapping) else None


def _get(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, Mapping) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
