# SPDX-License-Identifier: Apache-2.0
"""bench/host.py compare's figures from a run's samples and phases (bench/host_compare.py
says what each one means): host memory, run times against no balloon, reaction times,
seconds over the budget by cause."""

from __future__ import annotations

from hostlib import MiB, pct

TIMED = {"ramp", "burst", "loop"}  # phases whose run time is a measure (cache runs a fixed time)


def reactions(phases: list[list[dict]], mark: str = "psi-pressure-us") -> dict:
    """Per active phase that stalled (by `mark`) while the balloon held memory: memory back - stall (module doc)."""
    times: list[float] = []
    anticipated = missed = empty = calm_returns = 0
    for guest in phases:
        for r in guest:
            if r["kind"] == "idle":
                continue
            stall, drop, held_kb = r["w"].get(mark, 0), r["mw"].get("first-drop-us", 0), r["mw"].get("start-kb", 0)
            if not stall:
                calm_returns += 1 if drop else 0
                continue
            if held_kb < 1024:
                empty += 1
            elif not drop:
                missed += 1
                times.append(float("inf"))
            elif drop <= stall:
                anticipated += 1
                times.append(0.0)
            else:
                times.append((drop - stall) / 1e6)
    return {"times": times, "anticipated": anticipated, "missed": missed, "empty": empty, "returned_without_stall": calm_returns}


