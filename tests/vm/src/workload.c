// SPDX-License-Identifier: Apache-2.0
/* workload: memory-pressure workloads for balloond's real-guest tests and
 * `make bench-pressure` (static: gcc -static -O2).
 *
 *   workload ramp MB RATE_MB_S [HOLD_S] anonymous memory, 1 MiB steps at a steady rate,
 *                                       every page touched; held 0.5 s (or HOLD_S)
 *   workload instant MB                 one mmap + memset, as fast as possible; held 0.5 s
 *   workload thrash FILE SECONDS        read FILE (larger than free memory) over and over
 *   workload workingset FILE MB_ANON RATE_MB_S
 *                                       read FILE (fits in memory) over and over while
 *                                       ramping MB_ANON of anonymous memory at RATE
 *   workload idle S | cpu S | io FILE S controls: sleep; spin; write+fdatasync FILE
 *   workload touchloop MB S             MB of anonymous memory touched (one byte a page)
 *                                       in a loop for S seconds; adds passes=N to the
 *                                       result line (N full passes: the throughput)
 *   workload mlockwatch MS              the independent sampler (not a workload): reads
 *                                       Mlocked from /proc/meminfo every MS ms until
 *                                       SIGTERM, then prints
 *       mlockwatch start-us=S start-kb=K first-drop-us=T min-kb=M samples=N max-gap-us=G
 *                                       T: the first sample at which Mlocked was at least
 *                                       1 MiB below K (0: never), so the balloon gave
 *                                       memory back at most one interval (up to G when the
 *                                       sampler itself was delayed) before T
 *
 * Each mode exits 0 on completion (an OOM kill shows as a signal exit) and prints
 * one result line on stdout:
 *
 *   workload MODE ok runtime-ms=R start-us=S end-us=E alloc-stall-us=X
 *            [psi-stall-us=T psi-pressure-us=P psi-some-us=A psi-full-us=B]
 *            [floor-cross-us=F]
 *
 * With WORKLOAD_PROFILE_MB=N, `instant` first prints `profile-ms=T1,T2,...`: the
 * milliseconds each N MiB of its memset took, to show where a slow run lost time
 * (at the start, waiting for memory, or evenly, sharing the CPU).
 *
 * S and E are CLOCK_MONOTONIC in microseconds (the clock balloond's DEFLATED
 * `signal-at`/`deflated-at` use). With WORKLOAD_PSI_MS=N in the environment a
 * thread samples /proc/pressure/memory every N ms and reports when the first
 * memory stall of the run began: T is the first sample at which `some total`
 * rose by at least 10% of the sampling interval, back-dated by the rise
 * (the stall has been going on that long), never before the previous sample.
 * P (psi-pressure-us) is the first sample by which `some total` had risen by at
 * least 20 ms within the last 500 ms: balloond's light PSI trigger (`some 20ms
 * 500ms`, docs/pressure.md), so the earliest a guest's pressure signal can fire;
 * T marks any stall, however brief, and P one that is pressure (0: none).
 * A and B are the `some`/`full` totals accumulated during the run.
 * With WORKLOAD_FLOOR_KB=N as well, the same thread reads MemAvailable and F is
 * the first sample below N kB (0: never), at most one interval late.
 * X is the workload's own view of a stall: the start of the first 1 MiB step of
 * anonymous memory (ramp, instant, workingset) whose page touches took at least
 * WORKLOAD_ALLOC_STALL_MS ms (default 20) and at least 8 times its fastest step
 * so far (0: none). Under TCG on a busy host such steps also happen without
 * memory pressure: bench/pressure.py records X but does not time from it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void sleep_until_us(uint64_t t) {
    uint64_t n = now_us();
    if (t <= n) return;
    struct timespec ts = { (time_t)((t - n) / 1000000u), (long)(((t - n) % 1000000u) * 1000u) };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {}
}

static void die(const char *what) {
    fprintf(stderr, "workload: %s: %s\n", what, strerror(errno));
    exit(2);
}

/* ---- PSI sampler ---- */
static volatile int psi_run;
static uint64_t psi_interval_ms, psi_stall_us, psi_pressure_us, psi_some0, psi_full0, psi_some1, psi_full1;
static uint64_t floor_kb, floor_cross_us;
static pthread_t psi_thread;

