#!/bin/bash
# Guest-side ODX test (tests/vm_odx.rs): the Linux initiator against a target with two LUNs.
# ddptctl reads the third-party copy VPD page and RECEIVE ROD TOKEN INFORMATION (the token into a
# file); POPULATE TOKEN and WRITE USING TOKEN go through sg_raw (see below why not ddpt's own):
# a copy between the LUNs and one within a LUN, and the block device zero token; every copy is
# compared byte for byte. Then the token abuses a real initiator can commit: a token whose source
# was written after POPULATE TOKEN, a bit-flipped token, and ddpt 0.97's misaligned range
# descriptors must all fail without moving data.
# With BENCH_MIB set (VM_MIB=N scripts/odx-bench.sh) it then times a BENCH_MIB copy by ODX and
# by the initiator reading and writing (ddpt without --odx), with the bytes on the guest's NIC.
# Ends with "ODX OK".
set -euo pipefail

BENCH_MIB=${BENCH_MIB:-0}
step() { printf '\n=== %s\n' "$*"; }
fail() { echo "FAIL: $*"; exit 1; }

step "login ($INITIATOR_NAME)"
modprobe -a iscsi_tcp sd_mod sg
iscsid
TARGET=$(iscsiadm -m discovery -t sendtargets -p "$PORTAL" | awk 'NR == 1 {print $2}')
iscsiadm -m node -o delete
iscsiadm -m node -o new -T "$TARGET" -p "$PORTAL" >/dev/null
iscsiadm -m node -T "$TARGET" -p "$PORTAL" --login >/dev/null
# LUN 0 (source) and LUN 1 (destination): their block and SCSI generic devices.
for _ in $(seq 200); do
    # Both LUNs with their sd and sg nodes (the second disk may attach a moment later).
    [[ $(lsscsi -g | grep PALISADE | grep -c '/dev/sd.*/dev/sg') -ge 2 ]] && break
    sleep 0.1
done
lsscsi -g
read -r SDA SGA < <(lsscsi -g | awk '/PALISADE/ && $1 ~ /:0]$/ {print $(NF-1), $NF}')
read -r SDB SGB < <(lsscsi -g | awk '/PALISADE/ && $1 ~ /:1]$/ {print $(NF-1), $NF}')
[[ -b ${SDA:-/x} && -b ${SDB:-/x} && -c ${SGA:-/x} && -c ${SGB:-/x} ]] || fail "two LUNs expected"
echo "LUN 0: $SDA $SGA   LUN 1: $SDB $SGB"

# Reads LBA $2 .. +$3 blocks of block device $1, bypassing the page cache, and prints its md5.
sum_of() { dd if="$1" iflag=direct,skip_bytes,count_bytes bs=1M skip=$(($2 * 512)) count=$(($3 * 512)) status=none | md5sum | cut -d' ' -f1; }
same() { # $1 label, $2 dev, $3 lba, $4 dev, $5 lba, $6 blocks
    local a b
    a=$(sum_of "$2" "$3" "$6")
    b=$(sum_of "$4" "$5" "$6")
    echo "$1: $a vs $b"
    [[ $a == "$b" ]] || fail "$1: destination differs from source"
}

step "third-party copy VPD page (ddptctl --info)"
ddptctl --info "$SGA" | tee /tmp/info.txt
grep -q "Block Device ROD Token Limits" /tmp/info.txt || fail "no Block Device ROD Token Limits"
grep -q "Supported ROD Token and ROD Types" /tmp/info.txt || fail "no ROD types"
grep -q "block device zero" /tmp/info.txt || fail "block device zero token not offered"

step "source data: 32 MiB of random bytes at LBA 0 of LUN 0"
dd if=/dev/urandom of=/tmp/src.bin bs=1M count=32 status=none
dd if=/tmp/src.bin of="$SDA" bs=1M oflag=direct status=none
SRC_SUM=$(md5sum </tmp/src.bin | cut -d' ' -f1)

