# SPDX-License-Identifier: Apache-2.0
"""bench/vm/bench.py's guest: a fresh TCG guest per run, its QMP socket, and the RAM
file's allocated bytes."""

from __future__ import annotations

import json
import os
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
