"""The CSMS layers a benchmark can switch on, one at a time or together, to state what each costs.

Used by ``bench_transport.py --layers`` and the harness peer's ``--layers``
(``bench/peer/ocpprpc``): the same server keywords in both, so the in-process
Python-call counts and the harness's CPU per call measure the same thing.
"""

from __future__ import annotations

import logging
from typing import Any

import ocpprpc

LAYERS = ("middleware", "waiting-middleware", "ratelimit", "events", "exchangelog", "metrics")


def layer_options(names: str) -> dict[str, Any]:
    """The Server keywords that switch the named layers on (``--layers``)."""
    chosen = {name.strip() for name in names.split(",") if name.strip()}
    unknown = chosen - set(LAYERS)
    if unknown:
        raise SystemExit(f"--layers: unknown {sorted(unknown)}; choose from {', '.join(LAYERS)}")
    options: dict[str, Any] = {}
    middleware: list[Any] = []
    if "middleware" in chosen:
        # An observer: it awaits nothing but call_next, and says so (plain handlers stay inline).
        @ocpprpc.never_waits
        async def observe(ctx: ocpprpc.MessageContext, call_next: Any) -> Any:
            return await call_next(ctx)

        middleware.append(observe)
    if "waiting-middleware" in chosen:
        # The same, unmarked: it might wait, so every CALL goes to a handler worker.
        async def might_wait(ctx: ocpprpc.MessageContext, call_next: Any) -> Any:
            return await call_next(ctx)

        middleware.append(might_wait)
    if "exchangelog" in chosen:
        logger = logging.getLogger("ocpprpc.exchange")
        logger.setLevel(logging.INFO)
        logger.addHandler(logging.NullHandler())
        logger.propagate = False
        middleware.append(ocpprpc.ExchangeLog())
    if middleware:
        options["middleware"] = middleware
    if "ratelimit" in chosen:
        # Budgets far above what a benchmark station sends: every CALL is checked, none refused.
        options["rate_limits"] = ocpprpc.StationLimits(
            global_=ocpprpc.RateLimit.parse("1000000/1"),
            per_action={"MeterValues": ocpprpc.RateLimit.parse("1000000/1")},
        )
    if "metrics" in chosen:
        options["metrics"] = True  # Prometheus counting in the onion, exported when scraped
    if "events" in chosen:
        hub = ocpprpc.SecurityEvents()
        seen: list[int] = [0]

        def count(event: ocpprpc.SecurityEvent) -> None:
            seen[0] += 1

        hub.subscribe(count)
        options["security_events"] = hub
    return options
