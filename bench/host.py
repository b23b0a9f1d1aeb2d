#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""make bench-host: balloon-hostd at scale and its policies in real guests (issue 11).

Usage: bench/host.py scale   [--guests 1000] [--seconds 60] [--warmup 20] [--out-dir bench]
       bench/host.py compare --initramfs PATH [--seed N] [--policies none,proxmox,mom,auto]
                             [--phase-seconds 40] [--phases 6] [--out-dir bench]
       bench/host.py all     --initramfs PATH ...  (scale, then compare)

scale: `balloon-hostsim serve` runs N fake guests (protocol v1, one unix socket each,
STATS every second) in a temporary directory; `balloon-hostd --config` is pointed at
that directory through `[Discovery] Directories=`, with `[Host] HostMemory=` at 60% of
the guests' RAM so the auto policy has work to do every round. Once every guest is
connected (list-guests) and after a warm-up, the agent's CPU (utime+stime from
/proc/PID/stat over the window, as a share of one core) and RSS (VmRSS sampled every
second: max; VmHWM) are measured. The policy round's time is measured in-process by
`balloon-hostsim policy-round` (the pure policy on N simulated guests, sampled every
second, auto/proxmox/mom; the agent does not report its own round time). Goals: agent
CPU <= 2% of a core, RSS <= 64 MiB, one policy round <= 10 ms.

compare: three 1 GiB QEMU TCG guests (RAM in /dev/shm files, share=on; balloond inside
on virtio-serial) under a 2 GiB HostMemory= budget run the same seeded schedule of
phases (idle, page-cache growth, anonymous ramp to 70% of RAM, an instant burst, a
working-set loop) under each policy in turn: no balloon (no agent, no balloond),
proxmox, mom, auto. Every 0.5 s the harness records the host memory behind the guests
(the RAM files' allocated blocks) and, from the agent's list-guests, each guest's target
and PSI. Reported per policy: host memory mean/p99 and seconds over the budget,
workload run time against no balloon (p50/p99 of per-phase ratios), guest OOM kills,
guest PSI some total (from /proc/pressure/memory), and reaction time (the first
list-guests sample with psi-some-avg10 >= 1 after a calm one -> the first sample whose
target is lower; resolution 0.5 s; a target lowered in the 10 s before the PSI showed
counts as 0: auto acts on refaults, faults and low MemAvailable before PSI rises).
Writes results-host.{json,md} and results-host.png.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "vm"))
sys.path.insert(0, os.path.join(ROOT, "bench"))
MiB = 1 << 20
GiB = 1 << 30
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def binary(name: str) -> str:
    """The release build's binary; BENCH_BALLOON_HOSTD=PATH (etc.) overrides one."""
    path = os.environ.get("BENCH_" + name.upper().replace("-", "_")) or os.path.join(ROOT, ".build", "release", name)
    if not os.path.exists(path):
        raise SystemExit(f"{path} missing: swift build -c release --product {name}")
    return path


class Control:
    """A client of balloon-hostd's control socket (protocol v1 + agent commands)."""

    def __init__(self, path: str, timeout: float = 30):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self.buf = b""

    def call(self, execute: str, arguments: dict | None = None, timeout: float = 30) -> dict:
        rid = secrets.randbelow(1 << 53)
        msg = {"execute": execute, "id": rid}
        if arguments:
            msg["arguments"] = arguments
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" not in self.buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(execute)
                self.sock.settimeout(left)
                data = self.sock.recv(1 << 20)
                if not data:
                    raise ConnectionError("control socket closed")
                self.buf += data
            line, self.buf = self.buf.split(b"\n", 1)
            try:
                m = json.loads(line.decode(errors="replace").strip("\xff"))
            except json.JSONDecodeError:
                continue
            if m.get("id") == rid:
                if "error" in m:
                    raise RuntimeError(f"{execute}: {m['error']}")
                return m["return"]

    def close(self) -> None:
        self.sock.close()


def proc_cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def proc_status_kib(pid: int, key: str) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(round(q / 100 * len(v) + 0.5)) - 1))
    return v[k]


