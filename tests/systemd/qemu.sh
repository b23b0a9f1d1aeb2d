#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# tests/systemd/qemu.sh — the Debian tree (with balloond installed) under QEMU
# TCG with the virtio-serial port org.balloond.0 attached: the udev rule starts
# balloond.service (it is not enabled), and the host's balloonctl inflates the
# balloon through the port. Then the port is unplugged and plugged again
# (QMP device_del/device_add) with the service stopped, and the rule starts it
# again on the hot-plug. Run by run.sh after the nspawn tests.
#
# Usage: tests/systemd/qemu.sh --tree DIR --balloonctl PATH [--work DIR]
#
# The tree becomes an ext4 image (mkfs.ext4 -d) on virtio-blk; the kernel is
# tests/vm's cloud kernel, the initramfs is tests/vm/mkinitramfs.sh's busybox
# image with virtio_blk and ext4 added and rdinit= set to guest/rdinit, which
# mounts the image and switch_roots to systemd. The tests/vm control agent runs
# in the guest as vmtest-agent.service on org.balloond.test, so tests/vm/guest.py
# works. QEMU runs under boot.sh's hard time limit and is stopped by its pid.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
vm=$(cd "$here/../vm" && pwd)
tree=
ctl=
work=$here/work/qemu-$$
while (($#)); do
    case $1 in
        --tree) tree=$2; shift 2 ;;
        --balloonctl) ctl=$2; shift 2 ;;
        --work) work=$2; shift 2 ;;
        *) echo "qemu-test: unknown argument $1" >&2; exit 2 ;;
    esac
done
[[ -d $tree && -x $ctl ]] || { echo "qemu-test: --tree DIR and --balloonctl PATH required" >&2; exit 2; }

ts() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(ts)" 'BEGIN { printf "%.1f", b - a }'; }
step() { echo "qemu-test: $*"; }
failures=0
fail() { echo "qemu-test: FAIL: $*" >&2; failures=$((failures + 1)); }
ok() { step "ok: $*"; }

