#!/usr/bin/env python3
"""Results of libiscsi's iscsi-test-cu: its text output to per-test rows, and summaries of them.

  cu_results.py parse SUITE LOG       rows of one run's log (SUITE = FAMILY.SUITE it ran)
  cu_results.py summary RESULTS.TSV [--label L] [--url U] [--events EVENTS.LOG]
  cu_results.py compare RESULTS.TSV...  markdown table, one column per file (its folder's name)

A row is "test<TAB>status<TAB>note" with status one of
  PASS        CUnit "passed" and no "[SKIPPED]" line inside the test
  SKIP        CUnit "passed" after libiscsi printed "[SKIPPED] reason" (a feature the LUN does
              not advertise; CUnit itself counts these as passed)
  FAIL        CUnit "FAILED"; the note is libiscsi's first "[FAILED]" line, else CUnit's first
              failed assertion
  INCOMPLETE  the test started and never reported (hang killed by the watchdog, crash)
  NOTRUN      not started before the overall deadline (written by run-cu.py, not by parse)

iscsi-test-cu prints "  Test: NAME ..." and then either the result on the same line or the
test's own output lines (indented) followed by the result at the start of a line.
"""
import collections
import os
import re
import sys

STATUSES = ("PASS", "FAIL", "SKIP", "INCOMPLETE", "NOTRUN")
TEST_START = re.compile(r"^  Test: (\S+) \.\.\.(.*)$")
ASSERTION = re.compile(r"^\s+\d+\. \S+:\d+ ")
NOTE_MAX = 200


def parse(suite, text):
    """Rows (test, status, note) in the order the log shows them."""
    rows = []
    current = None  # [name, skip_note, fail_note]
    last_failed = None  # index in rows of a FAIL still without a note

    def close(status):
        nonlocal current, last_failed
        name, skip_note, fail_note = current
        note = ""
        if status == "PASS" and skip_note:
            status, note = "SKIP", skip_note
        elif status == "FAIL":
            note = fail_note or ""
        elif status == "INCOMPLETE":
            note = "started, never reported (hang or crash)"
        rows.append([f"{suite}.{name}", status, " ".join(note.split())[:NOTE_MAX]])
        last_failed = len(rows) - 1 if status == "FAIL" and not note else None
        current = None

    def result_at_start(s):
        if s.startswith("passed"):
            return "PASS"
        if s.startswith("FAILED"):
            return "FAIL"
        return None

    for line in text.splitlines():
        m = TEST_START.match(line)
        if m:
            if current:
                close("INCOMPLETE")
            current = [m.group(1), None, None]
            line = m.group(2)
            status = result_at_start(line)
            if status:
                close(status)
                continue
        if current is None:
            # CUnit lists a failed test's assertions after its FAILED: the first is the note.
            if last_failed is not None and ASSERTION.match(line):
                rows[last_failed][2] = " ".join(line.split())[:NOTE_MAX]
                last_failed = None
            continue
        if line.startswith("Run Summary:"):
            close("INCOMPLETE")
            continue
        for tag, slot in (("[SKIPPED]", 1), ("[FAILED]", 2)):
            at = line.find(tag)
            if at >= 0 and current[slot] is None:
                current[slot] = line[at:]
        status = result_at_start(line)
        if status:
            close(status)
    if current:
        close("INCOMPLETE")
    return [tuple(r) for r in rows]


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 2:
                rows.append((parts[0], parts[1], parts[2] if len(parts) > 2 else ""))
    return rows


def by_suite(rows):
    suites = collections.OrderedDict()
    for name, status, _ in rows:
        suites.setdefault(".".join(name.split(".")[:2]), collections.Counter())[status] += 1
    return suites


def summary(rows, label="", url="", events=None):
    total = collections.Counter(s for _, s, _ in rows)
    out = [f"iscsi-test-cu {label} {url}".rstrip(),
           f"tests: {len(rows)}  " + "  ".join(f"{s.lower()}={total[s]}" for s in STATUSES),
           ""]
    out.append(f"{'suite':34} {'tests':>5} {'pass':>5} {'fail':>5} {'skip':>5} {'hang':>5} {'notrun':>6}")
    for suite, c in by_suite(rows).items():
        out.append(f"{suite:34} {sum(c.values()):5} {c['PASS']:5} {c['FAIL']:5} {c['SKIP']:5} "
                   f"{c['INCOMPLETE']:5} {c['NOTRUN']:6}")
    if events and os.path.exists(events):
        down = [line.strip() for line in open(events) if "TARGET DOWN" in line]
        if down:
            out += ["", "target stopped answering:"] + [f"  {d}" for d in down]
    bad = [r for r in rows if r[1] not in ("PASS", "SKIP")]
    out += ["", f"not passed ({len(bad)}):"] + [f"  {s:10} {n}  {note}" for n, s, note in bad]
    return "\n".join(out)


def compare(paths):
    runs = []
    for p in paths:
        rows = load(p)
        runs.append((os.path.basename(os.path.dirname(os.path.abspath(p))), by_suite(rows),
                     collections.Counter(s for _, s, _ in rows)))
    suites = list(dict.fromkeys(s for _, per, _ in runs for s in per))

    def cell(c):
        text = f"{c['PASS']}/{c['FAIL']}/{c['SKIP']}/{c['INCOMPLETE'] + c['NOTRUN']}"
        return f"**{text}**" if c["FAIL"] or c["INCOMPLETE"] or c["NOTRUN"] else text

    out = ["| suite | " + " | ".join(f"{label} pass/fail/skip/hang" for label, _, _ in runs) + " |",
           "|---|" + "---|" * len(runs)]
    for s in suites:
        out.append(f"| {s} | " + " | ".join(cell(per.get(s, collections.Counter())) for _, per, _ in runs) + " |")
    out.append("| **all** | " + " | ".join(cell(t) for _, _, t in runs) + " |")
    return "\n".join(out)


def main(argv):
    if len(argv) >= 3 and argv[0] == "parse":
        with open(argv[2], errors="replace") as f:
            for row in parse(argv[1], f.read()):
                print("\t".join(row))
    elif len(argv) >= 2 and argv[0] == "summary":
        opts = dict(zip(argv[2::2], argv[3::2]))
        print(summary(load(argv[1]), opts.get("--label", ""), opts.get("--url", ""), opts.get("--events")))
    elif len(argv) >= 2 and argv[0] == "compare":
        print(compare(argv[1:]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
