"""RabbitMQ source: a queue consumed with manual acknowledgements, acked only once every sink holds
the messages; poison messages dead-lettered (and nacked to the queue's dead-letter exchange).

See reader.py (RabbitMQReader), config.py and docs/sources/rabbitmq.md.
"""
