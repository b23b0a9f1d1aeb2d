#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# tests/systemd/mkroot.sh — a cached Debian tree for the systemd tests.
#
# Usage: tests/systemd/mkroot.sh [--release bookworm] [--quiet]
# Prints the path of the tree: tests/systemd/work/root-RELEASE-KEY, where KEY
# is a hash of the release, the package list and this script, so a change in
# any of them builds a new tree. The first run takes about a minute (debootstrap
# --variant=minbase from the machine's own Debian mirror); later runs print
# the cached path at once. Trees of other keys are removed.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
release=bookworm
quiet=0
while (($#)); do
    case $1 in
        --release) release=$2; shift 2 ;;
        --quiet) quiet=1; shift ;;
        *) echo "mkroot: unknown argument $1" >&2; exit 2 ;;
    esac
done
say() { [[ $quiet == 1 ]] || echo "mkroot: $*" >&2; }

# systemd + udev: the init system under test; apt (in minbase) installs the .deb.
packages=systemd,udev
key=$(printf '%s\n' "$release" "$packages" | cat - "$0" | sha256sum | cut -c1-12)
work=$here/work
root=$work/root-$release-$key
if [[ -f $root/.complete ]]; then
    echo "$root"
    exit 0
fi

# The machine's own Debian mirror (deb822 or one-line sources).
mirror=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' \
             /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
[[ -n $mirror ]] || mirror=$(awk '$1 == "deb" && $2 !~ /^\[/ && $3 == "'"$release"'" { print $2; exit }' \
             /etc/apt/sources.list 2>/dev/null || true)
[[ -n $mirror ]] || mirror=http://deb.debian.org/debian

mkdir -p "$work"
for old in "$work"/root-*; do
    [[ -e $old && $old != "$root" && $old != *.tmp ]] || continue
    say "removing stale tree $old"; rm -rf "$old"
done
rm -rf "$root.tmp"
say "debootstrap $release (minbase + $packages) from $mirror"
t0=$SECONDS
if ! debootstrap --variant=minbase --include="$packages" --components=main \
        "$release" "$root.tmp" "$mirror" >"$work/debootstrap.log" 2>&1; then
    tail -n 30 "$work/debootstrap.log" >&2
    echo "mkroot: debootstrap failed (log: $work/debootstrap.log)" >&2
    rm -rf "$root.tmp"
    exit 1
fi
# Smaller and quieter: no package lists or caches kept, a fixed machine id
# left empty so each boot makes its own, a root password-less console.
rm -rf "$root.tmp"/var/cache/apt/archives/*.deb "$root.tmp"/var/lib/apt/lists/*_Packages
: >"$root.tmp/etc/machine-id"
echo balloond-test >"$root.tmp/etc/hostname"
touch "$root.tmp/.complete"
mv "$root.tmp" "$root"
say "tree ready in $((SECONDS - t0))s: $root ($(du -sh "$root" | cut -f1))"
echo "$root"
