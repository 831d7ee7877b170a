-- CDC user and test database for MariaDB. Idempotent. Run by scripts/stack (as root over the local
-- socket) and by the docker compose MariaDB at init.
--
-- A client connecting over TCP from 127.0.0.1 is matched as 'cdc'@'localhost' when the server resolves
-- names (the default) and as 'cdc'@'127.0.0.1' when it runs with skip-name-resolve: create both.
--
-- Streaming needs only REPLICATION SLAVE (read the binlog), REPLICATION CLIENT (= BINLOG MONITOR in
-- 10.5+: SHOW MASTER STATUS / BINARY LOGS) and SELECT (snapshot, column metadata). The snapshot of a
-- Debezium connector also wants RELOAD, SHOW DATABASES and LOCK TABLES. ALL on `test` lets the
-- integration tests create and drop their tables.

CREATE DATABASE IF NOT EXISTS test CHARACTER SET utf8mb4;

CREATE USER IF NOT EXISTS 'cdc'@'localhost' IDENTIFIED BY 'cdc';
CREATE USER IF NOT EXISTS 'cdc'@'127.0.0.1' IDENTIFIED BY 'cdc';
CREATE USER IF NOT EXISTS 'cdc'@'%' IDENTIFIED BY 'cdc';

GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT, RELOAD, SHOW DATABASES, LOCK TABLES
  ON *.* TO 'cdc'@'localhost', 'cdc'@'127.0.0.1', 'cdc'@'%';
GRANT ALL PRIVILEGES ON test.* TO 'cdc'@'localhost', 'cdc'@'127.0.0.1', 'cdc'@'%';

FLUSH PRIVILEGES;

-- A user that can read `test` but not the binlog (no REPLICATION SLAVE / CLIENT): with it,
-- `capture: auto` falls back to polling (tests/integration/test_capture_auto.py). Test stack only.
CREATE USER IF NOT EXISTS 'cdc_poll'@'localhost' IDENTIFIED BY 'cdc_poll';
CREATE USER IF NOT EXISTS 'cdc_poll'@'127.0.0.1' IDENTIFIED BY 'cdc_poll';
CREATE USER IF NOT EXISTS 'cdc_poll'@'%' IDENTIFIED BY 'cdc_poll';
GRANT SELECT ON test.* TO 'cdc_poll'@'localhost', 'cdc_poll'@'127.0.0.1', 'cdc_poll'@'%';

FLUSH PRIVILEGES;
