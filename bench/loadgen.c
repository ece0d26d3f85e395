/*
 * loadgen: the load generator of `deno task bench` (bench/main.ts compiles it
 * into bench/out/loadgen). One thread, epoll, non-blocking sockets.
 *
 *   loadgen --port P [--host 127.0.0.1] [--server-pid PID] --mode MODE [options]
 *
 * Modes:
 *   pingpong  --conns N ping-pong connections, each sending a --size byte
 *             message and waiting for all of it to come back before the next
 *             one; --idle K more connections that only connect. Measures round
 *             trips, latency (p50/p99), per-connection counts (Jain fairness).
 *   bulk      one connection streaming in both directions with at most
 *             --window bytes outstanding; measures MB/s. One read in
 *             --verify-every (default 8) is checked byte for byte; the
 *             others are discarded in the kernel (MSG_TRUNC) to keep the
 *             load generator cheaper per byte than the servers.
 *   soak      like pingpong but message sizes vary from --min-size to
 *             --max-size (log-uniform); after --duration it stops sending,
 *             waits for every message to come back, closes everything and
 *             checks that the server's fd count returns to where it started.
 *   hold      connects --idle connections, prints "CONNECTED" and keeps them
 *             until stdin closes (used by bench/conn_cost.ts).
 *   churn     --conns N clients, each in a loop: connect (non-blocking, each
 *             connection from its own source address in 127.0.0.0/8, so
 *             TIME_WAIT never runs out of ports), send one --size message,
 *             wait for its echo, close. Measures connections per second and
 *             the latency from connect() to the last echoed byte.
 *   burst     opens --conns connections at once (a tight loop of non-blocking
 *             connects), sends one --size message on each as it connects,
 *             and waits (up to --duration s) until every one is echoed.
 *             Prints the time until all were done, the latency quantiles
 *             (from the first connect) and how many took longer than 0.9 s
 *             (a dropped SYN is retransmitted after 1 s).
 *   sink      opens --conns connections at once and reads each until the
 *             server closes it (discarding in the kernel, MSG_TRUNC); checks
 *             that each got --expect bytes; measures MB/s over all of them
 *             from the first connect to the last end of stream.
 *   udp       a UDP echo: --conns connected UDP sockets, each keeping
 *             --outstanding datagrams of --size bytes in flight (sent and
 *             received with sendmmsg/recvmmsg, so the load generator costs
 *             less per packet than the servers); every echo is checked byte
 *             for byte, and each one answered sends the next. A socket that
 *             hears nothing for --udp-timeout seconds gives its outstanding
 *             datagrams up for lost ("lost"; UDP may drop them) and sends a
 *             new window; an echo that comes after that counts as "late".
 *             "ops" are datagrams echoed: ops_per_s is packets per second.
 *
 * Tuning knobs (not used by bench/main.ts): --spin 1 polls epoll without
 * sleeping; --sockbuf B fixes SO_SNDBUF/SO_RCVBUF of the bulk connection.
 *
 * Every echoed byte is compared with what was sent: message bytes are a
 * function of (connection id, sequence number, offset), and the first 8 bytes
 * of a message carry the connection id and the sequence number.
 *
 * With --server-pid, the server's CPU time (utime+stime from /proc/PID/stat)
 * is read at the start and the end of the measured window, and its VmRSS,
 * VmHWM and fd count are reported. Connecting is throttled so that at most
 * 100 connections wait in the server's accept queue (fd count of the
 * server), and measuring starts only once the server holds all connections.
 *
 * Prints one JSON object on stdout.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define CHUNK 65536
#define BULK_CHUNK (256 * 1024)
#define MAX_EVENTS 1024
#define MAX_BACKLOG 100

/* ---- options ---- */

static const char *opt_host = "127.0.0.1";
static int opt_port = 0;
static int opt_pid = 0;
static const char *opt_mode = "pingpong";
static int opt_conns = 1;
static int opt_idle = 0;
static uint32_t opt_size = 64;
static uint32_t opt_min_size = 64;
static uint32_t opt_max_size = 65536;
static double opt_warmup = 0.5;
static double opt_duration = 3.0;
static uint64_t opt_window = 4u << 20;
static double opt_connect_timeout = 60.0;
static uint64_t opt_seed = 0x9e3779b97f4a7c15ull;
static int opt_spin = 0;
static int opt_sockbuf = 0;
static int opt_verify_every = 8;
static int opt_outstanding = 16;
static double opt_udp_timeout = 0.5;

/* ---- time, errors ---- */

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "loadgen: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  exit(2);
}

static uint64_t errors = 0;
static uint64_t udp_lost = 0, udp_late = 0;
static char error_detail[5][160];
static int n_error_detail = 0;

static void record_error(const char *fmt, ...) {
  errors++;
  if (n_error_detail < 5) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error_detail[n_error_detail++], sizeof error_detail[0], fmt, ap);
    va_end(ap);
  }
}

/* ---- /proc of the server ---- */

static long clk_tck = 100;

/* utime + stime of the whole process, in clock ticks; -1 if unreadable. *user gets utime. */
static long long proc_cpu_ticks(int pid, long long *user) {
  *user = -1;
  if (pid <= 0) return -1;
  char path[64], buf[4096];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char *p = strrchr(buf, ')');
  if (!p) return -1;
  p += 2; /* field 3 (state) */
  unsigned long long ut = 0, st = 0;
  int field = 3;
  char *save = NULL;
  for (char *tok = strtok_r(p, " ", &save); tok; tok = strtok_r(NULL, " ", &save), field++) {
    if (field == 14) ut = strtoull(tok, NULL, 10);
    if (field == 15) {
      st = strtoull(tok, NULL, 10);
      break;
    }
  }
  *user = (long long)ut;
  return (long long)(ut + st);
}

/* A "VmXXX:" value of /proc/PID/status in KiB; -1 if unreadable. */
static long proc_status_kb(int pid, const char *key) {
  if (pid <= 0) return -1;
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  long v = -1;
  size_t klen = strlen(key);
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
      v = strtol(line + klen + 1, NULL, 10);
      break;
    }
  }
  fclose(f);
  return v;
}

static int proc_fd_count(int pid) {
  if (pid <= 0) return -1;
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/fd", pid);
  DIR *d = opendir(path);
  if (!d) return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] != '.') n++;
  }
  closedir(d);
  return n;
}

/* ---- message content ---- */

