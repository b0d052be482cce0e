#!/usr/bin/env python3
"""perf.py URL LABEL — throughput of one iSCSI LUN seen by two clients nobody here wrote, with the
CPU the target, the client and the whole machine spent on it. One TSV row per run.

Configs (CONFIGS, space-separated), KIND SIZE -qd DEPTH, size in k or m:
  rr4k-qd32    random reads      libiscsi iscsi-perf -r (one session, one connection)
  seq256k-qd8  sequential reads  iscsi-perf
  sw256k-qd8   sequential WRITES qemu-img bench -w through qemu's libiscsi driver: count-based,
               so a short pilot run outside the measured window sizes the count to last about
               DURATION seconds. Writes destroy the LUN's data.

Knobs (environment, defaults in brackets):
  CONFIGS   ["rr4k-qd1 rr4k-qd32 rr4k-qd128 seq256k-qd8 seq256k-qd32"]
  DURATION  [12] seconds per run     REPS [1] runs of each config
  PID       target pid for its CPU time (utime+stime from /proc); for LABEL tgt or istgt it is
            asked from peers.sh when unset; without one the target CPU columns are 0
  ROUND     free tag stored in the row (compare-peers.sh and ab.sh put the round number there)
  OUT       [PEERS_STATE/results/perf/runs.tsv], appended; raw client output in OUT's raw/ folder

Columns: ts label config round rep bs_bytes qd random iops MiBps target_cpu_s client_cpu_s
sys_busy_pct target_cpu_s_per_GiB total_cpu_s_per_GiB wall_s  (per GiB = CPU seconds per GiB
moved in the measured window; total = every CPU of the machine, busy time). Exit 1 if a run
failed (no row is written for it), 2 on bad arguments.
"""
import os
import re
import resource
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
COLUMNS = ("ts label config round rep bs_bytes qd random iops MiBps target_cpu_s client_cpu_s sys_busy_pct "
           "target_cpu_s_per_GiB total_cpu_s_per_GiB wall_s").split()
TICK = os.sysconf("SC_CLK_TCK")


def usage(msg):
    sys.exit(f"perf.py: {msg}\n\n{__doc__}" if msg else __doc__)


def parse_config(cfg):
    m = re.fullmatch(r"(rr|seq|sw)(\d+)([km])-qd(\d+)", cfg)
    if not m:
        usage(f"config {cfg!r} is not KIND SIZE -qd N (e.g. rr4k-qd32)")
    size = int(m.group(2)) * (1024 if m.group(3) == "k" else 1024 * 1024)
    if size % 512:
        usage(f"config {cfg!r}: the size must be a multiple of 512 bytes")
    return m.group(1), size, int(m.group(4))


def target_ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    except (OSError, IndexError, ValueError):
        return 0


def machine_ticks():
    with open("/proc/stat") as f:
        cpu = [int(x) for x in f.readline().split()[1:]]
    return sum(cpu) - cpu[3] - cpu[4], sum(cpu)  # busy = all - idle - iowait


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(cmd, timeout, log_path):
    """Runs a client, its output into log_path: (exit code or None on timeout, output)."""
    with open(log_path, "wb") as log:
        try:
            rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = None
    with open(log_path, errors="replace") as f:
        return rc, f.read()


def qemu_bench(url, size, qd, count, log_path, timeout):
    cmd = ["qemu-img", "bench", "-f", "raw", "-t", "none", "-w", "-d", str(qd), "-s", str(size), "-c", str(count), url]
    rc, out = run(cmd, timeout, log_path)
    m = re.search(r"completed in ([0-9.]+) seconds", out)
    return (float(m.group(1)) if rc == 0 and m else None), rc


