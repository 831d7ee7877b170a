"""Debezium on Kafka Connect: the REST client (connect), declarative provisioning (provision), and
Debezium's Kafka topics as a cdc-logs source (consumer, decode, deadletter, source). docs/debezium.md."""
