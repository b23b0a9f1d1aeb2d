#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# make bench-vm: the same QEMU TCG guest (1 GiB, 1 vCPU, RAM in a shared
# /dev/shm file, virtio-balloon-pci present) moves a 512 MiB balloon in and out,
# once with balloond (+ host `balloonctl serve --memory-backend`) and once with
# the kernel's virtio_balloon (QMP `balloon`), in pairs whose order alternates,
# 3 pairs by default, a fresh guest per run. Twice: with the harness's -cpu max
# (bench/results-vm.{json,md}) and with -cpu max,erms=off
# (bench/results-vm-noerms.{json,md}): with ERMS the guest zeroes pages with
# `rep stosb`, which TCG runs a byte per iteration, so page zeroing (which both
# drivers pay) swamps everything else.
# Options are passed to bench/vm/bench.py (--runs N, --out DIR). Both variants
# always run; the exit status is non-zero if either missed a goal.
set -euo pipefail
cd "$(dirname "$0")/.."
initramfs=$(scripts/build-vm-artifacts.sh)
swift build -c release --product balloonctl >&2
balloonctl="$(swift build -c release --show-bin-path)/balloonctl"
rc=0
python3 bench/vm/bench.py --initramfs "$initramfs" --balloonctl "$balloonctl" --out bench "$@" || rc=$?
python3 bench/vm/bench.py --initramfs "$initramfs" --balloonctl "$balloonctl" --out bench \
    --guest-cpu max,erms=off --name results-vm-noerms "$@" || rc=$?
exit "$rc"
