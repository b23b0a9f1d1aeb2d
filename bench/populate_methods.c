// SPDX-License-Identifier: Apache-2.0
// What allocating a guest's taken-back memory again costs the host agent, by
// method, with nothing else running: the kernel's side of the agent's populate
// and prefault (BackendPuncher.populate, Prefaulter.prefault), done the same
// way in one process, in the agent's 32 MiB slices.
//   fallocate   fallocate(KEEP_SIZE), then process_vm_readv one byte per 4 KiB
//               page of the mapper: what the agent does
//   mapping     mmap shared + MADV_POPULATE_WRITE + munmap (the pages zeroed
//               and in the page cache), then one byte per 64 KiB: the kernel's
//               fault-around maps the rest. Measured, not adopted: a real
//               burst showed no gain (docs/policy-bench.md, session 50)
//   mapping-4k  the same populate, then one byte per page: the stride's share
// A forked child maps the file shared and writable, as QEMU maps guest RAM,
// and touches nothing. Before each measurement the whole range is punched
// (untimed), which also unmaps it from the child. Methods take turns, the
// order rotating each round. Prints one JSON line per measurement: wall and
// CPU seconds (this process's, system time included: the faults the reads
// cause in the child are charged here) and the MiB the child then maps.
// Usage: populate_methods PATH MIB ROUNDS   (PATH: a new file on tmpfs)
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

static const size_t slice = 32u << 20, page = 4096;

static double clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what) { perror(what); exit(1); }

// One byte at `start` and at each multiple of `stride` after it, below `end`.
static void touch(pid_t pid, uintptr_t start, uintptr_t end, size_t stride) {
    enum { BATCH = 1024 };
    char sink[BATCH];
    struct iovec remote[BATCH];
    uintptr_t next = start;
    while (next < end) {
        size_t n = 0;
        uintptr_t probe = next;
        for (; n < BATCH && probe < end; n++) {
            remote[n].iov_base = (void *)probe;
            remote[n].iov_len = 1;
            probe = (probe | (stride - 1)) + 1;
        }
        struct iovec local = { sink, n };
        if (process_vm_readv(pid, &local, 1, remote, n, 0) != (ssize_t)n) die("process_vm_readv");
        next = probe;
    }
}

// Resident kB of the child's mapping of the file (its smaps entry's Rss).
static long mapped_kb(pid_t pid, uintptr_t base) {
    char path[64], line[256], want[32];
    snprintf(path, sizeof path, "/proc/%d/smaps", pid);
    snprintf(want, sizeof want, "%lx-", (unsigned long)base);
    FILE *f = fopen(path, "r");
    if (!f) die("smaps");
    long kb = -1;
    int in = 0;
    while (fgets(line, sizeof line, f)) {
        if (strchr(line, '-') && strstr(line, " rw-s ")) in = strncmp(line, want, strlen(want)) == 0;
        if (in && sscanf(line, "Rss: %ld kB", &kb) == 1) break;
    }
    fclose(f);
    return kb;
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: populate_methods PATH MIB ROUNDS\n"); return 2; }
    size_t size = (size_t)atol(argv[2]) << 20;
    int rounds = atoi(argv[3]);
    int fd = open(argv[1], O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0) die("open");
    unlink(argv[1]);
    if (ftruncate(fd, (off_t)size) != 0) die("ftruncate");
    char *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) die("mmap");
    int ready[2], done[2];
    if (pipe(ready) || pipe(done)) die("pipe");
    pid_t child = fork();
    if (child == 0) {  // the mapper: QEMU's part, touching nothing
        char c = 0;
        if (write(ready[1], &c, 1) != 1) _exit(1);
        if (read(done[0], &c, 1) < 0) _exit(1);
        _exit(0);
    }
    char c;
    if (read(ready[0], &c, 1) != 1) die("child");
    const char *names[] = { "fallocate", "mapping", "mapping-4k" };
    for (int round = 0; round < rounds; round++) {
        for (int k = 0; k < 3; k++) {
            int m = (k + round) % 3;
            if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, (off_t)size) != 0) die("punch");
            double w0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
            for (size_t off = 0; off < size; off += slice) {
                size_t len = size - off < slice ? size - off : slice;
                if (m == 0) {
                    if (fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) != 0) die("fallocate");
                } else {
                    char *own = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)off);
                    if (own == MAP_FAILED) die("mmap slice");
                    if (madvise(own, len, MADV_POPULATE_WRITE) != 0) die("madvise(MADV_POPULATE_WRITE)");
                    munmap(own, len);
                }
                touch(child, (uintptr_t)base + off, (uintptr_t)base + off + len, m == 1 ? 64u << 10 : page);
            }
            double w1 = clock_s(CLOCK_MONOTONIC), c1 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
            printf("{\"round\": %d, \"method\": \"%s\", \"mib\": %zu, \"wall_s\": %.4f, \"cpu_s\": %.4f, \"mapped_mib\": %.1f}\n",
                   round + 1, names[m], size >> 20, w1 - w0, c1 - c0, mapped_kb(child, (uintptr_t)base) / 1024.0);
            fflush(stdout);
        }
    }
    if (write(done[1], &c, 1) != 1) die("write");
    waitpid(child, NULL, 0);
    return 0;
}
