#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# make test-libvirt: balloon-hostd and a real libvirt guest (docs/libvirt.md).
#  1. installs libvirt from Debian if missing (tests/libvirt/install.sh);
#  2. starts its own libvirtd by hand (no systemd needed), unix socket only,
#     in a private mount namespace where a test qemu.conf is bind-mounted
#     over /etc/libvirt/qemu.conf: memory_backing_dir on a tmpfs made for the
#     test, no cgroups, no security driver, console to a file;
#  3. defines and starts a TCG domain: direct kernel boot of the VM tests'
#     guest (tests/vm), 512 MiB in a shared RAM file, a virtio channel
#     org.balloond.0 (a unix socket libvirt names) and the tests' control port;
#  4. runs the freshly built balloon-hostd ([Discovery] Libvirt=yes,
#     LibvirtMemory= the tmpfs): it finds the guest in libvirt's channel
#     directory and its RAM file in libvirt's layout by itself; the balloon is
#     inflated through it, and the RAM file's blocks and the tmpfs's usage,
#     measured from outside, drop.
# Everything it starts is stopped by pid, and the domain destroyed and
# undefined, on any exit (trap). Root only. Here: 23 s from libvirtd to the
# end, 36 s with up-to-date builds; the first install ~80 s more.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
export PATH=/opt/swift/usr/bin:$PATH
MiB=$((1 << 20))
log() { echo "test-libvirt: $*" >&2; }
fail() { log "FAIL: $*"; exit 1; }
[ "$(id -u)" = 0 ] || fail "needs root (libvirtd, the RAM tmpfs, the domain)"

tests/libvirt/install.sh
swift build --product balloon-hostd >&2
swift build --product balloonctl >&2
bin=$(swift build --show-bin-path)
# make test has built it (and runs the VM tests from it meanwhile: rebuilding
# would rewrite the file under them).
if [[ -n ${BALLOOND_VM_INITRAMFS:-} && -r ${BALLOOND_VM_INITRAMFS:-} ]]; then
    initramfs=$BALLOOND_VM_INITRAMFS
else
    initramfs=$(scripts/build-vm-artifacts.sh)
fi
kver=$(cat tests/vm/work/kver)
kernel=/boot/vmlinuz-$kver   # boot.sh copies it the same way; root reads /boot
[ -r "$kernel" ] || kernel=$repo/tests/vm/work/vmlinuz-$kver
uri=qemu:///system
virsh() { command virsh -q -c "$uri" "$@"; }
# A libvirtd that is not ours would ignore this test's qemu.conf.
if virsh version >/dev/null 2>&1; then fail "a libvirtd is already running here; stop it first"; fi

start=$(date +%s)
work=$(mktemp -d /tmp/balloond-libvirt.XXXXXX)
chmod 755 "$work"
name=balloond-lv-$$   # under libvirt's 20-character short name
libvirtd_pid= hostd_pid=
cleanup() {
    local rc=$?
    set +e
    if [ -n "$libvirtd_pid" ]; then
        virsh destroy "$name" >/dev/null 2>&1
        virsh undefine "$name" >/dev/null 2>&1
    fi
    [ -n "$hostd_pid" ] && kill "$hostd_pid" 2>/dev/null && wait "$hostd_pid" 2>/dev/null
    if [ -n "$libvirtd_pid" ]; then
        kill "$libvirtd_pid" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$libvirtd_pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$libvirtd_pid" 2>/dev/null
        wait "$libvirtd_pid" 2>/dev/null
    fi
    if ((rc != 0)); then
        for f in libvirtd.log hostd.log guest/console.log; do
            [ -s "$work/$f" ] && { echo "--- $f (tail) ---"; tail -n 30 "$work/$f"; } >&2
        done
        [ -s "/var/log/libvirt/qemu/$name.log" ] && { echo "--- qemu log (tail) ---"; tail -n 5 "/var/log/libvirt/qemu/$name.log"; } >&2
    fi
    rm -f "/var/log/libvirt/qemu/$name.log"
    mountpoint -q "$work/ram" && umount "$work/ram"
    rm -rf "$work"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The guest's files, readable by libvirt-qemu (QEMU's user).
mkdir -p "$work/ram" "$work/guest" "$work/guests"
cp "$kernel" "$work/vmlinuz"
cp "$initramfs" "$work/initramfs.cpio.gz"
chmod 644 "$work/vmlinuz" "$work/initramfs.cpio.gz"
chown libvirt-qemu:libvirt-qemu "$work/guest"
mount -t tmpfs -o size=640m,mode=0755 balloond-libvirt "$work/ram"

cat >"$work/qemu.conf" <<EOF
memory_backing_dir = "$work/ram"
stdio_handler = "file"
cgroup_controllers = [ ]
security_driver = "none"
namespaces = [ ]
EOF
cat >"$work/libvirtd.conf" <<EOF
listen_tls = 0
listen_tcp = 0
EOF
# exec: the pid we keep is libvirtd's own.
unshare --mount --propagation private sh -c \
    'mount --bind "$1" /etc/libvirt/qemu.conf && exec libvirtd --config "$2" --pid-file "$3"' \
    sh "$work/qemu.conf" "$work/libvirtd.conf" "$work/libvirtd.pid" >"$work/libvirtd.log" 2>&1 &
libvirtd_pid=$!
for _ in $(seq 150); do virsh version >/dev/null 2>&1 && break; kill -0 $libvirtd_pid 2>/dev/null || fail "libvirtd exited"; sleep 0.2; done
virsh version >/dev/null 2>&1 || fail "libvirtd did not answer within 30 s"

