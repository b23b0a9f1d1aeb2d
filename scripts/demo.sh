#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# A local demo: balloond on a unix-socket channel with a temporary config, and
# balloon-hostd, the host agent, with a guest file for it; balloonctl talks to
# the guest through the agent (list, --guest NAME set/stats). Shows
# MemAvailable and Mlocked before and after. Policy manual: the agent moves the
# balloon only when told (auto would size it against this machine's memory).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(swift build -c release --show-bin-path)
work=$(mktemp -d /tmp/balloond-demo.XXXXXX)
sock="$work/balloond.sock"
control="$work/hostd.control"
mkdir -p "$work/guests"
cat > "$work/balloond.conf" <<CONF
[Channel]
Listen=unix:$sock

[Balloon]
ChunkSize=64M
TransparentHugePages=yes

[Log]
Level=info
CONF
cat > "$work/balloon-hostd.conf" <<CONF
[Host]
Control=$control
GuestDirectory=$work/guests

[Policy]
Mode=manual

[Discovery]
Libvirt=no
CONF
cat > "$work/guests/demo.conf" <<CONF
[Guest]
Channel=unix:$sock
Policy=manual
CONF

meminfo() { awk '/^(MemAvailable|Mlocked):/ { printf "  %-14s %8.1f MiB\n", $1, $2/1024 }' /proc/meminfo; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "configuration ($work/balloond.conf)"
"$bin/balloond" --config "$work/balloond.conf" --dump-config | grep -v '^#' | grep -v '^$'

step "starting balloond"
"$bin/balloond" --config "$work/balloond.conf" 2> "$work/balloond.log" &
pid=$!
hostd=
cleanup() {
    [[ -n $hostd ]] && { kill "$hostd" 2>/dev/null || true; wait "$hostd" 2>/dev/null || true; }
    kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 100); do [[ -S $sock ]] && break; sleep 0.05; done
[[ -S $sock ]] || { cat "$work/balloond.log"; echo "balloond did not start" >&2; exit 1; }

step "starting balloon-hostd ($work/balloon-hostd.conf, guest file $work/guests/demo.conf)"
sed 's/^/  /' "$work/guests/demo.conf"
"$bin/balloon-hostd" --config "$work/balloon-hostd.conf" 2> "$work/balloon-hostd.log" &
hostd=$!
agent() { "$bin/balloonctl" --agent "$control" "$@"; }
for _ in $(seq 100); do
    [[ -S $control ]] && agent list --json 2>/dev/null | grep -q '"connected":true' && break
    kill -0 "$hostd" 2>/dev/null || break
    sleep 0.05
done
agent list --json 2>/dev/null | grep -q '"connected":true' \
    || { cat "$work/balloon-hostd.log"; echo "balloon-hostd did not connect to balloond" >&2; exit 1; }
ctl() { echo "\$ balloonctl --guest demo $*"; agent --guest demo "$@"; }
list() { echo "\$ balloonctl list"; agent list; }

step "before"
meminfo
list
step "info (through the agent)"
ctl info
step "inflate to 256 MiB"
ctl set 256M --wait
meminfo
holders=$(cat /proc/$pid/task/$pid/children)
locked=$(for p in $pid $holders; do awk '/^VmLck:/ {print $2}' /proc/$p/status; done | awk '{s+=$1} END {print s/1024}')
echo "  locked by balloond and its $(wc -w <<<"$holders") holder processes (oom_score_adj=1000): $locked MiB"
list
step "stats"
ctl stats
step "deflate"
ctl set 0 --wait
meminfo
list
step "stop balloon-hostd (SIGTERM: close the sessions, exit 0)"
kill -TERM "$hostd"
wait "$hostd" && echo "  balloon-hostd exited with status 0"
hostd=
step "stop balloond (SIGTERM: deflate fully, tell the host, exit 0)"
kill -TERM "$pid"
wait "$pid" && echo "  balloond exited with status 0"
step "balloon-hostd's log"
cat "$work/balloon-hostd.log"
step "balloond's log"
cat "$work/balloond.log"
