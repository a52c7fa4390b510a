"""One run of the benchmark (scripts/bench.py): the whole lottery on loopback,
the restart that follows it at 10mw, and the floor.

Per run: fresh storage directory, `sync`, start the server (LOGGING_LEVEL=INFO,
as users run it) and wait for its listen line, start every agency's process
and hold it at a FIFO gate, open the gates together once every process waits
at its gate, time from the first gate opening to the last client exit (so
the start of 100 processes is not counted; `client launch s` shows how long
opening the gates took), SIGTERM the server. Each process runs under GNU
time for its peak RSS and CPU time. A run fails loudly unless every client
exits 0 with its summary, the server exits 0 after the draw, and the
storage holds exactly the input rows.
"""

import errno
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from bench_figures import NA, fmt

LISTEN = re.compile(r"action: listen \| result: success \| address: (.*)")
OPENED = re.compile(r"action: (recovery|storage_open) \| result: success")
SUMMARY = "action: resumen | result: success"
SENT = re.compile(r"action: resumen \| result: success \| apuestas_enviadas: (\d*)")
WIRE_BYTES = re.compile(r"\| bytes_enviados: (\d*)")
WINNERS = re.compile(r"action: consulta_ganadores \| result: success \| cant_ganadores: (\d*)")
DRAW = "action: sorteo | result: success"
DRAWN = re.compile(r"action: sorteo \| result: success \| ganadores: (\d*)")
TIME_FORMAT = ["-f", "%M %U %S", "-o"]
CLK_TCK = os.sysconf("SC_CLK_TCK")


class RunFailed(Exception):
    """A run that must not count: the reason; its directory is kept."""


def busy_seconds():
    """CPU seconds the whole machine spent busy so far (all cores, /proc/stat)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    user, nice, system, irq, softirq = (int(fields[i]) for i in (1, 2, 3, 6, 7))
    return round((user + nice + system + irq + softirq) / CLK_TCK, 2)


def lines_of(paths):
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as f:
            yield from f


def total(pattern, paths):
    """Sum of the pattern's first group over every matching line."""
    return sum(int(m.group(1) or 0) for line in lines_of(paths) if (m := pattern.search(line)))


def time_line(path):
    """GNU time's last line: (peak RSS KiB, user s, system s)."""
    with open(path) as f:
        rss, user, system = f.read().splitlines()[-1].split()
    return int(rss), float(user), float(system)


def tail(path, n):
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.readlines()[-n:]


def count_newlines(path):
    count = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            count += chunk.count(b"\n")
    return count


def gated(gate, log, argv, env):
    """Starts `argv` behind the FIFO `gate`: a shell waits until a line
    arrives there, then execs it (output to `log`)."""
    os.mkfifo(gate)
    with open(log, "wb") as out:
        return subprocess.Popen(["sh", "-c", 'read -r _ <"$0" && exec "$@"', gate, *argv], env=env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=out)


def gates_held(gates, processes):
    """Each gate opened for writing once its shell waits there (opening a
    FIFO for writing without blocking fails while it has no reader), so
    the clock, started next, counts no process's start-up before its gate."""
    fds = []
    for i, (gate, p) in enumerate(zip(gates, processes), start=1):
        while True:
            try:
                fds.append(os.open(gate, os.O_WRONLY | os.O_NONBLOCK))
                break
            except OSError as e:
                if e.errno != errno.ENXIO:
                    raise
            if p.poll() is not None:
                raise RunFailed(f"agency {i} exited {p.returncode} before its gate opened")
            time.sleep(0.001)
    return fds


def open_gates(fds):
    for fd in fds:
        os.write(fd, b"go\n")
        os.close(fd)


def wait_exit_codes(processes):
    return [p.wait() for p in processes]


