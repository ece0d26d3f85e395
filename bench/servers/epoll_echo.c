/*
 * The reference: a plain level-triggered epoll echo server in C, as a C
 * programmer would write it without tricks. One thread; per read event one
 * read(2) of up to 64 KiB and one write(2) of what came in; whatever the
 * socket does not take waits in a per-connection buffer, and the connection
 * stops reading until it is sent.
 *
 *   epoll_echo [host] [port]     prints "LISTENING <port>" once listening
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

#define BUF 65536

typedef struct {
  char *pending;
  size_t len, off;
} conn_t;

static conn_t *conns;
static size_t nconns;
static int ep;

static conn_t *conn_of(int fd) {
  if ((size_t)fd >= nconns) {
    size_t n = nconns ? nconns : 1024;
    while (n <= (size_t)fd) n *= 2;
    conns = realloc(conns, n * sizeof *conns);
    memset(conns + nconns, 0, (n - nconns) * sizeof *conns);
    nconns = n;
  }
  return &conns[fd];
}

static void drop(int fd) {
  conn_t *c = conn_of(fd);
  free(c->pending);
  c->pending = NULL;
  c->len = c->off = 0;
  close(fd); /* also removes it from the epoll set */
}

static void want(int fd, unsigned events) {
  struct epoll_event ev = {.events = events, .data.fd = fd};
  epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
}

int main(int argc, char **argv) {
  const char *host = argc > 1 ? argv[1] : "127.0.0.1";
  int port = argc > 2 ? atoi(argv[2]) : 0;
  signal(SIGPIPE, SIG_IGN);
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
    fprintf(stderr, "epoll_echo: host must be an IPv4 literal\n");
    return 2;
  }
  if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 1024) < 0) {
    perror("epoll_echo: bind/listen");
    return 1;
  }
  socklen_t sl = sizeof sa;
  getsockname(lfd, (struct sockaddr *)&sa, &sl);
  printf("LISTENING %d\n", ntohs(sa.sin_port));
  fflush(stdout);

  ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  static char buf[BUF];
  struct epoll_event evs[1024];
  for (;;) {
    int n = epoll_wait(ep, evs, 1024, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("epoll_wait");
      return 1;
    }
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      unsigned e = evs[i].events;
      if (fd == lfd) {
        for (;;) {
          int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (cfd < 0) break; /* EAGAIN, or out of fds: retried on the next event */
          setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          conn_of(cfd);
          struct epoll_event cev = {.events = EPOLLIN, .data.fd = cfd};
          epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &cev);
        }
        continue;
      }
      conn_t *c = conn_of(fd);
      if (c->pending) {
        /* Waiting for EPOLLOUT to send the rest. */
        if (!(e & (EPOLLOUT | EPOLLERR | EPOLLHUP))) continue;
        ssize_t w = write(fd, c->pending + c->off, c->len - c->off);
        if (w < 0) {
          if (errno != EAGAIN && errno != EINTR) drop(fd);
          continue;
        }
        c->off += (size_t)w;
        if (c->off == c->len) {
          free(c->pending);
          c->pending = NULL;
          c->len = c->off = 0;
          want(fd, EPOLLIN);
        }
        continue;
      }
      ssize_t r = read(fd, buf, BUF);
      if (r <= 0) {
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        drop(fd);
        continue;
      }
      ssize_t w = write(fd, buf, (size_t)r);
      if (w < 0) {
        if (errno != EAGAIN && errno != EINTR) {
          drop(fd);
          continue;
        }
        w = 0;
      }
      if (w < r) {
        c->len = (size_t)(r - w);
        c->off = 0;
        c->pending = malloc(c->len);
        memcpy(c->pending, buf + w, c->len);
        want(fd, EPOLLOUT);
      }
    }
  }
}
