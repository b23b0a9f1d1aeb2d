#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""What an idle guest's QEMU spends on the CPU under balloon-hostd, and what a client
polling the agent adds to it: one TCG guest (1 GiB, RAM in a shared file), balloond inside,
the agent in `manual` mode (no policy moves), windows of `--seconds` each, alternating:
- no client;
- `list-guests` twice a second (the agent answers from what it already knows);
- `list-guests` and a `query` forwarded to the guest twice a second (what bench/host.py
  compare sampled before `list-guests` carried `held`);
first with an empty balloon, then with a 400 MiB one, and last with balloond stopped.

Why: three TCG guests share this machine's two cores, and an instant burst's run time is
judged against no balloon at all; whatever the harness asks of a guest is CPU the balloon
is charged for. Figures are QEMU's utime+stime as a share of one core (and the agent's);
the machine is shared, so each setting runs `--rounds` times, interleaved.

Usage: bench/host_idle.py --initramfs PATH [--seconds 20] [--rounds 2] [--out-dir bench]
Writes results-host-idle.{json,md}."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "vm"))
from hostlib import MiB, ROOT, Control, hostd_config, log, proc_cpu_ticks, provenance, start_hostd, stop, wait_connected, write_results  # noqa: E402
from host_guest import VMGuest  # noqa: E402

CLIENTS = ("none", "list-guests", "list-guests+query")


def measure(guest: VMGuest, hostd, control: str, client: str, seconds: float) -> dict:
    """QEMU's and the agent's CPU over one window with `client` polling every 0.5 s. Fresh
    connections each window: the agent drops a client silent for 10 s."""
    lister = Control(control) if client != "none" else None
    query = None
    if client == "list-guests+query":
        query = Control(control)
        query.call("select-guest", {"name": "g0"})
    try:
        t0, q0, h0 = time.monotonic(), guest.qemu_sample()[0], proc_cpu_ticks(hostd.pid)
        while time.monotonic() - t0 < seconds:
            if lister:
                lister.call("list-guests", timeout=5)
            if query:
                query.call("query", timeout=5)
            time.sleep(0.5)
        dt = time.monotonic() - t0
        return {"qemu_pct": round((guest.qemu_sample()[0] - q0) / dt, 2),
                "agent_pct": round((proc_cpu_ticks(hostd.pid) - h0) / dt, 2)}
    finally:
        for c in (lister, query):
            if c:
                c.close()


def set_target(control: str, target: int) -> None:
    c = Control(control)
    try:
        c.call("select-guest", {"name": "g0"})
        c.call("set-target", {"target": target})
    finally:
        c.close()


def run(a) -> dict:
    prov = provenance()  # the load average before the guest boots
    guest = VMGuest("idle0", a.initramfs, balloond=True)
    tmp = tempfile.mkdtemp(prefix="bench-host-idle-")
    hostd = None
    rows: list[dict] = []
    try:
        conf = hostd_config(tmp, "manual", 2048 * MiB, None)
        with open(os.path.join(tmp, "guests.d", "g0.conf"), "w") as f:
            f.write(f"[Guest]\nChannel=unix:{guest.port}\nMemoryBackend={guest.ram_file}\nRamSize=1G\nMin=256M\nMax=1G\n")
        hostd = start_hostd(conf, os.path.join(tmp, "hostd.log"))
        control = os.path.join(tmp, "control")
        ctl = Control(control)
        up = wait_connected(ctl, 1, 120)
        ctl.close()
        if not up:
            raise RuntimeError("the guest never connected to the agent")
        for balloon in (0, 400 * MiB):
            set_target(control, balloon)
            time.sleep(15)  # inflated, and the guest's own settling after it
            for r in range(a.rounds):
                for client in CLIENTS:
                    m = measure(guest, hostd, control, client, a.seconds)
                    log(f"balloon {balloon // MiB} MiB, {client}: {m}")
                    rows.append({"balloon_mib": balloon // MiB, "client": client, "round": r, **m})
        set_target(control, 0)
        time.sleep(5)
        guest.sh("kill $(cat /tmp/balloond.pid)")
        time.sleep(5)
        for r in range(a.rounds):
            m = measure(guest, hostd, control, "none", a.seconds)
            rows.append({"balloon_mib": None, "client": "none (balloond stopped)", "round": r, **m})
    finally:
        stop(hostd)
        guest.stop()
    return {"provenance": prov, "seconds": a.seconds, "rounds": a.rounds, "rows": rows}


def markdown(result: dict) -> str:
    p = result["provenance"]
    out = ["# bench/host_idle.py: an idle guest's QEMU under balloon-hostd, and what polling the agent adds", "",
           f"Commit {p['commit']}, {p['date']}, {p['host_cpus']} CPUs ({p['host_cpu_model']}), load average at start "
           f"{p['load_average_at_start'][0]:.2f}. One TCG guest of 1 GiB, agent in `manual` mode; windows of "
           f"{result['seconds']} s, {result['rounds']} rounds interleaved; a client polls every 0.5 s.", "",
           "| balloon | client | QEMU % of a core (per round) | agent % of a core (per round) |", "|---|---|---|---|"]
    keys: list[tuple] = []
    for r in result["rows"]:
        k = (r["balloon_mib"], r["client"])
        if k not in keys:
            keys.append(k)
    for balloon, client in keys:
        rs = [r for r in result["rows"] if (r["balloon_mib"], r["client"]) == (balloon, client)]
        size = "balloond stopped" if balloon is None else f"{balloon} MiB"
        out.append(f"| {size} | {client} | " + ", ".join(str(r["qemu_pct"]) for r in rs) + " | "
                   + ", ".join(str(r["agent_pct"]) for r in rs) + " |")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--initramfs", required=True)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out-dir", default=os.path.join(ROOT, "bench"))
    a = ap.parse_args()
    result = run(a)
    write_results(a.out_dir, "results-host-idle", result, markdown(result))


if __name__ == "__main__":
    main()
