// SPDX-License-Identifier: Apache-2.0
#define _GNU_SOURCE
#include "CBalloonShim.h"
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <pthread.h>
#include <unistd.h>
#include <sys/uio.h>

const int cballoon_MADV_HUGEPAGE = MADV_HUGEPAGE;
const int cballoon_MADV_NOHUGEPAGE = MADV_NOHUGEPAGE;
const int cballoon_MADV_DONTFORK = MADV_DONTFORK;
const int cballoon_MADV_DONTDUMP = MADV_DONTDUMP;

const uint32_t cballoon_EPOLLIN = EPOLLIN;
const uint32_t cballoon_EPOLLOUT = EPOLLOUT;
const uint32_t cballoon_EPOLLPRI = EPOLLPRI;
const uint32_t cballoon_EPOLLERR = EPOLLERR;
const uint32_t cballoon_EPOLLHUP = EPOLLHUP;
const uint32_t cballoon_EPOLLRDHUP = EPOLLRDHUP;
const uint32_t cballoon_EPOLLET = EPOLLET;

const unsigned int cballoon_VMADDR_CID_ANY = VMADDR_CID_ANY;
const unsigned int cballoon_VMADDR_CID_HOST = VMADDR_CID_HOST;
const unsigned int cballoon_VMADDR_CID_LOCAL = 1;

int cballoon_fcntl_setown(int fd, pid_t pid) { return fcntl(fd, F_SETOWN, pid); }
int cballoon_fcntl_setfl(int fd, int flags) { return fcntl(fd, F_SETFL, flags); }
int cballoon_fcntl_getfl(int fd) { return fcntl(fd, F_GETFL); }

int cballoon_block_signals(const int *signals, int count, sigset_t *out) {
    sigemptyset(out);
    for (int i = 0; i < count; i++) sigaddset(out, signals[i]);
    return pthread_sigmask(SIG_BLOCK, out, NULL) == 0 ? 0 : -1;
}

int cballoon_signalfd(int fd, const sigset_t *set, int flags) { return signalfd(fd, set, flags); }

int cballoon_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = events;
    ev.data.u64 = data;
    return epoll_ctl(epfd, op, fd, &ev);
}

int cballoon_epoll_wait(int epfd, uint32_t *events, uint64_t *data, int maxevents, int timeout) {
    struct epoll_event evs[64];
    if (maxevents > 64) maxevents = 64;
    int n = epoll_wait(epfd, evs, maxevents, timeout);
    for (int i = 0; i < n; i++) { events[i] = evs[i].events; data[i] = evs[i].data.u64; }
    return n;
}

int cballoon_vsock_bind(int fd, unsigned int cid, unsigned int port) {
    struct sockaddr_vm a;
    memset(&a, 0, sizeof a);
    a.svm_family = AF_VSOCK; a.svm_cid = cid; a.svm_port = port;
    return bind(fd, (struct sockaddr *)&a, sizeof a);
}

int cballoon_vsock_connect(int fd, unsigned int cid, unsigned int port) {
    struct sockaddr_vm a;
    memset(&a, 0, sizeof a);
    a.svm_family = AF_VSOCK; a.svm_cid = cid; a.svm_port = port;
    return connect(fd, (struct sockaddr *)&a, sizeof a);
}

int cballoon_vsock_accept(int fd, unsigned int *cid, unsigned int *port, int flags) {
    struct sockaddr_vm a;
    socklen_t len = sizeof a;
    memset(&a, 0, sizeof a);
    int c = accept4(fd, (struct sockaddr *)&a, &len, flags);
    if (c >= 0) { *cid = a.svm_cid; *port = a.svm_port; }
    return c;
}

static int fill_unix(struct sockaddr_un *a, const char *path) {
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    size_t n = strlen(path);
    if (n >= sizeof a->sun_path) { errno = ENAMETOOLONG; return -1; }
    memcpy(a->sun_path, path, n);
    return 0;
}

int cballoon_unix_bind(int fd, const char *path) {
    struct sockaddr_un a;
    if (fill_unix(&a, path) < 0) return -1;
    return bind(fd, (struct sockaddr *)&a, sizeof a);
}

int cballoon_unix_connect(int fd, const char *path) {
    struct sockaddr_un a;
    if (fill_unix(&a, path) < 0) return -1;
    return connect(fd, (struct sockaddr *)&a, sizeof a);
}

int cballoon_set_pdeathsig(int sig) { return prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0); }

int cballoon_accept4(int fd, int flags) { return accept4(fd, NULL, NULL, flags); }

// balloonctl serve (appended).
#include <linux/falloc.h>
#include <poll.h>

