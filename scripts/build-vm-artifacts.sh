#!/usr/bin/env bash
# Builds what the real-guest tests boot: the guest packages (tests/vm/setup.sh),
# balloond as it ships (static Swift runtime; glibc and libsystemd dynamic, so
# their closure goes in with --elf), a static balloonctl, and an initramfs.
# Prints the initramfs path on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
tests/vm/setup.sh --quiet >&2
work=tests/vm/work
mkdir -p "$work"
daemon=(-c release --static-swift-stdlib --scratch-path .build-deb)
tool=(-c release -Xswiftc -static-executable --scratch-path .build-static)
swift build "${daemon[@]}" --product balloond >&2
swift build "${tool[@]}" --product balloonctl >&2
strip -o "$work/balloond" "$(swift build "${daemon[@]}" --show-bin-path)/balloond"
strip -o "$work/balloonctl" "$(swift build "${tool[@]}" --show-bin-path)/balloonctl"
tests/vm/mkinitramfs.sh -o "$work/balloond-initramfs.cpio.gz" \
    --elf "$work/balloond:/usr/bin/balloond" --file "$work/balloonctl:/usr/bin/balloonctl" >&2
echo "$PWD/$work/balloond-initramfs.cpio.gz"
