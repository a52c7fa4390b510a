"""Docker end-to-end test of the packaged lottery (scripts/docker-e2e.sh runs
this; needs Docker with Compose v2; Python 3 standard library only).

Works on a temporary copy of the repository, so the student's .data/ and
files are never touched. The steps are the functions below, in order; the
checks on the files the containers leave are scripts/docker_e2e_check.py.
Prints a PASS/FAIL line per check and a summary; exit 0 iff all passed.

Environment: E2E_SCALE (0.2), E2E_TIMEOUT (300 s per wait),
  E2E_KEEP=1 (keep the temporary copy and logs even on success).
"""

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
from datetime import datetime

import docker_e2e_check as check
import docker_ha as ha

REPO = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
SCALE = os.environ.get("E2E_SCALE", "0.2")
WAIT = int(os.environ.get("E2E_TIMEOUT", "300"))
AGENCIES = 5
CLIENTS = [f"client{i}" for i in range(1, AGENCIES + 1)]
COMPOSE_FILE = "docker-compose-dev.yaml"
PROJECT = "tp0"
IMAGES = ["lottery-server:latest", "lottery-client:latest", "lottery-gen-data:latest"]
CLIENT_IMAGE_MAX = 16_000_000  # bytes, as `docker images` counts MB
ECHO_SUCCESS = "action: test_echo_server | result: success"
ECHO_FAIL = "action: test_echo_server | result: fail"
ART = "artifacts"  # inside the temporary copy
# The high-availability scenario: 3 servers over pg_auto_failover.
HA_ARGS = [f"N={AGENCIES}", "SERVERS=3", "HA=1"]
HA_COMPOSE_FILE = f"docker-compose-{AGENCIES}-3servers-ha.yaml"
HA_SERVERS = ["server1", "server2", "server3"]


def sh(*command, **kwargs):
    """Runs a command; its CompletedProcess with text output captured."""
    kwargs.setdefault("capture_output", True)
    return subprocess.run(command, text=True, **kwargs)


def ok(*command, **kwargs):
    return sh(*command, **kwargs).returncode == 0


def merged(*command):
    """A command's standard output and error, interleaved."""
    return subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def say(title):
    print(f"\n== {title}", flush=True)


class Tally:
    """The PASS/FAIL lines and the summary."""

    def __init__(self):
        self.start = time.monotonic()
        self.passed = self.failed = 0
        self.lines = []

    def record(self, passed, name, detail=""):
        line = "%-4s %s%s" % ("PASS" if passed else "FAIL", name, f" ({detail})" if detail else "")
        self.lines.append(line)
        print(line, flush=True)
        if passed:
            self.passed += 1
        else:
            self.failed += 1
        return passed

    def all_passed(self):
        return self.failed == 0 and self.passed > 0

    def finish(self, work):
        seconds = int(time.monotonic() - self.start)
        print("\n================ docker-e2e summary ================")
        print("\n".join(self.lines))
        print("----------------------------------------------------")
        if self.all_passed():
            print(f"PASS: {self.passed} checks passed in {seconds}s")
        else:
            total = self.passed + self.failed
            print(f"FAIL: {self.failed} of {total} checks failed in {seconds}s; logs in {work}/{ART}")
        # The plain closing line test harnesses read.
        print(f"{self.passed} passed, {self.failed} failed", flush=True)


T = Tally()


def logged(path, *command):
    """Runs the command with its output to `path`; its tail on failure."""
    with open(path, "w") as out:
        rc = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT).returncode
    if rc:
        with open(path) as f:
            print("".join("  | " + l for l in f.readlines()[-20:]), end="")
    return rc == 0


def exit_code(container):
    run = sh("docker", "inspect", "-f", "{{.State.ExitCode}}", container)
    return run.stdout.strip() if run.returncode == 0 else "missing"


def save_logs(suffix, *containers):
    for c in containers:
        with open(f"{ART}/{c}{suffix}.log", "w") as out:
            subprocess.run(["docker", "logs", c], stdout=out, stderr=subprocess.STDOUT)


