#!/usr/bin/env python3
"""limits.py — the ceilings of this machine that bound any iSCSI target on loopback, measured next
to the targets so a target's number can be read as a share of what was possible:

  iperf3-loopback-P1        TCP over 127.0.0.1, one stream (one iSCSI connection's path)
  iperf3-loopback-P2        two streams
  iperf3-loopback-P1-128k   one stream written in 128 KiB writes (near a Data-In PDU's size)
  tmpfs-read-bs1M / 256k / 4k   dd of a 1 GiB random file on /dev/shm to /dev/null (the peers'
                            LUNs live there)

Knobs: DURATION [10] seconds per iperf3 run, REPS [2], IPERF_PORT [5299] (the iperf3 server
listens on 127.0.0.1 only and is the one process stopped afterwards),
OUT [PEERS_STATE/results/perf/limits.tsv] (appended: ts test rep GiB_per_s note).
Installs iperf3 with apt-get when missing. Exit 1 if a measurement failed.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    duration = int(os.environ.get("DURATION", "10"))
    reps = int(os.environ.get("REPS", "2"))
    port = os.environ.get("IPERF_PORT", "5299")
    state = os.environ.get("PEERS_STATE") or os.path.join(
        os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state"), "palisade", "peers")
    out = os.environ.get("OUT") or os.path.join(state, "results", "perf", "limits.tsv")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    if not shutil.which("iperf3"):
        subprocess.run(["bash", "-c", f". '{HERE}/lib.sh' && ensure_debs iperf3"], check=True)
    if not os.path.exists(out):
        with open(out, "w") as f:
            f.write("ts\ttest\trep\tGiB_per_s\tnote\n")
    failed = 0

    def row(test, rep, gibps, note):
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%S')}\t{test}\t{rep}\t{gibps}\t{note}"
        with open(out, "a") as f:
            f.write(line + "\n")
        print(line, flush=True)

    server = subprocess.Popen(["iperf3", "-s", "-B", "127.0.0.1", "-p", port], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        time.sleep(1)
        if server.poll() is not None:
            sys.exit(f"limits.py: iperf3 server did not start on 127.0.0.1:{port} (port taken?)")
        for rep in range(1, reps + 1):
            for name, extra in (("P1", []), ("P2", ["-P", "2"]), ("P1-128k", ["-l", "128K"])):
                cmd = ["iperf3", "-c", "127.0.0.1", "-p", port, "-t", str(duration), "-J", *extra]
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30)
                try:
                    bps = json.loads(r.stdout)["end"]["sum_received"]["bits_per_second"]
                    row(f"iperf3-loopback-{name}", rep, f"{bps / 8 / 2**30:.2f}", " ".join(cmd))
                except (ValueError, KeyError):
                    failed += 1
                    print(f"limits.py: {' '.join(cmd)} failed: {r.stdout[-300:]}{r.stderr[-300:]}", file=sys.stderr)
    finally:
        server.terminate()
        server.wait()

    fd, path = tempfile.mkstemp(prefix="palisade-limits-", suffix=".img", dir="/dev/shm")
    os.close(fd)
    try:
        subprocess.run(["dd", "if=/dev/urandom", f"of={path}", "bs=1M", "count=1024", "status=none"], check=True)
        for rep in range(1, reps + 1):
            for bs in ("1M", "256k", "4k"):
                r = subprocess.run(["dd", f"if={path}", "of=/dev/null", f"bs={bs}"], capture_output=True, text=True)
                m = re.search(r"(\d+) bytes .* copied, ([0-9.]+) s", r.stderr)
                if r.returncode or not m:
                    failed += 1
                    print(f"limits.py: dd bs={bs} failed: {r.stderr}", file=sys.stderr)
                    continue
                gibps = int(m.group(1)) / float(m.group(2)) / 2**30
                row(f"tmpfs-read-bs{bs}", rep, f"{gibps:.2f}", f"dd of a 1 GiB file on /dev/shm, bs={bs}")
    finally:
        os.unlink(path)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
