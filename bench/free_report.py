# SPDX-License-Identifier: Apache-2.0
"""bench/free.py's results: what each configuration returned and when, the goals, the
Markdown table and the plot."""

from __future__ import annotations

import os
import statistics
import subprocess
import time

from free_run import ROOT, MiB


def returned(w: dict, t: float) -> int:
    """What the configuration had returned t seconds after the workload ended."""
    base = w["at_end"]
    vals = [v for ts, v in w["series"] if ts <= t and ts >= 0]
    return base - (vals[-1] if vals else base)


def time_to(w: dict, amount: int) -> float | None:
    for ts, v in w["series"]:
        if ts >= 0 and w["at_end"] - v >= amount:
            return ts
    return None


def provenance() -> str:
    """Commit, date, machine and load at the start (issue 15: every results file says so)."""
    def out(argv: list[str]) -> str:
        try:
            return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except Exception:
            return "?"
    model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    return (f"Commit {out(['git', 'describe', '--always', '--dirty'])}, {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, "
            f"{os.cpu_count()} CPUs ({model}), load average at start {os.getloadavg()[0]:.2f}; guest: QEMU TCG -cpu max; "
            "balloond's free-memory settings at their defaults (docs/free-memory.md).")


def w3_slowdown(r: dict, a: dict) -> float:
    """W3 against a: the median of the run's time over that of the a run beside it
    (w3_rounds); results without pairs compare medians."""
    pairs = [(x.get("runtime-ms"), x.get("beside_a_ms")) for x in r["w3"].get("runs", [])]
    ratios = [x / y for x, y in pairs if x and y]
    if ratios:
        return statistics.median(ratios) - 1
    return w3ms(r) / max(w3ms(a), 1) - 1


def w3ms(r: dict) -> float:
    """W3's figure: the median of its runs (older results: the one run)."""
    return r["w3"].get("median_ms", r["w3"].get("runtime-ms", 0))


