/**
 * Winsock (`ws2_32.dll`, and `kernel32.dll`/`msvcrt.dll` for the few calls
 * outside it) as the libc look-alike that `ffi/symbols.ts` hands out on
 * Windows: the same functions, taking and returning the same numbers, so
 * `Socket`, the pollers and the errno policy run unchanged. What differs is
 * done here, once:
 *
 * - A `SOCKET` is a 64-bit handle; it travels as a JS number (as Python's
 *   `fileno()` on Windows returns it), and `INVALID_SOCKET` (2^64-1) is -1.
 * - Errors come from `WSAGetLastError()`, read at once after the failing
 *   call, mapped as CPython's `winerror_to_errno` maps them, and kept in a
 *   cell whose address stands in for `__errno_location()`.
 * - `SOCK_NONBLOCK` and `O_NONBLOCK` (`fcntl`) become
 *   `ioctlsocket(FIONBIO)`, whose state Winsock cannot report, so it is
 *   remembered here; `SOCK_CLOEXEC` is `WSA_FLAG_NO_HANDLE_INHERIT`, always set.
 * - A non-blocking `connect` under way says `WSAEWOULDBLOCK`; it is reported
 *   as `EINPROGRESS`, the answer the errno policy expects of `connect`.
 * - `SO_REUSEADDR` is carried out as `SO_EXCLUSIVEADDRUSE`: Winsock's
 *   `SO_REUSEADDR` lets another socket take over a bound port, while a
 *   restarted server binds its port again without any option.
 * - `WSAPoll` accepts only the read and write bits in `events` (Microsoft
 *   documents `POLLPRI` as refused), refuses an empty array, and reports a
 *   peer's close as `POLLHUP` alone and a refused connect as `POLLERR`
 *   alone: the events are masked before the call, an empty wait sleeps, and
 *   a hang-up or error also reports the read/write interest it ends, as
 *   `poll(2)` does on Linux (libuv does the same), so the next `recv`,
 *   `send` or `SO_ERROR` tells what happened and no byte is lost.
 * - A datagram longer than the buffer is cut, as on Unix: Winsock fills the
 *   buffer, drops the rest and fails with `WSAEMSGSIZE`, which is reported
 *   as the length received (a repeat of the call, as the errno policy makes
 *   for an unexpected error, would find the datagram gone).
 * - Files, pipes, `sendfile`, signals and epoll are Unix-only: those
 *   entries fail with `ENOSYS`, and the callers say so in words.
 *
 * @module
 */

import { C, platform } from "./platform.ts";
import { winerrorToErrno, wsaTexts } from "./winsock_errors.ts";

export { winerrorToErrno };

