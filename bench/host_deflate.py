#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""What a burst's give-back costs besides the burst: one guest alone, its balloon held at half its
MemTotal by balloon-hostd (`Mode=manual`, agent defaults: `PopulateOnDeflate=below-target`, the
memory mapped into QEMU when the agent may), then a `workload instant` of 60% of its RAM, which
balloond answers by giving the balloon back in steps. Per burst: the deflate steps (balloond's
"gave back" lines), the CPU of balloond's tree (itself and its holders) in the guest, the agent's
CPU on the host, QEMU's CPU and the burst's run time. Each `--variant` is a set of guest
balloond.conf keys (`Section.Key=Value`, comma-separated); variants alternate within each round.
With `--perf DIR`, `perf record -e cpu-clock -g` follows the agent over each burst, and the
report gives the share of its samples in allocating the RAM file (`BackingFile.allocate`: fallocate)
and in mapping it into QEMU (`Prefaulter.prefault`: process_vm_readv), and its top kernel symbols.

Why: in `make bench-host` three TCG guests share two cores, so whatever the agent and balloond
spend while a burst runs is CPU the burst does not get (docs/policy-bench.md, session 38).
Not a figure of issue 11's goals: a diagnostic of where the give-back's CPU goes.

BENCH_RAM_DIR=DIR puts the guest's RAM file in DIR instead of /dev/shm (bench/host_guest.py).
`--empty NAME` holds no balloon for variant NAME: the same burst with nothing to take back, the
baseline its QEMU CPU and run time compare with. `--huge NAME` runs variant NAME's guest with its RAM file on a tmpfs of the script's own mounted
with huge=within_size (2 MiB host pages, as `make bench-free --ram-hugepages`): what the agent
pays when the host backs guest RAM with huge pages. `--agent NAME=PATH` gives variant NAME
another balloon-hostd binary (another build), so two builds of the agent alternate in one run.
`--hog N` runs N busy loops on the host over each burst, a stand-in for the busy neighbours of
`make bench-host`: with one, the burst's QEMU, the loop and the agent share the two cores.

Usage: bench/host_deflate.py --initramfs PATH [--rounds 2] [--variant NAME=KEYS ...] [--empty NAME]
       [--huge NAME] [--agent NAME=PATH] [--hog N] [--perf DIR] [--out-dir bench]
Writes results-host-deflate.{json,md}."""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "vm"))
from hostlib import CLK_TCK, MiB, interleaved, log, proc_cpu_ticks, provenance, provenance_sentence, stop, write_results  # noqa: E402
from host_burst import hold_balloon, warm_up  # noqa: E402
from host_guest import BALLOOND_TREE_TICKS, VMGuest  # noqa: E402

TREE = "p=$(cat /tmp/balloond.pid); " + BALLOOND_TREE_TICKS
STEPS = "grep -c 'gave back' /tmp/balloond.log || true"


def perf_summary(data: str) -> dict:
    """Shares of the agent's samples: allocating, mapping into QEMU, and the top kernel symbols."""
    def report(*extra: str) -> str:
        return subprocess.run(["perf", "report", "-i", data, "--stdio", "--sort", "sym", "-g", "none", *extra],
                              capture_output=True, text=True).stdout
    share = {}
    for line in report("--children").splitlines():
        m = re.match(r"\s*([\d.]+)%\s+[\d.]+%\s+\[\.\]\s+(\S+)", line)
        if not m:
            continue
        for key, pattern in (("allocate", "BackingFile.*allocate"), ("prefault", "Prefaulter.*prefault")):
            if re.search(pattern, m.group(2)) and key not in share:
                share[key] = float(m.group(1))
    top = []
    for line in report("--no-children").splitlines():
        m = re.match(r"\s*([\d.]+)%\s+\[k\]\s+(\S+)", line)
        if m and len(top) < 4:
            top.append([m.group(2), float(m.group(1))])
    return {"allocate_pct": share.get("allocate", 0.0), "prefault_pct": share.get("prefault", 0.0), "top_kernel": top}


def one(a, name: str, keys: list[str], k: int, ram_dir: str | None = None) -> dict:
    g = VMGuest(f"defl{k}{name[:3]}", a.initramfs, balloond=True, balloond_keys=keys, ram_dir=ram_dir)
    hostd = None
    try:
        total = warm_up(g)
        # An --empty variant's agent holds no balloon: the same burst with nothing to take back.
        held = 0 if name in a.empty else total // 2 // 4096 * 4096
        hostd, _, balloon = hold_balloon(g, tempfile.mkdtemp(prefix="bench-host-deflate-"), held, a.agent.get(name))
        perf, data = None, None
        if a.perf:
            os.makedirs(a.perf, exist_ok=True)
            data = os.path.join(a.perf, f"agent-{name}-{k}.data")
            perf = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-g", "-p", str(hostd.pid), "-o", data],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        steps0, tree0, agent0, (qemu0, _) = int(g.sh(STEPS).strip() or 0), int(g.sh(TREE).strip()), proc_cpu_ticks(hostd.pid), g.qemu_sample()
        hogs = [subprocess.Popen(["sh", "-c", "while :; do :; done"]) for _ in range(a.hog)]
        try:
            out = g.sh(f"workload instant {total * 60 // 100 // MiB}")
        finally:
            for h in hogs:
                stop(h)
        # The agent allocates and maps what came back after the burst's last step too: give it
        # until balloond's tree is read again (a guest round trip) before reading its CPU.
        tree1 = int(g.sh(TREE).strip())
        (qemu1, _), agent1, steps1 = g.qemu_sample(), proc_cpu_ticks(hostd.pid), int(g.sh(STEPS).strip() or 0)
        if perf:
            perf.send_signal(signal.SIGINT)
            perf.wait(60)
        fields = dict(x.split("=", 1) for x in out.split() if "=" in x)
        r = {"variant": name, "round": k + 1, "ram_dir": os.path.dirname(g.ram_file),
             "balloon_mib": round(balloon / MiB), "steps": steps1 - steps0,
             "balloond_s": (tree1 - tree0) / 100, "agent_s": (agent1 - agent0) / CLK_TCK,
             "qemu_s": (qemu1 - qemu0) / CLK_TCK, "seconds": int(fields["runtime-ms"]) / 1000}
        if data:
            r["perf"] = perf_summary(data)
        return r
    finally:
        stop(hostd)
        g.stop()


