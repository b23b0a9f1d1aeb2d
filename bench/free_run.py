# SPDX-License-Identifier: Apache-2.0
"""bench/free.py's guests: one configuration's guest and its workloads (Run), the RAM
file's sampler, and workload 3 in simultaneous pairs (w3_rounds)."""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
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
