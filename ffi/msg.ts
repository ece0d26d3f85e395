/**
 * `sendmsg`/`recvmsg` with ancillary data, and on them Python's
 * `send_fds`/`recv_fds` (fd passing over Unix sockets, `SCM_RIGHTS`) and
 * `CMSG_LEN`/`CMSG_SPACE`. `Socket.sendmsg` and `Socket.recvmsg` build a
 * {@linkcode SendMsg} or {@linkcode RecvMsg} here and make the call under
 * their errno and timeout policy; the `msghdr`, `iovec` and `cmsghdr`
 * layouts come from the platform table.
 *
 * Every fd this library receives is close-on-exec (`MSG_CMSG_CLOEXEC` is
 * always passed), as every fd it makes is; and a received fd is never left
 * open unseen: {@linkcode recvFds} closes a set the kernel truncated, and
 * `recvmsg` closes what arrived when it cannot return it.
 *
 * @module
 */

import { asBytes, type BytesLike } from "./bytes.ts";
import { C, platform } from "./platform.ts";
import { encodeAddress } from "./resolve.ts";
import { type Address, decodeSockaddr } from "./structs.ts";
import { libc } from "./symbols.ts";

const S = platform.structs;
const M = S.msghdr;
const IOV = S.iovec;
const H = S.cmsghdr;
/** Lengths handed to one call are capped so `ssize_t` results fit in an `i32`. */
const MAX_IO = 0x3fff_0000;
/** The largest `CMSG_LEN`/`CMSG_SPACE` argument whose result is still an exact integer here. */
const MAX_CMSG_DATA = Number.MAX_SAFE_INTEGER - H.size - H.align;

/** One ancillary item: `[cmsg_level, cmsg_type, cmsg_data]`, as Python's tuple. */
export type Ancillary = [level: number, type: number, data: Uint8Array];

/**
 * An ancillary item to send: `[cmsg_level, cmsg_type, cmsg_data]`; the data
 * may be any typed array (an `Int32Array` of fds for `SCM_RIGHTS`).
 */
export type AncillaryInput = [level: number, type: number, data: ArrayBufferView];

/** What `Socket.recvmsg` returns: `[data, ancdata, msgFlags, address]`, as Python's tuple. */
export type RecvmsgResult = [
  data: Uint8Array,
  ancdata: Ancillary[],
  msgFlags: number,
  address: Address | null,
];

/** What {@linkcode recvFds} returns: `[data, fds, msgFlags, address]`, as Python's tuple. */
export type RecvFdsResult = [
  data: Uint8Array,
  fds: number[],
  msgFlags: number,
  address: Address | null,
];

/** The socket calls {@linkcode sendFds} and {@linkcode recvFds} use (a `Socket`). */
export interface MessageSocket {
  /** See `Socket.sendmsg`. */
  sendmsg(
    buffers: BytesLike[],
    ancdata?: AncillaryInput[],
    flags?: number,
    address?: Address,
  ): number;
  /** See `Socket.recvmsg`. */
  recvmsg(bufsize: number, ancbufsize?: number, flags?: number): RecvmsgResult;
}

function alignCmsg(n: number): number {
  return Math.ceil(n / H.align) * H.align;
}

function checkCmsgLength(length: unknown, what: string): number {
  if (typeof length !== "number" || !Number.isInteger(length)) {
    throw new TypeError(`${what}() argument must be an integer, not ${length}`);
  }
  if (length < 0 || length > MAX_CMSG_DATA) throw new RangeError(`${what}() argument out of range`);
  return length;
}

/**
 * Python's `socket.CMSG_LEN`: the `cmsg_len` of an ancillary item carrying
 * `length` bytes (the header, then the data, without trailing padding).
 *
 * @throws {RangeError} When `length` is negative or too large (Python's `OverflowError`).
 * @example
 * ```ts
 * import { CMSG_LEN } from "@asyncore/deno";
 *
 * CMSG_LEN(0); // 16 on 64-bit Linux
 * CMSG_LEN(4 * 3); // room for three fds, as recvFds asks for
 * ```
 */
