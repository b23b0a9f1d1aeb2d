#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs what tests/libvirt/test.sh needs from Debian, in the manner of
# scripts/install-deps.sh (only what is missing), but kept out of `make deps`:
# only the libvirt test pulls libvirt in.
#   libvirt-daemon-system      libvirtd, its qemu.conf and directories, the libvirt-qemu user
#   libvirt-daemon-driver-qemu the QEMU driver (only a Recommends of libvirt-daemon)
#   libvirt-clients            virsh
#   qemu-system-x86            the hypervisor (tests/vm/setup.sh installs it too)
set -euo pipefail
need=()
for pkg in libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if ((${#need[@]})); then
    echo "libvirt/install: installing ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    # The maintainer scripts may fail to start libvirtd where systemd is not
    # running; that is fine: the test starts its own libvirtd by hand.
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
