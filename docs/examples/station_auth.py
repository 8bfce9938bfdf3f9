"""Authenticating stations: a ready password table, a hand-written check, and a certificate check.

Profiles 1 and 2 send the password with HTTP Basic auth; the CSMS keeps salted
hashes and compares in constant time.  Every refusal is the same 401, whether
the identity is unknown, the password wrong or missing.
"""

from __future__ import annotations

import hmac

import anyio

import ocpprpc

# -- the ready helper: identity -> salted hash (make entries once, store them) -----------
# [password-table]
passwords = ocpprpc.PasswordTable(
    {
        "CP001": ocpprpc.hash_password("correct-horse-battery-staple"),
        "CP002": ocpprpc.hash_password(b"\x00binary 1.6 key\xff"),
    }
)
# and later, while serving: passwords.set_password("CP003", "another-long-password")
# [/password-table]


# -- the same rules by hand, for passwords that live elsewhere ------------------------------
# [hand-written]
PLAIN = {"CP001": b"correct-horse-battery-staple"}  # e.g. read from a secrets store


async def auth(request: ocpprpc.StationRequest) -> ocpprpc.Accept | ocpprpc.Reject:
    expected = PLAIN.get(request.identity)
    # Unknown station and missing password are refusals too, never "None == None";
    # the comparison takes the same time however much of the password is right.
    if expected is None or request.password is None or not hmac.compare_digest(request.password, expected):
        return ocpprpc.Reject(401)
    return ocpprpc.Accept(data={"tenant": "acme"})


# [/hand-written]

# -- profile 3 with a password on top: both checks must pass --------------------------------
# [combined]
profile_3_and_password = ocpprpc.all_of(ocpprpc.certificate_identity(), passwords)
# [/combined]


async def attempt(url: str, identity: str, password: str | bytes | None) -> str:
    try:
        async with ocpprpc.connect(url, identity, protocols=["ocpp1.6"], password=password):
            return "accepted"
    except ocpprpc.HandshakeRejected as refused:
        return f"refused {refused.status}"


async def main() -> None:
    for name, check in (("PasswordTable", passwords), ("hand-written", auth)):
        async with ocpprpc.serve("127.0.0.1", 0, auth=check) as server:
            url = f"ws://127.0.0.1:{server.port}/ocpp"
            results = {
                "right password": await attempt(url, "CP001", "correct-horse-battery-staple"),
                "wrong password": await attempt(url, "CP001", "guess"),
                "no password": await attempt(url, "CP001", None),
                "unknown station, no password": await attempt(url, "CP999", None),
                "unknown station, a password": await attempt(url, "CP999", "guess"),
            }
        for case, result in results.items():
            print(f"{name}: {case}: {result}")
        assert results.pop("right password") == "accepted"
        assert set(results.values()) == {"refused 401"}


if __name__ == "__main__":
    for backend in ("asyncio", "trio"):
        print(f"-- {backend}")
        anyio.run(main, backend=backend)
