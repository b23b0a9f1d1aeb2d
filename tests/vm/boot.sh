#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# tests/vm/boot.sh — boot the test guest under QEMU TCG in the background.
#
# Usage: tests/vm/boot.sh [-w WORKDIR] [-i INITRAMFS] [-k KERNEL] [-m MEM] [-c CPUS] [--cpu MODEL]
#                         [--memory-backend /dev/shm/FILE] [--vsock]
#                         [--balloon-device] [--deflate-on-oom]
#                         [--append 'KERNEL ARGS'] [--timeout SECONDS]
#                         [--ready-timeout SECONDS] [--qemu-arg ARG]...
#
#   -w WORKDIR        sockets, pid files and logs (default tests/vm/work/guest)
#   -i INITRAMFS      default tests/vm/work/initramfs.cpio.gz (tests/vm/mkinitramfs.sh)
#   -k KERNEL         default: a copy of /boot/vmlinuz-KVER in tests/vm/work/
#   -m MEM            guest RAM (default 1G)
#   -c CPUS           1 or 2 (default 1)
#   --cpu MODEL       QEMU -cpu (default max); e.g. max,erms=off: TCG runs `rep stosb`
#                     a byte per iteration, so with ERMS the guest's page zeroing is
#                     about 8x slower than with `rep stosq` (see bench/vm/bench.py)
#   --memory-backend /dev/shm/FILE
#                     guest RAM in a shared file (memory-backend-file, share=on) the
#                     host can see and punch holes in; stop.sh deletes the file
#   --vsock           add vhost-vsock-pci (guest CID 3); needs /dev/vhost-vsock on the
#                     host, which this machine lacks: use vsock_loopback in the guest
#   --balloon-device  add virtio-balloon-pci,id=balloon0 (kernel-driver comparison; the
#                     guest ships virtio_balloon.ko: vmload virtio_balloon, or
#                     --append vmtest.load=virtio_balloon)
#   --deflate-on-oom  with --balloon-device: deflate-on-oom=on
#   --append ARGS     extra kernel command line (e.g. psi=1, vmtest.noagent)
#   --timeout S       hard limit on QEMU's life (default 1800): it is killed after S s
#   --ready-timeout S how long to wait for the control agent (default 60)
#   --qemu-arg ARG    pass ARG to QEMU (repeatable)
#
# Work dir after boot: control.sock (agent port org.balloond.test), port0.sock
# (virtserialport id=port0 name=org.balloond.0), qmp.sock, console.log, qemu.stderr,
# qemu.pid (QEMU), wrapper.pid (the timeout(1) wrapper), env (shell-sourceable paths).
# Stop with tests/vm/stop.sh WORKDIR.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
work=$here/work
wd=$work/guest
initrd=$work/initramfs.cpio.gz
kernel=
mem=1G
cpus=1
cpu_model=max
membackend=
vsock=0
balloon=0
deflate_on_oom=0
append=
limit=1800
ready_timeout=60
qemu_extra=()

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-2}"; }

while (($#)); do
    case $1 in
        -w|--workdir) wd=$2; shift 2 ;;
        -i|--initramfs) initrd=$2; shift 2 ;;
        -k|--kernel) kernel=$2; shift 2 ;;
        -m|--memory) mem=$2; shift 2 ;;
        -c|--cpus) cpus=$2; shift 2 ;;
        --cpu) cpu_model=$2; shift 2 ;;
        --memory-backend) membackend=$2; shift 2 ;;
        --vsock) vsock=1; shift ;;
        --balloon-device) balloon=1; shift ;;
        --deflate-on-oom) deflate_on_oom=1; shift ;;
        --append) append="$append $2"; shift 2 ;;
        --timeout) limit=$2; shift 2 ;;
        --ready-timeout) ready_timeout=$2; shift 2 ;;
        --qemu-arg) qemu_extra+=("$2"); shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "boot: unknown argument: $1" >&2; usage ;;
    esac
done

[[ $cpus == 1 || $cpus == 2 ]] || { echo "boot: -c must be 1 or 2 (this host has 2 cores)" >&2; exit 2; }
[[ -f $initrd ]] || { echo "boot: initramfs $initrd missing (tests/vm/mkinitramfs.sh -o $initrd)" >&2; exit 1; }
command -v qemu-system-x86_64 >/dev/null || { echo "boot: qemu-system-x86_64 missing (tests/vm/setup.sh)" >&2; exit 1; }

