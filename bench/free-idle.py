#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The free-memory mode's idle CPU, two balloond builds side by side (issue 10).

Usage: bench/free-idle.py OLD_INITRAMFS NEW_INITRAMFS [WINDOW_S]

Boots one config-(c) guest of bench/free.py per initramfs (balloond's free-memory mode, serve
on the host), runs workload 1 in each, waits until both have taken its memory back, then reads
both daemons' utime+stime over the same windows (three of WINDOW_S, default 60 s). The host's
speed changes by up to 2x within the hour (bench/results-free.md), so only a comparison over
the same window means anything: the ratio new/old is the figure.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import free as F  # noqa: E402


def main() -> int:
    old, new = sys.argv[1], sys.argv[2]
    window = float(sys.argv[3]) if len(sys.argv) > 3 else 60.0
    runs = {}
    try:
        for label, image in (("old", old), ("new", new)):
            r = F.Run("c", image, 1, name=f"bfree-idle-{label}-{os.getpid()}")
            r.prepare()
            runs[label] = r
        time.sleep(20)
        for r in runs.values():
            r.workload("workload instant 600")
        time.sleep(40)
        for rep in range(3):
            t0 = {k: r.daemon_ticks() for k, r in runs.items()}
            start = time.monotonic()
            time.sleep(window)
            elapsed = time.monotonic() - start
            pct = {k: (r.daemon_ticks() - t0[k]) / elapsed for k, r in runs.items()}  # ticks of 10 ms: % of a vCPU
            print(f"| {rep + 1} | {elapsed:.0f} s | {pct['old']:.2f}% | {pct['new']:.2f}% | {pct['new'] / max(pct['old'], 1e-9):.2f} |",
                  flush=True)
    finally:
        for r in runs.values():
            r.stop()
    return 0


if __name__ == "__main__":
    F.G.exit_on_sigterm()
    sys.exit(main())
