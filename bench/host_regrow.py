#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""How soon a quiet period's regrowth rebuilds the balloon after a page-cache thrash: one guest
alone, its balloon held at half its MemTotal by balloon-hostd (`Mode=manual`), then `--thrashes`
runs of `workload thrash` of the guest's cache file, `--gap` seconds apart. A thrash stalls the
guest, balloond gives the balloon back and starts a quiet period; when the thrash ends its memory
is page cache, which regrowth turns into free memory (`[Pressure] RegrowColdCache=`) and takes.
Per thrash: the balloon at its end, `Inactive(file)` and `Active(file)` then (which of the two
lists the cache sits on decides what the cold-cache guard sees), and the seconds until the balloon
was back at 90% of what the agent held (or `-` when the gap ended first).

Why: in `make bench-host` auto's time over the budget was mostly guests' quiet periods after
page-cache phases (docs/policy-bench.md, sessions 40-41). Not a figure of issue 11's goals.

Usage: bench/host_regrow.py --initramfs PATH [--thrashes 3] [--seconds 20] [--gap 15]
       [--keys Section.Key=Value,...] [--out-dir bench]
Writes results-host-regrow.{json,md}."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "vm"))
from hostlib import MiB, log, provenance, provenance_sentence, stop, write_results  # noqa: E402
from host_burst import hold_balloon, warm_up  # noqa: E402
from host_guest import VMGuest  # noqa: E402

LISTS = "awk '/^Inactive\\(file\\):|^Active\\(file\\):|^MemAvailable:/ {print $1, $2 * 1024}' /proc/meminfo"


def meminfo(g: VMGuest) -> dict:
    return {k.rstrip(":"): int(v) for k, v in (line.split() for line in g.sh(LISTS).splitlines())}


def run(a) -> dict:
    keys = [k for k in a.keys.split(",") if k]
    g = VMGuest("regrow", a.initramfs, balloond=True, balloond_keys=keys)
    hostd = None
    try:
        total = warm_up(g)
        hostd, ctl, held = hold_balloon(g, tempfile.mkdtemp(prefix="bench-host-regrow-"), total // 2 // 4096 * 4096)
        thrashes = []
        for i in range(a.thrashes):
            g.sh(f"workload thrash /mnt/disk/cache {a.seconds} >/dev/null")
            ended, m = time.monotonic(), meminfo(g)
            at_end = ctl.call("query").get("actual", 0)
            back, samples = None, []
            while time.monotonic() - ended < a.gap:
                actual = ctl.call("query").get("actual", 0)
                samples.append([round(time.monotonic() - ended, 1), round(actual / MiB, 1)])
                if back is None and actual >= held * 9 // 10:
                    back = round(time.monotonic() - ended, 1)
                time.sleep(1)
            t = {"thrash": i + 1, "balloon_at_end_mib": round(at_end / MiB, 1),
                 "inactive_file_mib": round(m["Inactive(file)"] / MiB, 1), "active_file_mib": round(m["Active(file)"] / MiB, 1),
                 "available_mib": round(m["MemAvailable"] / MiB, 1), "back_s": back,
                 "balloon_after_gap_mib": samples[-1][1] if samples else None, "samples": samples}
            log(f"thrash {i + 1}: {({k: v for k, v in t.items() if k != 'samples'})}")
            thrashes.append(t)
        return {"held_mib": round(held / MiB, 1), "keys": keys, "thrashes": thrashes}
    finally:
        stop(hostd)
        g.stop()


def markdown(r: dict) -> str:
    out = ["# Regrowth after a page-cache thrash (`bench/host_regrow.py`)", "",
           f"{provenance_sentence(r['provenance'])} One 1 GiB TCG guest, alone; its balloon held at "
           f"{r['held_mib']} MiB by balloon-hostd (manual), then {len(r['thrashes'])} thrashes of "
           f"{r['seconds']} s, {r['gap']} s apart. Guest keys: `{','.join(r['keys']) or 'defaults'}`. "
           "Definitions: bench/host_regrow.py.", "",
           f"Command: `{r['command']}`", "",
           "| thrash | balloon at its end | Inactive(file) | Active(file) | MemAvailable | back at 90% after | balloon at the gap's end |",
           "|---|---|---|---|---|---|---|"]
    for t in r["thrashes"]:
        back = "-" if t["back_s"] is None else f"{t['back_s']} s"
        out.append(f"| {t['thrash']} | {t['balloon_at_end_mib']} MiB | {t['inactive_file_mib']} MiB | {t['active_file_mib']} MiB | "
                   f"{t['available_mib']} MiB | {back} | {t['balloon_after_gap_mib']} MiB |")
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--initramfs", required=True)
    ap.add_argument("--thrashes", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=20, help="each thrash's length")
    ap.add_argument("--gap", type=int, default=15, help="seconds watched after each thrash, before the next")
    ap.add_argument("--keys", default="", help="guest balloond keys, Section.Key=Value,...")
    ap.add_argument("--out-dir", default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench"))
    a = ap.parse_args()
    r = {"provenance": provenance(), "command": " ".join(["bench/host_regrow.py"] + sys.argv[1:]),
         "seconds": a.seconds, "gap": a.gap, **run(a)}
    write_results(a.out_dir, "results-host-regrow", r, markdown(r))
    return 0


if __name__ == "__main__":
    import guest

    guest.exit_on_sigterm()
    sys.exit(main())
