#!/bin/sh
# docker/compose.yaml only: runs once, at the first start of the postgres container (from
# /docker-entrypoint-initdb.d, before setup.sql). Loads the CDC settings mounted at
# /etc/postgresql/cdc.conf and lets password-authenticated replication connections in from anywhere
# (the official image's pg_hba only allows them from inside the container).
set -eu
printf "\ninclude '/etc/postgresql/cdc.conf'\n" >>"$PGDATA/postgresql.conf"
printf "host replication all all scram-sha-256\n" >>"$PGDATA/pg_hba.conf"
