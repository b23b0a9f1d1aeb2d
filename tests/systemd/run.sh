#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# tests/systemd/run.sh — balloond under real systemd (part of make test).
#
# Usage: tests/systemd/run.sh --deb PATH --hostd-deb PATH [--no-qemu] [--keep]
#
# 1. A cached debootstrapped Debian tree (mkroot.sh) is copied and booted with
#    systemd-nspawn -b; inside it:
#    - over a stand-in for the old single balloond package (balloonctl, the
#      agent, a locally edited /etc/balloon-hostd.conf): apt install
#      ./balloond_*.deb ./balloon-hostd_*.deb (balloonctl is in the latter)
#      takes the files over, keeps the edit
#    - the unit (with a unix-socket drop-in, as there is no virtio port) reaches
#      active with STATUS= shown; a sandbox probe run as ExecStartPre= of the
#      real unit shows PSI triggers and pagemap PFNs work under its hardening;
#      balloonctl inflates 64 MiB through it (mlock under the hardening);
#      the journal holds structured entries (PRIORITY, SYSLOG_IDENTIFIER,
#      CODE_*, upper-case metadata) and nothing on stdout/stderr
#    - systemctl reload applies a changed configuration (and keeps the old one
#      when the new one is broken)
#    - balloon-hostd (Type=notify, WatchdogSec=2s here) with a guest file for
#      that balloond: active once READY=1, STATUS= counts the connected guest;
#      a changed guest file + systemctl reload sets its Target= on balloond; a
#      broken guest file line + reload is named by file, line and key in the
#      journal while the old configuration stays (guest still up, same pid);
#      no watchdog restart; a clean stop
#    - a broken /etc/balloond.conf fails the unit with file, line and key in
#      journalctl -u balloond
#    - a loop stalled on purpose (BALLOOND_TEST_FAULTS=1, SIGUSR2) is restarted
#      by the watchdog: Result=watchdog, then NRestarts >= 1
# 2. Unless --no-qemu: qemu.sh boots the same tree under QEMU TCG with the
#    virtio port attached; the udev rule starts balloond and the host's
#    balloonctl inflates through the port.
#
# nspawn runs in a cgroup of its own (removed afterwards) under a hard time
# limit; the container is powered off and the copied tree removed (--keep keeps it).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
deb=
hostd_deb=
qemu=1
keep=0
while (($#)); do
    case $1 in
        --deb) deb=$2; shift 2 ;;
        --hostd-deb) hostd_deb=$2; shift 2 ;;
        --no-qemu) qemu=0; shift ;;
        --keep) keep=1; shift ;;
        *) echo "systemd-tests: unknown argument $1" >&2; exit 2 ;;
    esac
done
[[ -f $deb && -f $hostd_deb ]] || { echo "systemd-tests: --deb PATH and --hostd-deb PATH required (make deb)" >&2; exit 2; }
deb=$(cd "$(dirname "$deb")" && pwd)/$(basename "$deb")
hostd_deb=$(cd "$(dirname "$hostd_deb")" && pwd)/$(basename "$hostd_deb")
[[ $(id -u) == 0 ]] || { echo "systemd-tests: must run as root" >&2; exit 1; }

t_all=$SECONDS
ts() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(ts)" 'BEGIN { printf "%.1f", b - a }'; }
step() { echo "systemd-tests: $*"; }
failures=0
fail() { echo "systemd-tests: FAIL: $*" >&2; failures=$((failures + 1)); }
ok() { step "ok: $*"; }

t=$(ts)
root=$("$here/mkroot.sh")
step "Debian tree $(basename "$root") ready ($(since "$t")s)"

