#!/usr/bin/env bash
# Write a Docker Compose file for the lottery: one server, CLIENTS clients
# (agencies 1..CLIENTS) and the `netcat` echo smoke test on the network
# `testing_net`, Compose project `tp0`.
#
#   scripts/generar-compose.sh OUTPUT CLIENTS     # CLIENTS = 0..100; OUTPUT "-" = stdout
#   scripts/generar-compose.sh OUTPUT CLIENTS --servers K
#       K = 1..10 servers server1..serverK over one PostgreSQL service
#       (image lottery-postgres: Dockerfile.postgres); client N starts on
#       server ((N-1) mod K)+1 and fails over to the others in turn.
#   scripts/generar-compose.sh OUTPUT CLIENTS --servers K --ha
#       the same servers over a highly available database instead:
#       pg_auto_failover's monitor and two PostgreSQL nodes, postgres1 and
#       postgres2 (image lottery-pgaf: Dockerfile.pgaf).
#
# The layout itself is scripts/generar_compose.py (Python 3, standard library).
set -euo pipefail
exec python3 "$(dirname "$0")/generar_compose.py" "$@"
