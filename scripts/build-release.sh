#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# scripts/build-release.sh — the two release builds that ship (make deb, make
# install, the VM artifacts):
#   balloond    the Swift runtime linked statically (--static-swift-stdlib);
#               libsystemd.so.0 and glibc stay dynamic (Debian ships no
#               libsystemd.a)
#   balloonctl  fully static (-Xswiftc -static-executable)
# Reproducible: the source and scratch directories are mapped to fixed names in
# everything the compilers write (#file strings), and the compiler runs without
# address space randomisation, so two builds of one commit in the same
# directories give the same bytes (docs/releasing.md says why not in any two).
#
# Usage: scripts/build-release.sh [--scratch DIR]
#   DIR/deb and DIR/static are the scratch paths (default .build-deb and
#   .build-static in the repository).
# Prints three lines: the paths of balloond, balloonctl and balloon-hostd
# (static, like balloonctl).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
export PATH=/opt/swift/usr/bin:$PATH
daemon_scratch=$repo/.build-deb
tool_scratch=$repo/.build-static
while (($#)); do
    case $1 in
        --scratch) daemon_scratch=$(realpath -m "$2")/deb; tool_scratch=$(realpath -m "$2")/static; shift 2 ;;
        *) echo "build-release: unknown argument $1" >&2; exit 2 ;;
    esac
done

# -file-prefix-map covers #file/#filePath and debug info for Swift; the -Xcc
# form the C shim and the Clang importer. A scratch path maps to what the
# default one inside the repository maps to, so the order in which a compiler
# tries the two prefixes does not matter.
maps() {
    local scratch=$1 name=$2
    for pair in "$scratch=/usr/src/balloond/$name" "$repo=/usr/src/balloond"; do
        printf '%s\n' -Xswiftc -file-prefix-map -Xswiftc "$pair" -Xcc "-ffile-prefix-map=$pair"
    done
}
mapfile -t daemon_maps < <(maps "$daemon_scratch" .build-deb)
mapfile -t tool_maps < <(maps "$tool_scratch" .build-static)
# Incremental LLVM code generation stores a hash of each LLVM module in the
# object (.swift_modhash), and that hash differs between build directories;
# without it the section is zeros. No debug info: the shipped binaries are
# stripped anyway, and the DWARF names Clang module cache files whose hashes
# depend on the build directory, which changed the linker's build ID.
# One LLVM code generation thread (SwiftPM passes -num-threads with the number
# of cores; the last one given wins): with two, one function's code came out
# differently in two builds under load, presumably because the threads' heap
# allocations interleave differently. One thread gives the same objects at the
# same speed on this machine (docs/releasing.md).
same=(-Xswiftc -Xfrontend -Xswiftc -disable-incremental-llvm-codegen -Xswiftc -gnone -Xcc -g0
      -Xswiftc -num-threads -Xswiftc 1)
daemon=(-c release --static-swift-stdlib --scratch-path "$daemon_scratch" "${daemon_maps[@]}" "${same[@]}")
tool=(-c release -Xswiftc -static-executable --scratch-path "$tool_scratch" "${tool_maps[@]}" "${same[@]}")

# swift-frontend 6.3.1 is not deterministic by itself: some functions come out
# with instructions in another order from run to run, depending on where its
# own data lands in memory. That depends on address space randomisation, and
# on whether the Clang modules it imports are already in the module cache or
# it builds them itself: with parallel jobs, which compile builds them first
# is a race. So no randomisation, and one job at a time (docs/releasing.md).
# The environment is fixed too: its size moves the compiler's initial stack,
# and a `make deb` run from test-systemd gave other code than one from the
# release test in the same checkout.
fixed=(env -i PATH="$PATH" HOME="${HOME:-/root}" LC_ALL=C.UTF-8 TZ=UTC setarch "$(uname -m)" -R)
daemon+=(-j 1)
tool+=(-j 1)
# The two scratch paths (each with its own module cache) build side by side:
# each build is one job, so on a 2-core machine this halves make deb's wait
# without bringing back the race above (that is within one scratch path).
# The BalloonVersion plugin reruns when HEAD, the index or a source file
# changes, not when another tracked file does (a doc, a script), which still
# makes scripts/version.sh say .dirty: write its file in both scratch paths
# first, so a release build always says the tree's version (checked below).
for scratch in "$daemon_scratch" "$tool_scratch"; do
    scripts/version.sh --swift "$scratch/plugins/outputs/main/BalloonProtocol/destination/BalloonVersion/generated/GeneratedVersion.swift"
done
"${fixed[@]}" swift build "${daemon[@]}" --product balloond >&2 &
daemon_build=$!
tools_ok=1
"${fixed[@]}" swift build "${tool[@]}" --product balloonctl >&2 \
    && "${fixed[@]}" swift build "${tool[@]}" --product balloon-hostd >&2 || tools_ok=0
daemon_ok=1
wait "$daemon_build" || daemon_ok=0
((daemon_ok)) || { echo "build-release: the balloond build failed" >&2; exit 1; }
((tools_ok)) || { echo "build-release: the balloonctl/balloon-hostd build failed" >&2; exit 1; }
daemon_bin=$(swift build "${daemon[@]}" --show-bin-path)/balloond
tool_bin=$(swift build "${tool[@]}" --show-bin-path)/balloonctl
hostd_bin=$(dirname "$tool_bin")/balloon-hostd

if ldd "$daemon_bin" | grep -q libswift; then
    echo "build-release: $daemon_bin links the Swift runtime dynamically" >&2; exit 1
fi
file -L "$tool_bin" | grep -q 'statically linked' \
    || { echo "build-release: $tool_bin is not static" >&2; exit 1; }
# The version is generated at build time (Plugins/BalloonVersion); a binary
# that says another commit than the tree's would ship under a wrong name.
version=$(scripts/version.sh)
for bin in "$daemon_bin" "$tool_bin" "$hostd_bin"; do
    said=$("$bin" --version)
    [[ $said == "$version" ]] \
        || { echo "build-release: $bin --version says $said, the tree is $version (a build plan cached before" \
                  "the BalloonVersion plugin became a build command: remove description.json under its scratch" \
                  "path's release directory, or the scratch path, and build again)" >&2; exit 1; }
done
echo "$daemon_bin"
echo "$tool_bin"
echo "$hostd_bin"
