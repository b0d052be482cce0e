#!/usr/bin/env bash
# odx-bench.sh — the ODX copy benchmark (docs/odx.md): a copy between two file LUNs by ODX
# (POPULATE TOKEN + RECEIVE ROD TOKEN INFORMATION + WRITE USING TOKEN) against the same copy
# read and written by the initiator, with time and bytes over the wire.
#
#   1. host, loopback: `cargo bench --bench odx_copy` (Palisade's own initiator, release build),
#      ODX_BENCH_MIB (default 1024) and ODX_BENCH_ROUNDS (default 3);
#   2. with VM_MIB=N (needs root, as every VM test): the Linux initiator in the VM harness,
#      sg_raw/ddptctl for ODX and `ddpt bpt=2048` for the initiator copy, bytes counted on the
#      guest's NIC (tests/vm_odx.rs with PALISADE_ODX_BENCH_MIB=N). Under TCG the initiator
#      copy runs at a few MiB/s: 256 takes ~6 minutes, 1024 about half an hour.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ODX_BENCH_MIB=${ODX_BENCH_MIB:-1024} ODX_BENCH_ROUNDS=${ODX_BENCH_ROUNDS:-3} cargo bench --bench odx_copy
if [[ -n ${VM_MIB:-} ]]; then
    PALISADE_ODX_BENCH_MIB=$VM_MIB cargo test --test vm_odx -- --nocapture 2>&1 | grep -E '^BENCH |^test result'
fi
