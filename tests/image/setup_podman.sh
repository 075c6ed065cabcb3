#!/usr/bin/env bash
# Prepare this machine for the slow image test (tests/image): podman with runc and
# the vfs storage driver, plus debootstrap to build a Debian base image when no
# registry of base images is reachable. See ../shared/notes/offline-testing.md.
#
# Idempotent: packages already installed and a vfs storage.conf already in place
# are left alone, so calling it on every CI run costs a second. Needs root (or sudo)
# and Debian's apt mirror; a working Docker daemon makes it unnecessary.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

if [ "$(id -u)" -eq 0 ]; then
    as_root() { "$@"; }
elif command -v sudo >/dev/null 2>&1; then
    as_root() { sudo --preserve-env=DEBIAN_FRONTEND "$@"; }
else
    echo "setup_podman.sh: needs root or sudo to install podman, runc and debootstrap" >&2
    exit 1
fi

# --- packages --------------------------------------------------------------
# crun (podman's default runtime) fails on setrlimit in this sandbox: runc works.
missing=()
for pkg in podman runc debootstrap; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup_podman.sh: installing ${missing[*]} from apt"
    as_root apt-get update -qq
    as_root apt-get install -y -qq podman runc debootstrap
else
    echo "setup_podman.sh: podman, runc and debootstrap already installed"
fi

# --- storage driver --------------------------------------------------------
# overlay needs kernel/fuse support this sandbox lacks; vfs always works (it
# copies layers, so images take more disk, which is fine for one test image).
conf=/etc/containers/storage.conf
want='driver = "vfs"'
if [ -f "$conf" ] && grep -Eq '^[[:space:]]*driver[[:space:]]*=[[:space:]]*"vfs"' "$conf"; then
    echo "setup_podman.sh: $conf already selects the vfs driver"
else
    if [ -f "$conf" ]; then
        as_root cp -p "$conf" "$conf.bak-setup-podman"
        echo "setup_podman.sh: replaced $conf (previous one kept as $conf.bak-setup-podman)"
    fi
    as_root mkdir -p /etc/containers
    tmp=$(mktemp)
    cat >"$tmp" <<EOF
# Written by tests/image/setup_podman.sh: podman in CI uses the vfs driver.
[storage]
$want
runroot = "/run/containers/storage"
graphroot = "/var/lib/containers/storage"
EOF
    as_root install -m 0644 "$tmp" "$conf"
    rm -f "$tmp"
    echo "setup_podman.sh: wrote $conf with $want"
fi

# --- runtime and limits ----------------------------------------------------
# So that a plain `podman run` works here too (the test passes these as flags):
# crun fails on setrlimit in this sandbox, and without CAP_SYS_RESOURCE runc
# cannot give a container podman's default rlimits (nofile 1048576, nproc
# 4194304; podman itself runs with nproc capped at 32768). Only written when
# there is no containers.conf yet.
engine_conf=/etc/containers/containers.conf
if [ -f "$engine_conf" ]; then
    echo "setup_podman.sh: $engine_conf exists; left as it is"
else
    nofile=$(ulimit -Hn)
    [ "$nofile" = unlimited ] && nofile=1048576
    nproc=$(ulimit -Hu)
    if [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; then nproc=32768; fi
    tmp=$(mktemp)
    cat >"$tmp" <<EOF
# Written by tests/image/setup_podman.sh (see the comments there).
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[engine]
runtime = "runc"
EOF
    as_root install -m 0644 "$tmp" "$engine_conf"
    rm -f "$tmp"
    echo "setup_podman.sh: wrote $engine_conf (runtime runc, nofile $nofile, nproc $nproc)"
fi

# --- smoke check -----------------------------------------------------------
runc_path=$(command -v runc || echo /usr/sbin/runc)
if ! as_root podman --runtime "$runc_path" info --format '{{.Store.GraphDriverName}}' >/dev/null; then
    echo "setup_podman.sh: podman is installed but 'podman info' fails; see the error above" >&2
    exit 1
fi
echo "setup_podman.sh: ready (podman $(podman --version | awk '{print $3}'), runtime $runc_path," \
    "storage $(as_root podman info --format '{{.Store.GraphDriverName}}'))"
