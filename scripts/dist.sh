#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# scripts/dist.sh — make dist: the source tarball of the commit (HEAD), and
# SHA256SUMS, in OUTDIR (default dist/).
#
#   balloond-VERSION.tar.gz   git archive of HEAD under balloond-VERSION/, plus
#                             .tarball-version ("VERSION EPOCH": what
#                             scripts/version.sh says without .git)
#   SHA256SUMS                sha256sum of the tarball (and of any .deb already
#                             in OUTDIR)
# Deterministic: git archive gives every member the commit's time and fixed
# owners, in the commit's order; gzip -n stores no name or time.
# Uncommitted changes are not in the tarball (a warning says so).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-dist}
git rev-parse --verify -q HEAD >/dev/null || { echo "dist: not a git checkout" >&2; exit 1; }
if ! GIT_OPTIONAL_LOCKS=0 git diff --quiet HEAD --; then
    echo "dist: warning: uncommitted changes are not in the tarball (it is HEAD's)" >&2
fi
# The version of the commit itself, not of this working tree.
version=$(scripts/version.sh)
version=${version%.dirty}
epoch=$(scripts/version.sh --epoch)
name=balloond-$version
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "$version $epoch" >"$tmp/.tarball-version"
git archive --format=tar --prefix="$name/" --add-file="$tmp/.tarball-version" HEAD \
    | gzip -9n >"$out/$name.tar.gz"
(cd "$out" && sha256sum -- "$name.tar.gz" $(ls -- "balloond_${version}"_*.deb "balloon-hostd_${version}"_*.deb 2>/dev/null) >SHA256SUMS)
echo "dist: $out/$name.tar.gz" >&2
cat "$out/SHA256SUMS" >&2
echo "$out/$name.tar.gz"
