"""Clustering: any process reaches any station, over a shared adapter (in memory, or Redis).

May import: anyio, _engine, _typed, _rpc, _options; the Redis clients ``redis`` (redis-py,
asyncio only) and ``coredis`` (anyio-native, for trio) -- the ``ocpprpc[redis]`` extra --
and only in :mod:`.ops_redispy` and :mod:`.ops_coredis` (everything else talks to Redis
through :class:`.ops.RedisOps`).
Never imports: _cli, _csms (the CSMS plugs the cluster in through its Delivery seam), trio.
"""
