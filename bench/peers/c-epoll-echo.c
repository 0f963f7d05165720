/*
 * The bar echod is measured against: a lean C epoll echo server, the classic
 * readiness loop with nothing in it. Edge-triggered, one read buffer, write
 * at once; whatever the socket does not take waits in a per-connection
 * buffer and goes out on EPOLLOUT (so it stays correct under load, like any
 * real server, without costing anything at steady state).
 *
 *   cc -O2 -o c-epoll-echo c-epoll-echo.c && ./c-epoll-echo 127.0.0.1 12345
 * Prints "listening on 127.0.0.1:PORT" on stderr (port 0 resolved).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_EVENTS 1024
#define BUF_SIZE 65536

struct conn {
    int fd;
    char *pending; /* bytes the socket did not take yet */
    size_t len, cap;
};

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

static void close_conn(struct conn *c) {
    close(c->fd);
    free(c->pending);
    free(c);
}

/* Writes what is pending; returns -1 on a fatal error. */
static int flush_pending(struct conn *c) {
    while (c->len > 0) {
        ssize_t n = write(c->fd, c->pending, c->len);
        if (n < 0) return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
        memmove(c->pending, c->pending + n, c->len - (size_t)n);
        c->len -= (size_t)n;
    }
    return 0;
}

static int queue_bytes(struct conn *c, const char *data, size_t n) {
    if (c->len + n > c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 65536;
        while (cap < c->len + n) cap *= 2;
        char *p = realloc(c->pending, cap);
        if (!p) return -1;
        c->pending = p;
        c->cap = cap;
    }
    memcpy(c->pending + c->len, data, n);
    c->len += n;
    return 0;
}

int main(int argc, char **argv) {
    const char *host = argc > 1 ? argv[1] : "127.0.0.1";
    int port = argc > 2 ? atoi(argv[2]) : 12345;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) { rl.rlim_cur = rl.rlim_max; setrlimit(RLIMIT_NOFILE, &rl); }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &addr.sin_addr);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(lfd, 1024) < 0) {
        perror("bind/listen");
        return 1;
    }
    socklen_t alen = sizeof addr;
    getsockname(lfd, (struct sockaddr *)&addr, &alen);
    fprintf(stderr, "listening on %s:%d (tcp)\n", host, ntohs(addr.sin_port));

    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    struct epoll_event events[MAX_EVENTS];
    static char buf[BUF_SIZE];

    while (!stop) {
        int n = epoll_wait(ep, events, MAX_EVENTS, -1);
        if (n < 0) { if (errno == EINTR) continue; perror("epoll_wait"); return 1; }
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (c == NULL) { /* listener */
                for (;;) {
                    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
                    if (fd < 0) break;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct conn *nc = calloc(1, sizeof *nc);
                    nc->fd = fd;
                    struct epoll_event cev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = nc};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
                }
                continue;
            }
            int dead = 0;
            if (events[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) dead = flush_pending(c) < 0;
            if (!dead && (events[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP))) {
                for (;;) {
                    ssize_t r = read(c->fd, buf, BUF_SIZE);
                    if (r == 0) { dead = 1; break; }
                    if (r < 0) { if (errno != EAGAIN && errno != EINTR) dead = 1; break; }
                    size_t off = 0;
                    if (c->len == 0) {
                        ssize_t w = write(c->fd, buf, (size_t)r);
                        if (w < 0 && errno != EAGAIN) { dead = 1; break; }
                        off = w > 0 ? (size_t)w : 0;
                    }
                    if (off < (size_t)r && queue_bytes(c, buf + off, (size_t)r - off) < 0) { dead = 1; break; }
                    if (r < BUF_SIZE) break; /* drained: edge-triggered epoll reports more */
                }
            }
            if (dead) close_conn(c);
        }
    }
    return 0;
}
