#!/usr/bin/env bash
# Throughput benchmark: the whole lottery (server + every agency) on loopback,
# release build, durable (STORAGE_SYNC=always) and not (STORAGE_SYNC=none),
# against the floor (the same bytes through one loopback TCP connection into
# a file, then fsync). Results and how to read them: docs/PERFORMANCE.md.
#
#   scripts/bench.sh              # the usual points: 1x 10x 10m
#   scripts/bench.sh 1x 10x       # some points
#   scripts/bench.sh 10mw         # 10M, every bet a winner (memory; see below)
#   RUNS=5 scripts/bench.sh 1x    # runs per point (default 3)
#
#   MODES="always postgres" scripts/bench.sh 1x 10x   # with the PostgreSQL backend
#
# Points (data generated once with examples/gen-data, cached in
# .data/bench/<point>/):
#   1x   5 agencies, the course's shape (26,936 / 25,518 / 16,014 / 9,238 / 991 = 78,697 bets)
#   10x  5 agencies, ten times that (786,970 bets)
#   10m  100 agencies, 10,000,000 bets split evenly
#   10mw 10M, all winners: 10m's files with every number set to the winning one
#        (7574). After the lottery the server is restarted on the same storage
#        and every agency asks for its winners again: `restart` figures are that
#        second server's peak RSS and the time until every agency has all of its
#        winners (the agencies' processes included).
#
# Environment:
#   RUNS=3             runs per point and mode (min / median / max are reported)
#   MODES="always none" storage modes to run: STORAGE_SYNC=always, =none, and
#                      `postgres`: the server on the PostgreSQL backend (built with
#                      --features postgres) against a throwaway cluster this script
#                      starts (Debian's postgresql; durable: fsync=on,
#                      synchronous_commit=on; a fresh database per run), next to
#                      `psql \copy` of the same files into an indexed table
#                      (the same primary key and partial index), timed per run;
#                      PostgreSQL's own CPU shows as "other CPU" (not ours);
#                      `postgres3`: the same with three servers on the database,
#                      agency i first on server i mod 3 with the other two as
#                      failover (RSS and CPU are the first server's)
#   BENCH_DATA=.data/bench   where the generated agency files are cached
#   BENCH_TMP=$TMPDIR  where each run's fresh storage directory is created
#                      (the floor writes there too: keep them on one filesystem)
#   BENCH_KEEP=1       keep every run's directory (logs, bets.csv) and print it
#   BENCH_OUT=FILE     also write the key=value lines to FILE
#   BENCH_NO_BUILD=1   use the binaries already built (release)
#   GNU_TIME=path      GNU time (default /usr/bin/time, installed with apt-get when
#                      missing and possible; without it client RSS/CPU are n/a)
#   STRICT=1           exit 1 when a target of the issue is missed
#   CARGO_TARGET_DIR   honoured: the binaries are where cargo builds them
#                      (`cargo metadata`: CARGO_TARGET_DIR, build.target-dir or target/)
#   SERVER_WORKERS, SERVER_LISTEN_BACKLOG (default 1024 here), CLI_BATCH_MAXAMOUNT,
#   CLI_BATCH_WINDOW, CLI_WINNERS_MAXBACKOFF, ...: passed through to the binaries.
#
# Agencies authenticate as users run them: a fresh secret per invocation
# (SERVER_SECRET), each agency's key from `server agency-key N`, computed
# before any clock starts.
#
# Per run: fresh storage directory, `sync`, start the server
# (LOGGING_LEVEL=INFO, as users run it) and wait for its listen line, fork
# every agency's process and hold it at a FIFO gate, open the gates at once,
# time from the first gate opening to the last client exit (so bash's fork
# time is not counted; `client launch s` shows how long opening the gates
# took), SIGTERM the server. Each process runs under GNU time for its peak RSS
# and CPU time. A run fails loudly unless every client exits 0 with its
# summary, the server exits 0 after the draw, and bets.csv holds exactly the
# input rows.
#
# Output: a table per point and machine-readable lines such as
# `bench.1x.always.wall_median_s=0.083`.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
MODES=${MODES:-always none}
data_root=${BENCH_DATA:-.data/bench}
# The data's absolute path for psql's \copy (an absolute BENCH_DATA must not get $PWD in front).
case $data_root in /*) data_abs=$data_root ;; *) data_abs=$PWD/$data_root ;; esac
tmp_root=${BENCH_TMP:-${TMPDIR:-/tmp}}
# Where cargo builds; without cargo (BENCH_NO_BUILD=1), CARGO_TARGET_DIR or target/.
target_dir=$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p') || true
bin=${target_dir:-${CARGO_TARGET_DIR:-target}}/release
backlog=${SERVER_LISTEN_BACKLOG:-1024}

die() {
  echo "bench: $*" >&2
  exit 1
}

case "$RUNS" in '' | *[!0-9]* | 0) die "RUNS must be a positive whole number" ;; esac
for m in $MODES; do
  case "$m" in always | none | postgres | postgres3) ;; *) die "MODES: unknown storage mode '$m'" ;; esac
done
with_pg=0
case " $MODES " in *" postgres "* | *" postgres3 "*) with_pg=1 ;; esac

points=("$@")
[ ${#points[@]} -gt 0 ] || points=(1x 10x 10m)
for p in "${points[@]}"; do
  case "$p" in 1x | 10x | 10m | 10mw) ;; *) die "unknown point '$p' (1x, 10x, 10m or 10mw)" ;; esac
done

# ---- tools --------------------------------------------------------------------

# High-resolution clock without a fork (bash 5); date(1) otherwise.
if [ -n "${EPOCHREALTIME:-}" ]; then
  now() { echo "$EPOCHREALTIME"; }
else
  now() { date +%s.%N; }
fi

# GNU time gives peak RSS and CPU of each process. Without it (and no way
# to install it) the server's figures come from /proc and the clients' are
# reported as n/a.
gnu_time=${GNU_TIME:-/usr/bin/time}
if [ ! -x "$gnu_time" ] && [ -z "${GNU_TIME:-}" ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "== installing GNU time (apt-get install time)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time; } >/dev/null 2>&1 || true
  fi
fi
if [ -x "$gnu_time" ] && "$gnu_time" -f '%M' -o /dev/null true 2>/dev/null; then
  have_time=1
else
  have_time=0
  echo "bench: WARNING: GNU time ($gnu_time) is missing: server RSS/CPU come from /proc," \
    "client RSS/CPU are not measured (n/a). Install it with: apt-get install time" >&2
fi

# ---- build and data -----------------------------------------------------------

if [ -z "${BENCH_NO_BUILD:-}" ]; then
  echo "== building (release): server, client, examples gen-data and floor"
  features=()
  [ "$with_pg" = 1 ] && features=(--features postgres)
  cargo build --release --quiet "${features[@]}" --bins --example gen-data --example floor
  source_rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
  if [ -n "$(git --no-optional-locks status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ]; then
    source_rev="$source_rev+uncommitted"
  fi
else
  source_rev="prebuilt ($bin)"
fi
for b in server client examples/gen-data examples/floor; do
  [ -x "$bin/$b" ] || die "$bin/$b is missing after the build"
done

agencies_of() { case "$1" in 10m | 10mw) echo 100 ;; *) echo 5 ;; esac; }
gen_args_of() {
  case "$1" in
    1x) echo "--scale 1" ;;
    10x) echo "--scale 10" ;;
    10m | 10mw) echo "--total 10000000" ;;
  esac
}
# Points whose lottery is followed by a restart and a second round of winners.
restarts() { [ "$1" = 10mw ]; }

# Generates the point's files once; SPEC records what was generated (and is
# written last, so an interrupted generation is redone).
# The generator's output for 100 rows stands for its version: data made by
# an older generator is made again.
generator_version() {
  local sample version
  sample=$(mktemp -d)
  "$bin/examples/gen-data" --out "$sample" --agencies 1 --total 100 --seed 1 >/dev/null
  version=$(cksum <"$sample/agency-1.csv" | cut -d' ' -f1)
  rm -rf "$sample"
  echo "$version"
}

prepare_data() {
  local point=$1 dir=$data_root/$1 n spec
  n=$(agencies_of "$point")
  spec="agencies=$n args=$(gen_args_of "$point") seed=1 generator=$generator"
  [ "$point" = 10mw ] && spec="$spec numbers=7574"
  if [ -f "$dir/SPEC" ] && [ "$(head -n 1 "$dir/SPEC")" = "$spec" ]; then
    return
  fi
  echo "== generating $point data in $dir ($spec)"
  rm -rf "$dir"
  mkdir -p "$dir"
  if [ "$point" = 10mw ]; then
    # 10m's rows with the last field (the number) set to the winning one.
    prepare_data 10m
    local f
    for f in "$data_root"/10m/agency-*.csv; do
      sed 's/,[0-9]*\r$/,7574\r/' "$f" >"$dir/$(basename "$f")"
    done
    ! grep -qv $',7574\r$' "$dir"/agency-*.csv || die "10mw: a row without the winning number"
  else
    # shellcheck disable=SC2046 # the generator's arguments, split on purpose
    "$bin/examples/gen-data" --out "$dir" --agencies "$n" $(gen_args_of "$point") --seed 1 >/dev/null
  fi
  local rows bytes
  read -r rows bytes < <(cat "$dir"/agency-*.csv | wc -lc)
  printf '%s\nrows=%s\nbytes=%s\n' "$spec" "$rows" "$bytes" >"$dir/SPEC"
}

spec_value() { sed -n "s/^$2=//p" "$data_root/$1/SPEC"; }

# ---- statistics ---------------------------------------------------------------

# "min median max" of the numbers given (n/a if any is n/a).
stats() {
  case " $* " in *" n/a "*)
    echo "n/a n/a n/a"
    return
    ;;
  esac
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
    END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; print v[1], m, v[NR] }'
}

# stats of the runs recorded under KEY.
stats_of() {
  local -a v
  read -ra v <<<"${R[$1]}"
  stats "${v[@]}"
}

fmt() { # fmt PRINTF_FORMAT VALUE (n/a passes through)
  if [ "$2" = n/a ]; then echo n/a; else awk -v f="$1" -v v="$2" 'BEGIN { printf f, v }'; fi
}

calc() { awk "BEGIN { printf \"%.6f\", $* }"; }

declare -A R # R[point.mode.metric] = "value value ..." (one per run)
add() { R[$1]="${R[$1]:-}${R[$1]:+ }$2"; }

# ---- PostgreSQL (MODES with postgres) -------------------------------------------

pg_dir=
pg_bin=
pg_as=()
pg_url=
# Starts a durable throwaway cluster (as the `postgres` user when root:
# PostgreSQL refuses to run as root).
pg_start() {
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -x "$pg_bin/initdb" ] || die "MODES=postgres needs PostgreSQL's initdb/pg_ctl (apt-get install postgresql)"
  pg_dir=$(mktemp -d "$tmp_root/lottery-bench-pg.XXXXXX")
  if [ "$(id -u)" = 0 ]; then
    chown postgres "$pg_dir"
    pg_as=(runuser -u postgres --)
  fi
  local port
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "${pg_as[@]}" "$pg_bin/initdb" -D "$pg_dir/data" -U lottery -A trust -E UTF8 --locale=C >/dev/null ||
    die "initdb failed"
  "${pg_as[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/log" -w -t 60 \
    -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$pg_dir -c fsync=on -c synchronous_commit=on" \
    start >/dev/null || die "pg_ctl start failed (log: $pg_dir/log)"
  pg_url="postgresql://lottery@127.0.0.1:$port"
  echo "== PostgreSQL: $("$pg_bin/postgres" --version), durable (fsync=on, synchronous_commit=on), $pg_url"
}
pg_stop() {
  [ -n "$pg_dir" ] || return 0
  "${pg_as[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$pg_dir"
  pg_dir=
}
psql_do() { # psql_do DATABASE SQL...
  local db=$1
  shift
  PGOPTIONS='-c client_min_messages=warning' "$pg_bin/psql" "$pg_url/$db" -v ON_ERROR_STOP=1 -qAt "$@"
}
# A fresh, empty database named $1.
pg_fresh_db() {
  psql_do postgres -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1" >/dev/null
}

# pgcopy_once POINT RUN: `psql \copy` of the point's files into a table with
# the backend's primary key and partial index, in one psql session, timed.
pgcopy_once() {
  local point=$1 run=$2 n i t0 t1 script stored
  n=$(agencies_of "$point")
  pg_fresh_db lottery_copy
  psql_do lottery_copy -c "CREATE TABLE bets (agency BIGINT NOT NULL, position BIGSERIAL,
      first_name TEXT NOT NULL, last_name TEXT NOT NULL, document TEXT NOT NULL, birthdate DATE NOT NULL,
      number INT NOT NULL, PRIMARY KEY (agency, position))" \
    -c "CREATE INDEX bets_winners ON bets (agency, position) WHERE number = 7574" >/dev/null
  script=$(for i in $(seq 1 "$n"); do
    printf 'ALTER TABLE bets ALTER COLUMN agency SET DEFAULT %d;\n' "$i"
    printf '%s\n' "\\copy bets (first_name, last_name, document, birthdate, number) from '$data_abs/$point/agency-$i.csv' csv"
  done)
  sync
  t0=$(now)
  psql_do lottery_copy <<<"$script" >/dev/null || die "psql \\copy failed"
  t1=$(now)
  stored=$(psql_do lottery_copy -c "SELECT count(*) FROM bets")
  [ "$stored" = "$(spec_value "$point" rows)" ] || die "psql \\copy stored $stored rows"
  add "$point.pgcopy.wall" "$(calc "$t1 - $t0")"
  printf '   run %d psql   \\copy %s s\n' "$run" "$(fmt %.3f "$(calc "$t1 - $t0")")"
}

# ---- one run ------------------------------------------------------------------

server_pid= # the server process itself (child of GNU time when it is used)
launcher_pid=
extra_pids=() # the other servers of MODES=postgres3
client_pids=()
run_dir=
cleanup() {
  local p
  for p in "${client_pids[@]}" "${extra_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -n "$server_pid" ]; then kill -TERM "$server_pid" 2>/dev/null || true; fi
  if [ -n "$launcher_pid" ]; then wait "$launcher_pid" 2>/dev/null || true; fi
  if [ -n "$run_dir" ] && [ -z "${BENCH_KEEP:-}" ]; then rm -rf "$run_dir"; fi
  pg_stop
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail_run() {
  echo "bench: RUN FAILED: $*" >&2
  echo "bench: logs kept in $run_dir" >&2
  [ -f "$run_dir/server.log" ] && { echo "--- server.log (tail)" >&2; tail -n 15 "$run_dir/server.log" >&2; }
  local f
  for f in "$run_dir"/client-*.log; do
    [ -f "$f" ] || continue
    grep -q 'action: resumen | result: success' "$f" && continue
    echo "--- $(basename "$f") (tail)" >&2
    tail -n 3 "$f" >&2
    break
  done
  run_dir= # keep it
  exit 1
}

# CPU seconds the whole machine spent busy so far (all cores, /proc/stat).
busy_s() {
  awk -v hz="$clk_tck" '$1 == "cpu" { printf "%.2f", ($2 + $3 + $4 + $7 + $8) / hz; exit }' /proc/stat
}
clk_tck=$(getconf CLK_TCK)

# Last line of a GNU time output file: "maxrss_kib user_s sys_s".
time_line() { tail -n 1 "$1"; }

# A secret for this invocation, and the agencies' keys (AGENCY_KEYS[i]).
bench_secret=$(od -An -N32 -v -tx1 /dev/urandom | tr -d ' \n')
declare -a AGENCY_KEYS=()
agency_keys() { # agency_keys N: AGENCY_KEYS[1..N]
  local i
  for ((i = ${#AGENCY_KEYS[@]} + 1; i <= $1; i++)); do
    AGENCY_KEYS[i]=$(SERVER_CONFIG=config/server/config.ini SERVER_SECRET=$bench_secret \
      "$bin/server" agency-key "$i") || die "server agency-key $i failed"
  done
}

# run_once POINT MODE RUN
run_once() {
  local point=$1 mode=$2 run=$3 n rows dir i address="" started launched ended rc
  n=$(agencies_of "$point")
  rows=$(spec_value "$point" rows)
  dir=$data_root/$point
  agency_keys "$n"
  run_dir=$(mktemp -d "$tmp_root/lottery-bench.XXXXXX")
  sync

  local busy0 busy1
  busy0=$(busy_s)
  local timer=()
  [ "$have_time" = 1 ] && timer=("$gnu_time" -f '%M %U %S' -o "$run_dir/server.time")
  local storage=(STORAGE_FILEPATH="$run_dir/bets.csv" STORAGE_SYNC="$mode")
  if [[ $mode == postgres* ]]; then
    pg_fresh_db lottery_bench
    storage=(STORAGE_BACKEND=postgres STORAGE_URL="$pg_url/lottery_bench")
  fi
  # Every server of the run (postgres3 starts two more) gets this environment.
  local server_env=(SERVER_CONFIG=config/server/config.ini SERVER_IP=127.0.0.1 SERVER_PORT=0 SERVER_AGENCIES="$n"
    SERVER_SECRET="$bench_secret" SERVER_LISTEN_BACKLOG="$backlog" "${storage[@]}" LOGGING_LEVEL=INFO)
  env "${server_env[@]}" "${timer[@]}" "$bin/server" >"$run_dir/server.log" 2>&1 &
  launcher_pid=$!
  if [ "$have_time" = 1 ]; then
    server_pid=
    for _ in $(seq 1 1000); do
      server_pid=$(cat "/proc/$launcher_pid/task/$launcher_pid/children" 2>/dev/null ||
        pgrep -P "$launcher_pid" 2>/dev/null || true)
      server_pid=${server_pid%% *}
      [ -n "$server_pid" ] && break
      kill -0 "$launcher_pid" 2>/dev/null || break
      sleep 0.005
    done
  else
    server_pid=$launcher_pid
  fi
  [ -n "$server_pid" ] || fail_run "server did not start"
  # Ready once it listens and has opened (recovered) its storage.
  for _ in $(seq 1 2000); do
    address=$(sed -n 's/.*action: listen | result: success | address: //p' "$run_dir/server.log")
    [ -n "$address" ] && grep -Eq 'action: (recovery|storage_open) \| result: success' "$run_dir/server.log" && break
    address=
    kill -0 "$server_pid" 2>/dev/null || fail_run "server exited at start"
    sleep 0.005
  done
  [ -n "$address" ] || fail_run "server did not report its address within 10 s"

  # postgres3: two more servers on the same database (started once the
  # first has created the schema); agency i starts on server i mod 3.
  local servers=("$address") k extra
  extra_pids=()
  if [ "$mode" = postgres3 ]; then
    for k in 2 3; do
      env "${server_env[@]}" "$bin/server" >"$run_dir/server-$k.log" 2>&1 &
      extra_pids+=($!)
      extra=
      for _ in $(seq 1 2000); do
        extra=$(sed -n 's/.*action: listen | result: success | address: //p' "$run_dir/server-$k.log")
        [ -n "$extra" ] && break
        sleep 0.005
      done
      [ -n "$extra" ] || fail_run "server $k did not report its address within 10 s"
      servers+=("$extra")
    done
  fi
  failover_list() { # failover_list AGENCY: every server, starting at AGENCY mod count
    local c=${#servers[@]} j out=
    for ((j = 0; j < c; j++)); do out+="${out:+,}${servers[$((($1 + j) % c))]}"; done
    echo "$out"
  }

  export CLI_CONFIG=config/client/config.yaml
  # Every agency's process is forked first and waits at its own gate (a
  # FIFO); the clock starts when the gates open, so the time bash needs to
  # fork 100 processes is not counted, only each agency's exec and run.
  local timed=()
  [ "$have_time" = 1 ] && timed=("$gnu_time" -f '%M %U %S' -o)
  client_pids=()
  for i in $(seq 1 "$n"); do
    mkfifo "$run_dir/gate-$i"
    (
      read -r _ <"$run_dir/gate-$i"
      CLI_SERVER_ADDRESS=$(failover_list "$i")
      export CLI_SERVER_ADDRESS
      if [ "$have_time" = 1 ]; then
        CLI_ID=$i CLI_KEY=${AGENCY_KEYS[i]} CLI_BETS_FILE="$dir/agency-$i.csv" exec "${timed[@]}" "$run_dir/client-$i.time" "$bin/client"
      else
        CLI_ID=$i CLI_KEY=${AGENCY_KEYS[i]} CLI_BETS_FILE="$dir/agency-$i.csv" exec "$bin/client"
      fi
    ) </dev/null >"$run_dir/client-$i.log" 2>&1 &
    client_pids+=($!)
  done
  started=$(now)
  for ((i = 1; i <= n; i++)); do echo go >"$run_dir/gate-$i"; done
  launched=$(now)
  local failed=()
  for i in $(seq 1 "$n"); do
    rc=0
    wait "${client_pids[$((i - 1))]}" || rc=$?
    [ "$rc" = 0 ] || failed+=("agency $i exited $rc")
  done
  ended=$(now)
  client_pids=()

  # Server figures from /proc when GNU time is not there (before it exits).
  local proc_rss=n/a proc_cpu=n/a
  if [ "$have_time" = 0 ]; then
    proc_rss=$(awk '/^VmHWM:/ { print $2 }' "/proc/$server_pid/status" 2>/dev/null || echo n/a)
    proc_cpu=$(awk -v hz="$clk_tck" '{ print ($14 + $15) / hz }' "/proc/$server_pid/stat" 2>/dev/null || echo n/a)
  fi
  local early=0
  kill -TERM "$server_pid" 2>/dev/null || early=1
  rc=0
  wait "$launcher_pid" || rc=$?
  for k in "${extra_pids[@]}"; do
    kill -TERM "$k" 2>/dev/null || early=1
    wait "$k" || rc=$?
  done
  extra_pids=()
  busy1=$(busy_s)
  server_pid=
  launcher_pid=
  [ "$early" = 0 ] || fail_run "the server had exited before SIGTERM (exit status $rc)${failed[*]:+; }${failed[*]}"

  # ---- checks
  for i in $(seq 1 "$n"); do
    grep -q 'action: resumen | result: success' "$run_dir/client-$i.log" ||
      failed+=("agency $i: no summary line ($(tail -n 1 "$run_dir/client-$i.log"))")
  done
  [ ${#failed[@]} = 0 ] || fail_run "${failed[*]}"
  [ "$rc" = 0 ] || fail_run "server exited $rc"
  local draws
  draws=$(cat "$run_dir"/server*.log | grep -c 'action: sorteo | result: success' || true)
  [ "$draws" = 1 ] || fail_run "$draws draws in the server logs, expected 1"
  local stored sent bytes winners drawn
  if [[ $mode == postgres* ]]; then
    stored=$(psql_do lottery_bench -c "SELECT count(*) FROM bets")
  else
    stored=$(wc -l <"$run_dir/bets.csv")
  fi
  [ "$stored" = "$rows" ] || fail_run "storage holds $stored rows, the agencies' files $rows"
  sent=$(cat "$run_dir"/client-*.log | sed -n 's/.*action: resumen | result: success | apuestas_enviadas: \([0-9]*\).*/\1/p' | awk '{ s += $1 } END { print s + 0 }')
  [ "$sent" = "$rows" ] || fail_run "agencies report $sent bets sent, their files hold $rows"
  bytes=$(cat "$run_dir"/client-*.log | sed -n 's/.*| bytes_enviados: \([0-9]*\).*/\1/p' | awk '{ s += $1 } END { print s + 0 }')
  winners=$(cat "$run_dir"/client-*.log | sed -n 's/.*action: consulta_ganadores | result: success | cant_ganadores: \([0-9]*\).*/\1/p' | awk '{ s += $1 } END { print s + 0 }')
  drawn=$(cat "$run_dir"/server*.log | sed -n 's/.*action: sorteo | result: success | ganadores: \([0-9]*\).*/\1/p')
  [ "$winners" = "$drawn" ] || fail_run "agencies report $winners winners, the draw $drawn"

  # ---- figures
  local key=$point.$mode wall srss scpu crss=n/a ccpu=n/a other=n/a
  wall=$(calc "$ended - $started")
  if [ "$have_time" = 1 ]; then
    read -r srss u s <<<"$(time_line "$run_dir/server.time")"
    srss=$(calc "$srss / 1024")
    scpu=$(calc "$u + $s")
    crss=$(for i in $(seq 1 "$n"); do time_line "$run_dir/client-$i.time"; done | awk '$1 > m { m = $1 } END { printf "%.6f", m / 1024 }')
    ccpu=$(for i in $(seq 1 "$n"); do time_line "$run_dir/client-$i.time"; done | awk '{ s += $2 + $3 } END { printf "%.6f", s }')
    # Busy CPU of the whole machine during the run that was not ours
    # (other processes, this script, GNU time, interrupts): a noisy run shows here.
    other=$(calc "$busy1 - $busy0 - $scpu - $ccpu")
  else
    srss=n/a
    [ "$proc_rss" = n/a ] || srss=$(calc "$proc_rss / 1024")
    scpu=$proc_cpu
  fi
  add "$key.wall" "$wall"
  add "$key.rate" "$(calc "$rows / $wall")"
  add "$key.srss" "$srss"
  add "$key.scpu" "$scpu"
  add "$key.crss" "$crss"
  add "$key.ccpu" "$ccpu"
  add "$key.wire" "$(calc "$bytes / $rows")"
  add "$key.launch" "$(calc "$launched - $started")"
  add "$key.other" "$other"
  printf '   run %d %-6s wall %s s  %s bets/s  server %s MiB %s s CPU  clients max %s MiB, %s s CPU  other CPU %s s\n' \
    "$run" "$mode" "$(fmt %.3f "$wall")" "$(fmt %.0f "$(calc "$rows / $wall")")" "$(fmt %.1f "$srss")" \
    "$(fmt %.2f "$scpu")" "$(fmt %.1f "$crss")" "$(fmt %.2f "$ccpu")" "$(fmt %.2f "$other")"
  if restarts "$point" && [[ $mode != postgres* ]]; then
    restart_round "$point" "$mode" "$run" "$drawn"
  fi

  if [ -n "${BENCH_KEEP:-}" ]; then
    echo "   kept $run_dir"
  else
    rm -rf "$run_dir"
  fi
  run_dir=
}

