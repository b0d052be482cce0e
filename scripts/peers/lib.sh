# shellcheck shell=bash
# lib.sh — sourced by the scripts in scripts/peers/ and by scripts/compare-peers.sh; not run.
#
# Where things live: PEERS_STATE (default ~/.local/state/palisade/peers, outside the repository so
# several worktrees share one tgt and one istgt instead of fighting over their ports) holds the
# peers' pid files, configs and logs and the perf/limits results. The peers' LUNs are files in
# PEERS_DATA (default /dev/shm: tmpfs, so a peer's numbers are not a disk's).

# shellcheck disable=SC2034 # used by the scripts that source this file
PEERS_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PEERS_STATE="${PEERS_STATE:-${XDG_STATE_HOME:-$HOME/.local/state}/palisade/peers}"
PEERS_DATA="${PEERS_DATA:-/dev/shm}"

# die MESSAGE: the calling script's name, the message, exit 1.
die() {
  echo "$(basename "$0"): $*" >&2
  exit 1
}

# port_listening PORT: something listens on 127.0.0.1:PORT (or any address) over TCP.
port_listening() {
  ss -Hltn "sport = :$1" 2>/dev/null | grep -q LISTEN
}

# wait_listening PORT SECONDS: poll until PORT listens; non-zero on timeout.
wait_listening() {
  local deadline=$((SECONDS + $2))
  until port_listening "$1"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}

# ensure_debs PACKAGE...: apt-get install the packages dpkg does not list as installed. The
# package lists are refreshed only when the first attempt fails (a fresh machine has none).
ensure_debs() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  echo "installing ${missing[*]} (apt-get)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "${missing[@]}" </dev/null >/dev/null 2>&1 && return 0
  apt-get update -qq </dev/null >/dev/null 2>&1 || true
  apt-get install -y -qq "${missing[@]}" </dev/null >/dev/null || die "apt-get install ${missing[*]} failed"
}

# proc_cpu_ticks PID: utime + stime of every thread of PID, in clock ticks (0 if PID is gone).
# The "pid (comm) " prefix is cut first because comm may contain spaces.
proc_cpu_ticks() {
  if [ -n "$1" ] && [ -r "/proc/$1/stat" ]; then
    sed -E 's/^[0-9]+ \(.*\) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
  else
    echo 0
  fi
}

# machine_ticks: "BUSY TOTAL" clock ticks of all CPUs since boot (busy = total - idle - iowait).
machine_ticks() {
  awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat
}

# round_order ROUND NAME...: the names in order on odd rounds, reversed on even ones, one a line,
# so no target always runs first (or last) after the machine's state changed.
round_order() {
  local round="$1" i
  shift
  local names=("$@")
  if [ $((round % 2)) -eq 1 ]; then
    printf '%s\n' "${names[@]}"
  else
    for ((i = ${#names[@]} - 1; i >= 0; i--)); do echo "${names[$i]}"; done
  fi
}

# ensure_qemu_iscsi: qemu-img with its libiscsi block driver (package qemu-block-extra), which
# must be the very version of the installed qemu-utils. This machine kind ships qemu from
# bookworm-backports; Debian bookworm itself has 7.2, so backports is added when needed.
ensure_qemu_iscsi() {
  local ver
  ensure_debs qemu-utils
  ver="$(dpkg-query -W -f='${Version}' qemu-utils)"
  [ "$(dpkg-query -W -f='${Version}' qemu-block-extra 2>/dev/null)" = "$ver" ] && return 0
  echo "installing qemu-block-extra $ver (apt-get)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "qemu-block-extra=$ver" </dev/null >/dev/null 2>&1 && return 0
  if [[ "$ver" == *bpo12* ]] && ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      >/etc/apt/sources.list.d/palisade-peers-backports.sources
  fi
  apt-get update -qq </dev/null >/dev/null 2>&1 || true
  apt-get install -y -qq "qemu-block-extra=$ver" </dev/null >/dev/null ||
    die "cannot install qemu-block-extra $ver (it must match qemu-utils $ver)"
}
