#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs the Debian packages balloond needs to build, test and demo;
# nothing when they are already there.
#   gcc make procps util-linux  build and system tests
#   libsystemd-dev pkg-config   the CSystemd target (sd-daemon, sd-journal)
#   dpkg-dev lintian            make deb (dpkg-deb, dpkg-shlibdeps, lintian)
#   debootstrap systemd-container e2fsprogs   tests/systemd (nspawn, image)
#   prometheus                  the metrics system tests (a real Prometheus server; promtool)
#   qemu.qmp (PyPI, with pip)   the QMP system test's client
set -euo pipefail
need=()
for pkg in gcc make procps util-linux libsystemd-dev pkg-config dpkg-dev lintian debootstrap \
           systemd-container e2fsprogs file binutils prometheus; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if ((${#need[@]})); then
    echo "install-deps: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Packages with a service (prometheus) are not started by the install:
    # the tests start what they need themselves, on loopback, and stop it.
    nostart=
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && nostart=1
    fi
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null || { [[ -z $nostart ]] || rm -f /usr/sbin/policy-rc.d; exit 1; }
    [[ -z $nostart ]] || rm -f /usr/sbin/policy-rc.d
fi
# The QMP system test (Tests/SystemTests/QMPSystemTests.swift) drives
# balloon-hostd's QMP socket with QEMU's own Python client, from PyPI.
if ! python3 -c 'import qemu.qmp' >/dev/null 2>&1; then
    echo "install-deps: installing the qemu.qmp Python package"
    python3 -m pip --version >/dev/null 2>&1 || { apt-get update -qq; apt-get install -y -qq --no-install-recommends python3-pip >/dev/null; }
    python3 -m pip install -q qemu.qmp 2>/dev/null || python3 -m pip install -q --break-system-packages qemu.qmp
fi
if ! command -v swift >/dev/null 2>&1; then
    echo "install-deps: swift not found (expected at /opt/swift/usr/bin)" >&2
    exit 1
fi
