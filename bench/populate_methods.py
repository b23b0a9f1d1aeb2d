#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""What allocating a guest's taken-back memory again costs the host agent, by method:
bench/populate_methods.c does the kernel's side of the agent's populate and prefault for MIB of a
tmpfs file mapped by a child, in 32 MiB slices, with the agent's method (fallocate, then a read per
4 KiB page of the mapper), an alternative (a mapping of its own with MADV_POPULATE_WRITE, then a
read per 64 KiB, left to the kernel's fault-around) and that populate with a read per page, taking
turns. The alternative was measured and not adopted (docs/policy-bench.md, session 50). Reports
each method's wall and CPU seconds (medians, range), its CPU against the agent's method (fallocate)
as a ratio of medians, and the MiB the child maps after each (all of it, or the reads missed).

Usage: bench/populate_methods.py [--mib 448] [--rounds 10] [--dir /dev/shm] [--out-dir bench]
Writes results-populate-methods.{json,md}."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hostlib import ROOT, provenance, provenance_sentence, write_results  # noqa: E402

METHODS = ["fallocate", "mapping", "mapping-4k"]


def markdown(r: dict) -> str:
    rows = r["rows"]
    med = {m: {k: statistics.median(x[k] for x in rows if x["method"] == m) for k in ("wall_s", "cpu_s")} for m in METHODS}
    out = ["# Allocating taken-back memory again, by method (`bench/populate_methods.py`)", "",
           f"{provenance_sentence(r['provenance'])} {r['mib']} MiB of a file in `{r['dir']}` mapped shared by a "
           f"child, in 32 MiB slices, {r['rounds']} rounds, the methods taking turns. Definitions in bench/populate_methods.py.", "",
           f"Command: `{r['command']}`", "",
           "| method | wall median (range) | CPU median (range) | CPU against fallocate | child maps after (MiB) |",
           "|---|---|---|---|---|"]
    for m in METHODS:
        xs = [x for x in rows if x["method"] == m]
        w, c = [x["wall_s"] for x in xs], [x["cpu_s"] for x in xs]
        maps = sorted({x["mapped_mib"] for x in xs})
        out.append(f"| {m} | {med[m]['wall_s']:.3f} s ({min(w):.3f}–{max(w):.3f}) | {med[m]['cpu_s']:.3f} s "
                   f"({min(c):.3f}–{max(c):.3f}) | {med[m]['cpu_s'] / med['fallocate']['cpu_s']:.2f} | "
                   f"{', '.join(f'{v:g}' for v in maps)} |")
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=448)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--dir", default="/dev/shm", help="a tmpfs directory for the file")
    ap.add_argument("--out-dir", default=os.path.join(ROOT, "bench"))
    a = ap.parse_args()
    exe = os.path.join(ROOT, "bench", "out", "populate_methods")
    os.makedirs(os.path.dirname(exe), exist_ok=True)
    subprocess.run(["gcc", "-O2", "-Wall", "-o", exe, os.path.join(ROOT, "bench", "populate_methods.c")], check=True)
    path = os.path.join(a.dir, f"bench-populate-{os.getpid()}")
    out = subprocess.run([exe, path, str(a.mib), str(a.rounds)], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"populate_methods failed: {out.stderr.strip()}")
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    r = {"provenance": provenance(hostd=False), "command": " ".join(["bench/populate_methods.py"] + sys.argv[1:]),
         "mib": a.mib, "rounds": a.rounds, "dir": a.dir, "rows": rows}
    write_results(a.out_dir, "results-populate-methods", r, markdown(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
