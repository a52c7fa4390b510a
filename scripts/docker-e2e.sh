#!/usr/bin/env bash
# Docker end-to-end test of the packaged lottery (needs Docker with Compose v2,
# python3, and cargo to build the log checker; run
# `bash /work/shared/docker/offline-docker.sh` first on a machine without an
# image registry).
#
#   scripts/docker-e2e.sh            # or: make docker-e2e
#
# Works on a temporary copy of the repository, so the student's .data/ and
# files are never touched. Steps:
#   0. static checks: the Dockerfiles share their chef and planner stages,
#      docker-compose-dev.yaml is the generator's output for 5 clients;
#   1. build the images (make docker-image); none over 100 MB, all non-root,
#      the client image holds only the client and is at most 16 MB;
#   2. prepare data the way a student's checkout would have it: a hand-written
#      agency-3.csv (must be kept), agency-2.csv only inside .data/dataset.zip
#      (must be extracted), the rest generated (gen-data --scale 0.2);
#   3. make docker-compose-up (5 clients); wait for every client to exit 0;
#      the secret (.data/secret, mode 0600) and keys were created on first use,
#      each client's environment holds its own key and nothing else secret;
#   4. logs: `sorteo` once, 5 `consulta_ganadores` with the right winner
#      counts, every `action:` line in the course grammar (the crate's own
#      checker, examples/check_log.rs), no `result: fail`;
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
#  10. high availability (make docker-compose-up SERVERS=3 HA=1's layout, with
#      slow clients): the pg_auto_failover primary's container killed
#      mid-ingest (docker kill, as make docker-ha-failover does); every client
#      exits 0, no server exits, `sorteo` once across the servers, the right
#      winners, the new primary holds the input rows each once; the old
#      primary restarted rejoins as the standby; make docker-compose-down.
#      Prints the failover time and kill -> last agency done.
# Prints a PASS/FAIL line per check and a summary; exit 0 iff all passed.
#
# The test is scripts/docker_e2e.py; the checks on the logs and the stored
# rows are scripts/docker_e2e_check.py (Python 3, standard library).
# Environment: E2E_SCALE (0.2), E2E_TIMEOUT (300 s per wait),
#   E2E_KEEP=1 (keep the temporary copy and logs even on success).
set -euo pipefail
command -v python3 >/dev/null || { echo "docker-e2e: FAIL: python3 is missing" >&2; exit 1; }
# The logs' grammar is checked by the library's own checker, the one the
# Rust tests use: examples/check_log.rs, built here on the host.
repo=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release --quiet --manifest-path "$repo/Cargo.toml" --example check-log ||
  { echo "docker-e2e: FAIL: cannot build the log checker (cargo build --example check-log)" >&2; exit 1; }
CHECK_LOG=$(cargo metadata --format-version 1 --no-deps --manifest-path "$repo/Cargo.toml" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/release/examples/check-log
export CHECK_LOG
exec python3 "$(dirname "$0")/docker_e2e.py" "$@"