def stored_rows_are(name, mode):
    """bets.csv from the server's volume (to artifacts/bets.NAME.csv) against
    the input rows: `equal` or a `subset`."""
    path = f"{ART}/bets.{name}.csv"
    copied = sh("docker", "cp", "server:/data/bets.csv", path)
    if copied.returncode:
        print(f"  docker cp server:/data/bets.csv: {copied.stderr.strip()}")
        return False
    return check.check_rows(path, ".data", AGENCIES, mode)


def container_env(container):
    return sh("docker", "inspect", "-f", "{{range .Config.Env}}{{println .}}{{end}}", container).stdout.splitlines()


def clients_exit_zero(name, since, what):
    """Waits for every client; PASS iff all exited 0."""
    try:
        codes = sh("docker", "wait", *CLIENTS, timeout=WAIT).stdout.split()
    except subprocess.TimeoutExpired:
        return T.record(False, f"clients did not all exit within {WAIT}s")
    for c, code in zip(CLIENTS, codes):
        print(f"  {c}={code}")
    return T.record(codes == ["0"] * AGENCIES, f"{name} ({int(time.monotonic() - since)}s {what})")


def nothing_left():
    label = f"label=com.docker.compose.project={PROJECT}"
    left = [
        f"{kind} {name}"
        for kind, f in (("container", label), ("network", label), ("volume", label),
                        ("network", f"name=^{PROJECT}_testing_net$"))
        for name in sh("docker", kind, "ls", "-aq" if kind == "container" else "-q", "--filter", f).stdout.split()
    ]
    for thing in left:
        print(f"  left: {thing}")
    return not left


def down_and_nothing_left(log):
    T.record(logged(f"{ART}/{log}", "make", "docker-compose-down"), "make docker-compose-down")
    T.record(nothing_left(), "nothing left behind (containers, network, volume)")


# ---- the steps ---------------------------------------------------------------


def static_checks():
    say("static checks")

    def shared_stages(dockerfile):
        """The instructions of the chef and planner stages (what the build cache keys on)."""
        text = open(dockerfile).read()
        stages = text[text.index("FROM rust:1-slim-bookworm AS chef") : text.index("FROM chef AS builder")]
        return [line for line in stages.splitlines() if line.strip() and not line.startswith("#")]

    T.record(shared_stages("Dockerfile.server") == shared_stages("Dockerfile.client"),
             "Dockerfile.server and Dockerfile.client share identical chef and planner stages")
    generated = sh("bash", "scripts/generar-compose.sh", "-", "5").stdout
    T.record(generated == open(COMPOSE_FILE).read(), "docker-compose-dev.yaml is generar-compose.sh's output for 5 clients")
    T.record(ok("docker", "compose", "-f", COMPOSE_FILE, "--profile", "netcat", "config", "-q"),
             "docker compose config accepts the compose file")
    generated = sh("bash", "scripts/generar-compose.sh", "-", "5", "--servers", "3", "--ha")
    T.record(generated.returncode == 0
             and ok("docker", "compose", "-f", "-", "--profile", "netcat", "config", "-q", input=generated.stdout),
             "generar-compose.sh - 5 --servers 3 --ha: a compose file docker compose accepts")
    refused = sh("bash", "scripts/generar-compose.sh", "-", "5", "--ha")
    T.record(refused.returncode == 2 and "--ha needs --servers K" in refused.stderr and not refused.stdout,
             "generar-compose.sh - 5 --ha (no --servers): refused, saying why")


