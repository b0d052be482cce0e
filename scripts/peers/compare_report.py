#!/usr/bin/env python3
"""compare_report.py OUTDIR DOC — writes docs/performance.md from one compare-peers.sh run's raw
data in OUTDIR (perf.tsv, bench.tsv, disk.tsv, limits.tsv, steal.tsv, profile.txt,
isolation/isolation.md, placement.tsv, write-placement.tsv, run.env). Every goal verdict is
computed from Palisade's headline LUN (the file LUN on the peers' tmpfs, issue 13); the memory
LUN is an extra, labelled column."""
import csv
import os
import platform
import shlex
import statistics
import sys

outdir, doc = sys.argv[1:3]


def run_env():
    env = {}
    for line in open(os.path.join(outdir, "run.env")):
        key, _, value = line.strip().partition("=")
        if value.startswith("("):
            env[key] = value.strip("()").split()
        else:
            parts = shlex.split(value)
            env[key] = parts[0] if parts else ""
    return env


env = run_env()
rounds, duration, run_at = env["ROUNDS"], env["DURATION"], env.get("RUN_AT", "?")
pal_backend = env.get("PAL_BACKEND", "memory")
targets = env["TARGETS"] if isinstance(env["TARGETS"], list) else env["TARGETS"].split()
disk_fs = env.get("DISK_FS", "")
peers = [t for t in targets if not t.startswith("palisade")]
has_mem = "palisade-mem" in targets
pal_lun = ("`memory` LUN of 1 GiB" if pal_backend == "memory"
           else "`file` LUN of 1 GiB on the same tmpfs as the peers' files (like with like)")


def rows(name):
    path = os.path.join(outdir, name)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return list(csv.DictReader(f, delimiter="\t"))


def num(v):
    try:
        x = float(v)
        return x if x == x else None
    except (TypeError, ValueError):
        return None


perf, bench, disk, limits = rows("perf.tsv"), rows("bench.tsv"), rows("disk.tsv"), rows("limits.tsv")
placement = rows("placement.tsv")  # scripts/qd1-placement.sh: its rows have no "config"


def values(src, label, config, field):
    return [x for x in (num(r[field]) for r in src if r["label"] == label and r["config"] == config)
            if x is not None and x > 0]


def med(vs):
    return statistics.median(vs) if vs else None


def fmt(v, kind):
    if v is None:
        return "–"
    if kind == "iops":
        return f"{v / 1000:.1f} K"
    if kind == "mib":
        return f"{v:,.0f}"
    if kind == "us":
        return f"{v:.0f}"
    return f"{v:.2f}"


def cell(vs, kind):
    if not vs:
        return "–"
    if len(vs) == 1:
        return fmt(vs[0], kind) + " (n=1)"
    return f"{fmt(med(vs), kind)} ({fmt(min(vs), kind)}–{fmt(max(vs), kind)})"


def ratio(a, b):
    if not a or not b:
        return "–"
    return f"{a / b:.2f}×"


def pal(src, cfg, field, label="palisade"):
    return med(values(src, label, cfg, field))


# (title, client, source, config, field, kind)
throughput = [
    ("4 KiB random read, QD1 — IOPS", "iscsi-perf", perf, "rr4k-qd1", "iops", "iops"),
    ("4 KiB random read, QD32 — IOPS", "iscsi-perf", perf, "rr4k-qd32", "iops", "iops"),
    ("256 KiB sequential read, QD8 — MiB/s", "iscsi-perf", perf, "seq256k-qd8", "MiBps", "mib"),
    ("4 KiB sequential write, QD32 — IOPS", "qemu-img bench", perf, "sw4k-qd32", "iops", "iops"),
    ("256 KiB sequential write, QD8 — MiB/s", "qemu-img bench", perf, "sw256k-qd8", "MiBps", "mib"),
    ("4 KiB random read, QD1 — IOPS", "palisade bench", bench, "randread-4k-qd1", "iops", "iops"),
    ("4 KiB random read, QD32 — IOPS", "palisade bench", bench, "randread-4k-qd32", "iops", "iops"),
    ("4 KiB random write, QD32 — IOPS", "palisade bench", bench, "randwrite-4k-qd32", "iops", "iops"),
    ("4 KiB random write FUA, QD32 — IOPS", "palisade bench", bench, "randwrite-4k-qd32-fua", "iops", "iops"),
    ("256 KiB sequential read, QD8 — MiB/s", "palisade bench", bench, "read-256k-qd8", "MiBps", "mib"),
    ("256 KiB sequential write, QD8 — MiB/s", "palisade bench", bench, "write-256k-qd8", "MiBps", "mib"),
    ("256 KiB sequential write FUA, QD8 — MiB/s", "palisade bench", bench, "write-256k-qd8-fua", "MiBps", "mib"),
    ("4 KiB random read, 64 sessions × QD8 — IOPS", "palisade bench", bench, "randread-4k-64x8", "iops", "iops"),
]
cpu_rows = [(t, tool, src, cfg, "target_cpu_s_per_GiB", "cpu") for (t, tool, src, cfg, _, _) in throughput]