const int cballoon_FALLOC_FL_PUNCH_HOLE = FALLOC_FL_PUNCH_HOLE;
const int cballoon_FALLOC_FL_KEEP_SIZE = FALLOC_FL_KEEP_SIZE;

int cballoon_fallocate(int fd, int mode, int64_t offset, int64_t length) {
    return fallocate(fd, mode, (off_t)offset, (off_t)length);
}

int64_t cballoon_touch_remote_pages(int32_t pid, uint64_t address, uint64_t pages, uint64_t page_size) {
    enum { BATCH = 1024 }; /* IOV_MAX */
    char sink[BATCH];
    struct iovec remote[BATCH];
    uint64_t done = 0;
    while (done < pages) {
        uint64_t n = pages - done < BATCH ? pages - done : BATCH;
        for (uint64_t i = 0; i < n; i++) {
            remote[i].iov_base = (void *)(uintptr_t)(address + (done + i) * page_size);
            remote[i].iov_len = 1;
        }
        struct iovec local = { sink, (size_t)n };
        ssize_t got = process_vm_readv((pid_t)pid, &local, 1, remote, (unsigned long)n, 0);
        /* EFAULT: the remote page is not mapped (the sink is ours): a short
           count, not an error, so Swift's funnel never sees it as a bug. */
        if (got < 0) return errno == EFAULT || done ? (int64_t)done : -1;
        done += (uint64_t)got;
        if ((uint64_t)got < n) break; /* the rest is not mapped (any more) */
    }
    return (int64_t)done;
}

int cballoon_peer_closed(int fd) {
    struct pollfd p;
    p.fd = fd; p.events = POLLRDHUP; p.revents = 0;
    int n = poll(&p, 1, 0);
    if (n < 0) return -1;
    return (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) ? 1 : 0;
}

#include <sys/socket.h>
int cballoon_peer_credentials(int fd, int32_t *pid, uint32_t *uid, uint32_t *gid) {
    struct ucred c;
    socklen_t len = sizeof c;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c, &len) < 0) return -1;
    *pid = c.pid; *uid = c.uid; *gid = c.gid;
    return 0;
}

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59
#endif
int cballoon_peer_groups(int fd, uint32_t *groups, uint32_t *count) {
    socklen_t len = (socklen_t)(*count * sizeof(uint32_t));
    int rc = getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len);
    *count = (uint32_t)(len / sizeof(uint32_t));
    return rc;
}

int cballoon_pipe2(int fds[2], int flags) { return pipe2(fds, flags); }

#include <sys/syscall.h>
void cballoon_close_from(int first) {
#ifdef SYS_close_range
    if (syscall(SYS_close_range, (unsigned)first, ~0U, 0) == 0) return;
#endif
    long max = sysconf(_SC_OPEN_MAX);
    for (long fd = first; fd < (max > 0 ? max : 65536); fd++) close((int)fd);
}

void cballoon_unblock_all_signals(void) {
    sigset_t none;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, NULL);
}

#include <stdio.h>
#include <time.h>
#include <stdlib.h>

int cballoon_map_locked(size_t length, int advice, int dontfork, int touch, void **out, const char **failed) {
    const size_t huge = 2u << 20;
    /* Over-map and trim so huge pages can back the whole region. */
    size_t span = advice == 0 ? length : length + huge;
    char *raw = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) { *failed = "mmap"; return -1; }
    char *base = raw;
    if (span != length) {
        base = (char *)(((uintptr_t)raw + huge - 1) & ~(uintptr_t)(huge - 1));
        if (base > raw) munmap(raw, (size_t)(base - raw));
        size_t tail = (size_t)((raw + span) - (base + length));
        if (tail) munmap(base + length, tail);
    }
    /* THP may be disabled system-wide (EINVAL): not fatal, just slower. */
    if (advice == 1) madvise(base, length, MADV_HUGEPAGE);
    if (advice == 0) madvise(base, length, MADV_NOHUGEPAGE);
    /* A core dump (the watchdog's SIGABRT) must not write the balloon out. */
    madvise(base, length, MADV_DONTDUMP);
    int saved;
    if (dontfork && madvise(base, length, MADV_DONTFORK) != 0) { *failed = "madvise(MADV_DONTFORK)"; goto fail; }
    if (touch) {
        size_t page = (size_t)sysconf(_SC_PAGESIZE);
        for (size_t offset = 0; offset < length; offset += page) ((volatile char *)base)[offset] = 1;
    }
    /* The system call, not mlock(3): sanitizer runtimes intercept mlock and
       make it a no-op, and `make test-asan` must test the real locking. */
    if (syscall(SYS_mlock, base, length) != 0) { *failed = "mlock"; goto fail; }
    *out = base;
    return 0;
