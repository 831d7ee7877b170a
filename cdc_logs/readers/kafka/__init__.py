"""Kafka topics as a source: the consumer every Kafka source shares (consumer: groups, per-partition
lanes, commit-after-durable, rebalances, dead letters) with pluggable decoding, and the `kafka` source
(JSON, Avro with a schema registry, or Debezium envelopes). docs/sources/kafka.md."""
