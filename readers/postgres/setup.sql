-- Test role and database for the cdc-logs integration suite. Idempotent: safe to run on every start.
-- Run by scripts/stack (as the postgres superuser) and by the docker compose Postgres at init.
--
-- The `cdc` role is SUPERUSER here so tests can create publications FOR ALL TABLES, tables and slots
-- freely. For production see readers/postgres/minimal-grants.sql: LOGIN REPLICATION plus SELECT on the
-- captured tables is enough for streaming.

SELECT 'CREATE ROLE cdc'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'cdc') \gexec
ALTER ROLE cdc WITH LOGIN REPLICATION SUPERUSER PASSWORD 'cdc';

SELECT 'CREATE DATABASE cdc_test OWNER cdc'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'cdc_test') \gexec