const ws2 = {
  /** int WSAStartup(WORD wVersionRequested, LPWSADATA lpWSAData); */
  WSAStartup: { parameters: ["u16", "buffer"], result: "i32" },
  /** int WSAGetLastError(void); */
  WSAGetLastError: { parameters: [], result: "i32" },
  /** SOCKET WSASocketW(int af, int type, int protocol, LPWSAPROTOCOL_INFOW info, GROUP g, DWORD flags); */
  WSASocketW: { parameters: ["i32", "i32", "i32", "pointer", "u32", "u32"], result: "u64" },
  /** int bind(SOCKET s, const sockaddr *name, int namelen); */
  bind: { parameters: ["u64", "buffer", "i32"], result: "i32" },
  /** int listen(SOCKET s, int backlog); */
  listen: { parameters: ["u64", "i32"], result: "i32" },
  /** SOCKET accept(SOCKET s, sockaddr *addr, int *addrlen); */
  accept: { parameters: ["u64", "buffer", "buffer"], result: "u64" },
  /** int connect(SOCKET s, const sockaddr *name, int namelen); */
  connect: { parameters: ["u64", "buffer", "i32"], result: "i32" },
  /** The same send from memory given by address (a BIO's records, sent where they are). */
  sendAddress: { name: "send", parameters: ["u64", "usize", "i32", "i32"], result: "i32" },
  /** int send(SOCKET s, const char *buf, int len, int flags); */
  send: { parameters: ["u64", "buffer", "i32", "i32"], result: "i32" },
  /** int recv(SOCKET s, char *buf, int len, int flags); */
  recv: { parameters: ["u64", "buffer", "i32", "i32"], result: "i32" },
  /** int sendto(SOCKET s, const char *buf, int len, int flags, const sockaddr *to, int tolen); */
  sendto: { parameters: ["u64", "buffer", "i32", "i32", "buffer", "i32"], result: "i32" },
  /** int recvfrom(SOCKET s, char *buf, int len, int flags, sockaddr *from, int *fromlen); */
  recvfrom: { parameters: ["u64", "buffer", "i32", "i32", "buffer", "buffer"], result: "i32" },
  /** int setsockopt(SOCKET s, int level, int optname, const char *optval, int optlen); */
  setsockopt: { parameters: ["u64", "i32", "i32", "buffer", "i32"], result: "i32" },
  /** int getsockopt(SOCKET s, int level, int optname, char *optval, int *optlen); */
  getsockopt: { parameters: ["u64", "i32", "i32", "buffer", "buffer"], result: "i32" },
  /** int getsockname(SOCKET s, sockaddr *name, int *namelen); */
  getsockname: { parameters: ["u64", "buffer", "buffer"], result: "i32" },
  /** int getpeername(SOCKET s, sockaddr *name, int *namelen); */
  getpeername: { parameters: ["u64", "buffer", "buffer"], result: "i32" },
  /** int shutdown(SOCKET s, int how); */
  shutdown: { parameters: ["u64", "i32"], result: "i32" },
  /** int closesocket(SOCKET s); */
  closesocket: { parameters: ["u64"], result: "i32" },
  /** int ioctlsocket(SOCKET s, long cmd, u_long *argp); (long and u_long are 32-bit) */
  ioctlsocket: { parameters: ["u64", "u32", "buffer"], result: "i32" },
  /** int select(int nfds, fd_set *r, fd_set *w, fd_set *e, const timeval *timeout); (nfds is ignored) */
  select: { parameters: ["i32", "buffer", "buffer", "buffer", "buffer"], result: "i32" },
  /** int WSAPoll(LPWSAPOLLFD fdArray, ULONG fds, INT timeout); */
  WSAPoll: { parameters: ["buffer", "u32", "i32"], result: "i32" },
  /** The same WSAPoll, on a worker thread (loopAsync). */
  WSAPollAsync: {
    name: "WSAPoll",
    parameters: ["buffer", "u32", "i32"],
    result: "i32",
    nonblocking: true,
  },
  /** INT getaddrinfo(PCSTR node, PCSTR service, const ADDRINFOA *hints, PADDRINFOA *result); */
  getaddrinfo: { parameters: ["buffer", "buffer", "buffer", "buffer"], result: "i32" },
  /** VOID freeaddrinfo(PADDRINFOA ai); */
  freeaddrinfo: { parameters: ["pointer"], result: "void" },
  /** INT getnameinfo(const SOCKADDR *sa, socklen_t salen, PCHAR host, DWORD hostlen, PCHAR serv, DWORD servlen, INT flags); */
  getnameinfo: {
    parameters: ["buffer", "i32", "buffer", "u32", "buffer", "u32", "i32"],
    result: "i32",
  },
  /** hostent *gethostbyaddr(const char *addr, int len, int type); (per-thread storage) */
  gethostbyaddr: { parameters: ["buffer", "i32", "i32"], result: "pointer" },
  /** int gethostname(char *name, int namelen); */
  gethostname: { parameters: ["buffer", "i32"], result: "i32" },
  /** The same getaddrinfo on a worker thread (the asynchronous name lookup). */
  getaddrinfoAsync: {
    name: "getaddrinfo",
    parameters: ["buffer", "buffer", "buffer", "buffer"],
    result: "i32",
    nonblocking: true,
  },
  /** INT inet_pton(INT Family, PCSTR pszAddrString, PVOID pAddrBuf); (Vista and later) */
  inet_pton: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  /** PCSTR inet_ntop(INT Family, const VOID *pAddr, PSTR pStringBuf, size_t StringBufSize); */
  inet_ntop: { parameters: ["i32", "buffer", "buffer", "usize"], result: "pointer" },
  /** unsigned long inet_addr(const char *cp); (Winsock has no inet_aton) */
  inet_addr: { parameters: ["buffer"], result: "u32" },
} as const satisfies Deno.ForeignLibraryInterface;

