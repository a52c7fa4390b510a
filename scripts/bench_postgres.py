"""The benchmark's PostgreSQL (scripts/bench.py, MODES with postgres): a
durable throwaway cluster of Debian's postgresql, and `psql \\copy` of a
point's files into an indexed table, the comparison for our backend.
"""

import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time

from bench_figures import die


def version_key(path):
    return [int(n) for n in re.findall(r"\d+", path)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """A cluster started in a fresh directory (as the `postgres` user when
    root: PostgreSQL refuses to run as root), fsync=on and
    synchronous_commit=on, listening on 127.0.0.1 only."""

    def __init__(self, tmp_root):
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version_key)
        self.bin = found[-1] if found else ""
        if not os.access(f"{self.bin}/initdb", os.X_OK):
            die("MODES=postgres needs PostgreSQL's initdb/pg_ctl (apt-get install postgresql)")
        self.dir = tempfile.mkdtemp(prefix="lottery-bench-pg.", dir=tmp_root)
        self.as_owner = []
        if os.getuid() == 0:
            shutil.chown(self.dir, "postgres")
            self.as_owner = ["runuser", "-u", "postgres", "--"]
        port = free_port()
        initdb = [f"{self.bin}/initdb", "-D", f"{self.dir}/data", "-U", "lottery", "-A", "trust", "-E", "UTF8"]
        if subprocess.run(self.as_owner + initdb + ["--locale=C"], stdout=subprocess.DEVNULL).returncode:
            die("initdb failed")
        options = (
            f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.dir}"
            " -c fsync=on -c synchronous_commit=on"
        )
        start = [f"{self.bin}/pg_ctl", "-D", f"{self.dir}/data", "-l", f"{self.dir}/log", "-w", "-t", "60"]
        if subprocess.run(self.as_owner + start + ["-o", options, "start"], stdout=subprocess.DEVNULL).returncode:
            die(f"pg_ctl start failed (log: {self.dir}/log)")
        self.url = f"postgresql://lottery@127.0.0.1:{port}"
        version = subprocess.run([f"{self.bin}/postgres", "--version"], capture_output=True, text=True).stdout
        print(f"== PostgreSQL: {version.strip()}, durable (fsync=on, synchronous_commit=on), {self.url}", flush=True)

    def stop(self):
        if not self.dir:
            return
        stop = [f"{self.bin}/pg_ctl", "-D", f"{self.dir}/data", "-m", "fast", "-w", "stop"]
        subprocess.run(self.as_owner + stop, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def psql(self, database, *args, script=None):
        """psql's output (-qAt) of the SQL in `args` (`-c` ...) or `script`."""
        return psql(self.bin, self.database_url(database), *args, script=script)

    def database_url(self, name):
        """STORAGE_URL of database `name`."""
        return f"{self.url}/{name}"

    def fresh_database(self, name):
        """A fresh, empty database."""
        rc, _ = self.psql("postgres", "-c", f"DROP DATABASE IF EXISTS {name}", "-c", f"CREATE DATABASE {name}")
        if rc:
            die(f"could not create database {name}")

    def copy_seconds(self, files, rows):
        """Times `psql \\copy` of every agency's file into a table with the
        backend's primary key and partial index, in one psql session."""
        self.fresh_database("lottery_copy")
        self.psql(
            "lottery_copy",
            "-c",
            """CREATE TABLE bets (agency BIGINT NOT NULL, position BIGSERIAL,
      first_name TEXT NOT NULL, last_name TEXT NOT NULL, document TEXT NOT NULL, birthdate DATE NOT NULL,
      number INT NOT NULL, PRIMARY KEY (agency, position))""",
            "-c",
            "CREATE INDEX bets_winners ON bets (agency, position) WHERE number = 7574",
        )
        script = "".join(
            f"ALTER TABLE bets ALTER COLUMN agency SET DEFAULT {i};\n"
            f"\\copy bets (first_name, last_name, document, birthdate, number) from '{path}' csv\n"
            for i, path in enumerate(files, start=1)
        )
        os.sync()
        t0 = time.perf_counter()
        rc, _ = self.psql("lottery_copy", script=script)
        t1 = time.perf_counter()
        if rc:
            die("psql \\copy failed")
        _, stored = self.psql("lottery_copy", "-c", "SELECT count(*) FROM bets")
        if stored != str(rows):
            die(f"psql \\copy stored {stored} rows")
        return t1 - t0


class HaCluster:
    """MODES=postgresha: a pg_auto_failover cluster (scripts/ha_cluster.py: a
    monitor, a primary and its synchronous secondary, each a PostgreSQL of
    its own), durable (fsync=on, synchronous_commit=on): a COMMIT returns
    once the secondary has the transaction too. The servers are given both
    nodes (`target_session_attrs=read-write`), as an operator would."""

    def __init__(self, tmp_root):
        from ha_cluster import Cluster as Pgaf, ClusterError
        self.dir = tempfile.mkdtemp(prefix="lottery-bench-ha.", dir=tmp_root)
        try:
            self.pgaf = Pgaf.up(self.dir, free_ports(3), fsync=True)
        except ClusterError as e:
            try:
                Pgaf(self.dir).down()  # what started before the failure
            except ClusterError:
                pass  # nothing of it was made
            die(f"MODES=postgresha: {e}")
        self.bin = self.pgaf.pg_bin
        self.ports = [self.pgaf.conf["ports"][n] for n in ("node1", "node2")]
        print(f"== pg_auto_failover: primary and synchronous secondary on ports {self.ports}", flush=True)

    def url_of(self, user, name, attrs="target_session_attrs=read-write"):
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.ports)
        return f"postgresql://{user}@{hosts}/{name}?{attrs}"

    def database_url(self, name):
        return self.url_of("lottery", name)

    def psql(self, database, *args, script=None):
        """psql's output (-qAt) on the primary, as the `lottery` role."""
        return psql(self.bin, self.database_url(database), *args, script=script)

    def fresh_database(self, name):
        """A fresh, empty database owned by `lottery` (made by the superuser)."""
        url = self.url_of("postgres", "postgres")
        rc, _ = psql(self.bin, url, "-c", f"DROP DATABASE IF EXISTS {name}", "-c", f"CREATE DATABASE {name} OWNER lottery")
        if rc:
            die(f"could not create database {name} on the HA cluster")

    def stop(self):
        if self.dir:
            self.pgaf.down()
            self.dir = None


def psql(bin_dir, url, *args, script=None):
    """psql's output (-qAt) of the SQL in `args` (`-c` ...) or `script` at `url`; stops at the first error."""
    env = dict(os.environ, PGOPTIONS="-c client_min_messages=warning")
    command = [f"{bin_dir}/psql", url, "-v", "ON_ERROR_STOP=1", "-qAt", *args]
    run = subprocess.run(command, input=script, stdout=subprocess.PIPE, text=True, env=env)
    return run.returncode, run.stdout.strip()


def free_ports(n):
    """A first port of `n` free consecutive ones (ha_cluster.py takes a base)."""
    from ha_cluster import port_free
    for _ in range(100):
        base = free_port()
        if base + n <= 65535 and all(port_free(base + k) for k in range(1, n)):
            return base
    die("no free consecutive ports for the HA cluster")
