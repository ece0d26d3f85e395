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
import { errno as E, OSError } from "./errno.ts";
import { C, platform } from "./platform.ts";
import { encodeAddress } from "./resolve.ts";
import { type Address, decodeSockaddr } from "./structs.ts";
import { holdSpareFd } from "./spare_fd.ts";
import { sendfileBlocking, type SendfileSource, type SendfileTarget } from "./sendfile.ts";
import { libc, winsock } from "./symbols.ts";
import { kTransport, SocketTransport, type Transport } from "./transport.ts";
import { asBytes, type BytesLike } from "./bytes.ts";
import { checkTimeout, TimeoutError, waitReady } from "./timeout.ts";
import { type AncillaryInput, RecvMsg, type RecvmsgResult, SendMsg } from "./msg.ts";
import { type MessageBatch, recvmmsgInto, sendmmsg } from "./mmsg.ts";

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
 * ```ts
 * import { createServer, inetAddress, Socket } from "@asyncore/deno";
 *
 * using server = createServer(["127.0.0.1", 0]); // a peer to talk to
 * const [, port] = inetAddress(server.getsockname());
 *
 * const s = new Socket(); // AF_INET, SOCK_STREAM
 * s.connect(["127.0.0.1", port]);
 * s.sendall("hello\n");
 * const [conn] = server.accept();
 * conn.sendall(conn.recv(1024)); // the peer echoes
 * console.log(new TextDecoder().decode(s.recv(1024)));
 * conn.close();
 * s.close();
 * ```
 */
