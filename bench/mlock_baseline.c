// The benchmark's reference: a plain C program that reserves memory the way a
// balloon does (mmap + touch + mlock, in chunks) and gives it back (munlock +
// munmap). Prints JSON: {"bytes":..,"thp":..,"inflate_s":..,"deflate_s":..}.
// Usage: mlock_baseline BYTES CHUNK_BYTES THP(0|1)
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: %s BYTES CHUNK_BYTES THP(0|1)\n", argv[0]); return 2; }
    size_t bytes = strtoull(argv[1], NULL, 0), chunk = strtoull(argv[2], NULL, 0);
    int thp = atoi(argv[3]);
    size_t n = (bytes + chunk - 1) / chunk, page = sysconf(_SC_PAGESIZE);
    char **regions = calloc(n, sizeof *regions);
    const size_t huge = 2u << 20;
    double t0 = now();
    for (size_t i = 0; i < n; i++) {
        // Over-map by 2 MiB so the region can be huge-page aligned, as balloond does.
        char *raw = mmap(NULL, chunk + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (raw == MAP_FAILED) { perror("mmap"); return 1; }
        char *p = (char *)(((uintptr_t)raw + huge - 1) & ~(uintptr_t)(huge - 1));
        if (p > raw) munmap(raw, p - raw);
        munmap(p + chunk, (raw + chunk + huge) - (p + chunk));
        madvise(p, chunk, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
        for (size_t off = 0; off < chunk; off += page) p[off] = 1;
        if (mlock(p, chunk) != 0) { perror("mlock"); return 1; }
        regions[i] = p;
    }
    double t1 = now();
    for (size_t i = n; i-- > 0;) { munlock(regions[i], chunk); munmap(regions[i], chunk); }
    double t2 = now();
    printf("{\"bytes\":%zu,\"thp\":%d,\"inflate_s\":%.6f,\"deflate_s\":%.6f}\n", bytes, thp, t1 - t0, t2 - t1);
    return 0;
}
