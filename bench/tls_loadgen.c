/* A C TLS load generator for bench/tls_bench.ts (OpenSSL, epoll, one thread).
 * cc -O2 -o tls_loadgen tls_loadgen.c -lssl -lcrypto
 *   tls_loadgen pingpong PORT SECONDS CONNS SIZE   -> {"count":N,"seconds":S,"errors":E}
 *   tls_loadgen bulk PORT SECONDS                  -> {"bytes":N,"seconds":S,"errors":E}
 * Handshakes (TLS 1.3, no verification) are made blocking before the clock starts. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
  int fd;
  SSL *ssl;
  long got;   /* bytes of the current echo received */
  long sent;  /* bulk: bytes sent */
} conn_t;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static conn_t *open_conn(SSL_CTX *ctx, int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) return NULL;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  conn_t *c = calloc(1, sizeof *c);
  c->fd = fd;
  c->ssl = SSL_new(ctx);
  SSL_set_fd(c->ssl, fd);
  if (SSL_connect(c->ssl) != 1) return NULL;
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  return c;
}

int main(int argc, char **argv) {
  if (argc < 4) { fprintf(stderr, "usage: pingpong|bulk PORT SECONDS [CONNS SIZE]\n"); return 2; }
  signal(SIGPIPE, SIG_IGN);
  const char *mode = argv[1];
  int port = atoi(argv[2]);
  double seconds = atof(argv[3]);
  int nconns = argc > 4 ? atoi(argv[4]) : 1, size = argc > 5 ? atoi(argv[5]) : 64;
  int bulk = !strcmp(mode, "bulk");
  if (bulk) nconns = 1;
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  int ep = epoll_create1(0);
  conn_t **cs = calloc(nconns, sizeof *cs);
  long errors = 0, count = 0, bytes = 0;
  static unsigned char msg[1 << 16], buf[1 << 16];
  memset(msg, 'a', sizeof msg);
  for (int i = 0; i < nconns; i++) {
    cs[i] = open_conn(ctx, port);
    if (!cs[i]) { fprintf(stderr, "connect/handshake failed\n"); return 1; }
    struct epoll_event e = {.events = EPOLLIN | (bulk ? EPOLLOUT : 0), .data.ptr = cs[i]};
    epoll_ctl(ep, EPOLL_CTL_ADD, cs[i]->fd, &e);
  }
  /* Let session tickets arrive before the clock starts. */
  usleep(100000);
  for (int i = 0; i < nconns; i++) {
    while (SSL_read(cs[i]->ssl, buf, sizeof buf) > 0) {}
    ERR_clear_error();
    if (!bulk && SSL_write(cs[i]->ssl, msg, size) != size) errors++;
  }
  const long WINDOW = 4 << 20;
  double start = now(), end = start + seconds;
  struct epoll_event evs[256];
  while (now() < end) {
    int n = epoll_wait(ep, evs, 256, 50);
    for (int i = 0; i < n; i++) {
      conn_t *c = evs[i].data.ptr;
      if (evs[i].events & EPOLLIN) {
        for (;;) {
          ERR_clear_error();
          int r = SSL_read(c->ssl, buf, sizeof buf);
          if (r <= 0) {
            int e = SSL_get_error(c->ssl, r);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) { errors++; goto out; }
            break;
          }
          if (bulk) { bytes += r; continue; }
          c->got += r;
          if (c->got >= size) {
            c->got -= size;
            count++;
            ERR_clear_error();
            if (SSL_write(c->ssl, msg, size) != size) errors++;
          }
        }
      }
      if (bulk && (evs[i].events & EPOLLOUT)) {
        while (c->sent - bytes < WINDOW) {
          ERR_clear_error();
          int w = SSL_write(c->ssl, msg, sizeof msg);
          if (w <= 0) break;
          c->sent += w;
        }
      }
    }
  }
out:;
  double took = now() - start;
  if (bulk) printf("{\"bytes\":%ld,\"seconds\":%.4f,\"errors\":%ld}\n", bytes, took, errors);
  else printf("{\"count\":%ld,\"seconds\":%.4f,\"errors\":%ld}\n", count, took, errors);
  return 0;
}
