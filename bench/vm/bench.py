#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""make bench-vm driver (issue 3): balloond against the kernel's virtio_balloon
in the same QEMU TCG guest, moving a 512 MiB balloon in and out.

Every run boots a fresh guest with tests/vm/boot.sh: -m 1G, 1 vCPU, RAM in
/dev/shm/balloond-bench-* (memory-backend-file, share=on), virtio-balloon-pci
present. The guest first touches most of its RAM (720 MiB through tmpfs, then
removed) so the backend file is mostly allocated. Then:

  balloond run: balloond in the guest on virtio-serial:org.balloond.0 (default
    configuration), `balloonctl serve --memory-backend` on the host; timed:
    `balloonctl --control CTL set 512M --wait`, then `set 0 --wait`.
  kernel run: `vmload virtio_balloon` in the guest; timed: QMP `balloon`
    (value = 1 GiB - 512 MiB, the guest's logical RAM size), then polling
    `query-balloon` every 20 ms until `actual` equals it; then back to 1 GiB.

Host memory freed = drop of the backend file's allocated bytes (st_blocks x 512)
from before the inflate to after it, each read once the value stops changing.
Runs come in pairs, one of each driver; which goes first alternates from pair to
pair (balloond first in odd pairs). Both balloons are checked to be the same
size (balloond's `actual`, the kernel's RAM - `query-balloon` actual). Every
results file carries its provenance (commit, date, host, load, guest CPU model,
guest THP mode, balloond --dump-config in the guest). Prints pass/FAIL per
goal; exits 1 on a miss. Python 3.11 stdlib only.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VM = os.path.join(REPO, "tests", "vm")
sys.path.insert(0, VM)
sys.dont_write_bytecode = True  # no __pycache__ in tests/vm
import guest as vmguest  # noqa: E402  (tests/vm/guest.py: the control-channel client)

MiB = 1 << 20
GiB = 1 << 30
RAM = 1 * GiB
BALLOON = 512 * MiB
POLL = 0.02  # query-balloon interval
FILL = ("mount -o remount,size=900M /dev/shm && "
        "dd if=/dev/zero of=/dev/shm/fill bs=1M count=720 2>/dev/null; rc=$?; rm -f /dev/shm/fill; exit $rc")


def log(msg: str) -> None:
    print(f"bench-vm: {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


def allocated(path: str) -> int:
    return os.stat(path).st_blocks * 512


def settle(path: str, since: float, quiet: float = 1.0, limit: float = 60.0) -> tuple[int, float]:
    """Poll the backend's allocated bytes every 50 ms until unchanged for `quiet` s.
    Returns the value and when (seconds after `since`) it was first seen."""
    value = allocated(path)
    seen = time.monotonic()
    deadline = seen + limit
    while time.monotonic() < deadline:
        time.sleep(0.05)
        v = allocated(path)
        if v != value:
            value, seen = v, time.monotonic()
        elif time.monotonic() - seen >= quiet:
            break
    return value, seen - since


def other_qemus() -> int:
    n = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv0 = f.read().split(b"\0")[0]
        except OSError:
            continue
        if argv0.endswith(b"qemu-system-x86_64"):
            n += 1
    return n


class QMP:
    """One QMP connection kept open for polling (events are skipped)."""

    def __init__(self, path: str, timeout: float = 10.0):
        self.sock = vmguest.connect_unix(path, time.monotonic() + timeout)
        self.sock.settimeout(timeout)
        self.f = self.sock.makefile("rwb")
        self.n = 0
        json.loads(self.f.readline())  # greeting
        self.cmd("qmp_capabilities")

    def cmd(self, execute: str, arguments: dict | None = None):
        self.n += 1
        msg = {"execute": execute, "id": self.n}
        if arguments is not None:
            msg["arguments"] = arguments
        self.f.write(json.dumps(msg).encode() + b"\n")
        self.f.flush()
        while True:
            line = self.f.readline()
            if not line:
                raise BenchError(f"QMP closed during {execute}")
            reply = json.loads(line)
            if reply.get("id") != self.n:
                continue
            if "error" in reply:
                raise BenchError(f"QMP {execute}: {reply['error']}")
            return reply["return"]

    def close(self) -> None:
        self.f.close()
        self.sock.close()


class Guest:
    """A fresh guest from tests/vm/boot.sh; stopped by tests/vm/stop.sh on exit."""

    def __init__(self, name: str, initramfs: str, cpu: str = "max"):
        self.wd = os.path.join(VM, "work", name)
        self.cpu = cpu
        self.backend = f"/dev/shm/balloond-bench-{os.getpid()}-{name}"
        self.initramfs = initramfs
        self.agent = None

    def __enter__(self) -> "Guest":
        try:
            r = subprocess.run(
                [os.path.join(VM, "boot.sh"), "-w", self.wd, "-i", self.initramfs, "-m", "1G", "-c", "1",
                 "--cpu", self.cpu, "--memory-backend", self.backend, "--balloon-device", "--timeout", "300",
                 "--ready-timeout", "90"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=150)
            if r.returncode != 0:
                raise BenchError(f"boot failed:\n{r.stdout}")
            self.ready_seconds = next((float(l.split("=", 1)[1]) for l in r.stdout.splitlines()
                                       if l.startswith("VM_READY_SECONDS=")), None)
            self.agent = vmguest.Agent(os.path.join(self.wd, "control.sock"), 60, self.wd)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        if self.agent is not None:
            self.agent.close()
            self.agent = None
        subprocess.run([os.path.join(VM, "stop.sh"), self.wd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if os.path.exists(self.backend):
            os.unlink(self.backend)

    def sh(self, cmd: str, timeout: float = 120) -> str:
        rc, out = self.agent.run(cmd, timeout)
        text = out.decode(errors="replace")
        if rc != 0:
            raise BenchError(f"guest command failed (rc {rc}): {cmd}\n{text}")
        return text

    def meminfo(self) -> dict:
        out = self.sh("grep -E '^(MemTotal|MemFree|MemAvailable|Mlocked):' /proc/meminfo")
        return {l.split(":")[0]: int(l.split()[1]) * 1024 for l in out.splitlines() if ":" in l}

    def facts(self) -> dict:
        """The guest's CPU model and THP mode, as this run saw them."""
        cpu = self.sh("grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2-").strip()
        thp = self.sh("cat /sys/kernel/mm/transparent_hugepage/enabled").strip()
        return {"guest_cpu_model": cpu, "guest_thp": thp}

    def fill(self) -> float:
        t0 = time.monotonic()
        self.sh(FILL, timeout=300)
        return time.monotonic() - t0


def delta(a: dict, b: dict) -> dict:
    return {k: b[k] - a[k] for k in a if k in b}


def balloond_run(args, name: str) -> dict:
    bc = args.balloonctl
    with Guest(name, args.initramfs, args.guest_cpu) as g:
        fill_s = g.fill()
        facts = g.facts()
        conf = ""
        if args.balloond_thp is not None:  # a diagnostic variant; the record uses the defaults
            g.sh(f"printf '[Balloon]\\nTransparentHugePages={args.balloond_thp}\\n' >/tmp/balloond.conf")
            conf = " --config /tmp/balloond.conf"
        facts["balloond_dump_config"] = g.sh(f"balloond{conf} --dump-config")
        g.sh(f"setsid balloond{conf} </dev/null >/tmp/balloond.log 2>&1 & echo $!")
        ctl = os.path.join(g.wd, "ctl.sock")
        serve_log = open(os.path.join(g.wd, "serve.log"), "w")
        serve = subprocess.Popen([bc, "serve", "--unix", os.path.join(g.wd, "port0.sock"), "--control", ctl,
                                  "--memory-backend", g.backend, "--timeout", "60"],
                                 stdin=subprocess.DEVNULL, stdout=serve_log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        try:
            def ctl_json(*cmd, timeout=60):
                r = subprocess.run([bc, "--control", ctl, "--json", *cmd], capture_output=True, text=True, timeout=timeout)
                if r.returncode != 0:
                    raise BenchError(f"balloonctl {' '.join(cmd)}: {r.stderr.strip()}")
                return json.loads(r.stdout)

            deadline = time.monotonic() + 60
            while True:
                try:
                    if ctl_json("serve-status").get("frame-reporting") is True:
                        break
                except (BenchError, json.JSONDecodeError, subprocess.TimeoutExpired):
                    pass
                if time.monotonic() > deadline or serve.poll() is not None:
                    raise BenchError("balloonctl serve did not turn frame reporting on:\n"
                                     + open(os.path.join(g.wd, "serve.log")).read())
                time.sleep(0.1)
            # What a balloonctl call costs by itself (spawn, sync, one round trip to the guest).
            rtt = []
            for _ in range(5):
                t = time.monotonic()
                ctl_json("query")
                rtt.append(time.monotonic() - t)

            before, _ = settle(g.backend, time.monotonic())
            mem0 = g.meminfo()
            load = os.getloadavg()[0]
            if os.environ.get("BENCH_VM_TRACE"):
                log("guest uptime before set: " + g.sh("cat /proc/uptime").strip())
            t0 = time.monotonic()
            r = subprocess.run([bc, "--control", ctl, "--timeout", "60", "set", "512M", "--wait", "--wait-timeout", "180"],
                               capture_output=True, text=True, timeout=240)
            t1 = time.monotonic()
            if r.returncode != 0:
                raise BenchError(f"set 512M --wait: {r.stderr.strip()}")
            after, settled = settle(g.backend, t0)
            mem1 = g.meminfo()
            status = ctl_json("serve-status")
            balloon = ctl_json("query")["actual"]

            t2 = time.monotonic()
            r = subprocess.run([bc, "--control", ctl, "--timeout", "60", "set", "0", "--wait", "--wait-timeout", "180"],
                               capture_output=True, text=True, timeout=240)
            t3 = time.monotonic()
            if r.returncode != 0:
                raise BenchError(f"set 0 --wait: {r.stderr.strip()}")
            mem2 = g.meminfo()
            after_deflate, _ = settle(g.backend, t2)
            glog = g.sh("cat /tmp/balloond.log")
            with open(os.path.join(g.wd, "balloond.log"), "w") as f:
                f.write(glog)
            return {
                "driver": "balloond", **facts, "balloon_bytes": balloon,
                "guest_ready_seconds": g.ready_seconds, "fill_seconds": fill_s,
                "loadavg_1min": load, "qemu_processes": other_qemus(),
                "balloonctl_query_seconds_median": statistics.median(rtt),
                "inflate_seconds": t1 - t0, "deflate_seconds": t3 - t2,
                "host_freed_settled_seconds": settled,
                "backend_allocated_before": before, "backend_allocated_after_inflate": after,
                "backend_allocated_after_deflate": after_deflate, "host_bytes_freed": before - after,
                "balloond_transparent_huge_pages": args.balloond_thp or "default (yes)",
                "serve_bytes_freed": status.get("bytes-freed"), "serve_punches": status.get("punches"),
                "serve_refused": status.get("refused"),
                "guest_meminfo_before": mem0, "guest_meminfo_inflated": mem1, "guest_meminfo_deflated": mem2,
                "guest_meminfo_inflate_delta": delta(mem0, mem1),
                "balloond_log_tail": glog.splitlines()[-6:],
            }
        finally:
            if serve.poll() is None:
                serve.terminate()
                try:
                    serve.wait(10)
                except subprocess.TimeoutExpired:
                    serve.kill()
                    serve.wait()
            serve_log.close()


def kernel_run(args, name: str) -> dict:
    with Guest(name, args.initramfs, args.guest_cpu) as g:
        fill_s = g.fill()
        facts = g.facts()
        g.sh("vmload virtio_balloon && grep -q '^virtio_balloon ' /proc/modules")
        q = QMP(os.path.join(g.wd, "qmp.sock"))
        try:
            def move(value: int) -> tuple[float, int]:
                t0 = time.monotonic()
                q.cmd("balloon", {"value": value})
                polls = 0
                while q.cmd("query-balloon")["actual"] != value:
                    polls += 1
                    if time.monotonic() - t0 > 180:
                        raise BenchError(f"virtio_balloon did not reach {value} within 180 s")
                    time.sleep(POLL)
                return time.monotonic() - t0, polls

            deadline = time.monotonic() + 30
            while q.cmd("query-balloon")["actual"] != RAM:
                if time.monotonic() > deadline:
                    raise BenchError("virtio_balloon: actual is not the full RAM at start")
                time.sleep(0.1)
            before, _ = settle(g.backend, time.monotonic())
            mem0 = g.meminfo()
            load = os.getloadavg()[0]
            t0 = time.monotonic()
            inflate_s, polls_in = move(RAM - BALLOON)
            after, settled = settle(g.backend, t0)
            mem1 = g.meminfo()
            balloon = RAM - q.cmd("query-balloon")["actual"]
            t2 = time.monotonic()
            deflate_s, polls_out = move(RAM)
            mem2 = g.meminfo()
            after_deflate, _ = settle(g.backend, t2)
            return {
                "driver": "virtio_balloon", **facts, "balloon_bytes": balloon,
                "guest_ready_seconds": g.ready_seconds, "fill_seconds": fill_s,
                "loadavg_1min": load, "qemu_processes": other_qemus(),
                "inflate_seconds": inflate_s, "deflate_seconds": deflate_s,
                "query_balloon_polls": [polls_in, polls_out],
                "host_freed_settled_seconds": settled,
                "backend_allocated_before": before, "backend_allocated_after_inflate": after,
                "backend_allocated_after_deflate": after_deflate, "host_bytes_freed": before - after,
                "guest_meminfo_before": mem0, "guest_meminfo_inflated": mem1, "guest_meminfo_deflated": mem2,
                "guest_meminfo_inflate_delta": delta(mem0, mem1),
            }
        finally:
            q.close()


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


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--initramfs", required=True)
    ap.add_argument("--balloonctl", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--guest-cpu", default="max",
                    help="QEMU -cpu for the guest (default max; max,erms=off zeroes pages with rep stosq)")
    ap.add_argument("--name", default="results-vm", help="output file names: NAME.json, NAME.md")
    ap.add_argument("--balloond-thp", choices=["yes", "no"],
                    help="diagnostic: run balloond with TransparentHugePages= this (default: its built-in default)")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    results = {"machine": machine(args), "runs": []}
    results["machine"]["loadavg_start"] = os.getloadavg()
    t_start = time.monotonic()
    drivers = (("balloond", balloond_run), ("virtio_balloon", kernel_run))
    for i in range(1, args.runs + 1):
        # Which driver goes first alternates, so neither always meets the host first.
        for driver, fn in drivers if i % 2 == 1 else drivers[::-1]:
            name = f"bench-vm-{'b' if driver == 'balloond' else 'k'}{i}"
            log(f"pair {i}/{args.runs}: {driver} (load {os.getloadavg()[0]:.2f})")
            r = fn(args, name)
            r["pair"] = i
            log(f"  inflate {fmt_s(r['inflate_seconds'])}, deflate {fmt_s(r['deflate_seconds'])}, "
                f"host freed {fmt_mib(r['host_bytes_freed'])}")
            results["runs"].append(r)
    results["machine"]["loadavg_end"] = os.getloadavg()
    results["machine"]["total_seconds"] = time.monotonic() - t_start
    # zip(b, k) pairs runs by pair number: both lists are in pair order.
    summarise(results)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"{args.name}.json"), "w") as f:
        json.dump(results, f, indent=1)
        f.write("\n")
    md = markdown(results)
    with open(os.path.join(args.out, f"{args.name}.md"), "w") as f:
        f.write(md)
    print(md)
    for goal, ok in results["goals"].items():
        log(f"{'pass' if ok else 'FAIL'}: {goal}")
    return 0 if results["pass"] else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        log(f"error: {e}")
        sys.exit(1)
