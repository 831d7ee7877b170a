"""The SQL apply sink's implementation: apply.py (SqlSink: upserts, deletes, truncates, replay
markers, auto_create), sql_types.py (Debezium's encodings back to typed values, DDL types per
dialect), sql_fit.py (values a target column would change, and the ALTER that fixes it) and urls.py
(URLs and drivers, shared with the config).

A package of its own so the registry, which imports every module of cdc_logs/sinks/, never loads
SQLAlchemy: sinks/sql.py (the config and the registration) imports this only to build a sink.
"""
