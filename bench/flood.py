#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""balloon-hostd's responsiveness under floods (issue 13): `list-guests` latency, p50/p99,
quiet and under every flood at once, and the agent's memory before and after.

Usage: bench/flood.py [--guests 100] [--samples 1000] [--out-dir bench]

The agent has N fake guests (`balloon-hostsim serve`, STATS every second) and one hostile
guest (tests/faults/flood_guest.py: answers sync only, then floods garbage, 2 MiB lines,
unknown events and frame reports outside its RAM; never answers a request). The measuring
client connects first; then 8 clients that send list-guests without reading (dropped past
1 MiB unsent), 16 control and 16 metrics connections dribbling a byte per sample (metrics cuts
them after 10 s), then 1,000 more control connections held open (the 64 slots are full: refused
and counted). Latency is
one list-guests round trip, measured by the client (time.perf_counter). RSS is VmRSS; VmHWM is
the peak. Binaries: .build/release (BENCH_BALLOON_HOSTD=PATH etc. override, as bench/host.py).
Writes results-flood.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "vm"))
import guest as G  # noqa: E402
import hostlib as H  # noqa: E402


def latencies(ctl: H.Control, n: int, between=None) -> list[float]:
    out = []
    for i in range(n):
        if between:
            between(i)
        t = time.perf_counter()
        ctl.call("list-guests")
        out.append((time.perf_counter() - t) * 1000)
    return out


def session(ctl: H.Control, name: str) -> dict:
    return ctl.call("guest-status", {"name": name})["session"]


