#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# scripts/mkdeb.sh — build the two packages with dpkg-deb (make deb), from one
# set of release binaries (scripts/build-release.sh; --scratch DIR builds in DIR
# instead of .build-deb and .build-static):
#
#   balloond_VERSION_amd64.deb       the guest: balloond (the Swift runtime
#       linked statically, --static-swift-stdlib; libsystemd.so.0 and glibc
#       stay dynamic, as Debian ships no libsystemd.a, so Depends: comes from
#       dpkg-shlibdeps), its unit, the udev rule, /etc/balloond.conf
#       (conffile), balloond(8), balloond.conf(5), its completions, the docs.
#   balloon-hostd_VERSION_amd64.deb  the host: balloon-hostd and balloonctl
#       (both fully static, -static-executable: no Depends:), the agent's
#       Type=notify unit, /etc/balloon-hostd.conf (conffile) and an empty
#       /etc/balloon-hostd.d/, balloon-hostd(8), balloon-hostd.conf(5),
#       balloonctl(1), balloonctl's completions, the host's docs.
#       Replaces/Breaks: balloond (<< VERSION), which shipped these files
#       before the split (docs/releasing.md says why balloonctl is here).
# Each has the DEP-5 copyright and the changelog generated from CHANGELOG.md.
#
# Usage: scripts/mkdeb.sh [-o OUTDIR] [--scratch DIR] [--no-lintian]
#
# The version is scripts/version.sh's. Reproducible: SOURCE_DATE_EPOCH is the
# commit's time (unless set), every file's time is clamped to it, owners are
# root, members are sorted (tests/release/test.sh checks it).
# Then runs lintian on both (errors fail the build; the full output is printed).
# Prints the paths of the two packages on the last two lines: balloond's,
# then balloon-hostd's.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
out=$repo
lint=1
scratch=()
while (($#)); do
    case $1 in
        -o) out=$2; shift 2 ;;
        --scratch) scratch=(--scratch "$2"); shift 2 ;;
        --no-lintian) lint=0; shift ;;
        *) echo "mkdeb: unknown argument $1" >&2; exit 2 ;;
    esac
done

version=$(scripts/version.sh)
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(scripts/version.sh --epoch)}
export TZ=UTC LC_ALL=C.UTF-8
# The team, not a person: no mailing list exists yet (docs/releasing.md).
maintainer=$(sed -n 's/^Maintainer: //p' packaging/debian/balloond/control.in)

say() { echo "mkdeb: $*" >&2; }
t0=$SECONDS
say "building balloond $version (static Swift runtime), balloonctl and balloon-hostd (static)"
built=$(scripts/build-release.sh "${scratch[@]}")
mapfile -t bins <<<"$built"
say "built in $((SECONDS - t0))s"