export function CMSG_LEN(length: number): number {
  return H.size + checkCmsgLength(length, "CMSG_LEN");
}

/**
 * Python's `socket.CMSG_SPACE`: the buffer space an ancillary item carrying
 * `length` bytes takes, padding included. Sum these for `recvmsg`'s
 * `ancbufsize` when several items may arrive.
 *
 * @throws {RangeError} When `length` is negative or too large (Python's `OverflowError`).
 * @example
 * ```ts
 * import { CMSG_SPACE } from "@asyncore/deno";
 *
 * const ancbufsize = CMSG_SPACE(4 * 2) + CMSG_SPACE(12); // two fds, then credentials
 * console.log(ancbufsize);
 * ```
 */
export function CMSG_SPACE(length: number): number {
  return H.size + alignCmsg(checkCmsgLength(length, "CMSG_SPACE"));
}

/**
 * The address of `buf`'s first byte, for a pointer inside a struct. Reading
 * `.buffer` first moves a small typed array that V8 keeps inside its heap
 * (where the collector may move it) to memory of its own that never moves.
 */
function addressOf(buf: Uint8Array): bigint {
  if (buf.byteLength === 0) return 0n;
  void buf.buffer;
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buf as Uint8Array<ArrayBuffer>)));
}

/** Bytes that stay where they are (an `ArrayBuffer`'s memory is never moved). */
function fixedBytes(n: number): Uint8Array {
  return new Uint8Array(new ArrayBuffer(n));
}

function writeLength(view: DataView, offset: number, size: 4 | 8, value: number): void {
  if (size === 8) view.setBigUint64(offset, BigInt(value), true);
  else view.setUint32(offset, value, true);
}

function readLength(view: DataView, offset: number, size: 4 | 8): number {
  return size === 8 ? Number(view.getBigUint64(offset, true)) : view.getUint32(offset, true);
}

function checkInt32(value: unknown, what: string): number {
  if (typeof value !== "number" || !Number.isInteger(value)) {
    throw new TypeError(`${what} must be an integer, not ${value}`);
  }
  if (value < -0x8000_0000 || value > 0x7fff_ffff) {
    throw new RangeError(`${what} out of range for a C int: ${value}`);
  }
  return value;
}

/** `data` of an ancillary item: bytes, or any typed array (an `Int32Array` of fds). */
function ancillaryBytes(data: unknown, i: number): Uint8Array {
  if (typeof data === "string") {
    throw new TypeError(`ancdata[${i}] data must be bytes or a typed array, not a string`);
  }
  return asBytes(data, `ancdata[${i}] data`, true);
}

/**
 * A `sendmsg` call, built: the `msghdr` with its `iovec` array, control
 * data and address, all held here until the call is made.
 */
export class SendMsg {
  /** The `struct msghdr` handed to `sendmsg(2)`. */
  readonly header: Uint8Array;
  /** Everything the header points at, kept reachable until the call is made. */
  readonly #keep: Uint8Array[];

