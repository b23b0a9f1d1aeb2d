#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# tests/vm/setup.sh — install what the real-guest harness needs (idempotent).
#
# Usage: tests/vm/setup.sh [--quiet]
#
# Installs with apt-get, only if missing: qemu-system-x86, linux-image-cloud-amd64,
# busybox-static, cpio, kmod, gcc/libc6-dev (for static C test programs), xz-utils and
# zstd (to decompress modules at build time), python3.
# Prints what it installed, the cloud kernel version, and writes it to
# tests/vm/work/kver (read by mkinitramfs.sh and boot.sh).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
quiet=0
[[ ${1:-} == --quiet ]] && quiet=1
say() { [[ $quiet == 1 ]] || echo "setup: $*"; }

if [[ $(id -u) != 0 ]]; then
    echo "setup: must run as root (apt-get, and /boot/vmlinuz-* is root-only)" >&2
    exit 1
fi

want=(qemu-system-x86 linux-image-cloud-amd64 busybox-static cpio kmod gcc libc6-dev
      xz-utils zstd python3)
missing=()
for p in "${want[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done

if ((${#missing[@]})); then
    say "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    # --no-install-recommends: qemu-system-x86 recommends a lot we do not need.
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
    echo "setup: installed: ${missing[*]}"
else
    say "all packages already installed"
fi

# The newest cloud kernel in /boot.
kimg=$(ls -1 /boot/vmlinuz-*-cloud-amd64 2>/dev/null | sort -V | tail -n1 || true)
if [[ -z $kimg ]]; then
    echo "setup: no /boot/vmlinuz-*-cloud-amd64 after install" >&2
    exit 1
fi
kver=${kimg#/boot/vmlinuz-}
if [[ ! -d /lib/modules/$kver ]]; then
    echo "setup: /lib/modules/$kver missing" >&2
    exit 1
fi
mkdir -p "$here/work"
# Replaced, not rewritten in place: make test's VM tests read it while
# test-systemd runs this script.
if [[ $(cat "$here/work/kver" 2>/dev/null) != "$kver" ]]; then
    echo "$kver" >"$here/work/kver.$$" && mv "$here/work/kver.$$" "$here/work/kver"
fi
say "cloud kernel: $kver ($kimg)"
say "qemu: $(qemu-system-x86_64 --version | head -n1)"
if [[ -e /dev/vhost-vsock ]]; then
    say "/dev/vhost-vsock exists: --vsock can add vhost-vsock-pci"
else
    say "/dev/vhost-vsock absent: vsock tests use vsock_loopback inside the guest"
fi
