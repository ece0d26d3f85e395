/**
 * The libc symbol table and its one guarded load. Each entry carries the C
 * declaration it binds. `ssize_t` results are read as `i32`: on x86_64 and
 * aarch64 the low half of the 64-bit result register holds every value this
 * library can get back (lengths are capped below 2 GiB), and it keeps the hot
 * path free of `bigint`.
 *
 * Functions that not every libc has are bound with `optional: true`, so
 * `dlopen` succeeds without them: `accept4` and `pipe2` then fall back to
 * `accept`/`pipe` followed by `fcntl` (see {@linkcode acceptWithFcntl}), and
 * the `epoll` family is reported missing by {@linkcode epollSymbols}.
 *
 * @module
 */

import { C, platform } from "./platform.ts";

/**
 * `ffi/winsock.ts` (Winsock dressed as libc), loaded on Windows only, and
 * null elsewhere: Linux never parses it.
 */
export const winsock: typeof import("./winsock.ts") | null = platform.winsock
  ? await import("./winsock.ts")
  : null;

const symbols = {
  /** int socket(int domain, int type, int protocol); */
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  /** int bind(int fd, const struct sockaddr *addr, socklen_t len); */
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  /** int listen(int fd, int backlog); */
  listen: { parameters: ["i32", "i32"], result: "i32" },
  /** int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags); (Linux, FreeBSD) */
  accept4: { parameters: ["i32", "buffer", "buffer", "i32"], result: "i32", optional: true },
  /** int accept(int fd, struct sockaddr *addr, socklen_t *len); (the fallback for accept4) */
  accept: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  /** int connect(int fd, const struct sockaddr *addr, socklen_t len); */
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  /** ssize_t send(int fd, const void *buf, size_t n, int flags); */
  send: { parameters: ["i32", "buffer", "usize", "i32"], result: "i32" },
  /**
   * The same send(2), from an address rather than a JS buffer: for bytes
   * that live in C memory (the TLS records OpenSSL wrote into its memory
   * BIO), sent where they are. Pass both the address and the length as
   * bigints (Deno's fast call path).
   */
  sendAddress: { name: "send", parameters: ["i32", "usize", "usize", "i32"], result: "i32" },
  /** ssize_t recv(int fd, void *buf, size_t n, int flags); */
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "i32" },
  /** ssize_t sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *to, socklen_t len); */
  sendto: {
    parameters: ["i32", "buffer", "usize", "i32", "buffer", "u32"],
    result: "i32",
  },
  /** ssize_t recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *from, socklen_t *len); */
  recvfrom: {
    parameters: ["i32", "buffer", "usize", "i32", "buffer", "buffer"],
    result: "i32",
  },
  /** int setsockopt(int fd, int level, int name, const void *val, socklen_t len); */
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  /** int getsockopt(int fd, int level, int name, void *val, socklen_t *len); */
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  /** int getsockname(int fd, struct sockaddr *addr, socklen_t *len); */
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  /** int getpeername(int fd, struct sockaddr *addr, socklen_t *len); */
  getpeername: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  /** int shutdown(int fd, int how); */
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
  /** int close(int fd); */
  close: { parameters: ["i32"], result: "i32" },
  /** int select(int nfds, fd_set *r, fd_set *w, fd_set *e, struct timeval *timeout); */
  select: {
    parameters: ["i32", "buffer", "buffer", "buffer", "buffer"],
    result: "i32",
  },
  /** int poll(struct pollfd *fds, nfds_t n, int timeout_ms); */
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32" },
  /** The same poll(2), run on a worker thread so Deno's event loop goes on meanwhile. */
  pollAsync: {
    name: "poll",
    parameters: ["buffer", "u64", "i32"],
    result: "i32",
    nonblocking: true,
  },
  /** int epoll_create1(int flags); (Linux only) */
  epoll_create1: { parameters: ["i32"], result: "i32", optional: true },
  /** int epoll_ctl(int epfd, int op, int fd, struct epoll_event *event); */
  epoll_ctl: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32", optional: true },
  /** int epoll_wait(int epfd, struct epoll_event *events, int max, int timeout_ms); */
  epoll_wait: { parameters: ["i32", "buffer", "i32", "i32"], result: "i32", optional: true },
  /** The same epoll_wait(2), run on a worker thread (see pollAsync). */
  epollWaitAsync: {
    name: "epoll_wait",
    parameters: ["i32", "buffer", "i32", "i32"],
    result: "i32",
    nonblocking: true,
    optional: true,
  },
  /** int socketpair(int domain, int type, int protocol, int sv[2]); */
  socketpair: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  /** ssize_t sendmsg(int fd, const struct msghdr *msg, int flags); */
  sendmsg: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  /** ssize_t recvmsg(int fd, struct msghdr *msg, int flags); */
  recvmsg: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  /** int sendmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags); (Linux, FreeBSD) */
  sendmmsg: { parameters: ["i32", "buffer", "u32", "i32"], result: "i32", optional: true },
  /**
   * int recvmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags,
   *              struct timespec *timeout); (Linux, FreeBSD)
   */
  recvmmsg: {
    parameters: ["i32", "buffer", "u32", "i32", "pointer"],
    result: "i32",
    optional: true,
  },
  /** int inet_aton(const char *cp, struct in_addr *inp); */
  inet_aton: { parameters: ["buffer", "buffer"], result: "i32" },
  /** int inet_pton(int af, const char *src, void *dst); */
  inet_pton: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  /** const char *inet_ntop(int af, const void *src, char *dst, socklen_t size); */
  inet_ntop: { parameters: ["i32", "buffer", "buffer", "u32"], result: "pointer" },
  /** char *getenv(const char *name); (read through libc: --allow-ffi is the one permission) */
  getenv: { parameters: ["buffer"], result: "pointer" },
  /** int unsetenv(const char *name); */
  unsetenv: { parameters: ["buffer"], result: "i32" },
  /** int unlink(const char *path); (a handoff server removes its socket file) */
  unlink: { parameters: ["buffer"], result: "i32" },
  /**
   * int statx(int dirfd, const char *path, int flags, unsigned int mask, struct statx *buf);
   * (Linux 4.11, glibc 2.28) `struct statx` has one layout on every architecture.
   */
  statx: { parameters: ["i32", "buffer", "i32", "u32", "buffer"], result: "i32", optional: true },
  /** int dup(int fd); */
  dup: { parameters: ["i32"], result: "i32" },
  /** int pipe2(int fds[2], int flags); (Linux, the BSDs) */
  pipe2: { parameters: ["buffer", "i32"], result: "i32", optional: true },
  /** int pipe(int fds[2]); (the fallback for pipe2) */
  pipe: { parameters: ["buffer"], result: "i32" },
  /** ssize_t read(int fd, void *buf, size_t n); */
  read: { parameters: ["i32", "buffer", "usize"], result: "i32" },
  /** ssize_t write(int fd, const void *buf, size_t n); */
  write: { parameters: ["i32", "buffer", "usize"], result: "i32" },
  /** ssize_t pread(int fd, void *buf, size_t n, off_t offset); */
  pread: { parameters: ["i32", "buffer", "usize", "i64"], result: "i32" },
  /**
   * ssize_t sendfile(int out_fd, int in_fd, off_t *offset, size_t count);
   * Linux only (BSD and macOS have another signature): Socket.sendfile falls
   * back to pread and send where it fails.
   */
  sendfile: { parameters: ["i32", "i32", "buffer", "usize"], result: "i32" },
  /**
   * int fcntl(int fd, int cmd, ...); variadic in C, and Deno's FFI makes only
   * fixed-arity calls. It is bound as `fcntl(int, int, int)` for the
   * int-argument commands (F_GETFL, F_SETFL, F_GETFD, F_SETFD), which is
   * exactly the variadic call where the platform table says
   * `variadicArgsAsFixed` (x86_64 System V and Linux AAPCS64: the third
   * argument travels in the third integer register either way); the load
   * refuses a platform where it is not. The library needs it rarely:
   * sockets and pipes get O_NONBLOCK and O_CLOEXEC at creation
   * (`SOCK_NONBLOCK | SOCK_CLOEXEC`, `accept4`, `pipe2`), so `fcntl` runs only
   * for `setblocking()`, an adopted fd and the fallbacks below. (libuv makes
   * the same choice of call: `ioctl(FIONBIO)` on Linux, which is variadic too
   * and would gain nothing here.)
   */
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  /** int open(const char *path, int flags, ...); used only without O_CREAT. */
  open: { parameters: ["buffer", "i32"], result: "i32" },
  /** int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res); */
  getaddrinfo: {
    parameters: ["buffer", "buffer", "buffer", "buffer"],
    result: "i32",
  },
  /**
   * The same getaddrinfo(3), run on a worker thread so the loop's thread
   * goes on meanwhile (a lookup can take seconds). The thread hop costs
   * 20-50 us per call more than the synchronous one, so only promise-returning
   * paths use it. errno of its EAI_SYSTEM failures lives on the worker thread.
   */
  getaddrinfoAsync: {
    name: "getaddrinfo",
    parameters: ["buffer", "buffer", "buffer", "buffer"],
    result: "i32",
    nonblocking: true,
  },
  /** void freeaddrinfo(struct addrinfo *res); */
  freeaddrinfo: { parameters: ["pointer"], result: "void" },
  /** int getnameinfo(const struct sockaddr *sa, socklen_t salen, char *host, socklen_t hostlen, char *serv, socklen_t servlen, int flags); */
  getnameinfo: {
    parameters: ["buffer", "u32", "buffer", "u32", "buffer", "u32", "i32"],
    result: "i32",
  },
  /** int gethostbyaddr_r(const void *addr, socklen_t len, int type, struct hostent *ret, char *buf, size_t buflen, struct hostent **result, int *h_errnop); */
  gethostbyaddr_r: {
    parameters: ["buffer", "u32", "i32", "buffer", "buffer", "usize", "buffer", "buffer"],
    result: "i32",
  },
  /** int gethostname(char *name, size_t len); */
  gethostname: { parameters: ["buffer", "usize"], result: "i32" },
  /** int sigaction(int sig, const struct sigaction *act, struct sigaction *old); */
  sigaction: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  /** pid_t gettid(void); */
  gettid: { parameters: [], result: "i32" },
  /** pid_t getpid(void); */
  getpid: { parameters: [], result: "i32" },
  /**
   * The address of getpid(2), used as a signal handler that does nothing (see
   * ffi/signals.ts): it takes no arguments, touches no memory and is
   * async-signal-safe.
   */
  getpidAddress: { name: "getpid", type: "pointer" },
  /** const char *gai_strerror(int code); */
  gai_strerror: { parameters: ["i32"], result: "pointer" },
  /** char *strerror(int errnum); */
  strerror: { parameters: ["i32"], result: "pointer" },
  /** int *__errno_location(void); (the name comes from the platform table) */
  errnoLocation: { name: platform.errnoLocation, parameters: [], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

type Raw = Deno.DynamicLibrary<typeof symbols>["symbols"];
type Required<K extends keyof Raw> = { [P in K]: NonNullable<Raw[P]> };

/**
 * The bound libc functions. `accept4` and `pipe2` are always there (emulated
 * when libc lacks them); the `epoll` family may be `null`.
 */
export type Libc = Omit<Raw, "accept4" | "pipe2"> & Required<"accept4" | "pipe2">;

/** The epoll functions, present (see {@linkcode epollSymbols}). */
export type EpollSymbols =
  & Required<"epoll_create1" | "epoll_ctl" | "epoll_wait" | "epollWaitAsync">
  & Pick<Raw, "close">;

let loaded: Libc | undefined;

function isPermissionError(error: unknown): boolean {
  const errors = Deno.errors as Record<string, unknown>;
  for (const name of ["NotCapable", "PermissionDenied"]) {
    const cls = errors[name];
    if (typeof cls === "function" && error instanceof (cls as ErrorConstructor)) return true;
  }
  return false;
}

/**
 * `accept4` done as `accept` and then `fcntl`, for a libc without `accept4`.
 * Not atomic: a child forked by another thread in between inherits the fd.
 * `fcntl` on an fd just returned to us cannot fail (its only errors are a bad
 * fd or command), so its result is not checked.
 */
export function acceptWithFcntl(
  lib: Pick<Raw, "accept" | "fcntl">,
  fd: number,
  addr: Uint8Array,
  len: Uint32Array,
  flags: number,
): number {
  const r = lib.accept(fd, addr, len);
  if (r >= 0) setFdFlags(lib, r, flags & C.SOCK_CLOEXEC, flags & C.SOCK_NONBLOCK);
  return r;
}

/** `pipe2` done as `pipe` and then `fcntl` on both ends (not atomic either). */
export function pipeWithFcntl(
  lib: Pick<Raw, "pipe" | "fcntl">,
  fds: Int32Array,
  flags: number,
): number {
  const r = lib.pipe(fds);
  if (r === 0) {
    for (const fd of fds) setFdFlags(lib, fd, flags & C.O_CLOEXEC, flags & C.O_NONBLOCK);
  }
  return r;
}

function setFdFlags(lib: Pick<Raw, "fcntl">, fd: number, cloexec: number, nonblock: number) {
  if (cloexec) lib.fcntl(fd, C.F_SETFD, lib.fcntl(fd, C.F_GETFD, 0) | C.FD_CLOEXEC);
  if (nonblock) lib.fcntl(fd, C.F_SETFL, lib.fcntl(fd, C.F_GETFL, 0) | C.O_NONBLOCK);
}

/** Fills the optional functions libc lacks with their fallbacks. */
export function withFallbacks(raw: Raw): Libc {
  return {
    ...raw,
    accept4: raw.accept4 ??
      ((fd, addr, len, flags) =>
        acceptWithFcntl(raw, fd, addr as Uint8Array, len as Uint32Array, flags)),
    pipe2: raw.pipe2 ?? ((fds, flags) => pipeWithFcntl(raw, fds as Int32Array, flags)),
  };
}

function load(): Libc {
  if (!platform.variadicArgsAsFixed) {
    throw new Error(
      `asyncore: fcntl is bound with fixed arity, which ${platform.name}'s variadic calling ` +
        "convention does not allow; give it a binding of its own in ffi/symbols.ts",
    );
  }
  try {
    // Windows: Winsock dressed as libc (see ffi/winsock.ts), checked against the same type.
    if (winsock !== null) return winsock.winsockLibc() satisfies Libc;
    return withFallbacks(Deno.dlopen(platform.libc, symbols).symbols);
  } catch (error) {
    if (isPermissionError(error)) {
      // One sentence, not a stack of this library's internals: the fix is a flag.
      const limit = Error.stackTraceLimit;
      Error.stackTraceLimit = 0;
      const clear = new Error(
        "asyncore needs access to libc through FFI: run deno with --allow-ffi",
      );
      Error.stackTraceLimit = limit;
      throw clear;
    }
    throw error;
  }
}

/** Opens libc on first use and returns its bound symbols. */
export function libc(): Libc {
  return loaded ??= load();
}

/** The epoll functions, or `null` where libc has none (or the table says the OS has none). */
export function epollSymbols(lib: Libc = libc()): EpollSymbols | null {
  const { epoll_create1, epoll_ctl, epoll_wait, epollWaitAsync, close } = lib;
  if (!platform.hasEpoll || !epoll_create1 || !epoll_ctl || !epoll_wait || !epollWaitAsync) {
    return null;
  }
  return { epoll_create1, epoll_ctl, epoll_wait, epollWaitAsync, close };
}
