#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# tests/release/test.sh — make test-release (part of make test):
#   1. the licence line check fails on a file without it, --add mends it
#      (in a scratch repository; make test checks this repository itself)
#   2. VERSION agrees with CHANGELOG.md, README.md and the man pages
#   3. make deb (here, from empty scratch paths, with a padded environment):
#      both packages' versions, their binaries' --version, a running balloond's
#      info reply, their man pages' headers and changelogs all say
#      scripts/version.sh's version; each package holds its own files (no file
#      in both) and balloon-hostd's replaces and breaks older balloond
#   4. make install DESTDIR=$(mktemp -d): the tree, modes, the unit's
#      ExecStart=, a kept config on a second install
#   5. make dist twice: the same tarball; in it, scripts/version.sh says the
#      commit's version and time without git
#   6. make deb again after removing the scratch paths (so the Swift build
#      itself is checked from nothing): both packages are byte-identical to
#      the first build's, else the first difference is shown
# Needs root only for what make deb needs. Prints the time of each step.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"
export PATH=/opt/swift/usr/bin:$PATH
work=$here/work
rm -rf "$work"
mkdir -p "$work"
t0=$SECONDS
step_t=$SECONDS
say() { echo "release-tests: $*" >&2; }
fail() { echo "release-tests: FAIL: $*" >&2; exit 1; }
done_step() { say "$1 ok ($((SECONDS - step_t))s)"; step_t=$SECONDS; }
expect_eq() {  # expect_eq WHAT GOT WANT
    [[ $2 == "$3" ]] || fail "$1 is '$2', expected '$3'"
}

version=$(scripts/version.sh)
release=$(scripts/version.sh --release)
say "version $version (VERSION $release)"

# 1. The licence line check.
spdx_repo=$work/spdx
mkdir -p "$spdx_repo/scripts" "$spdx_repo/Sources/A" "$spdx_repo/packaging/man"
cp scripts/spdx.sh "$spdx_repo/scripts/"
printf '// swift-tools-version:6.1\nimport PackageDescription\n' >"$spdx_repo/Package.swift"
printf 'let a = 1\n' >"$spdx_repo/Sources/A/a.swift"
printf '#!/bin/sh\necho hi\n' >"$spdx_repo/scripts/hi"
printf '.TH X 1 "2026" "balloond 0.0.0"\n' >"$spdx_repo/packaging/man/x.1"
printf '[Unit]\nDescription=x\n' >"$spdx_repo/packaging/x.service"
printf 'notes\n' >"$spdx_repo/README.md"
chmod +x "$spdx_repo/scripts/hi"
git -C "$spdx_repo" init -q && git -C "$spdx_repo" add -A
if "$spdx_repo/scripts/spdx.sh" --check 2>"$work/spdx.out"; then
    fail "spdx.sh --check passed on files without the licence line"
fi
for f in Package.swift Sources/A/a.swift scripts/hi packaging/man/x.1 packaging/x.service; do
    grep -q "in $f\$" "$work/spdx.out" || fail "spdx.sh --check did not name $f: $(cat "$work/spdx.out")"
done
! grep -q "README.md" "$work/spdx.out" || fail "spdx.sh --check wants the line in README.md"
"$spdx_repo/scripts/spdx.sh" --add 2>/dev/null
"$spdx_repo/scripts/spdx.sh" --check || fail "spdx.sh --check fails after --add"
expect_eq "Package.swift's first line after --add" "$(head -n1 "$spdx_repo/Package.swift")" "// swift-tools-version:6.1"
expect_eq "a script's first line after --add" "$(head -n1 "$spdx_repo/scripts/hi")" "#!/bin/sh"
[[ -x $spdx_repo/scripts/hi ]] || fail "spdx.sh --add dropped the execute bit"
expect_eq "the man page's first line after --add" "$(head -n1 "$spdx_repo/packaging/man/x.1")" '.\" SPDX-License-Identifier: Apache-2.0'
done_step "licence line check (make test runs it on this repository first)"

