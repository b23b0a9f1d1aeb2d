#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# scripts/install.sh — make install, for distributions other than Debian (on
# Debian, make deb and install the package). The same release builds as the
# package (scripts/build-release.sh), installed under PREFIX into DESTDIR:
#
#   PREFIX/sbin/balloond, PREFIX/bin/balloonctl, PREFIX/sbin/balloon-hostd
#   UNITDIR/balloond.service       ExecStart= pointed at PREFIX/sbin/balloond
#   UNITDIR/balloon-hostd.service  the host agent's unit, likewise
#   UDEVRULESDIR/60-balloond.rules
#   SYSCONFDIR/balloond.conf       only if there is none (local edits survive)
#   SYSCONFDIR/balloon-hostd.conf  likewise, and the empty balloon-hostd.d/
#   PREFIX/share/man/man{1,5,8}/   man pages, headed with this build's version
#   PREFIX/share/{bash-completion/completions,zsh/site-functions,fish/vendor_completions.d}/
#   PREFIX/share/doc/balloond/     README, docs, CHANGELOG.md, LICENSE, NOTICE
#
# Variables (environment or make): PREFIX=/usr/local DESTDIR= SYSCONFDIR=/etc
# UNITDIR=PREFIX/lib/systemd/system UDEVRULESDIR=PREFIX/lib/udev/rules.d
# (systemd and udev read both /usr/local/lib/... and /usr/lib/...).
# balloond always reads /etc/balloond.conf unless given --config; with another
# SYSCONFDIR the unit's ExecStart= passes --config.
# Prints the installed files, one a line, on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${PREFIX:-/usr/local}
destdir=${DESTDIR:-}
sysconfdir=${SYSCONFDIR:-/etc}
unitdir=${UNITDIR:-$prefix/lib/systemd/system}
udevrulesdir=${UDEVRULESDIR:-$prefix/lib/udev/rules.d}
[[ $prefix == /* ]] || { echo "install: PREFIX must be absolute: $prefix" >&2; exit 2; }
version=$(scripts/version.sh)

built=$(scripts/build-release.sh)
mapfile -t bins <<<"$built"
umask 022
root=$destdir
put() {  # put MODE SRC DEST: install and print
    install -D -m "$1" "$2" "$root$3"
    echo "$root$3"
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

strip --strip-unneeded --remove-section=.comment -o "$tmp/balloond" "${bins[0]}"
strip --strip-unneeded --remove-section=.comment -o "$tmp/balloonctl" "${bins[1]}"
put 0755 "$tmp/balloond" "$prefix/sbin/balloond"
put 0755 "$tmp/balloonctl" "$prefix/bin/balloonctl"
strip --strip-unneeded --remove-section=.comment -o "$tmp/balloon-hostd" "${bins[2]}"
put 0755 "$tmp/balloon-hostd" "$prefix/sbin/balloon-hostd"

exec_start="$prefix/sbin/balloond"
[[ $sysconfdir == /etc ]] || exec_start+=" --config $sysconfdir/balloond.conf"
sed "s|^ExecStart=/usr/sbin/balloond\$|ExecStart=$exec_start|" packaging/balloond.service >"$tmp/balloond.service"
grep -q "^ExecStart=$exec_start\$" "$tmp/balloond.service" \
    || { echo "install: the unit's ExecStart= line was not found" >&2; exit 1; }
put 0644 "$tmp/balloond.service" "$unitdir/balloond.service"
hostd_start="$prefix/sbin/balloon-hostd"
[[ $sysconfdir == /etc ]] || hostd_start+=" --config $sysconfdir/balloon-hostd.conf"
sed "s|^ExecStart=/usr/sbin/balloon-hostd\$|ExecStart=$hostd_start|" packaging/balloon-hostd.service >"$tmp/balloon-hostd.service"
grep -q "^ExecStart=$hostd_start\$" "$tmp/balloon-hostd.service" \
    || { echo "install: balloon-hostd.service's ExecStart= line was not found" >&2; exit 1; }
put 0644 "$tmp/balloon-hostd.service" "$unitdir/balloon-hostd.service"
put 0644 packaging/60-balloond.rules "$udevrulesdir/60-balloond.rules"
if [[ -e $root$sysconfdir/balloond.conf ]]; then
    echo "install: keeping $root$sysconfdir/balloond.conf" >&2
else
    put 0644 packaging/balloond.conf "$sysconfdir/balloond.conf"
fi

if [[ -e $root$sysconfdir/balloon-hostd.conf ]]; then
    echo "install: keeping $root$sysconfdir/balloon-hostd.conf" >&2
else
    put 0644 packaging/balloon-hostd.conf "$sysconfdir/balloon-hostd.conf"
fi
install -d -m 0755 "$root$sysconfdir/balloon-hostd.d"

for page in balloonctl.1 balloond.conf.5 balloond.8 balloon-hostd.conf.5 balloon-hostd.8; do
    sed -E "/^\.TH /s/\"balloond [^\"]*\"/\"balloond $version\"/" "packaging/man/$page" >"$tmp/$page"
    put 0644 "$tmp/$page" "$prefix/share/man/man${page##*.}/$page"
done
# balloonctl's completions come from swift-argument-parser; balloond parses
# its three options by hand (a lighter daemon), so its are in packaging/.
tool=balloonctl
"$tmp/$tool" --generate-completion-script bash | sed '1{/^#!/d}' >"$tmp/$tool.bash"
"$tmp/$tool" --generate-completion-script zsh >"$tmp/_$tool"
"$tmp/$tool" --generate-completion-script fish >"$tmp/$tool.fish"
cp packaging/completions/balloond.bash packaging/completions/_balloond packaging/completions/balloond.fish "$tmp/"
for tool in balloonctl balloond; do
    put 0644 "$tmp/$tool.bash" "$prefix/share/bash-completion/completions/$tool"
    put 0644 "$tmp/_$tool" "$prefix/share/zsh/site-functions/_$tool"
    put 0644 "$tmp/$tool.fish" "$prefix/share/fish/vendor_completions.d/$tool.fish"
done
for doc in README.md CHANGELOG.md LICENSE NOTICE docs/*.md; do
    put 0644 "$doc" "$prefix/share/doc/balloond/$(basename "$doc")"
done
echo "install: balloond $version installed under $root$prefix" >&2
