"""Polling source: SQLAlchemy watermark polling (timestamp, incrementing, timestamp+incrementing).

The fallback for databases (or privileges) without log access. See reader.py for what polling cannot
see (hard deletes, `before`, intermediate updates) and docs/sources/polling.md.
"""
