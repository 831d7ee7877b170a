"""Redis Streams source: a consumer group read with XREADGROUP, entries acknowledged (XACK) only once
every sink holds them, pending entries of dead consumers claimed with XAUTOCLAIM.

See reader.py (RedisStreamReader), entries.py (a stream entry -> a message), config.py and
docs/sources/redis_stream.md.
"""
