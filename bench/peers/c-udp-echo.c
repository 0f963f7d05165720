/*
 * The naive UDP echo loop every tutorial writes, on epoll: wait, then
 * recvfrom until EAGAIN, sendto each datagram back at once. Two system calls
 * per datagram plus a share of epoll_wait. The bar for echod's UDP path.
 *
 *   cc -O2 -o c-udp-echo c-udp-echo.c && ./c-udp-echo 127.0.0.1 12345
 * Prints "listening on 127.0.0.1:PORT (udp)" on stderr (port 0 resolved).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s HOST PORT\n", argv[0]);
        return 2;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    inet_pton(AF_INET, argv[1], &addr.sin_addr);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        perror("bind");
        return 1;
    }
    socklen_t len = sizeof addr;
    getsockname(fd, (struct sockaddr *)&addr, &len);
    fprintf(stderr, "listening on %s:%d (udp)\n", argv[1], ntohs(addr.sin_port));
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.fd = fd};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    static char buf[65536];
    struct epoll_event events[16];
    while (!stop) {
        int n = epoll_wait(ep, events, 16, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            return 1;
        }
        for (;;) {
            struct sockaddr_storage src;
            socklen_t slen = sizeof src;
            ssize_t got = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&src, &slen);
            if (got < 0) {
                if (errno == EAGAIN) break;
                if (errno == EINTR || errno == ECONNREFUSED) continue;
                break;
            }
            sendto(fd, buf, (size_t)got, 0, (struct sockaddr *)&src, slen);
        }
    }
    return 0;
}