const kernel32 = {
  /** DWORD FormatMessageW(DWORD flags, LPCVOID source, DWORD id, DWORD lang, LPWSTR buf, DWORD size, va_list *args); */
  FormatMessageW: {
    parameters: ["u32", "pointer", "u32", "u32", "buffer", "u32", "pointer"],
    result: "u32",
  },
  /** void Sleep(DWORD ms); (an empty poll: WSAPoll refuses zero sockets) */
  Sleep: { parameters: ["u32"], result: "void" },
  /** The same Sleep, on a worker thread. */
  SleepAsync: { name: "Sleep", parameters: ["u32"], result: "void", nonblocking: true },
  /** DWORD GetCurrentProcessId(void); */
  GetCurrentProcessId: { parameters: [], result: "u32" },
  /** DWORD GetCurrentThreadId(void); */
  GetCurrentThreadId: { parameters: [], result: "u32" },
} as const satisfies Deno.ForeignLibraryInterface;

const msvcrt = {
  /** char *strerror(int errnum); the C runtime's texts for its own errno values. */
  strerror: { parameters: ["i32"], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

type Ws2 = Deno.DynamicLibrary<typeof ws2>["symbols"];
/** What the FFI takes for a `buffer` parameter. */
type Buf = AllowSharedBufferSource | null;

const INVALID_SOCKET = 0xffff_ffff_ffff_ffffn;
const SOCKET_ERROR = -1;
/** _IOW('f', 126, u_long), as a 32-bit unsigned long. */
const FIONBIO = 0x8004667e;
/** ~SO_REUSEADDR, as winsock2.h defines it. */
const SO_EXCLUSIVEADDRUSE = ~4;
const WSA_FLAG_OVERLAPPED = 0x01;
const WSA_FLAG_NO_HANDLE_INHERIT = 0x80;
const INFINITE = 0xffff_ffff;
const WSAEWOULDBLOCK = 10035;
const WSAEINPROGRESS = 10036;
const WSAEMSGSIZE = 10040;
/** The bits WSAPoll accepts in `events`: POLLRDNORM, POLLRDBAND, POLLWRNORM, POLLWRBAND. */
const POLL_ALLOWED = 0x100 | 0x200 | 0x10 | 0x20;

const { O_NONBLOCK, SOCK_NONBLOCK, SOCK_CLOEXEC, F_GETFL, F_SETFL, F_GETFD, F_SETFD } = C;
const E = platform.errno;

/**
 * The errno of the last failed call; its address is what `errnoLocation()`
 * returns, so `readErrno()` reads it as it reads libc's errno.
 */
const errnoCell = new Int32Array(1);

let ws: Ws2;
let k32: Deno.DynamicLibrary<typeof kernel32>["symbols"];
let crt: Deno.DynamicLibrary<typeof msvcrt>["symbols"];

/** Records the calling thread's Winsock error (read at once) and returns -1. */
function fail(): number {
  errnoCell[0] = winerrorToErrno(ws.WSAGetLastError());
  return -1;
}

/** Records `err` (an errno) and returns -1. */
function failWith(err: number): number {
  errnoCell[0] = err;
  return -1;
}

function checked(r: number): number {
  return r === SOCKET_ERROR ? fail() : r;
}

/**
 * `f(handle)` for a call on socket `fd`, or -1 with the Winsock error. A
 * closed `Socket` passes -1: the kernel answers that with EBADF on Unix, and
 * so does this module, without asking Winsock (which says WSAENOTSOCK).
 */
function onSocket(fd: number, f: (s: bigint) => number): number {
  return fd < 0 ? failWith(E.EBADF) : checked(f(BigInt(fd)));
}

/** A receive's result: a cut datagram is its cut length (see the module doc). */
function received(r: number, len: number): number {
  if (r !== SOCKET_ERROR) return r;
  return ws.WSAGetLastError() === WSAEMSGSIZE ? len : fail();
}

// Handles made non-blocking here: Winsock has no call that reports it.
const nonBlocking = new Set<number>();
// Every socket opened through this module and not yet closed (for leak checks).
const open = new Set<number>();

/** The sockets opened here and not closed yet (tests check for leaks with it). */
export function openSocketHandles(): number[] {
  return [...open];
}

function toFd(handle: bigint): number {
  if (handle === INVALID_SOCKET) return -1;
  // Kernel handles use 32 bits (so 32- and 64-bit processes can share them).
  return Number(handle);
}

const u32Cell = new Uint32Array(1);

function setNonBlocking(fd: number, on: boolean): number {
  u32Cell[0] = on ? 1 : 0;
  if (ws.ioctlsocket(BigInt(fd), FIONBIO, u32Cell) === SOCKET_ERROR) return fail();
  if (on) nonBlocking.add(fd);
  else nonBlocking.delete(fd);
  return 0;
}

function adopt(fd: number, nonblock: boolean): number {
  open.add(fd);
  if (setNonBlocking(fd, nonblock) < 0) {
    const err = errnoCell[0];
    closeSocket(fd);
    return failWith(err);
  }
  return fd;
}

function closeSocket(fd: number): number {
  if (fd < 0) return failWith(E.EBADF);
  nonBlocking.delete(fd);
  open.delete(fd);
  return checked(ws.closesocket(BigInt(fd)));
}

function socket(domain: number, type: number, proto: number): number {
  // Python on Windows has no AF_UNIX; `Socket` says so in words first.
  if (domain === C.AF_UNIX) return failWith(E.EAFNOSUPPORT);
  const flags = WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT;
  const fd = toFd(
    ws.WSASocketW(domain, type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC), proto, null, 0, flags),
  );
  if (fd < 0) return fail();
  return adopt(fd, (type & SOCK_NONBLOCK) !== 0);
}

function accept4(fd: number, addr: Buf, len: Buf, flags: number) {
  if (fd < 0) return failWith(E.EBADF);
  const conn = toFd(ws.accept(BigInt(fd), addr, len));
  if (conn < 0) return fail();
  return adopt(conn, (flags & SOCK_NONBLOCK) !== 0);
}

function connect(fd: number, addr: Buf, len: number): number {
  if (fd < 0) return failWith(E.EBADF);
  if (ws.connect(BigInt(fd), addr, len) !== SOCKET_ERROR) return 0;
  fail();
  if (errnoCell[0] === WSAEWOULDBLOCK) errnoCell[0] = WSAEINPROGRESS;
  return -1;
}

/** SO_REUSEADDR means what it means on Unix (see the module doc). */
function optionName(level: number, name: number): number {
  return level === C.SOL_SOCKET && name === C.SO_REUSEADDR ? SO_EXCLUSIVEADDRUSE : name;
}

function fcntl(fd: number, cmd: number, arg: number): number {
  if (fd < 0) return failWith(E.EBADF);
  if (cmd === F_GETFL) {
    // Validates the handle as F_GETFL would (a non-socket fails with ENOTSOCK).
    const len = new Int32Array([4]);
    if (
      ws.getsockopt(BigInt(fd), C.SOL_SOCKET, C.SO_TYPE, new Int32Array(1), len) === SOCKET_ERROR
    ) {
      return fail();
    }
    return nonBlocking.has(fd) ? O_NONBLOCK : 0;
  }
  if (cmd === F_SETFL) return setNonBlocking(fd, (arg & O_NONBLOCK) !== 0);
  // Sockets are made non-inheritable when created; there is nothing else to report.
  if (cmd === F_GETFD || cmd === F_SETFD) return 0;
  return failWith(E.EINVAL);
}

/** Masks what WSAPoll refuses out of `events` (see the module doc). */
function preparePoll(view: DataView, n: number): void {
  const P = platform.structs.pollfd;
  for (let i = 0, o = 0; i < n; i++, o += P.size) {
    const events = view.getUint16(o + P.events, true);
    if ((events & ~POLL_ALLOWED) !== 0) view.setUint16(o + P.events, events & POLL_ALLOWED, true);
  }
}

/**
 * A hang-up or error also reports the read/write interest it ends (see the
 * module doc); readable data reports all of the POLLIN asked for (POLLIN is
 * two bits here, POLLRDNORM | POLLRDBAND, and WSAPoll sets one). Returns
 * the entries with events, which is what WSAPoll's result means (Wine's
 * miscounts a socket listed twice).
 */
function finishPoll(view: DataView, n: number): number {
  const P = platform.structs.pollfd;
  const ends = C.POLLHUP | C.POLLERR;
  let ready = 0;
  for (let i = 0, o = 0; i < n; i++, o += P.size) {
    const revents = view.getUint16(o + P.revents, true);
    if (revents === 0) continue;
    ready++;
    const events = view.getUint16(o + P.events, true);
    let add = revents & C.POLLIN ? events & C.POLLIN : 0;
    if (revents & ends) add |= events & (C.POLLIN | C.POLLOUT);
    if ((revents | add) !== revents) view.setUint16(o + P.revents, revents | add, true);
  }
  return ready;
}

/** The count at the head of a Winsock fd_set (0 for none). */
function setCount(set: Buf): number {
  if (set === null) return 0;
  const b = set as Uint8Array;
  return new DataView(b.buffer, b.byteOffset, 4).getUint32(0, true);
}

/**
 * Winsock's select refuses three empty sets; Unix sleeps, and so does this
 * (Python's `select.select([], [], [], t)` fails on Windows instead).
 */
function select(r: Buf, w: Buf, e: Buf, tv: Buf): number {
  if (setCount(r) + setCount(w) + setCount(e) === 0) {
    let ms = INFINITE;
    if (tv !== null) {
      const t = viewOf(tv);
      ms = t.getInt32(0, true) * 1000 + Math.ceil(t.getInt32(4, true) / 1000);
    }
    k32.Sleep(ms);
    return 0;
  }
  return checked(ws.select(0, r, w, e, tv));
}

function viewOf(buf: Buf): DataView {
  const b = buf as Uint8Array;
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

function sleepMs(ms: number): number {
  return ms < 0 ? INFINITE : ms;
}

function poll(fds: Buf, count: number | bigint, ms: number): number {
  const n = Number(count);
  if (n === 0) {
    k32.Sleep(sleepMs(ms));
    return 0;
  }
  const view = viewOf(fds);
  preparePoll(view, n);
  const r = ws.WSAPoll(fds, n, ms);
  if (r === SOCKET_ERROR) return fail();
  return r > 0 ? finishPoll(view, n) : r;
}

async function pollAsync(fds: Buf, count: number | bigint, ms: number) {
  const n = Number(count);
  if (n === 0) {
    await k32.SleepAsync(sleepMs(ms));
    return 0;
  }
  const view = viewOf(fds);
  preparePoll(view, n);
  // The error of a worker thread's call is that thread's: the caller treats it as "nothing ready".
  const r = await ws.WSAPollAsync(fds, n, ms);
  return r > 0 ? finishPoll(view, n) : r;
}

function gethostbyaddrR(
  addr: Buf,
  len: number,
  type: number,
  ret: Buf,
  _buf: Buf,
  _buflen: number | bigint,
  result: Buf,
  herr: Buf,
): number {
  const out = result as BigUint64Array;
  const p = ws.gethostbyaddr(addr, len, type);
  if (p === null) {
    const code = ws.WSAGetLastError();
    (herr as Int32Array)[0] = code;
    out[0] = 0n;
    return code;
  }
  // The hostent lives in Winsock's per-thread storage until the next call.
  new Deno.UnsafePointerView(p).copyInto(ret as Uint8Array, 0);
  out[0] = BigInt(Deno.UnsafePointer.value(p));
  return 0;
}

const text16 = new Uint16Array(512);
let lastText = new Uint8Array(1);

function formatMessage(code: number): string {
  // FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS
  const n = k32.FormatMessageW(0x1000 | 0x200, null, code, 0, text16, text16.length, null);
  const text = String.fromCharCode(...text16.subarray(0, n)).trim().replace(/\.$/, "");
  return text || wsaTexts[code] || "";
}

function cText(text: string): Deno.PointerValue {
  lastText = new TextEncoder().encode(`${text}\0`);
  return Deno.UnsafePointer.of(lastText);
}

function strerror(err: number): Deno.PointerValue {
  return err >= 10000 ? cText(formatMessage(err)) : crt.strerror(err);
}

const unixOnly = () => failWith(E.ENOSYS);

/**
 * `inet_aton` through Winsock's `inet_addr`, which takes the same forms
 * ("127.1", hex and octal parts): 1 and the address written to `out`, 0 for
 * text that is no address (inet_addr's INADDR_NONE, unless the text says so).
 */
function inet_aton(cp: Buf, out: Buf): number {
  openWinsock();
  const r = ws.inet_addr(cp);
  // INADDR_NONE is also the answer for "255.255.255.255" itself.
  const text = String.fromCharCode(...(cp as Uint8Array));
  if (r === 0xffffffff && !/^\s*255\.255\.255\.255\s*\0/.test(text)) return 0;
  new DataView((out as Uint8Array).buffer).setUint32((out as Uint8Array).byteOffset, r, true);
  return 1;
}

/** SO_PROTOCOL_INFOW: a WSAPROTOCOL_INFOW (628 bytes) describes the socket. */
const SO_PROTOCOL_INFOW = 0x2005;
const protocolInfo = new Int32Array(628 / 4);

/**
 * The family, type and protocol of socket `fd` into `out`, as Python's
 * `socket(fileno=...)` reads them on Windows (there is no SO_DOMAIN):
 * 0, or -1 with the error.
 */
export function socketIdentity(fd: number, out: Int32Array): number {
  openWinsock();
  const len = new Int32Array([protocolInfo.byteLength]);
  const r = onSocket(
    fd,
    (s) => ws.getsockopt(s, C.SOL_SOCKET, SO_PROTOCOL_INFOW, protocolInfo, len),
  );
  if (r < 0) return r;
  // iAddressFamily, iSocketType and iProtocol sit at bytes 76, 88 and 92.
  out[0] = protocolInfo[19];
  out[1] = protocolInfo[22];
  out[2] = protocolInfo[23];
  return 0;
}

/** Opens the libraries and starts Winsock 2.2, once. */
function openWinsock(): void {
  if (ws !== undefined) return;
  const sockets = Deno.dlopen(platform.libc, ws2).symbols;
  const data = new Uint8Array(512); // WSADATA
  const rc = sockets.WSAStartup(0x0202, data);
  if (rc !== 0) throw new Error(`asyncore: WSAStartup(2.2) failed with Winsock error ${rc}`);
  k32 = Deno.dlopen("kernel32.dll", kernel32).symbols;
  crt = Deno.dlopen("msvcrt.dll", msvcrt).symbols;
  ws = sockets;
}

/** Opens Winsock (once) and returns the libc look-alike over it. */
export function winsockLibc() {
  openWinsock();
  const n = (len: number | bigint) => Number(len);
  return {
    socket,
    bind: (fd: number, a: Buf, len: number) => onSocket(fd, (s) => ws.bind(s, a, len)),
    listen: (fd: number, backlog: number) => onSocket(fd, (s) => ws.listen(s, backlog)),
    accept4,
    accept: (fd: number, a: Buf, len: Buf) => accept4(fd, a, len, 0),
    connect,
    send: (fd: number, b: Buf, len: number | bigint, fl: number) =>
      onSocket(fd, (s) => ws.send(s, b, n(len), fl)),
    sendAddress: (fd: number, addr: bigint, len: bigint, fl: number) =>
      onSocket(fd, (s) => ws.sendAddress(s, addr, n(len), fl)),
    recv: (fd: number, b: Buf, len: number | bigint, fl: number) =>
      fd < 0 ? failWith(E.EBADF) : received(ws.recv(BigInt(fd), b, n(len), fl), n(len)),
    sendto: (
      fd: number,
      b: Buf,
      len: number | bigint,
      fl: number,
      to: Buf,
      tolen: number,
    ) => onSocket(fd, (s) => ws.sendto(s, b, n(len), fl, to, tolen)),
    recvfrom: (
      fd: number,
      b: Buf,
      len: number | bigint,
      fl: number,
      from: Buf,
      fromlen: Buf,
    ) =>
      fd < 0
        ? failWith(E.EBADF)
        : received(ws.recvfrom(BigInt(fd), b, n(len), fl, from, fromlen), n(len)),
    setsockopt: (fd: number, level: number, name: number, v: Buf, len: number) =>
      onSocket(fd, (s) => ws.setsockopt(s, level, optionName(level, name), v, len)),
    getsockopt: (
      fd: number,
      level: number,
      name: number,
      v: Buf,
      len: Buf,
    ) => onSocket(fd, (s) => ws.getsockopt(s, level, optionName(level, name), v, len)),
    getsockname: (fd: number, a: Buf, len: Buf) => onSocket(fd, (s) => ws.getsockname(s, a, len)),
    getpeername: (fd: number, a: Buf, len: Buf) => onSocket(fd, (s) => ws.getpeername(s, a, len)),
    shutdown: (fd: number, how: number) => onSocket(fd, (s) => ws.shutdown(s, how)),
    close: closeSocket,
    select: (_nfds: number, r: Buf, w: Buf, e: Buf, tv: Buf) => select(r, w, e, tv),
    poll,
    pollAsync,
    epoll_create1: null,
    epoll_ctl: null,
    epoll_wait: null,
    epollWaitAsync: null,
    dup: unixOnly,
    unlink: unixOnly,
    statx: null,
    pipe2: unixOnly,
    pipe: unixOnly,
    read: unixOnly,
    write: unixOnly,
    pread: unixOnly,
    sendfile: unixOnly,
    fcntl,
    open: unixOnly,
    getaddrinfo: ws.getaddrinfo,
    getaddrinfoAsync: ws.getaddrinfoAsync,
    inet_pton: ws.inet_pton,
    inet_ntop: (af: number, src: Buf, dst: Buf, size: number) =>
      ws.inet_ntop(af, src, dst, BigInt(size)),
    inet_aton,
    // Unix-only, as in Python on Windows: ancillary data and fd passing, the
    // batch calls, socketpair (Python's Windows one is a loopback TCP pair made
    // in Python; see loopbackPair here), the environment of socket activation.
    socketpair: unixOnly,
    sendmsg: unixOnly,
    recvmsg: unixOnly,
    sendmmsg: null,
    recvmmsg: null,
    getenv: () => null,
    unsetenv: unixOnly,
    freeaddrinfo: ws.freeaddrinfo,
    getnameinfo: ws.getnameinfo,
    gethostbyaddr_r: gethostbyaddrR,
    gethostname: (b: Buf, len: number | bigint) => checked(ws.gethostname(b, n(len))),
    sigaction: unixOnly,
    gettid: () => k32.GetCurrentThreadId(),
    getpid: () => k32.GetCurrentProcessId(),
    getpidAddress: null,
    gai_strerror: (code: number) => cText(formatMessage(code)),
    strerror,
    errnoLocation: () => Deno.UnsafePointer.of(errnoCell),
  };
}

/**
 * A connected pair of non-blocking loopback TCP sockets, `[reader, writer]`
 * (Windows has no pipe a select or WSAPoll can wait on): what wakes a wait
 * from another thread. As Python's `socketpair` on Windows, the accepted
 * end is checked to be our own connection, not a stranger's that raced it.
 * Throws an `Error` naming the Winsock error when it cannot be made.
 */
export function loopbackPair(): [number, number] {
  const addr = new Uint8Array(16);
  const len = new Int32Array(1);
  const peer = new Uint8Array(16);
  const one = new Int32Array([1]);
  openWinsock();
  for (let attempt = 0;; attempt++) {
    const listener = socket(C.AF_INET, C.SOCK_STREAM, 0);
    if (listener < 0) throw pairError();
    let writer = -1, reader = -1;
    try {
      addr.fill(0);
      addr[0] = C.AF_INET;
      addr.set([127, 0, 0, 1], 4);
      len[0] = 16;
      if (
        ws.bind(BigInt(listener), addr, 16) === SOCKET_ERROR ||
        ws.listen(BigInt(listener), 1) === SOCKET_ERROR ||
        ws.getsockname(BigInt(listener), addr, len) === SOCKET_ERROR
      ) throw pairError(true);
      writer = socket(C.AF_INET, C.SOCK_STREAM, 0);
      if (writer < 0 || ws.connect(BigInt(writer), addr, 16) === SOCKET_ERROR) {
        throw pairError(writer >= 0);
      }
      reader = accept4(listener, null, null, SOCK_NONBLOCK);
      if (reader < 0) throw pairError();
      len[0] = 16;
      ws.getsockname(BigInt(writer), addr, len);
      len[0] = 16;
      ws.getpeername(BigInt(reader), peer, len);
      if (addr.every((b, i) => b === peer[i])) {
        setNonBlocking(writer, true);
        ws.setsockopt(BigInt(writer), C.IPPROTO_TCP, C.TCP_NODELAY, one, 4);
        const pair: [number, number] = [reader, writer];
        reader = writer = -1;
        return pair;
      }
      if (attempt >= 3) throw new Error("asyncore: a stranger kept taking the wake-up socket pair");
    } finally {
      closeSocket(listener);
      if (reader >= 0) closeSocket(reader);
      if (writer >= 0) closeSocket(writer);
    }
  }
}

function pairError(fromWinsock = false): Error {
  if (fromWinsock) fail();
  return new Error(`asyncore: cannot make a loopback socket pair (errno ${errnoCell[0]})`);
}

/** Sends one byte on `fd` (a {@linkcode loopbackPair} writer); a full buffer already wakes. */
export function poke(fd: number, byte: Uint8Array): void {
  ws.send(BigInt(fd), byte, 1, 0);
}

/** Reads and drops what is queued on `fd` (a {@linkcode loopbackPair} reader), up to would-block. */
export function drainSocket(fd: number, scratch: Uint8Array): void {
  while (ws.recv(BigInt(fd), scratch, scratch.length, 0) > 0);
}

/** Closes a socket opened here. */
export function closeHandle(fd: number): void {
  closeSocket(fd);
}
