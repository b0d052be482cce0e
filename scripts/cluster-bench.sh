#!/usr/bin/env bash
# cluster-bench.sh — what cluster mode costs (issue #10), measured in one interleaved run:
#   * a single-node server and gateway 1 of a three-gateway cluster (three etcd members on
#     loopback), each serving a 1 GiB file LUN on tmpfs (/dev/shm) prefilled with random data,
#     both from the same release binary;
#   * palisade bench against each, alternating single/cluster every round: 4 KiB randread QD32,
#     4 KiB randwrite QD32, 256 KiB read QD8, and PERSISTENT RESERVE OUT (REGISTER AND IGNORE
#     EXISTING KEY, a state change every command) at QD1 — on the cluster the etcd commit and the
#     barrier over three gateways;
#   * prints medians, the cluster/single ratios and the PR OUT latency percentiles.
# Knobs: ROUNDS=3 DURATION=8 (s per run) PR_DURATION=5 OUTDIR=target/cluster-bench/<stamp>
#        ETCD_DATA=/dev/shm/... (etcd's data dirs: tmpfs by default, so the figures are this
#        machine's CPU and loopback rather than its virtual disk's fsync; ETCD_DATA=$OUTDIR/etcd
#        puts them on disk as production etcd would be, on an SSD)
# Needs: etcd (scripts/install-deps.sh), python3. Traffic stays on 127.0.0.1.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-8}"
PR_DURATION="${PR_DURATION:-5}"
OUTDIR="${OUTDIR:-$REPO/target/cluster-bench/$(date +%Y%m%d-%H%M%S)}"
BIN="$REPO/target/release/palisade"
IQN="iqn.2026-11.io.palisade:bench"
mkdir -p "$OUTDIR/raw"
log() { echo "[cluster-bench $(date +%H:%M:%S)] $*" | tee -a "$OUTDIR/run.log" >&2; }
PIDS=()
SHM_FILES=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -f "${SHM_FILES[@]}"
    case "$ETCD_DIR" in /dev/shm/palisade-cluster-bench-etcd-*) rm -rf "$ETCD_DIR" ;; esac
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

(cd "$REPO" && cargo build --release --bin palisade >&2)
command -v etcd >/dev/null || { log "etcd missing: run scripts/install-deps.sh"; exit 1; }

log "three etcd members"
ETCD_DIR="${ETCD_DATA:-/dev/shm/palisade-cluster-bench-etcd-$$}"
mkdir -p "$ETCD_DIR"
declare -a CLIENT PEER
for i in 0 1 2; do CLIENT[i]=$(free_port); PEER[i]=$(free_port); done
INITIAL="m0=http://127.0.0.1:${PEER[0]},m1=http://127.0.0.1:${PEER[1]},m2=http://127.0.0.1:${PEER[2]}"
for i in 0 1 2; do
    etcd --name "m$i" --data-dir "$ETCD_DIR/m$i" \
        --listen-client-urls "http://127.0.0.1:${CLIENT[i]}" --advertise-client-urls "http://127.0.0.1:${CLIENT[i]}" \
        --listen-peer-urls "http://127.0.0.1:${PEER[i]}" --initial-advertise-peer-urls "http://127.0.0.1:${PEER[i]}" \
        --initial-cluster "$INITIAL" --initial-cluster-state new --initial-cluster-token "bench-$$" \
        --heartbeat-interval 50 --election-timeout 500 \
        >"$OUTDIR/etcd-m$i.log" 2>&1 &
    PIDS+=($!)
done
ENDPOINTS="\"http://127.0.0.1:${CLIENT[0]}\", \"http://127.0.0.1:${CLIENT[1]}\", \"http://127.0.0.1:${CLIENT[2]}\""
for _ in $(seq 100); do
    etcdctl --endpoints "http://127.0.0.1:${CLIENT[0]}" endpoint health >/dev/null 2>&1 && break
    sleep 0.2
done

SINGLE_FILE="/dev/shm/palisade-cluster-bench-single-$$.img"
SHARED_FILE="/dev/shm/palisade-cluster-bench-shared-$$.img"
SHM_FILES=("$SINGLE_FILE" "$SHARED_FILE")
log "prefilling two 1 GiB tmpfs files with random data"
for f in "$SINGLE_FILE" "$SHARED_FILE"; do head -c 1G /dev/urandom >"$f"; done

