/**
 * The shape of a platform table (`ffi/platform.ts` picks the one this
 * process runs on): the names of the constants and errno values the
 * library reads, and the struct layouts. A table that lacks a fact is a
 * compile error.
 *
 * @module
 */

/**
 * The name of every numeric constant the library reads. A table that lacks
 * one of them is a type error (each table `satisfies Record<ConstantName,
 * number>`), so a new platform cannot leave one `undefined`.
 */
export type ConstantName =
  | "AF_UNSPEC"
  | "AF_UNIX"
  | "AF_INET"
  | "AF_INET6"
  | "SOCK_STREAM"
  | "SOCK_DGRAM"
  | "SOCK_NONBLOCK"
  | "SOCK_CLOEXEC"
  | "SOL_SOCKET"
  | "SO_REUSEADDR"
  | "SO_TYPE"
  | "SO_ERROR"
  | "SO_BROADCAST"
  | "SO_SNDBUF"
  | "SO_RCVBUF"
  | "SO_KEEPALIVE"
  | "SO_LINGER"
  | "SO_REUSEPORT"
  | "SO_ACCEPTCONN"
  | "SO_PROTOCOL"
  | "SO_DOMAIN"
  | "IPPROTO_IP"
  | "IPPROTO_TCP"
  | "IPPROTO_UDP"
  | "IPPROTO_IPV6"
  | "IPV6_V6ONLY"
  | "TCP_NODELAY"
  | "SHUT_RD"
  | "SHUT_WR"
  | "SHUT_RDWR"
  | "MSG_OOB"
  | "MSG_PEEK"
  | "MSG_DONTWAIT"
  | "MSG_NOSIGNAL"
  | "POLLIN"
  | "POLLPRI"
  | "POLLOUT"
  | "POLLERR"
  | "POLLHUP"
  | "POLLNVAL"
  | "POLLRDHUP"
  | "EPOLLIN"
  | "EPOLLPRI"
  | "EPOLLOUT"
  | "EPOLLERR"
  | "EPOLLHUP"
  | "EPOLLRDHUP"
  | "EPOLL_CLOEXEC"
  | "EPOLL_CTL_ADD"
  | "EPOLL_CTL_DEL"
  | "EPOLL_CTL_MOD"
  | "O_RDONLY"
  | "O_NONBLOCK"
  | "O_CLOEXEC"
  | "F_GETFL"
  | "F_SETFL"
  | "F_GETFD"
  | "F_SETFD"
  | "FD_CLOEXEC"
  | "AI_PASSIVE"
  | "AI_NUMERICHOST"
  | "AI_ADDRCONFIG"
  | "AI_NUMERICSERV"
  | "RLIMIT_NOFILE"
  | "SOCK_RAW"
  | "AI_CANONNAME"
  | "AI_V4MAPPED"
  | "AI_ALL"
  | "NI_NUMERICHOST"
  | "NI_NUMERICSERV"
  | "NI_NOFQDN"
  | "NI_NAMEREQD"
  | "NI_DGRAM"
  | "NI_MAXHOST"
  | "NI_MAXSERV"
  | "SIGHUP"
  | "SIGINT"
  | "SIGQUIT"
  | "SIGUSR1"
  | "SIGUSR2"
  | "SIGTERM"
  | "SA_RESETHAND"
  | "SCM_RIGHTS"
  | "SCM_CREDENTIALS"
  | "SO_PASSCRED"
  | "SO_OOBINLINE"
  | "SO_RCVTIMEO"
  | "SO_SNDTIMEO"
  | "TCP_KEEPIDLE"
  | "TCP_KEEPINTVL"
  | "TCP_KEEPCNT"
  | "TCP_USER_TIMEOUT"
  | "IP_MULTICAST_IF"
  | "IP_MULTICAST_TTL"
  | "IP_MULTICAST_LOOP"
  | "IP_ADD_MEMBERSHIP"
  | "IP_DROP_MEMBERSHIP"
  | "IPV6_MULTICAST_LOOP"
  | "IPV6_JOIN_GROUP"
  | "IPV6_LEAVE_GROUP"
  | "INADDR_ANY"
  | "MSG_TRUNC"
  | "MSG_CTRUNC"
  | "MSG_WAITALL"
  | "MSG_WAITFORONE"
  | "MSG_CMSG_CLOEXEC"
  | "F_DUPFD_CLOEXEC";

