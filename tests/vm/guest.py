#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Talk to the test guest booted by tests/vm/boot.sh (Python 3.11 stdlib only).

Usage:
  guest.py WORKDIR run [--timeout S] 'command'   run in the guest; print its output
                                                 (stdout+stderr); exit with its code
                                                 (124 on timeout)
  guest.py WORKDIR bg [--timeout S] 'command'    start 'command' in the background in
                                                 the guest; prints "PID LOGFILE"
  guest.py WORKDIR wait-ready [--timeout S]      wait until the control agent answers
  guest.py WORKDIR qmp [--timeout S] EXECUTE [ARGUMENTS-JSON]
                                                 one QMP command; prints the reply JSON

WORKDIR is boot.sh's work dir (control.sock, qmp.sock, qemu.pid live there). A socket
path works instead of WORKDIR for run/bg/wait-ready.

Protocol (tests/vm/README.md): the host writes "\\n@TAG COMMAND\\n"; the guest agent
runs COMMAND with sh -c and writes OUTPUT + "\\n__BALLOOND_RC__ RC TAG\\n". Replies to
other tags (stale, from an earlier client that gave up) are skipped.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import signal
import shutil
import socket
import subprocess
import sys
import time

MARKER = b"__BALLOOND_RC__"
_ANY_MARKER = re.compile(rb"\n__BALLOOND_RC__ (-?\d+)(?: (\S+))?\n")


class GuestError(Exception):
    pass


class GuestTimeout(GuestError):
    pass


def _paths(workdir: str, name: str) -> str:
    if os.path.isdir(workdir):
        return os.path.join(workdir, name)
    return workdir


def _qemu_alive(workdir: str) -> bool:
    """False only if the work dir has a pid file whose process is gone."""
    pidfile = os.path.join(workdir, "qemu.pid")
    try:
        with open(pidfile) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def connect_unix(path: str, deadline: float, workdir: str | None = None) -> socket.socket:
    """Connect to a unix socket, retrying until it exists and accepts."""
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            return s
        except (FileNotFoundError, ConnectionRefusedError) as e:
            s.close()
            if workdir and not _qemu_alive(workdir):
                raise GuestError(f"QEMU is not running (socket {path})") from e
            if time.monotonic() >= deadline:
                raise GuestTimeout(f"cannot connect to {path}: {e}") from e
            time.sleep(0.05)


def encode_command(cmd: str) -> str:
    """One line on the wire; multi-line commands travel base64-encoded."""
    if "\n" in cmd or "\r" in cmd:
        b64 = base64.b64encode(cmd.encode()).decode()
        return f'eval "$(echo {b64} | base64 -d)"'
    return cmd


class Agent:
    """A connection to the guest control agent (one command at a time)."""

    def __init__(self, path: str, timeout: float = 60.0, workdir: str | None = None):
        self.path = path
        self.workdir = workdir
        self.sock = connect_unix(path, time.monotonic() + timeout, workdir)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Agent":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def run(self, cmd: str, timeout: float = 60.0) -> tuple[int, bytes]:
        tag = secrets.token_hex(6)
        line = encode_command(cmd)
        # Leading newline: ends any partial line a previous client left behind.
        self.sock.sendall(b"\n@" + tag.encode() + b" " + line.encode() + b"\n")
        deadline = time.monotonic() + timeout
        pos = 0  # where to resume searching for a marker in self.buf
        while True:
            m = _ANY_MARKER.search(self.buf, pos)
            if m is not None:
                got = m.group(2).decode(errors="replace") if m.group(2) else None
                out, self.buf, pos = self.buf[: m.start()], self.buf[m.end() :], 0
                if got == tag:
                    return int(m.group(1)), out
                continue  # a stale reply (another tag, or untagged): drop it
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise GuestTimeout(f"no reply to {cmd!r} within {timeout:g}s")
            if self.workdir and not _qemu_alive(self.workdir):
                raise GuestError("QEMU exited")
            self.sock.settimeout(min(remaining, 0.5))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not data:
                raise GuestError("control socket closed by QEMU")
            # Resume a little before the old end: a marker may span two reads.
            pos = max(0, len(self.buf) - 128)
            self.buf += data


def qmp(path: str, execute: str, arguments: dict | None = None, timeout: float = 10.0) -> dict:
    s = connect_unix(path, time.monotonic() + timeout)
    s.settimeout(timeout)
    f = s.makefile("rwb")
    try:
        json.loads(f.readline())  # greeting
        f.write(b'{"execute":"qmp_capabilities"}\n')
        f.flush()
        while "return" not in json.loads(f.readline()):
            pass
        msg = {"execute": execute, "id": "guest.py"}
        if arguments:
            msg["arguments"] = arguments
        f.write(json.dumps(msg).encode() + b"\n")
        f.flush()
        while True:
            reply = json.loads(f.readline())
            if reply.get("id") == "guest.py":
                return reply
    finally:
        f.close()
        s.close()


