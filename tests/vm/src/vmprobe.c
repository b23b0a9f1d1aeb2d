// SPDX-License-Identifier: Apache-2.0
/* vmprobe: a small static test program for the balloond test guest.
 *
 *   vmprobe port-echo PATH LINE [TIMEOUT_S]
 *       open the virtio-serial port PATH, write LINE + "\n", read one line and print it.
 *       read() returns 0 at once while no host is connected (docs/architecture.md, "virtio-serial without spinning"): poll with a
 *       short sleep instead of spinning, until TIMEOUT_S (default 10).
 *   vmprobe vsock-loopback [PORT]
 *       listen on vsock VMADDR_CID_ANY:PORT (default 5000), connect to CID 1 (local,
 *       vsock_loopback) on the same port, send a line both ways; prints the local CID.
 *   vmprobe pagemap
 *       touch one anonymous page and print its /proc/self/pagemap entry (present bit,
 *       PFN; the PFN reads 0 without CAP_SYS_ADMIN).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <linux/vm_sockets.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int port_echo(const char *path, const char *line, double timeout) {
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) { fprintf(stderr, "open %s: %s\n", path, strerror(errno)); return 1; }
    size_t n = strlen(line);
    char *msg = malloc(n + 2);
    memcpy(msg, line, n); msg[n] = '\n'; msg[n + 1] = 0;
    /* A blocking write waits until a host is connected. */
    for (size_t off = 0; off < n + 1;) {
        ssize_t w = write(fd, msg + off, n + 1 - off);
        if (w < 0) {
            if (errno == EINTR) continue;
            fprintf(stderr, "write: %s\n", strerror(errno)); return 1;
        }
        off += (size_t)w;
    }
    char buf[4096];
    size_t len = 0;
    double deadline = now() + timeout;
    while (len < sizeof buf - 1) {
        ssize_t r = read(fd, buf + len, 1);
        if (r == 1) {
            if (buf[len] == '\n') break;
            len++;
            continue;
        }
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) { fprintf(stderr, "read: %s\n", strerror(errno)); return 1; }
        if (now() > deadline) { fprintf(stderr, "read: no line within %.0fs\n", timeout); return 1; }
        usleep(20000); /* r == 0: no host connected */
    }
    buf[len] = 0;
    printf("%s\n", buf);
    close(fd);
    return 0;
}

static int pagemap(void) {
    long ps = sysconf(_SC_PAGESIZE);
    volatile char *p = mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) { perror("mmap"); return 1; }
    p[0] = 1;
    int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (fd < 0) { fprintf(stderr, "open pagemap: %s\n", strerror(errno)); return 1; }
    uint64_t e;
    off_t off = (off_t)((uintptr_t)p / ps) * 8;
    if (pread(fd, &e, 8, off) != 8) { fprintf(stderr, "pread pagemap: %s\n", strerror(errno)); return 1; }
    printf("pagemap entry=0x%016llx present=%d pfn=0x%llx\n", (unsigned long long)e,
           (int)(e >> 63), (unsigned long long)(e & ((1ULL << 55) - 1)));
    return (e >> 63) ? 0 : 1;
}

static int vsock_loopback(unsigned port) {
    int l = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l < 0) { fprintf(stderr, "socket(AF_VSOCK): %s\n", strerror(errno)); return 1; }
    unsigned cid = 0;
    int dev = open("/dev/vsock", O_RDONLY | O_CLOEXEC);
    if (dev >= 0) { ioctl(dev, IOCTL_VM_SOCKETS_GET_LOCAL_CID, &cid); close(dev); }
    struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_port = port, .svm_cid = VMADDR_CID_ANY };
    if (bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 1) < 0) {
        fprintf(stderr, "bind/listen: %s\n", strerror(errno)); return 1;
    }
    int c = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_vm to = { .svm_family = AF_VSOCK, .svm_port = port, .svm_cid = VMADDR_CID_LOCAL };
    if (connect(c, (struct sockaddr *)&to, sizeof to) < 0) {
        fprintf(stderr, "connect(cid 1, port %u): %s\n", port, strerror(errno)); return 1;
    }
    struct sockaddr_vm peer; socklen_t pl = sizeof peer;
    int s = accept4(l, (struct sockaddr *)&peer, &pl, SOCK_CLOEXEC);
    if (s < 0) { fprintf(stderr, "accept: %s\n", strerror(errno)); return 1; }
    char buf[64] = {0};
    if (write(c, "ping\n", 5) != 5 || read(s, buf, sizeof buf - 1) != 5) { perror("ping"); return 1; }
    if (write(s, "pong\n", 5) != 5 || read(c, buf, sizeof buf - 1) != 5) { perror("pong"); return 1; }
    printf("vsock loopback ok: local cid %u, peer cid %u port %u, reply %s", cid, peer.svm_cid,
           peer.svm_port, buf);
    return strcmp(buf, "pong\n") == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc >= 4 && strcmp(argv[1], "port-echo") == 0)
        return port_echo(argv[2], argv[3], argc >= 5 ? atof(argv[4]) : 10.0);
    if (argc >= 2 && strcmp(argv[1], "vsock-loopback") == 0)
        return vsock_loopback(argc >= 3 ? (unsigned)atoi(argv[2]) : 5000);
    if (argc == 2 && strcmp(argv[1], "pagemap") == 0)
        return pagemap();
    fprintf(stderr, "usage: vmprobe port-echo PATH LINE [TIMEOUT_S] | vmprobe vsock-loopback [PORT] |"
                    " vmprobe pagemap\n");
    return 2;
}
