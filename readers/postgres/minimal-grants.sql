-- Minimal privileges for a production CDC role (reference; not run by scripts/stack).
-- Replace app_db / app_schema / the table list with yours. Run as a superuser or the tables' owner.

CREATE ROLE cdc_reader WITH LOGIN REPLICATION PASSWORD 'change-me';  -- REPLICATION: slots + walsender

GRANT CONNECT ON DATABASE app_db TO cdc_reader;
GRANT USAGE ON SCHEMA app_schema TO cdc_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA app_schema TO cdc_reader;       -- initial snapshot
ALTER DEFAULT PRIVILEGES IN SCHEMA app_schema GRANT SELECT ON TABLES TO cdc_reader;

-- pgoutput needs a publication. Either create it once as the table owner / a superuser ...
CREATE PUBLICATION cdc_pub FOR TABLE app_schema.orders, app_schema.customers;
-- ... or let the CDC role create it: that needs CREATE on the database and ownership of the tables
-- (FOR ALL TABLES and FOR TABLES IN SCHEMA need a superuser).
-- GRANT CREATE ON DATABASE app_db TO cdc_reader;

-- Emit old values of every column on UPDATE/DELETE (otherwise only the replica identity, usually the
-- primary key, is sent):
-- ALTER TABLE app_schema.orders REPLICA IDENTITY FULL;

-- pg_hba.conf must allow the role both normal and replication connections, e.g.:
--   host  app_db       cdc_reader  10.0.0.0/8  scram-sha-256
--   host  replication  cdc_reader  10.0.0.0/8  scram-sha-256

-- What cdc-logs itself creates (nothing in your tables):
--   * a logical replication slot, default cdc_logs_<pipeline> (REPLICATION is enough);
--   * a publication of the same name, FOR TABLE the captured tables, when it does not exist yet
--     (needs ownership of those tables, or create it yourself as above and set `publication:`);
--   * heartbeat messages, `pg_logical_emit_message(false, 'cdc-logs-heartbeat', ...)`, every 10 s
--     (REPLICATION is enough; they write a few bytes of WAL, no table).
-- `cdc-logs doctor --source pg --dsn URL --table app_schema.orders` checks all of the above.
