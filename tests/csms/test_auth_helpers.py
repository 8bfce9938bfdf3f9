"""The ready auth callbacks (ocpprpc._csms.auth) behind a real Server, stations over loopback sockets."""

from __future__ import annotations

import logging

import pytest

import ocpprpc
from ocpprpc import Accept, HandshakeRejected, PasswordTable, Reject, StationRequest, hash_password

from .helpers import eventually, ws_url

pytestmark = pytest.mark.timeout(30)

BINARY = b"\x00:binary 1.6 key\xff"


async def outcome(server: ocpprpc.Server, identity: str, password: str | bytes | None) -> int:
    """101 for accepted, else the HTTP status the station was refused with."""
    try:
        async with ocpprpc.connect(ws_url(server), identity, protocols=["ocpp1.6"], password=password):
            return 101
    except HandshakeRejected as refused:
        assert refused.status is not None
        return refused.status


@pytest.fixture(scope="module")
def table_entries() -> dict[str, str]:
    # Hashing is deliberately slow: once per module, not per test.
    return {"CP001": hash_password("right-password-123"), "CP:2": hash_password(BINARY)}


async def test_password_table_accepts_only_the_right_password(
    table_entries: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    table = PasswordTable(table_entries)
    async with ocpprpc.serve(auth=table) as server:
        assert await outcome(server, "CP001", "right-password-123") == 101
        assert await outcome(server, "CP:2", BINARY) == 101
        assert await outcome(server, "CP001", "guess-7d3f") == 401
        assert await outcome(server, "CP001", BINARY) == 401  # another station's password
        assert await outcome(server, "CP001", None) == 401
        assert await outcome(server, "CP001", "") == 401
        # The hole in the old docs example: an unknown station without a password.
        assert await outcome(server, "CP999", None) == 401
        assert await outcome(server, "CP999", "right-password-123") == 401
    assert "right-password-123" not in caplog.text and "guess-7d3f" not in caplog.text


async def test_password_table_changes_while_serving(table_entries: dict[str, str]) -> None:
    table = PasswordTable(table_entries)
    async with ocpprpc.serve(auth=table) as server:
        assert await outcome(server, "CP003", "new-password-456") == 401
        table.set_password("CP003", "new-password-456")
        entry = table["CP003"]
        assert isinstance(entry, str) and entry.startswith("scrypt$")
        assert await outcome(server, "CP003", "new-password-456") == 101
        del table["CP001"]
        assert await outcome(server, "CP001", "right-password-123") == 401
        assert len(table) == 2 and set(table) == {"CP:2", "CP003"}


async def test_plaintext_table_only_when_asked() -> None:
    with pytest.raises(ValueError, match="plaintext=True"):
        PasswordTable({"CP001": "right-password-123"})
    with pytest.raises(TypeError):
        PasswordTable({"CP001": b"bytes are no hash"})
    with pytest.raises(TypeError, match="must be str or bytes"):
        PasswordTable({"CP001": 1234}, plaintext=True)  # type: ignore[dict-item]
    table = PasswordTable({"CP001": "right-password-123", "CP002": BINARY}, plaintext=True)
    assert "right" not in repr(table) and "plaintext" in repr(table)
    async with ocpprpc.serve(auth=table) as server:
        assert await outcome(server, "CP001", "right-password-123") == 101
        assert await outcome(server, "CP002", BINARY) == 101
        assert await outcome(server, "CP001", "right-password-12") == 401
        assert await outcome(server, "CP999", None) == 401
        assert await outcome(server, "CP999", "right-password-123") == 401


def test_hashes_are_salted_and_verifiable() -> None:
    first, second = hash_password("pw"), hash_password("pw")
    assert first != second  # salted
    assert "a-long-password-9" not in hash_password("a-long-password-9")
    assert ocpprpc.verify_password("pw", first) and ocpprpc.verify_password(b"pw", second)
    assert not ocpprpc.verify_password("pW", first)
    pbkdf2 = hash_password(BINARY, method="pbkdf2_sha256", iterations=1000)
    assert pbkdf2.startswith("pbkdf2_sha256$1000$")
    assert ocpprpc.verify_password(BINARY, pbkdf2) and not ocpprpc.verify_password(b"x", pbkdf2)
    cheap = hash_password("pw", n=2**10, r=4)
    assert cheap.startswith("scrypt$1024$4$1$") and ocpprpc.verify_password("pw", cheap)
    with pytest.raises(ValueError, match="method"):
        hash_password("pw", method="md5")
    for bad in (
        "",
        "scrypt$1$2",
        "scrypt$a$8$1$AA==$AA==",
        "scrypt$0$8$1$AA==$AA==",
        "bcrypt$x",
        "scrypt$16$8$1$!$AA==",
    ):
        with pytest.raises(ValueError, match="hash_password"):
            ocpprpc.verify_password("pw", bad)


async def test_combinators(table_entries: dict[str, str]) -> None:
    async def tenant(request: StationRequest) -> Accept:
        return Accept(data={"tenant": "acme", "who": "tenant"})

    async def label(request: StationRequest) -> Accept:
        return Accept(protocol="ocpp1.6", data={"who": "label"})

    async def nothing(request: StationRequest) -> None:
        return None

    async def teapot(request: StationRequest) -> Reject:
        return Reject(418, "no")

    table = PasswordTable(table_entries)
    both = ocpprpc.all_of(table, tenant, nothing, label)
    async with ocpprpc.serve(auth=both) as server:
        async with ocpprpc.connect(ws_url(server), "CP001", password="right-password-123") as station:
            await eventually(lambda: "CP001" in server.clients)
            assert server.clients["CP001"].data == {"tenant": "acme", "who": "label"}
            assert station.protocol == "ocpp1.6"
        assert await outcome(server, "CP001", "wrong") == 401

    either = ocpprpc.any_of(teapot, table)
    async with ocpprpc.serve(auth=either) as server:
        assert await outcome(server, "CP001", "right-password-123") == 101
        assert await outcome(server, "CP001", "wrong") == 418  # the first refusal answers
    async with ocpprpc.serve(auth=ocpprpc.any_of(teapot, nothing)) as server:
        assert await outcome(server, "CP001", None) == 101
    with pytest.raises(ValueError):
        ocpprpc.all_of()
    with pytest.raises(ValueError):
        ocpprpc.any_of()
