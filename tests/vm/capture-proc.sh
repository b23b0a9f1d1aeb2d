#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# tests/vm/capture-proc.sh — copy /proc files from a running test guest into fixtures.
#
# Usage: tests/vm/capture-proc.sh WORKDIR OUTDIR [NOTE]
#
# Writes OUTDIR/meminfo, vmstat, pressure-memory, pressure-cpu (and pressure-io) from
# the guest booted by boot.sh in WORKDIR, plus a one-line OUTDIR/SOURCE saying how
# (kernel, memory, CPUs, cmdline, NOTE).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[[ $# -ge 2 ]] || { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2; }
wd=$1 out=$2 note=${3:-}
mkdir -p "$out"
g() { python3 "$here/guest.py" "$wd" run --timeout 30 "$1"; }
# Read everything in one guest command so the files are one moment's snapshot.
g 'for f in meminfo vmstat pressure/memory pressure/cpu pressure/io; do echo "=== $f"; cat /proc/$f; done' \
    >"$out/.capture"
python3 - "$out" <<'PY'
import sys, os
out = sys.argv[1]
names = {"meminfo": "meminfo", "vmstat": "vmstat", "pressure/memory": "pressure-memory",
         "pressure/cpu": "pressure-cpu", "pressure/io": "pressure-io"}
cur, parts = None, {}
for line in open(os.path.join(out, ".capture")):
    if line.startswith("=== "):
        cur = names[line[4:].strip()]
        parts[cur] = []
    else:
        parts[cur].append(line)
for name, lines in parts.items():
    with open(os.path.join(out, name), "w") as f:
        f.writelines(lines)
PY
rm -f "$out/.capture"
info=$(g 'echo "$(uname -r) $(grep MemTotal /proc/meminfo | tr -s " ") $(nproc)"; cat /proc/cmdline')
kline=$(sed -n 1p <<<"$info"); cmdline=$(sed -n 2p <<<"$info")
read -r kr _ mt _ ncpu <<<"$kline"
qemu=$(qemu-system-x86_64 --version | sed -n '1s/QEMU emulator version //p')
echo "Captured $(date -u +%Y-%m-%d) by tests/vm/capture-proc.sh: Debian 12 cloud kernel $kr under QEMU $qemu TCG (-m $(sed -n 's/^VM_MEM=//p' "$wd/env"), $ncpu vCPU, MemTotal $mt kB, no swap), busybox initramfs, cmdline '$cmdline'${note:+; $note}" >"$out/SOURCE"
ls -l "$out"; cat "$out/SOURCE"
