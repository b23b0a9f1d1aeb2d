#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# tests/systemd/test.sh — make test-systemd: the Debian tree (debootstrap, on a
# fresh clone) is made while the .deb builds, then run.sh tests it under
# systemd-nspawn and QEMU. Needs root.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
t0=$SECONDS
mkdir -p "$here/work"
"$here/mkroot.sh" >"$here/work/mkroot.out" 2>&1 &
mkroot=$!
"$here/../vm/setup.sh" --quiet
paths=$("$repo/scripts/mkdeb.sh" -o "$here/work" | tail -n2)
mapfile -t debs <<<"$paths"
if ! wait "$mkroot"; then
    cat "$here/work/mkroot.out" >&2
    exit 1
fi
echo "systemd-tests: package and Debian tree ready in $((SECONDS - t0))s"
"$here/run.sh" --deb "${debs[0]}" --hostd-deb "${debs[1]}"
echo "systemd-tests: total $((SECONDS - t0))s"
