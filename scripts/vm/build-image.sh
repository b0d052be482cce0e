#!/usr/bin/env bash
# Palisade VM harness, image side: builds the Debian 12 guest that scripts/vm/run-in-vm.sh boots
# (kernel + one initramfs holding the whole root file system) and installs the host tools it
# needs (QEMU, socat; debootstrap, cpio, zstd, kmod for the build itself).
#
#   scripts/vm/build-image.sh [--force]      build when the cache is stale (root needed then)
#   scripts/vm/build-image.sh --print-dir    print the image directory for the current sources
#
# Cache: ${PALISADE_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/palisade-vm}/image-KEY/{vmlinuz,
# initrd.img,BUILD-INFO}, where KEY hashes this script and guest-packages.txt: editing either one
# makes the next call rebuild; with both unchanged the call returns at once.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PKG_LIST=$HERE/guest-packages.txt
CACHE_ROOT=${PALISADE_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/palisade-vm}
SUITE=bookworm
# Guest kernel modules kept in the image (their dependencies are added); all others are dropped
# to keep the initramfs small, since TCG boot time grows with its size.
GUEST_MODULES=(
    qemu_fw_cfg virtio_pci virtio_net 9p 9pnet_virtio   # harness: script hand-in, network, --share
    iscsi_tcp sd_mod sg crc32c_generic crc32c_intel      # iSCSI initiator (crc32c: digests)
    ext4                                                 # file system tests
    dm_mod dm_multipath dm_round_robin dm_service_time dm_queue_length scsi_dh_alua  # multipath
    softdog                                              # sbd watchdog
)

KEY=$(cat "$HERE/build-image.sh" "$PKG_LIST" | sha256sum | cut -c1-16)
IMAGE_DIR=$CACHE_ROOT/image-$KEY

log() { printf '[build-image %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

FORCE=0
case ${1:-} in
--print-dir) echo "$IMAGE_DIR"; exit 0 ;;
--force) FORCE=1 ;;
'') ;;
*) echo "usage: $0 [--force | --print-dir]" >&2; exit 2 ;;
esac

export DEBIAN_FRONTEND=noninteractive
APT_UPDATED=0
apt_update() { ((APT_UPDATED)) || { apt-get update -qq; APT_UPDATED=1; }; }

# The mirror apt already uses for $SUITE/main (the guest comes from the same place).
apt_mirror() {
    apt-cache policy 2>/dev/null | awk -v s="$SUITE/main" '$2 ~ /^https?:/ && $3 == s {print $2; exit}'
}

