"""Oracle source: LogMiner with the online catalog over redo logs added per SCN window.

See reader.py (OracleReader), connection.py (python-oracledb: connections, error mapping, log lists,
the LogMiner session of one window), logs.py (which logs a window needs, adaptive window width),
rows.py (V$LOGMNR_CONTENTS rows, CSF continuations), redo_sql.py (the SQL_REDO parser), txbuffer.py
(open transactions by XID, spill to disk), changes.py (rows -> events in commit order, positions),
convert.py and schema.py (values and types), doctor.py (preflight checks) and docs/sources/oracle.md.
No Oracle server runs on the project's machines: everything past connection.py is tested on
recorded V$LOGMNR_CONTENTS rows (tests/fixtures/oracle/).
"""
