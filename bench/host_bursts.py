# SPDX-License-Identifier: Apache-2.0
"""bench/host.py compare: where an instant burst's time went (a diagnostic, not a figure).

Three TCG guests share two cores, so a burst runs at the speed of what its QEMU gets of
them. For each burst, from the run's samples (each QEMU's and the agent's CPU ticks, every
guest's balloon every 0.5 s): the burst's own QEMU CPU, the neighbours' QEMU CPU and
the agent's over the burst, the neighbours' active phases that overlapped it, and how
far each neighbour's balloon moved meanwhile (inflating costs a TCG guest CPU: it
reclaims page cache and zeroes every page it locks). A burst's phase times are the
guest's own clock placed on the samples' clock by the end of its first idle phase, so
they are good to about a sample (0.5 s). Runs since the guest's ticks are recorded
(host_compare.guest_cpu) also split the guest's side: its user, system and irq time, the
CPU of balloond's tree (itself and its holders, live or reaped), how much reclaim
scanned and stole, and (since the guests count them) its THP faults and fallbacks and
(since they record it) the guest's AnonHugePages at the burst's start, about the balloon's share
of huge pages; runs that sampled QEMU's system time and minor faults show the host's kernel
work for the burst's QEMU (faulting in RAM file holes the guest touches again).
The guest's ticks count wall time while its vCPU is descheduled too, so they give its
split, not host CPU."""

from __future__ import annotations

import bisect

from hostlib import CLK_TCK, MiB


def _at(samples: list[dict], ts: list[float], t: float, key) -> float:
    """`key(sample)` at time t, interpolated between the samples around it (`ts`: their times)."""
    k = bisect.bisect_left(ts, t)
    if k <= 0:
        return key(samples[0])
    if k >= len(samples):
        return key(samples[-1])
    a, b = samples[k - 1], samples[k]
    f = (t - a["t"]) / (b["t"] - a["t"]) if b["t"] > a["t"] else 0.0
    return key(a) + f * (key(b) - key(a))


def phase_windows(run: dict) -> list[tuple[int, dict, float, float]]:
    """(guest, phase, start, end) on the samples' clock for every active phase with a result."""
    out = []
    for g, phases in enumerate(run["phases"]):
        active = [p for p in phases if p.get("w", {}).get("start-us")]
        if not phases or not active:
            continue
        # The schedule starts with an idle phase at about t=0: the first active phase starts when it ends.
        t0, base = phases[0]["seconds"], active[0]["w"]["start-us"]
        for p in active:
            start = t0 + (p["w"]["start-us"] - base) / 1e6
            out.append((g, p, start, start + p["seconds"]))
    return out


def _balloon(name: str):
    return lambda s: float((s.get("guests", {}).get(name) or {}).get("actual") or 0)


def bursts(run: dict) -> list[dict]:
    """Per burst of the run: its time and where the two cores went meanwhile (module doc)."""
    samples = run["samples"]
    if not samples or "cpu" not in samples[0]:
        return []
    ts = [s["t"] for s in samples]
    windows = phase_windows(run)
    guests = len(run["phases"])
    out = []
    for g, p, start, end in windows:
        if p["kind"] != "burst" or p["rc"] != 0:
            continue

        def cpu(i: int) -> float:
            return (_at(samples, ts, end, lambda s: s["cpu"][i]) - _at(samples, ts, start, lambda s: s["cpu"][i])) / CLK_TCK

        def host(i: int, k: int) -> float:
            return _at(samples, ts, end, lambda s: s["qemu"][i][k]) - _at(samples, ts, start, lambda s: s["qemu"][i][k])

        neighbours = []
        for j in range(guests):
            if j == g:
                continue
            kinds = sorted({q["kind"] for h, q, s, e in windows if h == j and s < end and e > start})
            moved = _at(samples, ts, end, _balloon(f"g{j}")) - _at(samples, ts, start, _balloon(f"g{j}"))
            neighbours.append({"guest": j, "phases": kinds, "cpu_s": round(cpu(j), 2), "balloon_mib": round(moved / MiB)})
        out.append({
            "guest": g, "phase": p["phase"], "seconds": round(p["seconds"], 2),
            "own_cpu_s": round(cpu(g), 2),
            "neighbours_cpu_s": round(sum(n["cpu_s"] for n in neighbours), 2),
            "agent_cpu_s": round(cpu(guests), 2) if len(samples[0]["cpu"]) > guests else None,
            "balloon_at_start_mib": round(_at(samples, ts, start, _balloon(f"g{g}")) / MiB),
            # The host's kernel work for the burst's QEMU (runs that sampled it): system time, faults.
            "own_system_s": round(host(g, 0) / CLK_TCK, 2) if "qemu" in samples[0] else None,
            "own_faults_k": round(host(g, 1) / 1000, 1) if "qemu" in samples[0] else None,
            # The guest's own split (runs since the guest-side tick counts): user, system, balloond.
            "guest_cpu": p.get("cpu") or None,
            "neighbours": neighbours,
        })
    return out


def markdown(per_run: dict[str, list[dict]]) -> list[str]:
    """The report's section from `bursts` of each run: one line per burst and run, the bursts in schedule order."""
    per = {name: {(b["guest"], b["phase"]): b for b in found} for name, found in per_run.items()}
    keys = sorted({k for v in per.values() for k in v})
    if not keys:
        return []
    out = ["", "Bursts, where the time went (not a figure: CPU seconds over the burst of its own QEMU, "
           "of the neighbours' QEMUs and of the agent, on two cores; each neighbour's active phases "
           "meanwhile and how far its balloon moved, + inflating; the balloon the burst started with):", ""]
    for g, i in keys:
        out.append(f"- g{g}/{i}:")
        for name, v in per.items():
            b = v.get((g, i))
            if not b:
                continue
            nb = ", ".join(f"g{n['guest']} [{','.join(n['phases']) or 'idle'}] {n['cpu_s']} s {n['balloon_mib']:+d} MiB"
                           for n in b["neighbours"])
            agent = f", agent {b['agent_cpu_s']} s" if b["agent_cpu_s"] is not None else ""
            gc = b.get("guest_cpu")
            inside = (f"; in the guest user {gc['user_s']} s, system {gc['system_s']} s, irq {gc['irq_s']} s, "
                      f"balloond {gc['balloond_s']} s") if gc else ""
            if gc and "scanned_mib" in gc:
                inside += f", reclaim scanned {gc['scanned_mib']} MiB, stole {gc['stolen_mib']} MiB"
            if gc and "thp_faults" in gc:
                inside += f", THP faults {gc['thp_faults']} / fallbacks {gc['thp_fallbacks']}"
            if gc and "anon_huge_start_mib" in gc:
                inside += f", anonymous huge pages at the start {gc['anon_huge_start_mib']} MiB"
            hs = (f", of it host kernel {b['own_system_s']} s, {b['own_faults_k']}k faults"
                  if b.get("own_system_s") is not None else "")
            out.append(f"  - {name}: {b['seconds']} s; own {b['own_cpu_s']} s{hs} (balloon {b['balloon_at_start_mib']} MiB), "
                       f"neighbours {b['neighbours_cpu_s']} s ({nb}){agent}{inside}")
    return out