install_host_packages() {
    local need=() tool
    for tool in qemu-system-x86_64:qemu-system-x86 socat:socat debootstrap:debootstrap cpio:cpio \
        zstd:zstd depmod:kmod; do
        command -v "${tool%%:*}" >/dev/null || need+=("${tool#*:}")
    done
    ((${#need[@]})) || return 0
    [[ $(id -u) == 0 ]] || die "host packages missing (${need[*]}): run $0 as root"
    log "installing host packages: ${need[*]}"
    apt_update
    local qemu_from=() version
    version=$(dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null || true)
    if [[ " ${need[*]} " == *" qemu-system-x86 "* && $version == *bpo12* ]]; then
        # bookworm's qemu-system-x86 (7.2) would remove a qemu-utils from bookworm-backports (10.x
        # on the CI machines): take qemu-system-x86 from backports as well.
        log "qemu-utils $version is from $SUITE-backports: so is qemu-system-x86"
        if ! apt-cache policy | grep -q " $SUITE-backports/main "; then
            local mirror
            mirror=$(apt_mirror)
            [[ -n $mirror ]] || die "no apt source for $SUITE/main"
            printf 'Types: deb\nURIs: %s\nSuites: %s-backports\nComponents: main\nSigned-By: %s\n' \
                "$mirror" "$SUITE" /usr/share/keyrings/debian-archive-keyring.gpg \
                >/etc/apt/sources.list.d/palisade-vm-backports.sources
            APT_UPDATED=0
            apt_update
        fi
        qemu_from=(-t "$SUITE-backports")
    fi
    local p rest=()
    for p in "${need[@]}"; do
        if [[ $p == qemu-system-x86 ]]; then
            apt-get install -y -qq --no-install-recommends "${qemu_from[@]}" qemu-system-x86 >/dev/null
        else
            rest+=("$p")
        fi
    done
    ((${#rest[@]} == 0)) || apt-get install -y -qq --no-install-recommends "${rest[@]}" >/dev/null
}

t0=$SECONDS
if [[ -f $IMAGE_DIR/BUILD-INFO && $FORCE == 0 ]] && command -v qemu-system-x86_64 socat >/dev/null; then
    exit 0
fi
# Tests may start several VMs at once: one builder, the others wait and then find the image.
mkdir -p "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/build.lock"
flock 9
install_host_packages
if [[ -f $IMAGE_DIR/BUILD-INFO && $FORCE == 0 ]]; then
    exit 0
fi
[[ $(id -u) == 0 ]] || die "the image $IMAGE_DIR must be built as root (debootstrap, chroot)"
log "building $IMAGE_DIR"
WORK=$(mktemp -d "$CACHE_ROOT/build.XXXXXX")
ROOT=$WORK/root
cleanup() {
    # A failed debootstrap can leave file systems mounted in the chroot: never rm -rf through them.
    local m
    for m in proc sys dev/pts dev; do
        if mountpoint -q "$ROOT/$m" 2>/dev/null; then umount -l "$ROOT/$m" || true; fi
    done
    rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT

MIRROR=$(apt_mirror)
if [[ -z $MIRROR ]]; then apt_update; MIRROR=$(apt_mirror); fi
[[ -n $MIRROR ]] || die "apt has no source for $SUITE/main"
PKGS=$(sed 's/#.*//' "$PKG_LIST" | xargs | tr ' ' ,)
[[ -n $PKGS ]] || die "$PKG_LIST lists no package"

log "debootstrap $SUITE (minbase + $PKGS) from $MIRROR"
debootstrap --variant=minbase --include="$PKGS" "$SUITE" "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
    { tail -40 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
t_boot=$SECONDS
log "debootstrap done after $((t_boot - t0)) s"

# Downloads of single .debs (kernel, fence-agents) go through the host's apt, which must know
# the current package lists.
apt-cache show linux-image-amd64 >/dev/null 2>&1 || apt_update
download() { (cd "$WORK" && apt-get download -qq -o APT::Sandbox::User=root "$1") && ls "$WORK/$1"_*.deb; }

# fence_scsi: the fence-agents package depends on cloud SDKs (boto3, googleapi, ...) that
# fence_scsi never imports, so take only the agent and its fencing.py library out of the .deb.
deb=$(download fence-agents)
dpkg-deb -x "$deb" "$WORK/fa"
install -D -m 0755 "$WORK/fa/usr/sbin/fence_scsi" "$ROOT/usr/sbin/fence_scsi"
install -D -m 0644 "$WORK/fa/usr/share/fence/fencing.py" "$ROOT/usr/share/fence/fencing.py"
# Fail here, not in a test, when fencing.py imports something the guest lacks.
chroot "$ROOT" /usr/sbin/fence_scsi --help >"$WORK/fence_scsi.help" 2>&1 ||
    { cat "$WORK/fence_scsi.help" >&2; die "fence_scsi does not start in the guest rootfs"; }
FENCE_VERSION=$(dpkg-deb -f "$deb" Version)

# Kernel: the bookworm linux-image-*-amd64 apt offers now, unpacked (not installed, so no
# initramfs-tools hook runs); vmlinuz goes next to the initramfs, the modules into the rootfs.
KPKG=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[[ -n $KPKG ]] || die "no linux-image-*-amd64 behind linux-image-amd64"
KVER=${KPKG#linux-image-}
deb=$(download "$KPKG")
dpkg-deb -x "$deb" "$WORK/kernel"
install -m 0644 "$WORK/kernel/boot/vmlinuz-$KVER" "$WORK/vmlinuz"
mkdir -p "$ROOT/lib/modules"
cp -a "$WORK/kernel/lib/modules/$KVER" "$ROOT/lib/modules/"
depmod -b "$ROOT" "$KVER"
keep=$(for m in "${GUEST_MODULES[@]}"; do
    modprobe -d "$ROOT" -S "$KVER" --show-depends "$m" || die "no kernel module $m in $KPKG"
done | awk '$1 == "insmod" {print $2}' | sort -u)
find "$ROOT/lib/modules/$KVER/kernel" -name '*.ko*' | grep -vxF -f <(printf '%s\n' "$keep") | xargs -r rm -f
find "$ROOT/lib/modules/$KVER/kernel" -type d -empty -delete
depmod -b "$ROOT" "$KVER"
log "kernel $KVER: kept $(grep -c . <<<"$keep") modules"

# Trim what nothing in the guest reads at run time (documentation, locales, apt state, the udev
# hardware database, Python's test suite and GUI/dev tools).
rm -rf "$ROOT"/usr/share/{doc,man,info,locale,lintian,bash-completion,i18n,zoneinfo} \
    "$ROOT"/var/cache/apt/* "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/debconf/*-old \
    "$ROOT"/var/log/*.log "$ROOT"/usr/lib/udev/hwdb.bin "$ROOT"/usr/lib/udev/hwdb.d \
    "$ROOT"/usr/lib/python3.*/{test,idlelib,tkinter,turtledemo,ensurepip,lib2to3,pydoc_data} \
    "$ROOT"/lib/firmware

# /init only fetches the real guest init (scripts/vm/guest/init.sh), which run-in-vm.sh hands in
# through fw_cfg at every boot, so editing init.sh or a test script needs no rebuild.
cat >"$ROOT/init" <<'EOF'
#!/bin/bash
mount -t proc proc /proc
mount -t sysfs sysfs /sys
/usr/sbin/modprobe qemu_fw_cfg
cat /sys/firmware/qemu_fw_cfg/by_name/opt/palisade/init/raw >/palisade-init
exec /bin/bash /palisade-init
EOF
chmod 0755 "$ROOT/init"
echo palisade-vm >"$ROOT/etc/hostname"
: >"$ROOT/etc/iscsi/initiatorname.iscsi"
# No systemd in the guest: iscsiadm must not try to socket-activate iscsid through systemctl.
sed -i 's|^iscsid.startup = .*|iscsid.startup = /sbin/iscsid|' "$ROOT/etc/iscsi/iscsid.conf"

log "packing the initramfs"
(cd "$ROOT" && find . -xdev -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet | zstd -q -T0 -6) \
    >"$WORK/initrd.img"
{
    echo "key=$KEY"
    echo "suite=$SUITE mirror=$MIRROR"
    echo "kernel=$KVER fence-agents=$FENCE_VERSION"
    echo "packages=$PKGS"
    echo "built=$(date -u +%FT%TZ) seconds=$((SECONDS - t0)) debootstrap_seconds=$((t_boot - t0))"
    echo "initrd_bytes=$(stat -c %s "$WORK/initrd.img") vmlinuz_bytes=$(stat -c %s "$WORK/vmlinuz")"
} >"$WORK/BUILD-INFO"
rm -rf "$IMAGE_DIR"
mkdir -p "$IMAGE_DIR"
mv "$WORK/vmlinuz" "$WORK/initrd.img" "$IMAGE_DIR/"
# BUILD-INFO last: its presence marks a complete image.
mv "$WORK/BUILD-INFO" "$IMAGE_DIR/"
log "image $IMAGE_DIR done in $((SECONDS - t0)) s: initrd $(du -h "$IMAGE_DIR/initrd.img" | cut -f1)"
