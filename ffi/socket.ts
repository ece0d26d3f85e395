/**
 * `Socket`: a thin object over one file descriptor, like Python's
 * `socket.socket`. Every failing call throws {@linkcode OSError}.
 *
 * errno is settled by the one policy of `_syscall.ts` (EINTR retried, "would
 * block" believed on a non-blocking socket, anything else confirmed by a
 * repeat); the `try*` calls make one call per would-block and build no
 * exception on that path.
 *
 * @module
 */

import { attempt, check, osError } from "./_syscall.ts";
import { errno as E } from "./errno.ts";
import { C, platform } from "./platform.ts";
import { encodeAddress } from "./resolve.ts";
import { type Address, decodeSockaddr } from "./structs.ts";
import { holdSpareFd } from "./spare_fd.ts";
import { sendfileBlocking, type SendfileSource } from "./sendfile.ts";
import { libc } from "./symbols.ts";
import { kTransport, SocketTransport, type Transport } from "./transport.ts";
import { asBytes, type BytesLike } from "./bytes.ts";

const SOCK_FLAGS = C.SOCK_NONBLOCK | C.SOCK_CLOEXEC;
const MSG_NOSIGNAL = C.MSG_NOSIGNAL;
const EAGAIN = E.EAGAIN;
/** Lengths handed to one call are capped so `ssize_t` results fit in an `i32`. */
const MAX_IO = 0x3fff_0000;

// Scratch buffers shared by every socket: the loop is single-threaded.
const addrBuf = new Uint8Array(platform.structs.sockaddrStorage);
const lenBuf = new Uint32Array(1);
const intBuf = new Int32Array(1);
const offsetBuf = new BigInt64Array(1);
let scratch = new Uint8Array(65536);

export type { BytesLike };

export { osError };

function checkSize(n: number, what: string): void {
  if (!Number.isInteger(n) || n < 0) {
    throw new RangeError(`${what} must be a non-negative integer, not ${n}`);
  }
}

/**
 * The blocking mode `accept4` gave the fd an {@linkcode acceptedSocket} is
 * being built for (or that a {@linkcode handOver} socket had), so its
 * constructor needs no `fcntl` to find out; null at every other time.
 */
let acceptedBlocking: boolean | null = null;

/**
 * The socket for an fd that `listener.tryAccept()` returned: the listener's
 * family, type and protocol, and its blocking mode (which `accept4`, or the
 * `fcntl` of the accept fallback, gave the new fd), without asking the
 * kernel again.
 */
export function acceptedSocket(listener: Socket, fd: number): Socket {
  acceptedBlocking = listener.getblocking();
  try {
    return new Socket(listener.family, listener.type, listener.proto, fd);
  } finally {
    acceptedBlocking = null;
  }
}

/**
 * Detaches `sock`'s fd for the socket built next over it (a subclass's
 * `super(family, type, proto, handOver(sock))`, as `SSLSocket` wraps a
 * socket): that constructor takes `sock`'s blocking mode without an `fcntl`.
 */
export function handOver(sock: Socket): number {
  const blocking = sock.getblocking();
  const fd = sock.detach();
  if (fd >= 0) acceptedBlocking = blocking; // a closed socket's -1 is refused before it is used
  return fd;
}

/**
 * A socket over one fd, as Python's `socket.socket`. Blocking by default, as
 * in Python (see `setblocking`); a dispatcher makes it non-blocking. Failed
 * calls throw {@linkcode OSError} with Python's `errno`.
 *
 * @example A blocking client, as a Python script would write it
 * ```ts ignore
 * import { Socket } from "jsr:@asyncore/deno";
 *
 * const s = new Socket(); // AF_INET, SOCK_STREAM
 * s.connect(["127.0.0.1", 8080]);
 * s.sendall("hello\n");
 * console.log(new TextDecoder().decode(s.recv(1024)));
 * s.close();
 * ```
 */
export class Socket {
  #fd: number;
  #blocking: boolean;
  /** The address family: `AF_INET`, `AF_INET6` or `AF_UNIX`. */
  readonly family: number;
  /** The socket type (`SOCK_STREAM`, `SOCK_DGRAM`), without creation flags. */
  readonly type: number;
  /** The protocol number. */
  readonly proto: number;