class Lottery:
    """Runs the lottery for the benchmark's points; `figures` gets each run's values."""

    def __init__(self, bench, figures, cluster, ha=None):
        self.b = bench
        self.figures = figures
        self.cluster = cluster
        self.ha = ha
        self.keys = [None]
        self.launcher = None
        self.server_pid = None
        self.extra = []
        self.clients = []
        self.run_dir = None

    # ---- processes

    def agency_keys(self, n):
        """Each agency's key from `server agency-key N`, before any clock starts."""
        env = dict(os.environ, SERVER_CONFIG="config/server/config.ini", SERVER_SECRET=self.b.secret)
        for i in range(len(self.keys), n + 1):
            run = subprocess.run([f"{self.b.bin}/server", "agency-key", str(i)], env=env, capture_output=True, text=True)
            if run.returncode:
                raise RunFailed(f"server agency-key {i} failed")
            self.keys.append(run.stdout.strip())

    def server_env(self, n, storage):
        return dict(
            os.environ,
            SERVER_CONFIG="config/server/config.ini",
            SERVER_IP="127.0.0.1",
            SERVER_PORT="0",
            SERVER_AGENCIES=str(n),
            SERVER_SECRET=self.b.secret,
            SERVER_LISTEN_BACKLOG=self.b.backlog,
            LOGGING_LEVEL="INFO",
            **storage,
        )

    def start_server(self, env, log, timing):
        """Starts the server (under GNU time writing `timing`, if there is
        one) and finds the server's own pid."""
        timer = [self.b.gnu_time, *TIME_FORMAT, timing] if self.b.gnu_time and timing else []
        with open(log, "wb") as out:
            self.launcher = subprocess.Popen(timer + [f"{self.b.bin}/server"], env=env, stdout=out, stderr=out)
        self.server_pid = self.launcher.pid if not timer else None
        for _ in range(1000):
            if self.server_pid:
                break
            try:
                with open(f"/proc/{self.launcher.pid}/task/{self.launcher.pid}/children") as f:
                    self.server_pid = int(f.read().split()[0])
            except (OSError, IndexError):
                if self.launcher.poll() is not None:
                    break
                time.sleep(0.005)
        if not self.server_pid:
            raise RunFailed("server did not start")

    def await_address(self, log, tries, needs_storage, alive):
        """The address of the server writing `log`, once it listens (and has
        opened its storage when `needs_storage`); polled every 5 ms."""
        for _ in range(tries):
            with open(log, encoding="utf-8", errors="replace") as f:
                text = f.read()
            m = LISTEN.search(text)
            if m and (not needs_storage or OPENED.search(text)):
                return m.group(1)
            if alive is not None and alive.poll() is not None:
                return None
            time.sleep(0.005)
        return None

    def stop_server(self):
        """SIGTERM to the server; its exit status, and whether it had already exited."""
        early = self.launcher.poll() is not None
        if not early:
            os.kill(self.server_pid, signal.SIGTERM)
        rc = self.launcher.wait()
        self.launcher = self.server_pid = None
        return rc, early

    def cleanup(self):
        """Ends whatever a run left behind (on failure or interrupt)."""
        for p in self.clients + self.extra:
            p.terminate()
        if self.launcher:
            try:
                os.kill(self.server_pid or self.launcher.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            self.launcher.wait()
        if self.run_dir and not self.b.keep:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def keep_failed_run(self, reason):
        """Prints why a run failed and the logs' tails; keeps its directory."""
        d = self.run_dir
        print(f"bench: RUN FAILED: {reason}", file=sys.stderr)
        if not d:
            return
        print(f"bench: logs kept in {d}", file=sys.stderr)
        if os.path.isfile(f"{d}/server.log"):
            sys.stderr.write("--- server.log (tail)\n" + "".join(tail(f"{d}/server.log", 15)))
        for log in sorted(glob.glob(f"{d}/client-*.log")):
            if SUMMARY not in "".join(lines_of([log])):
                sys.stderr.write(f"--- {os.path.basename(log)} (tail)\n" + "".join(tail(log, 3)))
                break
        self.run_dir = None

    # ---- one run

    def run_once(self, point, mode, run):
        """The lottery once for (point, mode): records its figures."""
        n, rows = self.b.agencies(point), self.b.rows(point)
        self.agency_keys(n)
        self.run_dir = d = tempfile.mkdtemp(prefix="lottery-bench.", dir=self.b.tmp_root)
        os.sync()
        busy0 = busy_seconds()
        storage = {"STORAGE_FILEPATH": f"{d}/bets.csv", "STORAGE_SYNC": mode}
        if mode.startswith("postgres"):
            self.database(mode).fresh_database("lottery_bench")
            storage = {"STORAGE_BACKEND": "postgres",
                       "STORAGE_URL": self.database(mode).database_url("lottery_bench")}
        env = self.server_env(n, storage)
        self.start_server(env, f"{d}/server.log", f"{d}/server.time")
        address = self.await_address(f"{d}/server.log", 2000, True, self.launcher)
        if address is None:
            raise RunFailed("server exited at start" if self.launcher.poll() is not None else
                            "server did not report its address within 10 s")
        servers = [address] + (self.start_more_servers(env) if mode in ("postgres3", "postgresha") else [])
        started, launched, ended, failed = self.race(point, n, servers)
        proc_rss, proc_cpu = self.proc_figures()
        rc, early = self.stop_server()
        for p in self.extra:
            early = early or p.poll() is not None
            p.terminate()
            rc = p.wait() or rc
        self.extra = []
        busy1 = busy_seconds()
        if early:
            raise RunFailed(f"the server had exited before SIGTERM (exit status {rc})" + "".join(f"; {f}" for f in failed))
        drawn = self.check(mode, n, rows, rc, failed)
        self.record(point, mode, run, n, rows, started, launched, ended, busy1 - busy0, proc_rss, proc_cpu)
        if self.b.restarts(point) and not mode.startswith("postgres"):
            self.restart_round(point, mode, run, drawn)
        if self.b.keep:
            print(f"   kept {d}")
        else:
            shutil.rmtree(d)
        self.run_dir = None

    def database(self, mode):
        """The cluster of a PostgreSQL mode: the HA one for `postgresha`."""
        return self.ha if mode == "postgresha" else self.cluster

    def start_more_servers(self, env):
        """postgres3: two more servers on the same database (started once the
        first has created the schema); their addresses."""
        addresses = []
        for k in (2, 3):
            with open(f"{self.run_dir}/server-{k}.log", "wb") as out:
                self.extra.append(subprocess.Popen([f"{self.b.bin}/server"], env=env, stdout=out, stderr=out))
            address = self.await_address(f"{self.run_dir}/server-{k}.log", 2000, False, None)
            if address is None:
                raise RunFailed(f"server {k} did not report its address within 10 s")
            addresses.append(address)
        return addresses

    def race(self, point, n, servers):
        """Every agency against the servers, started at once at the gates:
        (started, launched, ended, failures). Agency i starts on server
        i mod the number of servers, the others as its failover list."""
        d = self.run_dir
        timed = [self.b.gnu_time, *TIME_FORMAT] if self.b.gnu_time else []
        self.clients = []
        for i in range(1, n + 1):
            order = ",".join(servers[(i + j) % len(servers)] for j in range(len(servers)))
            env = dict(os.environ, CLI_CONFIG="config/client/config.yaml", CLI_SERVER_ADDRESS=order, CLI_ID=str(i),
                       CLI_KEY=self.keys[i], CLI_BETS_FILE=self.b.agency_file(point, i))
            argv = timed + ([f"{d}/client-{i}.time"] if timed else []) + [f"{self.b.bin}/client"]
            self.clients.append(gated(f"{d}/gate-{i}", f"{d}/client-{i}.log", argv, env))
        gates = gates_held([f"{d}/gate-{i}" for i in range(1, n + 1)], self.clients)
        started = time.perf_counter()
        open_gates(gates)
        launched = time.perf_counter()
        codes = wait_exit_codes(self.clients)
        ended = time.perf_counter()
        self.clients = []
        failed = [f"agency {i} exited {rc}" for i, rc in enumerate(codes, start=1) if rc]
        return started, launched, ended, failed

    def proc_figures(self):
        """The server's peak RSS (KiB) and CPU (s) from /proc, read before it
        exits, when GNU time is not there to give them."""
        if self.b.gnu_time:
            return NA, NA
        try:
            with open(f"/proc/{self.server_pid}/status") as f:
                rss = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
            with open(f"/proc/{self.server_pid}/stat") as f:
                stat = f.read().rsplit(")", 1)[1].split()
            return rss, (int(stat[11]) + int(stat[12])) / CLK_TCK
        except (OSError, StopIteration):
            return NA, NA

    def check(self, mode, n, rows, rc, failed):
        """The run's checks; returns the number of winners drawn."""
        d = self.run_dir
        clients = [f"{d}/client-{i}.log" for i in range(1, n + 1)]
        for i, log in enumerate(clients, start=1):
            if SUMMARY not in "".join(lines_of([log])):
                last = tail(log, 1)
                failed.append(f"agency {i}: no summary line ({last[0].rstrip() if last else ''})")
        if failed:
            raise RunFailed(" ".join(failed))
        if rc:
            raise RunFailed(f"server exited {rc}")
        servers = sorted(glob.glob(f"{d}/server*.log"))
        draws = sum(DRAW in line for line in lines_of(servers))
        if draws != 1:
            raise RunFailed(f"{draws} draws in the server logs, expected 1")
        if mode.startswith("postgres"):
            stored = int(self.database(mode).psql("lottery_bench", "-c", "SELECT count(*) FROM bets")[1])
        else:
            stored = count_newlines(f"{d}/bets.csv")
        if stored != rows:
            raise RunFailed(f"storage holds {stored} rows, the agencies' files {rows}")
        sent = total(SENT, clients)
        if sent != rows:
            raise RunFailed(f"agencies report {sent} bets sent, their files hold {rows}")
        winners, drawn = total(WINNERS, clients), total(DRAWN, servers)
        if winners != drawn:
            raise RunFailed(f"agencies report {winners} winners, the draw {drawn}")
        return drawn

    def record(self, point, mode, run, n, rows, started, launched, ended, busy, proc_rss, proc_cpu):
        """Records the run's figures and prints its line."""
        d = self.run_dir
        wall = ended - started
        crss = ccpu = other = NA
        if self.b.gnu_time:
            rss, user, system = time_line(f"{d}/server.time")
            srss, scpu = rss / 1024, user + system
            clients = [time_line(f"{d}/client-{i}.time") for i in range(1, n + 1)]
            crss = max(c[0] for c in clients) / 1024
            ccpu = sum(c[1] + c[2] for c in clients)
            # Busy CPU of the whole machine during the run that was not ours
            # (other processes, this script, GNU time, interrupts): a noisy run shows here.
            other = busy - round(scpu, 6) - round(ccpu, 6)
        else:
            srss = NA if proc_rss == NA else proc_rss / 1024
            scpu = proc_cpu
        key = f"{point}.{mode}"
        clients = [f"{d}/client-{i}.log" for i in range(1, n + 1)]
        wire = total(WIRE_BYTES, clients) / rows
        for metric, value in (("wall", wall), ("rate", rows / wall), ("srss", srss), ("scpu", scpu), ("crss", crss),
                              ("ccpu", ccpu), ("wire", wire), ("launch", launched - started), ("other", other)):
            self.figures.add(f"{key}.{metric}", value)
        print(
            "   run %d %-6s wall %s s  %s bets/s  server %s MiB %s s CPU  clients max %s MiB, %s s CPU  other CPU %s s"
            % (run, mode, fmt("%.3f", wall), fmt("%.0f", rows / wall), fmt("%.1f", srss), fmt("%.2f", scpu),
               fmt("%.1f", crss), fmt("%.2f", ccpu), fmt("%.2f", other)),
            flush=True,
        )

    def restart_round(self, point, mode, run, drawn):
        """A second server on the run's storage (recovery and the winners
        rebuilt from bets.csv); every agency connects again, learns it is
        done and asks for its winners. Records that server's peak RSS and
        the time from the gates opening to the last agency's exit."""
        d, n = self.run_dir, self.b.agencies(point)
        env = self.server_env(n, {"STORAGE_FILEPATH": f"{d}/bets.csv", "STORAGE_SYNC": mode})
        self.start_server(env, f"{d}/restart.log", f"{d}/restart.time")
        # Recovery and the winners' rebuild come before the listen line.
        address = self.await_address(f"{d}/restart.log", 12000, False, self.launcher)
        if address is None:
            raise RunFailed("restarted server exited at start" if self.launcher.poll() is not None else
                            "restarted server did not report its address within 60 s")
        self.clients = []
        for i in range(1, n + 1):
            env = dict(os.environ, CLI_CONFIG="config/client/config.yaml", CLI_SERVER_ADDRESS=address, CLI_ID=str(i),
                       CLI_KEY=self.keys[i], CLI_BETS_FILE=self.b.agency_file(point, i))
            self.clients.append(gated(f"{d}/regate-{i}", f"{d}/reclient-{i}.log", [f"{self.b.bin}/client"], env))
        gates = gates_held([f"{d}/regate-{i}" for i in range(1, n + 1)], self.clients)
        started = time.perf_counter()
        open_gates(gates)
        codes = wait_exit_codes(self.clients)
        ended = time.perf_counter()
        self.clients = []
        failed = [f"agency {i} exited {rc} on the restarted server" for i, rc in enumerate(codes, start=1) if rc]
        proc_rss = NA if self.b.gnu_time else self.proc_figures()[0]
        rc, early = self.stop_server()
        if early:
            failed.append("the restarted server had exited before SIGTERM")
        if failed:
            raise RunFailed(" ".join(failed))
        if rc:
            raise RunFailed(f"restarted server exited {rc}")
        winners = total(WINNERS, [f"{d}/reclient-{i}.log" for i in range(1, n + 1)])
        if winners != drawn:
            raise RunFailed(f"after the restart agencies report {winners} winners, the draw {drawn}")
        rss = time_line(f"{d}/restart.time")[0] if self.b.gnu_time else proc_rss
        rrss = NA if rss == NA else rss / 1024
        self.figures.add(f"{point}.{mode}.rrss", rrss)
        self.figures.add(f"{point}.{mode}.rwall", ended - started)
        print("   run %d %-6s restart: server %s MiB; every agency its %s winners in %s s"
              % (run, mode, fmt("%.1f", rrss), winners, fmt("%.3f", ended - started)), flush=True)

    def floor_once(self, point, run):
        """The floor: the same bytes through one loopback TCP connection into a file, then fsync."""
        files = [self.b.agency_file(point, i) for i in range(1, self.b.agencies(point) + 1)]
        self.run_dir = tempfile.mkdtemp(prefix="lottery-bench.", dir=self.b.tmp_root)
        os.sync()
        out = subprocess.run([f"{self.b.bin}/examples/floor", "--out", f"{self.run_dir}/floor.bin", *files],
                             stdout=subprocess.PIPE, text=True)
        if out.returncode:
            raise RunFailed("floor failed")
        values = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
        wall, fsync = float(values["floor_s"]), float(values["fsync_s"])
        self.figures.add(f"{point}.floor.wall", wall)
        self.figures.add(f"{point}.floor.fsync", fsync)
        print("   run %d floor  wall %.3f s (fsync %.3f s)" % (run, wall, fsync), flush=True)
        shutil.rmtree(self.run_dir)
        self.run_dir = None
