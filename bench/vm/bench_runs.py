# SPDX-License-Identifier: Apache-2.0
"""bench/vm/bench.py's runs: one 512 MiB inflate and deflate with balloond (and
`balloonctl serve`), and one with the kernel's virtio_balloon."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import time

from bench_guest import BALLOON, POLL, QMP, RAM, BenchError, Guest, log, other_qemus, settle


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
