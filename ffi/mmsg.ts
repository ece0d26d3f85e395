/**
 * Datagrams in batches: `recvmmsg(2)` and `sendmmsg(2)` over a
 * {@linkcode MessageBatch}, the preallocated memory they work in. One
 * system call moves up to `capacity` datagrams, and a call allocates
 * nothing per datagram: the `mmsghdr` array, one `iovec` and one
 * `sockaddr_storage` per message and the data slab are made once, with their
 * pointers written once; a call writes and reads only integers. Layouts come
 * from the platform table (`msghdr`, `mmsghdr`, `iovec`).
 *
 * @module
 */

import { attempt, check, osError } from "./_syscall.ts";
import { errno as E } from "./errno.ts";
import { C, platform } from "./platform.ts";
import { encodeAddress } from "./resolve.ts";
import { type Address, decodeSockaddr } from "./structs.ts";
import { libc } from "./symbols.ts";

const S = platform.structs;
const M = S.msghdr;
const MM = S.mmsghdr;
const IOV = S.iovec;
const STORAGE = S.sockaddrStorage;
/** The kernel handles at most `UIO_MAXIOV` messages per call (and silently caps more). */
export const MAX_BATCH = 1024;
/** The most memory one batch's data may take. */
const MAX_SLAB = 1 << 28;
/** Asks `recvfrom` for a datagram's whole length (Linux); Winsock has no such input flag. */
const TRUNC_FLAG = platform.winsock ? 0 : C.MSG_TRUNC;

/**
 * Whether this platform has `recvmmsg(2)` and `sendmmsg(2)` (Linux; not
 * Windows, where a datagram dispatcher makes one call per datagram).
 */
export function hasBatchCalls(): boolean {
  const lib = libc();
  return lib.recvmmsg !== null && lib.sendmmsg !== null;
}

/** A pointer to the `offset`th byte of an `ArrayBuffer` (whose memory never moves). */
function pointerTo(buffer: ArrayBuffer, offset: number): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buffer))) + BigInt(offset);
}

/**
 * Preallocated room for `capacity` datagrams of up to `size` bytes each,
 * with their lengths and addresses, for `Socket.recvmmsgInto` and
 * `Socket.sendmmsg`. After a receive of `n` messages, message `i < n` is
 * `buffers[i].subarray(0, lengths[i])` from `address(i)`; to send, fill
 * `buffers[i]`, set `lengths[i]` and (on an unconnected socket)
 * `setAddress(i, ...)`. A received batch sent as it is goes back to each
 * sender: the echo of every datagram in one call each way.
 *
 * @example A UDP echo, 64 datagrams per system call
 * ```ts no-run
 * import { AF_INET, MessageBatch, SOCK_DGRAM, Socket } from "@asyncore/deno";
 *
 * const sock = new Socket(AF_INET, SOCK_DGRAM);
 * sock.bind(["127.0.0.1", 9999]);
 * const batch = new MessageBatch(64, 2048);
 * for (;;) { // serves until the process is stopped
 *   const n = sock.recvmmsgInto(batch); // waits for the first, takes what is queued
 *   for (let sent = 0; sent < n;) sent += sock.sendmmsg(batch, n - sent, 0, sent);
 * }
 * ```
 */
export class MessageBatch {
  /** The most messages one call moves. */
  readonly capacity: number;
  /** The room for each message's data, in bytes. */
  readonly size: number;
  /** One view of `size` bytes per message, over one slab. */
  readonly buffers: readonly Uint8Array[];
  /**
   * Each message's length: written by a receive (a datagram longer than
   * `size` arrives cut, with `MSG_TRUNC` in `flags(i)`), read by a send.
   */
  readonly lengths: Uint32Array;
  /** The `struct mmsghdr` array (internal: handed to the kernel). */
  readonly _headers: Uint8Array;
  readonly #hdr: Uint32Array;
  readonly #iov: Uint32Array;
  readonly #names: Uint8Array;

