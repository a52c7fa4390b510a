"""The checks of the Docker end-to-end test (scripts/docker_e2e.py) on what the
containers left behind: log lines in the course grammar, the draw and each
agency's winners, the stored rows against the input. No Docker here: these
read files. Python 3 standard library only.

Also a command line, for a look at a kept run by hand:

  python3 scripts/docker_e2e_check.py grammar LOG...
  python3 scripts/docker_e2e_check.py logs SERVER_LOG DATA_DIR CLIENT_LOG...
  python3 scripts/docker_e2e_check.py rows STORED_CSV DATA_DIR AGENCIES equal|subset
"""

import collections
import csv
import os
import re
import subprocess
import sys

WINNING_NUMBER = 7574

# The course grammar of a log line:
#   <date> <time> [<LEVEL>] action: <name> | result: <success|fail|in_progress> | key: value ...
# is checked by the crate's own checker, the one every Rust test uses
# (lottery::logging::check_line, through examples/check_log.rs): $CHECK_LOG
# names the built binary (scripts/docker-e2e.sh builds it); without it, cargo
# runs the example.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def checker():
    """The command that checks log files against the course grammar."""
    if os.environ.get("CHECK_LOG"):
        return [os.environ["CHECK_LOG"]]
    manifest = os.path.join(REPO, "Cargo.toml")
    return ["cargo", "run", "--quiet", "--release", "--manifest-path", manifest,
            "--example", "check-log", "--"]


def action_lines(path):
    """The lines of a log that carry an `action:`."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return [line.rstrip("\r\n") for line in f if "action:" in line]


def grammar_error(path):
    """The first line of the log at `path` that breaks the course grammar, as
    the crate's checker names it; None when every `action:` line keeps it."""
    run = subprocess.run([*checker(), path], capture_output=True, text=True)
    return None if run.returncode == 0 else (run.stderr or run.stdout).strip()


def read_agency(path):
    with open(path, encoding="utf-8", newline="") as f:
        return [tuple(r) for r in csv.reader(f) if r]


def winners(rows):
    return sum(1 for r in rows if r[4].strip().isdigit() and int(r[4]) == WINNING_NUMBER)


def stored_rows(path):
    with open(path, encoding="utf-8", newline="") as f:
        rows = [tuple(r) for r in csv.reader(f) if r]
    if rows and rows[0][0] == "agency":
        rows = rows[1:]
    return rows


def input_rows(data_dir, n):
    return [(str(i),) + r for i in range(1, n + 1) for r in read_agency(f"{data_dir}/agency-{i}.csv")]


class Findings:
    """What a check found wrong, printed as it is found."""

    def __init__(self):
        self.ok = True

    def bad(self, message):
        self.ok = False
        print("  " + message)


def check_grammar(*logs, failures_allowed=False):
    """Every `action:` line of the logs in the course grammar, none with
    `result: fail` unless `failures_allowed` (a run with a fault injected,
    where they are shown, at most 10, as information)."""
    found = Findings()
    failures = []
    for path in logs:
        error = grammar_error(path)
        if error:
            found.bad(f"{path}: grammar: {error}")
        failures += [f"{path}: {line}" for line in action_lines(path) if "result: fail" in line]
    if failures_allowed:
        print("".join(f"  (info) {line}\n" for line in failures[:10]), end="")
        print(f"  (info) {len(failures)} 'result: fail' lines in all")
    else:
        for line in failures:
            found.bad(f"failure logged: {line}")
    return found.ok


def check_logs(server_log, data_dir, *client_logs, failures_allowed=False, server_logs=()):
    """The grammar of every log, one draw, and each agency told exactly its
    winners (counted in its input file), the draw's total their sum.
    `server_logs`: the other servers' logs, when several share a database;
    the draw must be logged once across them all."""
    found = Findings()
    found.ok = check_grammar(server_log, *server_logs, *client_logs, failures_allowed=failures_allowed)
    draws = [l for p in (server_log, *server_logs) for l in action_lines(p) if "action: sorteo | result: success" in l]
    if len(draws) != 1:
        found.bad(f"the servers logged 'sorteo | result: success' {len(draws)} times, expected once")
    total = 0
    for i, path in enumerate(client_logs, start=1):
        want = winners(read_agency(f"{data_dir}/agency-{i}.csv"))
        total += want
        got = [l for l in action_lines(path) if "action: consulta_ganadores | result: success" in l]
        if len(got) != 1:
            found.bad(f"{path}: {len(got)} 'consulta_ganadores | result: success' lines, expected 1")
            continue
        m = re.search(r"\| cant_ganadores: (\d+)", got[0])
        if not m or int(m.group(1)) != want:
            found.bad(f"{path}: {got[0]!r}: expected cant_ganadores: {want}")
    m = re.search(r"\| ganadores: (\d+)", draws[0]) if len(draws) == 1 else None
    if m and int(m.group(1)) != total:
        found.bad(f"server: sorteo reports {m.group(1)} winners, the input has {total}")
    lines = sum(len(action_lines(p)) for p in (server_log, *server_logs, *client_logs))
    print(f"  {lines} action lines checked; {total} winners")
    return found.ok


def check_rows(stored, data_dir, n, mode):
    """The stored rows against the input, as multisets: `equal`, or a
    `subset` (an interrupted ingest: nothing torn, nothing foreign)."""
    got = collections.Counter(stored_rows(stored))
    want = collections.Counter(input_rows(data_dir, int(n)))
    extra, missing = got - want, want - got
    print(f"  stored {sum(got.values())} rows, input {sum(want.values())} rows")
    for r in list(extra)[:5]:
        print(f"  stored but not in the input: {r}")
    if mode == "equal":
        for r in list(missing)[:5]:
            print(f"  in the input but not stored: {r}")
        return not extra and not missing
    return not extra


def count(path, pattern):
    """How many `action:` lines of the log contain the pattern."""
    return sum(1 for line in action_lines(path) if pattern in line)


COMMANDS = {"grammar": check_grammar, "logs": check_logs, "rows": check_rows}

if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    sys.exit(0 if COMMANDS[sys.argv[1]](*sys.argv[2:]) else 1)