def hostd_config(tmp: str, mode: str, budget: int, discovery: str | None, interval: str | None = None) -> str:
    os.makedirs(os.path.join(tmp, "guests.d"), exist_ok=True)
    text = (f"[Host]\nControl={tmp}/control\nHostMemory={budget // MiB}M\nGuestDirectory={tmp}/guests.d\n"
            f"[Policy]\nMode={mode}\n" + (f"Interval={interval}\n" if interval else "")
            + "[Discovery]\nLibvirt=no\n" + (f"Directories={discovery}\n" if discovery else ""))
    path = os.path.join(tmp, "balloon-hostd.conf")
    with open(path, "w") as f:
        f.write(text)
    return path


def start_hostd(conf: str, logpath: str) -> subprocess.Popen:
    hostd = binary("balloon-hostd")
    check = subprocess.run([hostd, "--config", conf, "--dump-config"], capture_output=True, text=True)
    if check.returncode != 0:
        raise RuntimeError(f"balloon-hostd rejects {conf}: {check.stderr.strip()}")
    return subprocess.Popen([hostd, "--config", conf], stdout=subprocess.DEVNULL, stderr=open(logpath, "w"))


def stop(p: subprocess.Popen | None) -> None:
    if p and p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


# MARK: scale

def scale(a) -> dict:
    """The agent per mode (auto first: the goals are on it), then the in-process policy cost."""
    runs = [scale_run(a, mode) for mode in a.scale_modes.split(",")]
    rounds = json.loads(subprocess.run(
        [binary("balloon-hostsim"), "policy-round", "--guests", str(a.guests), "--seconds", "300", "--seed", str(a.seed)],
        capture_output=True, text=True, check=True).stdout)
    r = {"guests": a.guests, "runs": runs, "policy_round_in_process": rounds}
    first = runs[0]
    auto = next(x for x in rounds if x["mode"] == "auto")
    r["goals"] = [
        (f"agent CPU <= 2% of a core (Mode={first['mode']})", first["agent_cpu_percent_of_core"] <= 2,
         f"{first['agent_cpu_percent_of_core']}%"),
        (f"agent RSS <= 64 MiB (Mode={first['mode']})", first["agent_rss_mib_max"] <= 64, f"{first['agent_rss_mib_max']} MiB"),
        ("policy round <= 10 ms (auto, p99, in-process)", auto["round_ms_p99"] <= 10, f"{auto['round_ms_p99']} ms"),
    ]
    return r


def scale_run(a, mode: str) -> dict:
    tmp = tempfile.mkdtemp(prefix="bench-host-")
    socks = os.path.join(tmp, "sockets")
    os.makedirs(socks)
    sim = hostd = None
    try:
        sim = subprocess.Popen([binary("balloon-hostsim"), "serve", "--guests", str(a.guests), "--dir", socks,
                                "--ram-mib", "1024", "--seed", str(a.seed)],
                               stdout=subprocess.PIPE, stderr=open(os.path.join(tmp, "hostsim.log"), "w"), text=True)
        line = sim.stdout.readline()
        if not line.startswith("ready"):
            raise RuntimeError(f"balloon-hostsim: {line!r}")
        budget = a.guests * GiB * 6 // 10
        conf = hostd_config(tmp, mode, budget, socks)
        hostd = start_hostd(conf, os.path.join(tmp, "hostd.log"))
        ctl = Control(os.path.join(tmp, "control"))
        deadline = time.monotonic() + 180
        connected = 0
        while time.monotonic() < deadline:
            guests = ctl.call("list-guests")["guests"]
            connected = sum(1 for g in guests if g["connected"])
            if connected >= a.guests:
                break
            time.sleep(1)
        log(f"scale ({mode}): {connected}/{a.guests} guests connected")
        time.sleep(a.warmup)
        status0 = ctl.call("policy-status")
        cpu0, sim0, t0 = proc_cpu_seconds(hostd.pid), proc_cpu_seconds(sim.pid), time.monotonic()
        rss = []
        while time.monotonic() - t0 < a.seconds:
            time.sleep(1)
            rss.append(proc_status_kib(hostd.pid, "VmRSS"))
        cpu1, sim1, t1 = proc_cpu_seconds(hostd.pid), proc_cpu_seconds(sim.pid), time.monotonic()
        status1 = ctl.call("policy-status")
        guests = ctl.call("list-guests")["guests"]
        hwm = proc_status_kib(hostd.pid, "VmHWM")
        ctl.close()
        r = {
            "mode": mode, "guests": a.guests, "connected": sum(1 for g in guests if g["connected"]),
            "window_s": round(t1 - t0, 2), "budget_bytes": budget,
            "agent_cpu_percent_of_core": round(100 * (cpu1 - cpu0) / (t1 - t0), 3),
            "agent_rss_mib_max": round(max(rss) / 1024, 2), "agent_vmhwm_mib": round(hwm / 1024, 2),
            "hostsim_cpu_percent_of_core": round(100 * (sim1 - sim0) / (t1 - t0), 3),
            "policy_rounds_in_window": status1["rounds"] - status0["rounds"],
            "targets_set_in_window": status1["targets-set"] - status0["targets-set"],
        }
        log(f"scale: {json.dumps(r)}")
        return r
    finally:
        stop(hostd)
        stop(sim)
        shutil.rmtree(tmp, ignore_errors=True)


