# SPDX-License-Identifier: Apache-2.0
# balloond — see README.md. `make demo` and `make test` work on a fresh
# Debian 12 machine with Swift at /opt/swift (or on PATH).
SHELL := /bin/bash
SWIFT ?= swift
export PATH := /opt/swift/usr/bin:$(PATH)
# make install (distributions other than Debian; see README.md)
PREFIX ?= /usr/local
DESTDIR ?=
SYSCONFDIR ?= /etc
UNITDIR ?= $(PREFIX)/lib/systemd/system
UDEVRULESDIR ?= $(PREFIX)/lib/udev/rules.d

.PHONY: all deps build release demo deb dist install test test-release test-vm test-lane-1 test-lane-2 test-libvirt test-systemd bench bench-vm bench-pressure bench-host bench-host-burst bench-free fuzz test-asan clean

all: build

# Build and test dependencies from Debian; installs only what is missing.
deps:
	@scripts/install-deps.sh

build:
	$(SWIFT) build

release:
	$(SWIFT) build -c release

demo: deps release
	@scripts/demo.sh

# balloond_VERSION_amd64.deb, the guest (balloond with a static Swift runtime +
# libsystemd, unit, udev rule, conffile, man pages, completions) and
# balloon-hostd_VERSION_amd64.deb, the host (static balloon-hostd and balloonctl,
# the agent's Type=notify unit, conffile, man pages); lintian.
deb: deps
	@scripts/mkdeb.sh

# dist/balloond-VERSION.tar.gz (git archive of HEAD, deterministic) and
# dist/SHA256SUMS. docs/releasing.md.
dist:
	@scripts/dist.sh dist >/dev/null

# The package's files under PREFIX (default /usr/local) in DESTDIR, for
# distributions other than Debian; the systemd commands that follow are in
# README.md. Needs Swift 6.3 and libsystemd's headers.
install:
	@PREFIX='$(PREFIX)' DESTDIR='$(DESTDIR)' SYSCONFDIR='$(SYSCONFDIR)' UNITDIR='$(UNITDIR)' \
	  UDEVRULESDIR='$(UDEVRULESDIR)' scripts/install.sh >/dev/null

# Unit tests run in parallel; system tests (real mlock, measured against
# /proc/meminfo) run on their own so nothing else locks memory meanwhile.
# The release test comes next, alone: its two release builds from empty scratch
# paths are the reproducibility check, kept away from other load on purpose,
# and its second build is the one every later test boots or packages (no third
# build). Then two lanes at once (make -j2; each command's output is shown
# whole when it ends), each mostly one TCG vCPU at a time, so they share this
# 2-core machine: the real-guest suites split in two (VM_LANE1, and the rest:
# a suite added later lands in the second), then test-libvirt in the first and
# test-systemd in the second (a fresh clone: VM_LANE1 344 s, the rest 285 s,
# test-systemd 117 s, test-libvirt ~60 s).
VM_INITRAMFS := $(CURDIR)/tests/vm/work/balloond-initramfs.cpio.gz
VM_LANE1 := VMTests\.(PressureScenarios|HostReclaim|AckKillVM)
test: deps
	scripts/spdx.sh --check
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build --skip SystemTests --skip VMTests
	$(SWIFT) test --skip-build --no-parallel --filter SystemTests
	tests/release/test.sh
	scripts/build-vm-artifacts.sh >/dev/null
	BALLOOND_VM_INITRAMFS=$(VM_INITRAMFS) BALLOOND_VM_TESTS=1 \
	  $(MAKE) --no-print-directory -j2 --output-sync=line test-lane-1 test-lane-2

# The two lanes of make test (not for use alone: they expect its build). They
# run the test binary itself: two `swift test` at once would queue on
# SwiftPM's lock of .build.
TESTS_BIN := $(CURDIR)/.build/debug/balloondPackageTests.xctest --testing-library swift-testing --no-parallel
test-lane-1:
	$(TESTS_BIN) --filter '$(VM_LANE1)'
	@tests/libvirt/test.sh
test-lane-2:
	$(TESTS_BIN) --filter VMTests --skip '$(VM_LANE1)'
	@tests/systemd/test.sh

# Release checks (tests/release/test.sh): the licence line check fails when it
# should, one version everywhere (the packaged binaries' --version, a running
# daemon's info reply, the package, man pages, changelog, README), make
# install's tree, make dist, and two make deb builds (the second from empty
# scratch paths) giving byte-identical packages. ~5 min (two release builds).
test-release: deps
	@tests/release/test.sh

