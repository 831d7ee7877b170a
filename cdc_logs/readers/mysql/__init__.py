"""MySQL / MariaDB source: row-based binlog capture with GTID resume.

See reader.py (MysqlReader), connection.py (the binlog thread, errors), convert.py (events),
snapshot.py (consistent snapshot), types.py (value mapping), gtid.py (GTID arithmetic),
doctor.py (preflight checks) and docs/sources/mysql.md.
"""
