"""The charging-station side: connect(), the reconnecting Station, outbox stores.

May import: anyio, sqlite3, _engine, _typed, _rpc, _ws, _options.
Never imports: _csms or _cli, nor trio.
"""
