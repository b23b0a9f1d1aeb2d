#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# tests/vm/selftest.sh — end-to-end check of the real-guest harness.
#
# Usage: tests/vm/selftest.sh [--no-swift] [--memory-backend] [-c CPUS] [-w WORKDIR]
#
#   --no-swift        do not build/run the Swift balloond in the guest
#   --memory-backend  boot with guest RAM in /dev/shm/balloond-selftest-PID (share=on)
#   -c CPUS           guest CPUs (1 or 2, default 1)
#   -w WORKDIR        default tests/vm/work/selftest
#
# Runs setup.sh, builds a static C probe (gcc -static) and, unless --no-swift,
# balloond as packaged (swift build -c release --static-swift-stdlib
# --scratch-path .build-deb --product balloond: static Swift runtime, libsystemd
# and glibc dynamic, placed with mkinitramfs.sh --elf), builds an initramfs with both,
# boots, checks the guest through the control channel, exchanges a line over
# org.balloond.0 with the host, and stops the guest. Exits non-zero on any failure
# (printing the guest console log).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
swift=1
membackend=
cpus=1
wd=$here/work/selftest
while (($#)); do
    case $1 in
        --no-swift) swift=0; shift ;;
        --memory-backend) membackend=/dev/shm/balloond-selftest-$$; shift ;;
        -c) cpus=$2; shift 2 ;;
        -w) wd=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "selftest: unknown argument $1" >&2; exit 2 ;;
    esac
done

ts() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(ts)" 'BEGIN { printf "%.1f", b - a }'; }
step() { echo "selftest: $*"; }

"$here/setup.sh" --quiet
kver=$(cat "$here/work/kver")
mkdir -p "$wd"
guest() { python3 "$here/guest.py" "$wd" "$@"; }

t_all=$(ts)
files=()
t=$(ts)
gcc -O2 -Wall -Wextra -static -o "$wd/vmprobe" "$here/src/vmprobe.c"
files+=(--file "$wd/vmprobe:/usr/bin/vmprobe")
step "static C probe built in $(since "$t")s"

if [[ $swift == 1 ]]; then
    t=$(ts)
    (cd "$repo" && swift build -c release --static-swift-stdlib \
        --scratch-path .build-deb --product balloond) >"$wd/swift-build.log" 2>&1 \
        || { cat "$wd/swift-build.log" >&2; echo "selftest: FAIL: swift build" >&2; exit 1; }
    bin=$(cd "$repo" && swift build -c release --static-swift-stdlib \
        --scratch-path .build-deb --product balloond --show-bin-path)/balloond
    if ldd "$bin" | grep -q libswift; then
        echo "selftest: FAIL: $bin links the Swift runtime dynamically" >&2; exit 1
    fi
    # Stripped copy: debug info would double the initramfs and slow the boot.
    strip -o "$wd/balloond" "$bin"
    files+=(--elf "$wd/balloond:/usr/bin/balloond")
    step "balloond (static Swift runtime, dynamic libsystemd) built in $(since "$t")s ($(du -h "$bin" | cut -f1), stripped $(du -h "$wd/balloond" | cut -f1))"
fi

t=$(ts)
"$here/mkinitramfs.sh" -o "$wd/initramfs.cpio.gz" "${files[@]}" >/dev/null
step "initramfs built in $(since "$t")s ($(du -h "$wd/initramfs.cpio.gz" | cut -f1))"

cleanup() {
    "$here/stop.sh" "$wd" >/dev/null 2>&1 || true
}
trap cleanup EXIT

t_boot=$(ts)
bootargs=(-w "$wd" -i "$wd/initramfs.cpio.gz" -m 1G -c "$cpus" --timeout 300)
[[ -n $membackend ]] && bootargs+=(--memory-backend "$membackend")
"$here/boot.sh" "${bootargs[@]}" >"$wd/boot.out"
step "guest ready in $(since "$t_boot")s"

