# SPDX-License-Identifier: Apache-2.0
"""bench/pressure.py's guest: a 1 GiB TCG guest with balloond, its host session, the
workload runner and the in-guest Mlocked sampler."""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
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