def images():
    say("make docker-image")
    t = time.monotonic()
    if not logged(f"{ART}/docker-image.log", "make", "docker-image"):
        T.record(False, "make docker-image", f"see {ART}/docker-image.log")
        return False
    T.record(True, "make docker-image", f"{int(time.monotonic() - t)}s")
    for image in IMAGES:
        size = int(sh("docker", "image", "inspect", "-f", "{{.Size}}", image).stdout)
        user = sh("docker", "image", "inspect", "-f", "{{.Config.User}}", image).stdout.strip()
        uid = user.split(":")[0]
        T.record(size < 100_000_000 and user != "" and uid not in ("0", "root"),
                 f"{image}: {size // 1_000_000} MB (< 100 MB), user '{user}' (non-root)")
    size = int(sh("docker", "image", "inspect", "-f", "{{.Size}}", "lottery-client:latest").stdout)
    run = sh("docker", "run", "--rm", "--entrypoint", "/bin/ls", "lottery-client:latest", "/usr/local/bin")
    binaries = run.stdout.split()
    T.record(size <= CLIENT_IMAGE_MAX and binaries == ["client"],
             f"lottery-client:latest: {size / 1e6:.1f} MB (<= 16 MB), /usr/local/bin holds {' '.join(binaries)} only")
    return True


def data(work):
    say("data (.data/ of the temporary copy)")
    os.makedirs(".data", exist_ok=True)
    # A student's own file: must be used as is.
    mine = "José,Núñez,30904465,1999-03-17,7574\r\nMaría Inés,Pérez,2211003,1985-11-02,1234\r\n" \
           "Ana,De la Fuente,40111222,2001-01-31,7574\r\n"
    with open(".data/agency-3.csv", "w", encoding="utf-8", newline="") as f:
        f.write(mine)
    digest = hashlib.sha256(mine.encode()).hexdigest()
    # agency-2.csv only inside dataset.zip (as the course ships it).
    os.makedirs("zip-src")
    sh("docker", "run", "--rm", "--user", f"{os.getuid()}:{os.getgid()}", "-v", f"{work}/zip-src:/out",
       "lottery-gen-data:latest", "--out", "/out", "--agencies", "2", "--scale", SCALE, "--seed", "99")
    with zipfile.ZipFile(".data/dataset.zip", "w") as z:
        z.write("zip-src/agency-2.csv", "agency-2.csv")
    env = dict(os.environ, GEN_DATA_ARGS=f"--scale {SCALE} --seed 42")
    with open(f"{ART}/data.log", "w") as out:
        made = subprocess.run(["scripts/docker-data.sh", str(AGENCIES)], env=env, stdout=out, stderr=out).returncode == 0
    T.record(made, f"scripts/docker-data.sh {AGENCIES}", "" if made else f"see {ART}/data.log")
    T.record(hashlib.sha256(open(".data/agency-3.csv", "rb").read()).hexdigest() == digest,
             "hand-written agency-3.csv kept unchanged")
    T.record(ok("cmp", "-s", ".data/agency-2.csv", "zip-src/agency-2.csv"), "agency-2.csv extracted from dataset.zip")
    generated = [f".data/agency-{i}.csv" for i in (1, 4, 5)]
    T.record(all(os.path.isfile(p) and os.path.getsize(p) > 0 for p in generated), "agency-1,4,5.csv generated")
    print("".join("  " + l for l in sh("sh", "-c", "wc -l .data/agency-*.csv").stdout.splitlines(True)), end="")


def demo():
    say(f"make docker-compose-up ({AGENCIES} clients)")
    t = time.monotonic()
    if logged(f"{ART}/compose-up.log", "make", "docker-compose-up"):
        T.record(True, "make docker-compose-up", f"{int(time.monotonic() - t)}s")
        t = time.monotonic()
    else:
        T.record(False, "make docker-compose-up", f"see {ART}/compose-up.log")
    clients_exit_zero("every client exits 0", t, "after up")
    save_logs("", "server", *CLIENTS)
    st = os.stat(".data/secret") if os.path.exists(".data/secret") else None
    T.record(st is not None and (st.st_mode & 0o777, st.st_uid) == (0o600, 10001),
             "the secret was created on first use: .data/secret, mode 600, owner 10001 (the server's user)")
    for i in range(1, AGENCIES + 1):
        env = container_env(f"client{i}")
        keys = [e for e in env if e.startswith("CLI_KEY=")]
        own = [l.strip() for l in open(f".data/keys/agency-{i}.env") if l.startswith("CLI_KEY=")]
        T.record(len(keys) == 1 and keys == own and not any(e.startswith("SERVER_SECRET") for e in env),
                 f"client{i}'s environment holds its own key only")
    env = container_env("server")
    T.record("SERVER_SECRET_FILE=/run/secrets/server-secret" in env and not any(e.startswith("SERVER_SECRET=") for e in env),
             "the server reads its secret from the bind-mounted file (not the environment)")
    say("logs")
    logs = [f"{ART}/{c}.log" for c in CLIENTS]
    T.record(check.check_logs(f"{ART}/server.log", ".data", *logs),
             "logs: sorteo once, 5 consulta_ganadores with the right counts, grammar, no fail")
    for c in ["server", *CLIENTS]:
        os.rename(f"{ART}/{c}.log", f"{ART}/{c}.run1.log")