  /**
   * Builds the call. Data is `buffers` in order (strings as UTF-8); each
   * ancillary item becomes one `cmsghdr` of `CMSG_SPACE(data.length)`
   * bytes; `address` (for an unconnected datagram socket) is encoded for
   * `family`.
   */
  constructor(
    family: number,
    type: number,
    buffers: readonly BytesLike[],
    ancdata: readonly AncillaryInput[],
    address: Address | undefined,
  ) {
    if (!Array.isArray(buffers)) {
      throw new TypeError("sendmsg() buffers must be an array of Uint8Array or string");
    }
    if (!Array.isArray(ancdata)) {
      throw new TypeError("sendmsg() ancdata must be an array of [level, type, data]");
    }
    const parts = buffers.map((b, i) => asBytes(b, `buffers[${i}]`));
    const items = ancdata.map((item, i): [number, number, Uint8Array] => {
      if (!Array.isArray(item) || item.length !== 3) {
        throw new TypeError(`ancdata[${i}] must be [level, type, data]`);
      }
      return [
        checkInt32(item[0], `ancdata[${i}] level`),
        checkInt32(item[1], `ancdata[${i}] type`),
        ancillaryBytes(item[2], i),
      ];
    });
    let total = 0;
    for (const p of parts) total += p.length;
    if (type === C.SOCK_STREAM && total === 0 && items.length > 0) {
      // Linux sends nothing for an empty stream write, ancillary data
      // included: passed fds would vanish while sendmsg reported success.
      throw new RangeError(
        "sendmsg() on a stream socket needs at least one byte of data to carry ancillary data",
      );
    }
    this.header = fixedBytes(M.size);
    const view = new DataView(this.header.buffer);
    const iov = fixedBytes(Math.max(1, parts.length) * IOV.size);
    const iovView = new DataView(iov.buffer);
    // A stream send may be partial, so one call's data is capped where its result still fits.
    let room = type === C.SOCK_STREAM ? MAX_IO : Infinity;
    for (let i = 0; i < parts.length; i++) {
      const len = Math.min(parts[i].length, room);
      room -= len;
      iovView.setBigUint64(i * IOV.size + IOV.base, addressOf(parts[i]), true);
      writeLength(iovView, i * IOV.size + IOV.len, 8, len);
    }
    this.#keep = [iov, ...parts];
    view.setBigUint64(M.iov, addressOf(iov), true);
    // No buffers is one empty iovec (zeroed above): the kernel sends the same empty message,
    // and qemu-user (the arm64 CI) sends nothing at all for msg_iovlen 0.
    writeLength(view, M.iovlen, M.lengthSize, Math.max(1, parts.length));
    if (items.length > 0) {
      let size = 0;
      for (const [, , data] of items) size += CMSG_SPACE(data.length);
      const control = fixedBytes(size);
      const cv = new DataView(control.buffer);
      let off = 0;
      for (const [level, kind, data] of items) {
        writeLength(cv, off + H.len, H.lenSize, CMSG_LEN(data.length));
        cv.setInt32(off + H.level, level, true);
        cv.setInt32(off + H.type, kind, true);
        control.set(data, off + H.size);
        off += CMSG_SPACE(data.length);
      }
      this.#keep.push(control);
      view.setBigUint64(M.control, addressOf(control), true);
      writeLength(view, M.controllen, M.lengthSize, size);
    }
    if (address !== undefined && address !== null) {
      const name = fixedBytes(S.sockaddrStorage);
      const len = encodeAddress(family, type, address, name);
      this.#keep.push(name);
      view.setBigUint64(M.name, addressOf(name), true);
      view.setUint32(M.namelen, len, true);
    }
  }

  /**
   * Lets go of the buffers the header points at. Call it after the
   * `sendmsg(2)`: the call is what keeps them alive until the kernel has
   * read them (the collector may free what no later code uses).
   */
  release(): void {
    this.#keep.length = 0;
  }
}

function checkBufsize(n: unknown, message: string): number {
  if (typeof n !== "number" || !Number.isInteger(n)) {
    throw new TypeError(`recvmsg() sizes must be integers, not ${n}`);
  }
  if (n < 0) throw new RangeError(message);
  return n;
}

/**
 * A `recvmsg` call, built: a data buffer of `bufsize` bytes, a control
 * buffer of `ancbufsize` bytes and room for the sender's address.
 */
export class RecvMsg {
  /** The `struct msghdr` handed to `recvmsg(2)`. */
  readonly header: Uint8Array;
  /** The flags to pass: the caller's, with `MSG_CMSG_CLOEXEC`. */
  readonly flags: number;
  readonly #data: Uint8Array;
  readonly #control: Uint8Array;
  readonly #name: Uint8Array;
  readonly #iov: Uint8Array;
  readonly #callerFlags: number;

