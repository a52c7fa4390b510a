"""The benchmark's figures (scripts/bench.py): what each run recorded, the
min / median / max over the runs, the table per point, the `bench.*`
key=value lines and the targets of the issue.

Every recorded value is rounded to six decimals when it is recorded, so the
statistics and ratios are computed on the same numbers the key=value lines
print.
"""

import sys

NA = "n/a"


def die(message):
    """Stops the benchmark: `bench: MESSAGE` on stderr, exit status 1."""
    print(f"bench: {message}", file=sys.stderr)
    sys.exit(1)


def r6(value):
    """A figure as it is recorded: rounded to six decimals (n/a passes)."""
    return NA if value == NA else float(f"{value:.6f}")


def fmt(form, value):
    """`form % value`, with n/a passing through."""
    return NA if value == NA else form % value


def plain(value):
    """A value as the key=value lines print it."""
    return NA if value == NA else f"{value:.6f}"


def stats(values):
    """(min, median, max) of the values; n/a for all three if one is n/a."""
    if NA in values:
        return NA, NA, NA
    v = sorted(values)
    n = len(v)
    median = v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2
    return v[0], median, v[-1]


# The table's rows: label, metric, printf format, key=value name and unit.
ROWS = [
    ("wall s (first start..last exit)", "wall", "%.3f", "wall", "s"),
    ("bets/s", "rate", "%.0f", "rate", "bets_per_s"),
    ("server peak RSS MiB", "srss", "%.1f", "server_rss", "mib"),
    ("server CPU s (user+sys)", "scpu", "%.3f", "server_cpu", "s"),
    ("client peak RSS MiB (largest)", "crss", "%.1f", "client_rss", "mib"),
    ("clients CPU s (user+sys, sum)", "ccpu", "%.3f", "clients_cpu", "s"),
    ("wire bytes/bet (client to server)", "wire", "%.2f", "wire", "bytes_per_bet"),
    ("client launch s (1st..last start)", "launch", "%.3f", "launch", "s"),
    ("other CPU s (not ours: noise)", "other", "%.2f", "other_cpu", "s"),
    ("restart: server peak RSS MiB", "rrss", "%.1f", "restart_rss", "mib"),
    ("restart: all winners to all s", "rwall", "%.3f", "restart_winners", "s"),
]
RESTART_METRICS = ("rrss", "rwall")


def mode_title(mode):
    if mode == "postgres":
        return "STORAGE_BACKEND=postgres"
    if mode == "postgres3":
        return "postgres, 3 servers"
    if mode == "postgresha":
        return "postgres HA, 3 servers"
    return f"STORAGE_SYNC={mode}"