def stored_rows():
    say("stored rows")
    T.record(stored_rows_are("run1", "equal"), "bets.csv in the volume = the input rows")
    sh("docker", "restart", "-t", "10", "server")
    time.sleep(2)
    T.record(stored_rows_are("restart", "equal"),
             "bets.csv unchanged after a server restart (volume)")
    running = sh("docker", "inspect", "-f", "{{.State.Running}}", "server").stdout.strip()
    T.record(running == "true", "server running after the restart")


def impostor(work):
    say("an agency with another agency's key")
    bet = ["-e", "NOMBRE=Eva", "-e", "APELLIDO=Paz", "-e", "DOCUMENTO=42", "-e", "NACIMIENTO=1990-01-01", "-e", "NUMERO=7574"]
    run = merged("docker", "run", "--rm", "--network", f"{PROJECT}_testing_net", "-e", "CLI_ID=3",
                 "--env-file", ".data/keys/agency-2.env", "-e", "CLI_SERVER_ADDRESS=server:12345",
                 "-e", "CLI_RETRY_TIMEOUT=5s", *bet, "-v", f"{work}/config/client/config.yaml:/config.yaml:ro",
                 "lottery-client:latest")
    with open(f"{ART}/impostor.log", "w") as f:
        f.write(run.stdout)
    summary = " ".join(l for l in run.stdout.splitlines() if "action: client" in l)
    print(f"  {summary} (exit {run.returncode})")
    T.record(run.returncode != 0 and re.search(r"result: fail.*unauthorized", run.stdout) is not None,
             "agency 2's key claiming agency 3: ERROR unauthorized, exit non-zero")
    server_log = merged("docker", "logs", "server").stdout
    T.record("action: auth | result: fail | agencia: 3 | peer: " in server_log, "the server logs the failed AUTH")
    T.record(stored_rows_are("impostor", "equal"), "nothing stored for the impostor")


def echo_test():
    say("echo smoke test (netcat profile)")

    def echo(err):
        with open(f"{ART}/{err}", "w") as e:
            run = subprocess.run(["scripts/validar-echo-server.sh"], stdout=subprocess.PIPE, stderr=e, text=True)
        print(f"  {run.stdout.strip()} (exit {run.returncode})")
        return run.stdout.strip(), run.returncode

    T.record(echo("netcat-success.err") == (ECHO_SUCCESS, 0), "validar-echo-server.sh: success, exit 0")
    sh("docker", "stop", "-t", "10", "server")
    save_logs(".restart", "server")
    T.record(exit_code("server") == "0", "server exits 0 on SIGTERM (docker stop)")
    T.record(closes_logged(f"{ART}/server.restart.log"), "server logs its closes")
    T.record(echo("netcat-fail.err") == (ECHO_FAIL, 1), "validar-echo-server.sh with the server stopped: fail, exit 1")


def closes_logged(path):
    return re.search(r"action: close_[a-z_]* \| result: success", open(path, errors="replace").read()) is not None


def slow_clients():
    """An override file with one bet per batch and one batch in flight, so
    the ingest takes long enough to be interrupted (it changes only the
    clients' environment); its name."""
    with open("sigterm-override.yaml", "w") as f:
        f.write("services:\n" + "".join(
            f"  {c}:\n    environment:\n      - CLI_BATCH_MAXAMOUNT=1\n      - CLI_BATCH_WINDOW=1\n" for c in CLIENTS))
    return "sigterm-override.yaml"


