#!/usr/bin/env bash
# The high-availability demo's operations (make docker-compose-up SERVERS=K
# HA=1): pg_auto_failover's monitor asked which node is the primary.
#
#   scripts/docker-ha.sh state      # pg_autoctl show state (make docker-ha-state)
#   scripts/docker-ha.sh primary    # the primary's name, = its container's
#   scripts/docker-ha.sh failover   # docker kill the primary, time the takeover (make docker-ha-failover)
#   scripts/docker-ha.sh rejoin     # docker start the killed node, time its return as standby (make docker-ha-rejoin)
#
# The operations are scripts/docker_ha.py (Python 3, standard library).
set -euo pipefail
exec python3 "$(dirname "$0")/docker_ha.py" "$@"