static inline uint8_t msg_byte(uint32_t id, uint32_t seq, uint32_t j) {
  if (j < 4) return (uint8_t)(id >> (8 * j));
  if (j < 8) return (uint8_t)(seq >> (8 * (j - 4)));
  return (uint8_t)((id * 31u + seq * 17u + j) % 251u);
}

static void msg_fill(uint8_t *buf, uint32_t id, uint32_t seq, uint32_t off, uint32_t len) {
  uint32_t j = off, end = off + len;
  for (; j < end && j < 8; j++) *buf++ = msg_byte(id, seq, j);
  if (j >= end) return;
  uint32_t v = (id * 31u + seq * 17u + j) % 251u;
  for (; j < end; j++) {
    *buf++ = (uint8_t)v;
    if (++v == 251u) v = 0;
  }
}

/* Index of the first wrong byte, or -1. */
static long msg_check(const uint8_t *buf, uint32_t id, uint32_t seq, uint32_t off, uint32_t len) {
  uint32_t j = off, end = off + len;
  const uint8_t *p = buf;
  for (; j < end && j < 8; j++, p++) {
    if (*p != msg_byte(id, seq, j)) return (long)(p - buf);
  }
  if (j >= end) return -1;
  uint32_t v = (id * 31u + seq * 17u + j) % 251u;
  for (; j < end; j++, p++) {
    if (*p != (uint8_t)v) return (long)(p - buf);
    if (++v == 251u) v = 0;
  }
  return -1;
}

static uint64_t rng_state;
static uint64_t rng_next(void) {
  uint64_t x = rng_state;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return rng_state = x;
}

/* Log-uniform in [lo, hi]. */
static uint32_t pick_size(void) {
  if (opt_min_size >= opt_max_size) return opt_min_size;
  double u = (double)(rng_next() >> 11) / 9007199254740992.0;
  double lo = (double)opt_min_size, hi = (double)opt_max_size;
  uint32_t s = (uint32_t)(lo * exp(u * log(hi / lo)));
  if (s < opt_min_size) s = opt_min_size;
  if (s > opt_max_size) s = opt_max_size;
  return s;
}

/* ---- latency histogram: 100 ns buckets up to 100 ms, then 100 us up to 100 s ---- */

#define FINE_N 1000000u
#define COARSE_N 1000000u
static uint32_t *hist;
static uint64_t hist_count = 0, hist_max_ns = 0;

static void hist_add(uint64_t ns) {
  uint64_t b = ns / 100;
  if (b < FINE_N) {
    hist[b]++;
  } else {
    uint64_t c = ns / 100000;
    if (c >= COARSE_N) c = COARSE_N - 1;
    hist[FINE_N + c]++;
  }
  hist_count++;
  if (ns > hist_max_ns) hist_max_ns = ns;
}

static void hist_reset(void) {
  memset(hist, 0, sizeof(uint32_t) * (FINE_N + COARSE_N));
  hist_count = 0;
  hist_max_ns = 0;
}

/* The latency (us) below which a fraction q of samples lie. */
static double hist_quantile(double q) {
  if (hist_count == 0) return 0;
  uint64_t want = (uint64_t)(q * (double)hist_count);
  if (want >= hist_count) want = hist_count - 1;
  uint64_t seen = 0;
  for (uint32_t i = 0; i < FINE_N + COARSE_N; i++) {
    seen += hist[i];
    if (seen > want) {
      if (i < FINE_N) return (i + 0.5) * 0.1;
      return (i - FINE_N + 0.5) * 100.0;
    }
  }
  return hist_max_ns / 1000.0;
}

/* ---- connections ---- */

typedef struct {
  int fd;
  uint32_t id;
  uint32_t seq;
  uint32_t size; /* current message */
  uint32_t sent;
  uint32_t got;
  uint64_t t_start;
  uint64_t count; /* round trips in the measured window */
  uint64_t total; /* all round trips */
  uint64_t bytes_echoed;
  int want_out;
  int busy; /* a message is outstanding */
  int dead;
} conn_t;

static int ep = -1;
static uint8_t scratch[CHUNK];
static int measuring = 0, stopping = 0;
static uint64_t win_ops = 0, win_bytes = 0;

static void raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

static int connect_one(struct sockaddr_in *sa) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket: %s (raise the fd limit)", strerror(errno));
  for (int tries = 0;; tries++) {
    if (connect(fd, (struct sockaddr *)sa, sizeof *sa) == 0) break;
    if (errno == EINTR) continue;
    if ((errno == ECONNREFUSED || errno == EAGAIN) && tries < 50) {
      usleep(20000);
      close(fd);
      fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd < 0) die("socket: %s", strerror(errno));
      continue;
    }
    die("connect to %s:%d: %s", opt_host, opt_port, strerror(errno));
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

static void set_events(conn_t *c, int out) {
  if (c->want_out == out) return;
  struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};
  if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl: %s", strerror(errno));
  c->want_out = out;
}

static void kill_conn(conn_t *c) {
  if (c->dead) return;
  c->dead = 1;
  c->busy = 0;
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
}

/* Writes as much of the current message as the socket takes. */
static void send_more(conn_t *c) {
  while (c->sent < c->size) {
    uint32_t len = c->size - c->sent;
    if (len > CHUNK) len = CHUNK;
    msg_fill(scratch, c->id, c->seq, c->sent, len);
    ssize_t w = send(c->fd, scratch, len, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        set_events(c, 1);
        return;
      }
      record_error("conn %u: send: %s", c->id, strerror(errno));
      kill_conn(c);
      return;
    }
    c->sent += (uint32_t)w;
    if ((uint32_t)w < len) {
      set_events(c, 1);
      return;
    }
  }
  set_events(c, 0);
}

static void start_message(conn_t *c, int soak) {
  c->seq++;
  c->size = soak ? pick_size() : opt_size;
  c->sent = 0;
  c->got = 0;
  c->busy = 1;
  c->t_start = now_ns();
  send_more(c);
}

