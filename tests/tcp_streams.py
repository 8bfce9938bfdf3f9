"""The ``anyio_backend`` fixture of the transport and integration tests: both TCP streams per backend.

Those directories import it into their conftest, so each of their async tests
runs four times: on asyncio over ocpprpc's own TCP stream (``tcp_stream="auto"``,
the default), on asyncio over anyio's stream, on trio over the raw-socket
stream (the default there) and on trio over anyio's stream.
"""

from __future__ import annotations

import pytest

import ocpprpc._ws.tcp

#: The extra backend ids: anyio's TCP stream instead of the default one.
ASYNCIO_ANYIO_STREAM = "asyncio+anyio-stream"
TRIO_ANYIO_STREAM = "trio+anyio-stream"


@pytest.fixture(params=["asyncio", ASYNCIO_ANYIO_STREAM, "trio", TRIO_ANYIO_STREAM])
def anyio_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The backend to run on; for the extra ids, ``"anyio"`` as the default TCP stream.

    Everything that follows the default (``connect()``, ``serve()``, the test
    peers of ``tests/ws/helpers.py``) then uses anyio's stream.
    """
    if request.param in (ASYNCIO_ANYIO_STREAM, TRIO_ANYIO_STREAM):
        monkeypatch.setattr(ocpprpc._ws.tcp, "DEFAULT_TCP_STREAM", "anyio")
        return str(request.param).partition("+")[0]
    return str(request.param)