  /**
   * Creates a socket, or adopts `fileno` when given (as Python's
   * `socket.socket(family, type, proto, fileno)`). `type` may carry
   * `SOCK_NONBLOCK`; `SOCK_CLOEXEC` is always set.
   *
   * @param family `AF_INET` (default), `AF_INET6` or `AF_UNIX`.
   * @param type `SOCK_STREAM` (default) or `SOCK_DGRAM`, optionally or-ed with `SOCK_NONBLOCK`.
   * @param proto The protocol number; 0 picks the usual one.
   * @param fileno An open socket fd to adopt instead of creating one.
   * @throws {OSError} When `socket(2)` fails (`EMFILE`, `EAFNOSUPPORT`, ...).
   * @throws {TypeError} When `family`, `type` or `proto` is not an integer.
   */
  constructor(
    family: number = C.AF_INET,
    type: number = C.SOCK_STREAM,
    proto = 0,
    fileno?: number,
  ) {
    for (const [name, v] of [["family", family], ["type", type], ["proto", proto]] as const) {
      if (!Number.isInteger(v)) throw new TypeError(`${name} must be an integer, not ${v}`);
    }
    this.family = family;
    this.type = type & ~SOCK_FLAGS;
    this.proto = proto;
    if (fileno !== undefined) {
      if (!Number.isInteger(fileno) || fileno < 0) {
        throw new RangeError(`fileno must be a non-negative integer, not ${fileno}`);
      }
      this.#fd = fileno;
      const known = acceptedBlocking;
      acceptedBlocking = null;
      this.#blocking = known ?? (this.#fcntlGetfl() & C.O_NONBLOCK) === 0;
      return;
    }
    holdSpareFd();
    const lib = libc();
    const flags = this.type | C.SOCK_CLOEXEC | (type & C.SOCK_NONBLOCK);
    this.#fd = -1;
    this.#blocking = (type & C.SOCK_NONBLOCK) === 0;
    this.#fd = this.#call("socket", () => lib.socket(family, flags, proto));
  }

  /** Adopts an existing fd, reading its family, type and protocol from the kernel. */
  static fromFd(fd: number): Socket {
    if (!Number.isInteger(fd) || fd < 0) {
      throw new RangeError(`fd must be a non-negative integer, not ${fd}`);
    }
    const probe = new Socket(C.AF_UNIX, C.SOCK_STREAM, 0, fd);
    const family = probe.getsockopt(C.SOL_SOCKET, C.SO_DOMAIN);
    const type = probe.getsockopt(C.SOL_SOCKET, C.SO_TYPE);
    const proto = probe.getsockopt(C.SOL_SOCKET, C.SO_PROTOCOL);
    probe.detach();
    return new Socket(family, type, proto, fd);
  }

  /** The fd, or -1 once closed or detached. */
  fileno(): number {
    return this.#fd;
  }

  /** Whether the socket is in blocking mode. */
  getblocking(): boolean {
    return this.#blocking;
  }

  /** Sets blocking (`true`) or non-blocking (`false`) mode. */
  setblocking(flag: boolean): void {
    flag = Boolean(flag);
    if (flag === this.#blocking) return;
    const lib = libc();
    const fd = this.#fd;
    const fl = this.#fcntlGetfl();
    const next = flag ? fl & ~C.O_NONBLOCK : fl | C.O_NONBLOCK;
    this.#call("fcntl", () => lib.fcntl(fd, C.F_SETFL, next));
    this.#blocking = flag;
  }

  #fcntlGetfl(): number {
    const lib = libc();
    const fd = this.#fd;
    return this.#call("fcntl", () => lib.fcntl(fd, C.F_GETFL, 0));
  }

