"""The protection layer's pure building blocks, driven by hand: no sockets, no event loop for the first two.

Run it: ``python docs/examples/protection.py``.
"""

from __future__ import annotations

import anyio

from ocpprpc import (
    AdmissionPolicy,
    Admit,
    ConnectionRefused,
    OnBreach,
    RateLimit,
    RateLimited,
    RateLimiter,
    SecurityEvent,
    SecurityEvents,
    StationLimits,
)


class Clock:
    """Monotonic seconds we move ourselves (the server passes anyio.current_time)."""

    now = 0.0

    def __call__(self) -> float:
        return self.now


def rate_limits(hub: SecurityEvents) -> None:
    clock = Clock()
    limiter = RateLimiter(
        StationLimits(
            global_=RateLimit.parse("100/1m"),
            per_action={"MeterValues": RateLimit.parse("2/10s")},
            on_breach=OnBreach.CALLERROR,
        ),
        clock=clock,
    )
    for second in (0, 0, 0, 5):
        clock.now = second
        verdict = limiter.check("CP-1", "MeterValues")
        if verdict:
            print(f"t={second:>2}s MeterValues from CP-1: allowed")
            continue
        assert verdict.breach is not None and verdict.on_breach is OnBreach.CALLERROR
        answer = f"CALLERROR {verdict.error_code}: {verdict.breach.describe()}"
        print(f"t={second:>2}s MeterValues from CP-1: {answer}")
        hub.emit(
            RateLimited(
                timestamp=hub.clock(),
                identity="CP-1",
                action="MeterValues",
                limit=str(verdict.breach.limit),
                scope=verdict.breach.scope,
                on_breach=verdict.on_breach.value,
                reason=verdict.breach.describe(),
            )
        )
    assert limiter.check("CP-2", "MeterValues"), "every station has its own buckets"


def admission(hub: SecurityEvents) -> None:
    policy = AdmissionPolicy(
        deny_ips=["203.0.113.0/24"],
        trusted_proxies=["10.0.0.0/8"],
        allowed_schemes=["wss"],
        allow_origins=["https://ops.example.com"],
        upgrade_rate="2/10s",
    )
    requests = [
        ("10.0.0.2", {"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https"}, "ws"),
        ("10.0.0.2", {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}, "ws"),
        ("198.51.100.8", {"Origin": "https://evil.example"}, "wss"),
        ("198.51.100.7", {}, "wss"),
        ("198.51.100.7", {}, "wss"),
    ]
    for peer, headers, scheme in requests:
        decision = policy.decide(peer, headers, scheme, now=0.0)
        if isinstance(decision, Admit):
            print(f"{peer:>12} -> admit {decision.client_ip} over {decision.scheme}")
            continue
        print(f"{peer:>12} -> {decision.status} {decision.reason} {decision.headers()}")
        hub.emit(
            ConnectionRefused(
                timestamp=hub.clock(),
                peer=str(decision.client_ip),
                refusal=decision.kind,
                status=decision.status,
                reason=decision.reason,
            )
        )


async def main() -> None:
    hub = SecurityEvents(clock=lambda: 1_700_000_000.0)
    shipped: list[str] = []
    all_shipped = anyio.Event()

    async def ship_to_siem(event: SecurityEvent) -> None:
        shipped.append(event.to_json())
        if len(shipped) == 4:
            all_shipped.set()

    hub.subscribe(ship_to_siem)
    async with anyio.create_task_group() as tg:
        tg.start_soon(hub.run)
        rate_limits(hub)
        admission(hub)
        with anyio.fail_after(5):
            await all_shipped.wait()
        tg.cancel_scope.cancel()
    print("shipped to the SIEM:")
    for line in shipped:
        print(" ", line)
    assert [line.split('"kind":"')[1].split('"')[0] for line in shipped] == [
        "rate_limited",
        "connection_refused",
        "connection_refused",
        "connection_refused",
    ]


if __name__ == "__main__":
    anyio.run(main)
