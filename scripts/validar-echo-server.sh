#!/usr/bin/env bash
# Echo smoke test of the running server, without installing anything on the
# host: runs the `netcat` Compose service (busybox + scripts/netcat-script.sh)
# on the `testing_net` network and relays its result line and exit code.
#
#   scripts/validar-echo-server.sh          # COMPOSE_FILE=... to use another file
#
# Prints `action: test_echo_server | result: success` (exit 0) or
# `action: test_echo_server | result: fail` (exit 1).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

compose_file=${COMPOSE_FILE:-docker-compose-dev.yaml}
network=tp0_testing_net
success='action: test_echo_server | result: success'
fail='action: test_echo_server | result: fail'

# `compose run` creates the network when the project is down; remove it
# again in that case so this script leaves nothing behind.
had_network=0
docker network inspect "$network" >/dev/null 2>&1 && had_network=1

out=$(docker compose -f "$compose_file" --profile netcat run --rm --no-deps -T netcat)
rc=$?

if [ "$had_network" = 0 ] && docker network inspect "$network" >/dev/null 2>&1; then
  docker network rm "$network" >/dev/null 2>&1 || true
fi

if [ "$rc" = 0 ] && [ "$out" = "$success" ]; then
  echo "$success"
  exit 0
fi
if [ "$out" != "$fail" ]; then
  # Not the script's own verdict (e.g. Docker could not run the container).
  [ -n "$out" ] && printf '%s\n' "$out" >&2
  echo "validar-echo-server: the netcat service did not run (exit code $rc)" >&2
fi
echo "$fail"
exit 1