cat >"$work/domain.xml" <<EOF
<domain type='qemu'>
  <name>$name</name>
  <memory unit='MiB'>512</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$work/vmlinuz</kernel>
    <initrd>$work/initramfs.cpio.gz</initrd>
    <cmdline>console=ttyS0 quiet panic=-1 mitigations=off no_timer_check i8042.noaux i8042.nopnp</cmdline>
  </os>
  <cpu mode='maximum'/>
  <memoryBacking>
    <source type='file'/>
    <access mode='shared'/>
  </memoryBacking>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <serial type='file'><source path='$work/guest/console.log'/><target port='0'/></serial>
    <channel type='unix'><target type='virtio' name='org.balloond.0'/></channel>
    <channel type='unix'><source mode='bind' path='$work/guest/control.sock'/><target type='virtio' name='org.balloond.test'/></channel>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
    <memballoon model='none'/>
  </devices>
</domain>
EOF
virsh define "$work/domain.xml" >/dev/null
virsh start "$name" >/dev/null
id=$(virsh domid "$name")
channel=/var/lib/libvirt/qemu/channel/target/domain-$id-$name/org.balloond.0
ramfile=$work/ram/libvirt/qemu/$id-$name/pc.ram
[ -S "$channel" ] || fail "no channel socket at $channel"
[ -f "$ramfile" ] || fail "no RAM file at $ramfile: $(find "$work/ram" | tr '\n' ' ')"
log "domain $name (id $id) started; channel $channel, RAM file $ramfile"

guest() { python3 tests/vm/guest.py "$work/guest" run --timeout 120 "$1"; }
python3 tests/vm/guest.py "$work/guest" wait-ready --timeout 120 >/dev/null || fail "the guest's control agent did not answer"
# Touch 300 MiB of guest RAM and free it: the RAM file now holds it.
guest 'dd if=/dev/zero of=/tmp/fill bs=1M count=300 2>/dev/null; rm /tmp/fill' >/dev/null
guest 'printf "[Channel]\nListen=virtio-serial:org.balloond.0\n[Balloon]\nChunkSize=32M\nMemAvailableFloor=64M\n" >/tmp/b.conf
balloond --config /tmp/b.conf >/tmp/balloond.log 2>&1 &' >/dev/null

cat >"$work/hostd.conf" <<EOF
[Host]
Control=$work/control
GuestDirectory=$work/guests
[Policy]
Mode=manual
[Discovery]
Libvirt=yes
LibvirtMemory=$work/ram
EOF
"$bin/balloon-hostd" --config "$work/hostd.conf" >"$work/hostd.log" 2>&1 &
hostd_pid=$!
ctl() { "$bin/balloonctl" "$@"; }
row() {
    ctl list --agent "$work/control" --json 2>/dev/null | python3 -c "
import json, sys
text = sys.stdin.read()
rows = [g for g in json.loads(text)['guests'] if g['name'] == sys.argv[1]] if text.strip() else []
print(json.dumps(rows[0]) if rows else '')" "$name" || true
}
field() { python3 -c "import json,sys; v=json.loads(sys.argv[1]).get(sys.argv[2]); print('' if v is None else v)" "$1" "$2"; }
for _ in $(seq 300); do
    r=$(row)
    [ -n "$r" ] && [ "$(field "$r" connected)" = True ] && break
    kill -0 $hostd_pid 2>/dev/null || fail "balloon-hostd exited"
    sleep 0.2
done
[ -n "$r" ] && [ "$(field "$r" connected)" = True ] || fail "balloon-hostd did not find and connect the guest: ${r:-no row}"
[ "$(field "$r" source)" = discovered ] || fail "the guest is not a discovered one: $r"
[ "$(field "$r" channel)" = "unix:$channel" ] || fail "channel $(field "$r" channel), expected unix:$channel"
grep -q "RAM file $ramfile" "$work/hostd.log" || fail "balloon-hostd did not take the RAM file $ramfile"
log "balloon-hostd discovered $name: $r"

blocks() { echo $(($(stat -c %b "$ramfile") * 512)); }
tmpfs_used() { echo $(($(stat -f -c '(%b-%f)*%S' "$work/ram"))); }
file_before=$(blocks) tmpfs_before=$(tmpfs_used)
target=$((240 * MiB))
ctl --agent "$work/control" --guest "$name" --timeout 60 set "$target" --wait --wait-timeout 120 >/dev/null \
    || fail "set $target through balloon-hostd"
# Punching follows the frame reports (each after its grace time).
want=$((120 * MiB))
for _ in $(seq 150); do
    (( file_before - $(blocks) >= want )) && break
    sleep 0.2
done
file_after=$(blocks) tmpfs_after=$(tmpfs_used)
r=$(row)
log "RAM file blocks $((file_before / MiB)) -> $((file_after / MiB)) MiB, tmpfs used $((tmpfs_before / MiB)) -> $((tmpfs_after / MiB)) MiB, agent freed $(( $(field "$r" bytes-freed) / MiB )) MiB, balloon $(( $(field "$r" actual) / MiB )) MiB"
(( file_before - file_after >= want )) || fail "the RAM file dropped by less than $((want / MiB)) MiB"
(( tmpfs_before - tmpfs_after >= want )) || fail "the tmpfs's usage dropped by less than $((want / MiB)) MiB"
(( $(field "$r" bytes-freed) >= want )) || fail "the agent reports $(field "$r" bytes-freed) bytes freed"
ctl top --agent "$work/control" --iterations 1 >&2 || fail "balloonctl top"
log "ok in $(($(date +%s) - start)) s (builds and install before not counted)"
