"""The RPC layer: the anyio session that drives one engine, the router, handler dispatch.

May import: anyio, :mod:`ocpprpc._engine`, :mod:`ocpprpc._typed`, and from :mod:`ocpprpc._ws`
only the message-stream seam (:mod:`ocpprpc._ws.transport`).
Never imports: the WebSocket implementation, sockets, TLS, trio, or the station/CSMS/CLI parts.
"""
