"""The high-availability demo's operations (`make docker-compose-up SERVERS=K
HA=1`; scripts/docker-ha.sh runs this): ask pg_auto_failover's monitor which
node is the primary, kill the primary's container and time the failover,
start a killed node again and time its return as the standby. Also imported
by the Docker end-to-end test (scripts/docker_e2e.py). Python 3 standard
library and the Docker CLI.

  scripts/docker-ha.sh state      # pg_autoctl show state, on the monitor
  scripts/docker-ha.sh primary    # the primary's name (= its container's)
  scripts/docker-ha.sh failover   # docker kill the primary; wait for the standby to take over
  scripts/docker-ha.sh rejoin     # docker start the stopped nodes; wait until one is the standby
"""

import subprocess
import sys
import time

PROG = "docker-ha.sh"
MONITOR = "monitor"
NODES = ("postgres1", "postgres2")
PGDATA = "/var/lib/postgresql/pgaf"
# A node that takes writes: alone (single), without its standby
# (wait_primary) or with it (primary); once the monitor and the node agree.
WRITABLE = ("single", "wait_primary", "primary")


class HaError(Exception):
    """What stops an operation, said in one line."""


def docker(*args, check=True):
    run = subprocess.run(["docker", *args], capture_output=True, text=True)
    if check and run.returncode:
        raise HaError(f"docker {' '.join(args[:2])}: {(run.stderr or run.stdout).strip()}")
    return run


def states():
    """Each node's (reported, assigned) state, as the monitor has them."""
    sql = ("SELECT nodehost, reportedstate, goalstate FROM pgautofailover.node ORDER BY nodeid")
    run = docker("exec", MONITOR, "psql", "-h", "/var/run/postgresql", "-d", "pg_auto_failover",
                 "-AtXq", "-F", " ", "-c", sql, check=False)
    if run.returncode:
        raise HaError(f"cannot ask the monitor ({run.stderr.strip() or 'is the HA demo up?'}); "
                      "start it with make docker-compose-up SERVERS=K HA=1")
    return {host: (reported, goal) for host, reported, goal in (l.split() for l in run.stdout.splitlines())}


def describe(now):
    """`postgres1 primary, postgres2 secondary` (reported/assigned while they differ)."""
    return ", ".join(f"{n} {r}" + (f"/{g}" if g != r else "") for n, (r, g) in now.items()) or "no nodes"


def primary(now=None):
    """The node that takes writes, or None (none, or a failover under way)."""
    found = [n for n, (reported, goal) in (now or states()).items() if reported == goal and reported in WRITABLE]
    return found[0] if len(found) == 1 else None


def wait_until(done, timeout, what):
    """Polls `done(states)` every 0.2 s; the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if done(states()):
                return time.monotonic() - start
        except HaError:
            pass  # the monitor itself restarting: ask again
        time.sleep(0.2)
    raise HaError(f"{what}: not after {timeout} s; now {describe(states())}")


def running(container):
    run = docker("inspect", "-f", "{{.State.Running}}", container, check=False)
    return run.stdout.strip() == "true"


def failover(timeout=90):
    """Kills the primary's container (SIGKILL: a crash, nothing said to the
    monitor) and waits until the other node takes writes. Returns (killed,
    new primary, seconds from the kill, the kill's time.time())."""
    old = primary()
    if old is None:
        raise HaError(f"no single primary now ({describe(states())}); see scripts/docker-ha.sh state")
    other = next(n for n in NODES if n != old)
    now = states()
    if now.get(other) != ("secondary", "secondary"):
        raise HaError(f"{other} is not the standby yet ({describe(now)}): killing {old} would stop "
                      "the writes until it is back; wait, or run scripts/docker-ha.sh rejoin")
    killed_at, start = time.time(), time.monotonic()
    docker("kill", old)
    wait_until(lambda s: primary(s) == other, timeout, f"{other} to take over from {old}")
    return old, other, time.monotonic() - start, killed_at


def rejoin(timeout=180):
    """Starts the node containers that are not running (a killed primary
    comes back as the standby: pg_rewind, then it follows); waits until the
    nodes are primary and secondary again. Returns (nodes started, seconds)."""
    stopped = [n for n in NODES if not running(n)]
    start = time.monotonic()
    for node in stopped:
        docker("start", node)
    wait_until(lambda s: sorted(r for r, g in s.values() if r == g) == ["primary", "secondary"],
               timeout, "a primary and a secondary")
    return stopped, time.monotonic() - start


def main(args):
    try:
        if args == ["state"]:
            run = docker("exec", MONITOR, "pg_autoctl", "show", "state", "--pgdata", PGDATA, check=False)
            if run.returncode:
                states()  # says why, in the words of the other commands
            sys.stdout.write(run.stdout)
        elif args == ["primary"]:
            name = primary()
            if name is None:
                raise HaError(f"no single primary now: {describe(states())}")
            print(name)
        elif args == ["failover"]:
            old, new, seconds, _ = failover()
            print(f"killed {old} (the primary, docker kill); {new} takes writes {seconds:.1f} s later")
            print(f"bring {old} back as the standby: make docker-ha-rejoin (docker start {old})")
        elif args == ["rejoin"]:
            started, seconds = rejoin()
            what = f"started {' '.join(started)}; " if started else "all nodes running; "
            print(f"{what}primary and secondary after {seconds:.1f} s: {primary()} is the primary")
        else:
            sys.stderr.write(__doc__)
            return 2
    except HaError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
