#!/bin/bash
# docker/compose.yaml only: runs once, when gvenzl/oracle-free creates its database
# (/container-entrypoint-initdb.d). Prepares Oracle Free for LogMiner-based change data capture:
#   1. ARCHIVELOG mode (LogMiner reads archived redo; needs a restart into MOUNT state),
#   2. minimal + primary-key supplemental logging (redo carries the key columns of every change),
#   3. a common user c##dbzuser/dbz with the privileges a LogMiner reader needs (the Debezium
#      Oracle connector's documented set), and its own tablespace.
# No Oracle server can run on the project's machines; tests use ORACLE_DSN when it is set.
set -euo pipefail

recovery=/opt/oracle/oradata/recovery_area
mkdir -p "$recovery"

sqlplus -s / as sysdba <<SQL
WHENEVER SQLERROR EXIT SQL.SQLCODE
ALTER SYSTEM SET db_recovery_file_dest_size = 10G;
ALTER SYSTEM SET db_recovery_file_dest = '$recovery' SCOPE = SPFILE;
SHUTDOWN IMMEDIATE
STARTUP MOUNT
ALTER DATABASE ARCHIVELOG;
ALTER DATABASE OPEN;
ALTER PLUGGABLE DATABASE ALL OPEN;
ALTER PLUGGABLE DATABASE ALL SAVE STATE;

ALTER DATABASE ADD SUPPLEMENTAL LOG DATA;
ALTER DATABASE ADD SUPPLEMENTAL LOG DATA (PRIMARY KEY) COLUMNS;

CREATE TABLESPACE logminer_tbs DATAFILE '/opt/oracle/oradata/FREE/logminer_tbs.dbf'
  SIZE 25M REUSE AUTOEXTEND ON MAXSIZE UNLIMITED;
ALTER SESSION SET CONTAINER = FREEPDB1;
CREATE TABLESPACE logminer_tbs DATAFILE '/opt/oracle/oradata/FREE/FREEPDB1/logminer_tbs.dbf'
  SIZE 25M REUSE AUTOEXTEND ON MAXSIZE UNLIMITED;
ALTER SESSION SET CONTAINER = CDB\$ROOT;

CREATE USER c##dbzuser IDENTIFIED BY dbz
  DEFAULT TABLESPACE logminer_tbs QUOTA UNLIMITED ON logminer_tbs CONTAINER = ALL;

GRANT CREATE SESSION, SET CONTAINER, LOGMINING, SELECT ANY TRANSACTION, SELECT ANY TABLE,
      FLASHBACK ANY TABLE, SELECT_CATALOG_ROLE, EXECUTE_CATALOG_ROLE, LOCK ANY TABLE,
      CREATE TABLE, CREATE SEQUENCE
  TO c##dbzuser CONTAINER = ALL;
GRANT EXECUTE ON DBMS_LOGMNR TO c##dbzuser CONTAINER = ALL;
GRANT EXECUTE ON DBMS_LOGMNR_D TO c##dbzuser CONTAINER = ALL;
GRANT SELECT ON V_\$DATABASE TO c##dbzuser CONTAINER = ALL;
GRANT SELECT ON V_\$LOG TO c##dbzuser CONTAINER = ALL;
GRANT SELECT ON V_\$LOG_HISTORY TO c##dbzuser CONTAINER = ALL;
GRANT SELECT ON V_\$LOGFILE TO c##dbzuser CONTAINER = ALL;
GRANT SELECT ON V_\$ARCHIVED_LOG TO c##dbzuser CONTAINER = ALL;
GRANT SELECT ON V_\$ARCHIVE_DEST_STATUS TO c##dbzuser CONTAINER = ALL;
GRANT SELECT ON V_\$LOGMNR_LOGS TO c##dbzuser CONTAINER = ALL;
GRANT SELECT ON V_\$LOGMNR_CONTENTS TO c##dbzuser CONTAINER = ALL;
GRANT SELECT ON V_\$LOGMNR_PARAMETERS TO c##dbzuser CONTAINER = ALL;
GRANT SELECT ON V_\$TRANSACTION TO c##dbzuser CONTAINER = ALL;
GRANT SELECT ON V_\$MYSTAT TO c##dbzuser CONTAINER = ALL;
GRANT SELECT ON V_\$STATNAME TO c##dbzuser CONTAINER = ALL;
EXIT
SQL
echo "LogMiner setup done: ARCHIVELOG on, supplemental logging on, user c##dbzuser created"
