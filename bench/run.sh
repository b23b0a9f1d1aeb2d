#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# make bench: builds the C baseline and runs the benchmark driver against the
# release balloond. Root (or CAP_IPC_LOCK) is needed: it locks 1 GiB at a time.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(swift build -c release --show-bin-path)
swift build -c release --product balloon-bench >/dev/null
# Measure the artifact that ships (the .deb, guest images): the Swift runtime
# linked statically, glibc and libsystemd dynamic, built by the script make deb
# uses. A build with a dynamic Swift runtime maps ~12 MiB of shared Swift
# libraries into its RSS as well.
# All of its output is read (`head -n1` would end the pipe early: SIGPIPE
# under pipefail when it prints the next path).
mapfile -t built < <(scripts/build-release.sh)
daemon=${built[0]}
mkdir -p bench/out
gcc -O2 -Wall -o bench/out/mlock_baseline bench/mlock_baseline.c
commit="$(git rev-parse HEAD)$(git diff --quiet HEAD -- Sources Package.swift bench || echo -dirty)"
"$bin/balloon-bench" --balloond "$daemon" --baseline bench/out/mlock_baseline --out bench --commit "$commit" "$@"