/* A /proc/meminfo field in kB, or -1. */
static long long meminfo_kb(const char *key) {
    char buf[4096];
    int fd = open("/proc/meminfo", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    size_t klen = strlen(key);
    for (char *line = buf; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
        if (!strncmp(line, key, klen) && line[klen] == ':') return strtoll(line + klen + 1, NULL, 10);
    return -1;
}

static int read_psi(uint64_t *some, uint64_t *full) {
    char buf[512];
    int fd = open("/proc/pressure/memory", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    char *s = strstr(buf, "some"), *f = strstr(buf, "full");
    char *st = s ? strstr(s, "total=") : NULL, *ft = f ? strstr(f, "total=") : NULL;
    if (!st || !ft) return -1;
    *some = strtoull(st + 6, NULL, 10);
    *full = strtoull(ft + 6, NULL, 10);
    return 0;
}

/* balloond's light trigger: `some` stalled PRESSURE_STALL_US within PRESSURE_WINDOW_US. */
#define PRESSURE_STALL_US 20000u
#define PRESSURE_WINDOW_US 500000u
#define PRESSURE_RING 1024u

static void *psi_main(void *arg) {
    (void)arg;
    uint64_t prev_some = psi_some0, full, some, prev_t = now_us();
    /* (time, some total) of recent samples, oldest at ring_head, to see the window's rise. */
    static uint64_t ring_t[PRESSURE_RING], ring_some[PRESSURE_RING];
    unsigned ring_head = 0, ring_len = 0;
    ring_t[0] = prev_t;
    ring_some[0] = prev_some;
    ring_len = 1;
    while (psi_run) {
        usleep((useconds_t)(psi_interval_ms * 1000));
        uint64_t t = now_us();
        if (read_psi(&some, &full) < 0) break;
        if (floor_kb && !floor_cross_us) {
            long long avail = meminfo_kb("MemAvailable");
            if (avail >= 0 && (uint64_t)avail < floor_kb) floor_cross_us = t;
        }
        uint64_t rise = some - prev_some;
        if (!psi_stall_us && rise * 10 >= (t - prev_t)) {
            uint64_t start = t > rise ? t - rise : 0;
            psi_stall_us = start > prev_t ? start : prev_t;
        }
        if (!psi_pressure_us) {
            while (ring_len > 1 && t - ring_t[(ring_head + 1) % PRESSURE_RING] >= PRESSURE_WINDOW_US) {
                ring_head = (ring_head + 1) % PRESSURE_RING;
                ring_len--;
            }
            /* The oldest kept sample is at most one interval before the window opens. */
            if (some - ring_some[ring_head] >= PRESSURE_STALL_US) psi_pressure_us = t;
            if (ring_len == PRESSURE_RING) {
                ring_head = (ring_head + 1) % PRESSURE_RING;
                ring_len--;
            }
            unsigned tail = (ring_head + ring_len) % PRESSURE_RING;
            ring_t[tail] = t;
            ring_some[tail] = some;
            ring_len++;
        }
        prev_some = some;
        prev_t = t;
    }
    return NULL;
}

static uint64_t t_start, alloc_stall_us, alloc_stall_limit_us = 20000, fastest_step_us = UINT64_MAX;

/* Notes a 1 MiB step that began at s0 and ended now. */
static void step_done(uint64_t s0) {
    uint64_t took = now_us() - s0;
    if (!alloc_stall_us && alloc_stall_limit_us && fastest_step_us != UINT64_MAX && took >= alloc_stall_limit_us
        && took >= 8 * fastest_step_us)
        alloc_stall_us = s0;
    if (took < fastest_step_us) fastest_step_us = took;
}
static const char *mode_name;

static void begin(const char *mode) {
    mode_name = mode;
    const char *e = getenv("WORKLOAD_PSI_MS");
    if (e && atoi(e) > 0 && read_psi(&psi_some0, &psi_full0) == 0) {
        psi_interval_ms = (uint64_t)atoi(e);
        const char *f = getenv("WORKLOAD_FLOOR_KB");
        if (f) floor_kb = strtoull(f, NULL, 10);
        psi_run = 1;
        if (pthread_create(&psi_thread, NULL, psi_main, NULL) != 0) psi_run = 0;
    }
    const char *a = getenv("WORKLOAD_ALLOC_STALL_MS");
    if (a) alloc_stall_limit_us = (uint64_t)atoi(a) * 1000u;
    t_start = now_us();
}

static int finish(void) {
    uint64_t t_end = now_us();
    printf("workload %s ok runtime-ms=%llu start-us=%llu end-us=%llu alloc-stall-us=%llu", mode_name,
           (unsigned long long)((t_end - t_start) / 1000), (unsigned long long)t_start,
           (unsigned long long)t_end, (unsigned long long)alloc_stall_us);
    if (psi_run) {
        psi_run = 0;
        pthread_join(psi_thread, NULL);
        if (read_psi(&psi_some1, &psi_full1) == 0)
            printf(" psi-stall-us=%llu psi-pressure-us=%llu psi-some-us=%llu psi-full-us=%llu",
                   (unsigned long long)psi_stall_us, (unsigned long long)psi_pressure_us,
                   (unsigned long long)(psi_some1 - psi_some0), (unsigned long long)(psi_full1 - psi_full0));
        if (floor_kb) printf(" floor-cross-us=%llu", (unsigned long long)floor_cross_us);
    }
    printf("\n");
    fflush(stdout);
    return 0;
}

/* ---- anonymous memory ---- */
static long page_size;

static char *map_anon(size_t bytes) {
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) die("mmap");
    return p;
}

/* Touches every page; a step that took too long is the workload's first stall. */
static void touch(char *p, size_t bytes) {
    uint64_t t0 = now_us();
    for (size_t o = 0; o < bytes; o += (size_t)page_size) p[o] = (char)(o | 1);
    step_done(t0);
}

/* ---- the independent Mlocked sampler ---- */
static volatile sig_atomic_t watch_stop;
static void on_term(int sig) { (void)sig; watch_stop = 1; }

static int mlockwatch(uint64_t interval_ms) {
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    uint64_t t0 = now_us(), first_drop = 0, samples = 0, max_gap = 0, prev = t0;
    long long start = meminfo_kb("Mlocked"), low = start;
    if (start < 0) die("/proc/meminfo Mlocked");
    while (!watch_stop) {
        usleep((useconds_t)(interval_ms * 1000));
        uint64_t t = now_us();
        long long v = meminfo_kb("Mlocked");
        samples++;
        if (t - prev > max_gap) max_gap = t - prev;
        prev = t;
        if (v < 0) continue;
        if (v < low) low = v;
        if (!first_drop && v + 1024 <= start) first_drop = t;
    }
    printf("mlockwatch start-us=%llu start-kb=%lld first-drop-us=%llu min-kb=%lld samples=%llu max-gap-us=%llu\n",
           (unsigned long long)t0, start, (unsigned long long)first_drop, low, (unsigned long long)samples,
           (unsigned long long)max_gap);
    fflush(stdout);
    return 0;
}

/* ---- file reading ---- */
static char iobuf[1 << 20];

/* Reads up to `bytes` from fd, wrapping at EOF; returns bytes read. */
static size_t read_some(int fd, size_t bytes) {
    size_t done = 0;
    while (done < bytes) {
        ssize_t n = read(fd, iobuf, sizeof iobuf);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("read");
        }
        if (n == 0) {
            if (lseek(fd, 0, SEEK_SET) < 0) die("lseek");
            continue;
        }
        done += (size_t)n;
    }
    return done;
}

static int open_file(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) die(path);
    return fd;
}