def main():
    if len(sys.argv) != 3 or not sys.argv[1].startswith("iscsi://"):
        usage("")
    url, label = sys.argv[1], sys.argv[2]
    configs = [parse_config(c) + (c,) for c in os.environ.get(
        "CONFIGS", "rr4k-qd1 rr4k-qd32 rr4k-qd128 seq256k-qd8 seq256k-qd32").split()]
    duration = int(os.environ.get("DURATION", "12"))
    reps = int(os.environ.get("REPS", "1"))
    state = os.environ.get("PEERS_STATE") or os.path.join(
        os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state"), "palisade", "peers")
    out = os.environ.get("OUT") or os.path.join(state, "results", "perf", "runs.tsv")
    raw = os.path.join(os.path.dirname(os.path.abspath(out)), "raw")
    os.makedirs(raw, exist_ok=True)
    rnd = os.environ.get("ROUND", "")
    pid = os.environ.get("PID", "")
    if not pid and label in ("tgt", "istgt"):
        pid = subprocess.run([os.path.join(HERE, "peers.sh"), "pid", label], capture_output=True,
                             text=True).stdout.strip()
    if not pid:
        print(f"perf.py: no PID for {label}: target CPU columns will be 0", file=sys.stderr)
    # The clients, installed the way every script here installs what it needs.
    need = "ensure_debs libiscsi-bin"
    if any(kind == "sw" for kind, _, _, _ in configs):
        need += " && ensure_qemu_iscsi"
    if subprocess.run(["bash", "-c", f". '{HERE}/lib.sh' && {need}"]).returncode != 0:
        sys.exit(f"perf.py: cannot install the clients ({need})")
    for kind, _, _, _ in configs:
        tool = "qemu-img" if kind == "sw" else "iscsi-perf"
        if not shutil.which(tool):
            sys.exit(f"perf.py: {tool} not found after installing the clients")
    if not os.path.exists(out):
        with open(out, "w") as f:
            f.write("\t".join(COLUMNS) + "\n")

    failed = 0
    for kind, size, qd, cfg in configs:
        for rep in range(1, reps + 1):
            log_path = os.path.join(raw, f"{label}-{cfg}-{time.strftime('%Y%m%d-%H%M%S')}-r{rnd or 0}.{rep}.log")
            if kind == "sw":
                # Pilot, outside the accounting: how many writes make DURATION seconds.
                pilot = max(2000, qd * 64)
                secs, _ = qemu_bench(url, size, qd, pilot, log_path, 120)
                count = max(1000, int(pilot * duration / secs)) if secs else pilot
            t0, (b0, a0), c0, w0 = target_ticks(pid), machine_ticks(), children_cpu(), time.monotonic()
            if kind == "sw":
                secs, rc = qemu_bench(url, size, qd, count, log_path, duration * 4 + 60)
                iops = int(count / secs) if secs else 0
                window = secs or 0.0
            else:
                cmd = ["iscsi-perf", "-t", str(duration), "-m", str(qd), "-b", str(size // 512)]
                cmd += ["-r"] if kind == "rr" else []
                rc, text = run(cmd + [url], duration + 30, log_path)
                # Progress lines are \r-separated; the last "iops average N" is the run's.
                found = re.findall(r"iops average (\d+)", text)
                iops = int(found[-1]) if rc == 0 and found else 0
                window = float(duration)
            t1, (b1, a1), c1, w1 = target_ticks(pid), machine_ticks(), children_cpu(), time.monotonic()
            if not iops:
                failed += 1
                print(f"{label:8} {cfg:14} rep{rep} FAILED (exit {rc}; log {log_path})", file=sys.stderr)
                continue
            tcpu, ccpu = (t1 - t0) / TICK, c1 - c0
            busy_pct = 100.0 * (b1 - b0) / (a1 - a0) if a1 > a0 else 0.0
            gib = iops * size * window / 2**30
            row = [time.strftime("%Y-%m-%dT%H:%M:%S"), label, cfg, rnd or "-", rep, size, qd,
                   1 if kind == "rr" else 0, iops, f"{iops * size / 2**20:.1f}", f"{tcpu:.2f}", f"{ccpu:.2f}",
                   f"{busy_pct:.0f}", f"{tcpu / gib:.3f}", f"{(b1 - b0) / TICK / gib:.3f}", f"{w1 - w0:.1f}"]
            with open(out, "a") as f:
                f.write("\t".join(map(str, row)) + "\n")
            print(f"{label:8} {cfg:14} rep{rep} iops={iops:>8} {row[9]:>8} MiB/s target_cpu={tcpu:.2f}s "
                  f"client_cpu={ccpu:.2f}s busy={row[12]}% target_cpu/GiB={row[13]}", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
