#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""make bench-host-burst: what a balloon costs one guest's instant burst, alone or beside busy guests.

Usage: bench/host_burst.py --initramfs PATH [--rounds 3] [--history fresh|thrash] [--neighbours N]
       [--balloond Section.Key=Value ...] [--guest-cpu MODEL] [--out-dir bench]

`make bench-host`'s run-time goal (issue 11) is missed on its instant bursts, where three TCG
guests share two cores. This bench takes the neighbours away: one fresh 1 GiB guest at a time
(RAM in a shared file, as there) that has run a while (one warm-up burst of 70% of its RAM,
so the host has allocated its whole RAM file), its page cache filled from its disk, then a
`workload instant` of 60% of RAM, either with no balloon (no balloond, no agent) or with a
balloon of half its MemTotal held by balloon-hostd (`Mode=manual`, the guest's target set
through the agent's control socket, the agent's defaults otherwise: frames punched,
`PopulateOnDeflate=below-target`). The balloon stops where the guest's MemAvailable floor
stops it. The two kinds alternate, the first of each round swapping, so drift on this shared
machine falls on both. Per burst: its run time (the workload's own clock), its QEMU's CPU
(utime+stime) and minor faults on the host (RAM file holes the guest touched again), and the
guest's THP faults and fallbacks. The figure is the median run time with the balloon over the
median without; the line it is held to is the compare's, 1.1x.
`--history thrash` runs a 12 s page-cache thrash of the guest's cache file first (in both kinds), which
gives the balloon back; the burst waits until balloond has rebuilt it from cold page cache, as
guests in the compare do after their cache phases (AnonHugePages shows how much of it is huge pages).
`--neighbours N` boots N more guests (no balloon) for the whole run, each spinning its vCPU in a
shell loop, so the burst shares the host's cores as in the compare, where its neighbours' QEMUs
took about one core between them during a burst: whether a balloon costs a burst more when the
host's cores are busy, with nothing else of the compare's (no policy, no neighbour inflating).
`--balloond Section.Key=Value` (repeatable) sets a key of the ballooned guest's balloond.conf, as
the compare's `auto+Section.Key=Value` arms do, e.g. `Balloon.TransparentHugePages=no` for a balloon
of 4 KiB pages. `--guest-cpu MODEL` sets the guests' QEMU `-cpu` model, as the compare's does (e.g.
`max,erms=off`: the guest zeroes pages several times faster, so a burst takes about a second).
Writes results-host-burst[-thrash][-neighboursN][-key-value...].{json,md}; exits 1 when the ratio is over 1.1.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

from hostlib import CLK_TCK, MiB, Control, hostd_config, interleaved, log, provenance, provenance_sentence, start_hostd, stop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "vm"))

from host_guest import DEFAULT_CPU, VMGuest  # noqa: E402  (needs tests/vm on the path)

VMSTAT = "awk '/^(thp_fault_alloc|thp_fault_fallback) /{printf \"%s %s\\n\", $1, $2}' /proc/vmstat"


def vmstat(g: VMGuest) -> dict:
    return {k: int(v) for k, v in (line.split() for line in g.sh(VMSTAT).splitlines())}


def mem_total(g: VMGuest) -> int:
    return int(g.sh("awk '/^MemTotal:/ {print $2}' /proc/meminfo").strip()) * 1024


def hold_balloon(g: VMGuest, tmp: str, target: int, hostd_binary: str | None = None) -> tuple[object, Control, int]:
    """balloon-hostd (`hostd_binary`, else the default build) for this one guest (manual) with
    `target`; returns once the balloon stopped moving (the target, or where the guest's floor
    stopped it)."""
    conf = hostd_config(tmp, "manual", 2048 * MiB, None)
    with open(os.path.join(tmp, "guests.d", "g0.conf"), "w") as f:
        f.write(f"[Guest]\nChannel=unix:{g.port}\nMemoryBackend={g.ram_file}\nRamSize=1G\nMin=256M\nMax=1G\n")
    hostd = start_hostd(conf, os.path.join(tmp, "hostd.log"), hostd_binary)
    try:
        ctl = Control(os.path.join(tmp, "control"))
        return hostd, ctl, settle(ctl, target)
    except BaseException:
        stop(hostd)
        raise


