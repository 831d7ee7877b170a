"""Native readers, one subpackage per source: postgres (logical replication, pgoutput), mysql (row
binlog, MySQL and MariaDB), sqlite (capture triggers) and polling (watermark queries through
SQLAlchemy). The Debezium source (Debezium's Kafka topics) lives in cdc_logs/debezium.

The same job has the same file name in every package: config.py (the config model and its
registered build function), connection.py (I/O and error mapping), reader.py (the `Reader`),
convert.py (the source's changes -> `ChangeEvent`s), schema.py (`TableSchema`s), and where the
source has them snapshot.py (the initial snapshot) and doctor.py (`cdc-logs doctor` checks).
base.py is the Reader contract every reader implements, contract.py the event contract's checker.
"""
