/**
 * Platform facts: everything that differs between operating systems and
 * architectures lives in this one file, as one table per platform. Linux
 * x86_64 is implemented; another platform is a new table of the same shape
 * added to {@linkcode PLATFORMS}.
 *
 * @module
 */

/** Byte layout of the C structs this library encodes by hand. */
export interface StructLayouts {
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
  /** `sizeof(struct pollfd)`. */
  pollfd: number;
  /** `sizeof(struct epoll_event)` (packed on x86_64). */
  epollEvent: number;
  /** `sizeof(struct timeval)` (two 64-bit fields). */
  timeval: number;
  /** `FD_SETSIZE`: the number of bits in an `fd_set`. */
  fdSetSize: number;
  /** Offsets inside `struct addrinfo`. */
  addrinfo: {
    size: number;
    flags: number;
    family: number;
    socktype: number;
    protocol: number;
    addrlen: number;
    addr: number;
    next: number;
  };
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
  /** Whether `accept4(2)` and `SOCK_NONBLOCK | SOCK_CLOEXEC` exist. */
  hasAccept4: boolean;
  /** Whether the `epoll` family exists. */
  hasEpoll: boolean;
  /** Whether `sockaddr` starts with a length byte (BSD) instead of a 16-bit family. */
  sockaddrHasLen: boolean;
  /** Numeric constants by their C name. */
  constants: Record<string, number>;
  /** Errno values by their C name. */
  errno: Record<string, number>;
  /** `getaddrinfo` error codes by their C name. */
  gaiErrors: Record<string, number>;
  /** Struct layouts. */
  structs: StructLayouts;
}

