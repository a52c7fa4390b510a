#!/usr/bin/env bash
# Docker end-to-end test of the packaged lottery (needs Docker with Compose v2,
# python3, and cargo for the log checker; run
# `bash /work/shared/docker/offline-docker.sh` first on a machine without an
# image registry).
#
#   scripts/docker-e2e.sh            # or: make docker-e2e
#
# Works on a temporary copy of the repository, so the student's .data/ and
# files are never touched. Steps:
#   1. build both images (make docker-image);
#   2. prepare data the way a student's checkout would have it: a hand-written
#      agency-3.csv (must be kept), agency-2.csv only inside .data/dataset.zip
#      (must be extracted), the rest generated (gen-data --scale 0.2);
#   3. make docker-compose-up (5 clients); wait for every client to exit 0;
#      the secret (.data/secret, mode 0600) and keys were created on first use,
#      each client's environment holds its own key and nothing else secret;
#   4. logs: `sorteo` once, 5 `consulta_ganadores` with the right winner
#      counts, every `action:` line in the course grammar (checked by the
#      library's checker, `cargo run --example check-log`), no `result: fail`;
#   5. stored rows (bets.csv in the volume) = the input rows (as multisets),
#      also after a server restart;
#      a client with agency 2's key claiming agency 3 is refused (unauthorized);
#   6. echo smoke test (validar-echo-server.sh): success, then fail with the
#      server stopped (which must itself exit 0);
#   7. make docker-compose-down leaves nothing behind;
#   8. SIGTERM while the clients are mid-ingest (`docker compose stop -t 10`):
#      every container logs its closes and exits 0, well before the 10 s;
#      stored rows are a subset of the input; make docker-compose-down;
#   9. server restart while the clients are mid-ingest: the clients resume
#      and exit 0, the logs pass the checks of 4., bets.csv = the input.
# Prints a PASS/FAIL line per check and a summary; exit 0 iff all passed.
#
# Environment: E2E_SCALE (0.2), E2E_TIMEOUT (300 s per wait),
#   E2E_KEEP=1 (keep the temporary copy and logs even on success).
set -uo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
scale=${E2E_SCALE:-0.2}
wait_timeout=${E2E_TIMEOUT:-300}
agencies=5
clients=(client1 client2 client3 client4 client5)
compose_file=docker-compose-dev.yaml
project=tp0
success_line='action: test_echo_server | result: success'
fail_line='action: test_echo_server | result: fail'

t_start=$SECONDS
passed=0
failed=0
summary=()

