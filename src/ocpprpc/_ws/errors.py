"""Errors of the WebSocket opening handshake.

Kept apart from :mod:`ocpprpc._ws.handshake` so that ``import ocpprpc`` can export
them without loading anyio, ssl or sockets (the sans-IO promise of the package
root, enforced by ``tests/test_import_isolation.py``).
"""

from __future__ import annotations

__all__ = ["HandshakeError", "HandshakeRejected", "HandshakeTimeout"]


class HandshakeError(Exception):
    """The WebSocket opening handshake (TCP, TLS, HTTP upgrade, subprotocol) failed.

    On the server side ``status`` is the HTTP status we answered the peer with
    (``None`` when the connection failed before an answer was possible).
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class HandshakeRejected(HandshakeError):
    """The server answered the upgrade request with an HTTP error instead of ``101``.

    ``status`` is the HTTP status (401 for bad credentials, 404 for an unknown
    station, ...), ``reason`` its reason phrase, ``body`` the first bytes of the
    response body and ``headers`` the response headers (lower-case names).
    """

    def __init__(
        self,
        status: int,
        reason: str = "",
        body: bytes = b"",
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        detail = body[:200].decode("utf-8", "replace").strip()
        message = f"server rejected the WebSocket upgrade: HTTP {status} {reason}".rstrip()
        super().__init__(f"{message}: {detail}" if detail else message, status=status)
        self.reason = reason
        self.body = body
        self.headers = headers or []


class HandshakeTimeout(HandshakeError, TimeoutError):
    """The handshake did not complete in time (connect timeout, or a slow peer on the server side)."""
