"""The ``anyio_backend`` fixture of the transport and integration tests: both TCP streams on asyncio.

Those directories import it into their conftest, so each of their async tests
runs three times: on asyncio over ocpprpc's own TCP stream (``tcp_stream="auto"``,
the default), on asyncio over anyio's stream, and on trio (anyio's stream, the
only one there).
"""

from __future__ import annotations

import pytest

import ocpprpc._tcp

#: The extra backend id: asyncio with anyio's TCP stream instead of ocpprpc's.
ASYNCIO_ANYIO_STREAM = "asyncio+anyio-stream"


@pytest.fixture(params=["asyncio", ASYNCIO_ANYIO_STREAM, "trio"])
def anyio_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The backend to run on; for the extra id, asyncio with ``"anyio"`` as the default TCP stream.

    Everything that follows the default (``connect()``, ``serve()``, the test
    peers of ``tests/transport/helpers.py``) then uses anyio's stream.
    """
    if request.param == ASYNCIO_ANYIO_STREAM:
        monkeypatch.setattr(ocpprpc._tcp, "DEFAULT_TCP_STREAM", "anyio")
        return "asyncio"
    return str(request.param)
