"""Throughput benchmark: the whole lottery (server + every agency) on loopback,
release build, durable (STORAGE_SYNC=always) and not (STORAGE_SYNC=none),
against the floor (the same bytes through one loopback TCP connection into
a file, then fsync). Results and how to read them: docs/PERFORMANCE.md.
Python 3 standard library only; scripts/bench.sh and `make bench` run it.

  scripts/bench.sh              # the usual points: 1x 10x 10m
  scripts/bench.sh 1x 10x       # some points
  scripts/bench.sh 10mw         # 10M, every bet a winner (memory; see below)
  RUNS=5 scripts/bench.sh 1x    # runs per point (default 3)

  MODES="always postgres" scripts/bench.sh 1x 10x   # with the PostgreSQL backend

Points (data generated once with examples/gen-data, cached in
.data/bench/<point>/):
  1x   5 agencies, the course's shape (26,936 / 25,518 / 16,014 / 9,238 / 991 = 78,697 bets)
  10x  5 agencies, ten times that (786,970 bets)
  10m  100 agencies, 10,000,000 bets split evenly
  10mw 10M, all winners: 10m's files with every number set to the winning one
       (7574). After the lottery the server is restarted on the same storage
       and every agency asks for its winners again: `restart` figures are that
       second server's peak RSS and the time until every agency has all of its
       winners (the agencies' processes included).

Environment:
  RUNS=3             runs per point and mode (min / median / max are reported)
  MODES="always none" storage modes to run: STORAGE_SYNC=always, =none, and
                     `postgres`: the server on the PostgreSQL backend (built with
                     --features postgres) against a throwaway cluster this script
                     starts (Debian's postgresql; durable: fsync=on,
                     synchronous_commit=on; a fresh database per run), next to
                     `psql \\copy` of the same files into an indexed table
                     (the same primary key and partial index), timed per run;
                     PostgreSQL's own CPU shows as "other CPU" (not ours);
                     `postgres3`: the same with three servers on the database,
                     agency i first on server i mod 3 with the other two as
                     failover (RSS and CPU are the first server's);
                     `postgresha`: three servers over a pg_auto_failover
                     cluster (scripts/ha_cluster.py: a primary and its
                     synchronous secondary, durable; needs Debian's
                     postgresql-15-auto-failover and pg-auto-failover-cli)
  BENCH_DATA=.data/bench   where the generated agency files are cached
  BENCH_TMP=$TMPDIR  where each run's fresh storage directory is created
                     (the floor writes there too: keep them on one filesystem)
  BENCH_KEEP=1       keep every run's directory (logs, bets.csv) and print it
  BENCH_OUT=FILE     also write the key=value lines to FILE
  BENCH_NO_BUILD=1   use the binaries already built (release)
  GNU_TIME=path      GNU time (default /usr/bin/time, installed with apt-get when
                     missing and possible; without it client RSS/CPU are n/a)
  STRICT=1           exit 1 when a target of the issue is missed
  CARGO_TARGET_DIR   honoured: the binaries are where cargo builds them
                     (`cargo metadata`: CARGO_TARGET_DIR, build.target-dir or target/)
  SERVER_WORKERS, SERVER_LISTEN_BACKLOG (default 1024 here), CLI_BATCH_MAXAMOUNT,
  CLI_BATCH_WINDOW, CLI_WINNERS_MAXBACKOFF, ...: passed through to the binaries.

Agencies authenticate as users run them: a fresh secret per invocation
(SERVER_SECRET), each agency's key from `server agency-key N`, computed
before any clock starts. How each run is made and checked:
scripts/bench_lottery.py.

Output: a table per point and machine-readable lines such as
`bench.1x.always.wall_median_s=0.083`.
"""

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

from bench_figures import Figures, die
from bench_lottery import Lottery, RunFailed
from bench_postgres import Cluster, HaCluster

POINTS = ("1x", "10x", "10m", "10mw")
MODES = ("always", "none", "postgres", "postgres3", "postgresha")
GEN_ARGS = {"1x": "--scale 1", "10x": "--scale 10", "10m": "--total 10000000", "10mw": "--total 10000000"}
WINNING_NUMBER = "7574"


def run_quietly(command, **kwargs):
    return subprocess.run(command, stdout=subprocess.DEVNULL, **kwargs).returncode == 0


def target_dir():
    """Where cargo builds (`cargo metadata`); without cargo, CARGO_TARGET_DIR or target/."""
    try:
        meta = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"],
                              capture_output=True, text=True)
        return json.loads(meta.stdout)["target_directory"]
    except (OSError, ValueError, KeyError):
        return os.environ.get("CARGO_TARGET_DIR") or "target"