# 2. The repository's own files.
top=$(sed -n 's/^## \([0-9][0-9.]*\) — .*/\1/p' CHANGELOG.md | head -n1)
expect_eq "CHANGELOG.md's newest section" "$top" "$release"
grep -q "^Current release: \*\*$release\*\*" README.md || fail "README.md does not say 'Current release: **$release**'"
for page in packaging/man/*.[1-8]; do
    th=$(grep -m1 '^\.TH ' "$page")
    [[ $th == *"\"balloond $release\""* ]] || fail "$page's header '$th' does not name balloond $release"
done
done_step "VERSION, CHANGELOG.md, README.md, man pages"

# 3. The package, built as make deb builds it, from empty scratch paths (a
# build test-systemd left must not decide what is compared in step 6), and
# with 4 KiB more environment than step 6's build: the release build must not
# depend on its caller's environment (scripts/build-release.sh).
rm -rf .build-deb .build-static
paths=$(BALLOOND_RELEASE_TEST_PADDING=$(printf 'x%.0s' {1..4096}) scripts/mkdeb.sh -o "$work/a" --no-lintian | tail -n2)
mapfile -t debs_a <<<"$paths"
done_step "make deb (in $repo)"
names=(balloond balloon-hostd)
tree=$work/a/tree
for i in 0 1; do
    deb=${debs_a[i]} name=${names[i]}
    expect_eq "package $((i + 1))'s file name" "$(basename "$deb")" "${name}_${version}_amd64.deb"
    expect_eq "$name's Version" "$(dpkg-deb -f "$deb" Version)" "$version"
    dpkg-deb -x "$deb" "$work/a/$name"
    dpkg-deb -x "$deb" "$tree"
    for page in "$work/a/$name"/usr/share/man/man*/*.gz; do
        th=$(zcat "$page" | grep -m1 '^\.TH ')
        [[ $th == *"\"balloond $version\""* ]] || fail "$(basename "$page")'s header '$th' does not name balloond $version"
    done
    expect_eq "$name's changelog's first line" "$(zcat "$work/a/$name/usr/share/doc/$name/changelog.gz" | head -n1)" \
        "balloond ($version) unstable; urgency=medium"
    grep -q "^Upstream-Contact: $(dpkg-deb -f "$deb" Maintainer)\$" "$work/a/$name/usr/share/doc/$name/copyright" \
        || fail "$name's copyright's Upstream-Contact is not the package's Maintainer"
done
expect_eq "balloond --version" "$("$tree/usr/sbin/balloond" --version)" "$version"
expect_eq "balloonctl --version" "$("$tree/usr/bin/balloonctl" --version)" "$version"
expect_eq "balloon-hostd --version" "$("$tree/usr/sbin/balloon-hostd" --version)" "$version"
# Which package holds what: the guest's files in balloond, the host's in
# balloon-hostd, nothing in both (dpkg would refuse to install them together).
contents() { dpkg-deb -c "$1" | awk '$1 !~ /^d/ { sub(/^\./, "", $6); print $6 }' | LC_ALL=C sort; }
guest_files=$(contents "${debs_a[0]}")
host_files=$(contents "${debs_a[1]}")
both=$(LC_ALL=C comm -12 <(echo "$guest_files") <(echo "$host_files"))
[[ -z $both ]] || fail "files in both packages: $both"
for f in /usr/sbin/balloond /lib/systemd/system/balloond.service /lib/udev/rules.d/60-balloond.rules /etc/balloond.conf \
    /usr/share/man/man8/balloond.8.gz /usr/share/man/man5/balloond.conf.5.gz /usr/share/bash-completion/completions/balloond; do
    grep -qx "$f" <<<"$guest_files" || fail "balloond's package lacks $f"
done
for f in /usr/sbin/balloon-hostd /usr/bin/balloonctl /lib/systemd/system/balloon-hostd.service /etc/balloon-hostd.conf \
    /usr/share/man/man8/balloon-hostd.8.gz /usr/share/man/man5/balloon-hostd.conf.5.gz /usr/share/man/man1/balloonctl.1.gz \
    /usr/share/bash-completion/completions/balloonctl /usr/share/doc/balloon-hostd/hostd.md; do
    grep -qx "$f" <<<"$host_files" || fail "balloon-hostd's package lacks $f"
done
# (Not grep -q on the pipe: pipefail would count dpkg-deb's SIGPIPE.)
host_listing=$(dpkg-deb -c "${debs_a[1]}")
grep -q ' \./etc/balloon-hostd\.d/$' <<<"$host_listing" || fail "balloon-hostd's package lacks /etc/balloon-hostd.d/"
expect_eq "balloond's conffiles" "$(dpkg-deb --ctrl-tarfile "${debs_a[0]}" | tar -xO ./conffiles)" /etc/balloond.conf
expect_eq "balloon-hostd's conffiles" "$(dpkg-deb --ctrl-tarfile "${debs_a[1]}" | tar -xO ./conffiles)" /etc/balloon-hostd.conf
for field in Replaces Breaks; do
    expect_eq "balloon-hostd's $field" "$(dpkg-deb -f "${debs_a[1]}" "$field")" "balloond (<< $version)"