def weighted(samples: list[dict]) -> list[tuple[float, int]]:
    """(seconds the sample stands for, host bytes): the time to the next sample (the last one: the median gap)."""
    ts = [s["t"] for s in samples]
    gaps = [b - a for a, b in zip(ts, ts[1:])]
    last = sorted(gaps)[len(gaps) // 2] if gaps else 0.5
    return [(g, s["host"]) for g, s in zip(gaps + [last], samples)]


def over_budget_causes(samples: list[dict], budget: int) -> dict[str, float]:
    """Seconds over the budget by what kept the host there: `targets` when the
    guests' targets, met, would not have been enough; otherwise the reason
    (the guest's `query` reason code, else its state) of the largest part of
    the guests' shortfall (target above actual) at that sample."""
    causes: dict[str, float] = {}
    for (d, host), s in zip(weighted(samples), samples):
        if host <= budget:
            continue
        short: dict[str, int] = {}
        for g in s.get("guests", {}).values():
            t, act = g.get("target") or 0, g.get("actual") or 0
            if t > act:
                key = g.get("why") or g.get("state") or "?"
                short[key] = short.get(key, 0) + t - act
        cause = max(short, key=short.get) if sum(short.values()) >= host - budget else "targets"
        causes[cause] = round(causes.get(cause, 0.0) + d, 1)
    return dict(sorted(causes.items(), key=lambda kv: -kv[1]))


def reversals(samples: list[dict], window: float = 5.0) -> tuple[int, int, int]:
    """Targets that went down and up again within `window` s, the oscillation issue 11 rules
    out: (all of them, those whose fall was the fast path's give-back for pressure, the
    churn SpareStalledCache= is for, those whose fall was the burst yield's hold, which
    BurstLinger= and the hold's sparing of guest-held balloons are for). From the samples
    (every 0.5 s), so moves between two samples that cancel out are not seen."""
    count = pressure = hold = 0
    for name in samples[0].get("guests", {}) if samples else ():
        last, fell = None, None  # the previous target; (when, why) of the last fall
        for s in samples:
            g = s["guests"].get(name) or {}
            target = g.get("target")
            if target is None:
                continue
            reason = g.get("reason") or ""
            if last is not None and target < last:
                fell = (s["t"], "pressure" if "pressure" in reason else "hold" if "taking memory back at once" in reason else "")
            elif last is not None and target > last and fell and s["t"] - fell[0] <= window:
                count += 1
                pressure += fell[1] == "pressure"
                hold += fell[1] == "hold"
                fell = None
            last = target
    return count, pressure, hold


def runtime_ratios(run: dict, baselines: list[dict]) -> list[tuple[float, int, int, str]]:
    """(run time over the mean of the baselines' runs of the same phase, guest, phase, kind), timed phases only."""
    out = []
    for g, mine in enumerate(run["phases"]):
        for i, p in enumerate(mine):
            base = [b["phases"][g][i] for b in baselines if g < len(b["phases"]) and i < len(b["phases"][g])]
            if p["kind"] not in TIMED or p["rc"] != 0 or not base or any(b["rc"] != 0 or b["seconds"] <= 0 for b in base):
                continue
            out.append((p["seconds"] / (sum(b["seconds"] for b in base) / len(base)), g, p["phase"], p["kind"]))
    return out


def summarize(run: dict, baseline: dict | None, budget: int, again: dict | None = None) -> dict:
    w = weighted(run["samples"])
    span = sum(d for d, _ in w)
    ordered = sorted(w, key=lambda x: x[1])
    acc, p99 = 0.0, None
    for d, h in ordered:
        acc += d
        if acc >= 0.99 * span:
            p99 = h
            break
    ratios = [r for r, *_ in runtime_ratios(run, [baseline])] if baseline else []
    p99_runtime = pct(ratios, 99) if ratios else None
    # Not the goal's figure: against both no-balloon runs (none and none-again), whose bursts
    # differ by up to a fifth on this shared host; the slowest phases say where the time went.
    both = runtime_ratios(run, [baseline, again]) if baseline and again else []
    rx = reactions(run["phases"])
    r = rx["times"]
    any_stall = reactions(run["phases"], "psi-stall-us")["times"]
    turned, turned_pressure, turned_hold = reversals(run["samples"])
    return {
        "policy": run["policy"],
        "host_mean_mib": round(sum(d * h for d, h in w) / span / MiB, 1) if span else None,
        "host_p99_mib": round(p99 / MiB, 1) if p99 is not None else None,
        "seconds_over_budget": round(sum(d for d, h in w if h > budget), 1),
        "over_budget_causes": over_budget_causes(run["samples"], budget),
        "seconds": round(span, 1),
        "runtime_ratio_p50": round(pct(ratios, 50), 3) if ratios else None,
        "runtime_ratio_p99": round(p99_runtime, 3) if ratios else None,
        # Judged unrounded: a p99 a hair above 1.1 must not pass by its rounding.
        "runtime_ratio_p99_exact": p99_runtime,
        "timed_phases": len(ratios),
        "runtime_ratio_p99_both": round(pct([r for r, *_ in both], 99), 3) if both else None,
        "slowest_phases": [{"ratio": round(r, 3), "guest": g, "phase": i, "kind": k} for r, g, i, k in sorted(both, reverse=True)[:4]],
        "failed_phases": sum(1 for g in run["phases"] for p in g if p["rc"] != 0),
        "oom_kills": run["oom_kills"],
        "psi_some_total_s": round(run["psi_some_total_s"], 2),
        "reaction_p50_s": round(pct(r, 50), 3) if r else None, "reaction_p99_s": round(pct(r, 99), 3) if r else None,
        "reactions": len(r), "reactions_anticipated": rx["anticipated"], "reactions_missed": rx["missed"],
        "episodes_with_empty_balloon": rx["empty"], "returned_without_stall": rx["returned_without_stall"],
        "reaction_any_stall_p50_s": round(pct(any_stall, 50), 3) if any_stall else None,
        "reaction_any_stall_p99_s": round(pct(any_stall, 99), 3) if any_stall else None,
        "reactions_any_stall": len(any_stall),
        "reversals": turned, "pressure_reversals": turned_pressure, "hold_reversals": turned_hold,
    }


def _median(values: list[float]) -> float:
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def phase_medians(runs: list[dict]) -> dict[tuple[int, int], tuple[str, float]]:
    """(guest, phase) -> (kind, median run time over the runs), timed phases that every run finished."""
    out = {}
    for g, phases in enumerate(runs[0]["phases"]):
        for i, p in enumerate(phases):
            same = [r["phases"][g][i] for r in runs if g < len(r["phases"]) and i < len(r["phases"][g])]
            if p["kind"] in TIMED and len(same) == len(runs) and all(x["rc"] == 0 and x["seconds"] > 0 for x in same):
                out[(g, p["phase"])] = (p["kind"], _median([x["seconds"] for x in same]))
    return out


def repeated(runs: dict[str, dict], rows: list[dict], rounds: int) -> list[dict]:
    """With `--repeat R`: per policy, its R runs together. Run time: per timed phase, the
    median of the policy's R run times over the median of every no-balloon run's (none and
    none-again, all rounds), then p50/p99 over the phases: one run's burst, which varies by a
    fifth or more with no balloon at all on this shared host, no longer decides the p99 alone.
    Host memory and seconds over the budget: the mean of the R runs, with their range.
    Reaction times: the episodes of all R runs pooled. `noise` (no-balloon rows): each
    no-balloon run against the median of the others, the p99 a single run shows with
    no balloon at all."""
    by_row = {r["policy"]: r for r in rows}
    base_names = [n for n in runs if baseline(n.split("#")[0])]
    base = phase_medians([runs[n] for n in base_names]) if base_names else {}
    out = []
    for policy in dict.fromkeys(n.split("#")[0] for n in runs):
        names = [n for n in runs if n.split("#")[0] == policy]
        mine = [by_row[n] for n in names]
        agg: dict = {"policy": policy, "runs": len(names)}
        for key in ("host_mean_mib", "seconds_over_budget", "psi_some_total_s", "reversals", "pressure_reversals", "hold_reversals"):
            vals = [r[key] for r in mine if r.get(key) is not None]
            agg[key] = round(sum(vals) / len(vals), 1) if vals else None
            agg[key + "_range"] = [min(vals), max(vals)] if vals else None
        agg["oom_kills"] = sum(r["oom_kills"] for r in mine)
        pooled = [t for n in names for t in reactions(runs[n]["phases"])["times"]]
        agg["reaction_p99_s"] = round(pct(pooled, 99), 3) if pooled else None
        agg["reactions"] = len(pooled)
        stalls = [t for n in names for t in reactions(runs[n]["phases"], "psi-stall-us")["times"]]
        agg["reaction_any_stall_p99_s"] = round(pct(stalls, 99), 3) if stalls else None
        agg["reactions_any_stall"] = len(stalls)
        if baseline(policy):
            noise = []
            for n in base_names:
                others = [runs[m] for m in base_names if m != n]
                if not others:
                    continue
                med = phase_medians(others)
                ratios = [runs[n]["phases"][g][i]["seconds"] / s for (g, i), (_, s) in med.items()
                          if runs[n]["phases"][g][i]["rc"] == 0]
                noise.append(round(pct(ratios, 99), 3) if ratios else None)
            agg["noise_p99_each"] = noise
        elif base:
            med = phase_medians([runs[n] for n in names])
            ratios = sorted(((s / base[k][1], k, kind) for k, (kind, s) in med.items() if k in base), reverse=True)
            agg["runtime_ratio_p50"] = round(pct([r for r, *_ in ratios], 50), 3) if ratios else None
            agg["runtime_ratio_p99_exact"] = pct([r for r, *_ in ratios], 99) if ratios else None
            agg["runtime_ratio_p99"] = round(agg["runtime_ratio_p99_exact"], 3) if ratios else None
            agg["timed_phases"] = len(ratios)
            agg["slowest_phases"] = [{"ratio": round(r, 3), "guest": g, "phase": i, "kind": kind} for r, (g, i), kind in ratios[:4]]
        out.append(agg)
    return out


def baseline(policy: str) -> bool:
    """No balloon: `none`, and `none-again` (the noise of the run times)."""
    return policy in ("none", "none-again")
