"""SQLite source: trigger-based change capture into a change table inside the database itself.

See reader.py (SqliteReader), triggers.py (the triggers, `cleanup`), state.py (change table,
consumers, trimming) and docs/sources/sqlite.md.
"""
