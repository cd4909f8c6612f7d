#!/usr/bin/env bash
# A throwaway PostgreSQL server for the test suite (Debian/Ubuntu, no systemd needed).
#
#   eval "$(tests/services/postgres.sh start)"   # starts it, exports CORRGD_TEST_PG_URL
#   tests/services/postgres.sh url               # prints the URL of the running server
#   tests/services/postgres.sh stop              # stops it (data kept; `purge` deletes it)
#
# Installs PostgreSQL with apt if it is missing (needs root). The cluster lives in
# $CORRGD_PG_DIR (default /tmp/corrgd-pg), listens on 127.0.0.1:$CORRGD_PG_PORT
# (default 54329) and runs as the `postgres` user when started by root. Durability is
# switched off (fsync, synchronous_commit): it is for tests only.
# stdout carries only the `export ...` line; progress goes to stderr.
set -euo pipefail

PG_DIR=${CORRGD_PG_DIR:-/tmp/corrgd-pg}
PG_PORT=${CORRGD_PG_PORT:-54329}
PG_USER=${CORRGD_PG_USER:-corrgd}
PG_PASSWORD=${CORRGD_PG_PASSWORD:-corrgd}
PG_DB=${CORRGD_PG_DB:-corrgd_test}
DATA="$PG_DIR/data"
SOCKETS="$PG_DIR/run"
URL="postgresql+psycopg://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB"

say() { echo "postgres.sh: $*" >&2; }

pg_bindir() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -z "$dir" || ! -x "$dir/initdb" ]]; then
        if [[ $(id -u) -ne 0 ]]; then
            say "PostgreSQL is not installed and I am not root: apt-get install -y postgresql"
            exit 1
        fi
        say "installing PostgreSQL with apt ..."
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        apt-get install -y -qq postgresql >&2
        dir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    fi
    echo "$dir"
}

# Run a command as the cluster's owner (initdb and postgres refuse to run as root).
as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

is_running() { [[ -f "$DATA/postmaster.pid" ]] && as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }

psql_admin() { as_owner "$BIN/psql" -h "$SOCKETS" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qtA "$@"; }

start() {
    BIN=$(pg_bindir)
    mkdir -p "$PG_DIR"
    if [[ $(id -u) -eq 0 ]]; then chown postgres:postgres "$PG_DIR"; fi
    if [[ ! -f "$DATA/PG_VERSION" ]]; then
        say "initdb $DATA"
        as_owner "$BIN/initdb" -D "$DATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
            -E UTF8 --locale=C.UTF-8 >/dev/null
    fi
    as_owner mkdir -p "$SOCKETS"
    if is_running; then
        say "already running on port $PG_PORT"
    else
        say "starting on 127.0.0.1:$PG_PORT (log: $PG_DIR/postgres.log)"
        as_owner "$BIN/pg_ctl" -D "$DATA" -l "$PG_DIR/postgres.log" -w -t 60 start -o \
            "-p $PG_PORT -k $SOCKETS -c listen_addresses=127.0.0.1 -c max_connections=200 \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off" >/dev/null
    fi
    if [[ -z $(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER'") ]]; then
        psql_admin -c "CREATE ROLE $PG_USER LOGIN CREATEDB PASSWORD '$PG_PASSWORD'"
    fi
    if [[ -z $(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'") ]]; then
        psql_admin -c "CREATE DATABASE $PG_DB OWNER $PG_USER"
    fi
    say "ready: $URL"
    echo "export CORRGD_TEST_PG_URL=$URL"
}

stop() {
    BIN=$(pg_bindir)
    if is_running; then
        as_owner "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
        say "stopped"
    else
        say "not running"
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    purge) stop; rm -rf "$PG_DIR"; say "removed $PG_DIR" ;;
    url) echo "$URL" ;;
    *) echo "usage: $0 start|stop|purge|url" >&2; exit 2 ;;
esac
