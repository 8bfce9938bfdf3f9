"""A multi-tenant CSMS: URL routes with parameters, two listeners, connection middleware, composed auth.

Run it: ``python docs/examples/routing.py`` (asyncio, then trio).  Tenants
connect on ``/ocpp/{tenant}/{identity}`` with a password; a test bench has a
route of its own with no password, OCPP 1.6 only and no validation; anything
else is answered 404.  A second listener serves the same stations (one view
of them) on another port, with only the tenant route.
"""

from __future__ import annotations

import anyio

import ocpprpc

router = ocpprpc.Router()


@router.on("Heartbeat")
def heartbeat(request: dict[str, object], ctx: ocpprpc.CallContext) -> dict[str, object]:
    session = ctx.session
    tenant = session.params.get("tenant", "-")
    print(f"CSMS: Heartbeat from {session.identity} of {tenant} on {session.route}")
    return {"currentTime": "2026-01-01T00:00:00Z"}


TENANTS = {"acme", "globex"}


async def known_tenant(conn: ocpprpc.UpgradeContext) -> ocpprpc.Reject | None:
    """Connection middleware: refuse unknown tenants before any password is checked."""
    tenant = conn.params["tenant"]
    if tenant not in TENANTS:
        return ocpprpc.Reject(404, "unknown tenant")
    conn.state["tenant"] = tenant  # request.state for auth, then session.data
    return None


async def same_tenant(request: ocpprpc.StationRequest) -> ocpprpc.Accept | ocpprpc.Reject:
    """Auth: a station belongs to the tenant it names (here: its identity starts with it)."""
    if not request.identity.lower().startswith(request.params["tenant"]):
        return ocpprpc.Reject(403, "station of another tenant")
    return ocpprpc.Accept()


# Cheap hashes for the example; use hash_password's defaults in production.
passwords = ocpprpc.PasswordTable(
    {
        "ACME-1": ocpprpc.hash_password("acme-1-password", n=2**10),
        "GLOBEX-7": ocpprpc.hash_password("globex-7-password", n=2**10),
    }
)

tenant_route = ocpprpc.Route(
    "/ocpp/{tenant}/{identity}",
    auth=ocpprpc.all_of(passwords, same_tenant),
    connection_middleware=[known_tenant],
    name="tenants",
)
# The bench: no auth callback (none on the server either), 1.6 only, no validation.
bench_route = ocpprpc.Route("/bench/{identity}", protocols=["ocpp1.6"], validation=False, name="bench")


async def status_of(url: str, identity: str, password: str | None = None) -> int:
    try:
        async with ocpprpc.connect(url, identity, password=password) as station:
            await station.call("Heartbeat", {})
            return 101
    except ocpprpc.HandshakeRejected as refused:
        assert refused.status is not None
        return refused.status


async def main() -> None:
    listeners = [
        ocpprpc.Listener("127.0.0.1", 0, routes=[tenant_route, bench_route], name="main"),
        ocpprpc.Listener("127.0.0.1", 0, routes=[tenant_route], name="tenants-only"),
    ]
    async with ocpprpc.serve(listeners=listeners, router=router, validation=True) as server:
        main_url = f"ws://127.0.0.1:{server.listener('main').port}"
        second_url = f"ws://127.0.0.1:{server.listener('tenants-only').port}"
        outcomes = {
            "tenant station, right password": await status_of(
                f"{main_url}/ocpp/acme", "ACME-1", "acme-1-password"
            ),
            "tenant station, wrong password": await status_of(f"{main_url}/ocpp/acme", "ACME-1", "guess"),
            "station of another tenant": await status_of(
                f"{main_url}/ocpp/acme", "GLOBEX-7", "globex-7-password"
            ),
            "unknown tenant (middleware)": await status_of(f"{main_url}/ocpp/initech", "INITECH-1", "x"),
            "test bench, no password": await status_of(f"{main_url}/bench", "BENCH-1"),
            "second listener, tenant route": await status_of(
                f"{second_url}/ocpp/globex", "GLOBEX-7", "globex-7-password"
            ),
            "second listener, no bench route": await status_of(f"{second_url}/bench", "BENCH-1"),
            "no route at all": await status_of(f"{main_url}/elsewhere", "CP1"),
        }
        for what, status in outcomes.items():
            print(f"{what}: {status}")
        assert list(outcomes.values()) == [101, 401, 403, 404, 101, 101, 404, 404]


if __name__ == "__main__":
    for backend in ("asyncio", "trio"):
        anyio.run(main, backend=backend)