  /** Builds the call (sizes checked as Python's `recvmsg` checks them). */
  constructor(bufsize: number, ancbufsize: number, flags: number) {
    const size = Math.min(checkBufsize(bufsize, "negative buffer size in recvmsg()"), MAX_IO);
    const ancsize = checkBufsize(ancbufsize, "invalid ancillary data buffer length");
    if (ancsize > 0x7fff_ffff) throw new RangeError("invalid ancillary data buffer length");
    this.#callerFlags = checkInt32(flags, "flags");
    this.flags = flags | C.MSG_CMSG_CLOEXEC;
    this.#data = fixedBytes(size);
    this.#control = fixedBytes(ancsize);
    this.#name = fixedBytes(S.sockaddrStorage);
    this.#iov = fixedBytes(IOV.size);
    this.header = fixedBytes(M.size);
    const iv = new DataView(this.#iov.buffer);
    iv.setBigUint64(IOV.base, addressOf(this.#data), true);
    writeLength(iv, IOV.len, 8, size);
    const view = new DataView(this.header.buffer);
    view.setBigUint64(M.name, addressOf(this.#name), true);
    view.setUint32(M.namelen, this.#name.length, true);
    view.setBigUint64(M.iov, addressOf(this.#iov), true);
    writeLength(view, M.iovlen, M.lengthSize, 1);
    if (ancsize > 0) {
      view.setBigUint64(M.control, addressOf(this.#control), true);
      writeLength(view, M.controllen, M.lengthSize, ancsize);
    }
  }

  /**
   * Reads the result of a call that returned `n` bytes: Python's `(data,
   * ancdata, msg_flags, address)`. Should reading it fail, the fds that
   * arrived are closed before the error is thrown.
   */
  result(n: number): RecvmsgResult {
    const view = new DataView(this.header.buffer);
    const ancdata = parseControl(
      this.#control,
      Math.min(readLength(view, M.controllen, M.lengthSize), this.#control.length),
    );
    try {
      let msgFlags = view.getInt32(M.flags, true);
      // The kernel echoes MSG_CMSG_CLOEXEC, which the caller did not ask for.
      if ((this.#callerFlags & C.MSG_CMSG_CLOEXEC) === 0) msgFlags &= ~C.MSG_CMSG_CLOEXEC;
      const namelen = view.getUint32(M.namelen, true);
      const address = namelen === 0 ? null : decodeSockaddr(this.#name, namelen);
      const data = n === this.#data.length ? this.#data : this.#data.slice(0, n);
      return [data, ancdata, msgFlags, address];
    } catch (error) {
      closeFds(fdsIn(ancdata));
      throw error;
    }
  }
}

/**
 * The items of a control buffer of `len` bytes, walked as glibc's
 * `CMSG_FIRSTHDR`/`CMSG_NXTHDR` do. An item the buffer cut short keeps the
 * data that arrived, as Python's `recvmsg` returns it.
 */
function parseControl(control: Uint8Array, len: number): Ancillary[] {
  const out: Ancillary[] = [];
  const view = new DataView(control.buffer, control.byteOffset, control.byteLength);
  for (let off = 0; off + H.size <= len;) {
    const cmsgLen = readLength(view, off + H.len, H.lenSize);
    if (cmsgLen < H.size) break;
    const end = Math.min(off + cmsgLen, len);
    out.push([
      view.getInt32(off + H.level, true),
      view.getInt32(off + H.type, true),
      control.slice(off + H.size, end),
    ]);
    off += alignCmsg(cmsgLen);
  }
  return out;
}

/** The fds carried by the `SCM_RIGHTS` items of `ancdata` (whole ints only, as Python reads them). */
function fdsIn(ancdata: Ancillary[]): number[] {
  const fds: number[] = [];
  for (const [level, type, data] of ancdata) {
    if (level !== C.SOL_SOCKET || type !== C.SCM_RIGHTS) continue;
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    for (let i = 0; i + 4 <= data.length; i += 4) fds.push(view.getInt32(i, true));
  }
  return fds;
}

/** Closes each of `fds` (received and not wanted). */
export function closeFds(fds: number[]): void {
  const lib = libc();
  // close(2) is never repeated: the fd is released even when it reports an error.
  for (const fd of fds) lib.close(fd);
}

/**
 * Python's `socket.send_fds`: sends `buffers` with the fds `fds` over a Unix
 * socket (`SCM_RIGHTS`); returns the bytes of data sent. The receiver gets
 * its own copies of the fds; those here stay open. Unlike Python 3.11, whose
 * `send_fds` drops them, `flags` and `address` are passed on.
 *
 * A stream socket needs at least one byte of data with the fds (Linux sends
 * nothing for an empty stream write, fds included): that is a
 * `RangeError` here, where Python would report 0 bytes sent and lose them.
 *
 * @param sock An `AF_UNIX` socket.
 * @param buffers The data, sent in order.
 * @param fds Open fds (C ints) to pass.
 * @param flags `MSG_*` flags.
 * @param address The destination of an unconnected datagram socket.
 * @returns The number of data bytes sent.
 * @throws {OSError} From `sendmsg(2)` (`EBADF` for an fd that is not open, `ETOOMANYREFS`, ...).
 * @example Handing a listening socket to another process
 * ```ts
 * import { createServer, sendFds, socketpair } from "@asyncore/deno";
 *
 * const [unixConn, successor] = socketpair(); // in real use, a Unix socket to the other process
 * using listener = createServer(["127.0.0.1", 0]);
 * sendFds(unixConn, ["listener"], [listener.fileno()]);
 * unixConn.close();
 * successor.close();
 * ```
 */
export function sendFds(
  sock: MessageSocket,
  buffers: BytesLike[],
  fds: number[],
  flags = 0,
  address?: Address,
): number {
  if (!Array.isArray(fds)) throw new TypeError("sendFds() fds must be an array of integers");
  const ints = new Int32Array(fds.length);
  fds.forEach((fd, i) => ints[i] = checkInt32(fd, `fds[${i}]`));
  return sock.sendmsg(buffers, [[C.SOL_SOCKET, C.SCM_RIGHTS, ints]], flags, address);
}

/**
 * Python's `socket.recv_fds`: receives up to `bufsize` bytes of data and up
 * to `maxfds` fds: `[data, fds, msgFlags, address]`. The fds are new in this
 * process and close-on-exec; closing them is the caller's job.
 *
 * When more fds came than `maxfds` (the kernel sets `MSG_CTRUNC` in
 * `msgFlags` and drops the rest), the fds that did arrive are closed here
 * and `fds` is empty: a partial set is never handed out, and none is left
 * open unseen. Python returns the partial set.
 *
 * @param sock An `AF_UNIX` socket.
 * @param bufsize The most data bytes to take.
 * @param maxfds The most fds to take.
 * @param flags `MSG_*` flags.
 * @returns `[data, fds, msgFlags, address]`; `address` is null on a connected socket.
 * @throws {RangeError} When `bufsize` or `maxfds` is negative.
 * @example Taking over listening sockets sent by another process
 * ```ts
 * import { createServer, MSG_CTRUNC, recvFds, sendFds, Socket, socketpair } from "@asyncore/deno";
 *
 * const [predecessor, unixConn] = socketpair(); // in real use, a Unix socket to the other process
 * using old = createServer(["127.0.0.1", 0]);
 * sendFds(predecessor, ["listener"], [old.fileno()]);
 *
 * const [data, fds, flags] = recvFds(unixConn, 1024, 16);
 * if (flags & MSG_CTRUNC) throw new Error("more fds than expected");
 * const listeners = fds.map((fd) => Socket.fromFd(fd));
 * console.log(new TextDecoder().decode(data), listeners.map((s) => s.getsockname()));
 * for (const s of [...listeners, predecessor, unixConn]) s.close();
 * ```
 */
export function recvFds(
  sock: MessageSocket,
  bufsize: number,
  maxfds: number,
  flags = 0,
): RecvFdsResult {
  if (typeof maxfds !== "number" || !Number.isInteger(maxfds) || maxfds < 0) {
    throw new RangeError(`maxfds must be a non-negative integer, not ${maxfds}`);
  }
  const [data, ancdata, msgFlags, address] = sock.recvmsg(bufsize, CMSG_LEN(maxfds * 4), flags);
  const fds = fdsIn(ancdata);
  if ((msgFlags & C.MSG_CTRUNC) !== 0) {
    closeFds(fds);
    return [data, [], msgFlags, address];
  }
  return [data, fds, msgFlags, address];
}