  /** The errno believed at once for this socket: "would block" only when non-blocking. */
  #expected(err = EAGAIN): number {
    return this.#blocking ? 0 : err;
  }

  /** Makes `fn` by the errno policy; a failure throws `OSError`. */
  #call(syscall: string, fn: () => number, filename?: string): number {
    return check(attempt(fn, this.#expected()), syscall, filename);
  }

  #encode(addr: Address): number {
    return encodeAddress(this.family, this.type, addr, addrBuf);
  }

  #addrText(addr: Address): string {
    return typeof addr === "string" ? addr : `${addr[0]}:${addr[1]}`;
  }

  /** Binds to `addr`. */
  bind(addr: Address): void {
    const len = this.#encode(addr);
    const lib = libc();
    const fd = this.#fd;
    this.#call("bind", () => lib.bind(fd, addrBuf, len), this.#addrText(addr));
  }

  /** Starts listening with the given backlog. */
  listen(backlog = 128): void {
    if (!Number.isInteger(backlog)) throw new TypeError(`backlog must be an integer`);
    const lib = libc();
    const fd = this.#fd;
    this.#call("listen", () => lib.listen(fd, Math.max(0, backlog)));
  }

  /**
   * Accepts a connection: `[socket, address]`. On a non-blocking socket with
   * nothing queued this throws `OSError(EAGAIN)`. The new socket inherits
   * this socket's blocking mode (one `fcntl` less than Python).
   */
  accept(): [Socket, Address] {
    const fd = this.tryAccept();
    if (fd === -1) throw osError(EAGAIN, "accept");
    return [acceptedSocket(this, fd), this.#peer];
  }

  #peer: Address = "";

  /** The peer address of the connection the last `tryAccept` returned. */
  lastAcceptedAddress(): Address {
    return this.#peer;
  }

  /**
   * Accepts one connection and returns the new fd, or -1 when none is queued
   * (non-blocking); the peer's address is then read by `accept()`.
   */
  tryAccept(): number {
    const lib = libc();
    const fd = this.#fd;
    const flags = C.SOCK_CLOEXEC | (this.#blocking ? 0 : C.SOCK_NONBLOCK);
    const r = attempt(() => {
      lenBuf[0] = addrBuf.length;
      return lib.accept4(fd, addrBuf, lenBuf, flags);
    }, this.#expected());
    if (r === -EAGAIN) return -1;
    check(r, "accept");
    this.#peer = decodeSockaddr(addrBuf, lenBuf[0]);
    return r;
  }

  /** Connects to `addr`; throws `OSError` on failure (`EINPROGRESS` when non-blocking). */
  connect(addr: Address): void {
    const err = this.connectEx(addr);
    if (err !== 0) throw osError(err, "connect", this.#addrText(addr));
  }

  /** Connects to `addr` and returns 0 or the errno (`EINPROGRESS` when non-blocking). */
  connectEx(addr: Address): number {
    const len = this.#encode(addr);
    const lib = libc();
    const fd = this.#fd;
    const r = attempt(() => lib.connect(fd, addrBuf, len), this.#expected(E.EINPROGRESS));
    if (r >= 0) return 0;
    // A closed socket is a programming error, not a connect result.
    if (r === -E.EBADF && fd < 0) check(r, "connect");
    return -r;
  }

  /** Sends `data` (strings as UTF-8); returns the number of bytes sent. */
  send(data: BytesLike, flags = 0): number {
    const n = this.trySend(data, flags);
    if (n === -1) throw osError(EAGAIN, "send");
    return n;
  }

  /** Sends all of `data`, looping over partial sends (blocking sockets). */
  sendall(data: BytesLike, flags = 0): void {
    let bytes = asBytes(data);
    while (bytes.length > 0) {
      const n = this.send(bytes, flags);
      bytes = bytes.subarray(n);
    }
  }

  /** Like `send`, but returns -1 instead of throwing when it would block. */
  trySend(data: BytesLike, flags = 0): number {
    const bytes = asBytes(data);
    const n = Math.min(bytes.length, MAX_IO);
    const fl = flags | MSG_NOSIGNAL;
    const lib = libc();
    const fd = this.#fd;
    const r = attempt(() => lib.send(fd, bytes, BigInt(n), fl), this.#expected());
    return r === -EAGAIN ? -1 : check(r, "send");
  }

  /**
   * Sends a file, as Python's `socket.sendfile`: from `offset`, `count`
   * bytes or up to the end of the file; returns the bytes sent. `file` is
   * an fd (its position is left alone, and it stays open), a path (opened
   * and closed here), an object with `fileno()`, or a `Deno.FsFile` (read
   * and sent: Deno gives no fd to hand to the kernel; its position ends
   * after the bytes sent, as Python's file does). Uses `sendfile(2)`, and
   * reads and sends where the kernel cannot (a pipe, a platform without it).
   * A blocking stream socket only, as in Python (`TypeError` otherwise): in
   * a loop use {@linkcode trySendfile} or `DispatcherWithSend.sendFile`.
   *
   * @example
   * ```ts ignore
   * const sent = sock.sendfile("/srv/www/index.html");
   * ```
   */
  sendfile(file: SendfileSource, offset = 0, count?: number): number {
    if (!this.#blocking) {
      throw new TypeError(
        "sendfile needs a blocking socket (as in Python); in a loop use trySendfile or DispatcherWithSend.sendFile",
      );
    }
    return sendfileBlocking(this, file, offset, count);
  }

  /**
   * Whether the kernel may put a file's bytes straight onto this socket
   * (`sendfile(2)`, {@linkcode trySendfile}). True for a plain socket; a
   * socket whose bytes pass through a layer of its own first says false (an
   * `SSLSocket` must encrypt them), and its files go by read and `send`.
   */
  canSendfile(): boolean {
    return true;
  }

  /**
   * One `sendfile(2)`: up to `count` bytes of `inFd` from `offset` (the
   * fd's own position is not used or moved). Returns the bytes sent, 0 at
   * the end of the file, or -1 when the socket would block.
   */
  trySendfile(inFd: number, offset: number, count: number): number {
    if (!Number.isInteger(inFd) || inFd < 0) {
      throw new RangeError(`fd must be a non-negative integer, not ${inFd}`);
    }
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw new RangeError(`offset must be a non-negative integer, not ${offset}`);
    }
    checkSize(count, "count");
    // Not bound with this signature here: callers that can read and send instead do so.
    if (platform.hasSendfile === false) throw osError(E.ENOSYS, "sendfile");
    const len = BigInt(Math.min(count, MAX_IO));
    const lib = libc();
    const fd = this.#fd;
    const r = attempt(() => {
      offsetBuf[0] = BigInt(offset);
      return lib.sendfile(fd, inFd, offsetBuf, len);
    }, this.#expected());
    return r === -EAGAIN ? -1 : check(r, "sendfile");
  }

  /** Receives up to `n` bytes; an empty result means the peer closed. */
  recv(n: number, flags = 0): Uint8Array {
    checkSize(n, "recv size");
    if (n === 0) return new Uint8Array(0); // as Python: no system call, so never EAGAIN
    if (n > scratch.length) scratch = new Uint8Array(Math.min(n, MAX_IO));
    const got = this.tryRecvInto(scratch, Math.min(n, MAX_IO), flags);
    if (got === -1) throw osError(EAGAIN, "recv");
    return scratch.slice(0, got);
  }

  /** Receives into `buffer` (up to `n` bytes); returns the count. */
  recvInto(buffer: Uint8Array, n: number = buffer.length, flags = 0): number {
    const got = this.tryRecvInto(buffer, n, flags);
    if (got === -1) throw osError(EAGAIN, "recv");
    return got;
  }

  /** Like `recvInto`, but returns -1 instead of throwing when it would block. */
  tryRecvInto(buffer: Uint8Array, n: number = buffer.length, flags = 0): number {
    if (n > buffer.length) {
      throw new RangeError(`recv size ${n} exceeds the buffer (${buffer.length} bytes)`);
    }
    const len = Math.min(n, MAX_IO);
    const lib = libc();
    const fd = this.#fd;
    const r = attempt(() => lib.recv(fd, buffer, BigInt(len), flags), this.#expected(), true);
    return r === -EAGAIN ? -1 : check(r, "recv");
  }

  /** Sends a datagram to `addr`; returns the bytes sent. */
  sendto(data: BytesLike, addr: Address, flags = 0): number {
    const bytes = asBytes(data);
    const len = this.#encode(addr);
    const lib = libc();
    const fd = this.#fd;
    const n = Math.min(bytes.length, MAX_IO);
    return this.#call(
      "sendto",
      () => lib.sendto(fd, bytes, BigInt(n), flags | MSG_NOSIGNAL, addrBuf, len),
      this.#addrText(addr),
    );
  }

  /** Receives a datagram of up to `n` bytes: `[bytes, senderAddress]`. */
  recvfrom(n: number, flags = 0): [Uint8Array, Address] {
    checkSize(n, "recvfrom size");
    if (n > scratch.length) scratch = new Uint8Array(Math.min(n, MAX_IO));
    const lib = libc();
    const fd = this.#fd;
    const len = Math.min(n, MAX_IO);
    const got = this.#call("recvfrom", () => {
      lenBuf[0] = addrBuf.length;
      return lib.recvfrom(fd, scratch, BigInt(len), flags, addrBuf, lenBuf);
    });
    return [scratch.slice(0, got), decodeSockaddr(addrBuf, lenBuf[0])];
  }

  /** Sets an option: an integer value, or raw bytes (e.g. a `struct linger`). */
  setsockopt(level: number, option: number, value: number | boolean | Uint8Array): void {
    let bytes: Uint8Array;
    if (value instanceof Uint8Array) {
      bytes = value;
    } else {
      intBuf[0] = Number(value);
      bytes = new Uint8Array(intBuf.buffer);
    }
    const lib = libc();
    const fd = this.#fd;
    this.#call("setsockopt", () => lib.setsockopt(fd, level, option, bytes, bytes.length));
  }

  /** Reads an integer option. */
  getsockopt(level: number, option: number): number {
    const lib = libc();
    const fd = this.#fd;
    const bytes = new Uint8Array(intBuf.buffer);
    this.#call("getsockopt", () => {
      intBuf[0] = 0;
      lenBuf[0] = 4;
      return lib.getsockopt(fd, level, option, bytes, lenBuf);
    });
    return intBuf[0];
  }

  /** The local address. */
  getsockname(): Address {
    return this.#nameOf("getsockname");
  }

  /** The peer's address; `OSError(ENOTCONN)` when not connected. */
  getpeername(): Address {
    return this.#nameOf("getpeername");
  }

  #nameOf(syscall: "getsockname" | "getpeername"): Address {
    const lib = libc();
    const fd = this.#fd;
    this.#call(syscall, () => {
      lenBuf[0] = addrBuf.length;
      return lib[syscall](fd, addrBuf, lenBuf);
    });
    if (lenBuf[0] === 0) return this.family === C.AF_UNIX ? "" : ["", 0];
    return decodeSockaddr(addrBuf, lenBuf[0]);
  }

  /** Shuts down reading (`SHUT_RD`), writing (`SHUT_WR`) or both. */
  shutdown(how: number): void {
    const lib = libc();
    const fd = this.#fd;
    this.#call("shutdown", () => lib.shutdown(fd, how));
  }

  /**
   * Closes the fd. Idempotent: the fd is forgotten before it is closed, so a
   * second call can never close a number the kernel has since reused.
   */
  close(): void {
    const fd = this.#fd;
    if (fd < 0) return;
    this.#fd = -1;
    libc().close(fd);
  }

  /** Gives up the fd without closing it and returns it. */
  detach(): number {
    const fd = this.#fd;
    this.#fd = -1;
    return fd;
  }

  #transport: Transport | null = null;

  /**
   * The transport a channel reads, writes and waits through: this socket's
   * own system calls (an `SSLSocket` answers with its TLS session).
   * @ignore
   */
  [kTransport](): Transport {
    return this.#transport ??= new SocketTransport(this);
  }

  /** Like Python's repr: `<Socket fd=5, family=2, type=1, proto=0>`. */
  toString(): string {
    return `<Socket fd=${this.#fd}, family=${this.family}, type=${this.type}, proto=${this.proto}>`;
  }
}