stage=$(mktemp -d "${TMPDIR:-/tmp}/balloond-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT
umask 022
strip_to() { strip --strip-unneeded --remove-section=.comment --remove-section=.note -o "$2" "$1"; chmod 0755 "$2"; }
# man_page PKGROOT PAGE: gzipped, its header naming this build's version (the
# file says the release's).
man_page() {
    install -d "$1/usr/share/man/man${2##*.}"
    sed -E "/^\.TH /s/\"balloond [^\"]*\"/\"balloond $version\"/" "packaging/man/$2" \
        | gzip -9n >"$1/usr/share/man/man${2##*.}/$2.gz"
}
# doc_dir PKGROOT NAME DOCS...: /usr/share/doc/NAME with the copyright, the
# changelog and DOCS.
doc_dir() {
    local root=$1 name=$2 doc
    shift 2
    install -d "$root/usr/share/doc/$name"
    install -m 0644 packaging/debian/copyright "$root/usr/share/doc/$name/copyright"
    scripts/changelog-deb.sh "$version" "$maintainer" | gzip -9n >"$root/usr/share/doc/$name/changelog.gz"
    for doc in "$@"; do install -m 0644 "$doc" "$root/usr/share/doc/$name/$(basename "$doc")"; done
}

# --- balloond: the guest ---------------------------------------------------------
guest=$stage/balloond
install -d "$guest/DEBIAN" "$guest/usr/sbin" "$guest/etc" "$guest/lib/systemd/system" "$guest/lib/udev/rules.d" \
    "$guest/usr/share/bash-completion/completions" "$guest/usr/share/zsh/vendor-completions" \
    "$guest/usr/share/fish/vendor_completions.d"
strip_to "${bins[0]}" "$guest/usr/sbin/balloond"
install -m 0644 packaging/balloond.conf "$guest/etc/balloond.conf"
install -m 0644 packaging/balloond.service "$guest/lib/systemd/system/balloond.service"
install -m 0644 packaging/60-balloond.rules "$guest/lib/udev/rules.d/60-balloond.rules"
for page in balloond.conf.5 balloond.8; do man_page "$guest" "$page"; done
# balloond parses its three options by hand, so its completions are in
# packaging/. Sourced, not run: no #! line (lintian: bash-completion-with-hashbang).
install -m 0644 packaging/completions/balloond.bash "$guest/usr/share/bash-completion/completions/balloond"
install -m 0644 packaging/completions/_balloond "$guest/usr/share/zsh/vendor-completions/_balloond"
install -m 0644 packaging/completions/balloond.fish "$guest/usr/share/fish/vendor_completions.d/balloond.fish"
doc_dir "$guest" balloond README.md docs/*.md

# --- balloon-hostd: the host -----------------------------------------------------
host=$stage/balloon-hostd
install -d "$host/DEBIAN" "$host/usr/sbin" "$host/usr/bin" "$host/etc/balloon-hostd.d" "$host/lib/systemd/system" \
    "$host/usr/share/bash-completion/completions" "$host/usr/share/zsh/vendor-completions" \
    "$host/usr/share/fish/vendor_completions.d"
strip_to "${bins[1]}" "$host/usr/bin/balloonctl"
strip_to "${bins[2]}" "$host/usr/sbin/balloon-hostd"
install -m 0644 packaging/balloon-hostd.conf "$host/etc/balloon-hostd.conf"
install -m 0644 packaging/balloon-hostd.service "$host/lib/systemd/system/balloon-hostd.service"
for page in balloon-hostd.8 balloon-hostd.conf.5 balloonctl.1; do man_page "$host" "$page"; done
# balloonctl's completions come from swift-argument-parser.
"$host/usr/bin/balloonctl" --generate-completion-script bash | sed '1{/^#!/d}' >"$host/usr/share/bash-completion/completions/balloonctl"
"$host/usr/bin/balloonctl" --generate-completion-script zsh >"$host/usr/share/zsh/vendor-completions/_balloonctl"
"$host/usr/bin/balloonctl" --generate-completion-script fish >"$host/usr/share/fish/vendor_completions.d/balloonctl.fish"
install -D -m 0644 packaging/debian/balloon-hostd/lintian-overrides "$host/usr/share/lintian/overrides/balloon-hostd"
doc_dir "$host" balloon-hostd README.md docs/hostd.md docs/policy.md docs/balloonctl.md docs/config.md docs/protocol.md

# Depends: from balloond's ELF needs (dpkg-shlibdeps wants a debian/control);
# balloon-hostd's binaries are static and depend on nothing.
mkdir -p "$stage/src/debian"
printf 'Source: balloond\n\nPackage: balloond\nArchitecture: amd64\n' >"$stage/src/debian/control"
depends=$(cd "$stage/src" && dpkg-shlibdeps -O "$guest/usr/sbin/balloond" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[[ $depends == *libsystemd0* && $depends == *libc6* ]] \
    || { echo "mkdeb: unexpected dependencies from dpkg-shlibdeps: '$depends'" >&2; exit 1; }

mkdir -p "$out"
debs=()
# build NAME ROOT: control, conffiles, maintainer scripts, md5sums, the .deb.
build() {
    local name=$1 pkg=$2 meta=packaging/debian/$1 size script deb dep
    find "$pkg/usr/share" -type f -exec chmod 0644 {} +
    # As dpkg-gencontrol counts it (KiB per file, rounded up; 1 per directory),
    # not du's blocks, which depend on the file system.
    size=$(find "$pkg" -mindepth 1 -path "$pkg/DEBIAN" -prune -o -printf '%y %s\n' \
        | awk '{ n += ($1 == "f") ? int(($2 + 1023) / 1024) : 1 } END { print n }')
    sed -e "s/@VERSION@/$version/g" -e "s/@SIZE@/$size/" -e "s/@DEPENDS@/$depends/" "$meta/control.in" >"$pkg/DEBIAN/control"
    install -m 0644 "$meta/conffiles" "$pkg/DEBIAN/conffiles"
    for script in postinst prerm postrm; do
        install -m 0755 "$meta/$script" "$pkg/DEBIAN/$script"
    done
    (cd "$pkg" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z \
        | xargs -0 md5sum) >"$pkg/DEBIAN/md5sums"
    chmod 0644 "$pkg/DEBIAN/md5sums"
    # Fixed times: nothing in the archive may say when it was built.
    find "$pkg" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
    deb=$out/${name}_${version}_amd64.deb
    # dpkg-deb sorts members, takes ar and tar times from SOURCE_DATE_EPOCH.
    dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >&2
    dep=$(dpkg-deb -f "$deb" Depends)
    say "$deb ($(du -h "$deb" | cut -f1)); Depends: ${dep:-none (static)}"
    debs+=("$deb")
}
build balloond "$guest"
build balloon-hostd "$host"

if [[ $lint == 1 ]]; then
    say "lintian:"
    lint_rc=0
    lint_out=$(lintian --fail-on error "${debs[@]}" 2>&1) || lint_rc=$?
    grep -v 'running with root privileges' <<<"$lint_out" >&2 || true
    if ((lint_rc)); then
        echo "mkdeb: lintian reported errors" >&2
        exit 1
    fi
    say "lintian: no errors"
fi
printf '%s\n' "${debs[@]}"
