-- CDC user and test database for MySQL 8.4 (docker/compose.yaml runs it at the first start).
-- Streaming needs REPLICATION SLAVE, REPLICATION CLIENT and SELECT; a Debezium snapshot also wants
-- RELOAD, SHOW DATABASES and LOCK TABLES. ALL on `test` lets the integration tests create tables.
-- MySQL 8.4 authenticates with caching_sha2_password: PyMySQL needs the `cryptography` package (or TLS).

CREATE DATABASE IF NOT EXISTS test CHARACTER SET utf8mb4;
CREATE USER IF NOT EXISTS 'cdc'@'%' IDENTIFIED BY 'cdc';
GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT, RELOAD, SHOW DATABASES, LOCK TABLES ON *.* TO 'cdc'@'%';
GRANT ALL PRIVILEGES ON test.* TO 'cdc'@'%';
FLUSH PRIVILEGES;
