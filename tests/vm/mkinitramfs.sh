#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# tests/vm/mkinitramfs.sh — build the test guest's initramfs.
#
# Usage: tests/vm/mkinitramfs.sh -o OUT.cpio.gz [--kver KVER] [--file SRC:DEST]... [--elf SRC:DEST]...
#                                [--module NAME]... [--init-script FILE]
#
#   -o OUT             output (gzip-compressed newc cpio)
#   --kver KVER        kernel version whose modules to use (default: tests/vm/work/kver,
#                      written by setup.sh, else the newest /boot/vmlinuz-*-cloud-amd64)
#   --file SRC:DEST    copy SRC into the image at DEST (mode kept), e.g.
#                      --file .build-static/release/balloond:/usr/bin/balloond
#   --elf SRC:DEST     like --file, for a dynamically linked program: also copies
#                      every shared library ldd lists (at the same paths) and the
#                      dynamic loader, and writes /etc/ld.so.conf + ld.so.cache, e.g.
#                      --elf .build-deb/release/balloond:/usr/bin/balloond
#                      (balloond links libsystemd.so.0 and glibc dynamically)
#   --module NAME      ship an extra module (and its dependencies); load it in the guest
#                      with `vmload NAME` or the kernel option vmtest.load=NAME
#   --compress gzip|none   default gzip (-1)
#   --init-script FILE run FILE (as /etc/vmtest/init-script) after the guest is set up and
#                      before the control agent starts; with the kernel option
#                      vmtest.noagent the guest powers off when it exits
#
# Contents: static busybox with every applet linked; /init, the control agent and
# vmload from tests/vm/guest/; the modules for virtio-pci, virtio-serial
# (virtio_console), vsock (vsock, vmw_vsock_virtio_transport[_common], vsock_loopback)
# and virtio-rng, loaded at boot in dependency order; virtio_balloon shipped but not
# loaded (vmload virtio_balloon).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=
kver=
files=()
elfs=()
extra_modules=()
init_script=
compress=gzip

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-2}"; }

while (($#)); do
    case $1 in
        -o) out=$2; shift 2 ;;
        --kver) kver=$2; shift 2 ;;
        --file) files+=("$2"); shift 2 ;;
        --elf) elfs+=("$2"); shift 2 ;;
        --module) extra_modules+=("$2"); shift 2 ;;
        --init-script) init_script=$2; shift 2 ;;
        --compress) compress=$2; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "mkinitramfs: unknown argument: $1" >&2; usage ;;
    esac
done
[[ -n $out ]] || { echo "mkinitramfs: -o OUT is required" >&2; usage; }

if [[ -z $kver ]]; then
    if [[ -s $here/work/kver ]]; then
        kver=$(cat "$here/work/kver")
    else
        kimg=$(ls -1 /boot/vmlinuz-*-cloud-amd64 2>/dev/null | sort -V | tail -n1 || true)
        [[ -n $kimg ]] || { echo "mkinitramfs: no cloud kernel; run tests/vm/setup.sh" >&2; exit 1; }
        kver=${kimg#/boot/vmlinuz-}
    fi
fi
[[ -d /lib/modules/$kver ]] || { echo "mkinitramfs: /lib/modules/$kver missing" >&2; exit 1; }

busybox=/bin/busybox
if ! file -L "$busybox" | grep -q 'statically linked'; then
    echo "mkinitramfs: $busybox is not static; install busybox-static" >&2
    exit 1
fi

# Modules loaded at boot, and modules only shipped.
boot_modules=(virtio_pci virtio_console virtio_rng
              vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport vsock_loopback)
ship_modules=(virtio_balloon "${extra_modules[@]}")

root=$(mktemp -d "${TMPDIR:-/tmp}/vmtest-initramfs.XXXXXX")
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,usr/lib/vmtest,etc/vmtest,proc,sys,dev,tmp,run,root}
mkdir -p "$root/lib/modules/vmtest"

# busybox and all applet links.
cp "$busybox" "$root/bin/busybox"
while read -r applet; do
    [[ $applet == bin/busybox ]] && continue
    [[ -e $root/$applet ]] || ln -s /bin/busybox "$root/$applet"
done < <("$busybox" --list-full)

