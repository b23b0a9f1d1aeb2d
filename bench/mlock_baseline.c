// SPDX-License-Identifier: Apache-2.0
// The benchmark's reference: a plain C program that reserves memory exactly
// the way balloond's holders do (Sources/CBalloonShim/shim.c,
// cballoon_holder_main): per chunk, mmap (over-mapped by 2 MiB and trimmed to
// a 2 MiB boundary unless huge pages are forbidden), madvise
// HUGEPAGE/NOHUGEPAGE and DONTDUMP, then mlock, which populates the pages
// itself. Mode `touch` writes one byte per page before the mlock (the old
// baseline; a separate row). Gives it back with munlock + munmap.
// The holders run each chunk in a forked child; this does them in turn in one
// process, so it measures the kernel's work without balloond's plumbing.
// Prints JSON: {"bytes":..,"advice":..,"mode":..,"inflate_s":..,"deflate_s":..}.
// Usage: mlock_baseline BYTES CHUNK_BYTES ADVICE [MODE]
//   ADVICE: 1 MADV_HUGEPAGE, 0 MADV_NOHUGEPAGE, 2 none (the system decides)
//   MODE:   mlock (default: as balloond) or touch (touch every page, then mlock)
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: %s BYTES CHUNK_BYTES ADVICE(0|1|2) [mlock|touch]\n", argv[0]);
        return 2;
    }
    size_t bytes = strtoull(argv[1], NULL, 0), chunk = strtoull(argv[2], NULL, 0);
    int advice = atoi(argv[3]);
    const char *mode = argc == 5 ? argv[4] : "mlock";
    int touch = strcmp(mode, "touch") == 0;
    if (!touch && strcmp(mode, "mlock") != 0) { fprintf(stderr, "mode must be mlock or touch\n"); return 2; }
    size_t n = (bytes + chunk - 1) / chunk, page = (size_t)sysconf(_SC_PAGESIZE);
    char **regions = calloc(n, sizeof *regions);
    const size_t huge = 2u << 20;
    double t0 = now();
    for (size_t i = 0; i < n; i++) {
        size_t span = advice == 0 ? chunk : chunk + huge;
        char *raw = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (raw == MAP_FAILED) { perror("mmap"); return 1; }
        char *p = raw;
        if (span != chunk) {
            p = (char *)(((uintptr_t)raw + huge - 1) & ~(uintptr_t)(huge - 1));
            if (p > raw) munmap(raw, (size_t)(p - raw));
            size_t tail = (size_t)((raw + span) - (p + chunk));
            if (tail) munmap(p + chunk, tail);
        }
        if (advice == 1) madvise(p, chunk, MADV_HUGEPAGE);
        if (advice == 0) madvise(p, chunk, MADV_NOHUGEPAGE);
        madvise(p, chunk, MADV_DONTDUMP);
        if (touch)
            for (size_t off = 0; off < chunk; off += page) p[off] = 1;
        if (mlock(p, chunk) != 0) { perror("mlock"); return 1; }
        regions[i] = p;
    }
    double t1 = now();
    for (size_t i = n; i-- > 0;) { munlock(regions[i], chunk); munmap(regions[i], chunk); }
    double t2 = now();
    printf("{\"bytes\":%zu,\"advice\":%d,\"mode\":\"%s\",\"inflate_s\":%.6f,\"deflate_s\":%.6f}\n", bytes, advice, mode,
           t1 - t0, t2 - t1);
    return 0;
}
