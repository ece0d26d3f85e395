#define _GNU_SOURCE
/* Bench server: a plain C TLS echo on epoll and OpenSSL (the floor to compare with).
 * cc -O2 -o tls_epoll_echo tls_epoll_echo.c -lssl -lcrypto
 * ./tls_epoll_echo CERT KEY HOST PORT   (prints "listening PORT") */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <signal.h>
#include <unistd.h>

typedef struct {
  int fd;
  SSL *ssl;
  int handshaken;
  unsigned char buf[16384];
  int len; /* bytes waiting to be written */
} conn_t;

static int ep;

static void watch(conn_t *c, unsigned ev) {
  struct epoll_event e = {.events = ev, .data.ptr = c};
  epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
}

static void drop(conn_t *c) {
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
  if (c->handshaken) SSL_shutdown(c->ssl);
  SSL_free(c->ssl);
  close(c->fd);
  free(c);
}

/* Returns 0 to keep the connection, -1 to drop it. */
static int step(conn_t *c) {
  ERR_clear_error();
  if (!c->handshaken) {
    int r = SSL_do_handshake(c->ssl);
    if (r != 1) {
      int e = SSL_get_error(c->ssl, r);
      if (e == SSL_ERROR_WANT_READ) { watch(c, EPOLLIN); return 0; }
      if (e == SSL_ERROR_WANT_WRITE) { watch(c, EPOLLOUT); return 0; }
      return -1;
    }
    c->handshaken = 1;
  }
  for (;;) {
    if (c->len > 0) {
      ERR_clear_error();
      int w = SSL_write(c->ssl, c->buf, c->len);
      if (w <= 0) {
        int e = SSL_get_error(c->ssl, w);
        if (e == SSL_ERROR_WANT_WRITE) { watch(c, EPOLLOUT); return 0; }
        if (e == SSL_ERROR_WANT_READ) { watch(c, EPOLLIN); return 0; }
        return -1;
      }
      c->len = 0;
    }
    ERR_clear_error();
    int r = SSL_read(c->ssl, c->buf, sizeof c->buf);
    if (r <= 0) {
      int e = SSL_get_error(c->ssl, r);
      if (e == SSL_ERROR_WANT_READ) { watch(c, EPOLLIN); return 0; }
      if (e == SSL_ERROR_WANT_WRITE) { watch(c, EPOLLOUT); return 0; }
      return -1;
    }
    c->len = r;
  }
}

int main(int argc, char **argv) {
  if (argc < 5) { fprintf(stderr, "usage: CERT KEY HOST PORT\n"); return 2; }
  signal(SIGPIPE, SIG_IGN);
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  if (SSL_CTX_use_certificate_chain_file(ctx, argv[1]) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx, argv[2], SSL_FILETYPE_PEM) != 1) {
    ERR_print_errors_fp(stderr);
    return 1;
  }
  int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[4]))};
  inet_pton(AF_INET, argv[3], &a.sin_addr);
  if (bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 4096)) { perror("bind"); return 1; }
  socklen_t al = sizeof a;
  getsockname(ls, (struct sockaddr *)&a, &al);
  printf("listening %d\n", ntohs(a.sin_port));
  fflush(stdout);
  ep = epoll_create1(0);
  struct epoll_event e = {.events = EPOLLIN, .data.ptr = NULL};
  epoll_ctl(ep, EPOLL_CTL_ADD, ls, &e);
  struct epoll_event evs[256];
  for (;;) {
    int n = epoll_wait(ep, evs, 256, -1);
    for (int i = 0; i < n; i++) {
      conn_t *c = evs[i].data.ptr;
      if (c == NULL) {
        int fd;
        while ((fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          conn_t *nc = calloc(1, sizeof *nc);
          nc->fd = fd;
          nc->ssl = SSL_new(ctx);
          SSL_set_fd(nc->ssl, fd);
          SSL_set_accept_state(nc->ssl);
          struct epoll_event ce = {.events = EPOLLIN, .data.ptr = nc};
          epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ce);
        }
        continue;
      }
      if (step(c) < 0) drop(c);
    }
  }
}
