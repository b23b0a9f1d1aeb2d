#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# scripts/changelog-deb.sh — the Debian changelog, generated from CHANGELOG.md
# (make deb). Every "## X.Y.Z — YYYY-MM-DD" section becomes an entry; its
# "Protocol: vN" line and its Added/Changed/Fixed items become the entry's
# bullets. A build between releases (VERSION+gitN.HASH) gets an entry of its own
# on top, dated SOURCE_DATE_EPOCH.
#
# Usage: scripts/changelog-deb.sh FULL_VERSION MAINTAINER   (stdout)
set -euo pipefail
cd "$(dirname "$0")/.."
full=${1:?FULL_VERSION}
maintainer=${2:?MAINTAINER}
release=$(scripts/version.sh --release)
epoch=${SOURCE_DATE_EPOCH:-$(scripts/version.sh --epoch)}
top=$(sed -n 's/^## \([0-9][0-9.]*\) — .*/\1/p' CHANGELOG.md | head -n1)
[[ $top == "$release" ]] \
    || { echo "changelog-deb: CHANGELOG.md's newest section is '$top', VERSION is '$release'" >&2; exit 1; }

if [[ $full != "$release" ]]; then
    printf 'balloond (%s) unstable; urgency=medium\n\n' "$full"
    printf '  * Development build %s, after %s (see CHANGELOG.md).\n\n' "${full#*+}" "$release"
    printf ' -- %s  %s\n\n' "$maintainer" "$(LC_ALL=C date -u -R -d "@$epoch")"
fi

# Each item: "  * Section: text", wrapped at 78 columns with a 4-space hang.
awk -v maint="$maintainer" '
function flush() {
    if (item != "") { print "  * " section ": " item; item = "" }
}
function finish() {
    flush()
    if (version != "") {
        cmd = "LC_ALL=C date -u -R -d \"" date " 00:00:00\""
        cmd | getline stamp; close(cmd)
        print "@@END@@ -- " maint "  " stamp
    }
}
/^## [0-9]/ {
    finish()
    version = $2; date = $4; section = ""
    print "@@HEAD@@balloond (" version ") unstable; urgency=medium"
    next
}
version == "" { next }
/^Protocol: / { print "  * Protocol " $2 "."; next }
/^### / { flush(); section = $2; next }
/^- Nothing/ { flush(); next }
/^- / { flush(); item = substr($0, 3); next }
/^  [^ ]/ && item != "" { sub(/^ +/, ""); item = item " " $0; next }
/^$/ { flush(); next }
END { finish() }
' CHANGELOG.md | while IFS= read -r line; do
    case $line in
        @@HEAD@@*) printf '%s\n\n' "${line#@@HEAD@@}" ;;
        @@END@@*) printf '\n%s\n\n' "${line#@@END@@}" ;;
        *) fold -s -w 74 <<<"$line" | sed '1!s/^/    /; s/ *$//' ;;
    esac
done | sed '${/^$/d}'
