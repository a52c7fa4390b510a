#!/usr/bin/env bash
# The whole lottery on this machine: the server and N agencies on loopback.
#
#   scripts/run-local.sh            # 5 agencies (AGENCIES=N for another number)
#
# Data: .data/agency-{N}.csv. Missing files come from .data/dataset.zip when
# there is one, otherwise they are generated (deterministic, the course's
# shape); existing files are never overwritten. The server gets a fresh
# secret (in the run's temporary directory) and each agency its own key.
# Ends with each agency's number of winners. The binaries are run from
# wherever cargo builds them (CARGO_TARGET_DIR, build.target-dir, or target/).
set -euo pipefail
cd "$(dirname "$0")/.."

agencies=${AGENCIES:-5}
data=.data
echo "== building (release)"
cargo build --release --quiet --bins --example gen-data
bin=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release
[ -x "$bin/server" ] || { echo "no server binary in $bin after the build"; exit 1; }
mkdir -p "$data"
if [ -f "$data/dataset.zip" ] && command -v unzip >/dev/null; then
  unzip -q -n -j "$data/dataset.zip" '*agency-*.csv' -d "$data" || true
fi
"$bin/examples/gen-data" --out "$data" --agencies "$agencies" --keep-existing >/dev/null

run=$(mktemp -d)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  rm -rf "$run"
}
trap cleanup EXIT

# A fresh secret for this run (the directory is ours alone); each agency
# gets only its own key, as an operator would hand it out.
(umask 077 && od -An -N32 -v -tx1 /dev/urandom | tr -d ' \n' >"$run/secret")
export SERVER_CONFIG=config/server/config.ini
key_of() { SERVER_SECRET_FILE="$run/secret" "$bin/server" agency-key "$1"; }

echo "== server (storage in $run/bets.csv)"
SERVER_IP=127.0.0.1 SERVER_PORT=0 SERVER_AGENCIES="$agencies" SERVER_SECRET_FILE="$run/secret" \
  SERVER_LISTEN_BACKLOG=128 STORAGE_FILEPATH="$run/bets.csv" \
  "$bin/server" >"$run/server.log" 2>&1 &
server_pid=$!
address=
for _ in $(seq 1 200); do
  address=$(sed -n 's/.*action: listen | result: success | address: //p' "$run/server.log")
  [ -n "$address" ] && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$run/server.log"; exit 1; }
  sleep 0.05
done
[ -n "$address" ] || { echo "server did not start"; cat "$run/server.log"; exit 1; }

keys=()
for i in $(seq 1 "$agencies"); do keys[i]=$(key_of "$i"); done
echo "== $agencies agencies -> $address"
start=${EPOCHREALTIME/[.,]/}
pids=()
for i in $(seq 1 "$agencies"); do
  CLI_CONFIG=config/client/config.yaml CLI_ID="$i" CLI_KEY="${keys[i]}" CLI_SERVER_ADDRESS="$address" \
    CLI_BETS_FILE="$data/agency-$i.csv" "$bin/client" >"$run/client-$i.log" 2>&1 &
  pids+=($!)
done
failed=0
for i in $(seq 1 "$agencies"); do
  wait "${pids[$((i - 1))]}" || { failed=1; echo "agency $i FAILED:"; tail -5 "$run/client-$i.log"; }
done
end=${EPOCHREALTIME/[.,]/}
elapsed_ms=$(((end - start) / 1000))
elapsed=$(printf '%d.%03d' $((elapsed_ms / 1000)) $((elapsed_ms % 1000)))

kill -TERM "$server_pid"
wait "$server_pid" || failed=1
server_pid=

grep -h "action: sorteo" "$run/server.log" | sed 's/^/server: /'
for i in $(seq 1 "$agencies"); do
  winners=$(sed -n 's/.*action: consulta_ganadores | result: success | cant_ganadores: //p' "$run/client-$i.log")
  sent=$(sed -n 's/.*apuestas_enviadas: \([0-9]*\).*/\1/p' "$run/client-$i.log")
  echo "agency $i: ${winners:-?} winners (${sent:-?} bets sent)"
done
echo "stored: $(wc -l <"$run/bets.csv") rows in ${elapsed}s"
exit "$failed"
