"""Polling source: SQLAlchemy watermark polling (timestamp, incrementing, timestamp+incrementing).

The fallback for databases (or privileges) without log access. See reader.py for what polling cannot
see (hard deletes, `before`, intermediate updates) and docs/sources/polling.md.
"""

from cdc_logs.readers.polling.query import MODES, PolledTable
from cdc_logs.readers.polling.reader import PollingReader

__all__ = ["MODES", "PolledTable", "PollingReader"]