def settle(ctl: Control, target: int) -> int:
    """Sets the guest's target; returns the balloon once it settled."""
    deadline = time.monotonic() + 120
    while True:  # the agent connects to the guest on its own schedule
        ctl.call("select-guest", {"name": "g0"})
        try:
            ctl.call("set-target", {"target": target})
            break
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    # Locking a chunk can take seconds on a TCG vCPU: done is the target, or the guest's floor
    # named as the reason (its query's) and the balloon still for three seconds.
    last, still = -1, 0
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        q = ctl.call("query")
        actual = q.get("actual", 0)
        still = still + 1 if actual == last else 0
        last = actual
        if actual >= target or ((q.get("reason") or {}).get("code") == "mem-available-floor" and still >= 3):
            return actual
        time.sleep(1)
    raise RuntimeError(f"the balloon did not settle in 300 s: {last / MiB:.1f} of {target / MiB:.1f} MiB")


def warm_up(g: VMGuest) -> int:
    """A guest that has run a while, as in the compare: its RAM touched once (the host has
    allocated the whole RAM file, and TCG has translated the workload), then page cache.
    Returns its MemTotal."""
    total = mem_total(g)
    g.sh(f"workload instant {total * 70 // 100 // MiB} >/dev/null")
    g.sh("cat /mnt/disk/cache > /dev/null")
    return total


def spinner(a, k: int) -> VMGuest:
    """A neighbour that keeps one host core busy: its vCPU spins in a shell loop until stopped."""
    g = VMGuest(f"spin{k}", a.initramfs, balloond=False, cpu=a.guest_cpu)
    g.sh("sh -c 'while :; do :; done' >/dev/null 2>&1 &")
    return g


def one_burst(a, kind: str, neighbours: list[VMGuest]) -> dict:
    """A fresh guest, warmed up and its cache filled, then a burst, with or without a balloon."""
    g = VMGuest(f"burst{kind[:1]}", a.initramfs, balloond=(kind == "balloon"), balloond_keys=a.balloond, cpu=a.guest_cpu)
    hostd = None
    try:
        total = warm_up(g)
        half = total // 2 // 4096 * 4096
        balloon, low = 0, None
        if kind == "balloon":
            hostd, ctl, balloon = hold_balloon(g, tempfile.mkdtemp(prefix="bench-host-burst-"), half)
        if a.history == "thrash":
            # As a guest in the compare: a thrash gives the balloon back (PSI), and balloond
            # rebuilds it from cold page cache during its quiet period (RegrowColdCache=).
            g.sh("workload thrash /mnt/disk/cache 12")
            if kind == "balloon":
                low = ctl.call("query").get("actual", 0)
                balloon = settle(ctl, half)
        huge = int(g.sh("awk '/^AnonHugePages:/ {print $2}' /proc/meminfo").strip()) * 1024
        size = total * 60 // 100 // MiB
        v0, (cpu0, (_, minflt0)) = vmstat(g), g.qemu_sample()
        others0 = sum(n.qemu_sample()[0] for n in neighbours)
        out = g.sh(f"workload instant {size}")
        (cpu1, (_, minflt1)), v1 = g.qemu_sample(), vmstat(g)
        others1 = sum(n.qemu_sample()[0] for n in neighbours)
        fields = dict(x.split("=", 1) for x in out.split() if "=" in x)
        return {"kind": kind, "balloon_mib": round(balloon / MiB, 1), "huge_mib": round(huge / MiB, 1), "burst_mib": size,
                "after_thrash_mib": None if low is None else round(low / MiB, 1),
                "seconds": int(fields["runtime-ms"]) / 1000,
                "qemu_cpu_s": (cpu1 - cpu0) / CLK_TCK,
                "qemu_minflt": minflt1 - minflt0,
                "neighbours_cpu_s": (others1 - others0) / CLK_TCK,
                "thp_alloc": v1["thp_fault_alloc"] - v0["thp_fault_alloc"],
                "thp_fallback": v1["thp_fault_fallback"] - v0["thp_fault_fallback"]}
    finally:
        stop(hostd)
        g.stop()


