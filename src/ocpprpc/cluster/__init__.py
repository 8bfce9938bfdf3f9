"""The clustering seam (empty until the clustering issue adds the adapter).

May import: anyio, _engine, _typed, _rpc, _options.
Never imports: _cli.
"""