/** The numeric constants of one platform, by their C name. */
export type Constants = Readonly<Record<ConstantName, number>>;

/** The errno values the library itself reads; every table must name them. */
export type ErrnoName =
  | "EAGAIN"
  | "EALREADY"
  | "EBADF"
  | "ECONNABORTED"
  | "ECONNREFUSED"
  | "ECONNRESET"
  | "EEXIST"
  | "EINPROGRESS"
  | "EINTR"
  | "EINVAL"
  | "EISCONN"
  | "EMFILE"
  | "ENAMETOOLONG"
  | "ENFILE"
  | "ENOENT"
  | "ENOTCONN"
  | "EPIPE"
  | "ESHUTDOWN"
  | "EWOULDBLOCK";

/** A platform's errno values by C name: at least every {@linkcode ErrnoName}. */
export type ErrnoTable = Readonly<Record<ErrnoName, number> & Record<string, number>>;

/**
 * Where the address family sits in a `struct sockaddr`:
 * - `"u16"`: a 16-bit `sa_family` at offset 0 (Linux);
 * - `"len-u8"`: an 8-bit `sa_len` at offset 0, then an 8-bit `sa_family`
 *   (the BSDs and macOS).
 */
export type SockaddrFamilyField = "u16" | "len-u8";

/** Byte layout of the C structs this library encodes by hand (all little-endian). */
export interface StructLayouts {
  /** How `sa_family` is stored (see {@linkcode SockaddrFamilyField}). */
  sockaddrFamily: SockaddrFamilyField;
  /** `sizeof(struct sockaddr_storage)`. */
  sockaddrStorage: number;
  /** `sizeof(struct sockaddr_in)`. */
  sockaddrIn: number;
  /** `sizeof(struct sockaddr_in6)`. */
  sockaddrIn6: number;
  /** `sizeof(((struct sockaddr_un *)0)->sun_path)`, the kernel's path limit. */
  sunPathMax: number;
  /** `offsetof(struct sockaddr_un, sun_path)`. */
  sunPathOffset: number;
  /**
   * `struct pollfd { int fd; short events; short revents; }`: size and
   * offsets; `fdSize` is 8 where `fd` is a 64-bit handle (Windows'
   * `WSAPOLLFD`), absent for a 32-bit fd.
   */
  pollfd: { size: number; fd: number; events: number; revents: number; fdSize?: 8 };
  /**
   * `struct epoll_event { uint32_t events; epoll_data_t data; }`: size and
   * offsets. glibc declares it packed on x86_64 only (12 bytes, `data` at 4);
   * elsewhere the 64-bit union is aligned (16 bytes, `data` at 8). The
   * library keeps the fd in the low 32 bits of `data`.
   */
  epollEvent: { size: number; events: number; data: number };
  /** `sizeof(struct timeval)`: two 64-bit fields (16), or two 32-bit ones (8, Windows). */
  timeval: number;
  /**
   * `FD_SETSIZE`: the number of bits in an `fd_set`; where `fdSetIsArray`,
   * the number of handles it holds.
   */
  fdSetSize: number;
  /** Whether an `fd_set` is a count and an array of handles (Winsock), not a bitmap. */
  fdSetIsArray?: boolean;
  /** The width in bytes of each field of `struct linger`: 2 on Windows; absent: 4. */
  lingerField?: 2;
  /** Offsets inside `struct addrinfo`. */
  addrinfo: {
    size: number;
    flags: number;
    family: number;
    socktype: number;
    protocol: number;
    addrlen: number;
    addr: number;
    canonname: number;
    next: number;
  };
  /** Offsets inside `struct hostent`. */
  hostent: {
    size: number;
    name: number;
    aliases: number;
  };
  /** Offsets inside the C library's `struct sigaction` (glibc's, not the kernel's). */
  sigaction: {
    size: number;
    handler: number;
    flags: number;
  };
  /**
   * `struct msghdr` (`sendmsg`/`recvmsg`): size and offsets. `lengthSize` is
   * the width of `msg_iovlen` and `msg_controllen` (`size_t` in glibc, 4
   * bytes in musl and the BSDs).
   */
  msghdr: {
    size: number;
    name: number;
    namelen: number;
    iov: number;
    iovlen: number;
    control: number;
    controllen: number;
    flags: number;
    lengthSize: 4 | 8;
  };
  /** `struct iovec { void *iov_base; size_t iov_len; }`: size and offsets. */
  iovec: { size: number; base: number; len: number };
  /**
   * `struct cmsghdr`: the header's size (`CMSG_LEN(0)`, where the data
   * starts) and offsets; `lenSize` is the width of `cmsg_len` (`size_t` in
   * glibc, `socklen_t` elsewhere); `align` is `CMSG_ALIGN`'s unit.
   */
  cmsghdr: {
    size: number;
    len: number;
    level: number;
    type: number;
    lenSize: 4 | 8;
    align: number;
  };
  /** `struct mmsghdr { struct msghdr msg_hdr; unsigned int msg_len; }` (Linux). */
  mmsghdr: { size: number; len: number };
  /** `sizeof(struct ip_mreq)` (`imr_multiaddr`, `imr_interface`). */
  ipMreq: number;
  /** `sizeof(struct ipv6_mreq)` (`ipv6mr_multiaddr`, `ipv6mr_interface`). */
  ipv6Mreq: number;
}

