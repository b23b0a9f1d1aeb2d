#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# A local demo: balloond on a unix-socket channel with a temporary config,
# driven by balloonctl. Shows MemAvailable and Mlocked before and after.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(swift build -c release --show-bin-path)
work=$(mktemp -d /tmp/balloond-demo.XXXXXX)
sock="$work/balloond.sock"
cat > "$work/balloond.conf" <<CONF
[Channel]
Listen=unix:$sock

[Balloon]
ChunkSize=64M
TransparentHugePages=yes

[Log]
Level=info
CONF

meminfo() { awk '/^(MemAvailable|Mlocked):/ { printf "  %-14s %8.1f MiB\n", $1, $2/1024 }' /proc/meminfo; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "configuration ($work/balloond.conf)"
"$bin/balloond" --config "$work/balloond.conf" --dump-config | grep -v '^#' | grep -v '^$'

step "starting balloond"
"$bin/balloond" --config "$work/balloond.conf" 2> "$work/balloond.log" &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for _ in $(seq 100); do [[ -S $sock ]] && break; sleep 0.05; done
[[ -S $sock ]] || { cat "$work/balloond.log"; echo "balloond did not start" >&2; exit 1; }
ctl() { echo "\$ balloonctl --unix $sock $*"; "$bin/balloonctl" --unix "$sock" "$@"; }

step "before"
meminfo
step "info"
ctl info
step "inflate to 256 MiB"
ctl set 256M --wait
meminfo
holders=$(cat /proc/$pid/task/$pid/children)
locked=$(for p in $pid $holders; do awk '/^VmLck:/ {print $2}' /proc/$p/status; done | awk '{s+=$1} END {print s/1024}')
echo "  locked by balloond and its $(wc -w <<<"$holders") holder processes (oom_score_adj=1000): $locked MiB"
step "stats"
ctl stats
step "deflate"
ctl set 0 --wait
meminfo
step "stop (SIGTERM: deflate fully, tell the host, exit 0)"
kill -TERM "$pid"
wait "$pid" && echo "  balloond exited with status 0"
step "daemon log"
cat "$work/balloond.log"
