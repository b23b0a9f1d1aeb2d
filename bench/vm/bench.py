#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""make bench-vm driver (issue 3): balloond against the kernel's virtio_balloon
in the same QEMU TCG guest, moving a 512 MiB balloon in and out.

Every run boots a fresh guest with tests/vm/boot.sh: -m 1G, 1 vCPU, RAM in
/dev/shm/balloond-bench-* (memory-backend-file, share=on), virtio-balloon-pci
present. The guest first touches most of its RAM (720 MiB through tmpfs, then
removed) so the backend file is mostly allocated. Then:

  balloond run: balloond in the guest on virtio-serial:org.balloond.0 (default
    configuration), `balloonctl serve --memory-backend` on the host; timed:
    `balloonctl --control CTL set 512M --wait`, then `set 0 --wait`.
  kernel run: `vmload virtio_balloon` in the guest; timed: QMP `balloon`
    (value = 1 GiB - 512 MiB, the guest's logical RAM size), then polling
    `query-balloon` every 20 ms until `actual` equals it; then back to 1 GiB.

Host memory freed = drop of the backend file's allocated bytes (st_blocks x 512)
from before the inflate to after it, each read once the value stops changing.
Runs come in pairs, one of each driver; which goes first alternates from pair to
pair (balloond first in odd pairs). Both balloons are checked to be the same
size (balloond's `actual`, the kernel's RAM - `query-balloon` actual). Every
results file carries its provenance (commit, date, host, load, guest CPU model,
guest THP mode, balloond --dump-config in the guest). Prints pass/FAIL per
goal; exits 1 on a miss. Python 3.11 stdlib only.

The code: bench_guest.py (a guest, its QMP socket, the RAM file), bench_runs.py (one run
of each driver), bench_report.py (summary, goals, Markdown).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in bench/vm or tests/vm
from bench_guest import BenchError, log  # noqa: E402
from bench_report import fmt_mib, fmt_s, machine, markdown, summarise  # noqa: E402
from bench_runs import balloond_run, kernel_run  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--initramfs", required=True)
    ap.add_argument("--balloonctl", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--guest-cpu", default="max",
                    help="QEMU -cpu for the guest (default max; max,erms=off zeroes pages with rep stosq)")
    ap.add_argument("--name", default="results-vm", help="output file names: NAME.json, NAME.md")
    ap.add_argument("--balloond-thp", choices=["yes", "no"],
                    help="diagnostic: run balloond with TransparentHugePages= this (default: its built-in default)")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    results = {"machine": machine(args), "runs": []}
    results["machine"]["loadavg_start"] = os.getloadavg()
    t_start = time.monotonic()
    drivers = (("balloond", balloond_run), ("virtio_balloon", kernel_run))
    for i in range(1, args.runs + 1):
        # Which driver goes first alternates, so neither always meets the host first.
        for driver, fn in drivers if i % 2 == 1 else drivers[::-1]:
            name = f"bench-vm-{'b' if driver == 'balloond' else 'k'}{i}"
            log(f"pair {i}/{args.runs}: {driver} (load {os.getloadavg()[0]:.2f})")
            r = fn(args, name)
            r["pair"] = i
            log(f"  inflate {fmt_s(r['inflate_seconds'])}, deflate {fmt_s(r['deflate_seconds'])}, "
                f"host freed {fmt_mib(r['host_bytes_freed'])}")
            results["runs"].append(r)
    results["machine"]["loadavg_end"] = os.getloadavg()
    results["machine"]["total_seconds"] = time.monotonic() - t_start
    # zip(b, k) pairs runs by pair number: both lists are in pair order.
    summarise(results)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"{args.name}.json"), "w") as f:
        json.dump(results, f, indent=1)
        f.write("\n")
    md = markdown(results)
    with open(os.path.join(args.out, f"{args.name}.md"), "w") as f:
        f.write(md)
    print(md)
    for goal, ok in results["goals"].items():
        log(f"{'pass' if ok else 'FAIL'}: {goal}")
    return 0 if results["pass"] else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        log(f"error: {e}")
        sys.exit(1)
