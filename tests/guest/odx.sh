#!/bin/bash
# Guest-side ODX test (tests/vm_odx.rs): the Linux initiator and Debian's ddpt against a target
# with two LUNs. ddptctl reads the third-party copy VPD page, populates a token, receives it
# (RECEIVE ROD TOKEN INFORMATION) and writes with it; ddpt --odx copies between the LUNs and
# within one, and zeroes a range with the block device zero token; every copy is compared byte
# for byte. Then the token abuses a real initiator can commit: a token whose source was written
# after POPULATE TOKEN, and a bit-flipped token, must fail without moving data.
# With BENCH_MIB set (scripts/odx-bench.sh) it then times a BENCH_MIB copy by ODX and by the
# initiator reading and writing (ddpt without --odx), with the bytes on the guest's NIC.
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

# ddpt 0.97 wants ranges as scatter/gather lists (LBA,NUM) with --odx: with a plain skip= it
# sums its gather list to zero blocks and asks for empty tokens (which the target refuses).
step "ddpt --odx: all of LUN 0 -> LUN 1"
blocks=$(($(blockdev --getsize64 "$SDA") / 512))
ddpt --odx if="$SGA" bs=512 skip=0,$blocks of="$SGB" seek=0,$blocks 2>&1 | tee /tmp/ddpt1.txt
same "LUN0 -> LUN1 (whole LUN)" "$SDA" 0 "$SDB" 0 $blocks
[[ $(sum_of "$SDB" 0 65536) == "$SRC_SUM" ]] || fail "LUN 1 is not the source data"

step "ddpt --odx within LUN 0 (LBA 0 -> 131072, 65536 blocks)"
ddpt --odx if="$SGA" bs=512 skip=0,65536 of="$SGA" seek=131072,65536 2>&1 | tee /tmp/ddpt2.txt
same "LUN0[0..] -> LUN0[131072..]" "$SDA" 0 "$SDA" 131072 65536

step "ddptctl: POPULATE TOKEN, RECEIVE ROD TOKEN INFORMATION, WRITE USING TOKEN"
ddptctl -v --pt=2048,4096 --rtf=/tmp/tok.bin "$SGA" 2>&1 | tee /tmp/pt.txt
[[ $(stat -c %s /tmp/tok.bin) -ge 512 ]] || fail "no ROD token written"
ddptctl --info --rtf=/tmp/tok.bin 2>&1 | tee /tmp/tokinfo.txt
ddptctl -v --wut=200000,4096 --rtf=/tmp/tok.bin "$SGB" 2>&1 | tee /tmp/wut.txt
same "token LUN0[2048..] -> LUN1[200000..]" "$SDA" 2048 "$SDB" 200000 4096

step "block device zero token: ddpt rtype=zero on LUN 1 [1024, +2048)"
ddpt if=/dev/null rtype=zero bs=512 of="$SGB" seek=1024,2048 2>&1 | tee /tmp/zero.txt
zeros=$(dd if=/dev/zero bs=512 count=2048 status=none | md5sum | cut -d' ' -f1)
[[ $(sum_of "$SDB" 1024 2048) == "$zeros" ]] || fail "range not zeroed"
[[ $(sum_of "$SDB" 0 1024) == $(sum_of "$SDA" 0 1024) ]] || fail "zeroing spilled before the range"
[[ $(sum_of "$SDB" 3072 1024) == $(sum_of "$SDA" 3072 1024) ]] || fail "zeroing spilled after the range"

step "abuse: the source is written after POPULATE TOKEN (point in time token is revoked)"
ddptctl --pt=8192,2048 --rtf=/tmp/tok2.bin "$SGA"
cp /tmp/tok2.bin /tmp/tok3.bin
dd if=/dev/urandom of="$SDA" bs=512 count=1 seek=9000 oflag=direct status=none
before=$(sum_of "$SDB" 300000 2048)
if ddptctl --wut=300000,2048 --rtf=/tmp/tok2.bin "$SGB" >/tmp/revoked.txt 2>&1; then
    cat /tmp/revoked.txt
    fail "a revoked token was honoured"
fi
cat /tmp/revoked.txt
grep -qi "token revoked" /tmp/revoked.txt || fail "expected INVALID TOKEN OPERATION, TOKEN REVOKED"
[[ $(sum_of "$SDB" 300000 2048) == "$before" ]] || fail "data moved with a revoked token"

step "abuse: a bit-flipped token"
ddptctl --pt=20480,2048 --rtf=/tmp/tok4.bin "$SGA"
printf '\x5a' | dd of=/tmp/tok4.bin bs=1 seek=300 conv=notrunc status=none
if ddptctl --wut=300000,2048 --rtf=/tmp/tok4.bin "$SGB" >/tmp/flipped.txt 2>&1; then
    cat /tmp/flipped.txt
    fail "a bit-flipped token was honoured"
fi
cat /tmp/flipped.txt
grep -qi "token corrupt\|token unknown" /tmp/flipped.txt || fail "expected INVALID TOKEN OPERATION, TOKEN CORRUPT"
[[ $(sum_of "$SDB" 300000 2048) == "$before" ]] || fail "data moved with a forged token"

if [[ $BENCH_MIB -gt 0 ]]; then
    blocks=$((BENCH_MIB * 2048))  # 512-byte blocks
    nic=$(ip -o link show | awk -F': ' '$2 != "lo" {print $2; exit}')
    wire() { echo $(($(cat /sys/class/net/$nic/statistics/rx_bytes) + $(cat /sys/class/net/$nic/statistics/tx_bytes))); }
    step "bench: fill $BENCH_MIB MiB of LUN 0"
    dd if=/dev/urandom of="$SDA" bs=1M count="$BENCH_MIB" oflag=direct status=none
    for mode in odx initiator; do
        step "bench: $BENCH_MIB MiB LUN 0 -> LUN 1 by $mode"
        dd if=/dev/zero of="$SDB" bs=1M count="$BENCH_MIB" oflag=direct status=none
        w0=$(wire)
        t0=$(date +%s.%N)
        if [[ $mode == odx ]]; then
            ddpt --odx if="$SGA" bs=512 skip=0,$blocks of="$SGB" seek=0,$blocks
        else
            ddpt if="$SGA" bs=512 bpt=2048 of="$SGB" count=$blocks
        fi
        t1=$(date +%s.%N)
        w1=$(wire)
        same "bench $mode" "$SDA" 0 "$SDB" 0 $blocks
        echo "BENCH mode=$mode mib=$BENCH_MIB seconds=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}') wire_bytes=$((w1 - w0))"
    done
fi

iscsiadm -m node -T "$TARGET" -p "$PORTAL" --logout >/dev/null
echo "ODX OK"