def report(results: dict[str, dict], args) -> tuple[str, list[str]]:
    lines = ["# make bench-free", "", getattr(args, "provenance", ""), "",
             f"Seed {args.seed}; observation {args.observe:.0f} s; the four guests run side by side, one workload at a time; W3 in {args.w3_runs} rounds of simultaneous pairs (slowdown = median of a configuration's run time over that of the a run beside it); QEMU TCG, 1 GiB, 1 vCPU each.", "",
             "| config | W1 host MiB end / +5 / +30 / +120 | W1 returned MiB | W1 time to 90% of b | W2 host MiB end / +5 / +30 / +120 | W3 run ms: median (runs) | W4 passes | OOM kills | idle CPU % (+30 s to +120 s) | CPU % returning W1 (to +30 s) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    b = results.get("b")
    target = int(0.9 * (b["w1"]["at_end"] - b["w1"]["plus120"])) if b else None
    for cfg, r in results.items():
        w1, w2 = r["w1"], r["w2"]
        t90 = time_to(w1, target) if target else None
        cpu = 100.0 * r["idle_cpu_ticks"] / 100 / r["idle_cpu_seconds"] if r.get("idle_cpu_seconds") else 0.0
        ret = 100.0 * r["return_cpu_ticks"] / 100 / r["return_cpu_seconds"] if r.get("return_cpu_seconds") else 0.0
        ooms = w1["oom_kills"] + r["w3"]["oom_kills"] + r["w4"]["oom_kills"]
        lines.append(
            f"| {cfg}: {r['name']} | {w1['at_end']//MiB} / {w1['plus5']//MiB} / {w1['plus30']//MiB} / {w1['plus120']//MiB} "
            f"| {(w1['at_end'] - w1['plus120'])//MiB} | {'-' if t90 is None else f'{t90:.1f} s'} "
            f"| {w2['at_end']//MiB} / {w2['plus5']//MiB} / {w2['plus30']//MiB} / {w2['plus120']//MiB} "
            f"| {w3ms(r)} ({', '.join(str(x) for x in r['w3'].get('runs_ms', [r['w3'].get('runtime-ms')]))}) "
            f"| {r['w4'].get('passes', '-')} | {ooms} | {cpu:.2f} | {ret:.2f} |")
    # Where W3's time went: huge pages it did not get, reclaim it ran into,
    # balloond's CPU (and that of the holders it reaped) during it.
    lines += ["", "W3 detail (changes over the workload): THP faults / fallbacks, pages scanned by kswapd / "
              "direct reclaim, balloond CPU ms (its reaped holders' ms):", ""]
    for cfg, r in results.items():
        v = r["w3"].get("vmstat")
        if v is None:
            continue
        cpu = r["w3"].get("daemon_cpu_ticks")
        kids = r["w3"].get("daemon_child_ticks")
        pop = [x["populated_bytes"] for x in r["w3"].get("runs", []) if "populated_bytes" in x]
        pre = [x["prefaulted_bytes"] for x in r["w3"].get("runs", []) if "prefaulted_bytes" in x]
        lines.append(f"- {cfg}: {v.get('thp_fault_alloc', 0)} / {v.get('thp_fault_fallback', 0)}; "
                     f"{v.get('pgscan_kswapd', 0)} / {v.get('pgscan_direct', 0)}; "
                     f"{'-' if cpu is None else cpu * 10} ({'-' if kids is None else kids * 10})"
                     + (f"; serve allocated again per run (median) {statistics.median(pop) // MiB} MiB" if pop else "")
                     + (f", mapped into QEMU {statistics.median(pre) // MiB} MiB" if pre else ""))
    # W3 pair by pair: the host's state shows in a's column.
    paired = {cfg: r["w3"].get("runs", []) for cfg, r in results.items() if cfg != "a" and any("beside_a_ms" in x for x in r["w3"].get("runs", []))}
    if paired:
        lines += ["", "W3 pairs (ms: the configuration's run / the a run beside it = ratio), one row per round:", "",
                  "| round | " + " | ".join(paired) + " |", "|---|" + "---|" * len(paired)]
        for i in range(max(len(v) for v in paired.values())):
            cells = []
            for v in paired.values():
                x = v[i] if i < len(v) else {}
                ms, am = x.get("runtime-ms"), x.get("beside_a_ms")
                cells.append(f"{ms} / {am} = {ms / am:.2f}" if ms and am else "-")
            lines.append(f"| {i + 1} | " + " | ".join(cells) + " |")
    goals = []
    a, c, d = results.get("a"), results.get("c"), results.get("d")
    if b and c:
        rb, rc = b["w1"]["at_end"] - b["w1"]["plus120"], c["w1"]["at_end"] - c["w1"]["plus120"]
        goals.append(f"(c) returns ≥ 95% of (b): {rc//MiB} / {rb//MiB} MiB = {100*rc/max(rb,1):.0f}% "
                     f"{'pass' if rc >= 0.95 * rb else 'FAIL'}")
        tb, tc = time_to(b["w1"], target), time_to(c["w1"], target)
        ok = tb is not None and tc is not None and tc <= 1.5 * tb
        goals.append(f"(c) in ≤ 1.5× (b)'s time to 90%: {tc} s vs {tb} s {'pass' if ok else 'FAIL'}")
    if b and d:
        hb, hd = b["w2"]["plus120"], d["w2"]["plus120"]
        goals.append(f"(d) host memory after W2 ≤ 50% of (b): {hd//MiB} vs {hb//MiB} MiB {'pass' if hd <= hb / 2 else 'FAIL'}")
    if a:
        for cfg in "cd":
            if cfg not in results:
                continue
            r = results[cfg]
            w4 = a["w4"].get("passes", 0) / max(r["w4"].get("passes", 1), 1) - 1
            w3 = w3_slowdown(r, a)
            goals.append(f"({cfg}) slowdown W4 {100*w4:+.1f}% (≤ 5%) {'pass' if w4 <= 0.05 else 'FAIL'}; "
                         f"W3 {100*w3:+.1f}% (≤ 10%) {'pass' if w3 <= 0.10 else 'FAIL'}")
    for cfg, r in results.items():
        if cfg in "cd":
            cpu = 100.0 * r["idle_cpu_ticks"] / 100 / r["idle_cpu_seconds"]
            ooms = r["w1"]["oom_kills"] + r["w3"]["oom_kills"] + r["w4"]["oom_kills"]
            goals.append(f"({cfg}) idle CPU {cpu:.2f}% of a vCPU (≤ 1%) {'pass' if cpu <= 1 else 'FAIL'}; "
                         f"OOM kills {ooms} {'pass' if ooms == 0 else 'FAIL'}")
    lines += ["", "Goals:", ""] + [f"- {g}" for g in goals]
    return "\n".join(lines) + "\n", goals


def plot(results: dict[str, dict], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, key, title in ((axes[0], "w1", "workload 1: 600 MiB anonymous, then exit"),
                           (axes[1], "w2", "workload 2: 600 MiB of files read once, 100 MiB hot")):
        for cfg, r in results.items():
            series = r[key]["series"]
            ax.plot([t for t, _ in series], [v / MiB for _, v in series], label=f"{cfg}: {r['name']}")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("seconds after the workload ended")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("host memory behind the guest (MiB allocated in the RAM file)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
