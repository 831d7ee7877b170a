#!/usr/bin/env python3
"""Capture raw MariaDB binlog replication packets for the MySQL reader's unit tests.

Runs a scripted workload (every documented type, a multi-statement transaction with a key change,
ALTER TABLE add/drop/rename/reorder between inserts, a transaction on another table, DDL), then asks
the server for the binlog from the GTID position taken before the workload and writes every packet the
server sent, as hex, one per line, to `<out>/mariadb-10.11.packets`; `<out>/manifest.json` records the
server version, the checksum setting and the start GTID. tests/unit/test_mysql_convert.py replays the
packets through python-mysql-replication's real parser and our converter, with no server.

    eval "$(scripts/stack env)"
    .venv/bin/python scripts/capture_binlog.py --dsn "$CDC_MARIADB_DSN" --out tests/fixtures/mysql

Tables `mr_fx_types`, `mr_fx_tx` and `mr_fx_other` in the DSN's database are re-created on every run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pymysql
from pymysqlreplication import BinLogStreamReader

from cdc_logs.readers.mysql.connection import parse_dsn

WORKLOAD = [
    "DROP TABLE IF EXISTS mr_fx_types, mr_fx_tx, mr_fx_other",
    """CREATE TABLE mr_fx_types (
  id INT PRIMARY KEY, ti TINYINT, tu TINYINT UNSIGNED, bu BIGINT UNSIGNED, d DECIMAL(10,2),
  f FLOAT, db DOUBLE, b1 BIT(1), b12 BIT(12), e ENUM('x','y'), s SET('a','b','c'), s0 SET('a','b'),
  c CHAR(3), vc VARCHAR(10), bl BLOB, bn BINARY(3), j JSON, dt DATE, dtm DATETIME, dtm3 DATETIME(3),
  dtm6 DATETIME(6), ts TIMESTAMP NULL, ts3 TIMESTAMP(3) NULL, tm TIME, tm6 TIME(6), y YEAR, g GEOMETRY,
  n INT)""",
    "CREATE TABLE mr_fx_tx (id INT PRIMARY KEY, a INT, b VARCHAR(5))",
    "CREATE TABLE mr_fx_other (id INT PRIMARY KEY)",
    "SET time_zone = '+00:00'",
    """INSERT INTO mr_fx_types VALUES (1, -128, 255, 18446744073709551615, -12.34, 1.1, 2.2, b'1',
  b'101000000001', 'y', 'c,a', '', 'ab', 'héllo', x'00ff', x'0102', '{"k": [1, 2]}', '2024-02-29',
  '2024-01-02 03:04:05', '2024-01-02 03:04:05.123', '1969-12-31 23:59:59.999999', '2024-01-02 03:04:05',
  '2024-01-02 03:04:05.5', '-838:59:59', '12:00:00.000001', 2024,
  ST_GeomFromText('POINT(1 2)', 4326), NULL)""",
    "BEGIN",
    "INSERT INTO mr_fx_tx VALUES (1, 10, 'x'), (2, 20, 'y')",
    "UPDATE mr_fx_tx SET a = 11 WHERE id = 1",
    "UPDATE mr_fx_tx SET id = 3 WHERE id = 2",
    "DELETE FROM mr_fx_tx WHERE id = 1",
    "COMMIT",
    "INSERT INTO mr_fx_other VALUES (1)",
    "ALTER TABLE mr_fx_tx ADD COLUMN c INT DEFAULT 7",
    "INSERT INTO mr_fx_tx (id, a, b) VALUES (4, 40, 'z')",
    "ALTER TABLE mr_fx_tx DROP COLUMN a",
    "ALTER TABLE mr_fx_tx RENAME COLUMN b TO bee",
    "ALTER TABLE mr_fx_tx MODIFY COLUMN c INT AFTER id",
    "INSERT INTO mr_fx_tx VALUES (5, 50, 'v')",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--out", type=Path, default=Path("tests/fixtures/mysql"))
    args = parser.parse_args()
    settings = parse_dsn(args.dsn)
    conn = pymysql.connect(**settings.kwargs(), autocommit=True)
    with conn.cursor() as cur:
        cur.execute("SELECT @@gtid_binlog_pos, VERSION(), @@binlog_checksum")
        start, version, checksum = cur.fetchone()
        for statement in WORKLOAD:
            cur.execute(statement)
    packets: list[str] = []

    def recording(**kwargs: Any) -> pymysql.connections.Connection:
        class Recorder(pymysql.connections.Connection):
            dumping = False  # only what follows COM_BINLOG_DUMP (0x12) is binlog traffic

            def _write_bytes(self, data: bytes) -> None:
                self.dumping = self.dumping or (len(data) > 4 and data[4] == 0x12)
                super()._write_bytes(data)

            def _read_packet(self, packet_type: Any = pymysql.connections.MysqlPacket) -> Any:
                packet = super()._read_packet(packet_type)
                if self.dumping:
                    packets.append(packet.get_all_data().hex())
                return packet

        return Recorder(**kwargs)

    stream = BinLogStreamReader(
        {k: v for k, v in settings.kwargs(database=False).items() if k != "connect_timeout"},
        server_id=3_999_111_222,
        blocking=False,
        auto_position=start,
        is_mariadb=True,
        pymysql_wrapper=recording,
    )
    for _ in stream:
        pass
    stream.close()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "mariadb-10.11.packets").write_text("\n".join(packets) + "\n")
    manifest = {
        "server_version": version,
        "binlog_checksum": checksum,
        "start_gtid": start,
        "generated_by": "scripts/capture_binlog.py",
        "format": "one packet per line, hex, as read by PyMySQL (the stream connection only)",
        "workload": WORKLOAD,
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    print(f"{len(packets)} packets from GTID {start} -> {args.out}")


if __name__ == "__main__":
    main()