export class Socket {
  #fd: number;
  /** Whether the fd itself is in blocking mode (no `O_NONBLOCK`). */
  #blocking: boolean;
  /** Seconds of a Python timeout (`settimeout`; the fd is then non-blocking), else null. */
  #timeout: number | null = null;
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
    if (family === C.AF_UNIX && platform.hasUnixSockets === false) {
      throw new OSError(E.EAFNOSUPPORT, {
        syscall: "socket",
        message: `AF_UNIX sockets are Unix-only (as in Python); not available on ${platform.name}`,
      });
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
    const ws = winsock;
    if (ws !== null) {
      // No SO_DOMAIN on Windows: the protocol info holds all three (as Python reads them).
      const id = new Int32Array(3);
      check(attempt(() => ws.socketIdentity(fd, id)), "getsockopt");
      return new Socket(id[0], id[1], id[2], fd);
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

  /**
   * Whether the socket is in blocking mode: true also with a timeout, as in
   * Python (`gettimeout() !== 0`).
   */
  getblocking(): boolean {
    return this.#blocking || this.#timeout !== null;
  }

  /**
   * Sets blocking (`true`) or non-blocking (`false`) mode; either clears a
   * timeout (`setblocking(true)` is `settimeout(null)`, `setblocking(false)`
   * is `settimeout(0)`).
   */
  setblocking(flag: boolean): void {
    flag = Boolean(flag);
    this.#timeout = null;
    if (flag === this.#blocking) return;
    this.#setFdBlocking(flag);
  }

  /**
   * Python's `settimeout`: `null` blocks without limit, `0` is non-blocking,
   * and a number of seconds makes each blocking call (`accept`, `connect`,
   * `recv*`, `send*`, `sendall` as a whole) wait at most that long, then
   * throw {@linkcode TimeoutError}. As in CPython, the fd is then
   * non-blocking and each call first waits for readiness with `poll(2)`
   * (not `SO_RCVTIMEO`). The `try*` calls never wait. A dispatcher's socket
   * is non-blocking (`settimeout(0)`).
   *
   * @param seconds `null`, 0, or a number of seconds.
   * @throws {RangeError} For a negative or NaN value (Python's `ValueError`).
   * @throws {TypeError} For a value that is not a number or null.
   * @example
   * ```ts
   * import { socketpair, TimeoutError } from "@asyncore/deno";
   *
   * const [sock, peer] = socketpair();
   * sock.settimeout(0.5);
   * try {
   *   sock.recv(1024); // the peer sends nothing: TimeoutError after 0.5 s
   * } catch (error) {
   *   if (!(error instanceof TimeoutError)) throw error;
   * }
   * sock.close();
   * peer.close();
   * ```
   */
  settimeout(seconds: number | null): void {
    const timeout = checkTimeout(seconds);
    if (timeout === null || timeout === 0) return this.setblocking(timeout === null);
    if (this.#blocking) this.#setFdBlocking(false);
    this.#timeout = timeout;
  }

  /** Python's `gettimeout`: the timeout in seconds, `null` when blocking, 0 when non-blocking. */
  gettimeout(): number | null {
    if (this.#timeout !== null) return this.#timeout;
    return this.#blocking ? null : 0;
  }

  #setFdBlocking(flag: boolean): void {
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

  /** Like `#call`, but -1 for "would block" (`EAGAIN`) instead of an `OSError`. */
  #try(syscall: string, fn: () => number, filename?: string, eofKeepsError = false): number {
    const r = attempt(fn, this.#expected(), eofKeepsError);
    return r === -EAGAIN ? -1 : check(r, syscall, filename);
  }

  /** When a call started now must end under the timeout (`performance.now()` time), or NaN. */
  #deadline(): number {
    return this.#timeout === null ? NaN : performance.now() + this.#timeout * 1000;
  }

  /**
   * Runs `tryOnce` (a call that returns -1 for "would block") under the
   * timeout, as CPython's `sock_call`: without one, once; with one, after
   * waiting for `events` until `deadline`, and again after a false
   * readiness. Returns -1 only for a non-blocking socket.
   */
  #timed(events: number, syscall: string, tryOnce: () => number, deadline = NaN): number {
    if (this.#timeout === null) return tryOnce();
    const end = Number.isNaN(deadline) ? this.#deadline() : deadline;
    for (;;) {
      waitReady(this.#fd, events, end, syscall);
      const r = tryOnce();
      if (r !== -1) return r;
    }
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
    const fd = this.#timed(C.POLLIN, "accept", () => this.tryAccept());
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
    // A listener with a timeout gives blocking sockets, as in Python.
    const flags = C.SOCK_CLOEXEC | (this.getblocking() ? 0 : C.SOCK_NONBLOCK);
    const r = attempt(() => {
      lenBuf[0] = addrBuf.length;
      return lib.accept4(fd, addrBuf, lenBuf, flags);
    }, this.#expected());
    if (r === -EAGAIN) return -1;
    check(r, "accept");
    this.#peer = decodeSockaddr(addrBuf, lenBuf[0]);
    return r;
  }

  /**
   * Connects to `addr`; throws `OSError` on failure (`EINPROGRESS` when
   * non-blocking, {@linkcode TimeoutError} past a timeout).
   */
  connect(addr: Address): void {
    const err = this.#connect(addr);
    if (err !== 0) throw osError(err, "connect", this.#addrText(addr));
  }

  /**
   * Connects to `addr` and returns 0 or the errno (`EINPROGRESS` when
   * non-blocking; `EAGAIN` past a timeout, as Python's `connect_ex`).
   */
  connectEx(addr: Address): number {
    try {
      return this.#connect(addr);
    } catch (error) {
      if (error instanceof TimeoutError) return EAGAIN;
      throw error;
    }
  }

  #connect(addr: Address): number {
    const len = this.#encode(addr);
    const lib = libc();
    const fd = this.#fd;
    const deadline = this.#deadline();
    const r = attempt(() => lib.connect(fd, addrBuf, len), this.#expected(E.EINPROGRESS));
    if (r >= 0) return 0;
    // A closed socket is a programming error, not a connect result.
    if (r === -E.EBADF && fd < 0) check(r, "connect");
    if (r === -E.EINPROGRESS && this.#timeout !== null) {
      waitReady(fd, C.POLLOUT | C.POLLERR, deadline, "connect");
      return this.getsockopt(C.SOL_SOCKET, C.SO_ERROR);
    }
    return -r;
  }

  /** Sends `data` (strings as UTF-8); returns the number of bytes sent. */
  send(data: BytesLike, flags = 0): number {
    const n = this.#timed(C.POLLOUT, "send", () => this.trySend(data, flags));
    if (n === -1) throw osError(EAGAIN, "send");
    return n;
  }

  /**
   * Sends all of `data`, looping over partial sends (blocking sockets). With
   * a timeout, the whole of it must go within that time, as in Python.
   */
  sendall(data: BytesLike, flags = 0): void {
    let bytes = asBytes(data);
    const deadline = this.#deadline();
    while (bytes.length > 0) {
      const part = bytes;
      const n = Number.isNaN(deadline)
        ? this.send(part, flags)
        : this.#timed(C.POLLOUT, "send", () => this.trySend(part, flags), deadline);
      if (n === -1) throw osError(EAGAIN, "send");
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
   * ```ts
   * import { socketpair } from "@asyncore/deno";
   *
   * const path = Deno.makeTempFileSync();
   * Deno.writeTextFileSync(path, "<h1>hello</h1>\n");
   * const [sock, peer] = socketpair();
   * const sent = sock.sendfile(path); // 15
   * console.log(sent, new TextDecoder().decode(peer.recv(sent)));
   * sock.close();
   * peer.close();
   * Deno.removeSync(path);
   * ```
   */
  sendfile(file: SendfileSource, offset = 0, count?: number): number {
    if (!this.getblocking()) {
      throw new TypeError(
        "sendfile needs a blocking socket (as in Python); in a loop use trySendfile or DispatcherWithSend.sendFile",
      );
    }
    if (this.#timeout === null) return sendfileBlocking(this, file, offset, count);
    // With a timeout, each sendfile(2) waits for room first, as Python's does.
    const target: SendfileTarget = {
      type: this.type,
      canSendfile: () => this.canSendfile(),
      trySendfile: (fd, at, n) =>
        this.#timed(C.POLLOUT, "sendfile", () => this.trySendfile(fd, at, n)),
      sendall: (data) => this.sendall(data),
    };
    return sendfileBlocking(target, file, offset, count);
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
    const len = Math.min(n, MAX_IO);
    const got = this.#timed(C.POLLIN, "recv", () => this.tryRecvInto(scratch, len, flags));
    if (got === -1) throw osError(EAGAIN, "recv");
    return scratch.slice(0, got);
  }

  /** Receives into `buffer` (up to `n` bytes); returns the count. */
  recvInto(buffer: Uint8Array, n: number = buffer.length, flags = 0): number {
    const got = this.#timed(C.POLLIN, "recv", () => this.tryRecvInto(buffer, n, flags));
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
    const text = this.#addrText(addr);
    const sent = this.#timed(C.POLLOUT, "sendto", () =>
      this.#try(
        "sendto",
        () => lib.sendto(fd, bytes, BigInt(n), flags | MSG_NOSIGNAL, addrBuf, len),
        text,
      ));
    if (sent === -1) throw osError(EAGAIN, "sendto", text);
    return sent;
  }

  /** Receives a datagram of up to `n` bytes: `[bytes, senderAddress]`. */
  recvfrom(n: number, flags = 0): [Uint8Array, Address] {
    checkSize(n, "recvfrom size");
    if (n > scratch.length) scratch = new Uint8Array(Math.min(n, MAX_IO));
    const lib = libc();
    const fd = this.#fd;
    const len = Math.min(n, MAX_IO);
    const got = this.#timed(C.POLLIN, "recvfrom", () =>
      this.#try("recvfrom", () => {
        lenBuf[0] = addrBuf.length;
        return lib.recvfrom(fd, scratch, BigInt(len), flags, addrBuf, lenBuf);
      }));
    if (got === -1) throw osError(EAGAIN, "recvfrom");
    return [scratch.slice(0, got), decodeSockaddr(addrBuf, lenBuf[0])];
  }

  /**
   * Python's `recvfrom_into`: receives a datagram (or stream bytes) into
   * `buffer`, up to `n` bytes (0, as in Python, means all of `buffer`); a
   * longer datagram is cut. Returns `[nbytes, senderAddress]`.
   *
   * @throws {RangeError} When `n` is negative or more than `buffer` holds.
   * @example
   * ```ts
   * import { AF_INET, SOCK_DGRAM, Socket } from "@asyncore/deno";
   *
   * using sock = new Socket(AF_INET, SOCK_DGRAM);
   * sock.bind(["127.0.0.1", 0]);
   * using client = new Socket(AF_INET, SOCK_DGRAM);
   * client.sendto("ping", sock.getsockname());
   *
   * const buf = new Uint8Array(2048);
   * const [n, from] = sock.recvfromInto(buf);
   * sock.sendto(buf.subarray(0, n), from); // back to the sender
   * ```
   */
  recvfromInto(buffer: Uint8Array, n: number = buffer.length, flags = 0): [number, Address] {
    if (!(buffer instanceof Uint8Array)) throw new TypeError("recvfromInto needs a Uint8Array");
    if (!Number.isInteger(n)) throw new TypeError(`nbytes must be an integer, not ${n}`);
    if (n < 0) throw new RangeError("negative buffersize in recvfrom_into");
    if (n > buffer.length) throw new RangeError("nbytes is greater than the length of the buffer");
    const len = Math.min(n === 0 ? buffer.length : n, MAX_IO);
    const lib = libc();
    const fd = this.#fd;
    const got = this.#timed(C.POLLIN, "recvfrom", () =>
      this.#try("recvfrom", () => {
        lenBuf[0] = addrBuf.length;
        return lib.recvfrom(fd, buffer, BigInt(len), flags, addrBuf, lenBuf);
      }));
    if (got === -1) throw osError(EAGAIN, "recvfrom");
    return [got, decodeSockaddr(addrBuf, lenBuf[0])];
  }

  /**
   * Python's `sendmsg`: sends the bytes of `buffers` in order (one datagram
   * on a datagram socket) with ancillary data, to `address` when given (an
   * unconnected datagram socket). Returns the bytes of data sent.
   *
   * A stream socket needs at least one byte of data to carry ancillary data
   * (`RangeError` otherwise: Linux would drop it, passed fds included).
   *
   * @param buffers The data (strings as UTF-8).
   * @param ancdata `[level, type, data]` items; the data may be any typed
   *   array (`[SOL_SOCKET, SCM_RIGHTS, new Int32Array(fds)]`).
   * @param flags `MSG_*` flags.
   * @param address The destination, for an unconnected datagram socket.
   * @throws {OSError} From `sendmsg(2)`.
   * @example
   * ```ts
   * import { SCM_RIGHTS, Socket, SOL_SOCKET, socketpair } from "@asyncore/deno";
   *
   * const [sock, peer] = socketpair();
   * using other = new Socket(); // the fd to pass
   * const body = new TextEncoder().encode(" and body");
   * const fd = other.fileno();
   * sock.sendmsg(["header", body], [[SOL_SOCKET, SCM_RIGHTS, new Int32Array([fd])]]);
   * sock.close();
   * peer.close();
   * ```
   */
  sendmsg(
    buffers: BytesLike[],
    ancdata: AncillaryInput[] = [],
    flags = 0,
    address?: Address,
  ): number {
    const msg = new SendMsg(this.family, this.type, buffers, ancdata, address);
    const lib = libc();
    const fd = this.#fd;
    const header = msg.header;
    const fl = flags | MSG_NOSIGNAL;
    try {
      const n = this.#timed(
        C.POLLOUT,
        "sendmsg",
        () => this.#try("sendmsg", () => lib.sendmsg(fd, header, fl)),
      );
      if (n === -1) throw osError(EAGAIN, "sendmsg");
      return n;
    } finally {
      msg.release(); // keeps the buffers the header points at reachable until here
    }
  }

  /**
   * Python's `recvmsg`: up to `bufsize` bytes of data and up to
   * `ancbufsize` bytes of ancillary data (size it with `CMSG_SPACE`):
   * `[data, ancdata, msgFlags, address]`. `msgFlags` has `MSG_TRUNC` when
   * a datagram was cut and `MSG_CTRUNC` when ancillary data was; `address`
   * is null when the kernel gave none (a connected stream). Fds received
   * (`SCM_RIGHTS`) are close-on-exec and the caller's to close (see
   * `recvFds`).
   *
   * @throws {RangeError} For a negative size.
   * @example
   * ```ts
   * import { CMSG_SPACE, SCM_RIGHTS, Socket, SOL_SOCKET, socketpair } from "@asyncore/deno";
   *
   * const [peer, sock] = socketpair();
   * using passed = new Socket();
   * peer.sendmsg(["one fd"], [[SOL_SOCKET, SCM_RIGHTS, new Int32Array([passed.fileno()])]]);
   *
   * const [data, ancdata, flags] = sock.recvmsg(1024, CMSG_SPACE(4));
   * console.log(new TextDecoder().decode(data), ancdata.length, flags); // "one fd" 1 0
   * const [[, , fdBytes]] = ancdata;
   * Socket.fromFd(new DataView(fdBytes.buffer, fdBytes.byteOffset).getInt32(0, true)).close();
   * peer.close();
   * sock.close();
   * ```
   */
  recvmsg(bufsize: number, ancbufsize = 0, flags = 0): RecvmsgResult {
    const msg = new RecvMsg(bufsize, ancbufsize, flags);
    const lib = libc();
    const fd = this.#fd;
    const header = msg.header;
    const fl = msg.flags;
    const n = this.#timed(
      C.POLLIN,
      "recvmsg",
      () => this.#try("recvmsg", () => lib.recvmsg(fd, header, fl), undefined, true),
    );
    if (n === -1) throw osError(EAGAIN, "recvmsg");
    return msg.result(n);
  }