# Real-guest tests: QEMU TCG guests with balloond (static Swift runtime) and a
# static balloonctl inside.
test-vm: deps
	$(SWIFT) build --build-tests
	scripts/build-vm-artifacts.sh >/dev/null
	BALLOOND_VM_TESTS=1 BALLOOND_VM_INITRAMFS=$(VM_INITRAMFS) $(SWIFT) test --skip-build --no-parallel --filter VMTests

# balloon-hostd and a real libvirt guest (tests/libvirt/test.sh): installs
# libvirt from Debian if missing, runs its own libvirtd (no systemd needed), one
# TCG domain with a shared RAM file on a tmpfs; the agent discovers it and its
# RAM file, inflates it, and the host memory behind it drops. Root; ~40 s.
test-libvirt: deps
	@tests/libvirt/test.sh

# Both packages under real systemd: systemd-nspawn (install over the old single
# package, status, reload, broken config, watchdog; balloon-hostd's notify,
# reload, broken guest file) and a QEMU TCG boot (udev rule, host balloonctl).
test-systemd: deps
	@tests/systemd/test.sh

bench: deps release
	@bench/run.sh

# balloond vs the kernel's virtio_balloon in the same QEMU TCG guest (512 MiB
# balloon in and out; host memory freed from a shared RAM file); as root.
# Writes bench/results-vm.json and bench/results-vm.md.
bench-vm: deps
	@bench/vm.sh

# Issue 4's pressure benchmark in real guests (QEMU TCG): workloads A-D, 20
# randomized runs each, balloond vs the kernel's virtio_balloon with
# deflate-on-oom, and the E controls; writes bench/results-pressure.{json,md}.
# BENCH_RUNS and BENCH_SEED override the run count and the seed.
# Two guests at a time (A then C; B, D then E), merged at the end: ~45 min here.
bench-pressure: deps
	initramfs=$$(scripts/build-vm-artifacts.sh) && mkdir -p bench/out && \
	seed=$${BENCH_SEED:-$$RANDOM$$RANDOM} && \
	common="--initramfs $$initramfs --runs $${BENCH_RUNS:-20} --seed $$seed" && \
	{ python3 bench/pressure.py $$common --only A,C --out bench/out/p1.json --md bench/out/p1.md & \
	  python3 bench/pressure.py $$common --only B,D,E --out bench/out/p2.json --md bench/out/p2.md; rc2=$$?; \
	  wait $$! && [ $$rc2 = 0 ]; } && \
	python3 bench/pressure.py --initramfs $$initramfs --merge bench/out/p1.json bench/out/p2.json

# Issue 11: balloon-hostd with 1,000 simulated guests (balloon-hostsim: agent CPU,
# RSS, the policy round's cost) and three 1 GiB TCG guests under a 2 GiB budget with
# no balloon, proxmox, mom and auto (bench/host.py); writes bench/results-host.{json,md,png}.
# BENCH_SEED sets the guests' schedules; BENCH_HOST=scale runs only the simulator part;
# BENCH_GUEST_CPU the guests' QEMU -cpu model (bench/host.py's default: max; docs/policy-bench.md, session 45).
# The guests' part takes about 40 min here (about 10 min a policy).
bench-host: deps
	$(SWIFT) build -c release --product balloon-hostd
	$(SWIFT) build -c release --product balloon-hostsim
	@scripts/install-plot-deps.sh
	if [ "$${BENCH_HOST:-all}" = scale ]; then python3 bench/host.py scale; else \
	  initramfs=$$(scripts/build-vm-artifacts.sh) && \
	  python3 bench/host.py all --initramfs $$initramfs --seed $${BENCH_SEED:-1} $${BENCH_GUEST_CPU:+--guest-cpu "$$BENCH_GUEST_CPU"}; fi