# MARK: compare

PHASES = ["idle", "cache", "ramp", "burst", "loop"]


def schedule(seed: int, guest: int, phases: int, ram_mb: int) -> list[tuple[str, str]]:
    """A guest's seeded phases: (kind, guest command). Same for every policy."""
    rng = random.Random(seed * 1000 + guest)
    out = []
    for _ in range(phases):
        kind = rng.choice(PHASES)
        if kind == "idle":
            cmd = f"workload idle {rng.choice([10, 20, 30])}"
        elif kind == "cache":
            cmd = f"workload thrash /mnt/disk/cache {rng.choice([10, 20])}"
        elif kind == "ramp":
            cmd = f"workload ramp {int(ram_mb * 0.70)} {rng.choice([40, 60, 80])}"
        elif kind == "burst":
            cmd = f"workload instant {int(ram_mb * rng.uniform(0.45, 0.55))}"
        else:
            cmd = f"workload workingset /mnt/disk/ws {int(ram_mb * rng.uniform(0.35, 0.45))} {rng.choice([40, 60])}"
        out.append((kind, cmd))
    return out


class VMGuest:
    """One TCG guest with its RAM in a shared file and balloond on virtio-serial."""

    def __init__(self, name: str, initramfs: str, balloond: bool):
        import guest as G
        self.G = G
        self.name = name
        self.wd = os.path.join(ROOT, "tests", "vm", "work", f"bench-host-{name}-{os.getpid()}")
        self.ram_file = f"/dev/shm/bench-host-{name}-{os.getpid()}"
        self.disk = self.wd + ".img"
        os.makedirs(os.path.dirname(self.wd), exist_ok=True)
        subprocess.run(["truncate", "-s", "1G", self.disk], check=True)
        subprocess.run(["mkfs.ext4", "-F", "-q", self.disk], check=True)
        subprocess.run([os.path.join(ROOT, "tests/vm/boot.sh"), "-w", self.wd, "-i", initramfs, "-m", "1G",
                        "--memory-backend", self.ram_file, "--timeout", "7200", "--ready-timeout", "180",
                        "--qemu-arg", "-drive", "--qemu-arg", f"file={self.disk},if=virtio,format=raw,cache=none"],
                       check=True, stdout=subprocess.DEVNULL)
        self.agent = G.Agent(os.path.join(self.wd, "control.sock"), 120, self.wd)
        self.sh("vmload virtio_blk && mkdir -p /mnt/disk && mount -t ext4 /dev/vda /mnt/disk")
        self.sh("dd if=/dev/zero of=/mnt/disk/cache bs=1M count=600 2>/dev/null; "
                "dd if=/dev/zero of=/mnt/disk/ws bs=1M count=128 2>/dev/null; sync; echo 3 > /proc/sys/vm/drop_caches", 600)
        self.port = os.path.join(self.wd, "port0.sock")
        if balloond:
            self.sh("printf '[Channel]\\nListen=virtio-serial:org.balloond.0\\n[Stats]\\nInterval=1s\\n' > /tmp/b.conf")
            self.sh("balloond --config /tmp/b.conf >/tmp/balloond.log 2>&1 &")

    def run(self, cmd: str, timeout: float = 600) -> tuple[int, str]:
        rc, out = self.agent.run(cmd, timeout)
        return rc, out.decode(errors="replace")

    def sh(self, cmd: str, timeout: float = 600) -> str:
        rc, out = self.run(cmd, timeout)
        if rc != 0:
            raise RuntimeError(f"{self.name}: `{cmd}` exited {rc}: {out}")
        return out.strip()

    def allocated(self) -> int:
        try:
            return os.stat(self.ram_file).st_blocks * 512
        except OSError:
            return 0

    def psi_some_total_us(self) -> int:
        m = re.search(r"some .*total=(\d+)", self.run("cat /proc/pressure/memory")[1])
        return int(m.group(1)) if m else 0

    def oom_kills(self) -> int:
        out = self.run("dmesg | grep -i 'killed process'")[1]
        return sum(1 for m in re.finditer(r"Killed process \d+ \(([^)]*)\)", out) if m.group(1) != "balloond")

    def start_schedule(self, phases: list[tuple[str, str]]) -> None:
        """Runs the phases one after another in the guest; each phase's run time goes to /tmp/phases."""
        script = "; ".join(
            f"s=$(cut -d' ' -f1 /proc/uptime); {cmd} >/dev/null 2>&1; rc=$?; "
            f"e=$(cut -d' ' -f1 /proc/uptime); echo \"{i} {kind} $rc $s $e\" >> /tmp/phases"
            for i, (kind, cmd) in enumerate(phases))
        self.sh(f"rm -f /tmp/phases /tmp/sched.done; ( {script}; touch /tmp/sched.done ) </dev/null >/dev/null 2>&1 &")

    def schedule_done(self) -> bool:
        return self.run("test -e /tmp/sched.done")[0] == 0

    def phase_times(self) -> list[dict]:
        rows = []
        for line in self.run("cat /tmp/phases")[1].splitlines():
            p = line.split()
            if len(p) == 5:
                rows.append({"phase": int(p[0]), "kind": p[1], "rc": int(p[2]), "seconds": float(p[4]) - float(p[3])})
        return rows

    def stop(self) -> None:
        try:
            self.agent.close()
        except Exception:
            pass
        subprocess.run([os.path.join(ROOT, "tests/vm/stop.sh"), self.wd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for p in (self.disk, self.ram_file):
            try:
                os.remove(p)
            except OSError:
                pass
        shutil.rmtree(self.wd, ignore_errors=True)


def budget_for(a) -> int:
    """2 GiB for the three guests (two thirds of their RAM); as much per guest with --vms."""
    return 2 * GiB * a.vms // 3


def run_policy(a, policy: str) -> dict:
    """The schedule in three fresh guests under one policy; samples every 0.5 s."""
    budget = budget_for(a)
    tmp = tempfile.mkdtemp(prefix=f"bench-host-{policy}-")
    guests: list[VMGuest] = []
    hostd = None
    try:
        for i in range(a.vms):
            guests.append(VMGuest(f"{policy}{i}", a.initramfs, balloond=policy != "none"))
        ctl = None
        if policy != "none":
            conf = hostd_config(tmp, policy, budget, None)
            for i, g in enumerate(guests):
                with open(os.path.join(tmp, "guests.d", f"g{i}.conf"), "w") as f:
                    f.write(f"[Guest]\nChannel=unix:{g.port}\nMemoryBackend={g.ram_file}\nRamSize=1G\n"
                            f"Min=256M\nMax=1G\n")
            hostd = start_hostd(conf, os.path.join(tmp, "hostd.log"))
            ctl = Control(os.path.join(tmp, "control"))
            time.sleep(5)
        psi0 = [g.psi_some_total_us() for g in guests]
        ram_mb = 1024
        for i, g in enumerate(guests):
            g.start_schedule(schedule(a.seed, i, a.phases, ram_mb))
        t0 = time.monotonic()
        samples = []
        while True:
            now = time.monotonic() - t0
            s = {"t": round(now, 2), "host": sum(g.allocated() for g in guests)}
            if ctl:
                try:
                    s["guests"] = {x["name"]: {"target": x["target"], "actual": x.get("actual"), "psi": x["psi-some-avg10"],
                                               "reason": x["reason"]}
                                   for x in ctl.call("list-guests", timeout=5)["guests"]}
                except Exception as e:  # a busy agent must not stop the run
                    s["error"] = str(e)
            samples.append(s)
            if len(samples) % 20 == 0 and all(g.schedule_done() for g in guests):
                break
            if now > a.phases * 120 + 600:
                log(f"{policy}: schedule did not finish")
                break
            time.sleep(0.5)
        phases = [g.phase_times() for g in guests]
        return {
            "policy": policy, "samples": samples, "phases": phases,
            "psi_some_total_s": sum(g.psi_some_total_us() - p for g, p in zip(guests, psi0)) / 1e6,
            "oom_kills": sum(g.oom_kills() for g in guests),
            "hostd_log_tail": open(os.path.join(tmp, "hostd.log")).read()[-4000:] if hostd else None,
        }
    finally:
        stop(hostd)
        for g in guests:
            g.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def reactions(samples: list[dict], lead: float = 2.0) -> dict:
    """Per guest and pressure episode (psi-some-avg10 reaching 1 after being below it): seconds
    from the first sample showing it to the first sample where the guest's balloon (`actual`, what
    the guest reports holding, not the target the agent asked for) is smaller than at the episode's
    start. A balloon that shrank in the `lead` seconds before the episode showed counts as 0 and is
    counted as `anticipated` (auto acts on refaults and major faults before PSI rises). An episode
    that ends (psi below 1 again) or the run ends without the balloon shrinking is a `missed`
    episode and enters the figures as infinite; an episode that starts with an empty balloon has
    nothing to give back and is counted as `empty`, not timed. psi-some-avg10 is a 10 s average
    sampled every 0.5 s, so an episode shows up to a few seconds after the stall began: the figure
    is from what the agent's own input shows, not from the stall's first microsecond."""
    times: list[float] = []
    anticipated = missed = empty = 0
    names = sorted({n for s in samples for n in s.get("guests", {})})
    for n in names:
        start = start_actual = None
        calm = True
        last_drop = None
        previous = None
        for s in samples:
            g = s.get("guests", {}).get(n)
            if not g or g.get("actual") is None:
                continue
            psi = g["psi"] or 0
            actual = g["actual"]
            if previous is not None and actual < previous:
                last_drop = s["t"]
                if start is not None and actual < start_actual:
                    times.append(s["t"] - start)
                    start = None
            previous = actual
            if calm and psi >= 1:
                calm = False
                if actual == 0:
                    empty += 1
                elif last_drop is not None and s["t"] - last_drop <= lead:
                    times.append(0.0)
                    anticipated += 1
                else:
                    start, start_actual = s["t"], actual
            elif psi < 1:
                calm = True
                if start is not None:
                    times.append(float("inf"))
                    missed += 1
                start = None
        if start is not None:
            times.append(float("inf"))
            missed += 1
    return {"times": times, "anticipated": anticipated, "missed": missed, "empty": empty}


def summarize(run: dict, baseline: dict | None, budget: int) -> dict:
    host = [s["host"] for s in run["samples"]]
    dt = 0.5
    ratios = []
    if baseline:
        for mine, base in zip(run["phases"], baseline["phases"]):
            for p, b in zip(mine, base):
                if b["seconds"] > 0 and p["rc"] == 0 and b["rc"] == 0 and p["kind"] != "idle":
                    ratios.append(p["seconds"] / b["seconds"])
    rx = reactions(run["samples"])
    r = rx["times"]
    return {
        "policy": run["policy"],
        "host_mean_mib": round(sum(host) / len(host) / MiB, 1) if host else None,
        "host_p99_mib": round(pct(host, 99) / MiB, 1) if host else None,
        "seconds_over_budget": round(sum(dt for h in host if h > budget), 1),
        "runtime_ratio_p50": round(pct(ratios, 50), 3) if ratios else None,
        "runtime_ratio_p99": round(pct(ratios, 99), 3) if ratios else None,
        "oom_kills": run["oom_kills"],
        "psi_some_total_s": round(run["psi_some_total_s"], 2),
        "reaction_p50_s": round(pct(r, 50), 2) if r else None, "reaction_p99_s": round(pct(r, 99), 2) if r else None,
        "reactions": len(r), "reactions_anticipated": rx["anticipated"], "reactions_missed": rx["missed"],
        "episodes_with_empty_balloon": rx["empty"],
    }


def compare(a) -> dict:
    runs = {}
    for policy in a.policies.split(","):
        log(f"compare: {policy}")
        runs[policy] = run_policy(a, policy)
    base = runs.get("none")
    rows = [summarize(runs[p], base, budget_for(a)) for p in runs]
    by = {r["policy"]: r for r in rows}
    goals = []
    if all(p in by for p in ("auto", "proxmox", "mom")):
        au, px, mo = by["auto"], by["proxmox"], by["mom"]
        goals = [
            ("auto mean host memory <= min(proxmox, mom)", au["host_mean_mib"] <= min(px["host_mean_mib"], mo["host_mean_mib"]),
             f"{au['host_mean_mib']} vs {min(px['host_mean_mib'], mo['host_mean_mib'])} MiB"),
            ("auto run time p99 <= 1.1x", (au["runtime_ratio_p99"] or 0) <= 1.1, f"{au['runtime_ratio_p99']}"),
            ("auto 0 OOM kills", au["oom_kills"] == 0, f"{au['oom_kills']}"),
            ("auto time over budget <= half the better of proxmox/mom",
             au["seconds_over_budget"] <= min(px["seconds_over_budget"], mo["seconds_over_budget"]) / 2,
             f"{au['seconds_over_budget']} vs {min(px['seconds_over_budget'], mo['seconds_over_budget'])} s"),
            ("auto reaction p99 <= 1.5 s", au["reaction_p99_s"] is not None and au["reaction_p99_s"] <= 1.5,
             f"{au['reaction_p99_s']} s"),
        ]
    plot(runs, os.path.join(a.out_dir, "results-host.png"), budget_for(a))
    return {"rows": rows, "goals": goals, "runs": runs, "vms": a.vms, "budget": budget_for(a), "seed": a.seed, "phases": a.phases}


def plot(runs: dict, path: str, budget: int) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib missing: no plot (pip install matplotlib)")
        return
    fig, ax = plt.subplots(figsize=(10, 5))
    for p, run in runs.items():
        ax.plot([s["t"] for s in run["samples"]], [s["host"] / MiB for s in run["samples"]], label=p)
    ax.axhline(budget / MiB, color="k", linestyle="--", linewidth=0.8, label="budget")
    ax.set_xlabel("seconds")
    ax.set_ylabel("host memory behind the guests (MiB)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


# MARK: output

def markdown(results: dict) -> str:
    out = ["# make bench-host", ""]
    p = results["provenance"]
    out.append(f"Commit {p['commit']}, {p['date']}, {p['host_cpus']} CPUs ({p['host_cpu_model']}), kernel {p['host_kernel']}, "
               f"load average at start {p['load_average_at_start'][0]:.2f}; balloon-hostd {p['balloon_hostd']}.")
    if p.get("note"):
        out += ["", p["note"]]
    if "scale" in results:
        s = results["scale"]
        runs = s["runs"]
        out += ["", "## Scale", "",
                f"{s['guests']} simulated guests (balloon-hostsim), STATS every 1 s, HostMemory= "
                f"{runs[0]['budget_bytes'] // GiB} GiB; balloon-hostd per mode, {runs[0]['window_s']} s window after warm-up.", "",
                "| figure | " + " | ".join(f"Mode={r['mode']}" for r in runs) + " |", "|---|" + "---|" * len(runs),
                "| guests connected | " + " | ".join(str(r["connected"]) for r in runs) + " |",
                "| agent CPU (share of one core) | " + " | ".join(f"{r['agent_cpu_percent_of_core']}%" for r in runs) + " |",
                "| agent RSS max (VmHWM) | " + " | ".join(f"{r['agent_rss_mib_max']} MiB ({r['agent_vmhwm_mib']} MiB)" for r in runs) + " |",
                "| policy rounds / targets set in the window | " + " | ".join(f"{r['policy_rounds_in_window']} / {r['targets_set_in_window']}" for r in runs) + " |",
                "| balloon-hostsim CPU | " + " | ".join(f"{r['hostsim_cpu_percent_of_core']}%" for r in runs) + " |", "",
                f"Policy cost in-process (`balloon-hostsim policy-round`, {s['guests']} guests, 300 simulated s; "
                "each figure the fastest of three runs on copies of the policy's state):", "",
                "| mode | rounds | round p50 | round p99 | round max | all `sampled` per s p50 / p99 | targets changed |", "|---|---|---|---|---|---|---|"]
        for r in s["policy_round_in_process"]:
            out.append(f"| {r['mode']} | {r['rounds']} | {r['round_ms_p50']} ms | {r['round_ms_p99']} ms | {r['round_ms_max']} ms | "
                       f"{r['sampled_all_ms_p50']} / {r['sampled_all_ms_p99']} ms | {r['changes']} |")
        out += ["", "| goal | met | figure |", "|---|---|---|"] + [f"| {g} | {'pass' if ok else 'FAIL'} | {v} |" for g, ok, v in s["goals"]]
    if "compare" in results:
        c = results["compare"]
        out += ["", f"## {c['vms']} TCG guests of 1 GiB, {c['budget'] // MiB} MiB budget, seed {c['seed']}, {c['phases']} phases each", "", "![host memory](results-host.png)", "",
                "| policy | host mean | host p99 | s over budget | run time p50 / p99 | OOM kills | PSI some total | reaction p50 / p99 |",
                "|---|---|---|---|---|---|---|---|"]
        for r in c["rows"]:
            out.append(f"| {r['policy']} | {r['host_mean_mib']} MiB | {r['host_p99_mib']} MiB | {r['seconds_over_budget']} | "
                       f"{r['runtime_ratio_p50']} / {r['runtime_ratio_p99']} | {r['oom_kills']} | {r['psi_some_total_s']} s | "
                       f"{r['reaction_p50_s']} / {r['reaction_p99_s']} s ({r['reactions']} episodes: "
                       f"{r.get('reactions_anticipated', 0)} anticipated, {r.get('reactions_missed', 0)} missed; "
                       f"{r.get('episodes_with_empty_balloon', 0)} with an empty balloon) |")
        out += ["", "| goal | met | figure |", "|---|---|---|"] + [f"| {g} | {'pass' if ok else 'FAIL'} | {v} |" for g, ok, v in c["goals"]]
    return "\n".join(out) + "\n"


def provenance() -> dict:
    def out(argv: list[str]) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""
    dirty = subprocess.run(["git", "-C", ROOT, "diff", "--quiet", "HEAD", "--", "Sources", "Package.swift", "bench"]).returncode != 0
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    return {"commit": out(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]) + ("-dirty" if dirty else ""),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "host_cpus": os.cpu_count(), "host_cpu_model": cpu,
            "host_kernel": os.uname().release, "load_average_at_start": list(os.getloadavg()),
            "balloon_hostd": binary("balloon-hostd"), "note": os.environ.get("BENCH_NOTE", "")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["scale", "compare", "all"])
    ap.add_argument("--guests", type=int, default=1000)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--scale-modes", default="auto,manual", help="agent modes to measure at scale (goals: the first)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--initramfs")
    ap.add_argument("--policies", default="none,proxmox,mom,auto")
    ap.add_argument("--phases", type=int, default=6)
    ap.add_argument("--vms", type=int, default=3, help="guests (3 for the issue's figures; fewer for a smoke run)")
    ap.add_argument("--out-dir", default=os.path.join(ROOT, "bench"))
    a = ap.parse_args()
    results: dict = {"provenance": provenance()}
    if a.what in ("scale", "all"):
        results["scale"] = scale(a)
    if a.what in ("compare", "all"):
        if not a.initramfs:
            ap.error("compare needs --initramfs (scripts/build-vm-artifacts.sh)")
        results["compare"] = compare(a)
    with open(os.path.join(a.out_dir, "results-host.json"), "w") as f:
        json.dump(results, f, indent=1)
    md = markdown(results)
    with open(os.path.join(a.out_dir, "results-host.md"), "w") as f:
        f.write(md)
    print(md)
    goals = results.get("scale", {}).get("goals", []) + results.get("compare", {}).get("goals", [])
    return 0 if all(ok for _, ok, _ in goals) else 1


if __name__ == "__main__":
    sys.exit(main())
