#!/usr/bin/env bash
# make bench-vm: the same QEMU TCG guest (1 GiB, 1 vCPU, RAM in a shared
# /dev/shm file, virtio-balloon-pci present) moves a 512 MiB balloon in and out,
# once with balloond (+ host `balloonctl serve --memory-backend`) and once with
# the kernel's virtio_balloon (QMP `balloon`), alternating, 3 runs each, a fresh
# guest per run. Writes bench/results-vm.json and bench/results-vm.md.
# Options are passed to bench/vm/bench.py (--runs N, --out DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
initramfs=$(scripts/build-vm-artifacts.sh)
swift build -c release --product balloonctl >&2
balloonctl="$(swift build -c release --show-bin-path)/balloonctl"
exec python3 bench/vm/bench.py --initramfs "$initramfs" --balloonctl "$balloonctl" --out bench "$@"
