"""The WebSocket transport: handshake, the WebSocket stream, frame codecs, byte streams,
TCP, TLS, keepalive, and the message-stream seam the session reads.

May import: anyio, wsproto, websockets' sans-IO protocol, sockets and ssl,
and :mod:`ocpprpc._options` (plain settings).
Never imports: anything that knows OCPP (_engine, _typed, _rpc) nor the parts above it
(_station, _csms, _cli), nor trio.
"""
