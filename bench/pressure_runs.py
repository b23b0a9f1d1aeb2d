# SPDX-License-Identifier: Apache-2.0
"""bench/pressure.py's runs: one workload run with no balloon, with balloond, and with the
kernel's virtio_balloon, each returning what the summary reads (definitions in pressure.py)."""

from __future__ import annotations

import random
import re
import time

from pressure_guest import MiB, BenchGuest


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
