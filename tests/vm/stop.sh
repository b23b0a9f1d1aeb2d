#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# tests/vm/stop.sh — stop a guest started by boot.sh, by its saved pids.
#
# Usage: tests/vm/stop.sh [WORKDIR]    (default tests/vm/work/guest)
#
# Sends SIGTERM to QEMU (qemu.pid), SIGKILL after 5 s, then makes sure the timeout(1)
# wrapper (wrapper.pid) is gone; removes the sockets and the --memory-backend file.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
wd=${1:-$here/work/guest}
[[ -d $wd ]] || { echo "stop: no work dir $wd" >&2; exit 1; }

is_ours() {  # pid still alive and still the process we started?
    local pid=$1 want=$2
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$want"
}

stop_pid() {
    local pid=$1 want=$2 i
    is_ours "$pid" "$want" || return 0
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < 50; i++)); do
        is_ours "$pid" "$want" || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    for ((i = 0; i < 20; i++)); do
        is_ours "$pid" "$want" || return 0
        sleep 0.1
    done
    echo "stop: pid $pid did not exit" >&2
    return 1
}

rc=0
qpid=$(cat "$wd/qemu.pid" 2>/dev/null || true)
wpid=$(cat "$wd/wrapper.pid" 2>/dev/null || true)
stop_pid "$qpid" "$wd/control.sock" || rc=1
stop_pid "$wpid" "qemu-system-x86_64" || rc=1

membackend=$(sed -n 's/^VM_MEMORY_BACKEND=//p' "$wd/env" 2>/dev/null || true)
[[ -n $membackend && -f $membackend ]] && rm -f "$membackend"
rm -f "$wd"/{control,port0,qmp}.sock "$wd"/{qemu,wrapper}.pid
exit $rc