static void on_readable(conn_t *c, int soak) {
  uint32_t want = c->size - c->got;
  if (want == 0) {
    /* Nothing outstanding: anything arriving is an error (or EOF). */
    ssize_t r = recv(c->fd, scratch, sizeof scratch, 0);
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
      record_error("conn %u: closed by the server while idle", c->id);
      kill_conn(c);
    } else if (r > 0) {
      record_error("conn %u: %zd unexpected bytes", c->id, r);
      kill_conn(c);
    }
    return;
  }
  if (want > CHUNK) want = CHUNK;
  ssize_t r = recv(c->fd, scratch, want, 0);
  if (r < 0) {
    if (errno == EAGAIN || errno == EINTR) return;
    record_error("conn %u: recv: %s", c->id, strerror(errno));
    kill_conn(c);
    return;
  }
  if (r == 0) {
    record_error("conn %u: server closed the connection mid-message (%u of %u bytes back)", c->id,
                 c->got, c->size);
    kill_conn(c);
    return;
  }
  long bad = msg_check(scratch, c->id, c->seq, c->got, (uint32_t)r);
  if (bad >= 0) {
    record_error("conn %u seq %u: wrong byte at offset %ld of a %u-byte message", c->id, c->seq,
                 (long)c->got + bad, c->size);
    kill_conn(c);
    return;
  }
  c->got += (uint32_t)r;
  c->bytes_echoed += (uint64_t)r;
  if (measuring) win_bytes += (uint64_t)r;
  if (c->got < c->size) return;
  /* A round trip. */
  uint64_t t = now_ns();
  c->total++;
  c->busy = 0;
  if (measuring) {
    c->count++;
    win_ops++;
    hist_add(t - c->t_start);
  }
  if (!stopping) start_message(c, soak);
}

/* ---- the phases ---- */

static double cpu_seconds_self(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
         ru.ru_stime.tv_usec / 1e6;
}

#define MAX_CPUS 64
typedef struct {
  uint64_t t;
  long long srv_ticks, srv_user;
  double self_cpu;
  int ncpu;
  unsigned long long busy[MAX_CPUS], total[MAX_CPUS];
} mark_t;

/* Busy and total ticks of every CPU, from /proc/stat. */
static void read_cpu_ticks(mark_t *m) {
  m->ncpu = 0;
  FILE *f = fopen("/proc/stat", "r");
  if (!f) return;
  char line[512];
  while (fgets(line, sizeof line, f)) {
    int cpu;
    unsigned long long v[10] = {0};
    if (strncmp(line, "cpu", 3) != 0 || line[3] < '0' || line[3] > '9') continue;
    int got = sscanf(line, "cpu%d %llu %llu %llu %llu %llu %llu %llu %llu", &cpu, &v[0], &v[1],
                     &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);
    if (got < 5 || cpu < 0 || cpu >= MAX_CPUS) continue;
    unsigned long long total = 0;
    for (int i = 0; i < 8; i++) total += v[i];
    m->busy[cpu] = total - v[3] - v[4]; /* all but idle and iowait */
    m->total[cpu] = total;
    if (cpu + 1 > m->ncpu) m->ncpu = cpu + 1;
  }
  fclose(f);
}

static mark_t take_mark(void) {
  mark_t m;
  read_cpu_ticks(&m);
  m.srv_ticks = proc_cpu_ticks(opt_pid, &m.srv_user);
  m.self_cpu = cpu_seconds_self();
  m.t = now_ns();
  return m;
}

static int fds_before = -1, fds_connected = -1, fds_after = -1;
static long rss_connected_kb = -1;
static double connect_seconds = 0;

/* Connects `n` sockets, throttled by the server's accept progress. */
static int *connect_all(int n, struct sockaddr_in *sa) {
  int *fds = calloc((size_t)(n > 0 ? n : 1), sizeof(int));
  uint64_t t0 = now_ns();
  fds_before = proc_fd_count(opt_pid);
  for (int i = 0; i < n; i++) {
    if (opt_pid > 0 && fds_before >= 0 && i > 0 && i % 32 == 0) {
      uint64_t last_progress = now_ns();
      int last = -1;
      for (;;) {
        int have = proc_fd_count(opt_pid) - fds_before;
        if (have >= i - MAX_BACKLOG) break;
        if (have != last) {
          last = have;
          last_progress = now_ns();
        }
        if ((now_ns() - last_progress) / 1e9 > opt_connect_timeout) {
          die("server accepted %d of %d connections and stopped making progress", have, i);
        }
        usleep(500);
      }
    }
    fds[i] = connect_one(sa);
  }
  /* Wait until the server holds them all. */
  if (opt_pid > 0 && fds_before >= 0) {
    uint64_t last_progress = now_ns();
    int last = -1;
    for (;;) {
      int have = proc_fd_count(opt_pid) - fds_before;
      if (have >= n) break;
      if (have != last) {
        last = have;
        last_progress = now_ns();
      }
      if ((now_ns() - last_progress) / 1e9 > 5.0 && have >= n - 4) break; /* lazily closed fds */
      if ((now_ns() - last_progress) / 1e9 > opt_connect_timeout) {
        die("server accepted %d of %d connections and stopped making progress", have, n);
      }
      usleep(1000);
    }
    fds_connected = proc_fd_count(opt_pid);
    rss_connected_kb = proc_status_kb(opt_pid, "VmRSS");
  }
  connect_seconds = (now_ns() - t0) / 1e9;
  return fds;
}

