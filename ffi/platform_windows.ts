/**
 * The Windows x86_64 facts, as plain data: Winsock 2's constants
 * (`winsock2.h`, `ws2def.h`, `ws2ipdef.h`, `ws2tcpip.h`), the errno values
 * Python's `errno` module has on Windows, and the x64 struct layouts.
 * It is typed as a `Platform` (`ffi/platform_types.ts`), so a missing fact is
 * a compile error; `ffi/platform.ts` loads it off Linux only.
 *
 * Two conventions for what Windows lacks:
 * - a flag it has no such bit for is `0`, so or-ing it in changes nothing
 *   (`MSG_NOSIGNAL`: Windows raises no SIGPIPE);
 * - a level, option or signal number it lacks is `-1`, which every call
 *   refuses (`setsockopt(SOL_SOCKET, SO_REUSEPORT)` fails with
 *   `ENOPROTOOPT`).
 *
 * `SOCK_NONBLOCK`, `SOCK_CLOEXEC`, `O_NONBLOCK` and the `F_*` commands do
 * not exist in Winsock either: they keep Linux's values and
 * `ffi/winsock.ts` carries them out (`ioctlsocket(FIONBIO)`, sockets made
 * with `WSA_FLAG_NO_HANDLE_INHERIT`).
 *
 * @module
 */

import type { ConstantName, ErrnoName, Platform, StructLayouts } from "./platform_types.ts";

/** Winsock's constants by their POSIX name (see the module doc for 0 and -1). */
export const windowsConstants = {
  AF_UNSPEC: 0,
  AF_UNIX: 1,
  AF_INET: 2,
  AF_INET6: 23,
  SOCK_STREAM: 1,
  SOCK_DGRAM: 2,
  SOCK_NONBLOCK: 0o4000,
  SOCK_CLOEXEC: 0o2000000,
  SOL_SOCKET: 0xffff,
  SO_REUSEADDR: 4,
  SO_TYPE: 0x1008,
  SO_ERROR: 0x1007,
  SO_BROADCAST: 0x20,
  SO_SNDBUF: 0x1001,
  SO_RCVBUF: 0x1002,
  SO_KEEPALIVE: 8,
  SO_LINGER: 0x80,
  SO_REUSEPORT: -1,
  // winsock2.h / ws2tcpip.h / ws2ipdef.h values, as Python's Windows build
  // has them; -1: no such option on Windows (setsockopt refuses it).
  SO_OOBINLINE: 0x0100,
  SO_RCVTIMEO: 0x1006,
  SO_SNDTIMEO: 0x1005,
  SO_PASSCRED: -1,
  SCM_RIGHTS: -1,
  SCM_CREDENTIALS: -1,
  TCP_KEEPIDLE: 3,
  TCP_KEEPINTVL: 17,
  TCP_KEEPCNT: 16,
  TCP_USER_TIMEOUT: -1,
  IP_MULTICAST_IF: 9,
  IP_MULTICAST_TTL: 10,
  IP_MULTICAST_LOOP: 11,
  IP_ADD_MEMBERSHIP: 12,
  IP_DROP_MEMBERSHIP: 13,
  IPV6_MULTICAST_LOOP: 11,
  IPV6_JOIN_GROUP: 12,
  IPV6_LEAVE_GROUP: 13,
  INADDR_ANY: 0,
  MSG_TRUNC: 0x0100,
  MSG_CTRUNC: 0x0200,
  MSG_WAITALL: 0x8,
  // Flags of calls Windows does not have (recvmmsg, recvmsg): no bits.
  MSG_WAITFORONE: 0,
  MSG_CMSG_CLOEXEC: 0,
  // Socket.dup needs WSADuplicateSocket on Windows: refused (fcntl's unknown command).
  F_DUPFD_CLOEXEC: -1,
  SO_ACCEPTCONN: 2,
  SO_PROTOCOL: -1,
  SO_DOMAIN: -1,
  IPPROTO_IP: 0,
  IPPROTO_TCP: 6,
  IPPROTO_UDP: 17,
  IPPROTO_IPV6: 41,
  IPV6_V6ONLY: 27,
  TCP_NODELAY: 1,
  SHUT_RD: 0, // SD_RECEIVE
  SHUT_WR: 1, // SD_SEND
  SHUT_RDWR: 2, // SD_BOTH
  MSG_OOB: 1,
  MSG_PEEK: 2,
  MSG_DONTWAIT: 0,
  MSG_NOSIGNAL: 0,
  // WSAPoll's bits: POLLIN is POLLRDNORM | POLLRDBAND, POLLOUT is POLLWRNORM.
  POLLIN: 0x300,
  POLLPRI: 0x400,
  POLLOUT: 0x10,
  POLLERR: 0x1,
  POLLHUP: 0x2,
  POLLNVAL: 0x4,
  POLLRDHUP: 0,
  EPOLLIN: 0,
  EPOLLPRI: 0,
  EPOLLOUT: 0,
  EPOLLERR: 0,
  EPOLLHUP: 0,
  EPOLLRDHUP: 0,
  EPOLL_CLOEXEC: 0,
  EPOLL_CTL_ADD: -1,
  EPOLL_CTL_DEL: -1,
  EPOLL_CTL_MOD: -1,
  O_RDONLY: 0,
  O_NONBLOCK: 0o4000,
  O_CLOEXEC: 0o2000000,
  F_GETFL: 3,
  F_SETFL: 4,
  F_GETFD: 1,
  F_SETFD: 2,
  FD_CLOEXEC: 1,
  AI_PASSIVE: 0x1,
  AI_NUMERICHOST: 0x4,
  AI_ADDRCONFIG: 0x400,
  AI_NUMERICSERV: 0x8,
  RLIMIT_NOFILE: -1,
  SOCK_RAW: 3,
  AI_CANONNAME: 0x2,
  AI_V4MAPPED: 0x800,
  AI_ALL: 0x100,
  NI_NUMERICHOST: 0x2,
  NI_NUMERICSERV: 0x8,
  NI_NOFQDN: 0x1,
  NI_NAMEREQD: 0x4,
  NI_DGRAM: 0x10,
  NI_MAXHOST: 1025,
  NI_MAXSERV: 32,
  // The C runtime's signal numbers; Windows has no SIGHUP, SIGQUIT, SIGUSR1/2.
  SIGHUP: -1,
  SIGINT: 2,
  SIGQUIT: -1,
  SIGUSR1: -1,
  SIGUSR2: -1,
  SIGTERM: 15,
  SA_RESETHAND: 0,
} as const satisfies Record<ConstantName, number>;

