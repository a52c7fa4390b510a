#!/usr/bin/env python3
"""A throwaway pg_auto_failover cluster on 127.0.0.1: a monitor, a primary
and a synchronous secondary, for the HA tests (tests/ha.rs) and the
benchmark.

    ha_cluster.py up DIR BASEPORT       monitor on BASEPORT, node1 on BASEPORT+1 (primary), node2 on
                                        BASEPORT+2 (sync secondary); prints the application URL
    ha_cluster.py kill-primary DIR [--no-wait] [--postmaster-only]
                                        SIGKILL the primary's whole node (pg_autoctl supervisor, keeper,
                                        postgres), or its postmaster only; prints the node's name, then,
                                        unless --no-wait, waits until the multi-host URL takes an INSERT
                                        again and prints the ms
    ha_cluster.py rejoin DIR NODE       run NODE (node1|node2) again; waits until it is the secondary
    ha_cluster.py state DIR             pg_autoctl show state and the URIs
    ha_cluster.py url DIR               the application URL
    ha_cluster.py primary DIR           the name of the current primary (waits up to 30 s for the
                                        monitor to name one, as it names none mid-failover)
    ha_cluster.py down DIR              stop everything started for DIR, sweep leftovers, remove DIR
                                        (only a DIR this script made: it holds a marker file)

As a library: ``Cluster.up(dir, base_port, fsync=False)`` returns a
:class:`Cluster` with ``.url``, ``.kill_primary(wait=True)``,
``.rejoin(node)``, ``.primary()``, ``.state()`` and ``.down()``;
``Cluster(dir)`` opens one made earlier.

Needs Debian's postgresql-15, postgresql-15-auto-failover and
pg-auto-failover-cli. Runs as root (the nodes then run as ``postgres``
through ``runuser``) or as the postgres user. DIR must be absolute and
reachable by that user (under /tmp, say).

Environment: HA_FSYNC=on keeps fsync on (default off: a kill -9 loses
nothing with fsync off, only an OS crash would); HA_FAST=0 keeps
pg_auto_failover's default timeouts (a failover then takes ~50 s instead
of ~5 s); HA_DB / HA_USER (default ``lottery``): the application's
database and its owner; HA_TIMEOUT (s, default 180): the longest wait for
any state; PG_BIN: the PostgreSQL binaries (default: the newest
/usr/lib/postgresql/*/bin). The recipe and its measurements:
pg_auto_failover's notes (RECIPE.md) that this script ports.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

MARKER = ".ha-cluster"
STATE_FILE = "cluster.json"
NODES = ("node1", "node2")

# Monitor tuning for a ~4-6 s failover of a crashed primary, shared with the Docker HA layout.
FAST_MONITOR_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pgaf-monitor.conf")


class ClusterError(Exception):
    """Something the cluster did not do (the message says what, and where its log is)."""


def log(msg):
    print(f"ha-cluster: {msg}", file=sys.stderr, flush=True)


def now_ms():
    return int(time.monotonic() * 1000)


def default_pg_bin():
    """PG_BIN, or the newest /usr/lib/postgresql/*/bin whose version has the pgautofailover extension
    (Debian builds pg_auto_failover for one version: a newer server beside it would not do)."""
    if os.environ.get("PG_BIN"):
        return os.environ["PG_BIN"]
    found = []
    try:
        for name in os.listdir("/usr/lib/postgresql"):
            binp = os.path.join("/usr/lib/postgresql", name, "bin")
            if name.isdigit() and os.path.exists(os.path.join(binp, "postgres")):
                ext = os.path.exists(f"/usr/share/postgresql/{name}/extension/pgautofailover.control")
                found.append((ext, int(name), binp))
    except OSError:
        pass
    return max(found)[2] if found else "/usr/lib/postgresql/15/bin"


def alive(pid):
    """The process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    # "pid (comm) S ...": the state follows the last ')'
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def first_line(path):
    try:
        with open(path) as f:
            return f.readline().strip()
    except OSError:
        return ""


def port_free(port):
    """Nothing listens on 127.0.0.1:port (SO_REUSEADDR: a TIME_WAIT does not count)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


class Cluster:
    """The cluster whose files are all under ``dir`` (data, logs and pg_autoctl's own files)."""

    def __init__(self, dir):
        if not os.path.isabs(dir):
            raise ClusterError(f"DIR must be an absolute path: {dir}")
        self.dir = os.path.normpath(dir)
        if self.dir == "/":
            raise ClusterError("refusing DIR=/")
        self.xdg = os.path.join(self.dir, "xdg")
        self.logs = os.path.join(self.dir, "logs")
        self.pg_bin = default_pg_bin()
        self.timeout = float(os.environ.get("HA_TIMEOUT", "180"))
        self.root = os.geteuid() == 0
        self.os_user = "postgres" if self.root else None
        self._children = {}  # name -> Popen of the `pg_autoctl run` this process started
        self._conf = None

    # --- settings written by up ------------------------------------------------------------------

    @property
    def conf(self):
        if self._conf is None:
            try:
                with open(os.path.join(self.dir, STATE_FILE)) as f:
                    self._conf = json.load(f)
            except OSError as e:
                raise ClusterError(f"{self.dir}/{STATE_FILE}: {e.strerror} (not a cluster made by 'up')")
        return self._conf

    @property
    def url(self):
        """The application's URL: both nodes, the one that takes writes wins."""
        return self.conf["app_url"]

    # --- running things --------------------------------------------------------------------------

    def _env(self):
        env = dict(os.environ)
        env.update(
            XDG_CONFIG_HOME=os.path.join(self.xdg, "config"),
            XDG_DATA_HOME=os.path.join(self.xdg, "data"),
            XDG_RUNTIME_DIR=os.path.join(self.xdg, "run"),
            # pg_autoctl takes pg_ctl from PATH and expects pg_controldata etc. beside it
            PATH=f"{self.pg_bin}:/usr/bin:/bin",
            # initdb takes the encoding from the locale: UTF-8 whatever the caller's (names are
            # UTF-8, and the lottery server refuses any other database encoding)
            LC_ALL="C.UTF-8",
            LANG="C.UTF-8",
        )
        return env

    def _as_user(self, argv):
        """argv run as the cluster's OS user, with pg_autoctl's files kept under DIR/xdg."""
        env = self._env()
        pre = ["runuser", "-u", self.os_user, "--"] if self.root else []
        keep = [f"{k}={env[k]}" for k in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_RUNTIME_DIR", "PATH", "LC_ALL", "LANG")]
        return pre + ["env"] + keep + argv

    def _pgaf(self, *args, log_name=None, timeout=None):
        """pg_autoctl ARGS; output to DIR/logs/LOG_NAME.log if given. Raises on failure or timeout
        (a `create` retries an unreachable monitor for 15 minutes: it gets a timeout, and its whole
        process group is killed when it passes)."""
        out = open(os.path.join(self.logs, f"{log_name}.log"), "ab") if log_name else subprocess.PIPE
        try:
            p = subprocess.Popen(
                self._as_user(["pg_autoctl", *args]),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                stdout, _ = p.communicate(timeout=timeout or self.timeout)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
                raise ClusterError(f"pg_autoctl {args[0]} {args[1]} timed out, see {self.logs}")
        finally:
            if log_name:
                out.close()
        if p.returncode != 0:
            where = f"see {self.logs}/{log_name}.log" if log_name else (stdout or b"").decode(errors="replace")
            raise ClusterError(f"pg_autoctl {' '.join(args[:2])} failed: {where}")
        return (stdout or b"").decode(errors="replace")

    def _psql(self, url_or_args, sql, timeout=10):
        """One statement through psql; its output, or None when it failed."""
        args = url_or_args if isinstance(url_or_args, list) else [url_or_args]
        env = dict(os.environ, PGCONNECT_TIMEOUT="1")
        try:
            r = subprocess.run(
                [os.path.join(self.pg_bin, "psql"), "-X", "-w", "-q", "-v", "ON_ERROR_STOP=1", *args, "-Atc", sql],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                env=env,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            return None
        return r.stdout.decode().strip() if r.returncode == 0 else None

    def _monq(self, sql):
        mon = ["-h", "127.0.0.1", "-p", str(self.conf["monitor_port"]), "-U", "autoctl_node", "-d", "pg_auto_failover"]
        return self._psql(mon, sql)

    def states(self):
        """{"node1": "primary/primary", ...}: reported/assigned state of each node, per the monitor."""
        out = self._monq("select nodename, reportedstate || '/' || goalstate from pgautofailover.node order by nodeid")
        if not out:
            return {}
        return dict(line.split("|", 1) for line in out.splitlines())

    def _wait_for(self, what, check, seconds=None):
        end = time.monotonic() + (seconds or self.timeout)
        while not check():
            if time.monotonic() > end:
                raise ClusterError(f"timeout waiting for: {what} (states: {self.states()})")
            time.sleep(0.2)

    def _start_node(self, name):
        """`pg_autoctl run` for NAME in a session (and process group) of its own, so that killing that
        group kills the node: pg_autoctl does not setsid() postgres."""
        with open(os.path.join(self.logs, f"{name}.log"), "ab") as out:
            self._children[name] = subprocess.Popen(
                self._as_user(["pg_autoctl", "run", "--pgdata", os.path.join(self.dir, name)]),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _reap(self):
        for p in self._children.values():
            p.poll()

    def autoctl_pid(self, name):
        """The running pg_autoctl supervisor of NAME, or None."""
        f = os.path.join(self.xdg, "run", "pg_autoctl" + self.dir, name, "pg_autoctl.pid")
        pid = first_line(f)
        if not pid.isdigit() or not alive(pid):
            return None
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as c:
                if b"pg_autoctl" not in c.read():
                    return None
        except OSError:
            return None
        return int(pid)

    def postmaster_pid(self, name):
        pid = first_line(os.path.join(self.dir, name, "postmaster.pid"))
        return int(pid) if pid.isdigit() and alive(pid) else None

    # --- up --------------------------------------------------------------------------------------

    @classmethod
    def up(cls, dir, base_port, fsync=None, fast=None, db=None, user=None):
        """Makes and starts the cluster in DIR (absent or empty); returns it when node1 is the
        primary and node2 its synchronous secondary."""
        c = cls(dir)
        fsync = os.environ.get("HA_FSYNC", "off") == "on" if fsync is None else fsync
        fast = os.environ.get("HA_FAST", "1") != "0" if fast is None else fast
        db = db or os.environ.get("HA_DB", "lottery")
        user = user or os.environ.get("HA_USER", "lottery")
        c._up(int(base_port), fsync, fast, db, user)
        return c

    def _up(self, base, fsync, fast, db, user):
        if not 1024 <= base <= 65533:
            raise ClusterError("BASEPORT must be 1024..65533")
        if os.path.exists(self.dir) and os.listdir(self.dir):
            raise ClusterError(f"{self.dir} exists and is not empty (run: ha_cluster.py down {self.dir})")
        if not os.path.exists(os.path.join(self.pg_bin, "postgres")):
            raise ClusterError(f"no {self.pg_bin}/postgres (set PG_BIN)")
        if not shutil.which("pg_autoctl"):
            raise ClusterError(
                "pg_autoctl not installed (apt-get install -y postgresql-15-auto-failover pg-auto-failover-cli)"
            )
        for p in (base, base + 1, base + 2):
            if not port_free(p):
                raise ClusterError(f"port {p} is in use")
        # Debian's postgres puts its unix socket in /var/run/postgresql, where pg_autoctl connects
        # locally; a container without systemd-tmpfiles may lack it.
        sockdir = "/var/run/postgresql"
        if self.root:
            os.makedirs(sockdir, exist_ok=True)
            shutil.chown(sockdir, "postgres", "postgres")
            os.chmod(sockdir, 0o2775)
        elif not os.access(sockdir, os.W_OK):
            raise ClusterError(f"{sockdir} (the default unix socket directory) is not writable")

        os.makedirs(self.dir, exist_ok=True)
        open(os.path.join(self.dir, MARKER), "w").close()
        for d in ("config", "data", "run"):
            os.makedirs(os.path.join(self.xdg, d), exist_ok=True)
        os.chmod(os.path.join(self.xdg, "run"), 0o700)
        os.makedirs(self.logs, exist_ok=True)
        if self.root:
            subprocess.run(["chown", "-R", "postgres:postgres", self.dir], check=True)
            if subprocess.run(["runuser", "-u", "postgres", "--", "test", "-w", self.dir]).returncode != 0:
                raise ClusterError(f"{self.dir} is not writable by postgres (check its parents' permissions)")

        mon, p1, p2 = base, base + 1, base + 2
        self._conf = {
            "monitor_port": mon,
            "ports": {"node1": p1, "node2": p2},
            "monitor_uri": f"postgres://autoctl_node@127.0.0.1:{mon}/pg_auto_failover?sslmode=prefer",
            "app_url": f"postgresql://{user}@127.0.0.1:{p1},127.0.0.1:{p2}/{db}?target_session_attrs=read-write",
            "probe_url": f"postgresql://postgres@127.0.0.1:{p1},127.0.0.1:{p2}/postgres"
            "?target_session_attrs=read-write&connect_timeout=1",
        }
        with open(os.path.join(self.dir, STATE_FILE), "w") as f:
            json.dump(self._conf, f, indent=2)
        t0 = t = now_ms()

        # Keep a throwaway cluster small: pg_autoctl writes shared_buffers = 25% of RAM etc. into
        # postgresql-auto-failover.conf, included on line 1 of postgresql.conf, so lines appended to
        # postgresql.conf win (and reach node2 through pg_basebackup). fsync=off only loses data on an
        # OS crash, not when processes are killed: fine for failures simulated with kill -9.
        small = (
            "\n# ha_cluster.py: throwaway test cluster\n"
            "shared_buffers = '128MB'\neffective_cache_size = '512MB'\nmaintenance_work_mem = '64MB'\n"
            f"work_mem = '4MB'\nwal_keep_size = '256MB'\nfsync = {'on' if fsync else 'off'}\n"
        )

        mon_dir = os.path.join(self.dir, "monitor")
        self._pgaf("create", "monitor", "--pgdata", mon_dir, "--pgport", str(mon), "--hostname", "127.0.0.1",
                   "--auth", "trust", "--no-ssl", log_name="monitor")
        # `create monitor` has no --listen
        self._pgaf("config", "set", "--pgdata", mon_dir, "postgresql.listen_addresses", "127.0.0.1")
        with open(os.path.join(mon_dir, "postgresql.conf"), "a") as f:
            f.write(small)
            if fast:
                with open(FAST_MONITOR_FILE) as tuning:
                    f.write("\n" + tuning.read())
        self._start_node("monitor")
        self._wait_for("monitor accepts connections", lambda: self._monq("select 1") == "1", 60)
        log(f"monitor up on 127.0.0.1:{mon} in {now_ms() - t} ms")
        t = now_ms()

        for name, port in (("node1", p1), ("node2", p2)):
            pgdata = os.path.join(self.dir, name)
            self._pgaf("create", "postgres", "--pgdata", pgdata, "--pgport", str(port), "--hostname", "127.0.0.1",
                       "--listen", "127.0.0.1", "--name", name, "--auth", "trust", "--no-ssl", "--dbname", db,
                       "--monitor", self._conf["monitor_uri"], log_name=name)
            if name == "node1":
                with open(os.path.join(pgdata, "postgresql.conf"), "a") as f:
                    f.write(small)
            if fast:
                # the keeper's side of the split-brain guard: a primary that sees neither monitor nor
                # standby this long stops itself; keep it <= unhealthy timeout + primary_demote_timeout
                self._pgaf("config", "set", "--pgdata", pgdata, "timeout.network_partition_timeout", "2")
            self._start_node(name)
            if name == "node1":
                self._wait_for("node1 single", lambda: self.states() == {"node1": "single/single"})
                local = ["-h", "127.0.0.1", "-p", str(p1), "-U", "postgres"]
                self._wait_for("node1 accepts connections",
                               lambda: self._psql(local + ["-d", "postgres"], "select 1") == "1", 60)
                steps = [
                    (db, f'CREATE ROLE "{user}" LOGIN'),
                    (db, f'ALTER DATABASE "{db}" OWNER TO "{user}"'),
                    ("postgres", "CREATE TABLE ha_probe (id bigserial PRIMARY KEY, "
                                 "at timestamptz NOT NULL DEFAULT clock_timestamp(), "
                                 "port int NOT NULL DEFAULT inet_server_port())"),
                    # pg_basebackup of node2 asks for a *spread* checkpoint: make it trivial
                    ("postgres", "CHECKPOINT"),
                ]
                for database, sql in steps:
                    if self._psql(local + ["-d", database], sql, timeout=60) is None:
                        raise ClusterError(f"on node1: {sql} failed")
                log(f"node1 (primary) up on 127.0.0.1:{p1} in {now_ms() - t} ms")
                t = now_ms()
        self._wait_for("node1 primary + node2 secondary", lambda: self._rejoined("node2", "node1"))
        log(f"node2 (sync secondary) up on 127.0.0.1:{p2} in {now_ms() - t} ms")
        log(f"cluster ready in {now_ms() - t0} ms")

    def _rejoined(self, secondary, primary):
        s = self.states()
        return s.get(secondary) == "secondary/secondary" and s.get(primary) == "primary/primary"

    # --- failover --------------------------------------------------------------------------------

    def primary(self):
        """The node the monitor has as primary (single, primary or wait_primary), or None."""
        out = self._monq(
            "select nodename from pgautofailover.node "
            "where reportedstate in ('single','primary','wait_primary') "
            "and goalstate in ('single','primary','wait_primary') order by nodeid limit 1"
        )
        return out or None

    def settled_primary(self, seconds=30):
        """The primary once the monitor names one: for a moment of a failover (the old one draining,
        the new one being promoted) it names none."""
        end = time.monotonic() + seconds
        while (name := self.primary()) is None and time.monotonic() < end:
            time.sleep(0.2)
        return name

    def _probe_write(self):
        """One INSERT through the multi-host read-write URL; the port that took it, or None."""
        return self._psql(self.conf["probe_url"], "INSERT INTO ha_probe DEFAULT VALUES RETURNING port", timeout=5)

    def kill_primary(self, wait=True, postmaster_only=False):
        """SIGKILLs the primary's whole node, as a machine dying does, or (`postmaster_only`) its
        postmaster alone: then its keeper races the monitor, restarting PostgreSQL in place within a
        second, so it is a failover only sometimes. Returns (name, ms): ms from the kill until writes
        work again, or None without `wait`."""
        name = self.primary()
        if not name:
            raise ClusterError(f"no primary found (states: {self.states()})")
        if postmaster_only:
            pm = self.postmaster_pid(name)
            if not pm:
                raise ClusterError(f"{name} has no running postmaster")
            k = now_ms()
            os.kill(pm, signal.SIGKILL)
            log(f"killed the postmaster {pm} of {name}")
            return name, (self._writable_again(k) if wait else None)
        sup = self.autoctl_pid(name)
        pgid = os.getpgid(sup) if sup else None
        # the group must hold this node's `pg_autoctl run` and must not be ours
        if not pgid or pgid == os.getpgrp() or not self._group_runs(pgid, name):
            raise ClusterError(f"cannot identify the process group of {name} (was it started by this script?)")
        pm = self.postmaster_pid(name)
        k = now_ms()
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if pm:  # in case postgres left the group
            try:
                os.kill(pm, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._reap()
        log(f"killed node {name} (process group {pgid}: pg_autoctl + postgres {pm})")
        return name, (self._writable_again(k) if wait else None)

    def _writable_again(self, k):
        """ms from `k` (the kill) until the multi-host URL takes an INSERT again."""
        # the kill may take a moment to be visible: wait for a failed write (3 s at most), then for the
        # first success
        while self._probe_write() is not None and now_ms() - k < 3000:
            time.sleep(0.1)
        end = time.monotonic() + self.timeout
        while (port := self._probe_write()) is None:
            if time.monotonic() > end:
                raise ClusterError(f"no writable primary {self.timeout:.0f} s after the kill (states: {self.states()})")
            time.sleep(0.1)
        ms = now_ms() - k
        log(f"writes accepted again by 127.0.0.1:{port} {ms} ms after the kill (states: {self.states()})")
        return ms

    def _group_runs(self, pgid, name):
        needle = f"pg_autoctl\0run\0--pgdata\0{os.path.join(self.dir, name)}".encode()
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                if os.getpgid(int(pid)) != pgid:
                    continue
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if needle in f.read():
                        return True
            except OSError:
                continue
        return False

    def rejoin(self, name):
        """Runs NAME again (after kill_primary); returns the ms until it is the secondary again
        (pg_autoctl rewinds and catches it up)."""
        if name not in NODES:
            raise ClusterError("NODE must be node1 or node2")
        if self.autoctl_pid(name):
            raise ClusterError(f"pg_autoctl for {name} is already running")
        pm = self.postmaster_pid(name)
        if pm:
            raise ClusterError(f"postgres of {name} still runs (pid {pm}) without pg_autoctl; stop it first")
        # a postmaster killed with its parent is re-parented to PID 1 and may linger as a zombie, which
        # postgres' kill(pid, 0) check takes for alive ("lock file already exists")
        pidfile = os.path.join(self.dir, name, "postmaster.pid")
        old = first_line(pidfile)
        if old.isdigit() and os.path.exists(f"/proc/{old}") and not alive(old):
            os.remove(pidfile)
            log(f"removed stale {pidfile} (zombie {old})")
        t = now_ms()
        self._start_node(name)
        other = "node2" if name == "node1" else "node1"
        self._wait_for(f"{name} secondary, {other} primary", lambda: self._rejoined(name, other))
        ms = now_ms() - t
        log(f"{name} rejoined as secondary in {ms} ms")
        return ms

    def state(self):
        mon_dir = os.path.join(self.dir, "monitor")
        try:
            shown = self._pgaf("show", "state", "--pgdata", mon_dir, timeout=30)
        except ClusterError as e:
            shown = str(e) + "\n"
        return (
            shown
            + f"monitor URI: {self.conf['monitor_uri']}\n"
            + f"app URL:     {self.conf['app_url']}\n"
        )

    # --- down ------------------------------------------------------------------------------------

    def _dir_pids(self):
        """Processes of this cluster: cwd inside DIR (postgres and its children chdir to PGDATA) or DIR
        on the command line (pg_autoctl, runuser, pg_basebackup, pg_rewind, ...)."""
        names = {b"postgres", b"pg_autoctl", b"runuser", b"env", b"pg_basebackup", b"pg_rewind", b"pg_ctl",
                 b"initdb", b"psql"}
        inside = self.dir.encode() + b"/"
        me = os.getpid()
        pids = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or int(pid) == me:
                continue
            try:
                with open(f"/proc/{pid}/comm", "rb") as f:
                    if f.read().strip() not in names:
                        continue
                cwd = os.readlink(f"/proc/{pid}/cwd").encode()
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ")
            except OSError:
                continue
            if (cwd == self.dir.encode() or cwd.startswith(inside) or inside in cmd) and alive(pid):
                pids.append(int(pid))
        return pids

    def down(self):
        """Stops the cluster, kills what an interrupted run left, removes DIR."""
        if not os.path.exists(self.dir):
            log(f"{self.dir} does not exist")
            return
        if not os.path.exists(os.path.join(self.dir, MARKER)):
            raise ClusterError(f"{self.dir} has no {MARKER} file: not made by this script, refusing to delete it")
        # 1. polite stop (pg_autoctl stops postgres with pg_ctl stop -m fast)
        for name in ("node2", "node1", "monitor"):
            if self.autoctl_pid(name):
                try:
                    self._pgaf("stop", "--fast", "--pgdata", os.path.join(self.dir, name), timeout=15)
                except ClusterError:
                    pass
        end = time.monotonic() + 15
        while self._dir_pids() and time.monotonic() < end:
            self._reap()
            time.sleep(0.2)
        # 2. sweep what is left (interrupted runs, killed supervisors, orphaned postmasters); again and
        #    again: a half-done `create` may still be spawning children
        for _ in range(5):
            left = self._dir_pids()
            if not left:
                break
            log(f"SIGKILL leftover processes: {' '.join(map(str, left))}")
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.5)
            self._reap()
        # 3. the SysV shared memory segment a SIGKILLed postmaster that never restarted leaves (line 7 of
        #    postmaster.pid: "key shmid"), only if nothing is attached to it
        for name in ("monitor", "node1", "node2"):
            try:
                with open(os.path.join(self.dir, name, "postmaster.pid")) as f:
                    lines = f.read().splitlines()
                shmid = lines[6].split()[1]
            except (OSError, IndexError):
                continue
            info = subprocess.run(["ipcs", "-m", "-i", shmid], capture_output=True, text=True)
            if info.returncode == 0 and "nattch=0" in info.stdout:
                if subprocess.run(["ipcrm", "-m", shmid], capture_output=True).returncode == 0:
                    log(f"removed SysV shm segment {shmid} of {name}")
        # 4. files: everything lives under DIR; also the default places, had pg_autoctl been run by hand
        #    on these data directories without the XDG variables
        shutil.rmtree(self.dir, ignore_errors=True)
        home = os.path.expanduser(f"~{self.os_user}" if self.os_user else "~")
        for d in (f"/tmp/pg_autoctl{self.dir}", f"{home}/.config/pg_autoctl{self.dir}",
                  f"{home}/.local/share/pg_autoctl{self.dir}"):
            shutil.rmtree(d, ignore_errors=True)
        log(f"{self.dir} removed")


def main(argv):
    usage = __doc__.split("\n\n")[1]
    if len(argv) < 2:
        print(usage, file=sys.stderr)
        return 2
    cmd, args = argv[0], argv[1:]
    try:
        if cmd == "up" and len(args) == 2 and args[1].isdigit():
            print(Cluster.up(args[0], int(args[1])).url)
        elif cmd == "kill-primary" and args and set(args[1:]) <= {"--no-wait", "--postmaster-only"}:
            name, ms = Cluster(args[0]).kill_primary(
                wait="--no-wait" not in args, postmaster_only="--postmaster-only" in args)
            print(name)
            if ms is not None:
                print(ms)
        elif cmd == "rejoin" and len(args) == 2:
            Cluster(args[0]).rejoin(args[1])
        elif cmd == "state" and len(args) == 1:
            print(Cluster(args[0]).state(), end="")
        elif cmd == "url" and len(args) == 1:
            print(Cluster(args[0]).url)
        elif cmd == "primary" and len(args) == 1:
            name = Cluster(args[0]).settled_primary()
            if not name:
                raise ClusterError("no primary for 30 s")
            print(name)
        elif cmd == "down" and len(args) == 1:
            Cluster(args[0]).down()
        else:
            print(usage, file=sys.stderr)
            return 2
    except ClusterError as e:
        log(str(e))
        return 1
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
