"""Native readers, one subpackage per source: postgres (logical replication, pgoutput), mysql (row
binlog, MySQL and MariaDB), sqlite (capture triggers) and polling (watermark queries through
SQLAlchemy). The Debezium source (Debezium's Kafka topics) lives in cdc_logs/debezium.

The same job has the same file name in every package: config.py (the config model and its
registered build function), connection.py (I/O and error mapping), reader.py (the `Reader`),
convert.py (the source's changes -> `ChangeEvent`s), schema.py (`TableSchema`s), doctor.py
(`check_source(cfg, stored)`: the `cdc-logs doctor` checks, `Check`s from checks.py), and where the
source needs one snapshot.py (polling has none: its first poll from the lowest watermark is the
snapshot). base.py is the Reader contract every reader implements, contract.py the event contract's
checker.
"""