# Parameter lists are built with python3 and sent with sg_raw (sg3-utils, SG_IO through the
# kernel initiator): Debian's ddpt 0.97 (and ddpt's git head) writes POPULATE TOKEN / WRITE USING
# TOKEN block device range descriptors one byte early (offset 15 instead of 16, 535 instead of
# 536: `n = 15` in do_pop_tok/do_wut), so its PT/WUT ask for other ranges than the user gave.
LID=300
pt() { # device lba blocks -> list id in $LID (POPULATE TOKEN, SBC-3 §5.8)
    LID=$((LID + 1))
    python3 - "$2" "$3" >/tmp/pt.bin <<'PY'
import struct, sys
lba, n = int(sys.argv[1]), int(sys.argv[2])
p = bytearray(16) + struct.pack(">QI4x", lba, n)
p[0:2] = struct.pack(">H", len(p) - 2); p[14:16] = struct.pack(">H", 16)
sys.stdout.buffer.write(p)
PY
    sg_raw -s 32 -i /tmp/pt.bin "$1" 83 10 00 00 00 00 $(printf '%02x %02x %02x %02x' 0 0 $((LID >> 8)) $((LID & 255))) 00 00 00 20 00 00
}
rrti_token() { # device token-file (RECEIVE ROD TOKEN INFORMATION through ddptctl --poll)
    ddptctl --poll --list_id=$LID --rtf="$2" "$1"
}
wut() { # device token-file lba blocks [flags] (WRITE USING TOKEN, SBC-3 §5.45)
    LID=$((LID + 1))
    python3 - "$2" "$3" "$4" "${5:-0}" >/tmp/wut.bin <<'PY'
import struct, sys
token = open(sys.argv[1], "rb").read()[:512]
lba, n, flags = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
p = bytearray(536) + struct.pack(">QI4x", lba, n)
p[0:2] = struct.pack(">H", len(p) - 2); p[2] = flags; p[16:528] = token; p[534:536] = struct.pack(">H", 16)
sys.stdout.buffer.write(p)
PY
    sg_raw -s 552 -i /tmp/wut.bin "$1" 83 11 00 00 00 00 $(printf '%02x %02x %02x %02x' 0 0 $((LID >> 8)) $((LID & 255))) 00 00 02 28 00 00
}

step "POPULATE TOKEN on LUN 0 [0, +65536), token from RECEIVE ROD TOKEN INFORMATION (ddptctl --poll)"
pt "$SGA" 0 65536
rrti_token "$SGA" /tmp/tok.bin 2>&1 | tee /tmp/rrti.txt
[[ $(stat -c %s /tmp/tok.bin) -eq 512 ]] || fail "no 512-byte ROD token"
ddptctl --info --rtf=/tmp/tok.bin 2>&1 | tee /tmp/tokinfo.txt

step "WRITE USING TOKEN: LUN 0 -> LUN 1 (32 MiB), then its RRTI"
wut "$SGB" /tmp/tok.bin 0 65536
ddptctl --poll --list_id=$LID "$SGB" 2>&1 | tee /tmp/rrti-wut.txt
same "LUN0[0..] -> LUN1[0..]" "$SDA" 0 "$SDB" 0 65536
[[ $(sum_of "$SDB" 0 65536) == "$SRC_SUM" ]] || fail "LUN 1 is not the source data"

step "WRITE USING TOKEN within LUN 0 (same token, to LBA 131072)"
wut "$SGA" /tmp/tok.bin 131072 65536
same "LUN0[0..] -> LUN0[131072..]" "$SDA" 0 "$SDA" 131072 65536

step "block device zero ROD token on LUN 1 [1024, +2048)"
python3 -c 'import sys,struct; t=bytearray(512); t[0:4]=bytes([255,255,0,1]); t[6:8]=struct.pack(">H",0x1F8); sys.stdout.buffer.write(t)' >/tmp/zero.tok
wut "$SGB" /tmp/zero.tok 1024 2048
zeros=$(dd if=/dev/zero bs=512 count=2048 status=none | md5sum | cut -d' ' -f1)
[[ $(sum_of "$SDB" 1024 2048) == "$zeros" ]] || fail "range not zeroed"
[[ $(sum_of "$SDB" 0 1024) == $(sum_of "$SDA" 0 1024) ]] || fail "zeroing spilled before the range"
[[ $(sum_of "$SDB" 3072 1024) == $(sum_of "$SDA" 3072 1024) ]] || fail "zeroing spilled after the range"

