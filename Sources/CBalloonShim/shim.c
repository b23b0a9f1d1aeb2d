#define _GNU_SOURCE
#include "CBalloonShim.h"
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <pthread.h>
#include <unistd.h>

const int cballoon_MADV_HUGEPAGE = MADV_HUGEPAGE;
const int cballoon_MADV_NOHUGEPAGE = MADV_NOHUGEPAGE;
const int cballoon_MADV_DONTFORK = MADV_DONTFORK;
const int cballoon_MADV_DONTDUMP = MADV_DONTDUMP;
const int cballoon_MAP_FAILED_ERRNO_SENTINEL = -1;

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

int cballoon_peer_closed(int fd) {
    struct pollfd p;
    p.fd = fd; p.events = POLLRDHUP; p.revents = 0;
    int n = poll(&p, 1, 0);
    if (n < 0) return -1;
    return (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) ? 1 : 0;
}

int cballoon_pipe2(int fds[2], int flags) { return pipe2(fds, flags); }