  /**
   * Allocates the batch.
   *
   * @param capacity Messages per call, 1-1024 (the kernel's `UIO_MAXIOV`). Default 64.
   * @param size Bytes of room per message, at least 1. Default 2048 (an Ethernet frame fits).
   * @throws {RangeError} For a capacity or size out of range.
   */
  constructor(capacity = 64, size = 2048) {
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > MAX_BATCH) {
      throw new RangeError(`capacity must be an integer 1-${MAX_BATCH}, not ${capacity}`);
    }
    if (!Number.isInteger(size) || size < 1 || size * capacity > MAX_SLAB) {
      throw new RangeError(
        `size must be an integer >= 1 with capacity * size <= ${MAX_SLAB}, not ${size}`,
      );
    }
    this.capacity = capacity;
    this.size = size;
    const slab = new ArrayBuffer(capacity * size);
    const headers = new ArrayBuffer(capacity * MM.size);
    const iovs = new ArrayBuffer(capacity * IOV.size);
    const names = new ArrayBuffer(capacity * STORAGE);
    this.buffers = Array.from({ length: capacity }, (_, i) => new Uint8Array(slab, i * size, size));
    this.lengths = new Uint32Array(capacity);
    this._headers = new Uint8Array(headers);
    this.#hdr = new Uint32Array(headers);
    this.#iov = new Uint32Array(iovs);
    this.#names = new Uint8Array(names);
    const hv = new DataView(headers);
    const iv = new DataView(iovs);
    for (let i = 0; i < capacity; i++) {
      const h = i * MM.size;
      iv.setBigUint64(i * IOV.size + IOV.base, pointerTo(slab, i * size), true);
      hv.setBigUint64(h + M.name, pointerTo(names, i * STORAGE), true);
      hv.setBigUint64(h + M.iov, pointerTo(iovs, i * IOV.size), true);
      // One iovec per message; msg_iovlen's width varies by platform, its low bytes come first.
      hv.setUint32(h + M.iovlen, 1, true);
    }
  }

  #check(i: number): void {
    if (!Number.isInteger(i) || i < 0 || i >= this.capacity) {
      throw new RangeError(`message index must be an integer 0-${this.capacity - 1}, not ${i}`);
    }
  }

  /** The data of message `i`: `buffers[i].subarray(0, lengths[i])`. */
  data(i: number): Uint8Array {
    this.#check(i);
    return this.buffers[i].subarray(0, Math.min(this.lengths[i], this.size));
  }

  /** The `msg_flags` the kernel gave message `i` on receipt (`MSG_TRUNC`: it was cut). */
  flags(i: number): number {
    this.#check(i);
    return this.#hdr[(i * MM.size + M.flags) >> 2] | 0;
  }

  /**
   * The address of message `i`: its sender after a receive, its destination
   * for a send; null when there is none (a connected socket's messages).
   */
  address(i: number): Address | null {
    this.#check(i);
    const len = this.#hdr[(i * MM.size + M.namelen) >> 2];
    if (len === 0) return null;
    return decodeSockaddr(this.#names.subarray(i * STORAGE, (i + 1) * STORAGE), len);
  }

  /**
   * Sets the destination of message `i` (encoded for `family`, as `sendto`
   * would), or none with `null` (a connected socket).
   */
  setAddress(i: number, address: Address | null, family: number = C.AF_INET): void {
    this.#check(i);
    let len = 0;
    if (address !== null) {
      const out = this.#names.subarray(i * STORAGE, (i + 1) * STORAGE);
      len = encodeAddress(family, C.SOCK_DGRAM, address, out);
    }
    this.#hdr[(i * MM.size + M.namelen) >> 2] = len;
  }

  /** Copies the address of message `j` of `from` to message `i` here, as raw bytes. */
  copyAddress(i: number, from: MessageBatch, j: number): void {
    this.#check(i);
    from.#check(j);
    this.#names.set(from.#names.subarray(j * STORAGE, (j + 1) * STORAGE), i * STORAGE);
    this.#hdr[(i * MM.size + M.namelen) >> 2] = from.#hdr[(j * MM.size + M.namelen) >> 2];
  }

  /**
   * Whether message `i` arrived cut: it was longer than `size` (`MSG_TRUNC`
   * in its flags). Windows does not tell: there a datagram that filled its
   * buffer exactly may have been longer.
   */
  truncated(i: number): boolean {
    return (this.flags(i) & C.MSG_TRUNC) !== 0;
  }

  /**
   * One `recvfrom(2)` on `fd` into message `i`, as `recvmmsg` would fill it
   * (length, sender, `MSG_TRUNC`): the datagram's length, or -1 when none is
   * queued and `expected` is `EAGAIN`. The one-call-per-datagram path, for
   * platforms without the batch calls. Internal.
   */
  _recvOne(fd: number, i: number, flags: number, expected: number): number {
    const h = i * MM.size;
    const hdr = this.#hdr;
    hdr[(h + M.namelen) >> 2] = STORAGE;
    hdr[(h + M.flags) >> 2] = 0;
    const nameLen = hdr.subarray((h + M.namelen) >> 2, ((h + M.namelen) >> 2) + 1);
    const name = this.#names.subarray(i * STORAGE, (i + 1) * STORAGE);
    const buf = this.buffers[i];
    const lib = libc();
    // Linux's MSG_TRUNC makes recvfrom return the datagram's whole length.
    const fl = flags | TRUNC_FLAG;
    const r = attempt(() => lib.recvfrom(fd, buf, BigInt(buf.length), fl, name, nameLen), expected);
    if (r === -E.EAGAIN && expected === E.EAGAIN) return -1;
    check(r, "recvfrom");
    this.lengths[i] = Math.min(r, this.size);
    if (r > this.size) hdr[(h + M.flags) >> 2] = C.MSG_TRUNC;
    return this.lengths[i];
  }

  /**
   * One `sendto(2)` on `fd` of message `i` (`lengths[i]` bytes to its
   * address, or none on a connected socket): the bytes sent, or -1 when it
   * would block and `expected` is `EAGAIN`. Internal.
   */
  _sendOne(fd: number, i: number, flags: number, expected: number): number {
    this._prepareSend(i, 1);
    const len = this.#hdr[(i * MM.size + M.namelen) >> 2];
    // A connected socket's message has no address: NULL, as the kernel wants it.
    const name = len === 0 ? null : this.#names.subarray(i * STORAGE, (i + 1) * STORAGE);
    const buf = this.buffers[i];
    const n = BigInt(this.lengths[i]);
    const lib = libc();
    const fl = flags | C.MSG_NOSIGNAL;
    const r = attempt(() => lib.sendto(fd, buf, n, fl, name, len), expected);
    if (r === -E.EAGAIN && expected === E.EAGAIN) return -1;
    return check(r, "sendto");
  }

  /** Readies messages `0..n-1` for a receive: full buffers, room for any address. */
  _prepareReceive(n: number): void {
    const hdr = this.#hdr, iov = this.#iov;
    for (let i = 0; i < n; i++) {
      const h = i * MM.size;
      hdr[(h + M.namelen) >> 2] = STORAGE;
      hdr[(h + M.flags) >> 2] = 0;
      iov[(i * IOV.size + IOV.len) >> 2] = this.size;
    }
  }

  /** Records the lengths of the `n` messages a receive filled. */
  _finishReceive(n: number): void {
    const hdr = this.#hdr, lengths = this.lengths;
    for (let i = 0; i < n; i++) lengths[i] = hdr[(i * MM.size + MM.len) >> 2];
  }

  /** Readies messages `start..start+n-1` for a send: each `iov_len` from `lengths`. */
  _prepareSend(start: number, n: number): void {
    const iov = this.#iov, lengths = this.lengths;
    for (let i = start; i < start + n; i++) {
      const len = lengths[i];
      if (len > this.size) {
        throw new RangeError(`lengths[${i}] is ${len}, more than the batch's size ${this.size}`);
      }
      iov[(i * IOV.size + IOV.len) >> 2] = len;
    }
  }
}