const linuxX86_64: Platform = {
  name: "linux-x86_64",
  libc: "libc.so.6",
  libssl: "libssl.so.3",
  libcrypto: "libcrypto.so.3",
  libsslInstallHint: "apt-get install libssl3 (Debian/Ubuntu) or dnf install openssl-libs (Fedora)",
  errnoLocation: "__errno_location",
  hasAccept4: true,
  hasEpoll: true,
  sockaddrHasLen: false,
  constants: {
    AF_UNSPEC: 0,
    AF_UNIX: 1,
    AF_INET: 2,
    AF_INET6: 10,
    SOCK_STREAM: 1,
    SOCK_DGRAM: 2,
    SOCK_NONBLOCK: 0o4000,
    SOCK_CLOEXEC: 0o2000000,
    SOL_SOCKET: 1,
    SO_REUSEADDR: 2,
    SO_TYPE: 3,
    SO_ERROR: 4,
    SO_BROADCAST: 6,
    SO_SNDBUF: 7,
    SO_RCVBUF: 8,
    SO_KEEPALIVE: 9,
    SO_LINGER: 13,
    SO_REUSEPORT: 15,
    SO_ACCEPTCONN: 30,
    SO_PROTOCOL: 38,
    SO_DOMAIN: 39,
    IPPROTO_IP: 0,
    IPPROTO_TCP: 6,
    IPPROTO_UDP: 17,
    IPPROTO_IPV6: 41,
    IPV6_V6ONLY: 26,
    TCP_NODELAY: 1,
    SHUT_RD: 0,
    SHUT_WR: 1,
    SHUT_RDWR: 2,
    MSG_OOB: 1,
    MSG_PEEK: 2,
    MSG_DONTWAIT: 0x40,
    MSG_NOSIGNAL: 0x4000,
    POLLIN: 0x1,
    POLLPRI: 0x2,
    POLLOUT: 0x4,
    POLLERR: 0x8,
    POLLHUP: 0x10,
    POLLNVAL: 0x20,
    POLLRDHUP: 0x2000,
    EPOLLIN: 0x1,
    EPOLLPRI: 0x2,
    EPOLLOUT: 0x4,
    EPOLLERR: 0x8,
    EPOLLHUP: 0x10,
    EPOLLRDHUP: 0x2000,
    EPOLL_CLOEXEC: 0o2000000,
    EPOLL_CTL_ADD: 1,
    EPOLL_CTL_DEL: 2,
    EPOLL_CTL_MOD: 3,
    O_RDONLY: 0,
    O_NONBLOCK: 0o4000,
    O_CLOEXEC: 0o2000000,
    F_GETFL: 3,
    F_SETFL: 4,
    AI_PASSIVE: 0x1,
    AI_NUMERICHOST: 0x4,
    AI_ADDRCONFIG: 0x20,
    AI_NUMERICSERV: 0x400,
    RLIMIT_NOFILE: 7,
  },
  errno: {
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
    EAGAIN: 11,
    EWOULDBLOCK: 11,
    ENOMEM: 12,
    EACCES: 13,
    EFAULT: 14,
    ENOTBLK: 15,
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
    ETXTBSY: 26,
    EFBIG: 27,
    ENOSPC: 28,
    ESPIPE: 29,
    EROFS: 30,
    EMLINK: 31,
    EPIPE: 32,
    EDOM: 33,
    ERANGE: 34,
    EDEADLK: 35,
    EDEADLOCK: 35,
    ENAMETOOLONG: 36,
    ENOLCK: 37,
    ENOSYS: 38,
    ENOTEMPTY: 39,
    ELOOP: 40,
    ENOMSG: 42,
    EIDRM: 43,
    ECHRNG: 44,
    EL2NSYNC: 45,
    EL3HLT: 46,
    EL3RST: 47,
    ELNRNG: 48,
    EUNATCH: 49,
    ENOCSI: 50,
    EL2HLT: 51,
    EBADE: 52,
    EBADR: 53,
    EXFULL: 54,
    ENOANO: 55,
    EBADRQC: 56,
    EBADSLT: 57,
    EBFONT: 59,
    ENOSTR: 60,
    ENODATA: 61,
    ETIME: 62,
    ENOSR: 63,
    ENONET: 64,
    ENOPKG: 65,
    EREMOTE: 66,
    ENOLINK: 67,
    EADV: 68,
    ESRMNT: 69,
    ECOMM: 70,
    EPROTO: 71,
    EMULTIHOP: 72,
    EDOTDOT: 73,
    EBADMSG: 74,
    EOVERFLOW: 75,
    ENOTUNIQ: 76,
    EBADFD: 77,
    EREMCHG: 78,
    ELIBACC: 79,
    ELIBBAD: 80,
    ELIBSCN: 81,
    ELIBMAX: 82,
    ELIBEXEC: 83,
    EILSEQ: 84,
    ERESTART: 85,
    ESTRPIPE: 86,
    EUSERS: 87,
    ENOTSOCK: 88,
    EDESTADDRREQ: 89,
    EMSGSIZE: 90,
    EPROTOTYPE: 91,
    ENOPROTOOPT: 92,
    EPROTONOSUPPORT: 93,
    ESOCKTNOSUPPORT: 94,
    ENOTSUP: 95,
    EOPNOTSUPP: 95,
    EPFNOSUPPORT: 96,
    EAFNOSUPPORT: 97,
    EADDRINUSE: 98,
    EADDRNOTAVAIL: 99,
    ENETDOWN: 100,
    ENETUNREACH: 101,
    ENETRESET: 102,
    ECONNABORTED: 103,
    ECONNRESET: 104,
    ENOBUFS: 105,
    EISCONN: 106,
    ENOTCONN: 107,
    ESHUTDOWN: 108,
    ETOOMANYREFS: 109,
    ETIMEDOUT: 110,
    ECONNREFUSED: 111,
    EHOSTDOWN: 112,
    EHOSTUNREACH: 113,
    EALREADY: 114,
    EINPROGRESS: 115,
    ESTALE: 116,
    EUCLEAN: 117,
    ENOTNAM: 118,
    ENAVAIL: 119,
    EISNAM: 120,
    EREMOTEIO: 121,
    EDQUOT: 122,
    ENOMEDIUM: 123,
    EMEDIUMTYPE: 124,
    ECANCELED: 125,
    ENOKEY: 126,
    EKEYEXPIRED: 127,
    EKEYREVOKED: 128,
    EKEYREJECTED: 129,
    EOWNERDEAD: 130,
    ENOTRECOVERABLE: 131,
    ERFKILL: 132,
  },
  gaiErrors: {
    EAI_BADFLAGS: -1,
    EAI_NONAME: -2,
    EAI_AGAIN: -3,
    EAI_FAIL: -4,
    EAI_NODATA: -5,
    EAI_FAMILY: -6,
    EAI_SOCKTYPE: -7,
    EAI_SERVICE: -8,
    EAI_ADDRFAMILY: -9,
    EAI_MEMORY: -10,
    EAI_SYSTEM: -11,
    EAI_OVERFLOW: -12,
  },
  structs: {
    sockaddrStorage: 128,
    sockaddrIn: 16,
    sockaddrIn6: 28,
    sunPathMax: 108,
    sunPathOffset: 2,
    pollfd: 8,
    epollEvent: 12,
    timeval: 16,
    fdSetSize: 1024,
    addrinfo: {
      size: 48,
      flags: 0,
      family: 4,
      socktype: 8,
      protocol: 12,
      addrlen: 16,
      addr: 24,
      next: 40,
    },
  },
};

/** Every implemented platform, keyed by `${Deno.build.os}-${Deno.build.arch}`. */
export const PLATFORMS: Readonly<Record<string, Platform>> = {
  "linux-x86_64": linuxX86_64,
};

function currentPlatform(): Platform {
  const key = `${Deno.build.os}-${Deno.build.arch}`;
  const found = PLATFORMS[key];
  if (!found) {
    throw new Error(
      `asyncore: platform ${key} is not supported yet (supported: ${
        Object.keys(PLATFORMS).join(", ")
      }); add its table to ffi/platform.ts`,
    );
  }
  return found;
}

/** The table of the platform this process runs on. */
export const platform: Platform = currentPlatform();

/** Shorthand for `platform.constants`. */
export const C: Readonly<Record<string, number>> = platform.constants;
