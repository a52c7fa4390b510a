#!/bin/sh
# The entrypoint of lottery-pgaf (Dockerfile.pgaf): pg_auto_failover's
# monitor or one of its PostgreSQL nodes, chosen by the first argument. Runs
# as `postgres`; HOME (/var/lib/postgresql) is the container's volume and
# holds PGDATA and pg_autoctl's own config and state, so a restarted
# container runs the same node again (a killed primary rejoins as secondary).
#
#   pgaf-entrypoint.sh monitor   # the monitor, tuned for a failover in seconds
#   pgaf-entrypoint.sh node      # a node; its first start creates it (the
#                                # first node: database `lottery` owned by the
#                                # login role `lottery`), later starts run it
#   pgaf-entrypoint.sh health    # the healthcheck: monitor: it answers; node:
#                                # the monitor has it as single, wait_primary,
#                                # primary or secondary
#
# Environment: PGAF_HOSTNAME (this container's name on the network, default
# `hostname`), PGAF_MONITOR (the monitor's host, default `monitor`),
# LOTTERY_DB_PASSWORD (the `lottery` role's password, default `lottery`: the
# demo's; the database is reachable only on the compose network).
# Recipe and timings: docs/DOCKER.md (high availability).
set -eu

role=${1:-}
name=${PGAF_HOSTNAME:-$(hostname)}
monitor_uri="postgres://autoctl_node@${PGAF_MONITOR:-monitor}:5432/pg_auto_failover?sslmode=prefer"
ready="$HOME/.lottery-created"  # written once the first start completed

# Settings appended to postgresql.conf through an include of our own file,
# rewritten at every first start. pg_autoctl writes its own (25 % of RAM for
# shared_buffers, 8 GB of kept WAL) in a file included at the top, so ours win.
tune() {
  {
    echo "# Written by pgaf-entrypoint.sh: small and fast for the lottery's demo."
    echo "shared_buffers = '32MB'"
    echo "effective_cache_size = '256MB'"
    echo "wal_keep_size = '256MB'"
    echo "max_connections = 100"
    cat
  } > "$PGDATA/lottery.conf"
  grep -qx "include 'lottery.conf'" "$PGDATA/postgresql.conf" ||
    echo "include 'lottery.conf'" >> "$PGDATA/postgresql.conf"
}

# The database `lottery` belongs to the login role `lottery` (pg_autoctl's
# --username would make that role a superuser, so it is created here). Done
# on the first node only, with postgres started for the purpose and
# unreachable from the network: the other node copies it (pg_basebackup).
create_app_role() {
  sock=$(mktemp -d)
  pg_ctl -D "$PGDATA" -w -l "$sock/log" \
    -o "-c listen_addresses='' -c unix_socket_directories='$sock'" start >/dev/null
  psql -h "$sock" -d lottery -q -v ON_ERROR_STOP=1 -v pw="${LOTTERY_DB_PASSWORD:-lottery}" <<'SQL'
SELECT 'CREATE ROLE lottery LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'lottery')\gexec
ALTER ROLE lottery PASSWORD :'pw';
ALTER DATABASE lottery OWNER TO lottery;
SQL
  pg_ctl -D "$PGDATA" -w -m fast stop >/dev/null
  rm -rf "$sock"
}

create_monitor() {
  pg_autoctl create monitor --pgdata "$PGDATA" --pgport 5432 --hostname "$name" --auth trust --no-ssl
  # Failover within seconds of a primary's crash instead of ~50 s.
  tune < /usr/local/share/lottery/pgaf-monitor.conf
}

create_node() {
  # --auth trust: pg_autoctl's own connections (monitor, replication,
  # pg_rewind) and the `postgres` user from the compose network (--pg-hba-lan:
  # rules for its subnet, not for addresses that change with each container).
  pg_autoctl create postgres --pgdata "$PGDATA" --pgport 5432 --hostname "$name" --name "$name" \
    --auth trust --no-ssl --pg-hba-lan --dbname lottery --monitor "$monitor_uri"
  # A primary that sees neither the monitor nor its standby demotes itself
  # after 2 s (default 20 s), before the monitor promotes the standby.
  pg_autoctl config set --pgdata "$PGDATA" timeout.network_partition_timeout 2 >/dev/null
  tune </dev/null
  # The lottery servers, from anywhere on the compose network, with the password.
  line="host lottery lottery samenet scram-sha-256"
  grep -qx "$line" "$PGDATA/pg_hba.conf" || echo "$line" >> "$PGDATA/pg_hba.conf"
  [ -f "$PGDATA/standby.signal" ] || create_app_role
}

health() {
  if [ -f "$PGDATA/.monitor" ]; then
    exec pg_isready -q -h 127.0.0.1 -p 5432 -d pg_auto_failover
  fi
  state=$(psql -Atq "$monitor_uri" -c \
    "SELECT reportedstate FROM pgautofailover.node WHERE nodehost = '$name' AND reportedstate = goalstate")
  case $state in
    single | wait_primary | primary | secondary) exit 0 ;;
    *) echo "node $name: '$state'"; exit 1 ;;
  esac
}

case $role in
  monitor | node) ;;
  health) health ;;
  *) echo "usage: pgaf-entrypoint.sh monitor|node|health" >&2; exit 2 ;;
esac

# A container starts with nothing of its own running: a postmaster.pid left
# by a killed one is stale, and its PID may belong to another process here,
# which postgres would take for a live postmaster. pg_autoctl's pid files go
# to a fresh runtime directory for the same reason.
rm -f "$PGDATA/postmaster.pid"
export XDG_RUNTIME_DIR=/tmp/pg_autoctl-run
rm -rf "$XDG_RUNTIME_DIR"
mkdir -m 0700 "$XDG_RUNTIME_DIR"

if [ ! -f "$ready" ]; then
  # An interrupted first start is taken up again by pg_autoctl create.
  "create_$role"
  [ "$role" = monitor ] && touch "$PGDATA/.monitor"
  touch "$ready"
fi
exec pg_autoctl run --pgdata "$PGDATA"