def markdown(r: dict) -> str:
    p = r["provenance"]
    out = ["# One guest's burst with and without a balloon (`make bench-host-burst`)", "",
           f"{provenance_sentence(p)} One fresh 1 GiB TCG guest at a time (RAM in a shared file), warmed up by one "
           "burst of 70% of its RAM (the host has allocated its whole RAM file), its page "
           "cache filled from its disk, then a `workload instant` of 60% of RAM: with no "
           "balloon, or with a balloon of half its MemTotal held by balloon-hostd (`Mode=manual`, agent defaults; the "
           "guest's MemAvailable floor may stop it short). "
           + ("Beside busy neighbours (below)" if r.get("neighbours") else "No neighbours")
           + ": the per-guest part of `make bench-host`'s run-time goal. Definitions: bench/host_burst.py.", "",
           *([f"The ballooned guest's balloond.conf also sets {', '.join('`' + k + '`' for k in r['balloond'])} (`--balloond`).", ""]
             if r.get("balloond") else []),
           *([f"Neighbours: {r['neighbours']} more guests (no balloon) for the whole run, each spinning its vCPU in a "
              "shell loop, so the burst shares the host's two cores (`--neighbours`).", ""] if r.get("neighbours") else []),
           *(["History: a 12 s page-cache thrash before the burst (both kinds); with the balloon, the burst waits for "
              "balloond to rebuild it from cold page cache (`--history thrash`).", ""] if r.get("history") == "thrash" else []),
           *([f"The guests' QEMU runs `-cpu {r['guest_cpu']}` (`--guest-cpu`).", ""] if r.get("guest_cpu", DEFAULT_CPU) != DEFAULT_CPU else []),
           f"Command: `{r['command']}`", "",
           "| round | kind | balloon after the thrash | balloon (of it huge pages) | burst | run time | QEMU CPU | neighbours' QEMU CPU | host minor faults | THP faults / fallbacks |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    out += [f"| {b['round']} | {b['kind']} | {'-' if b.get('after_thrash_mib') is None else str(b['after_thrash_mib']) + ' MiB'} | {b['balloon_mib']} MiB ({b.get('huge_mib', '?')}) | {b['burst_mib']} MiB | {b['seconds']} s | "
            f"{b['qemu_cpu_s']} s | {str(b['neighbours_cpu_s']) + ' s' if r.get('neighbours') else '-'} | {b['qemu_minflt']} | {b['thp_alloc']} / {b['thp_fallback']} |" for b in r["bursts"]]
    out += ["", f"Median run time: no balloon {r['median_none']} s, balloon {r['median_balloon']} s; "
            f"ratio **{r['ratio']}** (line 1.1: {'pass' if r['ratio'] <= 1.1 else 'FAIL'})."]
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--initramfs", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--history", choices=["fresh", "thrash"], default="fresh",
                    help="thrash: a 12 s page-cache thrash before the burst, after which the balloon regrows")
    ap.add_argument("--neighbours", type=int, default=0, help="more guests spinning a vCPU each for the whole run")
    ap.add_argument("--balloond", action="append", default=[], metavar="Section.Key=Value",
                    help="a key of the ballooned guest's balloond.conf (repeatable)")
    ap.add_argument("--guest-cpu", default=DEFAULT_CPU, metavar="MODEL",
                    help="the guests' QEMU -cpu model, as bench/host.py compare's")
    ap.add_argument("--out-dir", default=os.path.join(ROOT, "bench"))
    a = ap.parse_args()
    os.makedirs(a.out_dir, exist_ok=True)
    bursts, neighbours = [], []
    try:
        for k in range(a.neighbours):
            neighbours.append(spinner(a, k))
        for k, kind in interleaved(a.rounds, ["none", "balloon"]):
            b = one_burst(a, kind, neighbours)
            b["round"] = k + 1
            log(f"round {k + 1} {kind}: {b}")
            bursts.append(b)
    finally:
        for n in neighbours:
            n.stop()
    med = {kind: statistics.median(b["seconds"] for b in bursts if b["kind"] == kind) for kind in ("none", "balloon")}
    r = {"provenance": provenance(), "history": a.history, "neighbours": a.neighbours, "balloond": a.balloond, "guest_cpu": a.guest_cpu, "command": " ".join(["bench/host_burst.py"] + sys.argv[1:]), "bursts": bursts,
         "median_none": med["none"], "median_balloon": med["balloon"], "ratio": round(med["balloon"] / med["none"], 3)}
    # Each setting its own name, so a run with other keys leaves the plain results alone.
    keys = "".join("-" + k.partition(".")[2].lower().replace("=", "-") for k in a.balloond)
    keys += f"-cpu-{a.guest_cpu.replace(',', '-').replace('=', '-')}" if a.guest_cpu != DEFAULT_CPU else ""
    stem = "results-host-burst" + ("" if a.history == "fresh" else f"-{a.history}") + (f"-neighbours{a.neighbours}" if a.neighbours else "") + keys
    with open(os.path.join(a.out_dir, stem + ".json"), "w") as f:
        json.dump(r, f, indent=1)
    md = markdown(r)
    with open(os.path.join(a.out_dir, stem + ".md"), "w") as f:
        f.write(md)
    print(md)
    return 0 if r["ratio"] <= 1.1 else 1


if __name__ == "__main__":
    import guest

    guest.exit_on_sigterm()
    sys.exit(main())