# restart_round POINT MODE RUN WINNERS: a second server on run_once's storage
# (recovery and the winners rebuilt from bets.csv), every agency connects
# again, learns it is done and asks for its winners. Records that server's
# peak RSS and the time from the gates opening to the last agency's exit.
restart_round() {
  local point=$1 mode=$2 run=$3 drawn=$4 n i address= started ended rc
  n=$(agencies_of "$point")
  local timer=()
  [ "$have_time" = 1 ] && timer=("$gnu_time" -f '%M %U %S' -o "$run_dir/restart.time")
  env SERVER_CONFIG=config/server/config.ini SERVER_IP=127.0.0.1 SERVER_PORT=0 SERVER_AGENCIES="$n" \
    SERVER_SECRET="$bench_secret" SERVER_LISTEN_BACKLOG="$backlog" STORAGE_FILEPATH="$run_dir/bets.csv" \
    STORAGE_SYNC="$mode" LOGGING_LEVEL=INFO "${timer[@]}" "$bin/server" >"$run_dir/restart.log" 2>&1 &
  launcher_pid=$!
  server_pid=$launcher_pid
  if [ "$have_time" = 1 ]; then
    server_pid=
    for _ in $(seq 1 1000); do
      server_pid=$(cat "/proc/$launcher_pid/task/$launcher_pid/children" 2>/dev/null || true)
      server_pid=${server_pid%% *}
      [ -n "$server_pid" ] && break
      sleep 0.005
    done
  fi
  [ -n "$server_pid" ] || fail_run "restarted server did not start"
  # Recovery and the winners' rebuild come before the listen line.
  for _ in $(seq 1 12000); do
    address=$(sed -n 's/.*action: listen | result: success | address: //p' "$run_dir/restart.log")
    [ -n "$address" ] && break
    kill -0 "$server_pid" 2>/dev/null || fail_run "restarted server exited at start"
    sleep 0.005
  done
  [ -n "$address" ] || fail_run "restarted server did not report its address within 60 s"
  client_pids=()
  for i in $(seq 1 "$n"); do
    mkfifo "$run_dir/regate-$i"
    (
      read -r _ <"$run_dir/regate-$i"
      CLI_SERVER_ADDRESS=$address CLI_ID=$i CLI_KEY=${AGENCY_KEYS[i]} CLI_BETS_FILE="$data_root/$point/agency-$i.csv" \
        exec "$bin/client"
    ) </dev/null >"$run_dir/reclient-$i.log" 2>&1 &
    client_pids+=($!)
  done
  started=$(now)
  for ((i = 1; i <= n; i++)); do echo go >"$run_dir/regate-$i"; done
  local failed=()
  for i in $(seq 1 "$n"); do
    rc=0
    wait "${client_pids[$((i - 1))]}" || rc=$?
    [ "$rc" = 0 ] || failed+=("agency $i exited $rc on the restarted server")
  done
  ended=$(now)
  client_pids=()
  local proc_rss=n/a
  [ "$have_time" = 0 ] && proc_rss=$(awk '/^VmHWM:/ { print $2 }' "/proc/$server_pid/status" 2>/dev/null || echo n/a)
  kill -TERM "$server_pid" 2>/dev/null || failed+=("the restarted server had exited before SIGTERM")
  rc=0
  wait "$launcher_pid" || rc=$?
  server_pid=
  launcher_pid=
  [ ${#failed[@]} = 0 ] || fail_run "${failed[*]}"
  [ "$rc" = 0 ] || fail_run "restarted server exited $rc"
  local winners
  winners=$(cat "$run_dir"/reclient-*.log | sed -n 's/.*action: consulta_ganadores | result: success | cant_ganadores: \([0-9]*\).*/\1/p' | awk '{ s += $1 } END { print s + 0 }')
  [ "$winners" = "$drawn" ] || fail_run "after the restart agencies report $winners winners, the draw $drawn"
  local rrss=n/a wall
  if [ "$have_time" = 1 ]; then
    read -r rrss _ _ <<<"$(time_line "$run_dir/restart.time")"
    rrss=$(calc "$rrss / 1024")
  elif [ "$proc_rss" != n/a ]; then
    rrss=$(calc "$proc_rss / 1024")
  fi
  wall=$(calc "$ended - $started")
  add "$point.$mode.rrss" "$rrss"
  add "$point.$mode.rwall" "$wall"
  printf '   run %d %-6s restart: server %s MiB; every agency its %s winners in %s s\n' \
    "$run" "$mode" "$(fmt %.1f "$rrss")" "$winners" "$(fmt %.3f "$wall")"
}

# floor_once POINT RUN
floor_once() {
  local point=$1 run=$2 n files=() out i
  n=$(agencies_of "$point")
  for i in $(seq 1 "$n"); do files+=("$data_root/$point/agency-$i.csv"); done
  run_dir=$(mktemp -d "$tmp_root/lottery-bench.XXXXXX")
  sync
  out=$("$bin/examples/floor" --out "$run_dir/floor.bin" "${files[@]}") || fail_run "floor failed"
  local s f
  s=$(sed -n 's/^floor_s=//p' <<<"$out")
  f=$(sed -n 's/^fsync_s=//p' <<<"$out")
  add "$point.floor.wall" "$s"
  add "$point.floor.fsync" "$f"
  printf '   run %d floor  wall %s s (fsync %s s)\n' "$run" "$(fmt %.3f "$s")" "$(fmt %.3f "$f")"
  rm -rf "$run_dir"
  run_dir=
}

# ---- report -------------------------------------------------------------------

kv=()
emit() { kv+=("$1=$2"); }

report() {
  local point=$1 rows bytes n m
  rows=$(spec_value "$point" rows)
  bytes=$(spec_value "$point" bytes)
  n=$(agencies_of "$point")
  emit "bench.$point.agencies" "$n"
  emit "bench.$point.bets" "$rows"
  emit "bench.$point.csv_bytes" "$bytes"
  emit "bench.$point.runs" "$RUNS"
  echo
  printf '== %s: %s bets, %s agencies, %s MiB of CSV; %s runs, min / median / max\n' \
    "$point" "$rows" "$n" "$(fmt %.1f "$(calc "$bytes / 1048576")")" "$RUNS"
  local col
  printf '%-34s' "figure"
  for m in $MODES; do
    if [ "$m" = postgres ]; then
      printf '  %-32s' "STORAGE_BACKEND=postgres"
    elif [ "$m" = postgres3 ]; then
      printf '  %-32s' "postgres, 3 servers"
    else
      printf '  %-32s' "STORAGE_SYNC=$m"
    fi
  done
  echo
  # label metric printf-format machine-name machine-unit
  local rowspec
  for rowspec in \
    "wall s (first start..last exit)|wall|%.3f|wall|s" \
    "bets/s|rate|%.0f|rate|bets_per_s" \
    "server peak RSS MiB|srss|%.1f|server_rss|mib" \
    "server CPU s (user+sys)|scpu|%.3f|server_cpu|s" \
    "client peak RSS MiB (largest)|crss|%.1f|client_rss|mib" \
    "clients CPU s (user+sys, sum)|ccpu|%.3f|clients_cpu|s" \
    "wire bytes/bet (client to server)|wire|%.2f|wire|bytes_per_bet" \
    "client launch s (1st..last start)|launch|%.3f|launch|s" \
    "other CPU s (not ours: noise)|other|%.2f|other_cpu|s" \
    "restart: server peak RSS MiB|rrss|%.1f|restart_rss|mib" \
    "restart: all winners to all s|rwall|%.3f|restart_winners|s"; do
    IFS='|' read -r label metric f name unit <<<"$rowspec"
    # The restart's rows only for the points that restart.
    case $metric in rrss | rwall) restarts "$point" || continue ;; esac
    printf '%-34s' "$label"
    for m in $MODES; do
      if [[ $metric == rrss || $metric == rwall ]] && [[ $m == postgres* ]]; then
        printf '  %-32s' "n/a (file backend only)"
        continue
      fi
      read -r lo med hi <<<"$(stats_of "$point.$m.$metric")"
      col="$(fmt "$f" "$lo") / $(fmt "$f" "$med") / $(fmt "$f" "$hi")"
      printf '  %-32s' "$col"
      emit "bench.$point.$m.${name}_min_$unit" "$lo"
      emit "bench.$point.$m.${name}_median_$unit" "$med"
      emit "bench.$point.$m.${name}_max_$unit" "$hi"
    done
    echo
  done
  local flo fmed fhi smed
  read -r flo fmed fhi <<<"$(stats_of "$point.floor.wall")"
  read -r _ smed _ <<<"$(stats_of "$point.floor.fsync")"
  printf '%-34s  %-32s\n' "floor s (1 TCP conn + fsync)" \
    "$(fmt %.3f "$flo") / $(fmt %.3f "$fmed") / $(fmt %.3f "$fhi")  (of which fsync $(fmt %.3f "$smed"))"
  emit "bench.$point.floor.wall_min_s" "$flo"
  emit "bench.$point.floor.wall_median_s" "$fmed"
  emit "bench.$point.floor.wall_max_s" "$fhi"
  emit "bench.$point.floor.fsync_median_s" "$smed"
  if [ "$with_pg" = 1 ]; then
    local clo cmed chi
    read -r clo cmed chi <<<"$(stats_of "$point.pgcopy.wall")"
    printf '%-34s  %-32s\n' "psql \\copy s (indexed table)" \
      "$(fmt %.3f "$clo") / $(fmt %.3f "$cmed") / $(fmt %.3f "$chi")"
    emit "bench.$point.pgcopy.wall_min_s" "$clo"
    emit "bench.$point.pgcopy.wall_median_s" "$cmed"
    emit "bench.$point.pgcopy.wall_max_s" "$chi"
    for m in $MODES; do
      [[ $m == postgres* ]] || continue
      read -r _ med _ <<<"$(stats_of "$point.$m.wall")"
      printf '%-34s  %-32s\n' "$m / psql \\copy (medians)" "$(fmt %.1f "$(calc "$med / $cmed")")x"
      emit "bench.$point.$m.pgcopy_ratio_median" "$(fmt %.2f "$(calc "$med / $cmed")")"
    done
  fi
  printf '%-34s' "ours / floor (medians)"
  for m in $MODES; do
    read -r _ med _ <<<"$(stats_of "$point.$m.wall")"
    local ratio
    ratio=$(calc "$med / $fmed")
    printf '  %-32s' "$(fmt %.1f "$ratio")x"
    emit "bench.$point.$m.floor_ratio_median" "$(fmt %.2f "$ratio")"
  done
  echo
}

# Targets of the issue (durable mode, medians).
targets() {
  local missed=0 point=$1 ok
  median() { local med; read -r _ med _ <<<"$(stats_of "$1")"; echo "$med"; }
  check() { # name value op limit
    ok=$(awk -v v="$2" -v l="$4" -v op="$3" 'BEGIN { if (v == "n/a") print "n/a"; else if ((op == "<=" && v <= l) || (op == ">=" && v >= l)) print "met"; else print "MISSED" }')
    printf '   target %-44s %s %s %s: %s\n' "$1" "$(fmt %.3f "$2")" "$3" "$4" "$ok"
    emit "bench.target.$point.$1" "$ok"
    [ "$ok" != MISSED ] || missed=1
  }
  case " $MODES " in *" always "*) ;; *) return 0 ;; esac
  case "$point" in
    1x) check wall_s "$(median 1x.always.wall)" "<=" 0.10 ;;
    10x)
      case " $MODES " in *" postgres "*)
        check postgres_pgcopy_ratio "$(calc "$(median 10x.postgres.wall) / $(median 10x.pgcopy.wall)")" "<=" 2
        ;;
      esac
      if [[ " $MODES " == *" postgres "* && " $MODES " == *" postgres3 "* ]]; then
        check postgres3_vs_postgres "$(calc "$(median 10x.postgres3.wall) / $(median 10x.postgres.wall)")" "<=" 1
      fi
      check wall_s "$(median 10x.always.wall)" "<=" 0.30
      check floor_ratio "$(calc "$(median 10x.always.wall) / $(median 10x.floor.wall)")" "<=" 3
      ;;
    10m)
      check bets_per_s "$(median 10m.always.rate)" ">=" 2000000
      check server_rss_mib "$(median 10m.always.srss)" "<=" 64
      check client_rss_mib "$(median 10m.always.crss)" "<=" 16
      ;;
    10mw)
      check server_rss_mib "$(median 10mw.always.srss)" "<=" 64
      check restart_server_rss_mib "$(median 10mw.always.rrss)" "<=" 64
      ;;
  esac
  return "$missed"
}

