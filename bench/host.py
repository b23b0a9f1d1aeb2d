#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""make bench-host: balloon-hostd at scale and its policies in real guests (issue 11).

Usage: bench/host.py scale   [--guests 1000] [--seconds 60] [--warmup 20] [--out-dir bench]
       bench/host.py compare --initramfs PATH [--seed N] [--policies none,proxmox,mom,auto,none-again]
                             (a policy may add [Guest] keys: auto+PopulateOnDeflate=no, and the
                             guests' balloond.conf keys as Section.Key=Value: auto+Pressure.QuietPeriod=30s,
                             and the agent's [Policy] keys as Policy.Key=Value: auto+Policy.HeadroomBoost=2)
                             [--phases 8] [--vms 3] [--repeat 1] [--guest-cpu max] [--out-dir bench]
                             (--guest-cpu MODEL: the guests' QEMU -cpu, e.g. max,erms=off;
                             docs/policy-bench.md, session 45)
                             (--from-runs DIR/compare-runs.json: the saved runs of an earlier
                             compare summarized again, with no guests: after a report change;
                             also bench/compare-runs-NAME.json.gz)
                             (--repeat R: the list R times over, round by round; run times then
                             also per phase as the median of R runs against every no-balloon run's)
       bench/host.py all     --initramfs PATH ...  (scale, then compare)
       bench/host.py merge   SCALE.json COMPARE.json [--out-dir bench]  (two separate runs, one report;
                             copy the compare run's results-host.png along)

scale: `balloon-hostsim serve` runs N fake guests (protocol v1, one unix socket each,
STATS every second) in a temporary directory; `balloon-hostd --config` is pointed at
that directory through `[Discovery] Directories=`, with `[Host] HostMemory=` at 60% of
the guests' RAM so the auto policy has work to do every round. Once every guest is
connected (list-guests) and after a warm-up, the agent's CPU (utime+stime from
/proc/PID/stat over the window, as a share of one core) and RSS (VmRSS sampled every
second: max; VmHWM) are measured. The policy round's time is measured in-process by
`balloon-hostsim policy-round` (the pure policy on N simulated guests, sampled every
second, auto/proxmox/mom; the agent does not report its own round time). Goals: agent
CPU <= 2% of a core, RSS <= 64 MiB, one policy round <= 10 ms.

compare: the policies side by side in three 1 GiB TCG guests under a 2 GiB HostMemory=
budget, each guest on the same seeded schedule of active phases and idle gaps; how the
phases, host memory, run times and reaction times are measured: bench/host_compare.py.
Writes results-host.{json,md} and results-host.png.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "vm"))
sys.path.insert(0, os.path.join(ROOT, "bench"))

from hostlib import GiB, MiB, Control, binary, hostd_config, log, proc_cpu_seconds, proc_status_kib, provenance, start_hostd, stop, wait_connected, write_results  # noqa: E402
import host_compare  # noqa: E402
from host_guest import DEFAULT_CPU  # noqa: E402
from host_bursts import markdown as bursts_markdown  # noqa: E402


# MARK: scale

def scale(a) -> dict:
    """The agent per mode (auto first: the goals are on it), then the in-process policy cost."""
    runs = [scale_run(a, mode) for mode in a.scale_modes.split(",")]
    rounds = json.loads(subprocess.run(
        [binary("balloon-hostsim"), "policy-round", "--guests", str(a.guests), "--seconds", "300", "--seed", str(a.seed)],
        capture_output=True, text=True, check=True).stdout)
    r = {"guests": a.guests, "runs": runs, "policy_round_in_process": rounds}
    first = runs[0]
    auto = next(x for x in rounds if x["mode"] == "auto")
    r["goals"] = [
        (f"agent CPU <= 2% of a core (Mode={first['mode']})", first["agent_cpu_percent_of_core"] <= 2,
         f"{first['agent_cpu_percent_of_core']}%"),
        (f"agent RSS <= 64 MiB (Mode={first['mode']})", first["agent_rss_mib_max"] <= 64, f"{first['agent_rss_mib_max']} MiB"),
        ("policy round <= 10 ms (auto, p99, in-process)", auto["round_ms_p99"] <= 10, f"{auto['round_ms_p99']} ms"),
    ]
    return r