static void print_json(const char *mode, conn_t *conns, int nconns, mark_t a, mark_t b,
                       uint64_t bytes_sent_win, uint64_t bytes_recv_win, int drained) {
  double secs = (b.t - a.t) / 1e9;
  long long ticks = (a.srv_ticks >= 0 && b.srv_ticks >= 0) ? b.srv_ticks - a.srv_ticks : -1;
  double srv_cpu_s = ticks >= 0 ? (double)ticks / (double)clk_tck : -1;
  double srv_user_s = ticks >= 0 ? (double)(b.srv_user - a.srv_user) / (double)clk_tck : -1;
  double sum = 0, sum2 = 0;
  uint64_t total_bytes = 0;
  for (int i = 0; i < nconns; i++) {
    double x = (double)conns[i].count;
    sum += x;
    sum2 += x * x;
    total_bytes += conns[i].bytes_echoed;
  }
  double jain = (nconns > 0 && sum2 > 0) ? (sum * sum) / (nconns * sum2) : 0;
  printf("{\"mode\":\"%s\",\"conns\":%d,\"idle\":%d,\"connect_s\":%.3f,\"window_s\":%.4f,", mode,
         opt_conns, opt_idle, connect_seconds, secs);
  printf("\"ops\":%llu,\"ops_per_s\":%.1f,", (unsigned long long)win_ops, win_ops / secs);
  printf("\"bytes_sent\":%llu,\"bytes_recv\":%llu,\"tx_mb_per_s\":%.2f,\"rx_mb_per_s\":%.2f,",
         (unsigned long long)bytes_sent_win, (unsigned long long)bytes_recv_win,
         bytes_sent_win / secs / 1e6, bytes_recv_win / secs / 1e6);
  printf("\"bytes_echoed_total\":%llu,", (unsigned long long)total_bytes);
  printf("\"p50_us\":%.1f,\"p99_us\":%.1f,\"max_us\":%.1f,", hist_quantile(0.5),
         hist_quantile(0.99), hist_max_ns / 1000.0);
  printf("\"lost\":%llu,\"late\":%llu,", (unsigned long long)udp_lost,
         (unsigned long long)udp_late);
  printf("\"jain\":%.5f,\"errors\":%llu,\"error_detail\":[", jain, (unsigned long long)errors);
  for (int i = 0; i < n_error_detail; i++) {
    printf("%s\"", i ? "," : "");
    for (const char *p = error_detail[i]; *p; p++) {
      if (*p == '"' || *p == '\\') putchar('\\');
      putchar(*p);
    }
    putchar('"');
  }
  printf("],\"drained\":%s,", drained ? "true" : "false");
  printf("\"server\":{\"pid\":%d,\"cpu_ticks\":%lld,\"clk_tck\":%ld,\"cpu_s\":%.3f,\"user_s\":%.3f,"
         "\"cpu_pct\":%.1f,",
         opt_pid, ticks, clk_tck, srv_cpu_s, srv_user_s, srv_cpu_s >= 0 ? 100 * srv_cpu_s / secs : -1);
  printf("\"vm_rss_connected_kb\":%ld,\"vm_rss_end_kb\":%ld,\"vm_hwm_kb\":%ld,", rss_connected_kb,
         proc_status_kb(opt_pid, "VmRSS"), proc_status_kb(opt_pid, "VmHWM"));
  printf("\"fds_before\":%d,\"fds_connected\":%d,\"fds_after\":%d},", fds_before, fds_connected,
         fds_after);
  printf("\"loadgen\":{\"cpu_s\":%.3f,\"cpu_pct\":%.1f},", b.self_cpu - a.self_cpu,
         100 * (b.self_cpu - a.self_cpu) / secs);
  /* CPU time on this machine used by neither the server nor the load generator
     (other processes, unaccounted kernel work), in % of one CPU. */
  double all_busy = 0;
  for (int i = 0; i < a.ncpu && i < b.ncpu; i++) all_busy += (double)(b.busy[i] - a.busy[i]);
  all_busy /= 100.0; /* /proc/stat counts USER_HZ = 100 ticks per second */
  double other = all_busy - (srv_cpu_s > 0 ? srv_cpu_s : 0) - (b.self_cpu - a.self_cpu);
  printf("\"other_cpu_pct\":%.1f,", other > 0 ? 100 * other / secs : 0.0);
  printf("\"cpu_busy_pct\":[");
  for (int i = 0; i < a.ncpu && i < b.ncpu; i++) {
    unsigned long long dt = b.total[i] - a.total[i];
    printf("%s%.1f", i ? "," : "", dt ? 100.0 * (double)(b.busy[i] - a.busy[i]) / (double)dt : -1.0);
  }
  printf("],");
  printf("\"per_conn\":[");
  for (int i = 0; i < nconns; i++) printf("%s%llu", i ? "," : "", (unsigned long long)conns[i].count);
  printf("]}\n");
  fflush(stdout);
}

/* pingpong and soak */
static void run_messages(struct sockaddr_in *sa, int soak) {
  int total = opt_conns + opt_idle;
  /* Idle connections first, so the active ones are the newest fds. */
  int *fds = connect_all(total, sa);
  conn_t *conns = calloc((size_t)(opt_conns > 0 ? opt_conns : 1), sizeof(conn_t));
  for (int i = 0; i < opt_conns; i++) {
    conn_t *c = &conns[i];
    c->fd = fds[opt_idle + i];
    c->id = (uint32_t)i + 1;
    c->seq = 0;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl: %s", strerror(errno));
  }
  struct epoll_event *evs = calloc(MAX_EVENTS, sizeof *evs);
  uint64_t t0 = now_ns();
  uint64_t t_warm = t0 + (uint64_t)(opt_warmup * 1e9);
  uint64_t t_end = t_warm + (uint64_t)(opt_duration * 1e9);
  for (int i = 0; i < opt_conns; i++) start_message(&conns[i], soak);
  mark_t a = take_mark(), b = a;
  uint64_t win_bytes_sent = 0;
  int drained = 1;
  uint64_t t_drain_deadline = 0;
  for (;;) {
    int n = epoll_wait(ep, evs, MAX_EVENTS, opt_spin ? 0 : 2);
    if (n < 0 && errno != EINTR) die("epoll_wait: %s", strerror(errno));
    for (int i = 0; i < n; i++) {
      conn_t *c = evs[i].data.ptr;
      if (c->dead) continue;
      uint32_t e = evs[i].events;
      if (e & EPOLLOUT) send_more(c);
      if (c->dead) continue;
      if (e & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c, soak);
    }
    uint64_t t = now_ns();
    if (!measuring && !stopping && t >= t_warm) {
      hist_reset();
      win_ops = win_bytes = 0;
      for (int i = 0; i < opt_conns; i++) conns[i].count = 0;
      measuring = 1;
      a = take_mark();
    } else if (measuring && t >= t_end) {
      b = take_mark();
      measuring = 0;
      stopping = 1;
      win_bytes_sent = win_bytes; /* an echo server sends back what it got */
      if (!soak) break;
      t_drain_deadline = t + 15000000000ull;
    }
    if (stopping) {
      int busy = 0;
      for (int i = 0; i < opt_conns; i++) busy += conns[i].busy && !conns[i].dead;
      if (busy == 0) break;
      if (t >= t_drain_deadline) {
        drained = 0;
        record_error("%d messages still outstanding 15 s after the end", busy);
        break;
      }
    }
  }
  if (soak) {
    for (int i = 0; i < total; i++) close(fds[i]);
    /* The server should close its side of every connection. */
    uint64_t deadline = now_ns() + 10000000000ull;
    for (;;) {
      fds_after = proc_fd_count(opt_pid);
      if (opt_pid <= 0 || fds_after <= fds_before || now_ns() > deadline) break;
      usleep(20000);
    }
  }
  print_json(soak ? "soak" : "pingpong", conns, opt_conns, a, b, win_bytes_sent, win_bytes_sent,
             drained);
  if (!soak) {
    for (int i = 0; i < total; i++) close(fds[i]);
  }
}