work=$here/work/run-$$
tree=$work/tree
mkdir -p "$work"
t=$(ts)
cp -a "$root" "$tree"
cp "$deb" "$hostd_deb" "$tree/root/"
# A stand-in for the single balloond package from before the split: it owns
# balloonctl, the agent and the conffile /etc/balloon-hostd.conf, which the
# new balloon-hostd package must take over (Replaces/Breaks).
old=$work/old-balloond
mkdir -p "$old/DEBIAN" "$old/usr/bin" "$old/usr/sbin" "$old/etc"
printf '#!/bin/sh\necho old\n' >"$old/usr/bin/balloonctl"
printf '#!/bin/sh\necho old\n' >"$old/usr/sbin/balloon-hostd"
chmod 0755 "$old/usr/bin/balloonctl" "$old/usr/sbin/balloon-hostd"
cp "$repo/packaging/balloon-hostd.conf" "$old/etc/"
echo /etc/balloon-hostd.conf >"$old/DEBIAN/conffiles"
printf 'Package: balloond\nVersion: 0.0.1\nArchitecture: amd64\nMaintainer: test <test@example.org>\nDescription: stand-in for the old single package\n' \
    >"$old/DEBIAN/control"
dpkg-deb --root-owner-group -b "$old" "$tree/root/balloond_0.0.1_amd64.deb" >/dev/null
install -D -m 0755 "$here/guest/probe.pl" "$tree/usr/local/lib/balloond-test/probe.pl"
step "tree copied ($(since "$t")s)"

# A cgroup of our own in every hierarchy nspawn uses (--keep-unit puts its
# payload/supervisor cgroups below ours), so cleanup removes exactly ours.
cgroups=()
if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
    cgroups=(/sys/fs/cgroup/balloond-systemd-test-$$)
else
    for h in systemd unified; do
        [[ -d /sys/fs/cgroup/$h ]] && cgroups+=("/sys/fs/cgroup/$h/balloond-systemd-test-$$")
    done
fi

nspawn_pid=
leader=
machine=balloond-test-$$
cleanup() {
    set +e
    if [[ -n $leader ]] && kill -0 "$leader" 2>/dev/null; then
        nsenter -t "$leader" -a -- systemctl poweroff >/dev/null 2>&1
    fi
    if [[ -n $nspawn_pid ]]; then
        for _ in $(seq 100); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$nspawn_pid" 2>/dev/null && { kill -TERM "$nspawn_pid"; sleep 2; kill -KILL "$nspawn_pid" 2>/dev/null; }
        wait "$nspawn_pid" 2>/dev/null
    fi
    for cg in "${cgroups[@]}"; do
        [[ -d $cg ]] && find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null
        [[ -d $cg ]] && echo "systemd-tests: could not remove cgroup $cg" >&2
    done
    if [[ $keep == 0 ]]; then rm -rf "$work"; else echo "systemd-tests: kept $work" >&2; fi
}
trap cleanup EXIT

for cg in "${cgroups[@]}"; do mkdir -p "$cg"; done

# Run a command in the container (all its namespaces, a clean environment).
ns() { nsenter -t "$leader" -a -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 SYSTEMD_PAGER= "$@"; }

# The container's init: a child of the inner systemd-nspawn. While nspawn sets up the
# namespaces its first child can be a short-lived helper, so a leader that is gone is
# looked up again (on a loaded host the helper once lived long enough to be taken for init).
find_leader() {
    local np
    leader=
    np=$(pgrep -P "$nspawn_pid" -x systemd-nspawn || true)
    [[ -n $np ]] && leader=$(pgrep -P "$np" | head -n1 || true)
    [[ -n $leader ]]
}

t=$(ts)
(
    for cg in "${cgroups[@]}"; do echo "$BASHPID" >"$cg/cgroup.procs"; done
    exec setsid timeout -k 5 300 systemd-nspawn -q -D "$tree" -b --register=no --keep-unit \
        --machine="$machine" --private-network --capability=CAP_IPC_LOCK
) </dev/null >"$work/console.log" 2>&1 &
nspawn_pid=$!
for _ in $(seq 200); do
    find_leader && break
    sleep 0.05
done
[[ -n $leader ]] || { cat "$work/console.log" >&2; echo "systemd-tests: nspawn did not start" >&2; exit 1; }
state=
for _ in $(seq 600); do
    kill -0 "$leader" 2>/dev/null || find_leader || true
    state=$(ns systemctl is-system-running 2>/dev/null || true)
    [[ $state == running || $state == degraded ]] && break
    sleep 0.1