failures=0
fail() {
    echo "selftest: FAIL: $*" >&2
    failures=$((failures + 1))
}
# check NAME EXPECTED-REGEX COMMAND: run COMMAND in the guest; its output must match.
check() {
    local name=$1 re=$2 cmd=$3 out rc=0
    out=$(guest run --timeout 30 "$cmd" 2>&1) || rc=$?
    if [[ $rc != 0 ]]; then
        fail "$name: rc=$rc: $out"
    elif ! grep -Eq -- "$re" <<<"$out"; then
        fail "$name: output does not match /$re/: $out"
    else
        step "ok: $name: $(head -n1 <<<"$out")"
    fi
}

check "uname -r" "^${kver//./\\.}\$" 'uname -r'
check "meminfo" '^MemTotal: +[0-9]+ kB' 'cat /proc/meminfo'
check "virtio port" 'org.balloond.0' 'test -c /dev/virtio-ports/org.balloond.0 && ls /dev/virtio-ports'
check "vsock device" '/dev/vsock' 'ls /dev/vsock && test -d /sys/module/vsock_loopback'
check "vsock loopback" 'vsock loopback ok' 'vmprobe vsock-loopback 5000'
check "PSI" '^some avg10=' 'cat /proc/pressure/memory'
check "pagemap" 'present=1' 'vmprobe pagemap'
check "output" '^7$' 'echo 7'
out=$(guest run 'exit 7' 2>&1) && rc=0 || rc=$?
[[ $rc == 7 ]] && step "ok: exit code 7 propagated" || fail "exit code: expected 7, got $rc ($out)"
if [[ $swift == 1 ]]; then
    check "balloond (shared libraries via --elf)" '^[0-9]+\.[0-9]+\.[0-9]+$' 'balloond --version'
    check "balloond --dump-config" '^Listen=virtio-serial:org.balloond.0$' 'balloond --dump-config'
fi

# A line each way over org.balloond.0: the host connects to the chardev socket first
# and writes; the guest opens the port, writes its line and reads the host's.
t=$(ts)
if python3 - "$here" "$wd" <<'EOF'
import socket, sys, time
sys.path.insert(0, sys.argv[1])
import guest
wd = sys.argv[2]
host = guest.connect_unix(f"{wd}/port0.sock", time.monotonic() + 10, wd)
host.sendall(b"hello-from-host\n")
with guest.Agent(f"{wd}/control.sock", 30, wd) as a:
    rc, out = a.run("vmprobe port-echo /dev/virtio-ports/org.balloond.0 hello-from-guest 10", 30)
host.settimeout(10)
got = b""
while not got.endswith(b"\n"):
    d = host.recv(4096)
    if not d:
        break
    got += d
host.close()
ok = rc == 0 and out.strip() == b"hello-from-host" and got == b"hello-from-guest\n"
print(f"guest rc={rc} guest read={out!r} host read={got!r}")
sys.exit(0 if ok else 1)
EOF
then
    step "ok: org.balloond.0 line exchange ($(since "$t")s)"
else
    fail "org.balloond.0 line exchange"
fi

if [[ -n $membackend ]]; then
    if [[ -f $membackend ]]; then
        step "ok: memory backend $membackend ($(du -h "$membackend" | cut -f1) allocated on the host)"
    else
        fail "memory backend file $membackend missing"
    fi
fi

"$here/stop.sh" "$wd" || fail "stop.sh"
trap - EXIT
if [[ -n $membackend && -e $membackend ]]; then fail "stop.sh left $membackend"; fi
if ((failures)); then
    echo "----- guest console ($wd/console.log) -----" >&2
    cat "$wd/console.log" >&2 || true
    echo "selftest: $failures failure(s)" >&2
    exit 1
fi
step "PASS: boot-to-ready $(sed -n 's/^VM_READY_SECONDS=//p' "$wd/env")s, total after setup $(since "$t_all")s"
