# SPDX-License-Identifier: Apache-2.0
"""Helpers shared by bench/host.py, bench/host_compare.py and bench/flood.py: the agent's
control client, its configuration and process, percentiles, provenance."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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


def proc_stat(pid: int) -> list[int]:
    """/proc/PID/stat's numbers after the command name and state (field 4 on: ppid is [0],
    minflt [6], utime [10], stime [11])."""
    return [int(x) for x in open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1:]]


def proc_cpu_ticks(pid: int) -> int:
    fields = proc_stat(pid)
    return fields[10] + fields[11]  # utime, stime


def proc_cpu_seconds(pid: int) -> float:
    return proc_cpu_ticks(pid) / CLK_TCK


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


def hostd_config(tmp: str, mode: str, budget: int, discovery: str | None, interval: str | None = None,
                 reserve: str | None = None, policy_keys: list[str] | None = None) -> str:
    os.makedirs(os.path.join(tmp, "guests.d"), exist_ok=True)
    text = (f"[Host]\nControl={tmp}/control\nHostMemory={budget // MiB}M\nGuestDirectory={tmp}/guests.d\n"
            f"[Policy]\nMode={mode}\n" + (f"Interval={interval}\n" if interval else "")
            + (f"HostReserve={reserve}\n" if reserve else "") + "".join(f"{k}\n" for k in policy_keys or [])
            + "[Discovery]\nLibvirt=no\n" + (f"Directories={discovery}\n" if discovery else ""))
    path = os.path.join(tmp, "balloon-hostd.conf")
    with open(path, "w") as f:
        f.write(text)
    return path


def start_hostd(conf: str, logpath: str, hostd: str | None = None) -> subprocess.Popen:
    """balloon-hostd (`hostd`: another build of it) on `conf`, checked with --dump-config first."""
    hostd = hostd or binary("balloon-hostd")
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


def provenance(hostd: bool = True) -> dict:
    """Where and on what the run ran; `hostd`: the run starts balloon-hostd (which one is recorded, and must exist)."""
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
            "balloon_hostd": binary("balloon-hostd") if hostd else None, "note": os.environ.get("BENCH_NOTE", "")}


def provenance_sentence(p: dict) -> str:
    """`provenance()` as a report's first sentence: commit, date, CPUs, kernel and load."""
    return (f"Commit `{p['commit']}`, {p['date']}; host {p['host_cpus']} CPUs, kernel {p['host_kernel']}, load average at "
            f"start {' '.join(f'{x:.2f}' for x in p['load_average_at_start'])}.")


def interleaved(rounds: int, kinds: list[str]):
    """(round index, kind) for `rounds` rounds of `kinds`, every other round in reverse order, so a
    slow spell of this shared machine falls on every kind alike."""
    for k in range(rounds):
        for kind in (kinds if k % 2 == 0 else list(reversed(kinds))):
            yield k, kind


def write_results(out_dir: str, stem: str, result: dict, md: str) -> None:
    """OUT_DIR/STEM.json (the figures and their provenance) and STEM.md (the report), printed too."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, f"{stem}.json"), "w") as f:
        json.dump(result, f, indent=1)
    with open(os.path.join(out_dir, f"{stem}.md"), "w") as f:
        f.write(md)
    print(md)


def wait_connected(ctl: Control, guests: int, timeout: float, poll: float = 0.5) -> int:
    """Polls `list-guests` until `guests` of them are connected or `timeout` s pass; how many are."""
    deadline = time.monotonic() + timeout
    while True:
        connected = sum(1 for g in ctl.call("list-guests")["guests"] if g["connected"])
        if connected >= guests or time.monotonic() >= deadline:
            return connected
        time.sleep(poll)
