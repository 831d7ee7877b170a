"""cdc-logs: log-based change data capture with one Debezium-shaped change envelope."""

__version__ = "0.1.0"