/**
 * Python's `errno` on Windows: the C runtime's values, except the socket
 * errors, which CPython's `errnomodule.c` redefines to their Winsock codes
 * (`ECONNREFUSED` is 10061, `WSAECONNREFUSED`), so a Winsock error maps to
 * its name. The first name of a value is the one reported. One deviation:
 * `EAGAIN` is `WSAEWOULDBLOCK` here, as the library's one "would block"
 * value (Python's `errno.EAGAIN`, 11, is the C runtime's, which no socket
 * call reports).
 */
export const windowsErrno = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  E2BIG: 7,
  ENOEXEC: 8,
  EBADF: 9,
  ECHILD: 10,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  EXDEV: 18,
  ENODEV: 19,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  ENFILE: 23,
  EMFILE: 24,
  ENOTTY: 25,
  EFBIG: 27,
  ENOSPC: 28,
  ESPIPE: 29,
  EROFS: 30,
  EMLINK: 31,
  EPIPE: 32,
  EDOM: 33,
  ERANGE: 34,
  EDEADLK: 36,
  EDEADLOCK: 36,
  ENAMETOOLONG: 38,
  ENOLCK: 39,
  ENOSYS: 40,
  ENOTEMPTY: 41,
  EILSEQ: 42,
  EWOULDBLOCK: 10035,
  EAGAIN: 10035,
  EINPROGRESS: 10036,
  EALREADY: 10037,
  ENOTSOCK: 10038,
  EDESTADDRREQ: 10039,
  EMSGSIZE: 10040,
  EPROTOTYPE: 10041,
  ENOPROTOOPT: 10042,
  EPROTONOSUPPORT: 10043,
  ESOCKTNOSUPPORT: 10044,
  EOPNOTSUPP: 10045,
  EPFNOSUPPORT: 10046,
  EAFNOSUPPORT: 10047,
  EADDRINUSE: 10048,
  EADDRNOTAVAIL: 10049,
  ENETDOWN: 10050,
  ENETUNREACH: 10051,
  ENETRESET: 10052,
  ECONNABORTED: 10053,
  ECONNRESET: 10054,
  ENOBUFS: 10055,
  EISCONN: 10056,
  ENOTCONN: 10057,
  ESHUTDOWN: 10058,
  ETOOMANYREFS: 10059,
  ETIMEDOUT: 10060,
  ECONNREFUSED: 10061,
  ELOOP: 10062,
  EHOSTDOWN: 10064,
  EHOSTUNREACH: 10065,
  EPROCLIM: 10067,
  EUSERS: 10068,
  EDQUOT: 10069,
  ESTALE: 10070,
  EREMOTE: 10071,
  // Winsock codes without a POSIX name, by their Winsock name, as Python has them.
  WSAENAMETOOLONG: 10063,
  WSAENOTEMPTY: 10066,
  WSASYSNOTREADY: 10091,
  WSAVERNOTSUPPORTED: 10092,
  WSANOTINITIALISED: 10093,
  WSAEDISCON: 10101,
  WSATYPE_NOT_FOUND: 10109,
  WSAHOST_NOT_FOUND: 11001,
  WSATRY_AGAIN: 11002,
  WSANO_RECOVERY: 11003,
  WSANO_DATA: 11004,
} as const satisfies Record<ErrnoName, number> & Record<string, number>;