static void run_bulk(struct sockaddr_in *sa) {
  opt_conns = 1;
  int *fds = connect_all(1 + opt_idle, sa);
  int fd = fds[opt_idle];
  if (opt_sockbuf > 0) {
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &opt_sockbuf, sizeof opt_sockbuf);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &opt_sockbuf, sizeof opt_sockbuf);
  }
  static uint8_t pattern[BULK_CHUNK + 256];
  static uint8_t rbuf[BULK_CHUNK];
  for (size_t i = 0; i < sizeof pattern; i++) pattern[i] = (uint8_t)(i % 251);
  conn_t c = {.fd = fd, .id = 1};
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = &c};
  c.want_out = 1;
  epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  uint64_t sent = 0, recvd = 0, win_sent = 0, win_recv = 0, reads = 0;
  uint64_t t0 = now_ns();
  uint64_t t_warm = t0 + (uint64_t)(opt_warmup * 1e9);
  uint64_t t_end = t_warm + (uint64_t)(opt_duration * 1e9);
  mark_t a = take_mark(), b = a;
  int measuring_bulk = 0;
  for (;;) {
    struct epoll_event evs[4];
    int n = epoll_wait(ep, evs, 4, 2);
    if (n < 0 && errno != EINTR) die("epoll_wait: %s", strerror(errno));
    for (int i = 0; i < n && !c.dead; i++) {
      if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        for (;;) {
          /* Every --verify-every-th read is copied out and checked; the others are
             dropped in the kernel (MSG_TRUNC), so that the load generator costs less
             per byte than an echo server, which must copy every byte in and out. */
          int check = opt_verify_every <= 1 || reads++ % (uint64_t)opt_verify_every == 0;
          ssize_t r = recv(fd, rbuf, BULK_CHUNK, check ? 0 : MSG_TRUNC);
          if (r < 0) {
            if (errno == EAGAIN || errno == EINTR) break;
            record_error("recv: %s", strerror(errno));
            c.dead = 1;
            break;
          }
          if (r == 0) {
            record_error("server closed the connection");
            c.dead = 1;
            break;
          }
          if (check && memcmp(rbuf, pattern + recvd % 251, (size_t)r) != 0) {
            record_error("wrong byte near stream offset %llu", (unsigned long long)recvd);
            c.dead = 1;
            break;
          }
          recvd += (uint64_t)r;
          if (measuring_bulk) win_recv += (uint64_t)r;
          if (r < BULK_CHUNK) break;
        }
      }
      /* Write while the window has room. */
      while (!c.dead && sent - recvd < opt_window) {
        uint64_t room = opt_window - (sent - recvd);
        size_t len = room < BULK_CHUNK ? (size_t)room : BULK_CHUNK;
        ssize_t w = send(fd, pattern + sent % 251, len, MSG_NOSIGNAL);
        if (w < 0) {
          if (errno == EAGAIN || errno == EINTR) break;
          record_error("send: %s", strerror(errno));
          c.dead = 1;
          break;
        }
        sent += (uint64_t)w;
        if (measuring_bulk) win_sent += (uint64_t)w;
        if ((size_t)w < len) break;
      }
      if (!c.dead) set_events(&c, sent - recvd < opt_window);
    }
    if (c.dead) break;
    uint64_t t = now_ns();
    if (!measuring_bulk && t >= t_warm) {
      measuring_bulk = 1;
      win_sent = win_recv = 0;
      a = take_mark();
    } else if (measuring_bulk && t >= t_end) {
      b = take_mark();
      break;
    }
  }
  if (b.t == a.t) b = take_mark();
  c.count = win_recv / CHUNK;
  c.bytes_echoed = recvd;
  win_ops = win_recv / CHUNK;
  print_json("bulk", &c, 1, a, b, win_sent, win_recv, 1);
  for (int i = 0; i < 1 + opt_idle; i++) close(fds[i]);
}

/* ---- churn, burst and sink: connections opened by the phase itself ---- */

static uint64_t opt_expect = 0;
static uint64_t source_counter = 0;

/* A non-blocking connect, from source address number `k` in 127.1.1.1-127.250.254.254. */
static int open_nonblocking(struct sockaddr_in *sa, int own_source) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    record_error("socket: %s", strerror(errno));
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (own_source) {
    uint64_t k = source_counter++;
    uint32_t a = (uint32_t)(k % 254) + 1, b = (uint32_t)((k / 254) % 254) + 1;
    uint32_t c = (uint32_t)((k / (254 * 254)) % 250) + 1;
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl((127u << 24) | (c << 16) | (b << 8) | a);
#ifdef IP_BIND_ADDRESS_NO_PORT
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
#endif
    if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) {
      record_error("bind to a 127/8 source: %s", strerror(errno));
      close(fd);
      return -1;
    }
  }
  if (connect(fd, (struct sockaddr *)sa, sizeof *sa) < 0 && errno != EINPROGRESS) {
    record_error("connect: %s", strerror(errno));
    close(fd);
    return -1;
  }
  return fd;
}

/* Opens c's connection and starts its one message (sent once connected). */
static int open_message_conn(conn_t *c, struct sockaddr_in *sa, int own_source) {
  c->fd = open_nonblocking(sa, own_source);
  if (c->fd < 0) return -1;
  c->seq++;
  c->size = opt_size;
  c->sent = c->got = 0;
  c->busy = 2; /* connecting */
  c->dead = 0;
  c->t_start = now_ns();
  c->want_out = 1;
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl: %s", strerror(errno));
  return 0;
}