/** One platform's table. */
export interface Platform {
  /** Name used in messages, e.g. `"linux-x86_64"`. */
  name: string;
  /** The C library passed to `Deno.dlopen`. */
  libc: string;
  /** OpenSSL's TLS library and its crypto library (opened on first TLS use only). */
  libssl: string;
  /** See {@linkcode Platform.libssl}. */
  libcrypto: string;
  /** How to install OpenSSL when it is missing, quoted in the error. */
  libsslInstallHint: string;
  /** The libc function that returns a pointer to the calling thread's `errno`. */
  errnoLocation: string;
  /** Whether the OS has the `epoll` family (libc must also export it; see `ffi/symbols.ts`). */
  hasEpoll: boolean;
  /**
   * Whether an integer or pointer argument passed to a variadic C function
   * (`fcntl(fd, cmd, ...)`) travels exactly as a fixed argument would, so a
   * fixed-arity FFI binding of it is correct. Deno's FFI has no variadic
   * calls, so this decides whether `fcntl` can be bound at all.
   *
   * - x86_64 System V: variadic integer arguments use the same registers as
   *   fixed ones; the callee reads `%al` only to decide whether to spill
   *   vector registers, which no integer-only call needs. `true`.
   * - AAPCS64 as Linux uses it: variadic arguments are assigned registers
   *   and stack slots exactly as named ones. `true`.
   * - Apple arm64 (macOS): every variadic argument goes on the stack even when
   *   registers are free, so a fixed binding would pass `arg` in `x2` where
   *   `fcntl` never looks. `false`: such a table needs a binding that fills
   *   `x0`-`x7` and puts the argument in the first stack slot.
   */
  variadicArgsAsFixed: boolean;
  /**
   * Whether `sendfile(2)` exists with Linux's signature; where it does not
   * (the BSDs and macOS have another), `Socket.sendfile` and `FileProducer`
   * read and send instead. Absent means true.
   */
  hasSendfile?: boolean;
  /**
   * Whether sockets are Winsock's (`ws2_32.dll`, bound by `ffi/winsock.ts`
   * as a libc look-alike) instead of the C library's. Absent means false.
   */
  winsock?: boolean;
  /** Whether `AF_UNIX` sockets are offered (false on Windows, as in Python). Absent means true. */
  hasUnixSockets?: boolean;
  /** Numeric constants by their C name. */
  constants: Constants;
  /** Errno values by their C name. */
  errno: ErrnoTable;
  /** `getaddrinfo` error codes by their C name. */
  gaiErrors: Readonly<Record<string, number>>;
  /** Struct layouts. */
  structs: StructLayouts;
}