expect_refusal() { # label pattern command...
    local label=$1 pattern=$2
    shift 2
    if "$@" >/tmp/refused.txt 2>&1; then
        cat /tmp/refused.txt
        fail "$label was honoured"
    fi
    cat /tmp/refused.txt
    grep -qi "$pattern" /tmp/refused.txt || fail "$label: expected '$pattern'"
}

step "abuse: the source is written after POPULATE TOKEN (point in time token is revoked)"
pt "$SGA" 8192 2048
rrti_token "$SGA" /tmp/tok2.bin
dd if=/dev/urandom of="$SDA" bs=512 count=1 seek=9000 oflag=direct status=none
before=$(sum_of "$SDB" 300000 2048)
expect_refusal "a revoked token" "token revoked" wut "$SGB" /tmp/tok2.bin 300000 2048
[[ $(sum_of "$SDB" 300000 2048) == "$before" ]] || fail "data moved with a revoked token"

step "abuse: a bit-flipped token"
pt "$SGA" 20480 2048
rrti_token "$SGA" /tmp/tok4.bin
printf '\x5a' | dd of=/tmp/tok4.bin bs=1 seek=300 conv=notrunc status=none
expect_refusal "a bit-flipped token" "token corrupt" wut "$SGB" /tmp/tok4.bin 300000 2048
[[ $(sum_of "$SDB" 300000 2048) == "$before" ]] || fail "data moved with a forged token"

step "ddpt --odx (0.97): its shifted range descriptors are refused, nothing is copied"
expect_refusal "ddpt's misaligned POPULATE TOKEN" "LBA out of range" \
    ddpt --odx if="$SGA" bs=512 skip=4096,2048 of="$SGB" seek=400000,2048
[[ $(sum_of "$SDB" 400000 2048) == $(dd if=/dev/zero bs=512 count=2048 status=none | md5sum | cut -d' ' -f1) ]] ||
    fail "ddpt's request moved data"

if [[ $BENCH_MIB -gt 0 ]]; then
    blocks=$((BENCH_MIB * 2048))  # 512-byte blocks
    nic=$(ip -o link show | awk -F': ' '$2 != "lo" {print $2; exit}')
    wire() { echo $(($(cat /sys/class/net/$nic/statistics/rx_bytes) + $(cat /sys/class/net/$nic/statistics/tx_bytes))); }
    step "bench: fill $BENCH_MIB MiB of LUN 0"
    dd if=/dev/urandom of="$SDA" bs=1M count="$BENCH_MIB" oflag=direct status=none
    src_sum=$(sum_of "$SDA" 0 $blocks)
    for mode in odx initiator; do
        step "bench: $BENCH_MIB MiB LUN 0 -> LUN 1 by $mode"
        # Clear the destination with the block device zero token (no data over the wire).
        for ((at = 0; at < blocks; at += 2097152)); do
            wut "$SGB" /tmp/zero.tok $at $((blocks - at < 2097152 ? blocks - at : 2097152)) >/dev/null
        done
        w0=$(wire)
        t0=$(date +%s.%N)
        if [[ $mode == odx ]]; then
            # One token per GiB (MAXIMUM TOKEN TRANSFER SIZE), as ddpt would cut it.
            for ((at = 0; at < blocks; at += 2097152)); do
                n=$((blocks - at < 2097152 ? blocks - at : 2097152))
                pt "$SGA" $at $n >/dev/null
                rrti_token "$SGA" /tmp/bench.tok >/dev/null
                wut "$SGB" /tmp/bench.tok $at $n 2 >/dev/null
            done
        else
            ddpt if="$SGA" bs=512 bpt=2048 of="$SGB" count=$blocks
        fi
        t1=$(date +%s.%N)
        w1=$(wire)
        [[ $(sum_of "$SDB" 0 $blocks) == "$src_sum" ]] || fail "bench $mode: destination differs"
        echo "BENCH mode=$mode mib=$BENCH_MIB seconds=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}') wire_bytes=$((w1 - w0))"
    done
fi

iscsiadm -m node -T "$TARGET" -p "$PORTAL" --logout >/dev/null
echo "ODX OK"
