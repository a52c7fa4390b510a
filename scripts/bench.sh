#!/usr/bin/env bash
# Throughput benchmark: the whole lottery (server + every agency) on loopback,
# durable and not, against the floor. The benchmark is scripts/bench.py
# (Python 3, standard library); its docstring lists the points, the modes and
# the environment variables. Results and how to read them: docs/PERFORMANCE.md.
#
#   scripts/bench.sh              # the usual points: 1x 10x 10m
#   scripts/bench.sh 1x 10x       # some points
#   RUNS=5 MODES="always postgres" scripts/bench.sh 1x
set -euo pipefail
exec python3 "$(dirname "$0")/bench.py" "$@"