  /**
   * Receives up to `count` datagrams into `batch` with one `recvmmsg(2)`:
   * returns how many arrived (message `i` is `batch.data(i)` from
   * `batch.address(i)`). A blocking socket waits for the first only, then
   * takes what is already queued; a non-blocking one throws `OSError(EAGAIN)`
   * when none is (see {@linkcode tryRecvmmsgInto}).
   *
   * @param batch Preallocated room (see `MessageBatch`).
   * @param count The most datagrams to take (default: the batch's capacity).
   * @param flags `MSG_*` flags.
   * @example
   * ```ts
   * import { AF_INET, MessageBatch, SOCK_DGRAM, Socket } from "@asyncore/deno";
   *
   * using sock = new Socket(AF_INET, SOCK_DGRAM);
   * sock.bind(["127.0.0.1", 0]);
   * using client = new Socket(AF_INET, SOCK_DGRAM);
   * client.sendto("one", sock.getsockname());
   * client.sendto("two", sock.getsockname());
   *
   * const batch = new MessageBatch(32, 1500);
   * const n = sock.recvmmsgInto(batch);
   * for (let i = 0; i < n; i++) console.log(batch.address(i), batch.data(i).length);
   * ```
   */
  recvmmsgInto(batch: MessageBatch, count: number = batch.capacity, flags = 0): number {
    const n = this.#timed(C.POLLIN, "recvmmsg", () => this.tryRecvmmsgInto(batch, count, flags));
    if (n === -1) throw osError(EAGAIN, "recvmmsg");
    return n;
  }

