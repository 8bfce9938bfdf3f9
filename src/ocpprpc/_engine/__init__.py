"""The sans-IO OCPP-J engine: frames, rules, events, errors, the payload codec seam.

May import: the standard library and msgspec, and its own modules.
Never imports: anything doing I/O (anyio, asyncio, trio, socket, ssl, wsproto, websockets)
and no other part of ocpprpc.  Held to 100% branch coverage.
"""