int main(int argc, char **argv) {
    page_size = sysconf(_SC_PAGESIZE);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 3) {
        fprintf(stderr, "usage: workload ramp MB RATE [HOLD_S] | instant MB | thrash FILE S | workingset FILE MB RATE | idle S | cpu S | io FILE S | touchloop MB S | mlockwatch MS\n");
        return 2;
    }
    const char *mode = argv[1];
    if (!strcmp(mode, "mlockwatch") && argc == 3) return mlockwatch(strtoull(argv[2], NULL, 10));
    if (!strcmp(mode, "ramp") && (argc == 4 || argc == 5)) {
        size_t mb = strtoull(argv[2], NULL, 10);
        double rate = atof(argv[3]);
        double hold = argc == 5 ? atof(argv[4]) : 0.5;
        char *p = map_anon(mb << 20);
        begin(mode);
        for (size_t i = 0; i < mb; i++) {
            sleep_until_us(t_start + (uint64_t)((double)i * 1e6 / rate));
            touch(p + (i << 20), 1 << 20);
        }
        sleep_until_us(now_us() + (uint64_t)(hold * 1e6));
        return finish();
    }
    if (!strcmp(mode, "instant") && argc == 3) {
        size_t mb = strtoull(argv[2], NULL, 10);
        begin(mode);
        char *p = map_anon(mb << 20);
        const char *pe = getenv("WORKLOAD_PROFILE_MB");
        size_t every = pe ? strtoull(pe, NULL, 10) : 0;
        uint64_t seg = now_us();
        /* As fast as possible, in 1 MiB steps so a stalled step shows. */
        for (size_t i = 0; i < mb; i++) {
            uint64_t s0 = now_us();
            memset(p + (i << 20), 1, 1 << 20);
            step_done(s0);
            if (every && (i + 1) % every == 0) {
                printf("%s%llu", i + 1 == every ? "profile-ms=" : ",", (unsigned long long)((now_us() - seg) / 1000));
                seg = now_us();
            }
        }
        if (every) printf("\n");
        usleep(500000);
        return finish();
    }
    if (!strcmp(mode, "touchloop") && argc == 4) {
        size_t mb = strtoull(argv[2], NULL, 10);
        uint64_t dur = (uint64_t)(atof(argv[3]) * 1e6);
        char *p = map_anon(mb << 20);
        memset(p, 1, mb << 20);
        begin(mode);
        uint64_t passes = 0;
        while (now_us() - t_start < dur) {
            for (size_t off = 0; off < (mb << 20); off += (size_t)page_size) p[off]++;
            passes++;
        }
        printf("touchloop passes=%llu\n", (unsigned long long)passes);
        return finish();
    }
    if (!strcmp(mode, "thrash") && argc == 4) {
        int fd = open_file(argv[2]);
        uint64_t dur = (uint64_t)(atof(argv[3]) * 1e6);
        begin(mode);
        while (now_us() - t_start < dur) read_some(fd, 16 << 20);
        return finish();
    }
    if (!strcmp(mode, "workingset") && argc == 5) {
        int fd = open_file(argv[2]);
        size_t mb = strtoull(argv[3], NULL, 10);
        double rate = atof(argv[4]);
        char *p = map_anon(mb << 20);
        begin(mode);
        for (size_t i = 0; i < mb; i++) {
            /* Between anonymous steps, keep re-reading the file working set. */
            uint64_t next = t_start + (uint64_t)((double)i * 1e6 / rate);
            while (now_us() < next) read_some(fd, 1 << 20);
            touch(p + (i << 20), 1 << 20);
        }
        usleep(500000);
        return finish();
    }
    if (!strcmp(mode, "idle") && argc == 3) {
        begin(mode);
        sleep_until_us(t_start + (uint64_t)(atof(argv[2]) * 1e6));
        return finish();
    }
    if (!strcmp(mode, "cpu") && argc == 3) {
        uint64_t dur = (uint64_t)(atof(argv[2]) * 1e6);
        volatile uint64_t x = 1;
        begin(mode);
        while (now_us() - t_start < dur)
            for (int i = 0; i < 100000; i++) x = x * 6364136223846793005ull + 1442695040888963407ull;
        return finish();
    }
    if (!strcmp(mode, "io") && argc == 4) {
        int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) die(argv[2]);
        uint64_t dur = (uint64_t)(atof(argv[3]) * 1e6);
        memset(iobuf, 0x5a, sizeof iobuf);
        size_t off = 0;
        begin(mode);
        /* 1 MiB writes over a 32 MiB file, fdatasync every 4 MiB: I/O-bound,
         * not memory-bound. */
        while (now_us() - t_start < dur) {
            if (pwrite(fd, iobuf, sizeof iobuf, (off_t)off) < 0) die("pwrite");
            off = (off + sizeof iobuf) % (32u << 20);
            if (off % (4u << 20) == 0 && fdatasync(fd) < 0) die("fdatasync");
        }
        close(fd);
        return finish();
    }
    fprintf(stderr, "workload: bad arguments for %s\n", mode);
    return 2;
}
