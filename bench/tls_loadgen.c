/* A C TLS load generator for bench/tls_bench.ts (OpenSSL, epoll, one thread).
 * cc -O2 -o tls_loadgen tls_loadgen.c -lssl -lcrypto
 *   tls_loadgen pingpong PORT SECONDS CONNS SIZE   -> {"count":N,"seconds":S,"errors":E}
 *   tls_loadgen bulk PORT SECONDS                  -> {"bytes":N,"seconds":S,"errors":E}
 *   tls_loadgen churn PORT SECONDS CLIENTS         -> {"count":N,"seconds":S,"errors":E}
 *       each client: connect, full handshake, 64 B echoed, close_notify, close; again
 *   tls_loadgen idle PORT N1[,N2...]               -> {"ready":N1} ... one line per count
 *       opens connections (full handshakes, 50 at a time) up to N1, prints, waits for a
 *       line on stdin, goes on to N2, ...; holds them until stdin closes
 *   tls_loadgen info PORT                          -> {"protocol":"TLSv1.3","cipher":"...","group":"..."}
 * Ping-pong and bulk make their handshakes (TLS 1.3, no verification) blocking, before the
 * clock starts, and read ahead; churn and idle make them non-blocking, many at a time. No session is ever
 * resumed: every handshake is a full one. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
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
  long sent;  /* bulk: bytes sent; churn: bytes of the message written */
  int state;  /* churn and idle: 0 handshaking, 1 writing, 2 reading, 3 established */
} conn_t;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static int tcp_connect(int port, int nonblock) {
  int fd = socket(AF_INET, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0), 0), one = 1;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0 && errno != EINPROGRESS) {
    close(fd);
    return -1;
  }
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

static conn_t *open_conn(SSL_CTX *ctx, int port) {
  int fd = tcp_connect(port, 0);
  if (fd < 0) return NULL;
  conn_t *c = calloc(1, sizeof *c);
  c->fd = fd;
  c->ssl = SSL_new(ctx);
  SSL_set_fd(c->ssl, fd);
  if (SSL_connect(c->ssl) != 1) return NULL;
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  return c;
}

/* A non-blocking connection whose handshake the event loop drives. */
static conn_t *start_conn(SSL_CTX *ctx, int ep, int port) {
  int fd = tcp_connect(port, 1);
  if (fd < 0) return NULL;
  conn_t *c = calloc(1, sizeof *c);
  c->fd = fd;
  c->ssl = SSL_new(ctx);
  SSL_set_fd(c->ssl, fd);
  SSL_set_connect_state(c->ssl);
  struct epoll_event e = {.events = EPOLLOUT, .data.ptr = c};
  epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
  return c;
}

static void watch(int ep, conn_t *c, unsigned ev) {
  struct epoll_event e = {.events = ev, .data.ptr = c};
  epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
}

static void drop(int ep, conn_t *c, int polite) {
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
  if (polite) SSL_shutdown(c->ssl);
  SSL_free(c->ssl);
  close(c->fd);
  free(c);
}

/* Retries a failed SSL call on the event it waits for: 0 waiting, -1 failed. */
static int wait_for(int ep, conn_t *c, int r) {
  int e = SSL_get_error(c->ssl, r);
  if (e == SSL_ERROR_WANT_READ) { watch(ep, c, EPOLLIN); return 0; }
  if (e == SSL_ERROR_WANT_WRITE) { watch(ep, c, EPOLLOUT); return 0; }
  return -1;
}

static const unsigned char MSG[64] = "churn-churn-churn-churn-churn-churn-churn-churn-churn-churn-chu";

/* Churn and idle: one step of `c`'s life. Returns 1 when a churn cycle finished (c is gone),
 * 0 to go on, -1 on failure (c is gone). */
static int step(int ep, conn_t *c, int churn) {
  unsigned char buf[4096];
  ERR_clear_error();
  if (c->state == 0) {
    int r = SSL_do_handshake(c->ssl);
    if (r != 1) {
      if (wait_for(ep, c, r) == 0) return 0;
      drop(ep, c, 0);
      return -1;
    }
    c->state = churn ? 1 : 3;
    if (!churn) { watch(ep, c, EPOLLIN); return 0; }
  }
  if (c->state == 1) {
    int w = SSL_write(c->ssl, MSG, sizeof MSG);
    if (w <= 0) {
      if (wait_for(ep, c, w) == 0) return 0;
      drop(ep, c, 0);
      return -1;
    }
    c->state = 2;
  }
  for (;;) { /* states 2 and 3: read the echo, or the session tickets of an idle connection */
    int r = SSL_read(c->ssl, buf, sizeof buf);
    if (r > 0) {
      if (c->state == 2 && (c->got += r) >= (long)sizeof MSG) {
        drop(ep, c, 1);
        return 1;
      }
      continue;
    }
    if (wait_for(ep, c, r) == 0) return 0;
    drop(ep, c, 0);
    return -1;
  }
}

