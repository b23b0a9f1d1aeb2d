#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""make bench-free: memory the guest no longer uses, back to the host (issue 10).

Usage: bench/free.py --initramfs PATH [--seed N] [--configs a,b,c,d] [--observe 120]
                     [--out bench/results-free.json] [--md bench/results-free.md]
                     [--png bench/results-free.png]

For each configuration it boots the same QEMU TCG guest (1 GiB, 1 vCPU, no swap, RAM in a
shared file on /dev/shm, an ext4 scratch disk) and runs the workloads in one session:

  a  no balloon;
  b  the kernel's free page reporting (virtio-balloon-pci,free-page-reporting=on; the
     guest's virtio_balloon loaded; QEMU discards the reported pages from the RAM file);
  c  balloond's free-memory mode (balloond with its defaults, `balloonctl serve
     --memory-backend FILE --free-memory-reporting` on the host);
  d  c plus cold page cache ([FreeMemory] ReclaimColdCache=yes);
  e  c with `serve --no-populate-on-deflate` (not a configuration the issue names: an A/B of
     serve allocating the RAM file again for memory the guest takes back, for W3; c does it);
  f  c with `serve --no-prefault` (the same kind of A/B: serve allocates that memory but leaves
     QEMU to map it page by page; c maps it into QEMU ahead of the guest).

Workloads, in this order (the seed picks the order the 600 MiB of files are read in):
  1  `workload instant 600`: allocate and touch 600 MiB of anonymous memory, then exit;
  3  once every configuration has run 1 (its memory given away and freed by the host),
     `workload instant 600` again, in rounds of simultaneous pairs with a: how fast the guest gets its memory
     back (run time against a's, OOM kills);
  2  read six 100 MiB files once, then idle while a loop keeps a 100 MiB file hot;
  4  `workload touchloop 300 30`: a steady 300 MiB anonymous working set touched in a loop
     (passes against a's: the mode's own slowdown).

Host memory behind the guest = allocated blocks of the RAM file (st_blocks × 512), sampled
every 0.5 s. Reported: host memory at +5 s, +30 s and +120 s after workloads 1 and 2 end; the
time until a configuration has returned 90% of what b returned by +120 s (returned = host
memory at the end of the workload minus host memory since); the mode's CPU while the guest is
idle (balloond's utime+stime from +30 s after workload 1 to the end of its observation, once the
balloon has settled, in % of one vCPU; the host memory at +30 and +120 shows it settled) and,
apart, while it returns workload 1's memory (its end to +30 s); slowdowns against a; OOM
kills (/proc/vmstat oom_kill). For W3, where its time went: the change of THP faults and
fallbacks, kswapd and direct reclaim scans over it, and balloond's CPU (and its reaped holders')
during it. The four guests run side by side (one workload at a time, the others idle, except
W3): TCG's speed on this shared host switches between states about 1.6x apart, so W3 runs in
simultaneous pairs, each configuration beside a, and its slowdown is the median of the ratios
(w3_rounds).

The code: free_run.py (a configuration's guest and its workloads), free_report.py (the
figures, goals, table and plot).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time

from free_report import plot, provenance, report
from free_run import NAMES, ROOT, G, Run, log, w3_rounds  # G and Run: bench/free-idle.py uses them


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--initramfs", required=True)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--configs", default="a,b,c,d")
    p.add_argument("--observe", type=float, default=120)
    p.add_argument("--out", default=os.path.join(ROOT, "bench/results-free.json"))
    p.add_argument("--md", default=os.path.join(ROOT, "bench/results-free.md"))
    p.add_argument("--png", default=os.path.join(ROOT, "bench/results-free.png"))
    p.add_argument("--w3-runs", type=int, default=15, help="W3 rounds (15: with 5 the spread hid a 13%% cost, bench/results-free-w3.md): in each, every configuration allocates once beside a run of a (the median of the ratios is judged)")
    p.add_argument("--ram-hugepages", action="store_true",
                   help="the RAM files on a tmpfs of their own with huge=within_size (2 MiB host pages) instead of /dev/shm")
    p.add_argument("--keep", default=None, help="a previous results JSON whose other configurations are kept")
    args = p.parse_args()
    if args.seed is None:
        args.seed = random.randrange(1 << 31)
    results: dict[str, dict] = {}
    args.provenance = provenance()
    if args.keep:
        with open(args.keep) as f:
            kept = json.load(f)
        args.seed = kept["seed"]
        results = {k: v for k, v in kept["results"].items() if k not in args.configs.split(",")}
        if not kept.get("series_from_end"):
            # Older results timed their series from 5 s before the workload's end.
            for r in results.values():
                for w in ("w1", "w2"):
                    r[w]["series"] = [(ts - 5, v) for ts, v in r[w]["series"]]
    # Every configuration's guest runs from the start, so W3 can pair
    # them (w3_rounds); the other workloads run one guest at a time while the
    # others idle.
    runs: dict[str, Run] = {}
    mounted = None
    ram_dir = "/dev/shm"
    if args.ram_hugepages:
        # A host that backs guest RAM with 2 MiB pages: memory a guest takes
        # back costs one host fault per 2 MiB instead of 512 (docs/free-memory.md).
        mounted = f"/tmp/bench-free-ram-{os.getpid()}"
        os.makedirs(mounted, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6G,huge=within_size", "tmpfs", mounted], check=True)
        ram_dir = mounted
        args.provenance += f" RAM files on a tmpfs mounted with huge=within_size ({mounted})."
    try:
        for cfg in args.configs.split(","):
            log(f"{cfg}: booting ({NAMES[cfg]})")
            runs[cfg] = Run(cfg, args.initramfs, args.seed, ram_dir)
            runs[cfg].prepare()
        time.sleep(20)  # settle: each configuration returns what is free at boot
        for run in runs.values():
            run.phase_w1(args.observe)
        w3_rounds(runs, args.w3_runs)
        time.sleep(10)
        for run in runs.values():
            run.phase_w2(args.observe)
        for run in runs.values():
            run.phase_w4()
        for cfg, run in runs.items():
            results[cfg] = run.res
    finally:
        for run in runs.values():
            run.stop()
        if mounted:
            subprocess.run(["umount", mounted])
            os.rmdir(mounted)
    results = {k: results[k] for k in sorted(results)}
    with open(args.out, "w") as f:
        json.dump({"provenance": args.provenance, "seed": args.seed, "observe": args.observe, "series_from_end": True, "results": results}, f, indent=1)
    text, goals = report(results, args)
    with open(args.md, "w") as f:
        f.write(text)
    plot(results, args.png)
    print(text)
    return 1 if any("FAIL" in g for g in goals) else 0


if __name__ == "__main__":
    G.exit_on_sigterm()
    sys.exit(main())