done
if [[ $state != running && $state != degraded ]]; then
    echo "systemd-tests: the container did not boot in 60 s (state '$state'); its console:" >&2
    tail -n 30 "$work/console.log" >&2
    exit 1
fi
step "container booted ($state, $(since "$t")s)"

show() { ns systemctl show -p "$1" --value balloond; }
# wait_for SECONDS DESCRIPTION COMMAND...: poll until COMMAND succeeds.
wait_for() {
    local limit=$1 what=$2 i
    shift 2
    for ((i = 0; i < limit * 10; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    fail "timed out after ${limit}s waiting for: $what"
    return 1
}
is_active() { [[ $(show ActiveState) == active ]]; }

# --- install -------------------------------------------------------------------
t=$(ts)
debname=$(basename "$deb")
hostd_debname=$(basename "$hostd_deb")
ns dpkg -i /root/balloond_0.0.1_amd64.deb >/dev/null || fail "dpkg -i the old package's stand-in"
ns sh -c 'echo "# a local edit" >>/etc/balloon-hostd.conf'
# No tty: a conffile question would fail the install rather than wait.
if out=$(ns sh -c "cd /root && DEBIAN_FRONTEND=noninteractive apt install -y ./$debname ./$hostd_debname </dev/null" 2>&1); then
    ok "apt install ./$debname ./$hostd_debname ($(since "$t")s)"
else
    echo "$out" >&2
    fail "apt install ./$debname ./$hostd_debname"
    exit 1
fi
[[ $(ns systemctl is-enabled balloond 2>&1) == disabled ]] && ok "unit installed, not enabled (the udev rule starts it)" \
    || fail "is-enabled: $(ns systemctl is-enabled balloond 2>&1)"
ns test -f /lib/udev/rules.d/60-balloond.rules && ns test -f /etc/balloond.conf \
    && ns dpkg-query -W -f='${Conffiles}' balloond | grep -q /etc/balloond.conf \
    && ok "udev rule and conffile /etc/balloond.conf installed" || fail "rule or conffile missing"
ns man -w balloond balloond.conf balloonctl >/dev/null 2>&1 || ns test -f /usr/share/man/man8/balloond.8.gz \
    || fail "man pages missing"
[[ $(ns dpkg -S /usr/bin/balloonctl /usr/sbin/balloon-hostd 2>&1 | cut -d: -f1 | sort -u) == balloon-hostd ]] \
    && [[ $(ns systemctl is-enabled balloon-hostd 2>&1) == disabled ]] \
    && ns dpkg-query -W -f='${Conffiles}' balloon-hostd | grep -q /etc/balloon-hostd.conf && ns test -d /etc/balloon-hostd.d \
    && ns grep -q '^# a local edit' /etc/balloon-hostd.conf \
    && [[ $(ns dpkg-query -W -f='${Version}' balloond) != 0.0.1 ]] \
    && ok "balloon-hostd's package took balloonctl, the agent and the conffile over from the old balloond (local edit kept); its unit not enabled" \
    || fail "balloon-hostd's package: $(ns dpkg -S /usr/bin/balloonctl 2>&1), is-enabled $(ns systemctl is-enabled balloon-hostd 2>&1)"

# --- active, STATUS, sandbox probe, inflation, journal -------------------------------
ns mkdir -p /etc/balloond.conf.d /etc/systemd/system/balloond.service.d
ns sh -c 'printf "[Channel]\nListen=unix:/run/balloond/balloond.sock\n" >/etc/balloond.conf.d/50-test.conf'
ns sh -c 'printf "[Service]\nExecStartPre=/usr/bin/perl /usr/local/lib/balloond-test/probe.pl\nLimitCORE=0\n" >/etc/systemd/system/balloond.service.d/50-probe.conf'
ns systemctl daemon-reload
t=$(ts)
if ns systemctl start balloond && wait_for 20 "balloond active" is_active; then
    ok "unit active in $(since "$t")s; systemctl status:"
    ns systemctl status --no-pager --lines=0 balloond | sed 's/^/    /'
else
    fail "balloond did not start"; ns systemctl status --no-pager balloond >&2 || true
    ns journalctl -u balloond --no-pager >&2 || true
    exit 1
fi
status=$(show StatusText)
[[ $status =~ ^target\ 0\ B,\ actual\ 0\ B,\ .*host\ not\ connected ]] && ok "STATUS=$status" || fail "StatusText: '$status'"
journal=$(ns journalctl -u balloond -o cat --no-pager) || fail "journalctl -u balloond exited $?"
probe=$(grep '^probe:' <<<"$journal" || true)   # no lines: the checks below fail and print it
echo "$probe" | sed 's/^/    /'
grep -q 'psi-trigger-2s ok' <<<"$probe" && ok "PSI trigger (2 s window) under the unit's hardening" \
    || fail "PSI trigger under the hardening: $probe"
grep -q 'pagemap-pfn ok' <<<"$probe" && ok "pagemap PFNs under the unit's hardening (CAP_SYS_ADMIN)" \
    || fail "pagemap under the hardening: $probe"
pid=$(show MainPID)
caps=$(ns awk '/^CapEff/ {print $2}' "/proc/$pid/status")
(( (0x$caps >> 14) & 1 && (0x$caps >> 21) & 1 )) && ok "balloond runs with CAP_IPC_LOCK and CAP_SYS_ADMIN (CapEff $caps)" \
    || fail "capabilities: CapEff $caps"
# Windows that are not a multiple of 2 s need CAP_SYS_RESOURCE (bit 24), which the unit grants
# where the machine has it; without it balloond must say it fell back to 2 s windows.
if (( (0x$caps >> 24) & 1 )); then
    grep -q 'psi-trigger-1s ok' <<<"$probe" && ok "PSI trigger with a 1 s window (CapEff $caps has CAP_SYS_RESOURCE)" \
        || fail "CAP_SYS_RESOURCE in CapEff $caps but the 1 s PSI window was refused: $probe"
else
    grep -q 'psi-trigger-1s failed' <<<"$probe" && grep -q 'using 2 s windows' <<<"$journal" \
        && ok "no CAP_SYS_RESOURCE here (CapEff $caps): 1 s window refused, balloond fell back to 2 s windows" \
        || fail "1 s PSI window without CAP_SYS_RESOURCE: probe '$probe'; no 2 s fallback logged"
fi

if out=$(ns balloonctl --unix /run/balloond/balloond.sock set 64M --wait 2>&1 | tail -n1); then
    # Chunks live in holder processes (children of balloond): count them all.
    vmlck=$(ns sh -c "for p in $pid \$(cat /proc/$pid/task/$pid/children); do awk '/^VmLck:/ {print \$2}' /proc/\$p/status; done | awk '{s+=\$1} END {print s+0}'")
    [[ $vmlck == 65536 ]] && ok "balloonctl inflated 64 MiB through the unit: VmLck of balloond and its holders $vmlck kB ($out)" \
        || fail "VmLck $vmlck kB (balloond and its holders) after set 64M"
else
    fail "balloonctl set 64M: $out"
fi
wait_for 5 "STATUS with the new target" bash -c "[[ \$(nsenter -t $leader -a -- systemctl show -p StatusText --value balloond) == 'target 64 MiB, actual 64 MiB'* ]]" \
    && ok "STATUS kept current: $(show StatusText)"

json=$(ns journalctl -u balloond -o json --no-pager --output-fields=MESSAGE,PRIORITY,SYSLOG_IDENTIFIER,CODE_FILE,CODE_LINE,CODE_FUNC,MEMORY_TOTAL,_TRANSPORT)
started=$(grep '"MESSAGE":"balloond [^ "]* started' <<<"$json" | head -n1 || true)
if [[ $started == *'"PRIORITY":"6"'* && $started == *'"SYSLOG_IDENTIFIER":"balloond"'* && $started == *'"CODE_FILE":"'*Daemon.swift'"'* \
      && $started == *'"CODE_LINE":"'[0-9]* && $started == *'"CODE_FUNC":"'* && $started == *'"MEMORY_TOTAL":"'* \
      && $started == *'"_TRANSPORT":"journal"'* ]]; then
    ok "structured journal entry: $(sed 's/"__CURSOR":"[^"]*",//; s/"__[A-Z_]*":"[^"]*",\{0,1\}//g' <<<"$started" | cut -c1-240)"
else
    fail "journal entry not structured as expected: ${started:-none}"
fi
stdout_journal=$(ns journalctl -u balloond _TRANSPORT=stdout -o cat --no-pager) || fail "journalctl _TRANSPORT=stdout exited $?"
stdout_lines=$(grep -v '^probe:' <<<"$stdout_journal" | grep -c . || true)
[[ $stdout_lines == 0 ]] && ok "nothing from balloond on the stderr stream (journal only, never both)" \
    || fail "$stdout_lines lines on stdout/stderr"

# --- reload ------------------------------------------------------------------------
restarts_before=$(show NRestarts)
pid_before=$(show MainPID)
ns sh -c 'printf "[Channel]\nListen=unix:/run/balloond/balloond.sock\n[Balloon]\nMaxBalloon=32M\n" >/etc/balloond.conf.d/50-test.conf'
ns systemctl reload balloond
if wait_for 10 "actual 32 MiB after reload" bash -c "[[ \$(nsenter -t $leader -a -- systemctl show -p StatusText --value balloond) == *'actual 32 MiB'* ]]"; then
    [[ $(show MainPID) == "$pid_before" ]] && ok "systemctl reload applied MaxBalloon=32M without a restart: $(show StatusText)" \
        || fail "reload restarted the daemon"
    ns journalctl -u balloond --no-pager -o cat | grep -q 'configuration reloaded' && ok "journal: configuration reloaded" \
        || fail "no 'configuration reloaded' in the journal"
fi
ns sh -c 'printf "[Balloon]\nChunkSize=64Q\n" >/etc/balloond.conf.d/60-broken.conf'
ns systemctl reload balloond
sleep 1
if is_active && ns journalctl -u balloond --no-pager -o cat | grep -q 'reload failed, keeping the previous configuration: /etc/balloond.conf.d/60-broken.conf:2: \[Balloon\] ChunkSize'; then
    ok "a broken drop-in on reload is logged with file, line, key; the daemon keeps running"
else
    fail "reload with a broken drop-in"
fi
ns rm -f /etc/balloond.conf.d/60-broken.conf

# --- balloon-hostd: notify, reload, a broken guest file ------------------------------
hshow() { ns systemctl show -p "$1" --value balloon-hostd; }
hjournal() { ns journalctl -u balloon-hostd --no-pager -o cat; }
# A short watchdog, so a loop that did not ping would be caught within the section.
ns mkdir -p /etc/systemd/system/balloon-hostd.service.d
ns sh -c 'printf "[Service]\nWatchdogSec=2s\nRestart=no\n" >/etc/systemd/system/balloon-hostd.service.d/50-test.conf'
ns systemctl daemon-reload
# Policy=manual: the agent sets only what the file says (auto would size the
# balloon against this machine's memory).
ns sh -c 'printf "[Guest]\nChannel=unix:/run/balloond/balloond.sock\nPolicy=manual\n" >/etc/balloon-hostd.d/local.conf'
t=$(ts)
# Type=notify: start returns once READY=1 came (or fails).
if ns systemctl start balloon-hostd && [[ $(hshow ActiveState) == active ]]; then
    ok "balloon-hostd active (READY=1) in $(since "$t")s; NotifyAccess=$(hshow NotifyAccess), WatchdogUSec=$(hshow WatchdogUSec)"
else
    fail "balloon-hostd did not start"; ns systemctl status --no-pager balloon-hostd >&2 || true
fi
hpid=$(hshow MainPID)
# systemd stamps each WATCHDOG=1 it gets: the stamp moves when the loop pings.
wd=$(hshow WatchdogTimestampMonotonic)
wait_for 5 "a WATCHDOG=1 ping" bash -c "[[ \$(nsenter -t $leader -a -- systemctl show -p WatchdogTimestampMonotonic --value balloon-hostd) != $wd ]]" \
    && ok "WATCHDOG=1 pings arrive (WatchdogTimestamp moved from $wd to $(hshow WatchdogTimestampMonotonic))"
wait_for 10 "STATUS= with the guest connected" bash -c "[[ \$(nsenter -t $leader -a -- systemctl show -p StatusText --value balloon-hostd) == '1 guests, 1 connected, '* ]]" \
    && ok "STATUS=$(hshow StatusText)"
list=$(ns balloonctl list 2>&1) || fail "balloonctl list: $list"
grep -Eq '^local +up +manual' <<<"$list" && ok "balloonctl list through the agent:" && sed 's/^/    /' <<<"$list" \
    || fail "balloonctl list: $list"
# A changed guest file: reload adds it again with its Target=, which reaches balloond.
ns sh -c 'printf "[Guest]\nChannel=unix:/run/balloond/balloond.sock\nPolicy=manual\nTarget=16M\n" >/etc/balloon-hostd.d/local.conf'
ns systemctl reload balloon-hostd || fail "systemctl reload balloon-hostd"
if wait_for 10 "balloond at 16 MiB after the agent's reload" bash -c "[[ \$(nsenter -t $leader -a -- systemctl show -p StatusText --value balloond) == 'target 16 MiB, actual 16 MiB'* ]]"; then
    ok "reload applied the changed guest file: balloond $(show StatusText); journal:"
    hjournal | grep -E 'local: (removed|added)|reloaded' | tail -n 3 | sed 's/^/    /'
fi
# A broken line: named by file, line and key; the old configuration stays.
ns sh -c 'printf "[Guest]\nChannel=unix:/run/balloond/balloond.sock\nPolicy=manual\nTarget=16M\nMin=lots\n" >/etc/balloon-hostd.d/local.conf'
ns systemctl reload balloon-hostd || fail "systemctl reload balloon-hostd (broken guest file)"
# ExecReload= only sends SIGHUP: wait for the agent to have read the files.
wait_for 10 "the reload's error in the journal" bash -c "nsenter -t $leader -a -- journalctl -u balloon-hostd --no-pager -o cat | grep -q 'reload failed'"
msg=$(hjournal | grep 'reload failed, configuration unchanged: /etc/balloon-hostd.d/local.conf:5: \[Guest\] Min' | tail -n1 || true)
list=$(ns balloonctl list 2>&1 || true)
if [[ -n $msg && $(hshow ActiveState) == active && $(hshow MainPID) == "$hpid" ]] && grep -Eq '^local +up +manual .*16 MiB' <<<"$list"; then
    ok "broken guest file on reload: '$msg'; the agent keeps running with the old configuration (guest up, target 16 MiB)"
else
    fail "broken guest file on reload: message '${msg}', $(hshow ActiveState), pid $(hshow MainPID) (was $hpid), list: $list"
    hjournal | tail -n 10 >&2
fi
[[ $(hshow NRestarts) == 0 && $(hshow MainPID) == "$hpid" ]] && ok "no watchdog restart over $(since "$t")s with WatchdogSec=2s (the loop pings)" \
    || fail "balloon-hostd restarted: NRestarts=$(hshow NRestarts), Result=$(hshow Result)"
t=$(ts)
ns systemctl stop balloon-hostd
[[ $(hshow Result) == success ]] && hjournal | grep -q 'balloon-hostd: stopped' \
    && ok "balloon-hostd stopped cleanly in $(since "$t")s (Result=success)" || fail "stop: Result=$(hshow Result)"
ns rm -rf /etc/systemd/system/balloon-hostd.service.d /etc/balloon-hostd.d/local.conf
ns systemctl daemon-reload

# --- broken /etc/balloond.conf ---------------------------------------------------------
ns systemctl stop balloond
ns cp /etc/balloond.conf /root/balloond.conf.orig
ns sh -c 'printf "[Balloon]\nChunkSize=64Q\n" >>/etc/balloond.conf'
line=$(ns grep -n '^ChunkSize=64Q' /etc/balloond.conf | cut -d: -f1)
ns systemctl start balloond 2>/dev/null || true
wait_for 10 "balloond failed" bash -c "[[ \$(nsenter -t $leader -a -- systemctl is-failed balloond) == failed ]]"
msg=$(ns journalctl -u balloond --no-pager -o cat | grep "/etc/balloond.conf:$line: \[Balloon\] ChunkSize" | tail -n1 || true)
if [[ $(ns systemctl is-failed balloond) == failed && -n $msg ]]; then
    ok "broken /etc/balloond.conf: unit failed; journalctl -u balloond: $msg"
    fields=$(ns journalctl -u balloond -o verbose --no-pager CONFIG_FILE=/etc/balloond.conf | grep -E '^ +(CONFIG_LINE|CONFIG_KEY|PRIORITY)=' | tr -s ' ' | tr '\n' ' ')
    [[ $fields == *"CONFIG_LINE=$line"* && $fields == *"CONFIG_KEY=ChunkSize"* ]] && ok "structured: $fields" \
        || fail "CONFIG_* fields missing: $fields"
else
    fail "broken config: is-failed=$(ns systemctl is-failed balloond), message '${msg}'"
    ns journalctl -u balloond --no-pager -n 20 >&2
fi
ns cp /root/balloond.conf.orig /etc/balloond.conf
ns systemctl reset-failed balloond

# --- watchdog ------------------------------------------------------------------------------
ns sh -c 'printf "[Service]\nEnvironment=BALLOOND_TEST_FAULTS=1\nWatchdogSec=2s\nRestartSec=3s\nLimitCORE=0\n" >/etc/systemd/system/balloond.service.d/60-watchdog.conf'
ns systemctl daemon-reload
ns systemctl start balloond
wait_for 20 "balloond active" is_active
restarts=$(show NRestarts)
t=$(ts)
ns systemctl kill --kill-who=main -s SIGUSR2 balloond
if wait_for 15 "Result=watchdog" bash -c "[[ \$(nsenter -t $leader -a -- systemctl show -p Result --value balloond) == watchdog ]]"; then
    ok "stalled loop: Result=watchdog after $(since "$t")s"
fi
if wait_for 20 "restart after the watchdog" bash -c "[[ \$(nsenter -t $leader -a -- systemctl show -p NRestarts --value balloond) -gt $restarts ]]" \
        && wait_for 20 "active again" is_active; then
    ok "restarted by the watchdog: NRestarts=$(show NRestarts), active again ($(since "$t")s); journal:"
    ns journalctl -u balloond --no-pager -o cat | grep -E 'Watchdog timeout|stalling|with result .watchdog.|Scheduled restart' | sed 's/^/    /'
fi

# --- leave the tree as the package left it (for qemu.sh) -----------------------------------
ns systemctl stop balloond
ns rm -rf /etc/systemd/system/balloond.service.d /etc/balloond.conf.d /root/balloond.conf.orig /root/"$debname" /root/"$hostd_debname" /root/balloond_0.0.1_amd64.deb
ns systemctl daemon-reload
ns systemctl poweroff >/dev/null 2>&1 || true
for _ in $(seq 150); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.1; done
leader=
step "nspawn tests done ($((SECONDS - t_all))s so far)"

if [[ $qemu == 1 ]]; then
    dpkg-deb -x "$hostd_deb" "$work/deb"
    if ! "$here/qemu.sh" --tree "$tree" --balloonctl "$work/deb/usr/bin/balloonctl" --work "$work/qemu"; then
        fail "qemu test"
    fi
fi

if ((failures)); then
    echo "----- container console -----" >&2
    tail -n 40 "$work/console.log" >&2
    echo "systemd-tests: $failures failure(s) ($((SECONDS - t_all))s)" >&2
    exit 1
fi
step "PASS ($((SECONDS - t_all))s)"