/* One event on a churn/burst connection; returns 1 when its echo is complete, -1 on error. */
static int message_conn_event(conn_t *c, uint32_t e) {
  if (c->busy == 2 && (e & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      record_error("conn %u: connect: %s", c->id, strerror(err));
      return -1;
    }
    c->busy = 1;
    send_more(c);
    if (c->dead) return -1;
  } else if (e & EPOLLOUT) {
    send_more(c);
    if (c->dead) return -1;
  }
  if (c->busy == 1 && (e & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
    uint32_t want = c->size - c->got;
    ssize_t r = recv(c->fd, scratch, want, 0);
    if (r < 0) {
      if (errno == EAGAIN || errno == EINTR) return 0;
      record_error("conn %u: recv: %s", c->id, strerror(errno));
      return -1;
    }
    if (r == 0) {
      record_error("conn %u: closed by the server before the echo", c->id);
      return -1;
    }
    if (msg_check(scratch, c->id, c->seq, c->got, (uint32_t)r) >= 0) {
      record_error("conn %u: wrong bytes echoed", c->id);
      return -1;
    }
    c->got += (uint32_t)r;
    if (c->got == c->size) return 1;
  }
  return 0;
}

static void close_message_conn(conn_t *c) {
  if (c->fd >= 0) close(c->fd); /* also leaves the epoll set */
  c->fd = -1;
  c->busy = 0;
}

static void run_churn(struct sockaddr_in *sa) {
  int n = opt_conns;
  conn_t *conns = calloc((size_t)n, sizeof(conn_t));
  for (int i = 0; i < n; i++) {
    conns[i].id = (uint32_t)i + 1;
    conns[i].fd = -1;
    open_message_conn(&conns[i], sa, 1);
  }
  struct epoll_event *evs = calloc(MAX_EVENTS, sizeof *evs);
  uint64_t t0 = now_ns();
  uint64_t t_warm = t0 + (uint64_t)(opt_warmup * 1e9);
  uint64_t t_end = t_warm + (uint64_t)(opt_duration * 1e9);
  mark_t a = take_mark(), b = a;
  for (;;) {
    int k = epoll_wait(ep, evs, MAX_EVENTS, 2);
    if (k < 0 && errno != EINTR) die("epoll_wait: %s", strerror(errno));
    for (int i = 0; i < k; i++) {
      conn_t *c = evs[i].data.ptr;
      if (c->fd < 0) continue;
      int r = message_conn_event(c, evs[i].events);
      if (r == 0) continue;
      uint64_t t = now_ns();
      close_message_conn(c);
      if (r > 0 && measuring) {
        c->count++;
        win_ops++;
        win_bytes += c->size;
        hist_add(t - c->t_start);
      }
      /* The next connection of this client (after an error too, so the load stays). */
      if (open_message_conn(c, sa, 1) < 0) usleep(1000);
    }
    for (int i = 0; i < n; i++) {
      if (conns[i].fd < 0 && open_message_conn(&conns[i], sa, 1) < 0) usleep(1000);
    }
    uint64_t t = now_ns();
    if (!measuring && t >= t_warm) {
      hist_reset();
      win_ops = win_bytes = 0;
      for (int i = 0; i < n; i++) conns[i].count = 0;
      measuring = 1;
      a = take_mark();
    } else if (measuring && t >= t_end) {
      b = take_mark();
      break;
    }
  }
  for (int i = 0; i < n; i++) close_message_conn(&conns[i]);
  print_json("churn", conns, n, a, b, win_bytes, win_bytes, 1);
}

static void run_burst(struct sockaddr_in *sa) {
  int n = opt_conns;
  conn_t *conns = calloc((size_t)n, sizeof(conn_t));
  struct epoll_event *evs = calloc(MAX_EVENTS, sizeof *evs);
  hist_reset();
  measuring = 1;
  mark_t a = take_mark();
  uint64_t t0 = now_ns();
  int open = 0, done = 0, failed = 0, delayed = 0;
  for (int i = 0; i < n; i++) {
    conns[i].id = (uint32_t)i + 1;
    if (open_message_conn(&conns[i], sa, 0) == 0) open++;
    else failed++;
  }
  uint64_t deadline = t0 + (uint64_t)(opt_duration * 1e9);
  while (done + failed < n && now_ns() < deadline) {
    int k = epoll_wait(ep, evs, MAX_EVENTS, 2);
    if (k < 0 && errno != EINTR) die("epoll_wait: %s", strerror(errno));
    for (int i = 0; i < k; i++) {
      conn_t *c = evs[i].data.ptr;
      if (c->fd < 0) continue;
      int r = message_conn_event(c, evs[i].events);
      if (r == 0) continue;
      uint64_t t = now_ns();
      close_message_conn(c);
      if (r > 0) {
        done++;
        hist_add(t - t0);
        if (t - t0 > 900000000ull) delayed++;
      } else {
        failed++;
      }
    }
  }
  mark_t b = take_mark();
  int unfinished = n - done - failed;
  if (unfinished > 0) record_error("%d connections not echoed after %.1f s", unfinished, opt_duration);
  for (int i = 0; i < n; i++) close_message_conn(&conns[i]);
  long long ticks = (a.srv_ticks >= 0 && b.srv_ticks >= 0) ? b.srv_ticks - a.srv_ticks : -1;
  printf("{\"mode\":\"burst\",\"conns\":%d,\"done\":%d,\"failed\":%d,\"unfinished\":%d,"
         "\"delayed_over_0_9s\":%d,\"all_done_ms\":%.1f,\"p50_ms\":%.1f,\"p99_ms\":%.1f,"
         "\"server_cpu_s\":%.3f,\"errors\":%llu}\n",
         n, done, failed, unfinished, delayed, hist_max_ns / 1e6, hist_quantile(0.5) / 1000,
         hist_quantile(0.99) / 1000, ticks >= 0 ? (double)ticks / (double)clk_tck : -1.0,
         (unsigned long long)errors);
  fflush(stdout);
}

static void run_sink(struct sockaddr_in *sa) {
  int n = opt_conns;
  conn_t *conns = calloc((size_t)n, sizeof(conn_t));
  struct epoll_event *evs = calloc(MAX_EVENTS, sizeof *evs);
  static uint8_t rbuf[BULK_CHUNK];
  mark_t a = take_mark();
  int left = 0;
  for (int i = 0; i < n; i++) {
    conn_t *c = &conns[i];
    c->id = (uint32_t)i + 1;
    c->fd = open_nonblocking(sa, 0);
    if (c->fd < 0) continue;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl: %s", strerror(errno));
    left++;
  }
  uint64_t deadline = now_ns() + (uint64_t)(opt_duration * 1e9);
  uint64_t total = 0;
  while (left > 0 && now_ns() < deadline) {
    int k = epoll_wait(ep, evs, MAX_EVENTS, 2);
    if (k < 0 && errno != EINTR) die("epoll_wait: %s", strerror(errno));
    for (int i = 0; i < k; i++) {
      conn_t *c = evs[i].data.ptr;
      if (c->fd < 0) continue;
      for (;;) {
        ssize_t r = recv(c->fd, rbuf, sizeof rbuf, MSG_TRUNC);
        if (r > 0) {
          c->bytes_echoed += (uint64_t)r;
          total += (uint64_t)r;
          continue;
        }
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) break;
        if (r < 0) record_error("conn %u: recv: %s", c->id, strerror(errno));
        else if (opt_expect && c->bytes_echoed != opt_expect) {
          record_error("conn %u: got %llu bytes, expected %llu", c->id,
                       (unsigned long long)c->bytes_echoed, (unsigned long long)opt_expect);
        }
        close(c->fd);
        c->fd = -1;
        c->count = 1;
        left--;
        break;
      }
    }
  }
  mark_t b = take_mark();
  if (left > 0) record_error("%d connections still open after %.0f s", left, opt_duration);
  for (int i = 0; i < n; i++) {
    if (conns[i].fd >= 0) close(conns[i].fd);
  }
  win_ops = (uint64_t)(n - left);
  print_json("sink", conns, n, a, b, 0, total, left == 0);
}