done
expect_eq "balloon-hostd's Depends (static binaries)" "$(dpkg-deb -f "${debs_a[1]}" Depends)" ""
grep -qx 'Type=notify' "$work/a/balloon-hostd/lib/systemd/system/balloon-hostd.service" && grep -q '^WatchdogSec=' "$work/a/balloon-hostd/lib/systemd/system/balloon-hostd.service" \
    || fail "balloon-hostd.service is not Type=notify with WatchdogSec="
# The info reply of the packaged daemon, on a unix socket (no memory locked).
sock=$work/balloond.sock
printf '[Channel]\nListen=unix:%s\n' "$sock" >"$work/balloond.conf"
"$tree/usr/sbin/balloond" --config "$work/balloond.conf" 2>"$work/balloond.log" &
daemon=$!
for _ in $(seq 200); do [[ -S $sock ]] && break; kill -0 "$daemon" 2>/dev/null || break; sleep 0.05; done
info=$("$tree/usr/bin/balloonctl" --unix "$sock" info --json 2>&1) || info="balloonctl failed: $info"
kill -TERM "$daemon" 2>/dev/null || true
wait "$daemon" || true
re='"version"[[:space:]]*:[[:space:]]*"([^"]*)"'
[[ $info =~ $re && ${BASH_REMATCH[1]} == "$version" ]] \
    || fail "the info reply does not say version $version: $info; balloond's log: $(cat "$work/balloond.log")"
done_step "one version: package, binaries, info reply, man pages, changelog"

