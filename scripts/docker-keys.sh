#!/usr/bin/env bash
# The server's secret and the agencies' keys for the Docker demo, on first
# use, without a Rust toolchain:
#   1. .data/secret: 32 random bytes as 64 hex characters, created once (never
#      overwritten), mode 0600 and owned by the server image's user (10001),
#      which is the only one that reads it (bind-mounted read-only into the
#      server). Created by a throw-away root container, since the host user
#      may not chown. Never committed (.gitignore) nor in an image
#      (.dockerignore).
#   2. .data/keys/agency-N.env (N = 1..AGENCIES): `CLI_KEY=<agency N's key>`,
#      mode 0600, for the host's `docker compose` to hand to client N only
#      (env_file). Rewritten from the secret every time, so a new secret
#      (rotation: remove .data/secret, run again) means new keys.
#
#   scripts/docker-keys.sh AGENCIES
# Environment: DATA_DIR (.data), SERVER_IMAGE (lottery-server:latest).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/args.sh
. scripts/args.sh
data_dir=${DATA_DIR:-.data}
image=${SERVER_IMAGE:-lottery-server:latest}
secret_in_container=/run/secrets/server-secret

mkdir -p "$data_dir"
data_abs=$(cd "$data_dir" && pwd)
docker image inspect "$image" >/dev/null 2>&1 || die "image $image not found; run 'make docker-image' first"

# Docker creates a (root-owned) directory when a bind source is missing.
[ ! -d "$data_dir/secret" ] ||
  die "$data_dir/secret is a directory (left by an earlier docker run?); remove it: sudo rmdir '$data_dir/secret'"
if [ ! -e "$data_dir/secret" ]; then
  echo "$prog: creating $data_dir/secret (the server's secret; mode 0600, owner 10001)" >&2
  docker run --rm --user 0:0 --network none -v "$data_abs:/d" --entrypoint /bin/sh "$image" -c '
    set -e; umask 077
    od -An -N32 -v -tx1 /dev/urandom | tr -d " \n" >/d/.secret.tmp
    [ "$(wc -c </d/.secret.tmp)" -eq 64 ]
    chown 10001:10001 /d/.secret.tmp
    mv /d/.secret.tmp /d/secret'
fi

mkdir -p "$data_dir/keys"
chmod 700 "$data_dir/keys"
[ "$agencies" -gt 0 ] || exit 0
# All keys from one container, as the server's user reading the secret the
# way the server does.
keys=$(docker run --rm --network none \
  -v "$data_abs/secret:$secret_in_container:ro" \
  -v "$PWD/config/server/config.ini:/config.ini:ro" \
  -e SERVER_SECRET_FILE="$secret_in_container" --entrypoint /bin/sh "$image" -c \
  'i=1; while [ "$i" -le "$1" ]; do server agency-key "$i" || exit 1; i=$((i + 1)); done' \
  sh "$agencies") || die "could not derive the agencies' keys from $data_dir/secret"
[ "$(printf '%s\n' "$keys" | grep -cE '^[0-9a-f]{64}$')" -eq "$agencies" ] ||
  die "expected $agencies keys from 'server agency-key'"
(
  umask 077
  i=1
  while read -r key; do
    f="$data_dir/keys/agency-$i.env"
    printf '# Agency %s key, from %s/secret (scripts/docker-keys.sh). Do not share.\nCLI_KEY=%s\n' \
      "$i" "$data_dir" "$key" >"$f.tmp"
    mv -f "$f.tmp" "$f"
    i=$((i + 1))
  done <<<"$keys"
)
echo "$prog: $data_dir/secret and $data_dir/keys/agency-1.env .. agency-$agencies.env ready" >&2
