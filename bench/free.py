#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""make bench-free: memory the guest no longer uses, back to the host (issue 10).

Usage: bench/free.py --initramfs PATH [--seed N] [--configs a,b,c,d] [--observe 120]
                     [--out bench/results-free.json] [--md bench/results-free.md]
                     [--png bench/results-free.png]

For each configuration it boots the same QEMU TCG guest (1 GiB, 1 vCPU, no swap, RAM in a
shared file on /dev/shm, an ext4 scratch disk) and runs the workloads in one session:

  a  no balloon;
  b  the kernel's free page reporting (virtio-balloon-pci,free-page-reporting=on; the
     guest's virtio_balloon loaded; QEMU discards the reported pages from the RAM file);
  c  balloond's free-memory mode (balloond with its defaults, `balloonctl serve
     --memory-backend FILE --free-memory-reporting` on the host);
  d  c plus cold page cache ([FreeMemory] ReclaimColdCache=yes);
  e  c with `serve --no-populate-on-deflate` (not a configuration the issue names: an A/B of
     serve allocating the RAM file again for memory the guest takes back, for W3; c does it);
  f  c with `serve --no-prefault` (the same kind of A/B: serve allocates that memory but leaves
     QEMU to map it page by page; c maps it into QEMU ahead of the guest).

Workloads, in this order (the seed picks the order the 600 MiB of files are read in):
  1  `workload instant 600`: allocate and touch 600 MiB of anonymous memory, then exit;
  3  once every configuration has run 1 (its memory given away and freed by the host),
     `workload instant 600` again, in rounds of simultaneous pairs with a: how fast the guest gets its memory
     back (run time against a's, OOM kills);
  2  read six 100 MiB files once, then idle while a loop keeps a 100 MiB file hot;
  4  `workload touchloop 300 30`: a steady 300 MiB anonymous working set touched in a loop
     (passes against a's: the mode's own slowdown).

Host memory behind the guest = allocated blocks of the RAM file (st_blocks × 512), sampled
every 0.5 s. Reported: host memory at +5 s, +30 s and +120 s after workloads 1 and 2 end; the
time until a configuration has returned 90% of what b returned by +120 s (returned = host
memory at the end of the workload minus host memory since); the mode's CPU while the guest is
idle (balloond's utime+stime from +30 s after workload 1 to the end of its observation, once the
balloon has settled, in % of one vCPU; the host memory at +30 and +120 shows it settled) and,
apart, while it returns workload 1's memory (its end to +30 s); slowdowns against a; OOM
kills (/proc/vmstat oom_kill). For W3, where its time went: the change of THP faults and
fallbacks, kswapd and direct reclaim scans over it, and balloond's CPU (and its reaped holders')
during it. The four guests run side by side (one workload at a time, the others idle, except
W3): TCG's speed on this shared host switches between states about 1.6x apart, so W3 runs in
simultaneous pairs, each configuration beside a, and its slowdown is the median of the ratios
(w3_rounds).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import statistics
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "vm"))
import guest as G  # noqa: E402

MiB = 1 << 20
NAMES = {"a": "no balloon", "b": "kernel free page reporting", "c": "balloond free-memory mode",
         "d": "balloond free-memory mode + cold page cache", "e": "c with serve --no-populate-on-deflate",
         "f": "c with serve --no-prefault"}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def allocated(path: str) -> int:
    try:
        return os.stat(path).st_blocks * 512
    except FileNotFoundError:
        return 0


class Sampler(threading.Thread):
    """The RAM file's allocated bytes every 0.5 s, on the host's monotonic clock."""

    def __init__(self, path: str):
        super().__init__(daemon=True)
        self.path, self.samples, self.stopped = path, [], False

    def run(self) -> None:
        while not self.stopped:
            self.samples.append((time.monotonic(), allocated(self.path)))
            time.sleep(0.5)

    def at(self, t: float) -> int:
        """The first sample at or after t (the last one if none)."""
        for ts, v in self.samples:
            if ts >= t:
                return v
        return self.samples[-1][1]

    def window(self, start: float, end: float, origin: float) -> list[tuple[float, int]]:
        """Samples from start to end, timed from origin (the workload's end)."""
        return [(ts - origin, v) for ts, v in self.samples if start <= ts <= end]


class Run:
    def __init__(self, cfg: str, initramfs: str, seed: int, ram_dir: str = "/dev/shm", name: str | None = None):
        """name: the guest's work directory and RAM file (default bfree-CFG-PID); two
        guests of one configuration in one process need their own."""
        self.cfg = cfg
        tag = name or f"bfree-{cfg}-{os.getpid()}"
        self.backend = os.path.join(ram_dir, tag)
        self.serve: subprocess.Popen | None = None
        self.daemon_pid: int | None = None
        balloon = ("--qemu-arg", "-device", "--qemu-arg", "virtio-balloon-pci,id=balloon0,free-page-reporting=on")
        self.vm = G.BootedGuest(os.path.join(ROOT, "tests", "vm", "work", tag), initramfs, memory_backend=self.backend,
                                timeout=5400, boot_args=balloon if cfg == "b" else (), command_timeout=600)
        self.wd = self.vm.wd
        try:
            if cfg == "b":
                self.sh("vmload virtio_balloon")
        except BaseException:
            self.vm.stop_vm(remove_workdir=False)
            raise
        self.sampler = Sampler(self.backend)
        self.sampler.start()
        self.rng = random.Random(seed)

    def run(self, cmd: str, timeout: float = 600) -> tuple[int, str]:
        return self.vm.run(cmd, timeout)

    def sh(self, cmd: str, timeout: float = 600) -> str:
        return self.vm.sh(cmd, timeout)

    def vmstat(self, key: str) -> int:
        return int(self.sh(f"awk '$1 == \"{key}\" {{print $2}}' /proc/vmstat") or 0)

    def start_balloond(self) -> None:
        conf = "[Channel]\\nListen=virtio-serial:org.balloond.0\\n"
        if self.cfg == "d":
            conf += "[FreeMemory]\\nReclaimColdCache=yes\\n"
        self.sh(f"printf '{conf}' > /tmp/b.conf")
        self.daemon_pid = int(self.sh("balloond --config /tmp/b.conf >/tmp/balloond.log 2>&1 & echo $!"))
        for _ in range(300):
            if "started" in self.run("cat /tmp/balloond.log")[1]:
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("balloond did not start: " + self.run("cat /tmp/balloond.log")[1])
        ctl = os.path.join(ROOT, "tests/vm/work/balloonctl")
        control = os.path.join(self.wd, "serve.sock")
        self.ctl, self.control = ctl, control
        self.serve_log = open(os.path.join(self.wd, "serve.log"), "w")
        populate = {"e": ["--no-populate-on-deflate"], "f": ["--no-prefault"]}.get(self.cfg, [])
        self.serve = subprocess.Popen([ctl, "serve", "--unix", os.path.join(self.wd, "port0.sock"), "--control", control,
                                       "--memory-backend", self.backend, "--free-memory-reporting", "--timeout", "60"] + populate,
                                      stdout=self.serve_log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            r = subprocess.run([ctl, "--control", control, "--json", "serve-status"], capture_output=True, text=True)
            if r.returncode == 0 and json.loads(r.stdout).get("free-memory-reporting"):
                return
            time.sleep(0.5)
        raise RuntimeError("serve did not switch the free-memory mode on")

    def populated(self, key: str = "bytes-populated") -> int | None:
        """serve's bytes-populated (or another serve-status) counter (None without serve)."""
        if not getattr(self, "serve", None):
            return None
        r = subprocess.run([self.ctl, "--control", self.control, "--json", "serve-status"], capture_output=True, text=True)
        return json.loads(r.stdout).get(key, 0) if r.returncode == 0 else None

    def daemon_ticks(self, children: bool = False) -> int:
        """balloond's utime+stime (or, with children, that of the holders it reaped), in ticks."""
        if not self.daemon_pid:
            return 0
        stat = self.sh(f"cat /proc/{self.daemon_pid}/stat")
        fields = stat[stat.rindex(")") + 2:].split()
        return int(fields[13]) + int(fields[14]) if children else int(fields[11]) + int(fields[12])

    # /proc/vmstat counters whose change over a workload says where its time went
    # (huge pages it did not get, reclaim and compaction it ran into).
    WATCHED = ("oom_kill", "thp_fault_alloc", "thp_fault_fallback", "allocstall_normal", "allocstall_dma32",
               "compact_stall", "pgscan_kswapd", "pgscan_direct", "pgfault")

    def vmstats(self) -> dict[str, int]:
        keys = "|".join(self.WATCHED)
        out = self.sh(f"grep -E '^({keys}) ' /proc/vmstat")
        return {k: int(v) for k, v in (line.split() for line in out.splitlines())}

    def workload(self, cmd: str) -> dict:
        before = self.vmstats()
        rc, out = self.run(cmd, 900)
        after = self.vmstats()
        result = {"rc": rc, "oom_kills": after.get("oom_kill", 0) - before.get("oom_kill", 0),
                  "vmstat": {k: after[k] - before.get(k, 0) for k in after}}
        for line in out.splitlines():
            if line.startswith("profile-ms="):  # ms per 100 MiB of W3's memset (workload.c)
                result["profile_ms"] = [int(x) for x in line.split("=", 1)[1].split(",") if x.isdigit()]
                continue
            for part in line.split():
                if "=" in part:
                    k, v = part.split("=", 1)
                    if v.lstrip("-").isdigit():
                        result[k] = int(v)
        return result

    def observe(self, end: float, seconds: float) -> dict:
        time.sleep(max(0.0, end + seconds + 1 - time.monotonic()))
        s = self.sampler
        return {"at_end": s.at(end), "plus5": s.at(end + 5), "plus30": s.at(end + 30),
                "plus120": s.at(end + min(120, seconds)), "series": s.window(end - 5, end + seconds, end)}

    settled_after = 30.0

    def prepare(self) -> None:
        self.res = {"config": self.cfg, "name": NAMES[self.cfg]}
        self.sh("for i in 0 1 2 3 4 5; do dd if=/dev/zero of=/mnt/disk/f$i bs=1M count=100 conv=fsync 2>/dev/null; done; "
                "dd if=/dev/zero of=/mnt/disk/hot bs=1M count=100 conv=fsync 2>/dev/null; sync; echo 3 > /proc/sys/vm/drop_caches")
        if self.cfg in "cdef":
            self.start_balloond()

    def phase_w1(self, observe: float) -> None:
        res = self.res
        res["idle_start"] = allocated(self.backend)
        log(f"{self.cfg}: workload 1")
        res["w1"] = self.workload("workload instant 600")
        end = time.monotonic()
        t0 = self.daemon_ticks()
        # The mode's CPU in two parts of workload 1's observation: returning
        # what it freed (its end to +30 s, where every configuration has
        # settled) and idle (+30 s to the end of the observation).
        time.sleep(max(0.0, end + self.settled_after - time.monotonic()))
        t30, at30 = self.daemon_ticks(), time.monotonic()
        res["w1"].update(self.observe(end, observe))
        res["return_cpu_ticks"], res["return_cpu_seconds"] = t30 - t0, at30 - end
        res["idle_cpu_ticks"] = self.daemon_ticks() - t30
        res["idle_cpu_seconds"] = time.monotonic() - at30

    def w3_once(self) -> None:
        """One W3 allocation: 600 MiB at once, into memory the configuration gave away."""
        res = self.res
        first = "w3" not in res
        if first:
            res["before_w3_meminfo"] = self.sh("grep -E '^(MemFree|AnonHugePages|Mlocked|Unevictable):' /proc/meminfo")
        t0, k0 = self.daemon_ticks(), self.daemon_ticks(children=True)
        p0, f0 = self.populated(), self.populated("bytes-prefaulted")
        r = self.workload("WORKLOAD_PROFILE_MB=100 workload instant 600")
        if p0 is not None:
            # What serve allocated again over the workload (and the sample after it), and mapped into QEMU.
            r["populated_bytes"] = (self.populated() or 0) - p0
            r["prefaulted_bytes"] = (self.populated("bytes-prefaulted") or 0) - (f0 or 0)
        if self.daemon_pid:
            r["daemon_cpu_ticks"] = self.daemon_ticks() - t0
            r["daemon_child_ticks"] = self.daemon_ticks(children=True) - k0
        self.w3_end = time.monotonic()
        if first:
            res["w3"] = dict(r, runs_ms=[], runs=[])
        else:
            res["w3"]["oom_kills"] += r["oom_kills"]
        res["w3"]["runs_ms"].append(r.get("runtime-ms"))
        res["w3"]["runs"].append(r)
        res["w3"]["median_ms"] = statistics.median([x for x in res["w3"]["runs_ms"] if x is not None] or [0])

    def phase_w2(self, observe: float) -> None:
        res = self.res
        files = [f"/mnt/disk/f{i}" for i in range(6)]
        log(f"{self.cfg}: workload 2")
        order = files[:]
        self.rng.shuffle(order)
        res["w2_order"] = order
        self.sh("(while :; do cat /mnt/disk/hot > /dev/null; sleep 1; done) >/dev/null 2>&1 & echo $! > /tmp/hot.pid")
        t = time.monotonic()
        self.sh("cat " + " ".join(order) + " > /dev/null")
        end = time.monotonic()
        res["w2"] = {"read_seconds": end - t}
        res["w2"].update(self.observe(end, observe))
        self.run("kill $(cat /tmp/hot.pid)")
        res["w2"]["cached_after"] = int(self.sh("awk '/^Cached:/ {print $2}' /proc/meminfo")) * 1024
        res["w2"]["pgsteal"] = int(self.sh("awk '$1 ~ /^pgsteal_/ {s+=$2} END {print s+0}' /proc/vmstat"))

    def phase_w4(self) -> None:
        log(f"{self.cfg}: workload 4")
        self.res["w4"] = self.workload("workload touchloop 300 30")
        if self.daemon_pid:
            self.res["balloond_log_tail"] = self.run("tail -20 /tmp/balloond.log")[1]

    def quiet_for(self, seconds: float) -> bool:
        """Host memory behind this guest has not changed for the last `seconds`."""
        now = time.monotonic()
        recent = [v for ts, v in self.sampler.samples if ts >= now - seconds]
        return len(recent) >= int(seconds / 0.5) - 1 and len(set(recent)) == 1


    def stop(self) -> None:
        self.sampler.stopped = True
        if self.serve:
            self.serve.terminate()
            self.serve.wait()
        self.vm.stop_vm(remove_workdir=False)  # serve.log stays for a look afterwards


def w3_rounds(runs: dict[str, "Run"], rounds: int) -> None:
    """W3 in rounds of simultaneous pairs: each configuration's run beside one of a's.

    One W3 takes a few seconds, and TCG's speed on this shared host switches
    between states about 1.6x apart that last a minute or so (the per-100 MiB
    profiles show a run changing speed half-way, in every configuration), so
    runs one after another, even interleaved, compare the host's moods. Two
    guests allocating at the same moment, each on one of the two host cores,
    meet the same state: W3's figure for a configuration is its time over
    that of the a run beside it. Every pair starts once every guest's host
    memory has been still for 5 s (nobody is returning memory) and at least
    30 s after the configuration's previous run (it took the memory back).
    """
    base = runs.get("a")
    others = [c for c in runs if c != "a"]
    if base is None or not others:  # nothing to pair with: runs one at a time
        others, base = list(runs), None
    for rnd in range(rounds):
        order = others[rnd % len(others):] + others[:rnd % len(others)]
        for cfg in order:
            run = runs[cfg]
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if (time.monotonic() - getattr(run, "w3_end", 0) >= 30
                        and all(r.quiet_for(5) for r in runs.values())):
                    break
                time.sleep(0.5)
            log(f"{cfg}: workload 3, round {rnd + 1}" + (" (beside a)" if base else ""))
            if base is None:
                run.w3_once()
                continue
            beside = threading.Thread(target=base.w3_once)
            beside.start()
            run.w3_once()
            beside.join()
            run.res["w3"]["runs"][-1]["beside_a_ms"] = base.res["w3"]["runs_ms"][-1]


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


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--initramfs", required=True)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--configs", default="a,b,c,d")
    p.add_argument("--observe", type=float, default=120)
    p.add_argument("--out", default=os.path.join(ROOT, "bench/results-free.json"))
    p.add_argument("--md", default=os.path.join(ROOT, "bench/results-free.md"))
    p.add_argument("--png", default=os.path.join(ROOT, "bench/results-free.png"))
    p.add_argument("--w3-runs", type=int, default=15, help="W3 rounds (15: with 5 the spread hid a 13%% cost, bench/results-free-w3.md): in each, every configuration allocates once beside a run of a (the median of the ratios is judged)")
    p.add_argument("--ram-hugepages", action="store_true",
                   help="the RAM files on a tmpfs of their own with huge=within_size (2 MiB host pages) instead of /dev/shm")
    p.add_argument("--keep", default=None, help="a previous results JSON whose other configurations are kept")
    args = p.parse_args()
    if args.seed is None:
        args.seed = random.randrange(1 << 31)
    results: dict[str, dict] = {}
    args.provenance = provenance()
    if args.keep:
        with open(args.keep) as f:
            kept = json.load(f)
        args.seed = kept["seed"]
        results = {k: v for k, v in kept["results"].items() if k not in args.configs.split(",")}
        if not kept.get("series_from_end"):
            # Older results timed their series from 5 s before the workload's end.
            for r in results.values():
                for w in ("w1", "w2"):
                    r[w]["series"] = [(ts - 5, v) for ts, v in r[w]["series"]]
    # Every configuration's guest runs from the start, so W3 can pair
    # them (w3_rounds); the other workloads run one guest at a time while the
    # others idle.
    runs: dict[str, Run] = {}
    mounted = None
    ram_dir = "/dev/shm"
    if args.ram_hugepages:
        # A host that backs guest RAM with 2 MiB pages: memory a guest takes
        # back costs one host fault per 2 MiB instead of 512 (docs/free-memory.md).
        mounted = f"/tmp/bench-free-ram-{os.getpid()}"
        os.makedirs(mounted, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6G,huge=within_size", "tmpfs", mounted], check=True)
        ram_dir = mounted
        args.provenance += f" RAM files on a tmpfs mounted with huge=within_size ({mounted})."
    try:
        for cfg in args.configs.split(","):
            log(f"{cfg}: booting ({NAMES[cfg]})")
            runs[cfg] = Run(cfg, args.initramfs, args.seed, ram_dir)
            runs[cfg].prepare()
        time.sleep(20)  # settle: each configuration returns what is free at boot
        for run in runs.values():
            run.phase_w1(args.observe)
        w3_rounds(runs, args.w3_runs)
        time.sleep(10)
        for run in runs.values():
            run.phase_w2(args.observe)
        for run in runs.values():
            run.phase_w4()
        for cfg, run in runs.items():
            results[cfg] = run.res
    finally:
        for run in runs.values():
            run.stop()
        if mounted:
            subprocess.run(["umount", mounted])
            os.rmdir(mounted)
    results = {k: results[k] for k in sorted(results)}
    with open(args.out, "w") as f:
        json.dump({"provenance": args.provenance, "seed": args.seed, "observe": args.observe, "series_from_end": True, "results": results}, f, indent=1)
    text, goals = report(results, args)
    with open(args.md, "w") as f:
        f.write(text)
    plot(results, args.png)
    print(text)
    return 1 if any("FAIL" in g for g in goals) else 0


if __name__ == "__main__":
    G.exit_on_sigterm()
    sys.exit(main())