def table(spec):
    head = ["palisade (file)" if t == "palisade" and pal_backend != "memory" else
            "palisade memory LUN" if t == "palisade-mem" else t for t in targets]
    extra = [f"palisade ÷ {p}" for p in peers] + (["file ÷ memory LUN"] if has_mem else [])
    out = ["| workload | client | " + " | ".join(head) + " | " + " | ".join(extra) + " |",
           "|---|---|" + "---|" * (len(targets) + len(extra))]
    for title, tool, src, cfg, field, kind in spec:
        title = title.split(" — ")[0] if kind == "cpu" else title
        meds = {t: med(values(src, t, cfg, field)) for t in targets}
        cells = [cell(values(src, t, cfg, field), kind) for t in targets]
        ratios = [ratio(meds.get("palisade"), meds.get(p)) for p in peers]
        if has_mem:
            ratios.append(ratio(meds.get("palisade"), meds.get("palisade-mem")))
        out.append(f"| {title} | {tool} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    return "\n".join(out)


lat = [("4 KiB random read, QD1", "randread-4k-qd1"), ("4 KiB random read, QD32", "randread-4k-qd32"),
       ("4 KiB random write, QD32", "randwrite-4k-qd32"), ("256 KiB sequential read, QD8", "read-256k-qd8"),
       ("256 KiB sequential write, QD8", "write-256k-qd8")]
lat_lines = ["| workload (palisade bench) | " + " | ".join(f"{t} p50 / p99 µs" for t in targets) + " |",
             "|---|" + "---|" * len(targets)]
for title, cfg in lat:
    cells = []
    for t in targets:
        p50, p99 = med(values(bench, t, cfg, "p50_us")), med(values(bench, t, cfg, "p99_us"))
        cells.append(f"{fmt(p50, 'us')} / {fmt(p99, 'us')}" if p50 else "–")
    lat_lines.append(f"| {title} | " + " | ".join(cells) + " |")

# Data not in the page cache: each Palisade LUN against tgt on the very same backing store.
disk_specs = [("4 KiB random read, QD1", "randread-4k-qd1", "iops", "iops"),
              ("4 KiB random read, QD32", "randread-4k-qd32", "iops", "iops"),
              ("256 KiB sequential read, QD8", "read-256k-qd8", "MiBps", "mib"),
              ("4 KiB random write, QD32", "randwrite-4k-qd32", "iops", "iops"),
              ("256 KiB sequential write, QD8", "write-256k-qd8", "MiBps", "mib")]
disk_pairs = [("a file on the disk, O_DIRECT", "palisade-direct", "tgt-direct"),
              ("a loop device (direct-io) over a disk file, O_DIRECT", "palisade-blk", "tgt-blk")]
disk_lines = ["| storage | workload | palisade IOPS or MiB/s | tgt (bsoflags=direct) | palisade ÷ tgt | "
              "palisade p50 / p99 / p99.9 µs | tgt p50 / p99 / p99.9 µs | CPU-s/GiB palisade / tgt |",
              "|---|---|---|---|---|---|---|---|"]
disk_verdicts = []
for storage, pl, tl in disk_pairs:
    for title, cfg, field, kind in disk_specs:
        pv, tv = med(values(disk, pl, cfg, field)), med(values(disk, tl, cfg, field))
        if pv is None and tv is None:
            continue

        def pct(label):
            p = [med(values(disk, label, cfg, f)) for f in ("p50_us", "p99_us", "p999_us")]
            return " / ".join(fmt(x, "us") for x in p)

        cpu = f"{fmt(med(values(disk, pl, cfg, 'target_cpu_s_per_GiB')), 'cpu')} / " \
              f"{fmt(med(values(disk, tl, cfg, 'target_cpu_s_per_GiB')), 'cpu')}"
        disk_lines.append(f"| {storage} | {title} | {cell(values(disk, pl, cfg, field), kind)} | "
                          f"{cell(values(disk, tl, cfg, field), kind)} | {ratio(pv, tv)} | {pct(pl)} | {pct(tl)} | {cpu} |")
        if pv and tv:
            disk_verdicts.append((f"{storage}: {title}", pv / tv))

loop = [x for x in (num(r["GiB_per_s"]) for r in limits if r.get("test") == "iperf3-loopback-P1") if x]
loop_med = med(loop)


def best_peer(src, cfg, field, higher=True):
    vals = [(med(values(src, p, cfg, field)), p) for p in peers]
    vals = [v for v in vals if v[0] is not None]
    if not vals:
        return None, None
    return max(vals) if higher else min(vals)


def verdict(ok):
    return "**met**" if ok else "**not met**" if ok is not None else "–"


goals = ["| goal | measured | verdict |", "|---|---|---|"]


def goal(text, measured, ok):
    goals.append(f"| {text} | {measured} | {verdict(ok)} |")


# Issue 13: the file LUN within 20 % of the memory LUN (IOPS and CPU per GiB).
if has_mem:
    for title, src, cfg, field, kind, client in [
            ("4 KiB random read QD1", perf, "rr4k-qd1", "iops", "iops", "iscsi-perf"),
            ("4 KiB random read QD32", perf, "rr4k-qd32", "iops", "iops", "iscsi-perf"),
            ("256 KiB sequential read QD8", perf, "seq256k-qd8", "MiBps", "mib", "iscsi-perf"),
            ("4 KiB random read QD1", bench, "randread-4k-qd1", "iops", "iops", "palisade bench"),
            ("4 KiB random read QD32", bench, "randread-4k-qd32", "iops", "iops", "palisade bench"),
            ("256 KiB sequential read QD8", bench, "read-256k-qd8", "MiBps", "mib", "palisade bench")]:
        f, m = pal(src, cfg, field), pal(src, cfg, field, "palisade-mem")
        fc, mc = pal(src, cfg, "target_cpu_s_per_GiB"), pal(src, cfg, "target_cpu_s_per_GiB", "palisade-mem")
        ok = (f / m >= 0.8 and fc / mc <= 1.2) if f and m and fc and mc else None
        goal(f"file LUN within 20 % of the memory LUN: {title} ({client})",
             f"{fmt(f, kind)} vs {fmt(m, kind)}: {ratio(f, m)}; CPU-s/GiB {fmt(fc, 'cpu')} vs {fmt(mc, 'cpu')}: {ratio(fc, mc)}", ok)
v, who = best_peer(perf, "rr4k-qd32", "iops")
p = pal(perf, "rr4k-qd32", "iops")
goal("4 KiB random read QD32 IOPS ≥ 1.5× the better peer (iscsi-perf)",
     f"palisade {fmt(p, 'iops')} vs {who} {fmt(v, 'iops')}: {ratio(p, v)}", p / v >= 1.5 if p and v else None)
v, who = best_peer(bench, "randread-4k-qd32", "iops")
p = pal(bench, "randread-4k-qd32", "iops")
goal("4 KiB random read QD32 IOPS ≥ 1.5× the better peer (palisade bench)",
     f"palisade {fmt(p, 'iops')} vs {who} {fmt(v, 'iops')}: {ratio(p, v)}", p / v >= 1.5 if p and v else None)
v, who = best_peer(bench, "randread-4k-qd1", "p50_us", higher=False)
p = pal(bench, "randread-4k-qd1", "p50_us")
goal("4 KiB read QD1 p50 latency ≤ the better peer (palisade bench)", f"palisade {fmt(p, 'us')} µs vs {who} {fmt(v, 'us')} µs",
     p <= v if p and v else None)
# Writes: at least 1.5× the better peer.
for title, tool, src, cfg, field, kind in throughput:
    if "write" not in title:
        continue
    p, (v, who) = pal(src, cfg, field), best_peer(src, cfg, field)
    goal(f"{title.split(' — ')[0]} ≥ 1.5× the better peer ({tool})", f"palisade {fmt(p, kind)} vs {who} {fmt(v, kind)}: {ratio(p, v)}",
         p / v >= 1.5 if p and v else None)
# Target CPU per GiB ≤ 0.5× the better peer on every workload.
cpu_ok, cpu_miss = [], []
for title, tool, src, cfg, field, kind in cpu_rows:
    pv = pal(src, cfg, field)
    v, who = best_peer(src, cfg, field, higher=False)
    if pv and v:
        (cpu_ok if pv / v <= 0.5 else cpu_miss).append(f"{title.split(' — ')[0]} ({tool}) {pv:.2f} vs {who} {v:.2f}: {pv / v:.2f}×")
if cpu_ok or cpu_miss:
    missed = "; above it: " + "; ".join(cpu_miss) if cpu_miss else ""
    goal("target CPU-s per GiB ≤ 0.5× the better peer, every workload", f"{len(cpu_ok)} of {len(cpu_ok) + len(cpu_miss)} rows{missed}",
         not cpu_miss)
if disk_verdicts:
    below = [f"{name} {r:.2f}×" for name, r in disk_verdicts if r < 1.0]
    goal("data not in the page cache: ≥ tgt with bsoflags=direct on the same storage, every row",
         f"{len(disk_verdicts) - len(below)} of {len(disk_verdicts)} rows" + ("; below: " + "; ".join(below) if below else ""),
         not below)
iso_path = os.path.join(outdir, "isolation", "isolation.md")
isolation = open(iso_path).read().strip() if os.path.exists(iso_path) else ""
if isolation:
    goal("a slow disk stalls only the commands that wait for it", "see [Slow-disk isolation](#slow-disk-isolation)",
         "**isolated**" in isolation)
# 4 KiB QD1 with fixed CPU placement (scripts/qd1-placement.sh): every target on the same CPUs.
placements = [("cross", "target on CPU 1, client on CPU 0"), ("same", "target and client on CPU 0")]
storages = [("tmpfs", "page cache (tmpfs file)", "palisade", "tgt"), ("disk", "disk file, O_DIRECT", "palisade-direct", "tgt-direct")]


def placed(where, storage, label, field):
    return [x for x in (num(r[field]) for r in placement
                        if r["placement"] == where and r["storage"] == storage and r["label"] == label) if x is not None]


placement_lines = ["| placement | storage | target | IOPS | p50 µs | p99 µs | CPU µs per I/O | CPU-s/GiB | IOPS ÷ tgt | CPU ÷ tgt |",
                   "|---|---|---|---|---|---|---|---|---|---|"]
for where, where_text in placements:
    for storage, storage_text, pl, tl in storages:
        ti, tc = med(placed(where, storage, tl, "iops")), med(placed(where, storage, tl, "cpu_s_per_GiB"))
        for label in (pl, tl, "floor"):
            if not placed(where, storage, label, "iops"):
                continue
            i, c = med(placed(where, storage, label, "iops")), med(placed(where, storage, label, "cpu_s_per_GiB"))
            name = "floor (read + writev only)" if label == "floor" else label
            placement_lines.append(
                f"| {where}: {where_text} | {storage_text} | {name} | {cell(placed(where, storage, label, 'iops'), 'iops')} | "
                f"{fmt(med(placed(where, storage, label, 'p50_us')), 'us')} | {fmt(med(placed(where, storage, label, 'p99_us')), 'us')} | "
                f"{fmt(med(placed(where, storage, label, 'cpu_us_per_io')), 'cpu')} | {cell(placed(where, storage, label, 'cpu_s_per_GiB'), 'cpu')} | "
                f"{'' if label == tl else ratio(i, ti)} | {'' if label == tl else ratio(c, tc)} |")
        pc, pi = med(placed(where, storage, pl, "cpu_s_per_GiB")), med(placed(where, storage, pl, "iops"))
        if storage == "tmpfs" and pc and tc:
            fc = med(placed(where, storage, "floor", "cpu_s_per_GiB"))
            floor = (f"; the floor is {fc:.2f}, {fc / tc:.2f}× tgt, so palisade spends {pc / fc:.2f}× the floor" if fc else "")
            goal(f"4 KiB QD1 target CPU-s per GiB ≤ 0.5× tgt, fixed placement {where} ({where_text})",
                 f"palisade {pc:.2f} vs tgt {tc:.2f}: {pc / tc:.2f}×{floor}", pc / tc <= 0.5)
        if storage == "disk" and pi and ti:
            goal(f"4 KiB QD1 direct reads ≥ tgt bsoflags=direct, fixed placement {where} ({where_text})",
                 f"palisade {fmt(pi, 'iops')} vs tgt {fmt(ti, 'iops')}: {pi / ti:.2f}× (ranges in the placement table)", pi >= ti)
placement_section = ("\n".join(placement_lines) if len(placement_lines) > 2 else "Not measured in this run (PLACEMENT=0).")

# 256 KiB writes through qemu-img with fixed CPU placement (scripts/write-placement.sh).
writes_placed = rows("write-placement.tsv")  # perf.py's columns, round = PLACEMENT:ROUND


def wplaced(where, label, field):
    return [x for x in (num(r[field]) for r in writes_placed
                        if r["round"].split(":")[0] == where and r["label"] == label) if x is not None and x > 0]


write_lines = ["| placement | target | MiB/s | target CPU-s/GiB | client CPU-s | MiB/s ÷ istgt | MiB/s ÷ tgt | CPU ÷ better peer |",
               "|---|---|---|---|---|---|---|---|"]
for where, where_text in placements:
    peer_mib = {p: med(wplaced(where, p, "MiBps")) for p in ("istgt", "tgt")}
    known = [(v, p) for p, v in peer_mib.items() if v]
    best_mib, best = max(known) if known else (None, None)
    best_cpu = med(wplaced(where, best, "target_cpu_s_per_GiB")) if best else None
    for label in ("palisade", "istgt", "tgt"):
        mib = wplaced(where, label, "MiBps")
        if not mib:
            continue
        m, c = med(mib), med(wplaced(where, label, "target_cpu_s_per_GiB"))
        write_lines.append(
            f"| {where}: {where_text} | {label} | {cell(mib, 'mib')} | {cell(wplaced(where, label, 'target_cpu_s_per_GiB'), 'cpu')} | "
            f"{fmt(med(wplaced(where, label, 'client_cpu_s')), 'cpu')} | "
            f"{ratio(m, peer_mib['istgt']) if label == 'palisade' else ''} | {ratio(m, peer_mib['tgt']) if label == 'palisade' else ''} | "
            f"{ratio(c, best_cpu) if label == 'palisade' else ''} |")
    p_mib, p_cpu = med(wplaced(where, "palisade", "MiBps")), med(wplaced(where, "palisade", "target_cpu_s_per_GiB"))
    if p_mib and best_mib:
        goal(f"256 KiB sequential write (qemu-img) ≥ 1.5× the better peer, fixed placement {where} ({where_text})",
             f"palisade {fmt(p_mib, 'mib')} MiB/s vs {best} {fmt(best_mib, 'mib')}: {p_mib / best_mib:.2f}×", p_mib / best_mib >= 1.5)
    if p_cpu and best_cpu:
        goal(f"256 KiB sequential write (qemu-img) target CPU-s per GiB ≤ 0.5× the better peer, fixed placement {where}",
             f"palisade {p_cpu:.3f} vs {best} {best_cpu:.3f}: {p_cpu / best_cpu:.2f}×", p_cpu / best_cpu <= 0.5)
write_section = ("\n".join(write_lines) if len(write_lines) > 2 else "Not measured in this run (PLACEMENT=0).")

v, who = best_peer(perf, "seq256k-qd8", "MiBps")
p = pal(perf, "seq256k-qd8", "MiBps")
ceiling = loop_med * 1024 if loop_med else None
share = f", {100 * p / ceiling:.0f} % of loopback TCP ({loop_med:.2f} GiB/s)" if p and ceiling else ""
goal("(issue 5) 256 KiB sequential read ≥ 1.3× the better peer and ≥ 70 % of loopback TCP",
     f"palisade {fmt(p, 'mib')} MiB/s vs {who} {fmt(v, 'mib')}: {ratio(p, v)}{share}",
     (p / v >= 1.3 and (ceiling is None or p >= 0.7 * ceiling)) if p and v else None)
many, one = pal(bench, "randread-4k-64x8", "iops"), pal(bench, "randread-4k-qd32", "iops")
goal("(issue 5) 64 sessions × QD8 within 15 % of 1 session × QD32 (palisade bench)", f"{fmt(many, 'iops')} vs {fmt(one, 'iops')}: {ratio(many, one)}",
     many >= 0.85 * one if many and one else None)

profile_path = os.path.join(outdir, "profile.txt")
profile = open(profile_path).read().strip() if os.path.exists(profile_path) else ""
host = f"{os.cpu_count()} CPUs, Linux {platform.release()}"
busy = [x for x in (num(r["sys_busy_pct"]) for r in perf + bench + disk) if x is not None]
steal_path = os.path.join(outdir, "steal.tsv")
steal = [x for x in (num(v) for v in (open(steal_path).read().split() if os.path.exists(steal_path) else [])) if x is not None]
steal_note = (f" Hypervisor steal time during the matrix (sampled each second): median {statistics.median(steal):.0f} %, "
              f"{sum(1 for x in steal if x >= 10) * 100 / len(steal):.0f} % of the seconds at 10 % or more, max {max(steal):.0f} %."
              if steal else "")
disk_section = ("\n".join(disk_lines) if len(disk_lines) > 2 else "Not measured in this run (DISK=0).")
text = f"""# Performance: Palisade next to tgt and istgt

Generated by `scripts/compare-peers.sh` from its run of {run_at} ({host}); {rounds} rounds of
{duration} s per cell, targets interleaved round by round (A B C D, then D C B A). Do not edit by hand:
rerun the script.

**Read the numbers as noisy.** The machine has 2 cores shared with other work; initiator and target
run on the same cores (the machine was {fmt(med(busy), 'us')} % busy in the median run), so every
cell moves by 10–30 % between runs and a ratio is only meaningful where the min–max ranges do not
overlap.{steal_note} The client matters as much as the target: compare within a row, not across clients.

## Setup

- **palisade**: release build, one server: the headline column is its {pal_lun}, prefilled with
  random data by `palisade bench`; **palisade memory LUN** is a 1 GiB memory LUN on the same server
  (an extra column: what the file LUN is measured against, not a peer); default session settings
  (MaxRecvDataSegmentLength 256 KiB, FirstBurstLength 64 KiB, ImmediateData=Yes, InitialR2T=Yes, CmdSN window 128).
- **tgt** 1.0.85 and **istgt** 0.4 (Debian packages, `scripts/peers/peers.sh`): 1 GiB files on tmpfs,
  prefilled from /dev/urandom.
- Data not in the page cache: a 1 GiB file on this machine's disk ({disk_fs or 'its file system'}) served by
  Palisade with `direct_io = true` and by tgt with `bsoflags=direct`, and a loop device (`losetup
  --direct-io=on`) over another disk file, served by both the same way; the same blocks for both targets.
- Clients: libiscsi `iscsi-perf` (reads, one session), `qemu-img bench` through qemu's libiscsi driver
  (sequential writes, count sized to ~{duration} s), and `palisade bench --threads 1` (`--fua` for the
  FUA rows). Target CPU is utime+stime of the target's PID from /proc over the run, divided by GiB moved.
- Loopback TCP ceiling (iperf3, one stream, same run): {fmt(loop_med, 'cpu')} GiB/s (n={len(loop)}).

## Throughput: median (min–max)

{table(throughput)}

## Target CPU seconds per GiB moved: median (min–max), lower is better

{table(cpu_rows)}

## Latency seen by palisade bench (median of the runs' percentiles)

{chr(10).join(lat_lines)}

## Data not in the page cache: direct I/O on the disk and a block device (palisade bench)

{disk_section}

## 4 KiB random reads at QD1 with fixed CPU placement (`scripts/qd1-placement.sh`)

At queue depth 1 each command costs a few wake-ups, and on this 2-CPU VM a wake-up across CPUs (an
IPI to a halted vCPU) costs several times one on the same CPU: compare the floor's CPU per I/O in
the two placements below. In the unpinned rows above the scheduler decides per run whether a
target's thread shares the client's CPU or the disk interrupt's, which moves QD1 results by 20 %
either way and is no property of the target (perf sched traces of one run: tgt's threads shared
CPU 0 with the client, its 4 KiB socket write took 3 µs; Palisade's worker sat on CPU 1 with the
disk interrupt, its writev took 31 µs). Here every target, and the client, is pinned the same
way, interleaved round by round; "floor" is `benches/qd1_floor.rs`, a server that only reads the
48-byte command and writes 48 + 4096 bytes back (no protocol, no SCSI, no storage): the kernel's
cost per I/O, below which no target can go.
Medians (min–max) of {rounds} rounds of {duration} s.

{placement_section}

## 256 KiB sequential writes with fixed CPU placement (`scripts/write-placement.sh`)

qemu-img bench -w, QD8, through qemu's libiscsi driver: this client spends its time in the kernel
sending 256 KiB per command, and how much depends on where the target's threads run relative to
it. Unpinned, one target's rate moves between runs by up to 1.6× (the unpinned row above; istgt
ranged 1,551–2,500 MiB/s over three runs), which is no property of the target. Here each target
and the client are pinned the same way, interleaved round by round, each target on its own 1 GiB
tmpfs file filled with random data. The better peer is the one with the higher median MiB/s in
that placement. Medians (min–max) of {rounds} rounds.

{write_section}

## Slow-disk isolation

{isolation if isolation else "Not measured in this run (ISOLATION=0)."}

## Goals (issue 13; two carried over from issue 5)

{chr(10).join(goals)}

## Measured elsewhere

Reservations at scale (4,096 registrants against 2, PR OUT latencies with and without APTPL):
[reservations.md](reservations.md#measured-reservation-scale-issue-15), from `cargo bench --bench pr_io` and `--bench pr_out`.

## Where Palisade's time goes

{profile if profile else "No profile in this run (PROFILE=0 or `perf` unavailable)."}

## Reproduce

```
scripts/compare-peers.sh                  # ROUNDS=3 DURATION=8 PROFILE=1 DISK=1 ISOLATION=1; rewrites this file
ROUNDS=5 DURATION=15 scripts/compare-peers.sh   # steadier numbers on a quiet machine
scripts/slow-disk-isolation.sh            # the isolation table alone
```

`palisade bench` works against any target on its own, e.g.:

```
palisade bench iscsi://127.0.0.1:3260/iqn.2026-11.io.palisade:default/0 --pattern randread --block-size 4k --qd 32 --duration 10s
palisade bench URL --pattern mixed --read-pct 70 --sessions 4 --qd 16 --json
palisade bench URL --pattern randwrite --fua --qd 32                              # every write durable before it completes
palisade bench URL --sessions 2 --connections 4 --qd 32                          # MC/S, if the target allows it
palisade bench URL --pattern write --verify --block-size 64k --total-bytes 1GiB   # then --pattern read --verify
palisade bench iscsi://user%secret@host/iqn.x:y/0 ...                             # CHAP
```
"""
open(doc, "w").write(text)
print(f"wrote {doc}")