def wait_for_ingest(*servers):
    """Waits (up to 60 s) until the servers have stored bets from every agency."""
    stored = re.compile(r"apuesta_recibida \| result: success \| cantidad: [0-9]+ \| agencia: ([0-9]+)")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        logs = "".join(merged("docker", "logs", s).stdout for s in servers)
        if len(set(stored.findall(logs))) >= AGENCIES:
            return
        time.sleep(0.5)
    print("  (not every agency had stored bets after 60 s)")


def up_mid_ingest(log):
    """Starts the demo with slow clients; waits until the server has
    stored bets from every agency."""
    logged(f"{ART}/{log}", "docker", "compose", "-f", COMPOSE_FILE, "-f", slow_clients(), "up", "-d")
    wait_for_ingest("server")


def sigterm_mid_ingest():
    say("SIGTERM while the clients are mid-ingest")
    up_mid_ingest("sigterm-up.log")
    running = sh("docker", "ps", "--format", "{{.Names}}", "--filter", f"label=com.docker.compose.project={PROJECT}")
    running = sorted(running.stdout.split())
    print(f"  running before stop: {' '.join(running)}")
    t = time.monotonic()
    logged(f"{ART}/sigterm-stop.log", "docker", "compose", "-f", COMPOSE_FILE, "stop", "-t", "10")
    elapsed = int(time.monotonic() - t)
    save_logs(".sigterm", "server", *CLIENTS)
    T.record(elapsed < 10, "docker compose stop -t 10 returns before the 10 s grace period ends")
    print(f"  stop took {elapsed}s")
    T.record(check.count(f"{ART}/server.sigterm.log", "action: sorteo | result: success") == 0,
             "no draw happened (the stop hit the ingest)")
    for c in ["server", *CLIENTS]:
        T.record(exit_code(c) == "0", f"{c} exits 0 after SIGTERM")
    T.record(closes_logged(f"{ART}/server.sigterm.log"), "server logs its closes")
    for c in CLIENTS:
        if c in running:
            T.record("action: shutdown | result: success" in open(f"{ART}/{c}.sigterm.log", errors="replace").read(),
                     f"{c} logs 'action: shutdown | result: success'")
    fails = [l for c in ["server", *CLIENTS] for l in open(f"{ART}/{c}.sigterm.log", errors="replace") if "result: fail" in l]
    print("".join(f"  (info) {l}" for l in fails[:10]), end="")
    T.record(stored_rows_are("sigterm", "subset"),
             "after SIGTERM the stored rows are a subset of the input (no torn rows)")
    down_and_nothing_left("compose-down2.log")


def restart_mid_ingest():
    say("server restart while the clients are mid-ingest")
    up_mid_ingest("restart-up.log")

    draws = merged("docker", "logs", "server").stdout.count("action: sorteo | result: success")
    sh("docker", "restart", "-t", "10", "server")
    recoveries = merged("docker", "logs", "server").stdout.count("action: recovery | result: success")
    T.record(draws == 0 and recoveries == 2,
             "server restarted mid-ingest (no draw before, recovery after)")
    clients_exit_zero("the clients resume and exit 0", time.monotonic(), "after the restart")
    save_logs(".restart-mid", "server", *CLIENTS)
    logs = [f"{ART}/{c}.restart-mid.log" for c in CLIENTS]
    T.record(check.check_logs(f"{ART}/server.restart-mid.log", ".data", *logs),
             "logs: sorteo once, 5 consulta_ganadores with the right counts, grammar, no fail")
    T.record(stored_rows_are("restart-mid", "equal"),
             "bets.csv = the input rows (nothing lost or duplicated by the restart)")
    down_and_nothing_left("compose-down3.log")


def finished_at(container):
    """When the container exited, as time.time() does."""
    stamp = sh("docker", "inspect", "-f", "{{.State.FinishedAt}}", container).stdout.strip()
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(whole + "+00:00").timestamp() + float("0." + (fraction or "0"))