function checkCount(batch: MessageBatch, count: number, start: number, call: string): void {
  if (!(batch instanceof MessageBatch)) throw new TypeError(`${call} needs a MessageBatch`);
  if (!Number.isInteger(start) || start < 0 || start > batch.capacity) {
    throw new RangeError(`start must be an integer 0-${batch.capacity}, not ${start}`);
  }
  if (!Number.isInteger(count) || count < 0 || start + count > batch.capacity) {
    throw new RangeError(
      `count must be an integer 0-${batch.capacity - start} for this batch, not ${count}`,
    );
  }
}

/**
 * One `recvmmsg(2)` on `fd` into the first `count` messages of `batch`:
 * returns how many arrived, or -1 when none is queued and `expected` is
 * `EAGAIN` (a non-blocking socket). `MSG_WAITFORONE` is always passed: a
 * blocking socket waits for the first datagram only, then takes what is
 * already queued.
 */
export function recvmmsgInto(
  fd: number,
  batch: MessageBatch,
  count: number,
  flags: number,
  expected: number,
): number {
  checkCount(batch, count, 0, "recvmmsgInto");
  if (count === 0) return 0;
  const recvmmsg = libc().recvmmsg;
  if (!recvmmsg) throw osError(E.ENOSYS, "recvmmsg");
  batch._prepareReceive(count);
  const headers = batch._headers;
  const fl = flags | C.MSG_WAITFORONE;
  const r = attempt(() => recvmmsg(fd, headers, count, fl, null), expected);
  if (r === -E.EAGAIN && expected === E.EAGAIN) return -1;
  check(r, "recvmmsg");
  batch._finishReceive(r);
  return r;
}

/**
 * One `sendmmsg(2)` on `fd` of messages `start..start+count-1` of `batch`:
 * returns how many went (fewer when the socket buffer filled; send the rest
 * from `start + n`), or -1 when none could go and `expected` is `EAGAIN`.
 */
export function sendmmsg(
  fd: number,
  batch: MessageBatch,
  count: number,
  flags: number,
  start: number,
  expected: number,
): number {
  checkCount(batch, count, start, "sendmmsg");
  if (count === 0) return 0;
  const send = libc().sendmmsg;
  if (!send) throw osError(E.ENOSYS, "sendmmsg");
  batch._prepareSend(start, count);
  const headers = start === 0 ? batch._headers : batch._headers.subarray(start * MM.size);
  const fl = flags | C.MSG_NOSIGNAL;
  const r = attempt(() => send(fd, headers, count, fl), expected);
  if (r === -E.EAGAIN && expected === E.EAGAIN) return -1;
  return check(r, "sendmmsg");
}
