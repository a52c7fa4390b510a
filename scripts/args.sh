# Sourced by the Docker helper scripts: their name for messages, `die`, and
# the one argument they all take, the number of agencies (0..999), checked
# and left in $agencies.
prog=${0##*/}
die() { echo "$prog: $*" >&2; exit 1; }
if [ $# -ne 1 ] || ! [[ $1 =~ ^[0-9]{1,3}$ ]]; then
  die "usage: $prog AGENCIES (0..999)"
fi
agencies=$((10#$1))
