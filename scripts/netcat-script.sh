#!/bin/sh
# Echo smoke test of the lottery server, run inside the `netcat` Compose
# service (busybox image: POSIX sh + busybox nc/od, nothing else needed).
#
# Sends one ECHO frame (type 0x0A, 2-byte big-endian length, payload) to
# $SERVER_HOST:$SERVER_PORT, half-closes, and compares the reply byte for byte.
# Prints exactly one line on stdout:
#   action: test_echo_server | result: success      (exit 0)
#   action: test_echo_server | result: fail         (exit 1)
# The reason for a failure goes to stderr.
host=${SERVER_HOST:-server}
port=${SERVER_PORT:-12345}
secs=${NETCAT_TIMEOUT:-5}       # per attempt
attempts=${NETCAT_ATTEMPTS:-3}  # the server may still be starting

payload="test_echo_server $(date +%s)-$$"
len=${#payload}

# Writes the ECHO frame: \012 = 0x0A, then the length in octal escapes.
frame() {
  printf "\\012\\$(printf '%03o' $((len / 256)))\\$(printf '%03o' $((len % 256)))%s" "$payload"
}
hex() { od -An -v -tx1 | tr -d ' \n'; }

expected=$(frame | hex)
got=
i=1
while [ "$i" -le "$attempts" ]; do
  got=$(frame | timeout "$secs" nc -w "$secs" "$host" "$port" | hex)
  [ "$got" = "$expected" ] && break
  [ "$i" -lt "$attempts" ] && sleep 1
  i=$((i + 1))
done

if [ "$got" = "$expected" ]; then
  echo "action: test_echo_server | result: success"
  exit 0
fi
if [ -z "$got" ]; then
  echo "netcat-script: no reply from $host:$port after $attempts attempt(s)" >&2
else
  echo "netcat-script: reply from $host:$port differs: sent $expected, got $got" >&2
fi
echo "action: test_echo_server | result: fail"
exit 1