def find_gnu_time():
    """GNU time's path, or None: then the server's figures come from /proc
    and the clients' are n/a."""
    path = os.environ.get("GNU_TIME") or "/usr/bin/time"
    if not os.access(path, os.X_OK) and not os.environ.get("GNU_TIME"):
        if shutil.which("apt-get") and os.getuid() == 0:
            print("== installing GNU time (apt-get install time)", flush=True)
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            quiet = {"stderr": subprocess.DEVNULL, "env": env}
            run_quietly(["apt-get", "update", "-qq"], **quiet) and run_quietly(
                ["apt-get", "install", "-y", "-qq", "time"], **quiet)
    if os.access(path, os.X_OK) and run_quietly([path, "-f", "%M", "-o", "/dev/null", "true"],
                                                stderr=subprocess.DEVNULL):
        return path
    print(f"bench: WARNING: GNU time ({path}) is missing: server RSS/CPU come from /proc, "
          "client RSS/CPU are not measured (n/a). Install it with: apt-get install time", file=sys.stderr)
    return None


class Bench:
    """The invocation's settings, binaries and data."""

    def __init__(self, argv):
        runs = os.environ.get("RUNS", "3")
        if not runs.isdigit() or int(runs) == 0:
            die("RUNS must be a positive whole number")
        self.runs = int(runs)
        self.modes = os.environ.get("MODES", "always none").split()
        for m in self.modes:
            if m not in MODES:
                die(f"MODES: unknown storage mode '{m}'")
        self.with_pg = any(m.startswith("postgres") for m in self.modes)
        self.with_ha = "postgresha" in self.modes
        self.points = argv or ["1x", "10x", "10m"]
        for p in self.points:
            if p not in POINTS:
                die(f"unknown point '{p}' (1x, 10x, 10m or 10mw)")
        self.data_root = os.environ.get("BENCH_DATA", ".data/bench")
        self.tmp_root = os.environ.get("BENCH_TMP") or os.environ.get("TMPDIR") or "/tmp"
        self.bin = f"{target_dir()}/release"
        self.backlog = os.environ.get("SERVER_LISTEN_BACKLOG", "1024")
        self.keep = bool(os.environ.get("BENCH_KEEP"))
        self.gnu_time = find_gnu_time()
        self.secret = os.urandom(32).hex()

    def agencies(self, point):
        return 100 if point in ("10m", "10mw") else 5

    def restarts(self, point):
        """Points whose lottery is followed by a restart and a second round of winners."""
        return point == "10mw"

    def agency_file(self, point, i):
        return f"{self.data_root}/{point}/agency-{i}.csv"

    def spec_value(self, point, key):
        with open(f"{self.data_root}/{point}/SPEC") as f:
            return next(int(l.split("=", 1)[1]) for l in f if l.startswith(f"{key}="))

    def rows(self, point):
        return self.spec_value(point, "rows")

    def build(self):
        """Builds the binaries (unless BENCH_NO_BUILD); the source revision they are of."""
        if os.environ.get("BENCH_NO_BUILD"):
            source = f"prebuilt ({self.bin})"
        else:
            print("== building (release): server, client, examples gen-data and floor", flush=True)
            features = ["--features", "postgres"] if self.with_pg else []
            cargo = ["cargo", "build", "--release", "--quiet", *features, "--bins", "--example", "gen-data",
                     "--example", "floor"]
            if subprocess.run(cargo).returncode:
                sys.exit(1)
            git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
            source = git.stdout.strip() or "unknown"
            status = subprocess.run(["git", "--no-optional-locks", "status", "--porcelain", "--", "src",
                                     "Cargo.toml", "Cargo.lock"], capture_output=True, text=True)
            if status.stdout.strip():
                source += "+uncommitted"
        for b in ("server", "client", "examples/gen-data", "examples/floor"):
            if not os.access(f"{self.bin}/{b}", os.X_OK):
                die(f"{self.bin}/{b} is missing after the build")
        return source

    def generator_version(self):
        """The generator's output for 100 rows stands for its version: data
        made by an older generator is made again."""
        with tempfile.TemporaryDirectory() as sample:
            run_quietly([f"{self.bin}/examples/gen-data", "--out", sample, "--agencies", "1", "--total", "100",
                         "--seed", "1"])
            with open(f"{sample}/agency-1.csv", "rb") as f:
                cksum = subprocess.run(["cksum"], stdin=f, capture_output=True, text=True).stdout
        return cksum.split()[0]

    def prepare_data(self, point, generator):
        """Generates the point's files once; SPEC records what was generated
        (and is written last, so an interrupted generation is redone)."""
        directory = f"{self.data_root}/{point}"
        spec = f"agencies={self.agencies(point)} args={GEN_ARGS[point]} seed=1 generator={generator}"
        if point == "10mw":
            spec += f" numbers={WINNING_NUMBER}"
        try:
            with open(f"{directory}/SPEC") as f:
                if f.readline().rstrip("\n") == spec:
                    return
        except OSError:
            pass
        print(f"== generating {point} data in {directory} ({spec})", flush=True)
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory)
        if point == "10mw":
            self.all_winners(directory, generator)
        elif not run_quietly([f"{self.bin}/examples/gen-data", "--out", directory, "--agencies",
                              str(self.agencies(point)), *GEN_ARGS[point].split(), "--seed", "1"]):
            die(f"gen-data failed for {point}")
        rows = size = 0
        for path in glob.glob(f"{directory}/agency-*.csv"):
            with open(path, "rb") as f:
                data = f.read()
            rows, size = rows + data.count(b"\n"), size + len(data)
        with open(f"{directory}/SPEC", "w") as f:
            f.write(f"{spec}\nrows={rows}\nbytes={size}\n")

    def all_winners(self, directory, generator):
        """10mw: 10m's rows with the last field (the number) set to the winning one."""
        self.prepare_data("10m", generator)
        last_field = re.compile(rb",[0-9]*\r$", re.M)
        for path in glob.glob(f"{self.data_root}/10m/agency-*.csv"):
            with open(path, "rb") as f:
                data = last_field.sub(b"," + WINNING_NUMBER.encode() + b"\r", f.read())
            if any(not line.endswith(b",7574\r") for line in data.split(b"\n")[:-1]):
                die("10mw: a row without the winning number")
            with open(f"{directory}/{os.path.basename(path)}", "wb") as f:
                f.write(data)


