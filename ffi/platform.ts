/**
 * Platform facts: everything that differs between operating systems and
 * architectures lives in this one file, as one table per platform: the libc
 * name, the constants, errno, struct layouts and the calling convention of
 * variadic functions. Linux x86_64, Linux aarch64 and Windows x86_64 are
 * implemented (Windows' table is in `ffi/platform_windows.ts`, plain data
 * typed here); another platform is a new {@linkcode Platform} table added to
 * {@linkcode PLATFORMS}, and the compiler names every fact it is missing.
 *
 * What is optional in libc (`accept4`, `pipe2`, the `epoll` family) is not a
 * table entry: `ffi/symbols.ts` binds it as `optional` and checks for it.
 *
 * @module
 */

// Windows' table is loaded off Linux only (on Windows, and to be named in the
// "not supported" error elsewhere): Linux never parses it.
const windows = Deno.build.os === "linux"
  ? undefined
  : (await import("./platform_windows.ts")).windowsX86_64;

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
  | "SA_RESETHAND";

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

/**
 * Linux constants. x86_64 and aarch64 share them: aarch64 takes every value
 * here from the kernel's asm-generic headers, and x86_64 uses the generic
 * values for all of these (the architectures that differ are alpha, mips,
 * parisc, powerpc and sparc). `tests/ffi_platform_test.ts` compares them with
 * a C compiler's answer where one for the running architecture exists.
 */
const linuxConstants = {
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
  F_GETFD: 1,
  F_SETFD: 2,
  FD_CLOEXEC: 1,
  AI_PASSIVE: 0x1,
  AI_NUMERICHOST: 0x4,
  AI_ADDRCONFIG: 0x20,
  AI_NUMERICSERV: 0x400,
  RLIMIT_NOFILE: 7,
  SOCK_RAW: 3,
  AI_CANONNAME: 0x2,
  AI_V4MAPPED: 0x8,
  AI_ALL: 0x10,
  NI_NUMERICHOST: 0x1,
  NI_NUMERICSERV: 0x2,
  NI_NOFQDN: 0x4,
  NI_NAMEREQD: 0x8,
  NI_DGRAM: 0x10,
  NI_MAXHOST: 1025,
  NI_MAXSERV: 32,
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGUSR1: 10,
  SIGUSR2: 12,
  SIGTERM: 15,
  SA_RESETHAND: 0x80000000,
} as const satisfies Record<ConstantName, number>;

/** Linux errno values (asm-generic, shared by x86_64 and aarch64). */
const linuxErrno = {
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
} as const satisfies Record<ErrnoName, number> & Record<string, number>;

/** glibc's `getaddrinfo` error codes. */
const glibcGaiErrors = {
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
} as const;

/** Struct layouts of 64-bit glibc Linux, apart from `epoll_event`. */
const linux64Structs = {
  sockaddrFamily: "u16",
  sockaddrStorage: 128,
  sockaddrIn: 16,
  sockaddrIn6: 28,
  sunPathMax: 108,
  sunPathOffset: 2,
  pollfd: { size: 8, fd: 0, events: 4, revents: 6 },
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
    canonname: 32,
    next: 40,
  },
  hostent: { size: 32, name: 0, aliases: 8 },
  sigaction: { size: 152, handler: 0, flags: 136 },
} as const satisfies Omit<StructLayouts, "epollEvent">;

/** What every 64-bit glibc Linux table shares; the tables differ in name and `epoll_event`. */
const linuxGlibc = {
  libc: "libc.so.6",
  libssl: "libssl.so.3",
  libcrypto: "libcrypto.so.3",
  libsslInstallHint: "apt-get install libssl3 (Debian/Ubuntu) or dnf install openssl-libs (Fedora)",
  errnoLocation: "__errno_location",
  hasEpoll: true,
  variadicArgsAsFixed: true,
  hasSendfile: true,
  constants: linuxConstants,
  errno: linuxErrno,
  gaiErrors: glibcGaiErrors,
} as const satisfies Omit<Platform, "name" | "structs">;

const linuxX86_64: Platform = {
  ...linuxGlibc,
  name: "linux-x86_64",
  // glibc: `struct epoll_event` is __attribute__((packed)) on x86_64 only.
  structs: { ...linux64Structs, epollEvent: { size: 12, events: 0, data: 4 } },
};

const linuxAarch64: Platform = {
  ...linuxGlibc,
  name: "linux-aarch64",
  // Not packed: 4 bytes of padding align the 64-bit data union.
  structs: { ...linux64Structs, epollEvent: { size: 16, events: 0, data: 8 } },
};

/**
 * Types the Windows table (`ffi/platform_windows.ts`, plain data) as a
 * {@linkcode Platform}: a fact it lacks is a compile error here.
 */
export function windowsPlatform(
  table: typeof import("./platform_windows.ts").windowsX86_64,
): Platform {
  return {
    ...table,
    constants: table.constants satisfies Record<ConstantName, number>,
    errno: table.errno satisfies Record<ErrnoName, number>,
  };
}

/** Every implemented platform, keyed by `${Deno.build.os}-${Deno.build.arch}` (Windows' off Linux). */
export const PLATFORMS: Readonly<Record<string, Platform>> = {
  "linux-x86_64": linuxX86_64,
  "linux-aarch64": linuxAarch64,
  ...(windows === undefined ? {} : { "windows-x86_64": windowsPlatform(windows) }),
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
export const C: Constants = platform.constants;