def provenance() -> str:
    """Commit, date, machine and load at the start (issue 15: every results file says so)."""
    try:
        commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=H.ROOT, capture_output=True,
                                text=True, timeout=10).stdout.strip() or "?"
    except Exception:
        commit = "?"
    model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"Commit {commit}, {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, {os.cpu_count()} CPUs ({model}), "
            f"kernel {os.uname().release}, load average at start {load}.")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--guests", type=int, default=100)
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--out-dir", default=os.path.join(H.ROOT, "bench"))
    a = p.parse_args()
    started = provenance()
    tmp = tempfile.mkdtemp(prefix="bench-flood-")
    socks = os.path.join(tmp, "sockets")
    os.makedirs(socks)
    sim = hostd = hostile = None
    held: list[socket.socket] = []
    try:
        sim = subprocess.Popen([H.binary("balloon-hostsim"), "serve", "--guests", str(a.guests), "--dir", socks,
                                "--ram-mib", "1024", "--seed", "1"],
                               stdout=subprocess.PIPE, stderr=open(os.path.join(tmp, "hostsim.log"), "w"), text=True)
        if not sim.stdout.readline().startswith("ready"):
            raise RuntimeError("balloon-hostsim did not start")
        hostile_sock = os.path.join(tmp, "hostile.sock")
        hostile = subprocess.Popen([sys.executable, os.path.join(H.ROOT, "tests", "faults", "flood_guest.py"), hostile_sock])
        conf = H.hostd_config(tmp, "manual", a.guests * H.GiB, socks)
        with open(os.path.join(tmp, "guests.d", "hostile.conf"), "w") as f:
            f.write(f"[Guest]\nChannel=unix:{hostile_sock}\nPolicy=manual\n")
        with open(conf, "a") as f:
            f.write("[Metrics]\nListen=127.0.0.1:0\n")
        log_path = os.path.join(tmp, "hostd.log")
        hostd = H.start_hostd(conf, log_path)
        ctl = H.Control(os.path.join(tmp, "control"))
        H.wait_connected(ctl, a.guests, 120)
        port = 0
        for line in open(log_path):
            if "metrics: serving /metrics on 127.0.0.1:" in line:
                port = int(line.rsplit(":", 1)[1])
        quiet = latencies(ctl, a.samples)
        rss_before = H.proc_status_kib(hostd.pid, "VmRSS")

        control = os.path.join(tmp, "control")
        deaf_ask = b'{"execute":"list-guests","id":1}\n' * 256
        for _ in range(8):  # ask, never read: dropped once 1 MiB of answers waits
            s = socket.socket(socket.AF_UNIX)
            s.connect(control)
            s.setblocking(False)
            held.append(s)
            try:
                for _ in range(200):
                    s.send(deaf_ask)
            except OSError:
                pass
        dribblers = []
        for _ in range(16):
            s = socket.socket(socket.AF_UNIX)
            s.connect(control)
            s.setblocking(False)
            dribblers.append(s)
            s = socket.socket(socket.AF_INET)
            s.connect(("127.0.0.1", port))
            s.setblocking(False)
            dribblers.append(s)
        held.extend(dribblers)
        for _ in range(1000):  # beyond the 64 slots: refused and counted
            s = socket.socket(socket.AF_UNIX)
            s.connect(control)
            held.append(s)
        # A request for the control sockets, a never-ending head for metrics: one byte per round trip.
        head = b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 4000
        line = b'{"execute":"list-guests","id":2}'

        def dribble(i: int) -> None:
            for s in dribblers:
                text = head if s.family == socket.AF_INET else line
                try:
                    s.send(text[i % len(text):i % len(text) + 1])
                except OSError:
                    pass

        flooded = latencies(ctl, a.samples, dribble)
        rss_after = H.proc_status_kib(hostd.pid, "VmRSS")
        hwm = H.proc_status_kib(hostd.pid, "VmHWM")
        some = session(ctl, "hostile")
        result = {
            "guests": a.guests, "samples": a.samples,
            "quiet_ms": {"p50": round(H.pct(quiet, 50), 3), "p99": round(H.pct(quiet, 99), 3), "max": round(max(quiet), 3)},
            "flood_ms": {"p50": round(H.pct(flooded, 50), 3), "p99": round(H.pct(flooded, 99), 3), "max": round(max(flooded), 3)},
            "rss_kib_before": rss_before, "rss_kib_after": rss_after, "vmhwm_kib": hwm,
            "clients_refused": some["clients-refused"], "clients_dropped": some["clients-dropped"],
            "hostile_malformed_lines": some["malformed-lines"], "hostile_last_error": some["last-error"],
            "hostd": H.binary("balloon-hostd"),
        }
    finally:
        for s in held:
            s.close()
        H.stop(hostd)
        for proc in (hostile, sim):
            if proc and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(10)
    os.makedirs(a.out_dir, exist_ok=True)
    result["provenance"] = started
    with open(os.path.join(a.out_dir, "results-flood.json"), "w") as f:
        json.dump(result, f, indent=1)
    q, fl = result["quiet_ms"], result["flood_ms"]
    md = [
        "# balloon-hostd under floods (bench/flood.py)", "", started, "",
        f"{a.guests} simulated guests (balloon-hostsim) plus one hostile guest (tests/faults/flood_guest.py); "
        f"{a.samples} `list-guests` round trips each way; binary `{os.path.relpath(result['hostd'], H.ROOT)}`.", "",
        "| | list p50 | list p99 | list max |", "|---|---|---|---|",
        f"| quiet | {q['p50']} ms | {q['p99']} ms | {q['max']} ms |",
        f"| flood | {fl['p50']} ms | {fl['p99']} ms | {fl['max']} ms |", "",
        "Flood: 8 control clients asking without reading, 16 control and 16 metrics connections dribbling "
        "a byte per round trip, 1,000 more control connections held, the hostile guest flooding throughout.", "",
        f"- RSS {result['rss_kib_before'] // 1024} MiB before the flood, {result['rss_kib_after'] // 1024} MiB after "
        f"(peak VmHWM {result['vmhwm_kib'] // 1024} MiB)",
        f"- control clients refused {result['clients_refused']}, dropped (not reading, or no complete request within 10 s) {result['clients_dropped']}",
        f"- hostile guest: {result['hostile_malformed_lines']} malformed lines counted; last error: "
        f"{result['hostile_last_error']}", "",
    ]
    with open(os.path.join(a.out_dir, "results-flood.md"), "w") as f:
        f.write("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    G.exit_on_sigterm()
    sys.exit(main())