static void run_hold(struct sockaddr_in *sa) {
  int *fds = connect_all(opt_idle, sa);
  printf("CONNECTED %d %.3f\n", opt_idle, connect_seconds);
  fflush(stdout);
  char buf[64];
  while (read(0, buf, sizeof buf) > 0) {
  }
  for (int i = 0; i < opt_idle; i++) close(fds[i]);
}

/* ---- udp: datagram ping-pong, --outstanding in flight per socket ---- */

#define UDP_RING 4096
#define UDP_BATCH 64

typedef struct {
  conn_t *c;          /* id, counts */
  uint32_t next_seq;  /* the next sequence number to send */
  uint32_t base;      /* echoes below it were given up for lost */
  int inflight;
  uint64_t t_last;    /* last send or receive */
  uint64_t t_send[UDP_RING];
} udp_t;

static uint8_t *udp_tx, *udp_rx;
static size_t udp_slot; /* receive room per datagram: more than --size, to see a longer one */
static struct mmsghdr udp_tx_h[UDP_BATCH], udp_rx_h[UDP_BATCH];
static struct iovec udp_tx_iov[UDP_BATCH], udp_rx_iov[UDP_BATCH];

/* Sends `n` new datagrams on u, a batch per sendmmsg. */
static void udp_send(udp_t *u, int n, uint64_t now) {
  while (n > 0) {
    int k = n < UDP_BATCH ? n : UDP_BATCH;
    for (int i = 0; i < k; i++) {
      uint8_t *p = udp_tx + (size_t)i * opt_size;
      msg_fill(p, u->c->id, u->next_seq + (uint32_t)i, 0, opt_size);
      udp_tx_iov[i] = (struct iovec){.iov_base = p, .iov_len = opt_size};
      memset(&udp_tx_h[i], 0, sizeof udp_tx_h[i]);
      udp_tx_h[i].msg_hdr.msg_iov = &udp_tx_iov[i];
      udp_tx_h[i].msg_hdr.msg_iovlen = 1;
    }
    int r = sendmmsg(u->c->fd, udp_tx_h, (unsigned)k, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == ENOBUFS) break; /* the stall check sends again */
      record_error("socket %u: sendmmsg: %s", u->c->id, strerror(errno));
      break;
    }
    for (int i = 0; i < r; i++) u->t_send[(u->next_seq + (uint32_t)i) % UDP_RING] = now;
    u->next_seq += (uint32_t)r;
    u->inflight += r;
    n -= r;
    if (r < k) break;
  }
  u->t_last = now;
}

/* Reads every echo queued on u, checks each, and sends one new datagram per echo. */
static void udp_recv(udp_t *u) {
  for (;;) {
    for (int i = 0; i < UDP_BATCH; i++) {
      udp_rx_iov[i] = (struct iovec){.iov_base = udp_rx + (size_t)i * udp_slot, .iov_len = udp_slot};
      memset(&udp_rx_h[i], 0, sizeof udp_rx_h[i]);
      udp_rx_h[i].msg_hdr.msg_iov = &udp_rx_iov[i];
      udp_rx_h[i].msg_hdr.msg_iovlen = 1;
    }
    int r = recvmmsg(u->c->fd, udp_rx_h, UDP_BATCH, MSG_DONTWAIT, NULL);
    if (r < 0) {
      if (errno == EAGAIN || errno == EINTR) return;
      /* ECONNREFUSED: an ICMP port unreachable, nobody listens there. */
      record_error("socket %u: recvmmsg: %s", u->c->id, strerror(errno));
      return;
    }
    uint64_t now = now_ns();
    int replies = 0;
    for (int i = 0; i < r; i++) {
      uint32_t len = udp_rx_h[i].msg_len;
      const uint8_t *p = udp_rx + (size_t)i * udp_slot;
      if (len != opt_size) {
        record_error("socket %u: a %u-byte datagram, %u expected", u->c->id, len, opt_size);
        continue;
      }
      uint32_t id = p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
      uint32_t seq = p[4] | p[5] << 8 | p[6] << 16 | (uint32_t)p[7] << 24;
      if (id != u->c->id || seq >= u->next_seq || u->next_seq - seq > UDP_RING) {
        record_error("socket %u: an echo of id %u seq %u never sent", u->c->id, id, seq);
        continue;
      }
      long bad = msg_check(p, id, seq, 0, len);
      if (bad >= 0) {
        record_error("socket %u seq %u: wrong byte at offset %ld", u->c->id, seq, bad);
        continue;
      }
      if (seq < u->base) {
        udp_late++;
        continue;
      }
      u->inflight--;
      replies++;
      u->c->total++;
      u->c->bytes_echoed += len;
      if (measuring) {
        u->c->count++;
        win_ops++;
        win_bytes += len;
        hist_add(now - u->t_send[seq % UDP_RING]);
      }
    }
    u->t_last = now;
    if (replies > 0) udp_send(u, replies, now);
    if (r < UDP_BATCH) return;
  }
}