def scale_run(a, mode: str) -> dict:
    tmp = tempfile.mkdtemp(prefix="bench-host-")
    socks = os.path.join(tmp, "sockets")
    os.makedirs(socks)
    sim = hostd = None
    try:
        sim = subprocess.Popen([binary("balloon-hostsim"), "serve", "--guests", str(a.guests), "--dir", socks,
                                "--ram-mib", "1024", "--seed", str(a.seed)],
                               stdout=subprocess.PIPE, stderr=open(os.path.join(tmp, "hostsim.log"), "w"), text=True)
        line = sim.stdout.readline()
        if not line.startswith("ready"):
            raise RuntimeError(f"balloon-hostsim: {line!r}")
        budget = a.guests * GiB * 6 // 10
        conf = hostd_config(tmp, mode, budget, socks)
        hostd = start_hostd(conf, os.path.join(tmp, "hostd.log"))
        ctl = Control(os.path.join(tmp, "control"))
        connected = wait_connected(ctl, a.guests, 180, poll=1)
        log(f"scale ({mode}): {connected}/{a.guests} guests connected")
        time.sleep(a.warmup)
        status0 = ctl.call("policy-status")
        cpu0, sim0, t0 = proc_cpu_seconds(hostd.pid), proc_cpu_seconds(sim.pid), time.monotonic()
        rss = []
        while time.monotonic() - t0 < a.seconds:
            time.sleep(1)
            rss.append(proc_status_kib(hostd.pid, "VmRSS"))
        cpu1, sim1, t1 = proc_cpu_seconds(hostd.pid), proc_cpu_seconds(sim.pid), time.monotonic()
        status1 = ctl.call("policy-status")
        guests = ctl.call("list-guests")["guests"]
        hwm = proc_status_kib(hostd.pid, "VmHWM")
        ctl.close()
        r = {
            "mode": mode, "guests": a.guests, "connected": sum(1 for g in guests if g["connected"]),
            "window_s": round(t1 - t0, 2), "budget_bytes": budget,
            "agent_cpu_percent_of_core": round(100 * (cpu1 - cpu0) / (t1 - t0), 3),
            "agent_rss_mib_max": round(max(rss) / 1024, 2), "agent_vmhwm_mib": round(hwm / 1024, 2),
            "hostsim_cpu_percent_of_core": round(100 * (sim1 - sim0) / (t1 - t0), 3),
            "policy_rounds_in_window": status1["rounds"] - status0["rounds"],
            "targets_set_in_window": status1["targets-set"] - status0["targets-set"],
        }
        log(f"scale: {json.dumps(r)}")
        return r
    finally:
        stop(hostd)
        stop(sim)
        shutil.rmtree(tmp, ignore_errors=True)


# MARK: output

