#!/bin/bash
# PID 1 of the Palisade VM guest. run-in-vm.sh hands this file in through QEMU fw_cfg at every
# boot (opt/palisade/init) and the image's /init stub execs it after mounting /proc and /sys.
# It sets the guest up, runs the test script (opt/palisade/script) with the variables from
# opt/palisade/env, writes the script's exit status to the second serial port (run-in-vm.sh's
# status file) and powers off. No `set -e`: PID 1 must get to the status line; should it die
# anyway, the kernel panics (panic=-1) and QEMU (-no-reboot) exits without a status.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM=dumb LANG=C.UTF-8

report() { echo "$1" >/dev/ttyS1; }
power_off() { sync; echo o >/proc/sysrq-trigger; sleep 30; }

mount -t devtmpfs devtmpfs /dev 2>/dev/null
# devtmpfs lacks these links (udev does not make them either); bash process substitution needs /dev/fd.
ln -sfn /proc/self/fd /dev/fd
ln -sfn /proc/self/fd/0 /dev/stdin
ln -sfn /proc/self/fd/1 /dev/stdout
ln -sfn /proc/self/fd/2 /dev/stderr
mkdir -p /dev/pts /dev/shm /mnt/share
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
mkdir -p /run/lock /run/palisade
hostname palisade-vm

cfg=/sys/firmware/qemu_fw_cfg/by_name/opt/palisade
if [[ ! -r $cfg/script/raw || ! -r $cfg/env/raw ]]; then
    echo "palisade-vm: no script or env in fw_cfg"
    report 125
    power_off
fi
cat "$cfg/env/raw" >/run/palisade/env
cat "$cfg/script/raw" >/run/palisade/script
chmod 0755 /run/palisade/script
# Shell functions the script may source (run-in-vm.sh --lib).
cat "$cfg/lib/raw" >/run/palisade/lib.sh 2>/dev/null || : >/run/palisade/lib.sh
set -a
. /run/palisade/env
set +a

modprobe -a virtio_pci virtio_net
# Slirp's fixed layout: guest 10.0.2.15, gateway 10.0.2.2; the portals are guestfwd addresses.
ip link set lo up
ip addr add 10.0.2.15/24 dev eth0
ip link set eth0 up
ip route add default via 10.0.2.2

echo "InitiatorName=$INITIATOR_NAME" >/etc/iscsi/initiatorname.iscsi
if [[ ${PALISADE_VM_SHARE:-0} == 1 ]]; then
    modprobe -a 9pnet_virtio 9p
    mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 palisade /mnt/share
fi

t_init=$(cut -d' ' -f1 /proc/uptime)
# udev (no systemd here): multipath and multipathd take device properties (WWIDs) from its
# database, and it gives the /dev/disk/by-* links. Disks that appear later (iSCSI logins) are
# handled by the running daemon.
/lib/systemd/systemd-udevd --daemon --resolve-names=never
udevadm trigger --action=add --type=subsystems
udevadm trigger --action=add --type=devices
udevadm settle --timeout=30

echo "palisade-vm: guest up after $(cut -d' ' -f1 /proc/uptime) s (init at $t_init s, then udev; kernel $(uname -r)); running the script"
cd /root || true
/run/palisade/script </dev/null
rc=$?
echo "palisade-vm: script exited with status $rc"
[[ ${PALISADE_VM_SHARE:-0} == 1 ]] && umount /mnt/share
report "$rc"
power_off