if [[ -z $kernel ]]; then
    if [[ -s $work/kver ]]; then kver=$(cat "$work/kver")
    else kver=$(basename "$(ls -1 /boot/vmlinuz-*-cloud-amd64 | sort -V | tail -n1)"); kver=${kver#vmlinuz-}; fi
    kernel=$work/vmlinuz-$kver
    if [[ ! -f $kernel ]]; then
        cp "/boot/vmlinuz-$kver" "$kernel.tmp.$$" && mv -f "$kernel.tmp.$$" "$kernel"  # per process: two test lanes may copy at once
    fi
fi
[[ -r $kernel ]] || { echo "boot: kernel $kernel not readable" >&2; exit 1; }

if [[ $vsock == 1 && ! -e /dev/vhost-vsock ]]; then
    echo "boot: --vsock needs /dev/vhost-vsock on the host, which is absent here;" \
         "vsock tests run through vsock_loopback (CID 1) inside the guest" >&2
    exit 1
fi

mkdir -p "$wd"
wd=$(cd "$wd" && pwd)
if [[ -s $wd/qemu.pid ]] && kill -0 "$(cat "$wd/qemu.pid")" 2>/dev/null; then
    echo "boot: a guest is already running in $wd (pid $(cat "$wd/qemu.pid")); tests/vm/stop.sh $wd" >&2
    exit 1
fi
rm -f "$wd"/{control,port0,qmp}.sock "$wd"/{qemu,wrapper}.pid "$wd"/{console.log,qemu.stderr,env}
if (( ${#wd} + 12 > 107 )); then
    echo "boot: work dir path too long for unix sockets: $wd" >&2
    exit 1
fi

args=(
    -name balloond-test
    -accel tcg
    -machine pc
    -cpu "$cpu_model"
    -smp "$cpus"
    -m "$mem"
    -nodefaults -no-user-config -display none -no-reboot
    -serial "file:$wd/console.log"
    -monitor none
    -nic none
    -kernel "$kernel"
    -initrd "$initrd"
    -append "console=ttyS0 quiet panic=-1 mitigations=off no_timer_check i8042.noaux i8042.nopnp$append"
    -qmp "unix:$wd/qmp.sock,server=on,wait=off"
    -device virtio-rng-pci
    -device virtio-serial-pci,id=vser0
    -chardev "socket,id=ch0,path=$wd/port0.sock,server=on,wait=off"
    -device virtserialport,id=port0,chardev=ch0,name=org.balloond.0,bus=vser0.0
    -chardev "socket,id=chtest,path=$wd/control.sock,server=on,wait=off"
    -device virtserialport,id=porttest,chardev=chtest,name=org.balloond.test,bus=vser0.0
    -pidfile "$wd/qemu.pid"
)
if [[ -n $membackend ]]; then
    # align=2M: guest RAM mapped on a 2 MiB boundary, so a backend file on a
    # huge-page tmpfs (bench-free --ram-hugepages) can be mapped with 2 MiB
    # pages; on /dev/shm it changes nothing.
    args+=(-object "memory-backend-file,id=ram,size=$mem,mem-path=$membackend,share=on,align=2M"
           -machine memory-backend=ram)
fi
if [[ $vsock == 1 ]]; then
    args+=(-device vhost-vsock-pci,id=vsock0,guest-cid=3)
fi
if [[ $balloon == 1 ]]; then
    b=virtio-balloon-pci,id=balloon0
    [[ $deflate_on_oom == 1 ]] && b+=",deflate-on-oom=on"
    args+=(-device "$b")
fi
args+=("${qemu_extra[@]}")

{
    echo "VM_WORKDIR=$wd"
    echo "VM_CONTROL_SOCK=$wd/control.sock"
    echo "VM_PORT0_SOCK=$wd/port0.sock"
    echo "VM_QMP_SOCK=$wd/qmp.sock"
    echo "VM_CONSOLE_LOG=$wd/console.log"
    echo "VM_MEMORY_BACKEND=$membackend"
    echo "VM_MEM=$mem"
    echo "VM_CPUS=$cpus"
} >"$wd/env"
printf '%q ' qemu-system-x86_64 "${args[@]}" >"$wd/qemu.cmdline"; echo >>"$wd/qemu.cmdline"

t0=$(date +%s.%N)
# timeout(1) is the hard time limit; QEMU's own pid goes to qemu.pid (-pidfile).
setsid timeout -k 5 "$limit" qemu-system-x86_64 "${args[@]}" </dev/null >"$wd/qemu.stderr" 2>&1 &
echo $! >"$wd/wrapper.pid"

fail() {
    echo "boot: $*" >&2
    echo "----- qemu stderr -----" >&2; cat "$wd/qemu.stderr" >&2 || true
    echo "----- guest console ($wd/console.log) -----" >&2; cat "$wd/console.log" >&2 || true
    "$here/stop.sh" "$wd" >&2 || true
    exit 1
}

if ! python3 "$here/guest.py" "$wd" wait-ready --timeout "$ready_timeout"; then
    fail "the guest control agent did not answer within ${ready_timeout}s"
fi
t1=$(date +%s.%N)
ready=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
echo "VM_READY_SECONDS=$ready" >>"$wd/env"
echo "boot: guest ready in ${ready}s (qemu pid $(cat "$wd/qemu.pid"), limit ${limit}s)"
cat "$wd/env"