class BootedGuest:
    """A 1 GiB TCG guest of boot.sh for the benchmarks, with an ext4 scratch disk
    mounted at /mnt/disk and its control agent: run/sh, and stop_vm() that ends QEMU
    and removes the disk, the RAM file and the work directory. A failure or a
    SIGTERM (exit_on_sigterm) while it boots stops it at once: the caller has no
    object yet to stop, and QEMU would outlive the script."""

    HERE = os.path.dirname(os.path.abspath(__file__))

    def __init__(self, wd: str, initramfs: str, *, disk_size: str = "2G", memory_backend: str | None = None,
                 timeout: int = 3600, ready_timeout: int = 120, agent_timeout: float = 60,
                 boot_args: tuple[str, ...] = (), command_timeout: float = 300):
        self.wd = wd
        self.disk = wd + ".img"
        self.memory_backend = memory_backend
        self.command_timeout = command_timeout
        self.agent: Agent | None = None
        try:
            os.makedirs(os.path.dirname(wd), exist_ok=True)
            subprocess.run(["truncate", "-s", disk_size, self.disk], check=True)
            subprocess.run(["mkfs.ext4", "-F", "-q", "-E", "lazy_itable_init=0,lazy_journal_init=0", self.disk], check=True)
            args = [os.path.join(self.HERE, "boot.sh"), "-w", wd, "-i", initramfs, "-m", "1G",
                    "--timeout", str(timeout), "--ready-timeout", str(ready_timeout),
                    "--qemu-arg", "-drive", "--qemu-arg", f"file={self.disk},if=virtio,format=raw,cache=none"]
            if memory_backend:
                args += ["--memory-backend", memory_backend]
            subprocess.run(args + list(boot_args), check=True, stdout=subprocess.DEVNULL)
            self.agent = Agent(os.path.join(wd, "control.sock"), agent_timeout, wd)
            self.sh("vmload virtio_blk && mkdir -p /mnt/disk && mount -t ext4 /dev/vda /mnt/disk")
        except BaseException:
            self.stop_vm()
            raise

    def run(self, cmd: str, timeout: float | None = None) -> tuple[int, str]:
        assert self.agent is not None
        rc, out = self.agent.run(cmd, timeout or self.command_timeout)
        return rc, out.decode(errors="replace")

    def sh(self, cmd: str, timeout: float | None = None) -> str:
        rc, out = self.run(cmd, timeout)
        if rc != 0:
            raise RuntimeError(f"{os.path.basename(self.wd)}: guest `{cmd}` exited {rc}: {out}")
        return out.strip()

    def stop_vm(self, remove_workdir: bool = True) -> None:
        try:
            if self.agent:
                self.agent.close()
        except Exception:
            pass
        subprocess.run([os.path.join(self.HERE, "stop.sh"), self.wd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for p in (self.disk, self.memory_backend):
            try:
                if p:
                    os.remove(p)
            except OSError:
                pass
        if remove_workdir:
            shutil.rmtree(self.wd, ignore_errors=True)


def exit_on_sigterm() -> None:
    """Makes SIGTERM (kill, timeout(1), a CI runner stopping a job) end the
    script through SystemExit, so its finally blocks stop the guests and
    servers it started; by default Python dies at once and leaves them running."""
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] in ("-h", "--help"):
        print(__doc__, file=sys.stderr)
        return 2
    workdir, verb, rest = argv[1], argv[2], argv[3:]
    timeout = 60.0
    if rest[:1] == ["--timeout"]:
        timeout = float(rest[1])
        rest = rest[2:]
    wd = workdir if os.path.isdir(workdir) else None
    try:
        if verb == "run":
            if len(rest) != 1:
                print("guest.py: run takes one command string", file=sys.stderr)
                return 2
            with Agent(_paths(workdir, "control.sock"), timeout, wd) as a:
                rc, out = a.run(rest[0], timeout)
            sys.stdout.buffer.write(out)
            sys.stdout.flush()
            return rc if 0 <= rc < 256 else 255
        if verb == "bg":
            if len(rest) != 1:
                print("guest.py: bg takes one command string", file=sys.stderr)
                return 2
            inner = encode_command(rest[0]).replace("'", "'\\''")
            cmd = (
                "n=$(date +%s)-$$; log=/tmp/bg-$n.log; "
                f"setsid sh -c '{inner}' </dev/null >$log 2>&1 & echo \"$! $log\""
            )
            with Agent(_paths(workdir, "control.sock"), timeout, wd) as a:
                rc, out = a.run(cmd, timeout)
            sys.stdout.buffer.write(out)
            return rc if 0 <= rc < 256 else 255
        if verb == "wait-ready":
            with Agent(_paths(workdir, "control.sock"), timeout, wd) as a:
                rc, out = a.run("echo ready", timeout)
            if rc != 0 or out.strip() != b"ready":
                print(f"guest.py: unexpected answer rc={rc} {out!r}", file=sys.stderr)
                return 1
            return 0
        if verb == "qmp":
            if not rest:
                print("guest.py: qmp needs a command name", file=sys.stderr)
                return 2
            args = json.loads(rest[1]) if len(rest) > 1 else None
            reply = qmp(_paths(workdir, "qmp.sock"), rest[0], args, timeout)
            print(json.dumps(reply))
            return 0 if "return" in reply else 1
    except GuestTimeout as e:
        print(f"guest.py: timeout: {e}", file=sys.stderr)
        return 124
    except (GuestError, OSError) as e:
        print(f"guest.py: {e}", file=sys.stderr)
        return 125
    print(f"guest.py: unknown verb {verb!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