# 4. make install into a scratch DESTDIR.
dest=$(mktemp -d "$work/install.XXXXXX")
make -s install DESTDIR="$dest" >/dev/null
expected="etc/balloon-hostd.conf
etc/balloond.conf
usr/local/bin/balloonctl
usr/local/lib/systemd/system/balloon-hostd.service
usr/local/lib/systemd/system/balloond.service
usr/local/lib/udev/rules.d/60-balloond.rules
usr/local/sbin/balloon-hostd
usr/local/sbin/balloond
usr/local/share/bash-completion/completions/balloonctl
usr/local/share/bash-completion/completions/balloond
usr/local/share/doc/balloond/CHANGELOG.md
usr/local/share/doc/balloond/LICENSE
usr/local/share/doc/balloond/NOTICE
usr/local/share/doc/balloond/README.md
usr/local/share/fish/vendor_completions.d/balloonctl.fish
usr/local/share/fish/vendor_completions.d/balloond.fish
usr/local/share/man/man1/balloonctl.1
usr/local/share/man/man5/balloon-hostd.conf.5
usr/local/share/man/man5/balloond.conf.5
usr/local/share/man/man8/balloon-hostd.8
usr/local/share/man/man8/balloond.8
usr/local/share/zsh/site-functions/_balloonctl
usr/local/share/zsh/site-functions/_balloond"
# (docs/*.md checked below: their list changes with the docs.)
got=$(cd "$dest" && find . -type f -printf '%P\n' | grep -Ev '^usr/local/share/doc/balloond/[a-z][^/]*\.md$' | LC_ALL=C sort)
[[ $got == "$expected" ]] || fail "make install's tree differs: $(diff <(echo "$expected") <(echo "$got"))"
for doc in docs/*.md; do
    [[ -f $dest/usr/local/share/doc/balloond/$(basename "$doc") ]] || fail "make install left out $doc"
done
for bin in usr/local/sbin/balloond usr/local/bin/balloonctl usr/local/sbin/balloon-hostd; do
    expect_eq "the mode of $bin" "$(stat -c %a "$dest/$bin")" 755
    expect_eq "$bin --version" "$("$dest/$bin" --version)" "$version"
done
expect_eq "the installed unit's ExecStart=" "$(grep '^ExecStart=' "$dest/usr/local/lib/systemd/system/balloond.service")" \
    "ExecStart=/usr/local/sbin/balloond"
cmp -s packaging/balloond.conf "$dest/etc/balloond.conf" || fail "the installed config is not packaging/balloond.conf"
grep -q "\"balloond $version\"" "$dest/usr/local/share/man/man8/balloond.8" || fail "the installed balloond(8) does not name $version"
echo "# a local edit" >>"$dest/etc/balloond.conf"
make -s install DESTDIR="$dest" >/dev/null 2>&1
grep -q "^# a local edit" "$dest/etc/balloond.conf" || fail "a second make install overwrote /etc/balloond.conf"
done_step "make install DESTDIR=$dest"

# 5. make dist: deterministic, and the tarball knows its version without git.
scripts/dist.sh "$work/dist1" >/dev/null 2>&1
scripts/dist.sh "$work/dist2" >/dev/null 2>&1
tarball=$work/dist1/balloond-${version%.dirty}.tar.gz
[[ -f $tarball ]] || fail "make dist made no $(basename "$tarball"): $(ls "$work/dist1")"
cmp -s "$tarball" "$work/dist2/$(basename "$tarball")" || fail "two make dist runs gave different tarballs"
(cd "$work/dist1" && sha256sum --quiet -c SHA256SUMS) || fail "dist/SHA256SUMS does not match"
mkdir -p "$work/dist1/x"
tar -xzf "$tarball" -C "$work/dist1/x"
unpacked=$work/dist1/x/balloond-${version%.dirty}
expect_eq "scripts/version.sh in the tarball" "$("$unpacked/scripts/version.sh")" "${version%.dirty}"
expect_eq "the tarball's SOURCE_DATE_EPOCH" "$("$unpacked/scripts/version.sh" --epoch)" "$(scripts/version.sh --epoch)"
[[ -f $unpacked/LICENSE && -f $unpacked/Package.swift && ! -e $unpacked/.git ]] || fail "the tarball's tree is incomplete"
done_step "make dist"

# 6. Reproducible: the same builds again from nothing, in the same
# directories (swift-frontend's output depends on the build directory, see
# docs/releasing.md): the scratch paths of step 3 are removed, so the Swift
# build itself is checked again. (Under make test, this second build is the
# one the VM, systemd and libvirt tests then package and boot.)
rm -rf .build-deb .build-static
paths=$(scripts/mkdeb.sh -o "$work/b" --no-lintian | tail -n2)
mapfile -t debs_b <<<"$paths"
done_step "make deb again, from empty scratch paths"

show_difference() {  # first difference between two .debs, member by member
    local a=$1 b=$2 d=$work/diff
    mkdir -p "$d/a" "$d/b"
    (cd "$d/a" && ar x "$a") && (cd "$d/b" && ar x "$b")
    echo "ar members: $(ar tv "$a" | tr '\n' ';') vs $(ar tv "$b" | tr '\n' ';')"
    for m in $(ar t "$a"); do
        cmp -s "$d/a/$m" "$d/b/$m" && continue
        echo "member $m differs"
        [[ $m == *.tar.* ]] || { cmp "$d/a/$m" "$d/b/$m" || true; return; }
        diff <(tar -tvf "$d/a/$m" --full-time) <(tar -tvf "$d/b/$m" --full-time) | head -n 20 || true
        mkdir -p "$d/a/${m%%.*}" "$d/b/${m%%.*}"
        tar -xf "$d/a/$m" -C "$d/a/${m%%.*}" && tar -xf "$d/b/$m" -C "$d/b/${m%%.*}"
        (cd "$d/a/${m%%.*}" && find . -type f | LC_ALL=C sort) | while read -r f; do
            if ! cmp -s "$d/a/${m%%.*}/$f" "$d/b/${m%%.*}/$f"; then
                echo "first differing file: $f"
                cmp -l "$d/a/${m%%.*}/$f" "$d/b/${m%%.*}/$f" | head -n 5 || true
                break
            fi
        done
    done
}
sums=()
for i in 0 1; do
    deb_a=${debs_a[i]} deb_b=${debs_b[i]}
    expect_eq "the second build's package $((i + 1))" "$(basename "$deb_b")" "$(basename "$deb_a")"
    sum_a=$(sha256sum <"$deb_a" | cut -d' ' -f1)
    sum_b=$(sha256sum <"$deb_b" | cut -d' ' -f1)
    if [[ $sum_a != "$sum_b" ]]; then
        show_difference "$deb_a" "$deb_b" >&2
        fail "make deb is not reproducible: $deb_a $sum_a, $deb_b $sum_b"
    fi
    sums+=("$(basename "$deb_a") $sum_a")
done
done_step "reproducible: both builds give the same two packages (sha256: ${sums[*]})"
say "all passed in $((SECONDS - t0))s"
