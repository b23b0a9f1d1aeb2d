# SPDX-License-Identifier: Apache-2.0
"""bench/host.py compare: one TCG guest of the comparison. It boots with its RAM in a shared
file (the memory the host budgets), starts balloond on virtio-serial, runs its seeded schedule
of phases under the guest's samplers, and reports each phase with the guest's own split of
its CPU (guest_cpu); the host side reads its RAM file's blocks and its QEMU's CPU and faults."""

from __future__ import annotations

import os
import re

from hostlib import MiB, ROOT, proc_cpu_ticks, proc_stat


def guest_cpu(text: str) -> dict:
    """Seconds over the phase, from its two lines of ticks (start_schedule): balloond's tree,
    the guest's user, system and irq time, the pages reclaim scanned and stole, THP faults
    and fallbacks, and direct compaction (stalls, pages scanned to migrate and for free
    targets), and the guest's anonymous huge pages at the phase's start (between phases the
    balloon is the only large anonymous memory: how much of it a burst gets back in 2 MiB
    pages); {} when a line is missing. (Older runs' lines have four numbers, with no
    reclaim counts and a balloond figure that counted reaped holders' whole lifetime, six,
    with no THP counts, eight, with no compaction counts, or eleven, with no huge pages.)"""
    lines = [[int(x) for x in line.split()] for line in text.splitlines() if len(line.split()) in (4, 6, 8, 11, 12)]
    if len(lines) != 2 or len(lines[0]) != len(lines[1]):
        return {}
    d = [b - a for a, b in zip(*lines)]
    out = {"balloond_s": d[0] / 100, "user_s": d[1] / 100, "system_s": d[2] / 100, "irq_s": d[3] / 100}
    if len(d) >= 6:
        out.update(scanned_mib=round(d[4] * 4096 / MiB), stolen_mib=round(d[5] * 4096 / MiB))
    if len(d) >= 8:
        out.update(thp_faults=d[6], thp_fallbacks=d[7])
    if len(d) >= 11:  # direct compaction: a THP fault's cost when free memory is in pieces
        out.update(compact_stalls=d[8], compact_migrate_scanned=d[9], compact_free_scanned=d[10])
    if len(d) == 12:  # AnonHugePages (kB) at the start, not a difference
        out.update(anon_huge_start_mib=round(lines[0][11] / 1024))
    return out


# The CPU clock ticks of balloond's tree in the guest (shell, needs $p = balloond's pid): itself
# and its children (the holders), each with its reaped children, so a holder's lifetime CPU stays
# counted when balloond reaps it.
BALLOOND_TREE_TICKS = ("for f in /proc/[0-9]*/stat; do cat $f; done 2>/dev/null | "
                       "awk -v p=$p '{q=$1; sub(/^[0-9]+ \\(.*\\) /,\"\"); if (q == p || $2 == p) s += $12+$13+$14+$15} END{print s+0}'")


def fields(text: str) -> dict:
    return {k: int(v) for k, v in re.findall(r"([a-z-]+)=(-?\d+)", text)}


# tests/vm/boot.sh's -cpu model: --guest-cpu's default, and the model of runs from before it was recorded.
DEFAULT_CPU = "max"


