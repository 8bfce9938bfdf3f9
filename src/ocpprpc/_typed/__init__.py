"""Typed OCPP messages: schema loading, the type model, strict validation.

May import: the standard library, msgspec and :mod:`ocpprpc._engine`.
Never imports: anything doing I/O (anyio, asyncio, trio, socket, ssl) and no part above it
(_rpc, _ws, _station, _csms, _cli).  The generated ``ocpprpc.v16``/``v201``/``v21`` build on it.
"""
