"""Certificates for the security-profile tests (made fresh by trustme for each test run); each
test on both TCP streams on asyncio, and on trio (:mod:`tests.tcp_streams`)."""

from __future__ import annotations

import pytest
import trustme

from tests.tcp_streams import anyio_backend

__all__ = ["anyio_backend"]


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    """The CA that signs the CSMS certificate (what a station trusts)."""
    return trustme.CA()


@pytest.fixture(scope="session")
def station_ca() -> trustme.CA:
    """A separate CA that signs station certificates (security profile 3)."""
    return trustme.CA()


@pytest.fixture(scope="session")
def server_cert(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("127.0.0.1", "localhost")
