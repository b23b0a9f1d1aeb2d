#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# scripts/spdx.sh — the SPDX-License-Identifier line in every source, script
# and unit file the project wrote.
#
#   scripts/spdx.sh --check [FILE...]  lists the files without the line in
#                                      their first 10 lines; fails if any (make test)
#   scripts/spdx.sh --add [FILE...]    adds it where missing: first line, or
#                                      after a #! line or Package.swift's
#                                      swift-tools-version line
#   scripts/spdx.sh --list             the files that must carry it
# Without FILEs: every tracked file that must carry it (git ls-files; in a
# tarball without .git, every file). Which files: Swift, C, headers, module
# maps, shell/Python/Perl scripts and any file starting with #!, Makefiles,
# systemd units, udev rules, the shipped config, man pages. Not: docs (*.md),
# data (/proc fixtures, JSON results), LICENSE, NOTICE, VERSION, Debian
# control metadata (packaging/debian/{control.in,conffiles,copyright,
# lintian-overrides}: formats without comments or with their own header).
set -euo pipefail
cd "$(dirname "$0")/.."
tag="SPDX-License-Identifier: Apache-2.0"

candidates() {
    if [[ -e .git ]] && git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git ls-files
    else
        find . -path ./.build -prune -o -path './.build*' -prune -o -type f -printf '%P\n' | LC_ALL=C sort
    fi
}

# The comment that carries the line, or nothing if FILE needs none.
style() {
    local f=$1
    case $f in
        */Fixtures/*|*.md|*.json|LICENSE|NOTICE|VERSION|CHANGELOG.md) return ;;
        packaging/debian/*/control.in|packaging/debian/*/conffiles|packaging/debian/copyright) return ;;
        packaging/debian/*/lintian-overrides) return ;;
        *.swift|*.c|*.h|*.modulemap) echo "//" ;;
        packaging/man/*.[1-8]) echo '.\"' ;;
        *.sh|*.py|*.pl|*.service|*.rules|*.conf|Makefile|*/Makefile) echo "#" ;;
        *) [[ -f $f && $(head -c2 "$f" 2>/dev/null) == "#!" ]] && echo "#" ;;
    esac
    return 0
}

has_tag() { head -n 10 "$1" | grep -qF "$tag"; }

add() {
    local f=$1 comment=$2 after=0 first
    first=$(head -n1 "$f")
    if [[ $first == '#!'* || $first == '// swift-tools-version'* ]]; then after=1; fi
    local tmp
    tmp=$(mktemp "$f.spdx.XXXXXX")
    {
        ((after)) && printf '%s\n' "$first"
        printf '%s %s\n' "$comment" "$tag"
        tail -n +$((after + 1)) "$f"
    } >"$tmp"
    chmod --reference="$f" "$tmp"
    mv "$tmp" "$f"
}

mode=${1:-}
(($#)) && shift
if (($#)); then files=("$@"); else mapfile -t files < <(candidates); fi
missing=0
for f in "${files[@]}"; do
    [[ -f $f && ! -L $f ]] || continue
    comment=$(style "$f")
    [[ -n $comment ]] || continue
    case $mode in
        --list) echo "$f" ;;
        --check) has_tag "$f" || { echo "spdx: no '$tag' in $f" >&2; missing=$((missing + 1)); } ;;
        --add) has_tag "$f" || { add "$f" "$comment"; echo "spdx: added to $f" >&2; } ;;
        *) echo "usage: scripts/spdx.sh --check | --add | --list [FILE...]" >&2; exit 2 ;;
    esac
done
if ((missing)); then
    echo "spdx: $missing file(s) without the licence line; scripts/spdx.sh --add adds it" >&2
    exit 1
fi
