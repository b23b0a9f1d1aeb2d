# SPDX-License-Identifier: Apache-2.0
"""bench/vm/bench.py's results: the machine it ran on, the summary and goals, and the
Markdown report."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import subprocess

from bench_guest import BALLOON, MiB, REPO, VM


def cmd_out(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine(args) -> dict:
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    kver_file = os.path.join(VM, "work", "kver")
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host_kernel": platform.release(), "cpus": os.cpu_count(), "cpu": cpu,
        "qemu": cmd_out(["qemu-system-x86_64", "--version"]).splitlines()[0],
        "guest_kernel": open(kver_file).read().strip() if os.path.exists(kver_file) else None,
        "commit": cmd_out(["git", "-C", REPO, "rev-parse", "HEAD"])
                  + ("" if subprocess.run(["git", "-C", REPO, "diff", "--quiet", "HEAD", "--", "Sources", "Package.swift",
                                           "bench", "tests/vm"]).returncode == 0 else "-dirty"),
        "guest_cpu": args.guest_cpu,
        "guest": f"QEMU TCG, -machine pc -cpu {args.guest_cpu}, -m 1G, 1 vCPU, memory-backend-file share=on in /dev/shm, "
                 "virtio-balloon-pci present in every run",
        "balloond_config": "built-in defaults (ChunkSize=64M, TransparentHugePages=auto, MaxBalloon=80%, "
                           "MemAvailableFloor=256M 3%)" if args.balloond_thp is None else
                           f"defaults but TransparentHugePages={args.balloond_thp} (diagnostic variant)",
        "method": "fresh guest boot per run; pairs of one balloond and one virtio_balloon run, which goes first "
                  "alternating (balloond first in odd pairs); min/median/max; ratios are "
                  "median(balloond)/median(virtio_balloon) from this invocation",
        "runs": args.runs,
    }


def fmt_s(s: float) -> str:
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.2f} s"


def fmt_mib(b: float) -> str:
    return f"{b / MiB:.1f} MiB"


def summarise(results: dict) -> None:
    b = [r for r in results["runs"] if r["driver"] == "balloond"]
    k = [r for r in results["runs"] if r["driver"] == "virtio_balloon"]
    med = lambda rs, key: statistics.median(r[key] for r in rs)  # noqa: E731
    s = {}
    for key in ("inflate_seconds", "deflate_seconds", "host_bytes_freed", "host_freed_settled_seconds"):
        s[key] = {"balloond": [r[key] for r in b], "virtio_balloon": [r[key] for r in k],
                  "balloond_median": med(b, key), "virtio_balloon_median": med(k, key)}
        s[key]["ratio"] = s[key]["balloond_median"] / s[key]["virtio_balloon_median"]
        s[key]["pair_ratios"] = [x[key] / y[key] for x, y in zip(b, k)]
        for name, rs in (("balloond", b), ("virtio_balloon", k)):
            s[key][f"{name}_min"], s[key][f"{name}_max"] = min(r[key] for r in rs), max(r[key] for r in rs)
    for field in ("MemTotal", "MemFree", "MemAvailable", "Mlocked"):
        s[f"guest_{field}_inflate_delta"] = {
            "balloond_median": statistics.median(r["guest_meminfo_inflate_delta"].get(field, 0) for r in b),
            "virtio_balloon_median": statistics.median(r["guest_meminfo_inflate_delta"].get(field, 0) for r in k)}
    results["summary"] = s
    sizes = sorted({r["balloon_bytes"] for r in results["runs"]})
    s["balloon_bytes"] = sizes
    goals = {
        "same_balloon_size_both_drivers": sizes == [BALLOON],
        "inflate_time_ratio_at_most_0.5": s["inflate_seconds"]["ratio"] <= 0.5,
        "host_bytes_freed_ratio_at_least_1": s["host_bytes_freed"]["ratio"] >= 1.0,
    }
    results["goals"] = goals
    results["pass"] = all(goals.values())
    for key in ("guest_cpu_model", "guest_thp"):
        results["machine"][key] = sorted({r[key] for r in results["runs"]})
    configs = sorted({r["balloond_dump_config"] for r in b})
    results["machine"]["balloond_effective_config"] = configs[0] if len(configs) == 1 else configs
    loads = [r["loadavg_1min"] for r in results["runs"]]
    results["machine"]["loadavg_1min_during_runs"] = [min(loads), max(loads)]


def spread(entry: dict, driver: str, fmt) -> str:
    return f"{fmt(entry[driver + '_median'])} ({fmt(entry[driver + '_min'])}–{fmt(entry[driver + '_max'])})"


def markdown(results: dict) -> str:
    m, s, g = results["machine"], results["summary"], results["goals"]
    pf = lambda ok: "pass" if ok else "**FAIL**"  # noqa: E731
    n = m["runs"]
    lines = [
        "# balloond vs the kernel's virtio_balloon in a QEMU TCG guest (`make bench-vm`)",
        "",
        f"{m['date']}, host kernel {m['host_kernel']}, {m['cpus']} CPUs ({m['cpu']}), {m['qemu']}, "
        f"guest kernel {m['guest_kernel']}, commit `{m['commit']}`; host load average at start "
        f"{' '.join(f'{x:.2f}' for x in m['loadavg_start'])}.",
        f"Guest CPU model (guest /proc/cpuinfo): {', '.join(m['guest_cpu_model'])}; guest THP "
        f"`{', '.join(m['guest_thp'])}`. balloond's effective settings in the guest (`balloond --dump-config`): "
        + " ".join(f"`{l}`" for l in (m['balloond_effective_config'] if isinstance(m['balloond_effective_config'], str)
                                      else m['balloond_effective_config'][0]).splitlines()
                   if l and not l.startswith("#") and "=" in l) + ".",
        f"Guest: {m['guest']}. balloond: {m['balloond_config']}. "
        f"Fresh guest per run, {n} pairs (one run of each driver; balloond first in odd pairs, the kernel in "
        "even ones); medians, with min–max. "
        f"Host load average (1 min) during the runs {m['loadavg_1min_during_runs'][0]:.2f}–"
        f"{m['loadavg_1min_during_runs'][1]:.2f}, with other sessions' builds and QEMU guests running "
        "(TCG times vary with that; the runs alternate so both drivers see it).",
        "",
        f"| 512 MiB balloon (median of {n}; min–max) | balloond | virtio_balloon | balloond / kernel | goal | |",
        "|---|---|---|---|---|---|",
        f"| balloon size at the target (both drivers) | {', '.join(fmt_mib(x) for x in s['balloon_bytes'])} | | | "
        f"= {fmt_mib(BALLOON)} each | {pf(g['same_balloon_size_both_drivers'])} |",
        f"| inflate: time to reach the target | {spread(s['inflate_seconds'], 'balloond', fmt_s)} | "
        f"{spread(s['inflate_seconds'], 'virtio_balloon', fmt_s)} | {s['inflate_seconds']['ratio']:.2f} | ≤ 0.5 | "
        f"{pf(g['inflate_time_ratio_at_most_0.5'])} |",
        f"| host memory freed (backend file blocks) | {spread(s['host_bytes_freed'], 'balloond', fmt_mib)} | "
        f"{spread(s['host_bytes_freed'], 'virtio_balloon', fmt_mib)} | {s['host_bytes_freed']['ratio']:.4f} | ≥ 1 | "
        f"{pf(g['host_bytes_freed_ratio_at_least_1'])} |",
        f"| deflate: time to reach 0 | {spread(s['deflate_seconds'], 'balloond', fmt_s)} | "
        f"{spread(s['deflate_seconds'], 'virtio_balloon', fmt_s)} | {s['deflate_seconds']['ratio']:.2f} | — | |",
        f"| inflate: host blocks at their final value by | {fmt_s(s['host_freed_settled_seconds']['balloond_median'])} | "
        f"{fmt_s(s['host_freed_settled_seconds']['virtio_balloon_median'])} | "
        f"{s['host_freed_settled_seconds']['ratio']:.2f} | — | |",
    ]
    for field in ("MemTotal", "MemFree", "MemAvailable", "Mlocked"):
        d = s[f"guest_{field}_inflate_delta"]
        lines.append(f"| guest {field} change on inflate | {d['balloond_median'] / MiB:+.1f} MiB | "
                     f"{d['virtio_balloon_median'] / MiB:+.1f} MiB | | | |")
    pr = lambda key, d: ", ".join(f"{x:.{d}f}" for x in s[key]["pair_ratios"])  # noqa: E731
    lines += [
        "",
        f"Per pair (balloond run i / virtio_balloon run i, booted one after the other): inflate time "
        f"{pr('inflate_seconds', 2)}; deflate time {pr('deflate_seconds', 2)}; host memory freed "
        f"{pr('host_bytes_freed', 4)}.",
        "",
        f"Overall: {'pass' if results['pass'] else '**FAIL**'}.",
        "",
        "## Runs",
        "",
        "| # | pair | driver | balloon | inflate | deflate | host freed | backend before → inflated → deflated | load 1 min | QEMUs on host (ours incl.) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(results["runs"], 1):
        lines.append(
            f"| {i} | {r['pair']} | {r['driver']} | {fmt_mib(r['balloon_bytes'])} | {fmt_s(r['inflate_seconds'])} | {fmt_s(r['deflate_seconds'])} | "
            f"{fmt_mib(r['host_bytes_freed'])} | {fmt_mib(r['backend_allocated_before'])} → "
            f"{fmt_mib(r['backend_allocated_after_inflate'])} → {fmt_mib(r['backend_allocated_after_deflate'])} | "
            f"{r['loadavg_1min']:.2f} | {r['qemu_processes']} |")
    lines += [
        "",
        "## How",
        "",
        "- Before each inflate the guest writes 720 MiB to tmpfs (`/dev/shm` remounted at 900M) and removes it,",
        "  so most of the backend file is allocated; allocated bytes are `st_blocks` × 512, read once stable",
        "  (unchanged for 1 s, polled every 50 ms).",
        "- balloond: `balloond` (defaults) in the guest on `virtio-serial:org.balloond.0`; on the host",
        "  `balloonctl serve --memory-backend` (punches reported frames with `fallocate(PUNCH_HOLE)`);",
        "  timed: `balloonctl --control CTL set 512M --wait` and `set 0 --wait` (process start to exit;",
        "  a `balloonctl query` through serve alone takes "
        f"{statistics.median(r['balloonctl_query_seconds_median'] for r in results['runs'] if r['driver'] == 'balloond') * 1000:.0f} ms).",
        "- virtio_balloon: `vmload virtio_balloon` in the guest; timed: QMP `balloon` with value",
        "  1 GiB − 512 MiB (the guest's logical RAM size), then `query-balloon` every 20 ms until `actual`",
        "  equals it; deflate: `balloon` 1 GiB the same way. QEMU 7.2 discards inflated pages with",
        "  `ram_block_discard_range`, which punches holes in a shared file backend.",
        f"- Guest CPU model `{m.get('guest_cpu', 'max')}`. `make bench-vm` runs twice, with `-cpu max` (the",
        "  harness's model; results-vm.md) and `-cpu max,erms=off` (results-vm-noerms.md). Both drivers",
        "  zero every page they take (Debian's kernel has `init_on_alloc=1`, so even the kernel driver's",
        "  balloon pages are zeroed on allocation; the 6.1 kernel zeroes an anonymous huge page twice, on",
        "  allocation and in the fault). With ERMS the guest zeroes with `rep stosb`, which TCG runs one",
        "  byte per iteration: measured in this guest, filling the hugetlb pool with 512 MiB (zeroing and",
        "  nothing else) takes about 0.95 s with ERMS and 0.25 s without, so with ERMS zeroing, paid by",
        "  both, is most of either driver's time. On hardware `rep stosb` is the fast path.",
        "- \"host blocks at their final value by\": from the inflate command to the first read (after the",
        "  command finished, then every 50 ms) that showed the final allocation; equal to the inflate time",
        "  when the host had finished freeing by the time the target was reported reached.",
        "",
    ]
    return "\n".join(lines)
