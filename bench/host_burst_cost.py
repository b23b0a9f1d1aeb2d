#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""What an instant burst's slowdown follows, over the runs of one or more `bench/host.py compare`.

Usage: bench/host_burst_cost.py RUNS.json[.gz] ...

Per burst of every run (bench/host_bursts.py): its run time over the median of the same burst in
that file's no-balloon runs (a no-balloon run against the others, so its rows show the noise), the
balloon it started with, the agent's and balloond's CPU over it, its own QEMU's CPU, and how far
the neighbours inflated meanwhile. Per file and policy: the means, and the correlation of the ratio
with the balloon at the start; over every ballooned burst of all files, a least-squares line of the
ratio on that balloon; per policy, each burst's median over all files; and, within each file's
burst beside a busy neighbour, the ratio's slope on the neighbours' inflation, on what they took
back, on the idle neighbours' CPU, on the balloon and on the agent's CPU (`within`), and the
bursts split by what the idle neighbours inflated (`idle_split`). A diagnostic for choosing what
to change, not a figure of the goals.
"""

from __future__ import annotations

import gzip
import json
import statistics
import sys

from host_bursts import bursts
from host_summary import baseline


def rows_of(path: str) -> list[dict]:
    with (gzip.open(path) if path.endswith(".gz") else open(path)) as f:
        runs = json.load(f)
    per = {n: {(b["guest"], b["phase"]): b for b in bursts(r)} for n, r in runs.items()}
    nones = [n for n in runs if baseline(n.split("#")[0])]
    out = []
    for n in runs:
        for k, b in per[n].items():
            base = [per[m][k]["seconds"] for m in nones if m != n and k in per[m]]
            if not base:
                continue
            out.append({
                "burst": f"g{k[0]}/{k[1]}",
                "run": path.rsplit("/", 1)[-1].removeprefix("compare-runs-").split(".json")[0],
                "policy": n.split("#")[0], "ratio": b["seconds"] / statistics.median(base),
                "balloon": b["balloon_at_start_mib"], "agent": b["agent_cpu_s"] or 0.0,
                "balloond": (b.get("guest_cpu") or {}).get("balloond_s") or 0.0, "own": b["own_cpu_s"],
                "inflating": sum(max(x["balloon_mib"], 0) for x in b["neighbours"]),
                # A neighbour taking memory back meanwhile: the agent allocates and maps that too.
                "deflating": sum(max(-x["balloon_mib"], 0) for x in b["neighbours"]),
                "busy": any(x["phases"] for x in b["neighbours"]),
                # Neighbours in no active phase: their CPU over the burst is the balloon's work.
                "idle_cpu": sum(x["cpu_s"] for x in b["neighbours"] if not x["phases"]),
                "idle_inflating": sum(max(x["balloon_mib"], 0) for x in b["neighbours"] if not x["phases"]),
            })
    return out


def within(rows: list[dict]) -> None:
    """Each quantity's slope within a file's same burst, over its ballooned runs (every policy): the
    file and the burst (its neighbours' phases, its size, the file's code and machine) are held
    fixed by taking each row against the mean of its (file, burst) group, so what is left is how
    the runs of one burst differ. Only bursts beside a neighbour in an active phase: with both
    neighbours idle a core is free and the balloon cost nothing."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        if r["busy"] and not baseline(r["policy"]):
            groups.setdefault((r["run"], r["burst"]), []).append(r)
    groups = {k: v for k, v in groups.items() if len(v) > 1}
    if not groups:
        return
    n = sum(len(v) for v in groups.values())
    print(f"\nWithin a file's burst, over {n} ballooned runs of {len(groups)} busy-neighbour bursts, the ratio's "
          "slope on (correlation):\n")
    ratio = [r["ratio"] - statistics.mean(x["ratio"] for x in v) for v in groups.values() for r in v]
    for key, per, unit in (("inflating", 100, "100 MiB the neighbours inflated during it"),
                           ("deflating", 100, "100 MiB the neighbours took back during it"),
                           ("idle_cpu", 0.5, "0.5 s of the idle neighbours' CPU over it"),
                           ("balloon", 100, "100 MiB of balloon at its start"),
                           ("agent", 0.1, "0.1 s of the agent's CPU over it")):
        x = [r[key] - statistics.mean(y[key] for y in v) for v in groups.values() for r in v]
        if len(set(x)) < 2:
            continue
        line = statistics.linear_regression(x, ratio)
        print(f"- {line.slope * per:+.3f} per {unit} ({statistics.correlation(x, ratio):.2f})")


