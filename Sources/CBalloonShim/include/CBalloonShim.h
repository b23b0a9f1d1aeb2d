// SPDX-License-Identifier: Apache-2.0
// Declarations Swift's Glibc module does not export (epoll, eventfd, timerfd,
// signalfd, vm_sockets) and macro constants it cannot import.
#ifndef CBALLOON_SHIM_H
#define CBALLOON_SHIM_H

#include <stdint.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/sysinfo.h>
#include <linux/vm_sockets.h>

// mmap/madvise constants, as plain ints.
extern const int cballoon_MADV_HUGEPAGE;
extern const int cballoon_MADV_NOHUGEPAGE;
extern const int cballoon_MADV_DONTFORK;
extern const int cballoon_MADV_DONTDUMP;

extern const uint32_t cballoon_EPOLLIN;
extern const uint32_t cballoon_EPOLLOUT;
extern const uint32_t cballoon_EPOLLPRI;
extern const uint32_t cballoon_EPOLLERR;
extern const uint32_t cballoon_EPOLLHUP;
extern const uint32_t cballoon_EPOLLRDHUP;
extern const uint32_t cballoon_EPOLLET;

extern const unsigned int cballoon_VMADDR_CID_ANY;
extern const unsigned int cballoon_VMADDR_CID_HOST;
extern const unsigned int cballoon_VMADDR_CID_LOCAL;

// fcntl(F_SETSIG)/F_SETOWN are variadic in C.
int cballoon_fcntl_setown(int fd, pid_t pid);
int cballoon_fcntl_setfl(int fd, int flags);
int cballoon_fcntl_getfl(int fd);

// A sigset_t built from a list, and blocking it for the calling thread.
int cballoon_block_signals(const int *signals, int count, sigset_t *out);
int cballoon_signalfd(int fd, const sigset_t *set, int flags);

// epoll_event is packed on x86_64; Swift mis-lays packed structs, so go
// through plain out-parameters.
int cballoon_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data);
int cballoon_epoll_wait(int epfd, uint32_t *events, uint64_t *data, int maxevents, int timeout);

// vsock sockaddr helpers.
int cballoon_vsock_bind(int fd, unsigned int cid, unsigned int port);
int cballoon_vsock_connect(int fd, unsigned int cid, unsigned int port);
int cballoon_vsock_accept(int fd, unsigned int *cid, unsigned int *port, int flags);

int cballoon_accept4(int fd, int flags);

// unix sockaddr helpers; return -1 with errno ENAMETOOLONG for long paths.
int cballoon_unix_bind(int fd, const char *path);
int cballoon_unix_connect(int fd, const char *path);

// prctl(PR_SET_PDEATHSIG), oom_score_adj is a /proc file.
int cballoon_set_pdeathsig(int sig);


// balloonctl serve: freeing guest RAM in a memory-backend file.
// fallocate(FALLOC_FL_PUNCH_HOLE|FALLOC_FL_KEEP_SIZE): Glibc exports neither
// fallocate nor the flags without _GNU_SOURCE.
extern const int cballoon_FALLOC_FL_PUNCH_HOLE;
extern const int cballoon_FALLOC_FL_KEEP_SIZE;
int cballoon_fallocate(int fd, int mode, int64_t offset, int64_t length);
// Reads one byte of each of `pages` pages from `address` in process `pid`
// (process_vm_readv, 1024 pages a call): the kernel faults each page into
// that process's page tables. Returns the pages read, fewer (0 too) if the
// range runs into unmapped memory; -1 with errno (never EFAULT) if the first
// call fails otherwise (ESRCH, EPERM).
int64_t cballoon_touch_remote_pages(int32_t pid, uint64_t address, uint64_t pages, uint64_t page_size);
// 1 if the peer has shut down its side (POLLRDHUP/POLLHUP/POLLERR) even when
// unread bytes remain, 0 if not, -1 with errno on failure. Never blocks.
int cballoon_peer_closed(int fd);
/* SO_PEERCRED of a connected unix socket: who is at the other end. */
int cballoon_peer_credentials(int fd, int32_t *pid, uint32_t *uid, uint32_t *gid);
/* SO_PEERGROUPS: the peer's supplementary groups at connect time. *count is
   the capacity in, the number (or, on ERANGE, the number needed) out. */
int cballoon_peer_groups(int fd, uint32_t *groups, uint32_t *count);



// Closes every descriptor from `first` on (close_range, or a loop where the
// kernel lacks it): a forked holder keeps only its pipes.
// Drops the executable's relocation table's whole pages from the page tables
// (madvise MADV_DONTNEED; the loader has applied it and nothing reads it
// again). Returns the bytes dropped and their range, 0 when there is nothing
// to drop (no table, or not in a read-only segment), -1 with errno set.
long cballoon_release_relocations(uintptr_t *start, uintptr_t *end);
void cballoon_close_from(int first);
// Empties the calling thread's signal mask (a forked child starts with the
// daemon's, which blocks the signals it reads through signalfd).
void cballoon_unblock_all_signals(void);

// The body of a forked balloon holder (see HolderProcess.swift), in C so the
// child writes almost nothing to the memory it shares copy-on-write with the
// daemon. It waits for "lock LENGTH ADVICE" (advice: 1 advise, 0 forbid,
// 2 leave) on fd 0, maps LENGTH bytes (2 MiB aligned), advises THP,
// MADV_DONTDUMP, mlocks, answers "ok ADDRESS" (or "error TEXT") on fd 1,
// then serves "shrink LENGTH" until fd 0 closes. Never returns.
void cballoon_holder_main(pid_t parent) __attribute__((noreturn));

// One chunk of the balloon, shared by LockedRegion (in the daemon) and the
// holder body: maps `length` bytes of private anonymous memory (2 MiB aligned
// unless advice is 0), advises THP (advice 1 MADV_HUGEPAGE, 0
// MADV_NOHUGEPAGE, 2 nothing), MADV_DONTDUMP, MADV_DONTFORK if `dontfork`,
// writes one byte per page if `touch`, and mlocks. 0 with *out set; -1 with
// errno and *failed naming the call that failed, nothing left mapped.
int cballoon_map_locked(size_t length, int advice, int dontfork, int touch, void **out, const char **failed);

// pipe2 is a GNU extension Glibc's module does not export.
int cballoon_pipe2(int fds[2], int flags);

// sysinfo(2): Swift imports the struct and the function under one name and
// cannot call the function.
int cballoon_sysinfo(struct sysinfo *info);
#endif
