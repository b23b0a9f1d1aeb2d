#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""make bench-pressure: balloond against memory pressure in a real guest (issue 4).

Usage: bench/pressure.py --initramfs PATH [--runs 20] [--seed N] [--only A,B,C,D]
                         [--out bench/results-pressure.json] [--md bench/results-pressure.md]
       bench/pressure.py --initramfs PATH --merge PART.json... [--out ...] [--md ...]

For each workload A (anonymous ramp), B (instant allocation), C (page-cache thrash),
D (file working set + anonymous ramp) it boots one 1 GiB QEMU TCG guest (1 vCPU, no
swap, an ext4 scratch disk on virtio-blk, virtio-balloon-pci with deflate-on-oom; the
guest's virtio_balloon is loaded from the start and kept empty except in kernel runs)
and, for each of RUNS randomized parameter sets (seeded; every set is recorded in the
JSON), runs three runs interleaved, in an order that rotates from set to set:

  baseline  the workload with no balloon at all (for the run-time ratio);
  balloond  balloond with its defaults, inflated to 50% of RAM (TARGET_REACHED, then 3 s),
            then the workload; the daemon is restarted for every run;
  kernel    virtio_balloon with deflate-on-oom=on holding the same size as balloond's
            balloon (QMP `balloon`), then the workload; emptied again afterwards.

Then a control guest runs E (idle, CPU-bound, I/O-bound, 10 s each) with balloond at
50% and counts DEFLATED events (spurious deflates).

Start state: the balloon's size when the workload starts (balloond: `query` actual and
the sampler's first Mlocked reading; kernel: RAM - `query-balloon` actual). A run whose
balloon was already smaller than asked is counted in `start_shrunk` and is a miss.

Metrics per run (all times on the guest's CLOCK_MONOTONIC, in µs on the wire):
  oom kills of the workload: the workload exited on a signal, or the kernel log names
      a victim that is not a balloon holder (holders are `balloond` processes other
      than the daemon); holder kills are counted separately;
  trigger (outside the daemon, from the workload's own sampling, WORKLOAD_PSI_MS=10):
      the earlier of `psi-stall-us` (below) and `floor-cross-us` (the first 10 ms sample
      with MemAvailable under balloond's MemAvailableFloor, from `info`). The workload's
      `alloc-stall-us` (its first 1 MiB step of touches that took >= 20 ms and >= 8x its
      fastest step) is recorded but not used: under TCG on a busy host a step that slow
      happens without any memory pressure (a trial run saw one in the first 100 µs);
  memory back (outside the daemon): an independent sampler in the guest (`workload
      mlockwatch 5`, started before the workload) records the first 5 ms sample at
      which Mlocked (the daemon's and its holders' locked chunks) was >= 1 MiB below
      its value at the start;
  end to end = memory back - trigger. Negative: the balloon gave memory back before the
      workload saw any sign of pressure (kept negative, counted). A run with a trigger
      but no drop is a miss ("no memory back"). Error: up to 10 ms (trigger sampling)
      plus 5 ms (sampler interval; `max-gap-us` records how late the sampler itself ran);
  response (the daemon's own figure): first-returned-at - signal-at of the run's first
      DEFLATED (`signal-at`: when the daemon's loop woke for the PSI trigger or timer tick
      that saw the signal; it does not include the floor timer's period); whole deflate
      = deflated-at - signal-at;
  detection (stall start -> signal): `psi-stall-us` is the first 10 ms sample of
      /proc/pressure/memory whose `some total` rose by >= 1 ms, back-dated by the rise
      (never before the previous sample), so it is late by at most one interval and
      early by at most the part of the rise that was not one contiguous stall;
      detection = signal-at of the first DEFLATED - psi-stall-us, kept as measured
      (negative: the daemon acted before the stall, counted in `negative`). A run that
      stalled but never deflated is a miss (`stalled_no_deflate`), not a run that needed
      no deflate; a run with neither a stall nor a deflate has no value;
  run time ratio: runtime-ms with the balloon / runtime-ms of the baseline run with the
      same parameters.
With 20 runs the tables give the median and the maximum (a p99 needs >= 100 runs);
goals are checked on the maximum. The kernel row has no response/detection values
(the driver reports nothing). Prints pass/FAIL per goal; a complete run (all of A-E,
or --merge) exits 1 on a miss; a partial run (--only) always exits 0 (the merge decides).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "vm"))
import guest as G  # noqa: E402

MiB = 1 << 20


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Session:
    """A host session on balloond's port (docs/protocol.md)."""

    def __init__(self, path: str, timeout: float = 60):
        self.sock = G.connect_unix(path, time.monotonic() + timeout)
        self.buf = b""
        self.events: list[dict] = []
        n = secrets.randbelow(1 << 53)
        self.sock.sendall(b"\xff" + json.dumps({"execute": "sync", "arguments": {"id": n}, "id": n}).encode() + b"\n")
        deadline = time.monotonic() + timeout
        while b"\xff" not in self.buf:
            self._recv(deadline)
        self.buf = self.buf[self.buf.rindex(b"\xff") + 1:]
        while True:
            msg = self._line(deadline)
            if msg.get("id") == n and msg.get("return") == n:
                break
        self.events = []

    def _recv(self, deadline: float) -> bool:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("balloond session timed out")
        self.sock.settimeout(min(left, 0.5))
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        if not data:
            raise ConnectionError("port closed")
        self.buf += data
        return True

    def _line(self, deadline: float | None) -> dict | None:
        while b"\n" not in self.buf:
            if deadline is None:
                return None
            self._recv(deadline)
        line, self.buf = self.buf.split(b"\n", 1)
        try:
            return json.loads(line.decode(errors="replace").strip("\xff"))
        except json.JSONDecodeError:
            return {}

    def call(self, execute: str, arguments: dict | None = None, timeout: float = 60) -> dict:
        rid = secrets.randbelow(1 << 53)
        msg = {"execute": execute, "id": rid}
        if arguments:
            msg["arguments"] = arguments
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        deadline = time.monotonic() + timeout
        while True:
            m = self._line(deadline)
            if "event" in m:
                self.events.append(m)
            elif m.get("id") == rid:
                if "error" in m:
                    raise RuntimeError(f"{execute}: {m['error']}")
                return m["return"]

    def poll_events(self, wait: float) -> None:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                self._recv(deadline)
            except TimeoutError:
                break
            while (m := self._line(None)) is not None:
                if "event" in m:
                    self.events.append(m)

    def wait_event(self, name: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for i, e in enumerate(self.events):
                if e["event"] == name:
                    del self.events[: i + 1]
                    return e
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no {name} within {timeout}s")
            self.poll_events(min(0.5, deadline - time.monotonic()))

    def close(self) -> None:
        self.sock.close()


class BenchGuest:
    def __init__(self, name: str, initramfs: str, balloon_device: bool):
        self.vm = G.BootedGuest(os.path.join(ROOT, "tests", "vm", "work", f"bench-{name}-{os.getpid()}"), initramfs,
                                boot_args=("--balloon-device", "--deflate-on-oom") if balloon_device else ())
        self.wd = self.vm.wd
        self.daemon_pid: int | None = None
        try:
            self.mem_total = int(self.sh("awk '/^MemTotal:/ {print $2}' /proc/meminfo")) * 1024
            self.facts = {"guest_cpu_model": self.sh("grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2-").strip(),
                          "guest_thp": self.sh("cat /sys/kernel/mm/transparent_hugepage/enabled")}
        except BaseException:
            self.vm.stop_vm(remove_workdir=False)
            raise

    def run(self, cmd: str, timeout: float = 300) -> tuple[int, str]:
        return self.vm.run(cmd, timeout)

    def sh(self, cmd: str, timeout: float = 300) -> str:
        return self.vm.sh(cmd, timeout)

    def vmstat(self, key: str) -> int:
        return int(self.sh(f"awk '$1 == \"{key}\" {{print $2}}' /proc/vmstat") or 0)

    def dmesg_kills(self) -> list[tuple[int, str]]:
        out = self.run("dmesg | grep -i 'killed process'")[1]
        return [(int(m.group(1)), m.group(2)) for m in re.finditer(r"Killed process (\d+) \(([^)]*)\)", out)]

    def start_daemon(self) -> Session:
        self.sh("printf '[Channel]\\nListen=virtio-serial:org.balloond.0\\n' > /tmp/b.conf")
        self.facts.setdefault("balloond_dump_config", self.sh("balloond --config /tmp/b.conf --dump-config"))
        self.daemon_pid = int(self.sh("balloond --config /tmp/b.conf >/tmp/balloond.log 2>&1 & echo $!"))
        for _ in range(300):
            if "started" in self.run("cat /tmp/balloond.log")[1]:
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("balloond did not start: " + self.run("cat /tmp/balloond.log")[1])
        return Session(os.path.join(self.wd, "port0.sock"))

    def stop_daemon(self) -> None:
        if self.daemon_pid:
            self.run(f"kill -TERM {self.daemon_pid}; while kill -0 {self.daemon_pid} 2>/dev/null; do sleep 0.1; done", 120)
            self.daemon_pid = None

    def start_watch(self) -> None:
        """The independent Mlocked sampler (workload mlockwatch), started before the workload."""
        self.sh("rm -f /tmp/mw.out; workload mlockwatch 5 >/tmp/mw.out 2>&1 </dev/null & echo $! >/tmp/mw.pid")

    def stop_watch(self) -> dict:
        self.sh("kill -TERM $(cat /tmp/mw.pid); while kill -0 $(cat /tmp/mw.pid) 2>/dev/null; do sleep 0.05; done")
        out = self.run("cat /tmp/mw.out")[1]
        return {k: int(v) for k, v in re.findall(r"([a-z-]+)=(-?\d+)", out)}

    def workload(self, cmd: str, session: Session | None, timeout: float = 300, floor: int = 0) -> tuple[int, str]:
        """Runs a workload in the background; collects events meanwhile."""
        env = "WORKLOAD_PSI_MS=10" + (f" WORKLOAD_FLOOR_KB={floor // 1024}" if floor else "")
        self.sh(f"rm -f /tmp/w.out /tmp/w.rc; ({env} {cmd} >/tmp/w.out 2>&1; echo $? >/tmp/w.rc) </dev/null >/dev/null 2>&1 &")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if session:
                session.poll_events(0.5)
            else:
                time.sleep(0.5)
            rc = self.run("cat /tmp/w.rc 2>/dev/null")[1].strip()
            if rc:
                if session:
                    session.poll_events(0.3)
                return int(rc), self.run("cat /tmp/w.out")[1]
        raise TimeoutError(f"workload {cmd} did not finish")

    def qmp(self, execute: str, arguments: dict | None = None) -> dict:
        return G.qmp(os.path.join(self.wd, "qmp.sock"), execute, arguments)

    def stop(self) -> None:
        self.vm.stop_vm(remove_workdir=False)


def parse_result(out: str) -> dict:
    m = re.search(r"workload (\S+) ok (.*)", out)
    if not m:
        return {}
    return {k: int(v) for k, v in re.findall(r"([a-z-]+)=(\d+)", m.group(2))}


def params_for(kind: str, rng: random.Random, ram_mb: int) -> dict:
    if kind == "A":
        return {"mb": int(ram_mb * rng.uniform(0.62, 0.72)), "rate": rng.choice([40, 60, 80, 120])}
    if kind == "B":
        return {"mb": int(ram_mb * rng.uniform(0.55, 0.62))}
    if kind == "C":
        return {"file_mb": rng.randrange(1200, 1500, 50), "seconds": rng.choice([4, 6, 8])}
    return {"file_mb": rng.randrange(128, 257, 32), "anon_mb": int(ram_mb * rng.uniform(0.40, 0.50)),
            "rate": rng.choice([40, 60, 80])}


def command_for(kind: str, p: dict) -> str:
    if kind == "A":
        return f"workload ramp {p['mb']} {p['rate']}"
    if kind == "B":
        return f"workload instant {p['mb']}"
    if kind == "C":
        return f"workload thrash /mnt/disk/big {p['seconds']}"
    return f"workload workingset /mnt/disk/ws {p['anon_mb']} {p['rate']}"


def prepare_files(g: BenchGuest, kind: str, p: dict) -> None:
    # A file of the run's size (re-created only when the size changes).
    name = "big" if kind == "C" else "ws"
    size = p["file_mb"]
    have = g.run(f"stat -c %s /mnt/disk/{name} 2>/dev/null")[1].strip()
    if have != str(size * MiB):
        g.sh(f"rm -f /mnt/disk/{name}; dd if=/dev/zero of=/mnt/disk/{name} bs=1M count={size} conv=fsync 2>/dev/null", 600)


def quiesce(g: BenchGuest) -> None:
    g.sh("sync; echo 3 > /proc/sys/vm/drop_caches; sleep 1")


def classify_kills(kills: list[tuple[int, str]], daemon_pid: int | None) -> tuple[int, int]:
    holders = sum(1 for pid, name in kills if name == "balloond" and pid != daemon_pid)
    return holders, len(kills) - holders


def first_of(*values: int | None) -> int | None:
    present = [v for v in values if v]
    return min(present) if present else None


def run_balloond(g: BenchGuest, kind: str, p: dict) -> dict:
    quiesce(g)
    s = g.start_daemon()
    try:
        half = g.mem_total // 2 // 4096 * 4096
        floor = s.call("info")["mem-available-floor"]
        s.call("set-target", {"target": half})
        s.wait_event("TARGET_REACHED", 300)
        g.sh("sleep 3")
        s.poll_events(0.2)
        s.events = []
        kills0 = len(g.dmesg_kills())
        oom0 = g.vmstat("oom_kill")
        g.start_watch()
        q0 = s.call("query")  # the balloon's size as the workload starts
        rc, out = g.workload(command_for(kind, p), s, floor=floor)
        watch = g.stop_watch()
        kills = g.dmesg_kills()[kills0:]
        holders, others = classify_kills(kills, g.daemon_pid)
        alive = g.run(f"kill -0 {g.daemon_pid}")[0] == 0
        q = s.call("query") if alive else {}
        deflates = [e["data"] for e in s.events if e["event"] == "DEFLATED"]
        r = parse_result(out)
        res = {"rc": rc, "runtime_ms": r.get("runtime-ms"), "oom_kill_delta": g.vmstat("oom_kill") - oom0,
               "holder_kills": holders, "workload_killed": rc != 0 or others > 0, "other_kills": others,
               "daemon_alive": alive, "actual_at_start": q0["actual"], "asked": half,
               "start_shrunk": q0["actual"] < half, "mlocked_at_start": watch.get("start-kb", 0) * 1024,
               "actual_after": q.get("actual"), "floor": floor, "watch": watch,
               "deflates": [{k: d.get(k) for k in ("bytes", "reason", "actual", "signal-at", "first-returned-at", "deflated-at")}
                            for d in deflates],
               "psi_stall_us": r.get("psi-stall-us"), "psi_some_us": r.get("psi-some-us"), "psi_full_us": r.get("psi-full-us"),
               "floor_cross_us": r.get("floor-cross-us"), "alloc_stall_us": r.get("alloc-stall-us"),
               "start_us": r.get("start-us")}
        trigger = first_of(r.get("psi-stall-us"), r.get("floor-cross-us"))
        drop = watch.get("first-drop-us") or None
        res["trigger_us"], res["memory_back_us"] = trigger, drop
        if trigger:
            res["trigger_kind"] = [k for k in ("psi-stall-us", "floor-cross-us") if r.get(k) == trigger][0]
            if drop:
                res["end_to_end_ms"] = (drop - trigger) / 1000
            else:
                res["no_memory_back"] = True
        timed = [d for d in deflates if "signal-at" in d]
        stall = r.get("psi-stall-us") or 0
        if timed:
            first = timed[0]
            res["response_ms"] = (first.get("first-returned-at", first["deflated-at"]) - first["signal-at"]) / 1000
            res["whole_deflate_ms"] = (first["deflated-at"] - first["signal-at"]) / 1000
            if stall:
                res["detection_ms"] = (first["signal-at"] - stall) / 1000
        elif stall:
            res["stalled_no_deflate"] = True
        return res
    finally:
        s.close()
        g.stop_daemon()


def run_baseline(g: BenchGuest, kind: str, p: dict) -> dict:
    quiesce(g)
    kills0 = len(g.dmesg_kills())
    rc, out = g.workload(command_for(kind, p), None)
    kills = g.dmesg_kills()[kills0:]
    return {"rc": rc, "runtime_ms": parse_result(out).get("runtime-ms"), "kills": len(kills)}


def kernel_balloon_set(g: BenchGuest, balloon_bytes: int, timeout: float = 300) -> int:
    value = g.mem_total_device - balloon_bytes
    g.qmp("balloon", {"value": value})
    deadline = time.monotonic() + timeout
    actual = 0
    while time.monotonic() < deadline:
        actual = g.qmp("query-balloon")["return"]["actual"]
        if abs(actual - value) < 2 * MiB:
            break
        time.sleep(0.5)
    return g.mem_total_device - actual


def run_kernel(g: BenchGuest, kind: str, p: dict) -> dict:
    quiesce(g)
    # The same size as balloond's balloon; emptied again after the run.
    size = g.mem_total // 2 // 4096 * 4096
    held = kernel_balloon_set(g, size)
    g.sh("sleep 3")
    kills0 = len(g.dmesg_kills())
    oom0 = g.vmstat("oom_kill")
    rc, out = g.workload(command_for(kind, p), None)
    kills = g.dmesg_kills()[kills0:]
    after = g.mem_total_device - g.qmp("query-balloon")["return"]["actual"]
    kernel_balloon_set(g, 0)
    r = parse_result(out)
    return {"rc": rc, "runtime_ms": r.get("runtime-ms"), "oom_kill_delta": g.vmstat("oom_kill") - oom0,
            "workload_killed": rc != 0 or len(kills) > 0, "other_kills": len(kills), "held_before": held,
            "asked": size, "start_shrunk": held < size - 2 * MiB,
            "held_after": after, "psi_stall_us": r.get("psi-stall-us")}


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(round(q / 100 * len(v) + 0.5)) - 1))
    return v[k]


def spread(values: list[float]) -> dict:
    """n, median and maximum (a p99 only from 100 values on); how many are negative."""
    d = {"n": len(values), "p50": pct(values, 50), "max": max(values) if values else None,
         "min": min(values) if values else None, "negative": sum(1 for v in values if v < 0)}
    if len(values) >= 100:
        d["p99"] = pct(values, 99)
    return d


def summarize(rows: list[dict], baseline: list[dict]) -> dict:
    pairs = [(r, b) for r, b in zip(rows, baseline)
             if r.get("runtime_ms") and b.get("runtime_ms") and r["rc"] == 0 and b["rc"] == 0]
    ratios = [r["runtime_ms"] / b["runtime_ms"] for r, b in pairs]
    # Pairs over the goal, and whether the workload stalled on memory in them
    # at all (PSI `some` in the balloon run): a slow pair without any memory
    # stall is TCG timing noise, not the balloon.
    slow = [(r, b) for r, b in pairs if r["runtime_ms"] / b["runtime_ms"] > 1.3]
    ratio = spread(ratios)
    ratio.update({"total": (sum(r["runtime_ms"] for r, _ in pairs) / sum(b["runtime_ms"] for _, b in pairs)) if pairs else None,
                  "over_1_3": len(slow), "over_1_3_memory_stall_us": [r.get("psi_some_us") for r, _ in slow]})
    return {
        "runs": len(rows),
        "workload_oom_kills": sum(1 for r in rows if r.get("workload_killed")),
        "holder_kills": sum(r.get("holder_kills", 0) for r in rows),
        "daemon_alive": sum(1 for r in rows if r.get("daemon_alive")) if any("daemon_alive" in r for r in rows) else None,
        "start_shrunk": sum(1 for r in rows if r.get("start_shrunk")),
        "no_deflate_runs": sum(1 for r in rows if "deflates" in r and not r["deflates"]),
        "no_stall_runs": sum(1 for r in rows if "psi_stall_us" in r and not r["psi_stall_us"]),
        "stalled_no_deflate": sum(1 for r in rows if r.get("stalled_no_deflate")),
        "no_trigger_runs": sum(1 for r in rows if "trigger_us" in r and not r["trigger_us"]),
        "no_memory_back": sum(1 for r in rows if r.get("no_memory_back")),
        "end_to_end_ms": spread([r["end_to_end_ms"] for r in rows if "end_to_end_ms" in r]),
        "response_ms": spread([r["response_ms"] for r in rows if "response_ms" in r]),
        "whole_deflate_ms": spread([r["whole_deflate_ms"] for r in rows if "whole_deflate_ms" in r]),
        "detection_ms": spread([r["detection_ms"] for r in rows if "detection_ms" in r]),
        "runtime_ratio": ratio,
    }


def goals(results: dict) -> list[tuple[str, bool, str]]:
    """(goal, met, figure) for every workload's balloond row and the controls."""
    out = []
    lim = lambda d: d.get("p99", d["max"])  # noqa: E731  (the maximum below 100 runs)
    for kind, w in results["workloads"].items():
        s = w["summary"]["balloond"]
        n = s["runs"]
        out += [
            (f"{kind}: no workload OOM kill", s["workload_oom_kills"] == 0, f"{s['workload_oom_kills']}/{n}"),
            (f"{kind}: balloond alive after every run", s["daemon_alive"] == n, f"{s['daemon_alive']}/{n}"),
            (f"{kind}: every run starts with the full balloon", s["start_shrunk"] == 0 and w["summary"]["kernel"]["start_shrunk"] == 0,
             f"balloond {s['start_shrunk']}, kernel {w['summary']['kernel']['start_shrunk']} shrunk at start"),
            (f"{kind}: every stall answered by a deflate", s["stalled_no_deflate"] == 0, f"{s['stalled_no_deflate']} stalled without one"),
            (f"{kind}: memory back after every trigger", s["no_memory_back"] == 0, f"{s['no_memory_back']} without"),
            (f"{kind}: end to end (trigger -> Mlocked drops) max <= 450 ms (detection + response goals)",
             s["end_to_end_ms"]["n"] == 0 or lim(s["end_to_end_ms"]) <= 450, fmt_spread(s["end_to_end_ms"])),
            (f"{kind}: response (daemon's signal -> first memory back) max <= 100 ms",
             s["response_ms"]["n"] == 0 or lim(s["response_ms"]) <= 100, fmt_spread(s["response_ms"])),
            (f"{kind}: stall -> detection max <= 350 ms", s["detection_ms"]["n"] == 0 or lim(s["detection_ms"]) <= 350,
             fmt_spread(s["detection_ms"])),
            (f"{kind}: run time over all runs <= 1.3x no balloon", (s["runtime_ratio"]["total"] or 0) <= 1.3,
             f"{fmt(s['runtime_ratio']['total'])}x"),
        ]
    if "controls" in results:
        c = results["controls"]
        spurious = sum(v["deflates"] for v in c.values())
        out.append(("E: no spurious deflate", spurious == 0, ", ".join(f"{k} {v['deflates']}" for k, v in c.items())))
    return out


def fmt_spread(d: dict, unit: str = "") -> str:
    if not d["n"]:
        return "n=0"
    t = f"{fmt(d['p50'])} / {fmt(d['max'])}{unit} (n={d['n']}"
    if "p99" in d:
        t += f", p99 {fmt(d['p99'])}"
    return t + (f", {d['negative']} negative" if d["negative"] else "") + ")"


def provenance(initramfs: str) -> dict:
    def out(argv: list[str]) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""
    dirty = subprocess.run(["git", "-C", ROOT, "diff", "--quiet", "HEAD", "--", "Sources", "Package.swift", "bench",
                            "tests/vm", "scripts"]).returncode != 0
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    return {"commit": out(["git", "-C", ROOT, "rev-parse", "HEAD"]) + ("-dirty" if dirty else ""),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "host_cpus": os.cpu_count(), "host_cpu_model": cpu,
            "host_kernel": os.uname().release, "load_average_at_start": list(os.getloadavg()),
            "qemu": out(["qemu-system-x86_64", "--version"]).splitlines()[0] if out(["qemu-system-x86_64", "--version"]) else "?",
            "initramfs": initramfs}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--initramfs", required=True)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--only", default="A,B,C,D,E")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/results-pressure.json"))
    ap.add_argument("--md", default=os.path.join(ROOT, "bench/results-pressure.md"))
    ap.add_argument("--merge", nargs="*", help="combine partial JSON results (runs in parallel guests) into --out/--md")
    a = ap.parse_args()
    if a.merge:
        parts = [json.load(open(p)) for p in a.merge]
        merged = dict(parts[0])
        merged["workloads"] = {}
        merged["guests"] = {}
        merged["provenance"] = {**parts[0].get("provenance", {}), "merged_parts": [p_.get("provenance") for p_ in parts]}
        commits = {p_.get("provenance", {}).get("commit") for p_ in parts}
        if len(commits) > 1:
            merged["provenance"]["commit"] = " + ".join(sorted(str(c) for c in commits))
        for part in parts:
            merged["workloads"].update(part.get("workloads", {}))
            merged["guests"].update(part.get("guests", {}))
            if "controls" in part:
                merged["controls"] = part["controls"]
        merged["workloads"] = dict(sorted(merged["workloads"].items()))
        for w in merged["workloads"].values():
            w["summary"] = {"balloond": summarize(w["balloond"], w["baseline"]), "kernel": summarize(w["kernel"], w["baseline"])}
        merged["parallel_guests"] = len(parts)
        return 0 if write(merged, a, time.time() - max(p.get("elapsed_s", 0) for p in parts)) else 1
    seed = a.seed if a.seed is not None else random.randrange(1 << 32)
    started = time.time()
    results: dict = {"provenance": provenance(a.initramfs), "seed": seed, "runs_per_workload": a.runs,
                     "guest": "QEMU TCG, 1 vCPU, 1 GiB, no swap, Debian 12 cloud kernel, ext4 on virtio-blk (cache=none)",
                     "guests": {}, "workloads": {}}
    names = {"A": "anonymous ramp", "B": "instant allocation", "C": "page-cache thrash", "D": "file working set + anonymous ramp"}
    for kind in [k for k in "ABCD" if k in a.only.split(",")]:
        log(f"workload {kind} ({names[kind]}): booting")
        g = BenchGuest(kind, a.initramfs, balloon_device=True)
        try:
            ram_mb = g.mem_total // MiB
            g.mem_total_device = 1 << 30  # QMP `balloon` values are relative to -m 1G
            rng = random.Random(f"{seed}-{kind}")  # per workload: the same runs whichever guests run them
            plist = [params_for(kind, rng, ram_mb) for _ in range(a.runs)]
            bl, bd, kr = [], [], []
            # Loaded from the start (and empty outside kernel runs) so all three
            # runs of a set meet the same guest.
            g.sh("vmload virtio_balloon")
            kernel_balloon_set(g, 0)
            plan = (("baseline", run_baseline, bl), ("balloond", run_balloond, bd), ("kernel", run_kernel, kr))
            for i, p in enumerate(plist):
                if kind in "CD":
                    prepare_files(g, kind, p)
                order = plan[i % 3:] + plan[:i % 3]  # who goes first rotates
                for _, fn, into in order:
                    into.append(fn(g, kind, p))
                r, k = bd[-1], kr[-1]
                log(f"  {kind}{i} {p} order {[o[0] for o in order]}: baseline {bl[-1]['runtime_ms']} ms; balloond rc={r['rc']} "
                    f"{r['runtime_ms']} ms start {r['actual_at_start'] // MiB} MiB holders-killed={r['holder_kills']} "
                    f"other-kills={r['other_kills']} end-to-end={r.get('end_to_end_ms')} ({r.get('trigger_kind')}) "
                    f"response={r.get('response_ms')} detection={r.get('detection_ms')} "
                    f"deflates={[(d['reason'], (d['bytes'] or 0) // MiB) for d in r['deflates']]}; kernel rc={k['rc']} "
                    f"{k['runtime_ms']} ms kills={k['other_kills']} held {k['held_before'] // MiB}->{k['held_after'] // MiB} MiB")
            results["guests"][kind] = g.facts
            results["workloads"][kind] = {
                "name": names[kind], "params": plist, "baseline": bl, "balloond": bd, "kernel": kr,
                "summary": {"balloond": summarize(bd, bl), "kernel": summarize(kr, bl)},
            }
        finally:
            g.stop()
        write(results, a, started, final=False)  # saved after every workload
    if "E" in a.only.split(","):
        log("controls E: booting")
        g = BenchGuest("E", a.initramfs, balloon_device=False)
        try:
            s = g.start_daemon()
            s.call("set-target", {"target": g.mem_total // 2 // 4096 * 4096})
            s.wait_event("TARGET_REACHED", 300)
            g.sh("sleep 3")
            s.poll_events(0.2)
            s.events = []
            results["guests"]["E"] = g.facts
            ctl = {}
            for name, cmd in [("idle", "workload idle 10"), ("cpu", "workload cpu 10"), ("io", "workload io /mnt/disk/io 10")]:
                before = len([e for e in s.events if e["event"] == "DEFLATED"])
                q0 = s.call("query")
                rc, out = g.workload(cmd, s)
                after = len([e for e in s.events if e["event"] == "DEFLATED"])
                ctl[name] = {"rc": rc, "deflates": after - before, "actual_at_start": q0["actual"]}
                log(f"  E {name}: rc={rc} deflates={after - before}")
            results["controls"] = ctl
            s.close()
            g.stop_daemon()
        finally:
            g.stop()
    ok = write(results, a, started)
    complete = set("ABCDE") <= set(a.only.split(","))
    return 0 if ok or not complete else 1


def fmt(v, unit="") -> str:
    if v is None:
        return "–"
    return f"{v:.2f}{unit}" if isinstance(v, float) else f"{v}{unit}"


def write(results: dict, a, started: float, final: bool = True) -> bool:
    """Writes the JSON and the Markdown; prints pass/FAIL per goal; whether all were met."""
    results["elapsed_s"] = round(time.time() - started)
    checks = goals(results)
    results["goals"] = [{"goal": g_, "pass": ok, "figure": fig} for g_, ok, fig in checks]
    results["pass"] = all(ok for _, ok, _ in checks)
    with open(a.out, "w") as f:
        json.dump(results, f, indent=1)
    pv = results.get("provenance", {})
    guests = results.get("guests", {})
    cpus = sorted({g_.get("guest_cpu_model", "?") for g_ in guests.values()})
    thps = sorted({g_.get("guest_thp", "?") for g_ in guests.values()})
    configs = sorted({g_.get("balloond_dump_config", "") for g_ in guests.values()} - {""})
    settings = " ".join(f"`{l}`" for l in (configs[0] if configs else "").splitlines() if l and not l.startswith("#") and "=" in l)
    lines = [
        "# Pressure benchmark (`make bench-pressure`)", "",
        f"Commit `{pv.get('commit', '?')}`, {pv.get('date', '?')}; host {pv.get('host_cpus', '?')} CPUs "
        f"({pv.get('host_cpu_model', '?')}), kernel {pv.get('host_kernel', '?')}, load average at start "
        f"{' '.join(f'{x:.2f}' for x in pv.get('load_average_at_start', []))}; {pv.get('qemu', '?')}. "
        f"Guest CPU model {', '.join(cpus)}; guest THP `{', '.join(thps)}`.",
        "", f"balloond's effective settings in the guest (`balloond --dump-config`): {settings or '?'}"
        + (" (differs between guests: see the JSON)" if len(configs) > 1 else "") + ".", "",
        f"Seed {results['seed']}, {results['runs_per_workload']} randomized runs per workload, {results['guest']}; "
        f"balloond with its defaults at 50% of RAM vs the kernel's virtio_balloon (deflate-on-oom=on) "
        f"holding the same size; baseline, balloond and kernel runs interleaved, the first of each set rotating; "
        f"{results['elapsed_s']} s"
        + (f" in {results['parallel_guests']} guests at a time (2 host cores)" if results.get("parallel_guests") else "")
        + ". Definitions: bench/pressure.py. Times: median / max (n).", "",
        "| workload | balloon | workload OOM kills | holders killed | daemon alive | shrunk at start "
        "| end to end: trigger → Mlocked drops, ms (outside) | signal → first memory back, ms (daemon's own) "
        "| stall → detection, ms | stalled, no deflate | run time vs no balloon: all runs / median / max |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, w in results["workloads"].items():
        for row in ("balloond", "kernel"):
            s = w["summary"][row]
            n = s["runs"]
            rt = s["runtime_ratio"]
            rr = f"{fmt(rt.get('total'))}× / {fmt(rt['p50'])}× / {fmt(rt['max'])}×"
            if rt.get("over_1_3"):
                stalls = rt.get("over_1_3_memory_stall_us") or []
                rr += (f"; {rt['over_1_3']} runs over 1.3×" + (f", memory stall in them (PSI some) {', '.join(f'{(x or 0) / 1000:.0f}' for x in stalls)} ms"
                                                              if row == "balloond" else ""))
            if row == "balloond":
                e2e = fmt_spread(s["end_to_end_ms"]) + (f"; {s['no_memory_back']} with no memory back" if s["no_memory_back"] else "") \
                    + (f"; {s['no_trigger_runs']} runs without a trigger" if s["no_trigger_runs"] else "")
                cells = [f"{s['workload_oom_kills']}/{n}", str(s["holder_kills"]), f"{s['daemon_alive']}/{n}", str(s["start_shrunk"]),
                         e2e, fmt_spread(s["response_ms"]) + (f"; {s['no_deflate_runs']} runs without a deflate" if s["no_deflate_runs"] else ""),
                         fmt_spread(s["detection_ms"]) + f"; {s['no_stall_runs']} runs without a stall", str(s["stalled_no_deflate"]), rr]
            else:
                cells = [f"{s['workload_oom_kills']}/{n}", "n/a", "n/a", str(s["start_shrunk"]), "n/a", "n/a", "n/a", "n/a", rr]
            lines.append(f"| {kind} {w['name']} | {row if row == 'balloond' else 'virtio_balloon deflate-on-oom'} | " + " | ".join(cells) + " |")
    if "controls" in results:
        c = results["controls"]
        lines += ["", "Spurious deflates in E: " + ", ".join(f"{k} {v['deflates']}" for k, v in c.items())]
    lines += ["", "## Goals", "", "| goal | figure | |", "|---|---|---|"]
    lines += [f"| {g_} | {fig} | {'pass' if ok else '**FAIL**'} |" for g_, ok, fig in checks]
    lines += ["", f"Overall: {'pass' if results['pass'] else '**FAIL**'}.", "",
              "End to end is measured outside the daemon: the trigger is the workload's own first sign of pressure "
              "(its PSI sampler's first stall or its first MemAvailable sample under the floor, whichever came "
              "first), memory back is the first 5 ms sample of an independent in-guest sampler showing Mlocked ≥ 1 MiB "
              "below its start. Negative end-to-end values (memory back before the trigger: the daemon acted on an "
              "earlier signal) and negative detections are kept and counted, not clamped. The whole first deflate "
              "(`deflated-at - signal-at`), median / max ms: " + "; ".join(
                  f"{k} {fmt_spread(w['summary']['balloond']['whole_deflate_ms'])}" for k, w in results["workloads"].items())
              + ". Run time: \"all runs\" is the summed run time with the balloon over the summed run time of the "
              "no-balloon runs of the same parameters (same guest); median and max are of the per-pair ratios. TCG "
              "timing noise between two runs is large, so a pair's ratio mostly measures that noise; the memory stall "
              "the workload saw in the pairs over 1.3× tells whether the balloon had anything to do with them."]
    with open(a.md, "w") as f:
        f.write("\n".join(lines) + "\n")
    for g_, ok, fig in checks if final else []:
        log(f"{'pass' if ok else 'FAIL'}: {g_}: {fig}")
    return results["pass"]


if __name__ == "__main__":
    G.exit_on_sigterm()
    sys.exit(main())