/* Runs churn clients for `seconds`, or opens idle connections up to each count of `targets`. */
static int run_many(SSL_CTX *ctx, int port, int churn, double seconds, int clients, char *targets) {
  int ep = epoll_create1(0);
  struct epoll_event evs[256];
  long count = 0, errors = 0, open = 0, inflight = 0;
  double start = now(), end = start + seconds;
  char *next = targets;
  long target = churn ? 0 : strtol(next, &next, 10);
  for (;;) {
    /* Keep `clients` connections starting (churn: always; idle: until the target is reached). */
    while (churn ? inflight < clients : (inflight < clients && open + inflight < target)) {
      if (!start_conn(ctx, ep, port)) { errors++; break; }
      inflight++;
    }
    if (churn && now() >= end) break;
    if (!churn && inflight == 0) {
      /* Target reached: let the last session tickets arrive, report, wait for the go-ahead. */
      double settle = now() + 0.3;
      while (now() < settle) {
        int n = epoll_wait(ep, evs, 256, 20);
        for (int i = 0; i < n; i++) if (step(ep, evs[i].data.ptr, 0) < 0) { errors++; open--; }
      }
      printf("{\"ready\":%ld,\"errors\":%ld}\n", open, errors);
      fflush(stdout);
      char line[64];
      if (!fgets(line, sizeof line, stdin)) break;
      if (*next != ',') { /* no more counts: hold until stdin closes */
        while (fgets(line, sizeof line, stdin)) {}
        break;
      }
      target = strtol(next + 1, &next, 10);
      continue;
    }
    int n = epoll_wait(ep, evs, 256, 50);
    for (int i = 0; i < n; i++) {
      conn_t *c = evs[i].data.ptr;
      int was_handshaking = c->state == 0;
      int r = step(ep, c, churn);
      if (churn) {
        if (r != 0) { inflight--; if (r > 0) count++; else errors++; }
      } else if (r < 0) {
        errors++;
        if (was_handshaking) inflight--; else open--;
      } else if (was_handshaking && c->state == 3) {
        inflight--;
        open++;
      }
    }
  }
  if (churn) printf("{\"count\":%ld,\"seconds\":%.4f,\"errors\":%ld}\n", count, now() - start, errors);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: pingpong|bulk|churn|idle|info PORT ...\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  const char *mode = argv[1];
  int port = atoi(argv[2]);
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (!strcmp(mode, "info")) {
    conn_t *c = open_conn(ctx, port);
    if (!c) { fprintf(stderr, "connect/handshake failed\n"); return 1; }
    int group = SSL_get_negotiated_group(c->ssl);
    printf("{\"protocol\":\"%s\",\"cipher\":\"%s\",\"group\":\"%s\"}\n",
           SSL_get_version(c->ssl), SSL_CIPHER_get_name(SSL_get_current_cipher(c->ssl)),
           OBJ_nid2sn(group & ~TLSEXT_nid_unknown));
    return 0;
  }
  if (!strcmp(mode, "churn")) {
    if (argc < 5) return 2;
    return run_many(ctx, port, 1, atof(argv[3]), atoi(argv[4]), NULL);
  }
  if (!strcmp(mode, "idle")) {
    if (argc < 4) return 2;
    return run_many(ctx, port, 0, 0, 50, argv[3]);
  }
  if (argc < 4) return 2;
  double seconds = atof(argv[3]);
  int nconns = argc > 4 ? atoi(argv[4]) : 1, size = argc > 5 ? atoi(argv[5]) : 64;
  int bulk = !strcmp(mode, "bulk");
  if (bulk) nconns = 1;
  /* Read ahead (one recv for what has arrived, four records' room): the client must cost less
   * per round trip and per MB than the servers it measures. */
  SSL_CTX_set_read_ahead(ctx, 1);
  SSL_CTX_set_default_read_buffer_len(ctx, 4 * (16384 + 256) + 512);
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
          /* Nothing more read ahead: the next echo is in the kernel, which epoll reports. */
          if (!SSL_has_pending(c->ssl)) break;
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