def stored_on(node, name):
    """The bets table of the database on `node` (to artifacts/bets.NAME.csv)
    against the input rows, and every (agency, position) stored once."""
    path = f"{ART}/bets.{name}.csv"
    copy = ("COPY (SELECT agency, first_name, last_name, document, birthdate, number FROM bets) "
            "TO STDOUT WITH (FORMAT csv)")
    with open(path, "w") as out:
        subprocess.run(["docker", "exec", node, "psql", "-d", "lottery", "-AtXq", "-c", copy], stdout=out)
    counts = sh("docker", "exec", node, "psql", "-d", "lottery", "-AtXq", "-F", " ", "-c",
                "SELECT count(*), count(DISTINCT (agency, position)), (SELECT count(*) FROM draw) FROM bets")
    print(f"  on {node}: bets, distinct (agency, position), draws: {counts.stdout.strip() or counts.stderr.strip()}")
    numbers = counts.stdout.split()
    once = len(numbers) == 3 and numbers[0] == numbers[1] and numbers[2] == "1"
    return check.check_rows(path, ".data", AGENCIES, "equal") and once


def ha_failover():
    """3 servers over pg_auto_failover (make docker-compose-up SERVERS=3
    HA=1's layout, with slow clients); the primary's container killed
    mid-ingest, as make docker-ha-failover does."""
    say("HA: 3 servers over pg_auto_failover, the primary's container killed mid-ingest")
    began = time.monotonic()
    # The other images are built already: make docker-image HA=1 adds this
    # one build, the only one run here (each cached build costs seconds).
    build = ["docker", "build", "--force-rm", "-f", "Dockerfile.pgaf", "-t", "lottery-pgaf:latest", "scripts"]
    T.record(" ".join(build) in sh("make", "-n", "docker-image", *HA_ARGS).stdout,
             f"make docker-image {' '.join(HA_ARGS[1:])} builds lottery-pgaf")
    t = time.monotonic()
    built = logged(f"{ART}/ha-image.log", *build)
    T.record(built, "lottery-pgaf:latest built", f"{time.monotonic() - t:.0f}s")
    if not (built and logged(f"{ART}/ha-compose.log", "make", "compose", *HA_ARGS)
            and logged(f"{ART}/ha-keys.log", "scripts/docker-keys.sh", str(AGENCIES))):
        return
    t = time.monotonic()
    up = logged(f"{ART}/ha-up.log", "docker", "compose", "-f", HA_COMPOSE_FILE, "-f", slow_clients(), "up", "-d")
    T.record(up, "monitor, postgres1 (primary), postgres2 (standby), 3 servers, 5 slow clients up",
             f"{time.monotonic() - t:.0f}s")
    if not up:
        logged(f"{ART}/ha-down.log", "make", "docker-compose-down", *HA_ARGS)
        return
    wait_for_ingest(*HA_SERVERS)
    print(f"  before: {ha.describe(ha.states())}")
    try:
        old, new, took, killed_at = ha.failover(timeout=60)
        T.record(True, f"docker kill {old} (the primary) mid-ingest: {new} takes writes", f"{took:.1f}s")
    except ha.HaError as e:
        T.record(False, f"failover: {e}")
        old = new = None
        killed_at = time.time()
    logs = "".join(merged("docker", "logs", s).stdout for s in HA_SERVERS)
    print(f"  draws logged before the failover was over: {logs.count('action: sorteo | result: success')}")
    if clients_exit_zero("every client exits 0", time.monotonic(), "after the failover"):
        last = max(finished_at(c) for c in CLIENTS) - killed_at
        T.record(last > 0, "the ingest went on after the kill", f"kill -> last agency done: {last:.1f}s")
    save_logs(".ha", *HA_SERVERS, *CLIENTS, "monitor", *ha.NODES)
    T.record(all(ha.running(s) for s in HA_SERVERS), "server1..3 still running (none exited)")
    T.record(check.check_logs(f"{ART}/server1.ha.log", ".data", *[f"{ART}/{c}.ha.log" for c in CLIENTS],
                              failures_allowed=True, server_logs=[f"{ART}/{s}.ha.log" for s in HA_SERVERS[1:]]),
             "logs: sorteo once across the servers, 5 consulta_ganadores with the right counts, grammar")
    if new:
        T.record(stored_on(new, "ha"), f"bets on {new} (the new primary) = the input rows, each stored once, one draw")
        try:
            _, seconds = ha.rejoin(timeout=120)
            T.record(ha.states().get(old) == ("secondary", "secondary"),
                     f"{old} restarted (docker start) rejoins as the standby", f"{seconds:.1f}s")
        except ha.HaError as e:
            T.record(False, f"rejoin: {e}")
    t = time.monotonic()
    T.record(logged(f"{ART}/ha-down.log", "make", "docker-compose-down", *HA_ARGS),
             f"make docker-compose-down {' '.join(HA_ARGS)}", f"{time.monotonic() - t:.0f}s")
    T.record(nothing_left(), "nothing left behind (containers, network, volumes)")
    print(f"  HA scenario: {time.monotonic() - began:.0f}s")