def markdown(results: dict) -> str:
    out = ["# make bench-host", ""]
    p = results["provenance"]
    out.append(f"Commit {p['commit']}, {p['date']}, {p['host_cpus']} CPUs ({p['host_cpu_model']}), kernel {p['host_kernel']}, "
               f"load average at start {p['load_average_at_start'][0]:.2f}"
               + (f"; balloon-hostd {p['balloon_hostd']}." if p.get("balloon_hostd") else "."))
    if p.get("note"):
        out += ["", p["note"]]
    if "scale" in results:
        s = results["scale"]
        runs = s["runs"]
        out += ["", "## Scale", "",
                f"{s['guests']} simulated guests (balloon-hostsim), STATS every 1 s, HostMemory= "
                f"{runs[0]['budget_bytes'] // GiB} GiB; balloon-hostd per mode, {runs[0]['window_s']} s window after warm-up.", "",
                "| figure | " + " | ".join(f"Mode={r['mode']}" for r in runs) + " |", "|---|" + "---|" * len(runs),
                "| guests connected | " + " | ".join(str(r["connected"]) for r in runs) + " |",
                "| agent CPU (share of one core) | " + " | ".join(f"{r['agent_cpu_percent_of_core']}%" for r in runs) + " |",
                "| agent RSS max (VmHWM) | " + " | ".join(f"{r['agent_rss_mib_max']} MiB ({r['agent_vmhwm_mib']} MiB)" for r in runs) + " |",
                "| policy rounds / targets set in the window | " + " | ".join(f"{r['policy_rounds_in_window']} / {r['targets_set_in_window']}" for r in runs) + " |",
                "| balloon-hostsim CPU | " + " | ".join(f"{r['hostsim_cpu_percent_of_core']}%" for r in runs) + " |", "",
                f"Policy cost in-process (`balloon-hostsim policy-round`, {s['guests']} guests, 300 simulated s; "
                "each figure the fastest of three runs on copies of the policy's state):", "",
                "| mode | rounds | round p50 | round p99 | round max | all `sampled` per s p50 / p99 | targets changed |", "|---|---|---|---|---|---|---|"]
        for r in s["policy_round_in_process"]:
            out.append(f"| {r['mode']} | {r['rounds']} | {r['round_ms_p50']} ms | {r['round_ms_p99']} ms | {r['round_ms_max']} ms | "
                       f"{r['sampled_all_ms_p50']} / {r['sampled_all_ms_p99']} ms | {r['changes']} |")
        out += ["", "| goal | met | figure |", "|---|---|---|"] + [f"| {g} | {'pass' if ok else 'FAIL'} | {v} |" for g, ok, v in s["goals"]]
    if "compare" in results:
        c = results["compare"]
        out += ["", f"## {c['vms']} TCG guests of 1 GiB, {c['budget'] // MiB} MiB budget, seed {c['seed']}, "
                f"{c['phases']} active phases each, `-cpu {c.get('guest_cpu', DEFAULT_CPU)}`", ""]
        cp = results.get("compare_provenance")
        if cp:
            out += [f"Run separately from the scale part (merged with `bench/host.py merge`): commit {cp['commit']}, {cp['date']}, "
                    f"load average at start {cp['load_average_at_start'][0]:.2f}." + (f" {cp['note']}" if cp.get("note") else ""), ""]
        # Runs saved before "plotted" was recorded had their plot.
        out += (["![host memory](results-host.png)"] if c.get("plotted", True)
                else ["(No plot: matplotlib was missing, scripts/install-plot-deps.sh.)"]) + ["",
                "| policy | host mean | host p99 | s over budget (of run) | run time p50 / p99 (phases) | OOM kills | PSI some total | reaction p50 / p99 (from pressure) | from any stall |",
                "|---|---|---|---|---|---|---|---|---|"]
        for r in c["rows"]:
            out.append(f"| {r['policy']} | {r['host_mean_mib']} MiB | {r['host_p99_mib']} MiB | {r['seconds_over_budget']} ({r['seconds']}) | "
                       f"{r['runtime_ratio_p50']} / {r['runtime_ratio_p99']} ({r['timed_phases']}) | {r['oom_kills']} | {r['psi_some_total_s']} s | "
                       f"{r['reaction_p50_s']} / {r['reaction_p99_s']} s | "
                       f"{r.get('reaction_any_stall_p50_s')} / {r.get('reaction_any_stall_p99_s')} s |")
        out += ["", "Reaction episodes (an active phase whose guest stalled 20 ms within 500 ms, its balloond's light "
                "PSI trigger, while the balloon held memory; the last column's figure times from any stall of 1 ms "
                "in a 10 ms sample instead):", "",
                "| policy | timed | anticipated (memory back before the stall) | missed | stalled with an empty balloon | memory back without a stall | failed phases |",
                "|---|---|---|---|---|---|---|"]
        for r in c["rows"]:
            out.append(f"| {r['policy']} | {r['reactions']} | {r['reactions_anticipated']} | {r['reactions_missed']} | "
                       f"{r['episodes_with_empty_balloon']} | {r['returned_without_stall']} | {r['failed_phases']} |")
        slow = [r for r in c["rows"] if r.get("slowest_phases")]
        if slow:
            out += ["", "Slowest timed phases against the mean of both no-balloon runs (guest/phase kind: ratio):", ""]
            out += [f"- {r['policy']}: " + ", ".join(f"g{x['guest']}/{x['phase']} {x['kind']} {x['ratio']}" for x in r["slowest_phases"])
                    for r in slow]
        if c.get("repeated"):
            out += ["", f"All {c['repeat']} rounds together (`--repeat {c['repeat']}`): host memory, seconds over the budget and "
                    "PSI the mean of the policy's runs [range]; run time per timed phase the median of its runs over the median "
                    "of every no-balloon run's; reaction times pooled; for the no-balloon runs, each one's p99 against the "
                    "median of the others (what one run shows with no balloon at all):", "",
                    "| policy | runs | host mean | s over budget | run time p50 / p99 (phases) | OOM kills | PSI some | reaction p99 (episodes) |",
                    "|---|---|---|---|---|---|---|---|"]
            for r in c["repeated"]:
                runtime = (f"noise: {', '.join(str(x) for x in r['noise_p99_each'])}" if "noise_p99_each" in r
                           else f"{r.get('runtime_ratio_p50')} / {r.get('runtime_ratio_p99')} ({r.get('timed_phases')})")
                out.append(f"| {r['policy']} | {r['runs']} | {r['host_mean_mib']} MiB {r['host_mean_mib_range']} | "
                           f"{r['seconds_over_budget']} {r['seconds_over_budget_range']} | {runtime} | {r['oom_kills']} | "
                           f"{r['psi_some_total_s']} s | {r['reaction_p99_s']} s ({r['reactions']}) |")
            slow = [r for r in c["repeated"] if r.get("slowest_phases")]
            out += ["", "Slowest timed phases, medians (guest/phase kind: ratio):", ""]
            out += [f"- {r['policy']}: " + ", ".join(f"g{x['guest']}/{x['phase']} {x['kind']} {x['ratio']}" for x in r["slowest_phases"])
                    for r in slow]
        causes = [r for r in c["rows"] if r.get("over_budget_causes")]
        if causes:
            out += ["", "Seconds over the budget by cause (`targets`: the guests' targets, met, would not have been enough; "
                    "otherwise the reason behind most of the guests' shortfall from their targets, e.g. `pressure`: a guest's "
                    "quiet period after pressure):", ""]
            out += [f"- {r['policy']}: " + ", ".join(f"{k} {v}" for k, v in r["over_budget_causes"].items()) for r in causes]
        turned = [r for r in (c.get("repeated") or c["rows"]) if r.get("reversals") is not None]
        if turned:
            out += ["", "Target reversals: a guest's target lowered and raised again within 5 s (as sampled every 0.5 s), "
                    "and of those, falls that were auto's give-back for pressure and falls that were its hold for a neighbour's "
                    "burst" + (" (mean of the runs)" if c.get("repeated") else "") + ":", ""]
            out += [f"- {r['policy']}: {r['reversals']} ({r['pressure_reversals']} after pressure"
                    + (f", {r['hold_reversals']} after a burst hold" if r.get("hold_reversals") is not None else "") + ")" for r in turned]
        out += bursts_markdown(c.get("bursts") or {})
        out += ["", "| goal | met | figure |", "|---|---|---|"] + [f"| {g} | {'pass' if ok else 'FAIL'} | {v} |" for g, ok, v in c["goals"]]
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["scale", "compare", "all", "merge"])
    ap.add_argument("files", nargs="*", help="merge: a scale run's and a compare run's results-host.json")
    ap.add_argument("--guests", type=int, default=1000)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--scale-modes", default="auto,manual", help="agent modes to measure at scale (goals: the first)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--initramfs")
    ap.add_argument("--policies", default="none,proxmox,mom,auto,none-again",
                    help="none-again: the no-balloon run once more, the run times' noise")
    ap.add_argument("--phases", type=int, default=8, help="active phases per guest, each followed by 20-40 s idle")
    ap.add_argument("--vms", type=int, default=3, help="guests (3 for the issue's figures; fewer for a smoke run)")
    ap.add_argument("--guest-cpu", default=DEFAULT_CPU, metavar="MODEL",
                    help="the guests' QEMU -cpu model; max,erms=off: TCG zeroes pages 8 bytes an iteration, not 1 (bench/vm.sh)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run the policy list this many times over (none, auto, none, auto, ...): medians per phase")
    ap.add_argument("--from-runs", metavar="PATH",
                    help="compare: summarize a finished run's compare-runs.json again instead of running guests")
    ap.add_argument("--out-dir", default=os.path.join(ROOT, "bench"))
    a = ap.parse_args()
    # A summary of saved runs (--from-runs) starts no agent.
    results: dict = {"provenance": provenance(hostd=not a.from_runs)}
    if a.what == "merge":
        if len(a.files) != 2:
            ap.error("merge takes two files: a scale run's results-host.json, then a compare run's")
        sc, co = (json.load(open(f)) for f in a.files)
        results = {"provenance": sc["provenance"], "scale": sc["scale"],
                   "compare_provenance": co["provenance"], "compare": co["compare"]}
    # Made before the runs: a missing directory must not lose 45 minutes of them.
    os.makedirs(a.out_dir, exist_ok=True)
    if a.what in ("scale", "all"):
        results["scale"] = scale(a)
    if a.what in ("compare", "all"):
        if not a.initramfs and not a.from_runs:
            ap.error("compare needs --initramfs (scripts/build-vm-artifacts.sh)")
        results["compare"] = host_compare.compare(a)
        if a.from_runs:  # the header's commit and date are this summary's, not the runs'
            results["provenance"]["note"] = " ".join(x for x in (
                f"Summarized again from {a.from_runs} (`--from-runs`): the runs are those of an earlier compare, whose "
                "commit and date are not the ones above.", results["provenance"]["note"]) if x)
    write_results(a.out_dir, "results-host", results, markdown(results))
    goals = results.get("scale", {}).get("goals", []) + results.get("compare", {}).get("goals", [])
    return 0 if all(ok for _, ok, _ in goals) else 1


if __name__ == "__main__":
    import guest

    guest.exit_on_sigterm()
    sys.exit(main())
