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
import re
import sys

WINNING_NUMBER = 7574

# The course grammar of a log line:
#   <date> <time> [<LEVEL>] action: <name> | result: <success|fail|in_progress> | key: value ...
# This is the only grammar checker of the Docker test: a shared one (the
# crate's, for instance) replaces `grammar_errors` alone.
PREFIX = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[(TRACE|DEBUG|INFO|WARN|ERROR)\] action: ")
FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*: ")
RESULTS = {"success", "fail", "in_progress"}


def action_lines(path):
    """The lines of a log that carry an `action:`."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return [line.rstrip("\r\n") for line in f if "action:" in line]


def grammar_errors(line):
    """What is wrong with one log line against the course grammar (nothing if it is right)."""
    if not PREFIX.match(line):
        return ["no '<date> <time> <LEVEL> action: ' prefix"]
    fields = line[line.index("action: ") :].split(" | ")
    errors = []
    if not re.fullmatch(r"action: \S+", fields[0]):
        errors.append("bad action name")
    results = [f for f in fields[1:] if f.startswith("result: ")]
    if len(results) != 1 or results[0][len("result: ") :] not in RESULTS:
        errors.append("needs exactly one result: success|fail|in_progress")
    errors += [f"field {f!r} is not 'key: value'" for f in fields[1:] if not FIELD.match(f)]
    return errors


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


def check_grammar(*logs):
    """Every `action:` line of the logs in the course grammar, none with `result: fail`."""
    found = Findings()
    for path in logs:
        for line in action_lines(path):
            for e in grammar_errors(line):
                found.bad(f"{path}: {e}: {line}")
            if "result: fail" in line:
                found.bad(f"{path}: failure logged: {line}")
    return found.ok


def check_logs(server_log, data_dir, *client_logs):
    """The grammar of every log, one draw, and each agency told exactly its
    winners (counted in its input file), the draw's total their sum."""
    found = Findings()
    found.ok = check_grammar(server_log, *client_logs)
    draws = [l for l in action_lines(server_log) if "action: sorteo | result: success" in l]
    if len(draws) != 1:
        found.bad(f"server logged 'sorteo | result: success' {len(draws)} times, expected once")
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
    lines = sum(len(action_lines(p)) for p in (server_log, *client_logs))
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
