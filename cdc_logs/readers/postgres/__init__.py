"""PostgreSQL source: logical replication (pgoutput) through a replication slot, with snapshot hand-off.

See reader.py (PostgresReader), connection.py (connections, error mapping, the walsender stream),
walproto.py (CopyData framing), pgoutput.py (message decoding), changes.py (messages -> events in
commit order), txbuffer.py (streamed transactions), convert.py (events in Debezium's shape),
types.py, pgtime.py and pgbinary.py (value mapping), schema.py and catalog.py (the catalog),
snapshot.py (consistent snapshot), slots.py and ownership.py (slots, publications and what cdc-logs
owns), doctor.py (preflight checks) and docs/sources/postgres.md.
"""
