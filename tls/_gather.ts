/**
 * Where channel-driven TLS sessions write their records: one OpenSSL memory
 * BIO per thread (a loop is single-threaded, and each Deno worker loads its
 * own copy of this module), set as the write BIO of every such session.
 * `SSL_write` then never touches the fd: the records of one pass gather in
 * this buffer and leave with one `send` (envoy, h2o and rustls write the
 * same way), straight from where OpenSSL wrote them, with no copy into JS.
 *
 * The buffer holds one session's records at a time, its owner's. A session
 * claims it before any `SSL_*` call that may write (a write, a handshake
 * step, a read that answers a key update, a shutdown): records of the
 * previous owner go out first, so no session's records ever interleave with
 * another's. One buffer for all sessions costs nothing per idle connection;
 * it grows to the largest batch a session gathers (`GATHER_MAX`, about
 * 64 KiB) and stays that size.
 *
 * @module
 */

import { attempt } from "../ffi/_syscall.ts";
import { errno as E } from "../ffi/errno.ts";
import { openssl, SSLC } from "../ffi/openssl.ts";
import { C } from "../ffi/platform.ts";
import { libc } from "../ffi/symbols.ts";

/** A session whose records may wait in the shared buffer. */
export interface GatherOwner {
  /** Another session needs the buffer: send the records now, and copy out what the kernel refuses. */
  vacate(): void;
}

let bio: Deno.PointerObject | null = null;
let owner: GatherOwner | null = null;
/** BIO_get_mem_data's out-parameter: the address of the first unsent byte. */
const addrOut = new BigUint64Array(1);
const addrOutBytes = new Uint8Array(addrOut.buffer);
const EAGAIN = E.EAGAIN;
const SEND_FLAGS = C.MSG_NOSIGNAL;

/** The shared buffer, with one more reference taken for an `SSL` (SSL_set0_wbio takes it over). */
export function sharedWriteBio(): Deno.PointerObject {
  const { crypto } = openssl();
  if (bio === null) {
    const b = crypto.BIO_new(crypto.BIO_s_mem());
    if (b === null) throw new Error("BIO_new(BIO_s_mem()) failed (out of memory?)");
    bio = b; // this module's own reference: the buffer outlives every session
  }
  crypto.BIO_up_ref(bio);
  return bio;
}

/** Makes `o` the owner: another owner's records are sent first. */
export function claim(o: GatherOwner): void {
  const prev = owner;
  if (prev === o) return;
  if (prev !== null && pendingBytes() > 0) prev.vacate();
  owner = o;
}

/** Whether `o` owns the buffer now. */
export function owns(o: GatherOwner): boolean {
  return owner === o;
}

/** `o` is going away: it no longer owns the buffer (what it left is dropped). */
export function disown(o: GatherOwner): void {
  if (owner !== o) return;
  owner = null;
  discard();
}

/** The bytes gathered and not yet sent. */
export function pendingBytes(): number {
  return bio === null ? 0 : openssl().crypto.BIO_ctrl(bio, SSLC.BIO_CTRL_INFO, 0n, null);
}

/** Drops everything gathered (its session failed or closed without sending). */
export function discard(): void {
  if (bio === null) return;
  const crypto = openssl().crypto;
  const n = crypto.BIO_ctrl(bio, SSLC.BIO_CTRL_INFO, 0n, null);
  if (n > 0) crypto.BIO_ctrl(bio, SSLC.BIO_C_FILE_SEEK, BigInt(n), null);
}

// Seeks are absolute (from the front of the BIO's buffer), and the read
// position is at the front whenever bytes are gathered: every write moves
// what is unread to the front first, and a send that leaves part of the
// bytes moves that part to the front (sendGathered).

/**
 * One `send` of everything gathered to `fd`, from OpenSSL's memory (what
 * the kernel takes leaves the buffer): the bytes still gathered afterwards,
 * or -errno for a failure other than EAGAIN (the buffer is then left as it
 * was: the caller drops it).
 */
export function sendGathered(fd: number): number {
  if (bio === null) return 0;
  const crypto = openssl().crypto;
  const n = crypto.BIO_ctrl(bio, SSLC.BIO_CTRL_INFO, 0n, addrOutBytes);
  if (n <= 0) return 0;
  const lib = libc();
  const addr = addrOut[0];
  const len = BigInt(n);
  const r = attempt(() => lib.sendAddress(fd, addr, len, SEND_FLAGS), EAGAIN);
  if (r === -EAGAIN) return n;
  if (r < 0) return r;
  // A memory BIO's read position moves by seeking: nothing is copied. The
  // next write then starts again at the front of its buffer.
  crypto.BIO_ctrl(bio, SSLC.BIO_C_FILE_SEEK, BigInt(r), null);
  // Part refused: the rest moves to the front of the buffer (a memmove
  // inside OpenSSL, BIO_get_mem_ptr's sync), so the read position is at
  // the front again, as the next seek needs.
  if (r < n) crypto.BIO_ctrl(bio, SSLC.BIO_C_GET_BUF_MEM_PTR, 0n, addrOutBytes);
  return n - r;
}

/** Copies what is still gathered into a new array and empties the buffer (the kernel refused it). */
export function takeGathered(): Uint8Array {
  const n = pendingBytes();
  const out = new Uint8Array(Math.max(0, n));
  if (n > 0) openssl().crypto.BIO_read(bio, out, n);
  return out;
}