class VMGuest:
    """One TCG guest with its RAM in a shared file and balloond on virtio-serial."""

    def __init__(self, name: str, initramfs: str, balloond: bool, balloond_keys: list[str] | None = None,
                 ram_dir: str | None = None, cpu: str | None = None):
        """`ram_dir`: where the RAM file goes (default BENCH_RAM_DIR, else /dev/shm); `cpu`: QEMU's
        -cpu model (default boot.sh's, DEFAULT_CPU)."""
        import guest as G
        self.name = name
        ram_dir = ram_dir or os.environ.get("BENCH_RAM_DIR", "/dev/shm")
        self.ram_file = os.path.join(ram_dir, f"bench-host-{name}-{os.getpid()}")
        self.vm = G.BootedGuest(os.path.join(ROOT, "tests", "vm", "work", f"bench-host-{name}-{os.getpid()}"), initramfs,
                                disk_size="1G", memory_backend=self.ram_file, timeout=7200, ready_timeout=180,
                                agent_timeout=120, command_timeout=600, boot_args=("--cpu", cpu) if cpu else ())
        self.wd = self.vm.wd
        self.qemu_pid: int | None = None
        try:
            self.sh("dd if=/dev/zero of=/mnt/disk/cache bs=1M count=600 2>/dev/null; "
                    "dd if=/dev/zero of=/mnt/disk/ws bs=1M count=128 2>/dev/null; sync; echo 3 > /proc/sys/vm/drop_caches", 600)
            self.port = os.path.join(self.wd, "port0.sock")
            if balloond:
                self.sh(f"printf '{balloond_conf(balloond_keys or [])}' > /tmp/b.conf")
                env = os.environ.get("BENCH_BALLOOND_ENV", "")
                self.sh(f"{env + ' ' if env else ''}balloond --config /tmp/b.conf >/tmp/balloond.log 2>&1 & echo $! >/tmp/balloond.pid")
        except BaseException:
            self.vm.stop_vm()
            raise

    def run(self, cmd: str, timeout: float = 600) -> tuple[int, str]:
        return self.vm.run(cmd, timeout)

    def sh(self, cmd: str, timeout: float = 600) -> str:
        return self.vm.sh(cmd, timeout)

    def allocated(self) -> int:
        try:
            return os.stat(self.ram_file).st_blocks * 512
        except OSError:
            return 0

    def qemu_sample(self) -> tuple[int, list[int]]:
        """QEMU's user+system time (clock ticks), what this guest took of the host's two cores,
        and [system time, minor faults]: the host kernel's work for it, e.g. faulting in RAM
        file holes the guest touches again. One read of /proc/PID/stat; 0s once QEMU is gone."""
        if self.qemu_pid is None:  # boot.sh wrote it before the guest answered; read once
            try:
                with open(os.path.join(self.wd, "qemu.pid")) as f:
                    self.qemu_pid = int(f.read().strip())
            except (OSError, ValueError):
                return 0, [0, 0]
        try:
            f = proc_stat(self.qemu_pid)
            return f[10] + f[11], [f[11], f[6]]
        except (OSError, ValueError, IndexError):
            return 0, [0, 0]

    def psi_some_total_us(self) -> int:
        m = re.search(r"some .*total=(\d+)", self.run("cat /proc/pressure/memory")[1])
        return int(m.group(1)) if m else 0

    def oom_kills(self) -> int:
        out = self.run("dmesg | grep -i 'killed process'")[1]
        return sum(1 for m in re.finditer(r"Killed process \d+ \(([^)]*)\)", out) if m.group(1) != "balloond")

    def start_schedule(self, phases: list[tuple[str, str]]) -> None:
        """Runs the phases one after another in the guest, each active one under the two samplers;
        each phase's start and end go to /tmp/phases, the samplers' lines to /tmp/w.N and /tmp/mw.N,
        the guest's CPU ticks at its start and end to /tmp/cpu.N."""
        # The guest's own split of an active phase's CPU, in clock ticks at its start and end:
        # balloond's tree (itself, its live holders and the ones it reaped: a holder's lifetime
        # CPU, its inflation's page zeroing, moves to balloond's cstime when it ends, so balloond
        # with reaped children alone would charge a deflate with the earlier inflation), then the
        # guest's user, system and irq time (/proc/stat), then pages scanned and stolen by reclaim,
        # then THP faults and their fallbacks to base pages (a burst's page faults multiply by 512
        # when its memory comes back in base pages, which under TCG costs guest CPU), direct
        # compaction, and AnonHugePages (a balloon of 4 KiB pages costs its deflate more).
        ticks = ("{ p=$(cat /tmp/balloond.pid 2>/dev/null); b=0; [ -n \"$p\" ] && b=$(" + BALLOOND_TREE_TICKS + "); "
                 "echo ${b:-0} $(awk '/^cpu /{print $2+$3, $4, $7+$8}' /proc/stat) "
                 "$(awk '/^pgscan_kswapd |^pgscan_direct /{s+=$2} /^pgsteal_kswapd |^pgsteal_direct /{t+=$2} /^thp_fault_alloc /{h=$2} /^thp_fault_fallback /{f=$2} /^compact_stall /{c=$2} /^compact_migrate_scanned /{m=$2} /^compact_free_scanned /{r=$2} END{print s+0, t+0, h+0, f+0, c+0, m+0, r+0}' /proc/vmstat) "
                 "$(awk '/^AnonHugePages:/{print $2}' /proc/meminfo); }")
        steps = []
        for i, (kind, cmd) in enumerate(phases):
            stamp = f"e=$(cut -d' ' -f1 /proc/uptime); echo \"{i} {kind} $rc $s $e\" >> /tmp/phases"
            if kind == "idle":
                steps.append(f"s=$(cut -d' ' -f1 /proc/uptime); {cmd} >/dev/null 2>&1; rc=$?; {stamp}")
            else:
                steps.append(f"workload mlockwatch 10 >/tmp/mw.{i} 2>&1 & w=$!; {ticks} >/tmp/cpu.{i}; s=$(cut -d' ' -f1 /proc/uptime); "
                             f"WORKLOAD_PSI_MS=10 {cmd} >/tmp/w.{i} 2>&1; rc=$?; {ticks} >>/tmp/cpu.{i}; kill -TERM $w; wait $w; {stamp}")
        self.sh("rm -f /tmp/phases /tmp/sched.done /tmp/w.* /tmp/mw.* /tmp/cpu.*; "
                f"( {'; '.join(steps)}; touch /tmp/sched.done ) </dev/null >/dev/null 2>&1 &")

    def schedule_done(self) -> bool:
        return self.run("test -e /tmp/sched.done")[0] == 0

    def phase_results(self) -> list[dict]:
        """Per phase: kind, exit status, run time (the workload's runtime-ms, else uptime's) and the
        samplers' fields (w: the workload's result line, mw: mlockwatch's)."""
        out = self.run("cat /tmp/phases; for f in /tmp/w.* /tmp/mw.* /tmp/cpu.*; do [ -e $f ] && { echo \"== $f\"; cat $f; }; done")[1]
        files: dict[str, str] = {}
        current = None
        rows = []
        for line in out.splitlines():
            if line.startswith("== /tmp/"):
                current = line[8:]
                files[current] = ""
            elif current:
                files[current] += line + "\n"
            else:
                p = line.split()
                if len(p) == 5:
                    rows.append({"phase": int(p[0]), "kind": p[1], "rc": int(p[2]), "seconds": float(p[4]) - float(p[3])})
        for r in rows:
            w = fields(next((l for l in files.get(f"w.{r['phase']}", "").splitlines() if l.startswith("workload ")), ""))
            if w.get("runtime-ms"):
                r["seconds"] = w["runtime-ms"] / 1000
            r["w"] = w
            r["mw"] = fields(files.get(f"mw.{r['phase']}", ""))
            r["cpu"] = guest_cpu(files.get(f"cpu.{r['phase']}", ""))
        return rows

    def stop(self) -> None:
        self.vm.stop_vm()


def cpu_ticks_or_zero(pid: int | None) -> int:
    """A process's CPU ticks; 0 once it is gone (a sample must not stop the run)."""
    try:
        return proc_cpu_ticks(pid) if pid else 0
    except (OSError, ValueError, IndexError):
        return 0


def balloond_conf(keys: list[str]) -> str:
    """The guest's balloond.conf (printf-escaped): the channel, 1 s stats, and any
    `Section.Key=Value` a policy carries (e.g. `Pressure.QuietPeriod=30s`) in its section."""
    sections: dict[str, list[str]] = {"Channel": ["Listen=virtio-serial:org.balloond.0"], "Stats": ["Interval=1s"]}
    for key in keys:
        section, _, setting = key.partition(".")
        sections.setdefault(section, []).append(setting)
    return "".join(f"[{name}]\\n" + "".join(f"{line}\\n" for line in lines) for name, lines in sections.items())
