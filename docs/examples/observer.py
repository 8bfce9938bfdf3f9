"""An observer middleware: counts how exchanges ended, with no coroutine per message.

Run it: ``python docs/examples/observer.py``.  A station makes a few calls; the
CSMS's only middleware is an observer, so its plain handlers run in the reader
and the observer is told each outcome directly (``observe``).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio

import ocpprpc

router = ocpprpc.Router()


@router.on("Heartbeat")
def heartbeat(request: Any, ctx: ocpprpc.CallContext) -> Any:
    return {"currentTime": "2024-01-01T00:00:00Z"}


@router.on("Authorize")
def authorize(request: Any, ctx: ocpprpc.CallContext) -> Any:
    if request["idTag"] == "BROKEN":
        raise ocpprpc.OCPPError("InternalError", "tag store down")
    return {"idTagInfo": {"status": "Accepted"}}


class CountOutcomes:
    """Counts (action, outcome).  ``__call__`` is exactly "await call_next, then observe"."""

    never_waits = True

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()

    async def __call__(self, ctx: ocpprpc.MessageContext, call_next: ocpprpc.CallNext) -> Any:
        try:
            answer = await call_next(ctx)
        except BaseException as exc:
            self.observe(ctx, None, exc)
            raise
        self.observe(ctx, answer, None)
        return answer

    def observe(self, ctx: ocpprpc.MessageContext, answer: Any, error: BaseException | None) -> None:
        outcome = "ok" if error is None else getattr(error, "code", type(error).__name__)
        self.counts[(ctx.action, outcome)] += 1


async def main() -> None:
    observer = CountOutcomes()
    async with (
        ocpprpc.serve(router=router, middleware=[observer]) as server,
        ocpprpc.connect(f"ws://127.0.0.1:{server.port}/ocpp", "CP001") as station,
    ):
        await station.call("Heartbeat", {})
        await station.call("Authorize", {"idTag": "ABC"})
        try:
            await station.call("Authorize", {"idTag": "BROKEN"})
        except ocpprpc.OCPPError as exc:
            print("station got a CALLERROR:", exc.code)
    for (action, outcome), count in sorted(observer.counts.items()):
        print(f"csms counted {action} {outcome}: {count}")
    expected = {("Heartbeat", "ok"): 1, ("Authorize", "ok"): 1, ("Authorize", "InternalError"): 1}
    assert observer.counts == expected


if __name__ == "__main__":
    anyio.run(main)
