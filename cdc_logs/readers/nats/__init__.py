"""The `nats` source: a NATS JetStream stream read through a durable pull consumer, each message
acknowledged (explicitly, one by one) only once every sink holds it (nats-py, asyncio on the reader's
own thread).

config.py is the config model and its build function, reader.py the `NatsReader`. docs/sources/nats.md
states what the server redelivers, when, and in which order.
"""