fail:
    saved = errno;
    munmap(base, length);
    errno = saved;
    return -1;
}

static void holder_reply(const char *text) {
    size_t n = strlen(text), done = 0;
    while (done < n) {
        ssize_t w = write(1, text + done, n - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        done += (size_t)w;
    }
}

/* Reads one line from fd 0 into buf (without the newline); -1 at EOF. */
static int holder_read_line(char *buf, size_t size, size_t *used, char *out, size_t outsize) {
    for (;;) {
        char *nl = memchr(buf, '\n', *used);
        if (nl) {
            size_t len = (size_t)(nl - buf);
            if (len >= outsize) len = outsize - 1;
            memcpy(out, buf, len);
            out[len] = 0;
            size_t rest = *used - (size_t)(nl + 1 - buf);
            memmove(buf, nl + 1, rest);
            *used = rest;
            return 0;
        }
        if (*used == size) *used = 0;  /* an over-long line: drop it */
        ssize_t n = read(0, buf + *used, size - *used);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        *used += (size_t)n;
    }
}

void cballoon_holder_main(pid_t parent) {
    char buf[256], line[128], reply[128];
    size_t used = 0;
    /* No PR_SET_PDEATHSIG: the daemon's death shows as EOF on fd 0 (it holds
       the only write end), and a holder of frames the host may still be
       freeing must outlive it for a while (the linger below). */
    if (getppid() != parent) _exit(1);  /* the daemon died before we could ask */
    /* Only the daemon ends a holder (SIGKILL after its host is done), its
       death (EOF below), or the OOM killer: a SIGTERM to the whole group
       (systemd's stop, a terminal's ^C) must not free frames a host may
       still be freeing. systemd's final SIGKILL still ends a stuck one. */
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (fd >= 0) { (void)!write(fd, "1000", 4); close(fd); }

    /* A spare holder waits here until the daemon hands it a chunk; one whose
       chunk was emptied comes back here to be handed the next. */
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    unsigned long long linger_ms = 0;
    for (;;) {
        unsigned long long length_ll;
        int advice;
        if (holder_read_line(buf, sizeof buf, &used, line, sizeof line) != 0) _exit(0);
        if (sscanf(line, "lock %llu %d", &length_ll, &advice) != 2 || length_ll == 0) {
            holder_reply("error expected: lock LENGTH ADVICE\n");
            _exit(1);
        }
        size_t length = (size_t)length_ll;
        void *mapped;
        const char *failed;
        if (cballoon_map_locked(length, advice, 0, 0, &mapped, &failed) != 0) {
            /* The call and its errno, so the daemon keeps EAGAIN apart from ENOMEM. */
            snprintf(reply, sizeof reply, "error %s %d\n", failed, errno);
            holder_reply(reply);
            _exit(1);
        }
        char *base = mapped;
        snprintf(reply, sizeof reply, "ok %lx\n", (unsigned long)(uintptr_t)base);
        holder_reply(reply);

        size_t held = length;
        int emptied = 0;
        while (!emptied && holder_read_line(buf, sizeof buf, &used, line, sizeof line) == 0) {
            unsigned long long want;
            if (sscanf(line, "linger %llu", &want) == 1) {
                /* No answer: the daemon sends it without waiting. */
                linger_ms = want;
            } else if (sscanf(line, "shrink %llu", &want) == 1 && want <= held && want % page == 0) {
                if (want < held) {
                    syscall(SYS_munlock, base + want, held - want);
                    munmap(base + want, held - want);
                    held = (size_t)want;
                }
                holder_reply("ok\n");
            } else if (strcmp(line, "empty") == 0) {
                /* The whole chunk back to the kernel, the process kept: the
                   daemon reuses it instead of paying for an exit now and a
                   fork at the next growth. Nothing is held, so nothing to
                   linger for. */
                syscall(SYS_munlock, base, held);
                munmap(base, held);
                linger_ms = 0;
                emptied = 1;
                holder_reply("ok\n");
            } else {
                holder_reply("error unknown command\n");
            }
        }
        if (!emptied) break;
    }
    /* The daemon is gone (its pipe closed). Frames it reported that the host
       never acknowledged may still be freed by a host that read the report
       late: keep them locked for the linger time (docs/protocol.md, rule 5),
       then give them back. */
    if (linger_ms > 0) {
        struct timespec left = { .tv_sec = (time_t)(linger_ms / 1000), .tv_nsec = (long)(linger_ms % 1000) * 1000000L };
        while (nanosleep(&left, &left) != 0 && errno == EINTR) {}
    }
    _exit(0);
}

int cballoon_sysinfo(struct sysinfo *info) { return sysinfo(info); }
