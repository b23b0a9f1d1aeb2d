#!/usr/bin/env bash
# Builds what the real-guest tests boot: the guest packages (tests/vm/setup.sh),
# static balloond and balloonctl, and an initramfs holding both.
# Prints the initramfs path on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
tests/vm/setup.sh --quiet >&2
work=tests/vm/work
mkdir -p "$work"
flags=(-c release -Xswiftc -static-executable --scratch-path .build-static)
swift build "${flags[@]}" --product balloond >&2
swift build "${flags[@]}" --product balloonctl >&2
bin=$(swift build "${flags[@]}" --show-bin-path)
strip -o "$work/balloond" "$bin/balloond"
strip -o "$work/balloonctl" "$bin/balloonctl"
tests/vm/mkinitramfs.sh -o "$work/balloond-initramfs.cpio.gz" \
    --file "$work/balloond:/usr/bin/balloond" --file "$work/balloonctl:/usr/bin/balloonctl" >&2
echo "$PWD/$work/balloond-initramfs.cpio.gz"