# ---- main ---------------------------------------------------------------------

echo "== machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)," \
  "kernel $(uname -r), storage in $tmp_root ($(df -PT "$tmp_root" | awk 'NR == 2 { print $2 }'))," \
  "load average $(cut -d ' ' -f 1-3 /proc/loadavg)"
echo "== binaries: $bin, source $source_rev"
generator=$(generator_version)
[ "$with_pg" = 1 ] && pg_start
for point in "${points[@]}"; do prepare_data "$point"; done

any_missed=0
for point in "${points[@]}"; do
  echo
  echo "== $point: $(spec_value "$point" rows) bets over $(agencies_of "$point") agencies, $RUNS runs"
  cat "$data_root/$point"/agency-*.csv >/dev/null # into the page cache, like every later run
  for run in $(seq 1 "$RUNS"); do
    for mode in $MODES; do run_once "$point" "$mode" "$run"; done
    floor_once "$point" "$run"
    [ "$with_pg" = 1 ] && pgcopy_once "$point" "$run"
  done
  report "$point"
  targets "$point" || any_missed=1
done

echo
kv=("bench.source=$source_rev" "${kv[@]}")
printf '%s\n' "${kv[@]}"
if [ -n "${BENCH_OUT:-}" ]; then printf '%s\n' "${kv[@]}" >"$BENCH_OUT"; fi
if [ -n "${STRICT:-}" ] && [ "$any_missed" = 1 ]; then exit 1; fi