/** `getaddrinfo`'s `EAI_*` codes in `ws2tcpip.h`: Winsock errors under another name. */
export const windowsGaiErrors = {
  EAI_NONAME: 11001, // WSAHOST_NOT_FOUND
  EAI_NODATA: 11001,
  EAI_AGAIN: 11002, // WSATRY_AGAIN
  EAI_FAIL: 11003, // WSANO_RECOVERY
  EAI_BADFLAGS: 10022, // WSAEINVAL
  EAI_FAMILY: 10047, // WSAEAFNOSUPPORT
  EAI_SOCKTYPE: 10044, // WSAESOCKTNOSUPPORT
  EAI_SERVICE: 10109, // WSATYPE_NOT_FOUND
  EAI_MEMORY: 8, // WSA_NOT_ENOUGH_MEMORY
} as const;

/** Struct layouts of 64-bit Windows. */
export const windowsStructs = {
  sockaddrFamily: "u16",
  sockaddrStorage: 128,
  sockaddrIn: 16,
  sockaddrIn6: 28,
  // afunix.h; unused, since AF_UNIX is refused as in Python on Windows.
  sunPathMax: 108,
  sunPathOffset: 2,
  // WSAPOLLFD: a 64-bit SOCKET, then the two shorts.
  pollfd: { size: 16, fd: 0, events: 8, revents: 10, fdSize: 8 },
  // No epoll on Windows; the layout is never used.
  epollEvent: { size: 12, events: 0, data: 4 },
  // struct timeval { long tv_sec; long tv_usec; }: long is 32 bits on Windows.
  timeval: 8,
  // fd_set { u_int fd_count; SOCKET fd_array[FD_SETSIZE]; }: a count and a
  // list of handles, not a bitmap. The array is as long as we make it;
  // Python's Windows build makes it 512.
  fdSetSize: 512,
  fdSetIsArray: true,
  // ai_addrlen is a size_t, and ai_canonname comes before ai_addr (unlike glibc).
  addrinfo: {
    size: 48,
    flags: 0,
    family: 4,
    socktype: 8,
    protocol: 12,
    addrlen: 16,
    canonname: 24,
    addr: 32,
    next: 40,
  },
  hostent: { size: 32, name: 0, aliases: 8 },
  // No sigaction on Windows (see ffi/console_ctrl.ts); the layout is never used.
  sigaction: { size: 0, handler: 0, flags: 0 },
  // struct linger { u_short l_onoff; u_short l_linger; }
  lingerField: 2,
  // sendmsg/recvmsg and the batch calls are refused on Windows (Winsock's
  // WSASendMsg/WSARecvMsg take a WSAMSG of another shape): these layouts are
  // never used, they only complete the table.
  msghdr: {
    size: 56,
    name: 0,
    namelen: 8,
    iov: 16,
    iovlen: 24,
    control: 32,
    controllen: 40,
    flags: 48,
    lengthSize: 8,
  },
  iovec: { size: 16, base: 0, len: 8 },
  cmsghdr: { size: 16, len: 0, level: 8, type: 12, lenSize: 8, align: 8 },
  mmsghdr: { size: 64, len: 56 },
  // ws2ipdef.h: struct ip_mreq (two IN_ADDR), struct ipv6_mreq (IN6_ADDR, ULONG).
  ipMreq: 8,
  ipv6Mreq: 20,
} as const satisfies StructLayouts;

/** The Windows x86_64 table. */
export const windowsX86_64: Platform = {
  name: "windows-x86_64",
  libc: "ws2_32.dll",
  libssl: "libssl-3-x64.dll",
  libcrypto: "libcrypto-3-x64.dll",
  libsslInstallHint:
    "install OpenSSL 3 for Windows (e.g. `winget install ShiningLight.OpenSSL.Light`) and put the folder holding libssl-3-x64.dll on PATH",
  errnoLocation: "",
  winsock: true,
  hasEpoll: false,
  // The Microsoft x64 convention passes a variadic integer argument as a fixed one;
  // moot here, since Winsock has no fcntl to bind.
  variadicArgsAsFixed: true,
  hasSendfile: false,
  hasUnixSockets: false,
  constants: windowsConstants,
  errno: windowsErrno,
  gaiErrors: windowsGaiErrors,
  structs: windowsStructs,
};