def machine_line(tmp_root):
    with open("/proc/cpuinfo") as f:
        model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
    df = subprocess.run(["df", "-PT", tmp_root], capture_output=True, text=True).stdout.splitlines()
    fs = df[1].split()[1] if len(df) > 1 else "?"
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    return (f"== machine: {len(os.sched_getaffinity(0))} cores, {model}, kernel {os.uname().release}, "
            f"storage in {tmp_root} ({fs}), load average {load}")


def measure(bench, figures, lottery, cluster):
    """Every point: the runs, the table and the targets; True if a target was missed."""
    missed = False
    for point in bench.points:
        n = bench.agencies(point)
        print(f"\n== {point}: {bench.rows(point)} bets over {n} agencies, {bench.runs} runs", flush=True)
        for i in range(1, n + 1):  # into the page cache, like every later run
            with open(bench.agency_file(point, i), "rb") as f:
                while f.read(1 << 20):
                    pass
        for run in range(1, bench.runs + 1):
            for mode in bench.modes:
                lottery.run_once(point, mode, run)
            lottery.floor_once(point, run)
            if cluster:
                files = [os.path.abspath(bench.agency_file(point, i)) for i in range(1, n + 1)]
                seconds = cluster.copy_seconds(files, bench.rows(point))
                figures.add(f"{point}.pgcopy.wall", seconds)
                print("   run %d psql   \\copy %.3f s" % (run, seconds), flush=True)
        figures.report(point, bench.rows(point), bench.spec_value(point, "bytes"), n, bench.restarts(point),
                       bench.with_pg)
        missed = figures.targets(point) or missed
    return missed


def main(argv):
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    os.environ["LC_ALL"] = "C"
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    bench = Bench(argv)
    source = bench.build()
    print(machine_line(bench.tmp_root))
    print(f"== binaries: {bench.bin}, source {source}", flush=True)
    generator = bench.generator_version()
    figures = Figures(bench.modes, bench.runs)
    cluster = ha = lottery = None
    try:
        cluster = Cluster(bench.tmp_root) if bench.with_pg else None
        ha = HaCluster(bench.tmp_root) if bench.with_ha else None
        for point in bench.points:
            bench.prepare_data(point, generator)
        lottery = Lottery(bench, figures, cluster, ha)
        missed = measure(bench, figures, lottery, cluster)
    except RunFailed as e:
        lottery.keep_failed_run(str(e))
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        if lottery:
            lottery.cleanup()
        if cluster:
            cluster.stop()
        if ha:
            ha.stop()
    kv = [f"bench.source={source}"] + figures.kv
    print()
    print("\n".join(kv))
    if os.environ.get("BENCH_OUT"):
        with open(os.environ["BENCH_OUT"], "w") as f:
            f.write("\n".join(kv) + "\n")
    return 1 if os.environ.get("STRICT") and missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