# config NAME PORT FILE [GATEWAY_ID]: one target, LUN 0 on FILE; a [cluster] table for gateways.
config() {
    local dir="$OUTDIR/$1"
    mkdir -p "$dir"
    {
        printf 'data_dir = "%s"\n\n[[portals]]\nname = "p"\nlisten = "127.0.0.1:%s"\ntpgt = 1\n\n' "$dir" "$2"
        printf '[[targets]]\nname = "%s"\n\n[[targets.luns]]\nid = 0\nbackend = "file"\npath = "%s"\n' "$IQN" "$3"
        if [ -n "${4:-}" ]; then
            printf '\n[cluster]\netcd_endpoints = [%s]\ngateway_id = %s\nlease_ttl_secs = 5\nself_fence_margin_ms = 1000\n' \
                "$ENDPOINTS" "$4"
        fi
    } >"$dir/palisade.toml"
    echo "$dir/palisade.toml"
}
start() { # NAME PORT FILE [GATEWAY_ID]
    local cfg ready="admin socket ready"
    cfg=$(config "$@")
    [ -n "${4:-}" ] && ready="joined the cluster; serving"
    "$BIN" serve --config "$cfg" >"$OUTDIR/$1.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 150); do
        grep -q "$ready" "$OUTDIR/$1.log" 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return 0
        sleep 0.2
    done
    log "$1 did not start:"; cat "$OUTDIR/$1.log" >&2; exit 1
}
SINGLE_PORT=$(free_port)
start single "$SINGLE_PORT" "$SINGLE_FILE"
declare -a GW_PORT
for g in 1 2 3; do
    GW_PORT[g]=$(free_port)
    start "gateway$g" "${GW_PORT[g]}" "$SHARED_FILE" "$g"
done
sleep 2 # every gateway sees the others (their joins are ALUA changes, unit attentions)

url() { echo "iscsi://127.0.0.1:$1/$IQN/0"; }
run() { # LABEL TARGET PORT ARGS...: one palisade bench run, JSON kept
    local label="$1" target="$2" port="$3"
    shift 3
    "$BIN" bench "$(url "$port")" --json --threads 1 "$@" >"$OUTDIR/raw/$label-$target-r$ROUND.json" \
        2>>"$OUTDIR/raw/bench.err" || log "bench $label on $target failed"
}
for ROUND in $(seq "$ROUNDS"); do
    order=(single cluster)
    ((ROUND % 2 == 0)) && order=(cluster single)
    for t in "${order[@]}"; do
        port=$SINGLE_PORT
        [ "$t" = cluster ] && port=${GW_PORT[1]}
        log "round $ROUND: $t"
        run randread-4k-qd32 "$t" "$port" --pattern randread --block-size 4k --qd 32 --duration "${DURATION}s"
        run randwrite-4k-qd32 "$t" "$port" --pattern randwrite --block-size 4k --qd 32 --duration "${DURATION}s"
        run read-256k-qd8 "$t" "$port" --pattern read --block-size 256k --qd 8 --duration "${DURATION}s"
        run prout-qd1 "$t" "$port" --pattern prout --qd 1 --duration "${PR_DURATION}s"
    done
done

"$BIN" cluster status --data-dir "$OUTDIR/gateway1" --json >"$OUTDIR/gateway1-status.json" || true
python3 - "$OUTDIR" <<'EOF' | tee "$OUTDIR/summary.txt"
import json, os, statistics, sys
out = sys.argv[1]
runs = {}
for name in sorted(os.listdir(os.path.join(out, "raw"))):
    if not name.endswith(".json"):
        continue
    label, target, _ = name[:-5].rsplit("-", 2)
    with open(os.path.join(out, "raw", name)) as f:
        text = f.read().strip()
    if not text:
        continue
    runs.setdefault((label, target), []).append(json.loads(text))
print(f"{'workload':<20} {'single':>12} {'cluster':>12} {'ratio':>7}   (medians of {len(next(iter(runs.values())))} rounds)")
for label in ["randread-4k-qd32", "randwrite-4k-qd32", "read-256k-qd8", "prout-qd1"]:
    s = [r["iops"] for r in runs.get((label, "single"), [])]
    c = [r["iops"] for r in runs.get((label, "cluster"), [])]
    if s and c:
        ms, mc = statistics.median(s), statistics.median(c)
        print(f"{label + ' IOPS':<20} {ms:>12.0f} {mc:>12.0f} {mc / ms:>7.3f}")
errors = sum(r["errors"] for rs in runs.values() for r in rs)
print(f"errors over all runs: {errors}")
for target in ["single", "cluster"]:
    lat = [r["write"]["latency"] for r in runs.get(("prout-qd1", target), [])]
    if lat:
        keys = [k for k in ("p50_us", "p99_us", "max_us") if k in lat[0]]
        med = {k: statistics.median(l[k] for l in lat) for k in keys}
        print(f"PR OUT latency, {target}: " + ", ".join(f"{k[:-3]} {v / 1000:.2f} ms" for k, v in med.items()))
try:
    with open(os.path.join(out, "gateway1-status.json")) as f:
        pr = json.load(f)["pr_out"]
    n = max(pr["committed"], 1)
    print(f"gateway 1: {pr['committed']} PR OUT committed, {pr['lost_races']} lost races, {pr['failed']} failed; "
          f"mean {pr['commit_ms_total'] / n:.2f} ms of which barrier {pr['barrier_ms_total'] / n:.2f} ms; "
          f"longest barrier {pr['barrier_ms_max']} ms")
except (OSError, KeyError, ValueError) as e:
    print(f"gateway 1 status unavailable: {e}")
EOF
log "done: $OUTDIR"
