"""The CSMS side: Server, serve(), station admission and the CSMS guards.

May import: anyio, _engine, _typed, _rpc, _ws, _options.
Never imports: _station or _cli, nor trio.
"""