# One guest's instant burst (after a warm-up) with and without a balloon held by balloon-hostd, alone
# or beside spinning guests (bench/host_burst.py): the per-guest part of bench-host's run-time goal.
# About 10 min here (BENCH_ROUNDS rounds of two fresh guests, 3 by default);
# BENCH_HISTORY=thrash: a page-cache thrash first, the balloon rebuilt after it;
# BENCH_NEIGHBOURS=N: N more guests spinning a vCPU each, so the burst shares the cores;
# BENCH_GUEST_CPU: the guests' QEMU -cpu model, as for bench-host.
bench-host-burst: deps
	$(SWIFT) build -c release --product balloon-hostd
	initramfs=$$(scripts/build-vm-artifacts.sh) && \
	  python3 bench/host_burst.py --initramfs $$initramfs --rounds $${BENCH_ROUNDS:-3} --history $${BENCH_HISTORY:-fresh} \
	    --neighbours $${BENCH_NEIGHBOURS:-0} $${BENCH_GUEST_CPU:+--guest-cpu "$$BENCH_GUEST_CPU"}

# Issue 10's benchmark (bench/free.py): workloads 1-4 in the same QEMU TCG guest
# (RAM in a shared file) with no balloon, the kernel's free page reporting,
# balloond's free-memory mode, and the mode with cold page cache; host memory
# over time as a table and a PNG. BENCH_SEED, BENCH_CONFIGS (a,b,c,d; e is c
# without populate on deflate) and BENCH_OBSERVE (seconds after each workload,
# 120) override; W3 runs in 15 simultaneous pairs with a and the median ratio
# is judged. Exits 1 when a goal fails. ~35 min here.
bench-free: deps
	@scripts/install-plot-deps.sh
	initramfs=$$(scripts/build-vm-artifacts.sh) && \
	python3 bench/free.py --initramfs $$initramfs --seed $${BENCH_SEED:-$$RANDOM$$RANDOM} \
	  --configs $${BENCH_CONFIGS:-a,b,c,d} --observe $${BENCH_OBSERVE:-120} $${BENCH_FREE_ARGS}

# libFuzzer targets (Sources/BalloonFuzz, docs/fuzzing.md), FUZZ_SECONDS each
# (default 120); writes bench/results-fuzz.md, keeps crash inputs under
# fuzz/regressions/ and fails on any. Not part of make test (CPU time).
fuzz:
	@scripts/fuzz.sh

# The unit and system tests under AddressSanitizer (with LeakSanitizer), and
# the C shim under UndefinedBehaviorSanitizer in trap mode (Swift offers no
# UBSan; trap mode needs no runtime), in their own scratch path
# (docs/fuzzing.md); not part of make test (another full debug build of CI
# time). The system tests run balloond, balloon-hostd and balloonctl from that
# build, so every process a test starts is instrumented: each writes any report
# to .build-asan/reports/ (log_path), and a report there fails the target. The
# system tests' own process, a Foundation harness, is not leak-checked
# (Tests/SystemTests/LeakCheck.swift).
# The system tests run alone, as in make test; BALLOOND_TEST_SANITIZER tells the
# two RSS bounds that ASan's allocator (redzones, quarantine) adds to them.
ASAN_FLAGS := --scratch-path .build-asan --sanitize=address -Xcc -fsanitize=undefined -Xcc -fsanitize-trap=undefined
ASAN_REPORTS := $(CURDIR)/.build-asan/reports
test-asan: export ASAN_OPTIONS = suppressions=$(CURDIR)/fuzz/asan.supp:log_path=$(ASAN_REPORTS)/asan
test-asan: export LSAN_OPTIONS = suppressions=$(CURDIR)/fuzz/lsan.supp:print_suppressions=0
test-asan: export BALLOOND_TEST_SANITIZER = address
test-asan: deps
	$(SWIFT) build --build-tests $(ASAN_FLAGS)
	rm -rf $(ASAN_REPORTS) && mkdir -p $(ASAN_REPORTS)
	$(SWIFT) test --skip-build $(ASAN_FLAGS) --skip SystemTests --skip VMTests; \
	  unit=$$?; BALLOOND_TEST_HARNESS_NO_LEAK_CHECK=1 \
	  $(SWIFT) test --skip-build $(ASAN_FLAGS) --no-parallel --filter SystemTests; \
	  system=$$?; reports=$$(grep -l ERROR $(ASAN_REPORTS)/* 2>/dev/null); \
	  for f in $$reports; do echo "== $$f"; cat $$f; done; \
	  echo "test-asan: unit tests exit $$unit, system tests exit $$system, $$(echo $$reports | wc -w) sanitizer report(s)"; \
	  [ $$unit = 0 ] && [ $$system = 0 ] && [ -z "$$reports" ]

clean:
	rm -rf .build bench/out tests/systemd/work tests/release/work dist balloond_*.deb balloon-hostd_*.deb
