"""The boot gate: BootNotification until the CSMS accepts it; meanwhile only triggered calls go."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import msgspec

from .._engine.connection import uuid4_message_id
from .._rpc.session import _DEFAULT, Session
from .._typed.messages import Request
from .._ws.transport import ConnectionLost
from .events import BootAnswered
from .queued import _BOOT, _Outgoing
from .transactions import _OfflineTransactions

log = logging.getLogger("ocpprpc.station")


class _BootGate(_OfflineTransactions):
    """Sends the station's BootNotification and holds other calls until it is accepted."""

    async def _boot(self, session: Session) -> None:
        """Send BootNotification until the CSMS accepts it (the boot gate opens).

        :raises ConnectionLost: the connection ended first (the next one boots again).
        """
        wait, self._boot_wait = self._boot_wait, 0.0
        try:
            await self._boot_cycle(session, wait)
        finally:
            self._boot_wait = 0.0  # a triggered boot answered meanwhile set it: this cycle is over

    async def _boot_cycle(self, session: Session, wait: float) -> None:
        while True:
            if wait > 0:
                # OCPP 1.6 4.2.1 / 2.0.1 B02: meanwhile the station sends only what the CSMS
                # triggers (a triggered BootNotification that is accepted ends the wait).
                with anyio.move_on_after(wait):
                    await self._serve_triggered(session)
                if self._booted.is_set():
                    return
            try:
                answer: Any = await self._call(session, self._boot_item(session.protocol))
            except ConnectionLost:
                raise
            except Exception as exc:
                # Unanswered, refused with a CALLERROR, or an invalid answer: the
                # station cannot work unbooted, so it keeps asking, politely spaced.
                log.warning("%s: BootNotification failed (%s); retrying", self, exc)
                wait = self.boot_retry_interval
                continue
            wait = self._boot_answered(answer)
            if self._booted.is_set():
                return

    def _boot_item(self, protocol: str) -> _Outgoing:
        """A BootNotification with the station's ``boot`` payload."""
        assert self.boot is not None
        boot = self.boot(protocol) if callable(self.boot) else self.boot
        if isinstance(boot, Request):
            return _Outgoing(boot, None, uuid4_message_id(), _DEFAULT, True, None)
        return _Outgoing(_BOOT, dict(boot), uuid4_message_id(), _DEFAULT, True, None)

    def _boot_answered(self, answer: Any) -> float:
        """Open the gate on ``Accepted``, else close it; returns the wait before booting again."""
        if isinstance(answer, msgspec.Struct):
            answer = msgspec.to_builtins(answer)
        status = str(answer.get("status", ""))
        interval = float(answer.get("interval") or 0)
        self.boot_status = status
        self._emit(BootAnswered(status, interval))
        if status == "Accepted":
            self.heartbeat_interval = interval
            log.info("%s: boot accepted (heartbeat interval %g s)", self, interval)
            self._booted.set()
            return 0.0
        self._close_gate()
        # OCPP 1.6 4.2 / 2.0.1 B02-B03: Pending or Rejected: wait the interval, boot again.
        wait = interval if interval > 0 else self.boot_retry_interval
        log.info("%s: boot %s; booting again in %g s", self, status, wait)
        return wait

    def _close_gate(self) -> None:
        if self._booted.is_set():
            self._booted = anyio.Event()

    async def _serve_triggered(self, session: Session) -> None:
        """Deliver triggered calls only, until a triggered BootNotification is accepted."""
        while not self._booted.is_set():
            item = await self._next_triggered()
            await self._send_one(session, item)

    async def _next_triggered(self) -> _Outgoing:
        while True:
            if self._triggered and self._triggered[0].after_reply is None:
                return self._triggered.popleft()
            self._wakeup = anyio.Event()
            await self._wakeup.wait()