static void run_udp(struct sockaddr_in *sa) {
  int n = opt_conns;
  if (opt_size > 65507) die("--size must be at most 65507 for UDP");
  if (opt_outstanding < 1 || opt_outstanding > UDP_RING / 2) die("--outstanding must be 1-2048");
  udp_slot = opt_size + 64;
  udp_tx = calloc(UDP_BATCH, opt_size);
  udp_rx = calloc(UDP_BATCH, udp_slot);
  conn_t *conns = calloc((size_t)n, sizeof(conn_t));
  udp_t *us = calloc((size_t)n, sizeof(udp_t));
  if (!udp_tx || !udp_rx || !conns || !us) die("out of memory");
  for (int i = 0; i < n; i++) {
    conn_t *c = &conns[i];
    c->id = (uint32_t)i + 1;
    c->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) die("socket: %s", strerror(errno));
    if (connect(c->fd, (struct sockaddr *)sa, sizeof *sa) < 0) die("connect: %s", strerror(errno));
    us[i].c = c;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &us[i]};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl: %s", strerror(errno));
  }
  struct epoll_event *evs = calloc(MAX_EVENTS, sizeof *evs);
  uint64_t t0 = now_ns();
  uint64_t t_warm = t0 + (uint64_t)(opt_warmup * 1e9);
  uint64_t t_end = t_warm + (uint64_t)(opt_duration * 1e9);
  uint64_t stall = (uint64_t)(opt_udp_timeout * 1e9);
  for (int i = 0; i < n; i++) udp_send(&us[i], opt_outstanding, t0);
  mark_t a = take_mark(), b = a;
  for (;;) {
    int k = epoll_wait(ep, evs, MAX_EVENTS, opt_spin ? 0 : 2);
    if (k < 0 && errno != EINTR) die("epoll_wait: %s", strerror(errno));
    for (int i = 0; i < k; i++) udp_recv(evs[i].data.ptr);
    uint64_t t = now_ns();
    for (int i = 0; i < n; i++) {
      udp_t *u = &us[i];
      if (u->inflight > 0 && t - u->t_last < stall) continue;
      /* Nothing heard for a while: what is out is lost (or late); start a new window. */
      udp_lost += (uint64_t)u->inflight;
      u->base = u->next_seq;
      u->inflight = 0;
      udp_send(u, opt_outstanding, t);
    }
    if (!measuring && t >= t_warm) {
      hist_reset();
      win_ops = win_bytes = 0;
      udp_lost = udp_late = 0;
      for (int i = 0; i < n; i++) conns[i].count = 0;
      measuring = 1;
      a = take_mark();
    } else if (measuring && t >= t_end) {
      b = take_mark();
      break;
    }
  }
  for (int i = 0; i < n; i++) close(conns[i].fd);
  print_json("udp", conns, n, a, b, win_bytes, win_bytes, 1);
}

static void usage(void) {
  fprintf(stderr,
          "usage: loadgen --port P [--host H] [--server-pid PID]\n"
          "               [--mode pingpong|bulk|soak|hold|churn|burst|sink|udp] [--expect B]\n"
          "               [--conns N] [--idle K] [--size B] [--min-size B] [--max-size B]\n"
          "               [--warmup S] [--duration S] [--window B] [--connect-timeout S]\n"
          "               [--seed N] [--spin 0|1] [--sockbuf B] [--verify-every N]\n"
          "               [--outstanding K] [--udp-timeout S]\n");
  exit(2);
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *k = argv[i];
    const char *v = strchr(k, '=');
    char key[64];
    if (v) {
      snprintf(key, sizeof key, "%.*s", (int)(v - k), k);
      v++;
    } else {
      snprintf(key, sizeof key, "%s", k);
      if (i + 1 >= argc) usage();
      v = argv[++i];
    }
    if (!strcmp(key, "--host")) opt_host = v;
    else if (!strcmp(key, "--port")) opt_port = atoi(v);
    else if (!strcmp(key, "--server-pid")) opt_pid = atoi(v);
    else if (!strcmp(key, "--mode")) opt_mode = v;
    else if (!strcmp(key, "--conns")) opt_conns = atoi(v);
    else if (!strcmp(key, "--idle")) opt_idle = atoi(v);
    else if (!strcmp(key, "--size")) opt_size = (uint32_t)atol(v);
    else if (!strcmp(key, "--min-size")) opt_min_size = (uint32_t)atol(v);
    else if (!strcmp(key, "--max-size")) opt_max_size = (uint32_t)atol(v);
    else if (!strcmp(key, "--warmup")) opt_warmup = atof(v);
    else if (!strcmp(key, "--duration")) opt_duration = atof(v);
    else if (!strcmp(key, "--window")) opt_window = (uint64_t)atoll(v);
    else if (!strcmp(key, "--connect-timeout")) opt_connect_timeout = atof(v);
    else if (!strcmp(key, "--seed")) opt_seed = (uint64_t)atoll(v) | 1;
    else if (!strcmp(key, "--spin")) opt_spin = atoi(v);
    else if (!strcmp(key, "--sockbuf")) opt_sockbuf = atoi(v);
    else if (!strcmp(key, "--verify-every")) opt_verify_every = atoi(v);
    else if (!strcmp(key, "--expect")) opt_expect = (uint64_t)atoll(v);
    else if (!strcmp(key, "--outstanding")) opt_outstanding = atoi(v);
    else if (!strcmp(key, "--udp-timeout")) opt_udp_timeout = atof(v);
    else usage();
  }
  if (opt_port <= 0) usage();
  if (opt_size < 8) opt_size = 8;
  if (opt_min_size < 8) opt_min_size = 8;
  signal(SIGPIPE, SIG_IGN);
  raise_nofile();
  clk_tck = sysconf(_SC_CLK_TCK);
  rng_state = opt_seed;
  hist = calloc(FINE_N + COARSE_N, sizeof(uint32_t));
  ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0 || !hist) die("setup failed");
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt_port)};
  if (inet_pton(AF_INET, opt_host, &sa.sin_addr) != 1) die("--host must be an IPv4 literal");
  if (!strcmp(opt_mode, "pingpong")) run_messages(&sa, 0);
  else if (!strcmp(opt_mode, "soak")) run_messages(&sa, 1);
  else if (!strcmp(opt_mode, "bulk")) run_bulk(&sa);
  else if (!strcmp(opt_mode, "hold")) run_hold(&sa);
  else if (!strcmp(opt_mode, "churn")) run_churn(&sa);
  else if (!strcmp(opt_mode, "burst")) run_burst(&sa);
  else if (!strcmp(opt_mode, "sink")) run_sink(&sa);
  else if (!strcmp(opt_mode, "udp")) run_udp(&sa);
  else usage();
  return 0;
}