  /** Like `recvmmsgInto`, but returns -1 instead of throwing when nothing is queued. */
  tryRecvmmsgInto(batch: MessageBatch, count: number = batch.capacity, flags = 0): number {
    return recvmmsgInto(this.#fd, batch, count, flags, this.#expected());
  }

  /**
   * Sends messages `start` to `start + count - 1` of `batch` with one
   * `sendmmsg(2)`, each `batch.lengths[i]` bytes to `batch.address(i)` (none
   * on a connected socket): returns how many went. Fewer go when the socket
   * buffer fills; send the rest from `start + n`.
   *
   * @param batch The messages (see `MessageBatch`).
   * @param count How many to send.
   * @param flags `MSG_*` flags.
   * @param start The first message to send (default 0).
   * @example Echo what arrived, each datagram to its sender
   * ```ts
   * import { AF_INET, MessageBatch, SOCK_DGRAM, Socket } from "@asyncore/deno";
   *
   * using sock = new Socket(AF_INET, SOCK_DGRAM);
   * sock.bind(["127.0.0.1", 0]);
   * using client = new Socket(AF_INET, SOCK_DGRAM);
   * client.sendto("ping", sock.getsockname());
   * const batch = new MessageBatch();
   *
   * const n = sock.recvmmsgInto(batch);
   * for (let sent = 0; sent < n;) sent += sock.sendmmsg(batch, n - sent, 0, sent);
   * ```
   */
  sendmmsg(batch: MessageBatch, count: number, flags = 0, start = 0): number {
    const n = this.#timed(
      C.POLLOUT,
      "sendmmsg",
      () => this.trySendmmsg(batch, count, flags, start),
    );
    if (n === -1) throw osError(EAGAIN, "sendmmsg");
    return n;
  }

  /** Like `sendmmsg`, but returns -1 instead of throwing when none could go. */
  trySendmmsg(batch: MessageBatch, count: number, flags = 0, start = 0): number {
    return sendmmsg(this.#fd, batch, count, flags, start, this.#expected());
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

  /**
   * Closes the socket when the block of a `using` declaration ends
   * (`using sock = new Socket()`), as `close()` does (an `SSLSocket` sends
   * its close_notify first).
   */
  [Symbol.dispose](): void {
    this.close();
  }

  /**
   * Python's `dup`: a new socket on a duplicate of the fd (close-on-exec),
   * with the same family, type, protocol and timeout. Closing either leaves
   * the other open; both share the connection and its blocking mode.
   *
   * @example
   * ```ts
   * import { Socket } from "@asyncore/deno";
   *
   * const sock = new Socket();
   * const copy = sock.dup();
   * sock.close(); // copy still works
   * copy.close();
   * ```
   */
  dup(): Socket {
    const lib = libc();
    const fd = this.#fd;
    const copy = this.#call("dup", () => lib.fcntl(fd, C.F_DUPFD_CLOEXEC, 0));
    const sock = new Socket(this.family, this.type, this.proto, copy);
    sock.settimeout(this.gettimeout());
    return sock;
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
