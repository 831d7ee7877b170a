"""MySQL / MariaDB source: row-based binlog capture with GTID resume.

See reader.py (MysqlReader), connection.py (the binlog thread, errors), convert.py (events),
snapshot.py (consistent snapshot), types.py (value mapping), gtid.py (GTID arithmetic),
doctor.py (preflight checks) and docs/sources/mysql.md.
"""

from cdc_logs.readers.mysql.connection import MysqlSettings, parse_dsn
from cdc_logs.readers.mysql.reader import MysqlReader, default_server_id

__all__ = ["MysqlReader", "MysqlSettings", "default_server_id", "parse_dsn"]