def main() -> None:
    rows = [r for path in sys.argv[1:] for r in rows_of(path)]
    print("| runs | policy | bursts | mean ratio | balloon at start (MiB) | corr(balloon, ratio) | agent CPU s "
          "| balloond s | own QEMU CPU s | neighbours inflating (MiB) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for run in dict.fromkeys(r["run"] for r in rows):
        for policy in dict.fromkeys(r["policy"] for r in rows if r["run"] == run):
            rs = [r for r in rows if r["run"] == run and r["policy"] == policy]
            m = lambda k: statistics.mean(r[k] for r in rs)  # noqa: E731
            # statistics.correlation needs two balloon sizes (and two ratios) to compare.
            varied = len({r["balloon"] for r in rs}) > 1 and len({r["ratio"] for r in rs}) > 1
            c = f"{statistics.correlation([r['balloon'] for r in rs], [r['ratio'] for r in rs]):.2f}" if varied else "-"
            print(f"| {run} | {policy} | {len(rs)} | {m('ratio'):.3f} | {m('balloon'):.0f} | "
                  f"{c} | {m('agent'):.2f} | {m('balloond'):.2f} | {m('own'):.2f} | {m('inflating'):.0f} |")
    ballooned = [r for r in rows if r["balloon"] > 0 or not baseline(r["policy"])]
    if len({r["balloon"] for r in ballooned}) > 1:
        xs, ys = [r["balloon"] for r in ballooned], [r["ratio"] for r in ballooned]
        line = statistics.linear_regression(xs, ys)
        print(f"\nEvery ballooned burst ({len(ballooned)}): ratio = {line.intercept:.3f} + {line.slope * 100:.4f} "
              f"per 100 MiB of balloon at its start (correlation {statistics.correlation(xs, ys):.2f})")
    print("\nEvery file together, per policy: each burst's median ratio over its runs (runs), the mean of all its bursts:\n")
    for policy in dict.fromkeys(r["policy"] for r in rows):
        rs = [r for r in rows if r["policy"] == policy]
        per = [(b, [r["ratio"] for r in rs if r["burst"] == b]) for b in sorted({r["burst"] for r in rs})]
        # Each burst's median once, slowest first.
        by_median = sorted(((statistics.median(v), b, len(v)) for b, v in per), key=lambda x: -x[0])
        meds = ", ".join(f"{b} {m:.3f} ({n})" for m, b, n in by_median)
        print(f"- {policy}: {meds}; mean {statistics.mean(r['ratio'] for r in rs):.3f} over {len(rs)}")
    within(rows)
    idle_split(rows)


def idle_split(rows: list[dict]) -> None:
    """Per policy, the busy-neighbour bursts whose idle neighbours inflated 64 MiB or more during
    them against those where they inflated under 16 MiB: the two groups are not the same bursts,
    so a lead for `within`, not a measurement; and how much the idle neighbours inflated, and their
    CPU, a burst over all of them."""
    print("\nBursts beside a busy neighbour, by what the idle neighbours inflated during them (median ratio):\n")
    for policy in dict.fromkeys(r["policy"] for r in rows if not baseline(r["policy"])):
        rs = [r for r in rows if r["policy"] == policy and r["busy"]]
        hi = [r["ratio"] for r in rs if r["idle_inflating"] >= 64]
        lo = [r["ratio"] for r in rs if r["idle_inflating"] < 16]
        if not rs:
            continue
        # What the idle neighbours did over all of them: the yield's holds (and a lock that gives
        # way to one) act on this.
        did = (f"idle neighbours inflated {statistics.mean(r['idle_inflating'] for r in rs):.0f} MiB "
               f"(CPU {statistics.mean(r['idle_cpu'] for r in rs):.2f} s) a burst over {len(rs)}")
        split = (f">= 64 MiB {statistics.median(hi):.3f} ({len(hi)}), < 16 MiB {statistics.median(lo):.3f} ({len(lo)}); "
                 if hi and lo else "")
        print(f"- {policy}: {split}{did}")


if __name__ == "__main__":
    main()