# ---- setup and teardown -------------------------------------------------------


def preflight():
    """None when Docker is ready and the demo's containers are absent; else why not."""
    if not shutil.which("docker") or not ok("docker", "info"):
        return "no Docker engine (run offline-docker.sh first)"
    if not ok("docker", "compose", "version"):
        return "Docker Compose v2 (docker compose) is missing"
    names = sh("docker", "ps", "-a", "--format", "{{.Names}}").stdout.split()
    busy = [n for n in names
            if re.fullmatch(r"server[0-9]*|netcat|client[0-9]+|monitor|postgres[12]?", n) or re.match(r"tp0[-_]", n)]
    project = sh("docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={PROJECT}").stdout.strip()
    if busy or project:
        return f"containers of the demo exist already ({' '.join(busy)}); run 'make docker-compose-down' first"
    return None


def copy_repository(work):
    """The repository without build output: target/, .git, .data and
    CARGO_TARGET_DIR when it lies inside (the images build their own binaries)."""
    skip = {"target", ".git", ".data"}
    target = os.environ.get("CARGO_TARGET_DIR")
    if target:
        target = os.path.realpath(target)
        if target.startswith(REPO + os.sep):
            skip.add(os.path.relpath(target, REPO))

    def ignore(directory, names):
        rel = os.path.relpath(directory, REPO)
        return [n for n in names if os.path.normpath(os.path.join(rel, n)) in skip]

    shutil.copytree(REPO, work, symlinks=True, ignore=ignore, dirs_exist_ok=True)


def teardown(work):
    os.chdir(work)
    for compose_file in (COMPOSE_FILE, HA_COMPOSE_FILE):
        if os.path.exists(compose_file):
            sh("docker", "compose", "-f", compose_file, "--profile", "netcat", "down", "-v", "--remove-orphans", "-t", "1")
    if T.all_passed() and not os.environ.get("E2E_KEEP"):
        os.chdir("/")
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"docker-e2e: kept {work} (logs in {work}/{ART})")


def interrupted(*_):
    T.record(False, "interrupted")
    raise KeyboardInterrupt


def main():
    reason = preflight()
    if reason:
        print(f"docker-e2e: FAIL: {reason}", file=sys.stderr)
        return 1
    work = tempfile.mkdtemp(prefix="lottery-e2e.", dir=os.environ.get("TMPDIR", "/tmp"))
    copy_repository(work)
    os.chdir(work)
    os.makedirs(ART)
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    status = None
    try:
        static_checks()
        if images():
            data(work)
            demo()
            stored_rows()
            impostor(work)
            echo_test()
            say("make docker-compose-down")
            down_and_nothing_left("compose-down.log")
            sigterm_mid_ingest()
            restart_mid_ingest()
            ha_failover()
    except KeyboardInterrupt:
        status = 130
    except Exception:  # a broken step must still clean up and say so
        traceback.print_exc()
        T.record(False, "the test itself failed (traceback above)")
    T.finish(work)
    teardown(work)
    return status or (0 if T.all_passed() else 1)


if __name__ == "__main__":
    sys.exit(main())
