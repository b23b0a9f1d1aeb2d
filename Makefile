# balloond — see README.md. `make demo` and `make test` work on a fresh
# Debian 12 machine with Swift at /opt/swift (or on PATH).
SHELL := /bin/bash
SWIFT ?= swift
export PATH := /opt/swift/usr/bin:$(PATH)

.PHONY: all deps build release demo deb test test-vm test-systemd bench bench-vm bench-pressure clean

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

# balloond_VERSION_amd64.deb (balloond with a static Swift runtime + libsystemd,
# static balloonctl, unit, udev rule, conffile, man pages, completions); lintian.
deb: deps
	@scripts/mkdeb.sh

# Unit tests run in parallel; system tests (real mlock, measured against
# /proc/meminfo) run on their own so nothing else locks memory meanwhile.
test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build --skip SystemTests --skip VMTests
	$(SWIFT) test --skip-build --no-parallel --filter SystemTests
	$(MAKE) test-vm
	$(MAKE) test-systemd

# Real-guest tests: QEMU TCG guests with balloond (static Swift runtime) and a
# static balloonctl inside.
test-vm: deps
	$(SWIFT) build --build-tests
	initramfs=$$(scripts/build-vm-artifacts.sh) && \
	BALLOOND_VM_TESTS=1 BALLOOND_VM_INITRAMFS=$$initramfs \
	$(SWIFT) test --skip-build --no-parallel --filter VMTests

# The .deb under real systemd: systemd-nspawn (install, status, reload, broken
# config, watchdog) and a QEMU TCG boot (udev rule, host balloonctl).
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

clean:
	rm -rf .build bench/out tests/systemd/work balloond_*.deb