# Modules: resolve dependencies with modinfo; emit in load order (deps first).
declare -A seen=()
order=()
: >"$root/lib/modules/vmtest/deps"
resolve() {
    local m=${1//-/_} f deps d
    [[ -n ${seen[$m]:-} ]] && return 0
    seen[$m]=1
    if ! f=$(modinfo -k "$kver" -F filename "$m" 2>/dev/null) || [[ -z $f ]]; then
        echo "mkinitramfs: module $m not found for $kver" >&2
        return 1
    fi
    if [[ $f == "(builtin)" ]]; then
        return 0
    fi
    deps=$(modinfo -k "$kver" -F depends "$m")
    for d in ${deps//,/ }; do resolve "$d"; done
    case $f in
        *.ko) cp "$f" "$root/lib/modules/vmtest/$m.ko" ;;
        *.ko.xz) xz -dc "$f" >"$root/lib/modules/vmtest/$m.ko" ;;
        *.ko.zst) zstd -qdc "$f" >"$root/lib/modules/vmtest/$m.ko" ;;
        *.ko.gz) gzip -dc "$f" >"$root/lib/modules/vmtest/$m.ko" ;;
        *) echo "mkinitramfs: unknown module file type: $f" >&2; return 1 ;;
    esac
    echo "$m ${deps//,/ }" >>"$root/lib/modules/vmtest/deps"
    order+=("$m")
}
for m in "${boot_modules[@]}"; do resolve "$m"; done
printf '%s\n' "${order[@]}" >"$root/lib/modules/vmtest/load-order"
boot_order=("${order[@]}")
for m in "${ship_modules[@]}"; do resolve "$m"; done
echo "$kver" >"$root/lib/modules/vmtest/kver"

# Guest scripts.
install -m 0755 "$here/guest/init" "$root/init"
install -m 0755 "$here/guest/agent" "$root/usr/lib/vmtest/agent"
install -m 0755 "$here/guest/vmload" "$root/usr/sbin/vmload"
[[ -n $init_script ]] && install -m 0755 "$init_script" "$root/etc/vmtest/init-script"

# Minimal /etc so tools that look things up do not trip.
echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
echo 'root:x:0:' >"$root/etc/group"
echo 'hosts: files' >"$root/etc/nsswitch.conf"
printf '127.0.0.1 localhost vmtest\n::1 localhost\n' >"$root/etc/hosts"

# Extra files.
for spec in "${files[@]}"; do
    src=${spec%%:*}
    dest=${spec#*:}
    [[ $spec == *:* && -n $src && $dest == /* ]] || { echo "mkinitramfs: bad --file $spec (want SRC:/DEST)" >&2; exit 1; }
    [[ -f $src ]] || { echo "mkinitramfs: --file source missing: $src" >&2; exit 1; }
    mkdir -p "$root$(dirname "$dest")"
    cp -L --preserve=mode "$src" "$root$dest"
done

# Dynamically linked programs: the program, its shared-library closure (ldd
# resolves it transitively) and the loader, each at the path ldd names.
declare -A libdirs=()
for spec in "${elfs[@]}"; do
    src=${spec%%:*}
    dest=${spec#*:}
    [[ $spec == *:* && -n $src && $dest == /* ]] || { echo "mkinitramfs: bad --elf $spec (want SRC:/DEST)" >&2; exit 1; }
    [[ -f $src ]] || { echo "mkinitramfs: --elf source missing: $src" >&2; exit 1; }
    mkdir -p "$root$(dirname "$dest")"
    cp -L --preserve=mode "$src" "$root$dest"
    if ! deps=$(ldd "$src" 2>&1); then
        [[ $deps == *"not a dynamic executable"* ]] && continue
        echo "mkinitramfs: ldd $src failed: $deps" >&2; exit 1
    fi
    if grep -q 'not found' <<<"$deps"; then
        echo "mkinitramfs: $src needs libraries that are missing here:" >&2
        grep 'not found' <<<"$deps" >&2; exit 1
    fi
    # "libx.so.1 => /lib/.../libx.so.1 (0x...)" and "/lib64/ld-linux-x86-64.so.2 (0x...)"
    while read -r lib; do
        [[ -e $root$lib ]] && continue
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
        libdirs[$(dirname "$lib")]=1
    done < <(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$deps")
done
if ((${#libdirs[@]})); then
    printf '%s\n' "${!libdirs[@]}" | LC_ALL=C sort >"$root/etc/ld.so.conf"
    ldconfig -r "$root" 2>/dev/null || echo "mkinitramfs: ldconfig -r failed; relying on the loader's default paths" >&2
fi

mkdir -p "$(dirname "$out")"
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) \
    | if [[ $compress == none ]]; then cat; else gzip -1; fi >"$out.tmp"
mv "$out.tmp" "$out"
echo "mkinitramfs: $out ($(du -h "$out" | cut -f1)), kernel $kver, boot modules: ${boot_order[*]}; also shipped: ${ship_modules[*]}"
