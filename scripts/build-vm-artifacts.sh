#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds what the real-guest tests boot: the guest packages (tests/vm/setup.sh),
# balloond as it ships (static Swift runtime; glibc and libsystemd dynamic, so
# their closure goes in with --elf), a static balloonctl, the static pressure
# workload, virtio_blk (pressure tests mount a disk; ext4 is built in), and an
# initramfs.
# Prints the initramfs path on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
tests/vm/setup.sh --quiet >&2
work=tests/vm/work
mkdir -p "$work"
# The builds make deb ships (same scratch paths and flags: no rebuild between them).
built=$(scripts/build-release.sh)
mapfile -t bins <<<"$built"
strip -o "$work/balloond" "${bins[0]}"
strip -o "$work/balloonctl" "${bins[1]}"
# An incremental build can leave a module that uses a changed `package` type
# stale (seen 2026-12-03: balloond crashed at start with "free(): invalid
# pointer" after a field was added to BalloondConfig, and a whole bench ran
# against it). Running the binaries once catches that before anything boots.
for smoke in "$work/balloond --config /dev/null --dump-config" "$work/balloonctl --help"; do
    if ! $smoke >/dev/null 2>&1; then
        echo "build-vm-artifacts: '$smoke' failed: a stale incremental build? remove .build-static and build again" >&2
        exit 1
    fi
done
# The pressure workloads (tests/vm/src/workload.c), static.
gcc -static -O2 -Wall -Wextra -pthread -o "$work/workload" tests/vm/src/workload.c >&2
tests/vm/mkinitramfs.sh -o "$work/balloond-initramfs.cpio.gz" \
    --elf "$work/balloond:/usr/bin/balloond" --file "$work/balloonctl:/usr/bin/balloonctl" \
    --file "$work/workload:/usr/bin/workload" --module virtio_blk >&2
echo "$PWD/$work/balloond-initramfs.cpio.gz"
