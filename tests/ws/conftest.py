"""Transport fixtures: each test on both TCP streams (asyncio) and trio; frame codecs opt-in."""

from __future__ import annotations

import pytest

import ocpprpc._ws.handshake_shared
from tests.tcp_streams import anyio_backend

__all__ = ["anyio_backend", "ws_codec"]


@pytest.fixture(params=["wsproto", "websockets"])
def ws_codec(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Make ``request.param`` the codec every ``open_websocket``/``accept_websocket`` call uses.

    Modules opt in with ``pytestmark = pytest.mark.usefixtures("ws_codec")``; their
    tests then run on both codecs (and both backends) without passing it around.
    """
    name = str(request.param)
    monkeypatch.setattr(ocpprpc._ws.handshake_shared, "DEFAULT_WS_CODEC", name)
    return name