say() { printf '\n== %s\n' "$*"; }
record() { # record PASS|FAIL name [detail]
  local line
  line=$(printf '%-4s %s%s' "$1" "$2" "${3:+ ($3)}")
  summary+=("$line")
  echo "$line"
  if [ "$1" = PASS ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
}
check() { # check name command...  (PASS iff the command succeeds)
  local name=$1
  shift
  if "$@"; then record PASS "$name"; else record FAIL "$name"; fi
}

finish() {
  local total=$((SECONDS - t_start))
  echo
  echo "================ docker-e2e summary ================"
  printf '%s\n' "${summary[@]}"
  echo "----------------------------------------------------"
  if [ "$failed" = 0 ] && [ "$passed" -gt 0 ]; then
    echo "PASS: $passed checks passed in ${total}s"
  else
    echo "FAIL: $failed of $((passed + failed)) checks failed in ${total}s; logs in $artifacts"
  fi
  # The plain closing line test harnesses read.
  echo "$passed passed, $failed failed"
}

# ---- preflight ----------------------------------------------------------------
if ! command -v docker >/dev/null || ! docker info >/dev/null 2>&1; then
  echo "docker-e2e: FAIL: no Docker engine (run offline-docker.sh first)" >&2
  exit 1
fi
docker compose version >/dev/null 2>&1 ||
  { echo "docker-e2e: FAIL: Docker Compose v2 (docker compose) is missing" >&2; exit 1; }
command -v python3 >/dev/null || { echo "docker-e2e: FAIL: python3 is missing" >&2; exit 1; }
# The logs' grammar is checked by the library's own checker (the one the
# Rust tests use): examples/check_log.rs, built here on the host.
cargo build --release --quiet --manifest-path "$repo/Cargo.toml" --example check-log ||
  { echo "docker-e2e: FAIL: cannot build the log checker (cargo build --example check-log)" >&2; exit 1; }
CHECK_LOG=$(cargo metadata --format-version 1 --no-deps --manifest-path "$repo/Cargo.toml" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/release/examples/check-log
export CHECK_LOG
busy=$(docker ps -a --format '{{.Names}}' |
  grep -E '^(server|netcat|client[0-9]+)$|^tp0[-_]' | tr '\n' ' ')
if [ -n "$busy" ] || [ -n "$(docker ps -aq --filter label=com.docker.compose.project=$project)" ]; then
  echo "docker-e2e: FAIL: containers of the demo exist already ($busy); run 'make docker-compose-down' first" >&2
  exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/lottery-e2e.XXXXXX")
artifacts=$work/artifacts
mkdir -p "$artifacts"
# Build output stays out of the copy: target/, and CARGO_TARGET_DIR when it
# lies inside the repository (the images build their own binaries).
excludes=(--exclude=./target --exclude=./.git --exclude=./.data)
if [ -n "${CARGO_TARGET_DIR:-}" ]; then
  target_dir=$(realpath -m -- "$CARGO_TARGET_DIR")
  repo_real=$(realpath -- "$repo")
  case "$target_dir" in "$repo_real"/?*) excludes+=("--exclude=./${target_dir#"$repo_real"/}") ;; esac
fi
tar -C "$repo" "${excludes[@]}" -cf - . | tar -C "$work" -xf -
cd "$work" || exit 1

cleanup() {
  local rc=$?
  cd "$work" 2>/dev/null && docker compose -f "$compose_file" --profile netcat \
    down -v --remove-orphans -t 1 >/dev/null 2>&1
  if [ "$failed" = 0 ] && [ "$passed" -gt 0 ] && [ -z "${E2E_KEEP:-}" ]; then
    rm -rf "$work"
  else
    echo "docker-e2e: kept $work (logs in $artifacts)"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'record FAIL "interrupted"; finish; exit 130' INT TERM

# ---- helpers ------------------------------------------------------------------
cat >"$work/e2e_check.py" <<'PY'
"""Checks for scripts/docker-e2e.sh (stdlib only)."""
import collections, csv, io, os, re, subprocess, sys

WINNING_NUMBER = 7574


def action_lines(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return [l.rstrip("\r\n") for l in f if "action:" in l]


def grammar_error(path):
    """The first line of the log at `path` that breaks the course grammar,
    as the library's checker ($CHECK_LOG, examples/check_log.rs) names it;
    None when every `action:` line keeps it."""
    run = subprocess.run([os.environ["CHECK_LOG"], path], capture_output=True, text=True)
    return None if run.returncode == 0 else (run.stderr or run.stdout).strip()


def read_agency(path):
    with open(path, encoding="utf-8", newline="") as f:
        return [tuple(r) for r in csv.reader(f) if r]


def winners(rows):
    return sum(1 for r in rows if r[4].strip().isdigit() and int(r[4]) == WINNING_NUMBER)


def stored_rows(path):
    with open(path, encoding="utf-8", newline="") as f:
        rows = [tuple(r) for r in csv.reader(f) if r]
    if rows and rows[0][0] == "agency":
        rows = rows[1:]
    return rows


def input_rows(data_dir, n):
    return [(str(i),) + r for i in range(1, n + 1) for r in read_agency(f"{data_dir}/agency-{i}.csv")]


def cmd_logs(server_log, data_dir, *client_logs):
    ok = True
    def bad(msg):
        nonlocal ok
        ok = False
        print("  " + msg)
    all_logs = [server_log, *client_logs]
    for path in all_logs:
        error = grammar_error(path)
        if error:
            bad(f"grammar: {error}")
        for line in action_lines(path):
            if "result: fail" in line:
                bad(f"{path}: failure logged: {line}")
    sorteos = [l for l in action_lines(server_log) if "action: sorteo | result: success" in l]
    if len(sorteos) != 1:
        bad(f"server logged 'sorteo | result: success' {len(sorteos)} times, expected once")
    total = 0
    for i, path in enumerate(client_logs, start=1):
        want = winners(read_agency(f"{data_dir}/agency-{i}.csv"))
        total += want
        got = [l for l in action_lines(path) if "action: consulta_ganadores | result: success" in l]
        if len(got) != 1:
            bad(f"{path}: {len(got)} 'consulta_ganadores | result: success' lines, expected 1")
            continue
        m = re.search(r"\| cant_ganadores: (\d+)", got[0])
        if not m or int(m.group(1)) != want:
            bad(f"{path}: {got[0]!r}: expected cant_ganadores: {want}")
    m = re.search(r"\| ganadores: (\d+)", sorteos[0]) if len(sorteos) == 1 else None
    if m and int(m.group(1)) != total:
        bad(f"server: sorteo reports {m.group(1)} winners, the input has {total}")
    print(f"  {sum(len(action_lines(p)) for p in all_logs)} action lines checked; {total} winners")
    return ok


def cmd_rows(stored, data_dir, n, mode):
    got = collections.Counter(stored_rows(stored))
    want = collections.Counter(input_rows(data_dir, int(n)))
    extra, missing = got - want, want - got
    print(f"  stored {sum(got.values())} rows, input {sum(want.values())} rows")
    for r in list(extra)[:5]:
        print(f"  stored but not in the input: {r}")
    if mode == "equal":
        for r in list(missing)[:5]:
            print(f"  in the input but not stored: {r}")
        return not extra and not missing
    return not extra  # subset


def cmd_count(path, pattern):
    print(sum(1 for l in action_lines(path) if pattern in l))
    return True


def cmd_zip(zip_path, member, src):
    import zipfile
    with zipfile.ZipFile(zip_path, "w") as z:
        z.write(src, member)
    return True


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    sys.exit(0 if globals()["cmd_" + cmd](*args) else 1)
PY
check_py() { python3 "$work/e2e_check.py" "$@"; }

logged() { # logged FILE command...  (output of the command to FILE)
  local file=$1
  shift
  "$@" >"$file" 2>&1 || { tail -20 "$file" | sed 's/^/  | /'; return 1; }
}

exit_code() { docker inspect -f '{{.State.ExitCode}}' "$1" 2>/dev/null || echo missing; }

save_logs() { # save_logs SUFFIX containers...
  local suffix=$1 c
  shift
  for c in "$@"; do docker logs "$c" >"$artifacts/$c$suffix.log" 2>&1; done
}

# Waits until every container named in $@ has exited; prints "name=code".
wait_exit() {
  local c codes
  codes=$(timeout "$wait_timeout" docker wait "$@") || return 1
  paste -d= <(printf '%s\n' "$@") <(echo "$codes")
}

# Waits for every client and checks that all exited 0. $1 names the check,
# $2 is the SECONDS the wait is timed from, $3 says since what.
clients_exit_zero() {
  local codes
  if codes=$(wait_exit "${clients[@]}"); then
    while read -r l; do echo "  $l"; done <<<"$codes"
    check "$1 ($((SECONDS - $2))s $3)" test "$(echo "$codes" | grep -cv '=0$')" = 0
  else
    record FAIL "clients did not all exit within ${wait_timeout}s"
  fi
}

nothing_left() {
  local f="label=com.docker.compose.project=$project" left
  left="$(docker ps -aq --filter "$f")$(docker network ls -q --filter "$f")$(docker volume ls -q --filter "$f")"
  left+=$(docker network ls -q --filter name="^${project}_testing_net$")
  [ -z "$left" ] || { docker ps -a --filter "$f"; docker network ls --filter "$f"; docker volume ls --filter "$f"; return 1; }
}

# ---- 0. static checks ----------------------------------------------------------------------
say "static checks"
builder() { sed -n '/^FROM rust:1-slim-bookworm AS builder/,/^FROM /p' "$1"; }
check "Dockerfile.server and Dockerfile.client share an identical builder stage" \
  diff <(builder Dockerfile.server) <(builder Dockerfile.client)
check "docker-compose-dev.yaml is generar-compose.sh's output for 5 clients" \
  diff <(bash scripts/generar-compose.sh - 5) "$compose_file"
check "docker compose config accepts the compose file" \
  docker compose -f "$compose_file" --profile netcat config -q

# ---- 1. images -----------------------------------------------------------------------------
say "make docker-image"
t=$SECONDS
if make docker-image >"$artifacts/docker-image.log" 2>&1; then
  record PASS "make docker-image" "$((SECONDS - t))s"
else
  record FAIL "make docker-image" "see $artifacts/docker-image.log"
  tail -30 "$artifacts/docker-image.log"
  finish
  exit 1
fi
for img in lottery-server:latest lottery-client:latest; do
  size=$(docker image inspect -f '{{.Size}}' "$img")
  user=$(docker image inspect -f '{{.Config.User}}' "$img")
  check "$img: $((size / 1000000)) MB (< 100 MB), user '$user' (non-root)" \
    test "$size" -lt 100000000 -a -n "$user" -a "${user%%:*}" != 0 -a "${user%%:*}" != root
done

# ---- 2. data -------------------------------------------------------------------------------
say "data (.data/ of the temporary copy)"
mkdir -p .data
# A student's own file: must be used as is.
printf '%s\r\n' 'José,Núñez,30904465,1999-03-17,7574' 'María Inés,Pérez,2211003,1985-11-02,1234' \
  'Ana,De la Fuente,40111222,2001-01-31,7574' >.data/agency-3.csv
sum3=$(sha256sum <.data/agency-3.csv)
# agency-2.csv only inside dataset.zip (as the course ships it).
mkdir -p zip-src
docker run --rm --user "$(id -u):$(id -g)" -v "$work/zip-src:/out" --entrypoint gen-data \
  lottery-client:latest --out /out --agencies 2 --scale "$scale" --seed 99 >/dev/null
check_py zip .data/dataset.zip agency-2.csv zip-src/agency-2.csv
if GEN_DATA_ARGS="--scale $scale --seed 42" scripts/docker-data.sh "$agencies" >"$artifacts/data.log" 2>&1; then
  record PASS "scripts/docker-data.sh $agencies"
else
  record FAIL "scripts/docker-data.sh $agencies" "see $artifacts/data.log"
fi
check "hand-written agency-3.csv kept unchanged" test "$(sha256sum <.data/agency-3.csv)" = "$sum3"
check "agency-2.csv extracted from dataset.zip" cmp -s .data/agency-2.csv zip-src/agency-2.csv
check "agency-1,4,5.csv generated" test -s .data/agency-1.csv -a -s .data/agency-4.csv -a -s .data/agency-5.csv
wc -l .data/agency-*.csv | sed 's/^/  /'

# ---- 3. the demo -----------------------------------------------------------------------------
say "make docker-compose-up ($agencies clients)"
t=$SECONDS
if make docker-compose-up >"$artifacts/compose-up.log" 2>&1; then
  record PASS "make docker-compose-up" "$((SECONDS - t))s"
  t=$SECONDS
else
  record FAIL "make docker-compose-up" "see $artifacts/compose-up.log"
  tail -20 "$artifacts/compose-up.log"
fi
clients_exit_zero "every client exits 0" "$t" "after up"
save_logs "" server "${clients[@]}"
check "the secret was created on first use: .data/secret, mode 600, owner 10001 (the server's user)" \
  test "$(stat -c '%a %u' .data/secret 2>/dev/null)" = "600 10001"
container_env() { docker inspect -f '{{range .Config.Env}}{{println .}}{{end}}' "$1"; }
own_key_only() { # own_key_only N: client N has agency N's key, one key, no secret
  local env
  env=$(container_env "client$1") || return 1
  [ "$(grep -c '^CLI_KEY=' <<<"$env")" = 1 ] &&
    [ "$(grep '^CLI_KEY=' <<<"$env")" = "$(grep '^CLI_KEY=' ".data/keys/agency-$1.env")" ] &&
    ! grep -q '^SERVER_SECRET' <<<"$env"
}
for ((i = 1; i <= agencies; i++)); do
  check "client$i's environment holds its own key only" own_key_only "$i"
done
check "the server reads its secret from the bind-mounted file (not the environment)" \
  bash -c "env=\$(docker inspect -f '{{range .Config.Env}}{{println .}}{{end}}' server) &&
    grep -qx 'SERVER_SECRET_FILE=/run/secrets/server-secret' <<<\"\$env\" && ! grep -q '^SERVER_SECRET=' <<<\"\$env\""
client_logs=()
for c in "${clients[@]}"; do client_logs+=("$artifacts/$c.log"); done

# ---- 4. logs ---------------------------------------------------------------------------------
say "logs"
check "logs: sorteo once, 5 consulta_ganadores with the right counts, grammar, no fail" \
  check_py logs "$artifacts/server.log" .data "${client_logs[@]}"
for c in "${clients[@]}"; do mv "$artifacts/$c.log" "$artifacts/$c.run1.log"; done
mv "$artifacts/server.log" "$artifacts/server.run1.log"

# ---- 5. stored rows ----------------------------------------------------------------------------
say "stored rows"
docker cp server:/data/bets.csv "$artifacts/bets.run1.csv" >/dev/null 2>&1
check "bets.csv in the volume = the input rows" \
  check_py rows "$artifacts/bets.run1.csv" .data "$agencies" equal
docker restart -t 10 server >/dev/null
sleep 2
docker cp server:/data/bets.csv "$artifacts/bets.restart.csv" >/dev/null 2>&1
check "bets.csv unchanged after a server restart (volume)" \
  check_py rows "$artifacts/bets.restart.csv" .data "$agencies" equal
check "server running after the restart" test "$(docker inspect -f '{{.State.Running}}' server)" = true

say "an agency with another agency's key"
impostor=$(docker run --rm --network "${project}_testing_net" -e CLI_ID=3 --env-file .data/keys/agency-2.env \
  -e CLI_SERVER_ADDRESS=server:12345 -e CLI_RETRY_TIMEOUT=5s -e NOMBRE=Eva -e APELLIDO=Paz \
  -e DOCUMENTO=42 -e NACIMIENTO=1990-01-01 -e NUMERO=7574 \
  -v "$work/config/client/config.yaml:/config.yaml:ro" lottery-client:latest 2>&1)
rc=$?
echo "$impostor" >"$artifacts/impostor.log"
echo "  $(grep 'action: client' <<<"$impostor") (exit $rc)"
check "agency 2's key claiming agency 3: ERROR unauthorized, exit non-zero" \
  test "$rc" != 0 -a "$(grep -c 'result: fail.*unauthorized' <<<"$impostor")" -ge 1
check "the server logs the failed AUTH" \
  bash -c "docker logs server 2>&1 | grep -q 'action: auth | result: fail | agencia: 3 | peer: '"
docker cp server:/data/bets.csv "$artifacts/bets.impostor.csv" >/dev/null 2>&1
check "nothing stored for the impostor" \
  check_py rows "$artifacts/bets.impostor.csv" .data "$agencies" equal

# ---- 6. echo smoke test ----------------------------------------------------------------------
say "echo smoke test (netcat profile)"
out=$(scripts/validar-echo-server.sh 2>"$artifacts/netcat-success.err")
rc=$?
echo "  $out (exit $rc)"
check "validar-echo-server.sh: success, exit 0" test "$out" = "$success_line" -a "$rc" = 0
docker stop -t 10 server >/dev/null
save_logs .restart server
check "server exits 0 on SIGTERM (docker stop)" test "$(exit_code server)" = 0
check "server logs its closes" grep -q 'action: close_[a-z_]* | result: success' "$artifacts/server.restart.log"
out=$(scripts/validar-echo-server.sh 2>"$artifacts/netcat-fail.err")
rc=$?
echo "  $out (exit $rc)"
check "validar-echo-server.sh with the server stopped: fail, exit 1" test "$out" = "$fail_line" -a "$rc" = 1

# ---- 7. down ---------------------------------------------------------------------------------
say "make docker-compose-down"
check "make docker-compose-down" logged "$artifacts/compose-down.log" make docker-compose-down
check "nothing left behind (containers, network, volume)" nothing_left

# ---- 8. SIGTERM mid-ingest -------------------------------------------------------------------
say "SIGTERM while the clients are mid-ingest"
# One bet per batch, one batch in flight: the ingest takes long enough to be
# interrupted. An override file only changes the clients' environment.
{
  echo "services:"
  for c in "${clients[@]}"; do
    printf '  %s:\n    environment:\n      - CLI_BATCH_MAXAMOUNT=1\n      - CLI_BATCH_WINDOW=1\n' "$c"
  done
} >sigterm-override.yaml
# Waits (up to 60 s) until the server has stored bets from every agency.
wait_mid_ingest() {
  local deadline=$((SECONDS + 60)) n
  while [ $SECONDS -lt $deadline ]; do
    n=$(docker logs server 2>&1 |
      grep -Eo 'apuesta_recibida \| result: success \| cantidad: [0-9]+ \| agencia: [0-9]+' |
      awk '{print $NF}' | sort -u | wc -l)
    [ "$n" -ge "$agencies" ] && return 0
    sleep 0.5
  done
  return 1
}
docker compose -f "$compose_file" -f sigterm-override.yaml up -d >"$artifacts/sigterm-up.log" 2>&1
wait_mid_ingest || echo "  (not every agency had stored bets after 60 s)"
running=$(docker ps --format '{{.Names}}' --filter label=com.docker.compose.project=$project | sort | tr '\n' ' ')
echo "  running before stop: $running"
t=$SECONDS
docker compose -f "$compose_file" stop -t 10 >"$artifacts/sigterm-stop.log" 2>&1
elapsed=$((SECONDS - t))
save_logs .sigterm server "${clients[@]}"
check "docker compose stop -t 10 returns before the 10 s grace period ends" test "$elapsed" -lt 10
echo "  stop took ${elapsed}s"
check "no draw happened (the stop hit the ingest)" \
  test "$(check_py count "$artifacts/server.sigterm.log" 'action: sorteo | result: success')" = 0
for c in server "${clients[@]}"; do
  check "$c exits 0 after SIGTERM" test "$(exit_code "$c")" = 0
done
check "server logs its closes" grep -q 'action: close_[a-z_]* | result: success' "$artifacts/server.sigterm.log"
for c in "${clients[@]}"; do
  if [[ " $running " == *" $c "* ]]; then
    check "$c logs 'action: shutdown | result: success'" \
      grep -q 'action: shutdown | result: success' "$artifacts/$c.sigterm.log"
  fi
done
grep -h 'result: fail' "$artifacts"/*.sigterm.log | sed 's/^/  (info) /' | head -10
docker cp server:/data/bets.csv "$artifacts/bets.sigterm.csv" >/dev/null 2>&1
check "after SIGTERM the stored rows are a subset of the input (no torn rows)" \
  check_py rows "$artifacts/bets.sigterm.csv" .data "$agencies" subset
check "make docker-compose-down" logged "$artifacts/compose-down2.log" make docker-compose-down
check "nothing left behind (containers, network, volume)" nothing_left

# ---- 9. server restart mid-ingest ----------------------------------------------------------
say "server restart while the clients are mid-ingest"
docker compose -f "$compose_file" -f sigterm-override.yaml up -d >"$artifacts/restart-up.log" 2>&1
wait_mid_ingest || echo "  (not every agency had stored bets after 60 s)"
draws=$(docker logs server 2>&1 | grep -c 'action: sorteo | result: success')
docker restart -t 10 server >/dev/null
check "server restarted mid-ingest (no draw before, recovery after)" \
  test "$draws" = 0 -a "$(docker logs server 2>&1 | grep -c 'action: recovery | result: success')" = 2
t=$SECONDS
clients_exit_zero "the clients resume and exit 0" "$t" "after the restart"
save_logs .restart-mid server "${clients[@]}"
restart_logs=()
for c in "${clients[@]}"; do restart_logs+=("$artifacts/$c.restart-mid.log"); done
check "logs: sorteo once, 5 consulta_ganadores with the right counts, grammar, no fail" \
  check_py logs "$artifacts/server.restart-mid.log" .data "${restart_logs[@]}"
docker cp server:/data/bets.csv "$artifacts/bets.restart-mid.csv" >/dev/null 2>&1
check "bets.csv = the input rows (nothing lost or duplicated by the restart)" \
  check_py rows "$artifacts/bets.restart-mid.csv" .data "$agencies" equal
check "make docker-compose-down" logged "$artifacts/compose-down3.log" make docker-compose-down
check "nothing left behind (containers, network, volume)" nothing_left

finish
[ "$failed" = 0 ]
