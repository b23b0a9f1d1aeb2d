#!/usr/bin/env python3
"""make bench-pressure: balloond against memory pressure in a real guest (issue 4).

Usage: bench/pressure.py --initramfs PATH [--runs 20] [--seed N] [--only A,B,C,D]
                         [--out bench/results-pressure.json] [--md bench/results-pressure.md]

For each workload A (anonymous ramp), B (instant allocation), C (page-cache thrash),
D (file working set + anonymous ramp) it boots one 1 GiB QEMU TCG guest (1 vCPU, no
swap, an ext4 scratch disk on virtio-blk) and does, for each of RUNS randomized
parameter sets (seeded; every set is recorded in the JSON):

  baseline  the workload with no balloon at all (for the run-time ratio);
  balloond  balloond with its defaults, inflated to 50% of RAM (TARGET_REACHED, then 3 s),
            then the workload; the daemon is restarted for every run;
  kernel    (after all balloond runs, in the same guest) virtio_balloon with
            deflate-on-oom=on, QMP `balloon` to RAM - 512 MiB, then the workload.

Then a control guest runs E (idle, CPU-bound, I/O-bound, 10 s each) with balloond at
50% and counts DEFLATED events (spurious deflates).

Metrics per run:
  oom kills of the workload: the workload exited on a signal, or the kernel log names
      a victim that is not a balloon holder (holders are `balloond` processes other
      than the daemon); holder kills are counted separately;
  response (signal -> first memory back): the first DEFLATED of the run carries
      `signal-at` (CLOCK_MONOTONIC µs when the daemon's loop woke for the PSI trigger or
      timer tick that saw the signal), `first-returned-at` (when the first chunk, or
      part of one, was back with the kernel) and `deflated-at` (when all of that
      deflate was); response = first-returned-at - signal-at (deflated-at when the
      event has no first-returned-at); whole deflate = deflated-at - signal-at;
  detection (stall start -> signal): the workload samples /proc/pressure/memory every
      10 ms (WORKLOAD_PSI_MS=10) and reports `psi-stall-us`, when the first stall of
      the run began (first 10 ms sample whose `some total` rose by >= 1 ms, back-dated
      by the rise); detection = signal-at of the first DEFLATED - psi-stall-us, 0 when
      the daemon acted before any stall (the floor or vmstat saw it coming); runs with
      no stall at all have no detection value;
  run time ratio: runtime-ms with the balloon / runtime-ms of the baseline run with the
      same parameters.
The kernel row has no response/detection values (the driver reports nothing).
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
        self.wd = os.path.join(ROOT, "tests", "vm", "work", f"bench-{name}-{os.getpid()}")
        self.disk = self.wd + ".img"
        subprocess.run(["truncate", "-s", "2G", self.disk], check=True)
        subprocess.run(["mkfs.ext4", "-F", "-q", "-E", "lazy_itable_init=0,lazy_journal_init=0", self.disk], check=True)
        args = [os.path.join(ROOT, "tests/vm/boot.sh"), "-w", self.wd, "-i", initramfs, "-m", "1G",
                "--timeout", "3600", "--ready-timeout", "120",
                "--qemu-arg", "-drive", "--qemu-arg", f"file={self.disk},if=virtio,format=raw,cache=none"]
        if balloon_device:
            args += ["--balloon-device", "--deflate-on-oom"]
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
        self.agent = G.Agent(os.path.join(self.wd, "control.sock"), 60, self.wd)
        self.sh("vmload virtio_blk && mkdir -p /mnt/disk && mount -t ext4 /dev/vda /mnt/disk")
        self.mem_total = int(self.sh("awk '/^MemTotal:/ {print $2}' /proc/meminfo")) * 1024
        self.daemon_pid: int | None = None

    def run(self, cmd: str, timeout: float = 300) -> tuple[int, str]:
        rc, out = self.agent.run(cmd, timeout)
        return rc, out.decode(errors="replace")

    def sh(self, cmd: str, timeout: float = 300) -> str:
        rc, out = self.run(cmd, timeout)
        if rc != 0:
            raise RuntimeError(f"guest `{cmd}` exited {rc}: {out}")
        return out.strip()

    def vmstat(self, key: str) -> int:
        return int(self.sh(f"awk '$1 == \"{key}\" {{print $2}}' /proc/vmstat") or 0)

    def dmesg_kills(self) -> list[tuple[int, str]]:
        out = self.run("dmesg | grep -i 'killed process'")[1]
        return [(int(m.group(1)), m.group(2)) for m in re.finditer(r"Killed process (\d+) \(([^)]*)\)", out)]

    def start_daemon(self) -> Session:
        self.sh("printf '[Channel]\\nListen=virtio-serial:org.balloond.0\\n' > /tmp/b.conf")
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

    def workload(self, cmd: str, session: Session | None, timeout: float = 300) -> tuple[int, str]:
        """Runs a workload in the background; collects events meanwhile."""
        self.sh(f"rm -f /tmp/w.out /tmp/w.rc; (WORKLOAD_PSI_MS=10 {cmd} >/tmp/w.out 2>&1; echo $? >/tmp/w.rc) </dev/null >/dev/null 2>&1 &")
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
        try:
            self.agent.close()
        except Exception:
            pass
        subprocess.run([os.path.join(ROOT, "tests/vm/stop.sh"), self.wd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for p in (self.disk,):
            try:
                os.remove(p)
            except OSError:
                pass


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


def run_balloond(g: BenchGuest, kind: str, p: dict) -> dict:
    quiesce(g)
    s = g.start_daemon()
    try:
        half = g.mem_total // 2 // 4096 * 4096
        s.call("set-target", {"target": half})
        s.wait_event("TARGET_REACHED", 300)
        g.sh("sleep 3")
        s.poll_events(0.2)
        s.events = []
        kills0 = len(g.dmesg_kills())
        oom0 = g.vmstat("oom_kill")
        rc, out = g.workload(command_for(kind, p), s)
        kills = g.dmesg_kills()[kills0:]
        holders, others = classify_kills(kills, g.daemon_pid)
        alive = g.run(f"kill -0 {g.daemon_pid}")[0] == 0
        q = s.call("query") if alive else {}
        deflates = [e["data"] for e in s.events if e["event"] == "DEFLATED"]
        r = parse_result(out)
        res = {"rc": rc, "runtime_ms": r.get("runtime-ms"), "oom_kill_delta": g.vmstat("oom_kill") - oom0,
               "holder_kills": holders, "workload_killed": rc != 0 or others > 0, "other_kills": others,
               "daemon_alive": alive, "actual_after": q.get("actual"),
               "deflates": [{k: d.get(k) for k in ("bytes", "reason", "actual", "signal-at", "first-returned-at", "deflated-at")}
                            for d in deflates],
               "psi_stall_us": r.get("psi-stall-us"), "psi_some_us": r.get("psi-some-us"), "psi_full_us": r.get("psi-full-us"),
               "start_us": r.get("start-us")}
        timed = [d for d in deflates if "signal-at" in d]
        if timed:
            first = timed[0]
            res["response_ms"] = (first.get("first-returned-at", first["deflated-at"]) - first["signal-at"]) / 1000
            res["whole_deflate_ms"] = (first["deflated-at"] - first["signal-at"]) / 1000
            stall = r.get("psi-stall-us") or 0
            if stall:
                res["detection_raw_ms"] = (first["signal-at"] - stall) / 1000
                res["detection_ms"] = max(0.0, res["detection_raw_ms"])
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
    # Setting the value again re-inflates whatever deflate-on-oom gave back.
    held = kernel_balloon_set(g, 512 * MiB)
    g.sh("sleep 3")
    kills0 = len(g.dmesg_kills())
    oom0 = g.vmstat("oom_kill")
    rc, out = g.workload(command_for(kind, p), None)
    kills = g.dmesg_kills()[kills0:]
    after = g.mem_total_device - g.qmp("query-balloon")["return"]["actual"]
    r = parse_result(out)
    return {"rc": rc, "runtime_ms": r.get("runtime-ms"), "oom_kill_delta": g.vmstat("oom_kill") - oom0,
            "workload_killed": rc != 0 or len(kills) > 0, "other_kills": len(kills), "held_before": held,
            "held_after": after, "psi_stall_us": r.get("psi-stall-us")}


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(round(q / 100 * len(v) + 0.5)) - 1))
    return v[k]


def summarize(rows: list[dict], baseline: list[dict]) -> dict:
    pairs = [(r, b) for r, b in zip(rows, baseline)
             if r.get("runtime_ms") and b.get("runtime_ms") and r["rc"] == 0 and b["rc"] == 0]
    ratios = [r["runtime_ms"] / b["runtime_ms"] for r, b in pairs]
    # Pairs over the goal, and whether the workload stalled on memory in them
    # at all (PSI `some` in the balloon run): a slow pair without any memory
    # stall is TCG timing noise, not the balloon.
    slow = [(r, b) for r, b in pairs if r["runtime_ms"] / b["runtime_ms"] > 1.3]
    resp = [r["response_ms"] for r in rows if "response_ms" in r]
    whole = [r["whole_deflate_ms"] for r in rows if "whole_deflate_ms" in r]
    det = [r["detection_ms"] for r in rows if "detection_ms" in r]
    return {
        "runs": len(rows),
        "workload_oom_kills": sum(1 for r in rows if r.get("workload_killed")),
        "holder_kills": sum(r.get("holder_kills", 0) for r in rows),
        "no_deflate_runs": sum(1 for r in rows if "deflates" in r and not r["deflates"]),
        "no_stall_runs": sum(1 for r in rows if "psi_stall_us" in r and not r["psi_stall_us"]),
        "response_ms": {"n": len(resp), "p50": pct(resp, 50), "p99": pct(resp, 99), "max": max(resp) if resp else None},
        "whole_deflate_ms": {"n": len(whole), "p50": pct(whole, 50), "p99": pct(whole, 99), "max": max(whole) if whole else None},
        "detection_ms": {"n": len(det), "p50": pct(det, 50), "p99": pct(det, 99), "max": max(det) if det else None},
        "runtime_ratio": {"n": len(ratios), "p50": pct(ratios, 50), "p99": pct(ratios, 99), "max": max(ratios) if ratios else None,
                          "total": (sum(r["runtime_ms"] for r, _ in pairs) / sum(b["runtime_ms"] for _, b in pairs)) if pairs else None,
                          "over_1_3": len(slow),
                          "over_1_3_memory_stall_us": [r.get("psi_some_us") for r, _ in slow]},
    }


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
        for part in parts:
            merged["workloads"].update(part.get("workloads", {}))
            if "controls" in part:
                merged["controls"] = part["controls"]
        merged["workloads"] = dict(sorted(merged["workloads"].items()))
        for w in merged["workloads"].values():
            w["summary"] = {"balloond": summarize(w["balloond"], w["baseline"]), "kernel": summarize(w["kernel"], w["baseline"])}
        merged["parallel_guests"] = len(parts)
        write(merged, a, time.time() - max(p.get("elapsed_s", 0) for p in parts))
        return 0
    seed = a.seed if a.seed is not None else random.randrange(1 << 32)
    started = time.time()
    results: dict = {"seed": seed, "runs_per_workload": a.runs, "guest": "QEMU TCG, 1 vCPU, 1 GiB, no swap, "
                     "Debian 12 cloud kernel, ext4 on virtio-blk (cache=none)", "workloads": {}}
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
            for i, p in enumerate(plist):
                if kind in "CD":
                    prepare_files(g, kind, p)
                bl.append(run_baseline(g, kind, p))
                bd.append(run_balloond(g, kind, p))
                r = bd[-1]
                log(f"  {kind}{i} {p}: baseline {bl[-1]['runtime_ms']} ms; balloond rc={r['rc']} {r['runtime_ms']} ms "
                    f"holders-killed={r['holder_kills']} other-kills={r['other_kills']} response={r.get('response_ms')} "
                    f"detection={r.get('detection_raw_ms')} deflates={[(d['reason'], (d['bytes'] or 0) // MiB) for d in r['deflates']]}")
            g.sh("vmload virtio_balloon")
            for i, p in enumerate(plist):
                if kind in "CD":
                    prepare_files(g, kind, p)
                kr.append(run_kernel(g, kind, p))
                log(f"  {kind}{i} kernel: rc={kr[-1]['rc']} {kr[-1]['runtime_ms']} ms kills={kr[-1]['other_kills']} "
                    f"held {kr[-1]['held_before'] // MiB}->{kr[-1]['held_after'] // MiB} MiB")
            kernel_balloon_set(g, 0)
            results["workloads"][kind] = {
                "name": names[kind], "params": plist, "baseline": bl, "balloond": bd, "kernel": kr,
                "summary": {"balloond": summarize(bd, bl), "kernel": summarize(kr, bl)},
            }
        finally:
            g.stop()
        write(results, a, started)
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
            ctl = {}
            for name, cmd in [("idle", "workload idle 10"), ("cpu", "workload cpu 10"), ("io", "workload io /mnt/disk/io 10")]:
                before = len([e for e in s.events if e["event"] == "DEFLATED"])
                rc, out = g.workload(cmd, s)
                after = len([e for e in s.events if e["event"] == "DEFLATED"])
                ctl[name] = {"rc": rc, "deflates": after - before}
                log(f"  E {name}: rc={rc} deflates={after - before}")
            results["controls"] = ctl
            s.close()
            g.stop_daemon()
        finally:
            g.stop()
    write(results, a, started)
    return 0


def fmt(v, unit="") -> str:
    if v is None:
        return "–"
    return f"{v:.2f}{unit}" if isinstance(v, float) else f"{v}{unit}"


def write(results: dict, a, started: float) -> None:
    results["elapsed_s"] = round(time.time() - started)
    with open(a.out, "w") as f:
        json.dump(results, f, indent=1)
    lines = [
        "# Pressure benchmark (`make bench-pressure`)", "",
        f"Seed {results['seed']}, {results['runs_per_workload']} randomized runs per workload, {results['guest']}; "
        f"balloond with its defaults at 50% of RAM vs the kernel's virtio_balloon (deflate-on-oom=on) "
        f"holding 512 MiB; {results['elapsed_s']} s"
        + (f" in {results['parallel_guests']} guests at a time (2 host cores)" if results.get("parallel_guests") else "")
        + ". Definitions: bench/pressure.py.", "",
        "| workload | balloon | workload OOM kills (goal 0) | holders killed | signal → first memory back p50 / p99 ms (goal p99 ≤ 100) "
        "| stall → detection p50 / p99 ms (goal p99 ≤ 350) | run time vs no balloon: all runs / p50 / p99 (goal ≤ 1.3×) |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, w in results["workloads"].items():
        for row in ("balloond", "kernel"):
            s = w["summary"][row]
            resp = f"{fmt(s['response_ms']['p50'])} / {fmt(s['response_ms']['p99'])} (n={s['response_ms']['n']})" if row == "balloond" else "n/a"
            det = (f"{fmt(s['detection_ms']['p50'])} / {fmt(s['detection_ms']['p99'])} (n={s['detection_ms']['n']}; "
                   f"{s.get('no_stall_runs', 0)} runs without any stall)") if row == "balloond" else "n/a"
            if row == "balloond" and s.get("no_deflate_runs"):
                resp += f"; {s['no_deflate_runs']} runs needed no deflate"
            rt = s["runtime_ratio"]
            rr = f"{fmt(rt.get('total'))}× / {fmt(rt['p50'])}× / {fmt(rt['p99'])}×"
            if rt.get("over_1_3"):
                stalls = rt.get("over_1_3_memory_stall_us") or []
                rr += (f"; {rt['over_1_3']} runs over 1.3×" + (f", memory stall in them (PSI some) {', '.join(f'{(x or 0) / 1000:.0f}' for x in stalls)} ms"
                                                              if row == "balloond" else ""))
            hk = str(s["holder_kills"]) if row == "balloond" else "n/a"
            lines.append(f"| {kind} {w['name']} | {row if row == 'balloond' else 'virtio_balloon deflate-on-oom'} | "
                         f"{s['workload_oom_kills']}/{s['runs']} | {hk} | {resp} | {det} | {rr} |")
    if "controls" in results:
        c = results["controls"]
        lines += ["", "Spurious deflates in E (goal 0): " + ", ".join(f"{k} {v['deflates']}" for k, v in c.items())]
    lines += ["", "Runs without any stall: the workload's 10 ms PSI sampler never saw `some` rise by 1 ms (A, B, D: "
              "balloond's MemAvailable floor gave memory back before the kernel had to stall anyone; C: short runs "
              "that never re-read the file, which also needed no deflate); there is no detection delay to measure. Response = `first-returned-at - signal-at` of the run's first "
              "DEFLATED (the first chunk back with the kernel). The whole first deflate (`deflated-at - signal-at`), "
              "p50 / p99 ms: " + "; ".join(
                  f"{k} {fmt(w['summary']['balloond']['whole_deflate_ms']['p50'])} / {fmt(w['summary']['balloond']['whole_deflate_ms']['p99'])}"
                  for k, w in results["workloads"].items() if w["summary"]["balloond"].get("whole_deflate_ms"))
              + ". Run time: \"all runs\" is the summed run time "
              "with the balloon over the summed run time of the no-balloon runs of the same parameters (same guest); "
              "p50 / p99 are of the per-pair ratios. TCG timing noise between two runs is large (±30% is common: "
              "pairs go below 0.6× as well), so a pair's ratio mostly measures that noise; the memory stall the "
              "workload saw in the pairs over 1.3× tells whether the balloon had anything to do with them."]
    with open(a.md, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