def markdown(r: dict) -> str:
    p = r["provenance"]
    out = ["# What a burst's give-back costs besides the burst (`bench/host_deflate.py`)", "",
           f"{provenance_sentence(p)} One 1 GiB TCG guest at a time, "
           + (f"beside {r['hogs']} busy loop(s) on the host over each burst; its " if r.get("hogs") else "alone; its ")
           + "balloon held at half its MemTotal by balloon-hostd (manual, agent defaults; none for an `--empty` variant), then an instant burst of 60% of "
           "its RAM. A diagnostic, not a goal: definitions in bench/host_deflate.py.", "",
           f"Command: `{r['command']}`", "",
           "| variant | round | balloon | deflate steps | balloond CPU | agent CPU | QEMU CPU | burst run time | agent: allocating / mapping into QEMU | agent's top kernel symbols |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for b in r["bursts"]:
        pf = b.get("perf")
        shares = f"{pf['allocate_pct']:.0f}% / {pf['prefault_pct']:.0f}%" if pf else "-"
        top = ", ".join(f"{s} {v:.0f}%" for s, v in pf["top_kernel"]) if pf else "-"
        out.append(f"| {b['variant']} | {b['round']} | {b['balloon_mib']} MiB | {b['steps']} | {b['balloond_s']:.2f} s | "
                   f"{b['agent_s']:.2f} s | {b['qemu_s']:.2f} s | {b['seconds']:.3f} s | {shares} | {top} |")
    out += ["", "Medians per variant:", ""]
    for name in r["variants"]:
        bs = [b for b in r["bursts"] if b["variant"] == name]
        med = {k: statistics.median(b[k] for b in bs) for k in ("steps", "balloond_s", "agent_s", "qemu_s", "seconds")}
        notes = (", RAM file on a huge=within_size tmpfs" if name in r.get("huge", []) else "") + \
            (", no balloon held" if name in r.get("empty", []) else "") + \
            (f", agent {r['agents'][name]}" if name in r.get("agents", {}) else "")
        out.append(f"- {name} (`{','.join(r['variants'][name]) or 'defaults'}`{notes}): {med['steps']:g} steps, balloond "
                   f"{med['balloond_s']:.2f} s, agent {med['agent_s']:.2f} s, QEMU {med['qemu_s']:.2f} s, burst {med['seconds']:.3f} s")
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--initramfs", required=True)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--variant", action="append", default=[],
                    help="NAME=Section.Key=Value,...: guest balloond keys (default: defaults, and FloorMargin=256M)")
    ap.add_argument("--empty", action="append", default=[],
                    help="NAME: that variant holds no balloon (the burst's baseline)")
    ap.add_argument("--huge", action="append", default=[],
                    help="NAME: that variant's RAM file on a tmpfs mounted with huge=within_size")
    ap.add_argument("--agent", action="append", default=[],
                    help="NAME=PATH: that variant's balloon-hostd binary")
    ap.add_argument("--hog", type=int, default=0, help="busy loops on the host over each burst")
    ap.add_argument("--perf", help="a directory for perf profiles of the agent over each burst")
    ap.add_argument("--out-dir", default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench"))
    a = ap.parse_args()
    variants = {"default": [], "margin256": ["Pressure.FloorMargin=256M"]}
    if a.variant:
        variants = {}
        for v in a.variant:
            name, _, keys = v.partition("=")
            variants[name] = [k for k in keys.split(",") if k]
    a.agent = dict(v.partition("=")[::2] for v in a.agent)
    unknown = [n for n in a.huge + a.empty + list(a.agent) if n not in variants]
    if unknown:
        ap.error(f"--huge/--empty/--agent name no variant: {', '.join(unknown)}")
    missing = [p for p in a.agent.values() if not os.access(p, os.X_OK)]
    if missing:
        ap.error(f"--agent: no executable at {', '.join(missing)}")
    mounted = None
    if a.huge:
        mounted = tempfile.mkdtemp(prefix="bench-host-deflate-ram-")
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2G,huge=within_size", "tmpfs", mounted], check=True)
    bursts = []
    try:
        for k, name in interleaved(a.rounds, list(variants)):
            b = one(a, name, variants[name], k, mounted if name in a.huge else None)
            log(f"round {k + 1} {name}: {b}")
            bursts.append(b)
    finally:
        if mounted:
            subprocess.run(["umount", mounted], check=False)
            os.rmdir(mounted)
    r = {"provenance": provenance(), "command": " ".join(["bench/host_deflate.py"] + sys.argv[1:]),
         "variants": variants, "hogs": a.hog, "huge": a.huge, "empty": a.empty, "agents": a.agent, "bursts": bursts}
    write_results(a.out_dir, "results-host-deflate", r, markdown(r))
    return 0


if __name__ == "__main__":
    import guest

    guest.exit_on_sigterm()
    sys.exit(main())