class Figures:
    """The runs' values under `point.mode.metric` and the key=value lines."""

    def __init__(self, modes, runs):
        self.modes = modes
        self.runs = runs
        self.values = {}
        self.kv = []

    def add(self, key, value):
        self.values.setdefault(key, []).append(r6(value))

    def stats(self, key):
        return stats(self.values[key])

    def median(self, key):
        return self.stats(key)[1]

    def emit(self, name, value):
        self.kv.append(f"{name}={value}")

    def emit_stats(self, prefix, unit, triple):
        for which, value in zip(("min", "median", "max"), triple):
            self.emit(f"{prefix}_{which}_{unit}", plain(value))

    def report(self, point, rows, csv_bytes, agencies, restarts, with_pg):
        """Prints the point's table and records its key=value lines."""
        for name, value in (("agencies", agencies), ("bets", rows), ("csv_bytes", csv_bytes), ("runs", self.runs)):
            self.emit(f"bench.{point}.{name}", value)
        print()
        print(
            f"== {point}: {rows} bets, {agencies} agencies, {csv_bytes / 1048576:.1f} MiB of CSV; "
            f"{self.runs} runs, min / median / max"
        )
        print("%-34s" % "figure" + "".join("  %-32s" % mode_title(m) for m in self.modes))
        for label, metric, form, name, unit in ROWS:
            if metric in RESTART_METRICS and not restarts:
                continue
            line = "%-34s" % label
            for m in self.modes:
                if metric in RESTART_METRICS and m.startswith("postgres"):
                    line += "  %-32s" % "n/a (file backend only)"
                    continue
                triple = self.stats(f"{point}.{m}.{metric}")
                line += "  %-32s" % " / ".join(fmt(form, v) for v in triple)
                self.emit_stats(f"bench.{point}.{m}.{name}", unit, triple)
            print(line)
        self.report_baselines(point, with_pg)

    def report_baselines(self, point, with_pg):
        """The floor, psql's \\copy and our ratios to them."""
        flo, fmed, fhi = self.stats(f"{point}.floor.wall")
        smed = self.median(f"{point}.floor.fsync")
        print(
            "%-34s  %-32s"
            % ("floor s (1 TCP conn + fsync)", f"{flo:.3f} / {fmed:.3f} / {fhi:.3f}  (of which fsync {smed:.3f})")
        )
        self.emit_stats(f"bench.{point}.floor.wall", "s", (flo, fmed, fhi))
        self.emit(f"bench.{point}.floor.fsync_median_s", plain(smed))
        if with_pg:
            clo, cmed, chi = self.stats(f"{point}.pgcopy.wall")
            print("%-34s  %-32s" % ("psql \\copy s (indexed table)", f"{clo:.3f} / {cmed:.3f} / {chi:.3f}"))
            self.emit_stats(f"bench.{point}.pgcopy.wall", "s", (clo, cmed, chi))
            for m in self.modes:
                if m.startswith("postgres"):
                    ratio = r6(self.median(f"{point}.{m}.wall") / cmed)
                    print("%-34s  %-32s" % (f"{m} / psql \\copy (medians)", f"{ratio:.1f}x"))
                    self.emit(f"bench.{point}.{m}.pgcopy_ratio_median", f"{ratio:.2f}")
        line = "%-34s" % "ours / floor (medians)"
        for m in self.modes:
            ratio = r6(self.median(f"{point}.{m}.wall") / fmed)
            line += "  %-32s" % f"{ratio:.1f}x"
            self.emit(f"bench.{point}.{m}.floor_ratio_median", f"{ratio:.2f}")
        print(line)

    def targets(self, point):
        """Checks the issues' targets (medians); True if one was missed. On
        PostgreSQL, against `psql \\copy` of the same rows in the same run:
        one server at most as slow, three servers at most 0.8 of it."""
        med = self.median
        checks = []
        if point == "10x":
            for mode, limit in (("postgres", "1.0"), ("postgres3", "0.8")):
                if mode in self.modes:
                    ratio = r6(med(f"10x.{mode}.wall") / med("10x.pgcopy.wall"))
                    checks.append((f"{mode}_pgcopy_ratio", ratio, "<=", limit))
        durable = "always" in self.modes  # the file backend's targets
        if durable and point == "1x":
            checks.append(("wall_s", med("1x.always.wall"), "<=", "0.10"))
        elif durable and point == "10x":
            checks.append(("wall_s", med("10x.always.wall"), "<=", "0.30"))
            checks.append(("floor_ratio", r6(med("10x.always.wall") / med("10x.floor.wall")), "<=", "3"))
        elif durable and point == "10m":
            checks.append(("bets_per_s", med("10m.always.rate"), ">=", "2000000"))
            checks.append(("server_rss_mib", med("10m.always.srss"), "<=", "64"))
            checks.append(("client_rss_mib", med("10m.always.crss"), "<=", "16"))
        elif durable and point == "10mw":
            checks.append(("server_rss_mib", med("10mw.always.srss"), "<=", "64"))
            checks.append(("restart_server_rss_mib", med("10mw.always.rrss"), "<=", "64"))
        missed = False
        for name, value, op, limit in checks:
            if value == NA:
                verdict = NA
            elif (op == "<=" and value <= float(limit)) or (op == ">=" and value >= float(limit)):
                verdict = "met"
            else:
                verdict = "MISSED"
            print("   target %-44s %s %s %s: %s" % (name, fmt("%.3f", value), op, limit, verdict))
            self.emit(f"bench.target.{point}.{name}", verdict)
            missed = missed or verdict == "MISSED"
        return missed