t_all=$(ts)
"$vm/setup.sh" --quiet
mkdir -p "$work"
work=$(cd "$work" && pwd)
wd=$work/g
# Unix socket paths must stay short.
if (( ${#wd} + 12 > 107 )); then wd=$(mktemp -d /tmp/balloond-qemu.XXXXXX); fi

# The test agent, its udev rule and unit go into the image only.
install -D -m 0755 "$vm/guest/agent" "$tree/usr/lib/vmtest/agent"
install -m 0644 "$here/guest/vmtest-agent.service" "$tree/etc/systemd/system/vmtest-agent.service"
install -m 0644 "$here/guest/61-vmtest-agent.rules" "$tree/etc/udev/rules.d/61-vmtest-agent.rules"
# No getty on the serial console, no waiting for a network.
ln -sf /dev/null "$tree/etc/systemd/system/serial-getty@ttyS0.service"
ln -sf /dev/null "$tree/etc/systemd/system/getty@tty1.service"
if [[ -L $tree/etc/systemd/system/multi-user.target.wants/balloond.service ]]; then
    fail "balloond.service is enabled in the tree; the test needs it started by udev only"
fi

t=$(ts)
img=$work/root.img
rm -f "$img"
truncate -s 1G "$img"
mkfs.ext4 -q -F -L balloond-root -E lazy_itable_init=1,lazy_journal_init=1 -d "$tree" "$img"
"$vm/mkinitramfs.sh" -o "$work/initramfs.cpio.gz" --module virtio_blk --module ext4 \
    --file "$here/guest/rdinit:/sbin/sdinit" >/dev/null
step "image and initramfs built ($(since "$t")s)"

cleanup() { "$vm/stop.sh" "$wd" >/dev/null 2>&1 || true; }
trap cleanup EXIT
t=$(ts)
if ! "$vm/boot.sh" -w "$wd" -i "$work/initramfs.cpio.gz" -m 1G --timeout 240 --ready-timeout 150 \
        --append "rdinit=/sbin/sdinit systemd.show_status=0 systemd.log_level=warning" \
        --qemu-arg -drive --qemu-arg "file=$img,if=virtio,format=raw,cache=unsafe" >"$work/boot.out"; then
    cat "$work/boot.out" >&2
    fail "the Debian guest did not boot"
    exit 1
fi
step "Debian guest booted under TCG; agent ready in $(since "$t")s"

guest() { python3 "$vm/guest.py" "$wd" run --timeout "${2:-30}" "$1"; }
gshow() { guest "systemctl show -p $1 --value balloond"; }
wait_guest() {  # wait_guest SECONDS DESCRIPTION COMMAND
    local limit=$1 what=$2 cmd=$3 end=$((SECONDS + $1))
    while ((SECONDS < end)); do
        guest "$cmd" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    fail "timed out after ${limit}s waiting for: $what"
    return 1
}

if wait_guest 60 "balloond active" '[ "$(systemctl is-active balloond)" = active ]'; then
    ok "balloond active, started by the udev rule (is-enabled: $(guest 'systemctl is-enabled balloond' || true))"
    guest 'systemctl status --no-pager --lines=0 balloond' | sed 's/^/    /' || true
    wanted=$(gshow WantedBy)
    [[ $wanted == *virtio*.device* || $wanted == *vport*.device* ]] \
        && ok "WantedBy=$wanted (SYSTEMD_WANTS from 60-balloond.rules)" \
        || fail "balloond is not wanted by the port's device unit: WantedBy=$wanted"
else
    guest 'systemctl status --no-pager balloond; journalctl -b --no-pager -n 40' >&2 || true
fi

# The host's balloonctl inflates through the port.
t=$(ts)
if out=$("$ctl" --unix "$wd/port0.sock" --timeout 30 set 256M --wait --wait-timeout 120 2>&1); then
    ok "host balloonctl set 256M --wait through org.balloond.0 ($(since "$t")s): $(tail -n1 <<<"$out")"
    pid=$(gshow MainPID)
    # Chunks live in holder processes (children of balloond): count them all.
    vmlck=$(guest "for p in $pid \$(cat /proc/$pid/task/$pid/children); do awk '/^VmLck:/ {print \$2}' /proc/\$p/status; done | awk '{s+=\$1} END {print s+0}'")
    [[ $vmlck == 262144 ]] && ok "guest VmLck of balloond and its holders $vmlck kB" || fail "guest VmLck $vmlck kB (balloond and its holders)"
    # Cold page cache reclaim writes the root cgroup's memory.reclaim, which
    # ProtectControlGroups= would leave read-only (the unit's ReadWritePaths=).
    # Asking for 0 bytes reclaims nothing.
    if guest "nsenter -t $pid -m sh -c 'echo 0 > /sys/fs/cgroup/memory.reclaim'" >/dev/null 2>&1; then
        ok "memory.reclaim is writable in balloond's mount namespace"
    else
        fail "memory.reclaim is not writable in balloond's mount namespace: $(guest "nsenter -t $pid -m sh -c 'echo 0 > /sys/fs/cgroup/memory.reclaim' 2>&1; ls -l /sys/fs/cgroup/memory.reclaim 2>&1" 2>&1 | tr -d '\r' | tail -n2)"
    fi
    wait_guest 10 "STATUS with the target" "systemctl show -p StatusText --value balloond | grep -q 'target 256 MiB, actual 256 MiB'" \
        && ok "STATUS=$(gshow StatusText)"
    "$ctl" --unix "$wd/port0.sock" --timeout 30 set 0 --wait >/dev/null 2>&1 || fail "deflate"
else
    fail "host balloonctl set 256M: $out"
    guest 'journalctl -u balloond --no-pager -n 30' >&2 || true
fi

# Hot-plug: stop the service, unplug the port, plug it again: udev starts it.
guest 'systemctl stop balloond' >/dev/null
devunit=$(guest 'systemd-escape --path --suffix=device "/sys$(udevadm info -q path -n /dev/virtio-ports/org.balloond.0)"' | tr -d '\r\n')
python3 "$vm/guest.py" "$wd" qmp device_del '{"id":"port0"}' >/dev/null
wait_guest 20 "port gone" '[ ! -e /dev/virtio-ports/org.balloond.0 ]'
# systemd must have seen the removal too (its device unit unplugged), or the
# new port's add event may reach it as the old device still plugged, and
# SYSTEMD_WANTS only starts units when a device becomes plugged.
wait_guest 20 "the port's device unit $devunit unplugged" \
    "[ \"\$(systemctl show -p ActiveState --value '$devunit')\" != active ]"
[[ $(gshow ActiveState) == inactive ]] || fail "balloond not inactive before the hot-plug: $(gshow ActiveState)"
t=$(ts)
python3 "$vm/guest.py" "$wd" qmp device_add \
    '{"driver":"virtserialport","id":"port0b","chardev":"ch0","name":"org.balloond.0","bus":"vser0.0"}' >/dev/null
if ! wait_guest 60 "balloond active after the hot-plug" '[ "$(systemctl is-active balloond)" = active ]'; then
    guest 'ls -l /dev/virtio-ports; systemctl list-units --all --type=device --no-legend --plain | grep -i vport;
           systemctl status --no-pager balloond; journalctl -b --no-pager -n 40' >&2 || true
else
    ok "port hot-plugged: udev started balloond again in $(since "$t")s"
    out=$("$ctl" --unix "$wd/port0.sock" --timeout 30 query 2>&1) && ok "host balloonctl query after the hot-plug: $(tr '\n' ' ' <<<"$out" | cut -c1-120)" \
        || fail "balloonctl query after the hot-plug: $out"
fi

guest 'systemctl poweroff' >/dev/null 2>&1 || true
"$vm/stop.sh" "$wd" >/dev/null 2>&1 || true
trap - EXIT
if ((failures)); then
    echo "----- guest console -----" >&2
    tail -n 40 "$wd/console.log" >&2 2>/dev/null || true
fi
[[ $wd == /tmp/balloond-qemu.* ]] && rm -rf "$wd"
if ((failures)); then
    echo "qemu-test: $failures failure(s)" >&2
    exit 1
fi
step "PASS ($(since "$t_all")s)"
