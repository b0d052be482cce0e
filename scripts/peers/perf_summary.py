#!/usr/bin/env python3
"""perf_summary.py [RUNS.TSV] [--labels a,b,...] [--since ISO_TIME] [--fields f1,f2,...]

Medians of perf.py rows (or any TSV with ts, label and config columns, such as compare-peers.sh's
bench.tsv) per config and label, as a markdown table: "median (min–max, n=N)" for each field.
Default RUNS.TSV: PEERS_STATE/results/perf/runs.tsv; default fields: iops, MiBps,
target_cpu_s_per_GiB, sys_busy_pct; default labels: in order of first appearance.
A failed run writes no row, so n tells how many runs each cell rests on.
"""
import argparse
import csv
import os
import statistics
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tsv", nargs="?")
    ap.add_argument("--labels")
    ap.add_argument("--since")
    ap.add_argument("--fields", default="iops,MiBps,target_cpu_s_per_GiB,sys_busy_pct")
    a = ap.parse_args()
    state = os.environ.get("PEERS_STATE") or os.path.join(
        os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state"), "palisade", "peers")
    path = a.tsv or os.path.join(state, "results", "perf", "runs.tsv")
    with open(path) as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t") if not a.since or r["ts"] >= a.since]
    if not rows:
        sys.exit(f"perf_summary.py: no rows in {path}" + (f" since {a.since}" if a.since else ""))
    fields = a.fields.split(",")
    missing = [x for x in fields if x not in rows[0]]
    if missing:
        sys.exit(f"perf_summary.py: {path} has no column {', '.join(missing)}")
    labels = a.labels.split(",") if a.labels else list(dict.fromkeys(r["label"] for r in rows))
    configs = list(dict.fromkeys(r["config"] for r in rows))

    def cell(config, label, field):
        vals = []
        for r in rows:
            if r["config"] == config and r["label"] == label:
                try:
                    vals.append(float(r[field]))
                except ValueError:
                    pass
        if not vals:
            return "–"
        fmt = "{:.0f}" if max(abs(v) for v in vals) >= 100 else "{:.2f}"
        return (f"{fmt.format(statistics.median(vals))} ({fmt.format(min(vals))}–{fmt.format(max(vals))}, "
                f"n={len(vals)})")

    for field in fields:
        print(f"### {field}: median (min–max, n)\n")
        print("| config | " + " | ".join(labels) + " |")
        print("|---|" + "---|" * len(labels))
        for c in configs:
            print(f"| {c} | " + " | ".join(cell(c, label, field) for label in labels) + " |")
        print()


if __name__ == "__main__":
    main()
