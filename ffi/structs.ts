/**
 * Struct codecs: socket addresses, `pollfd` arrays, `timeval` and `fd_set`.
 * Plain byte work over `Uint8Array`s, no FFI calls; layouts come from the
 * platform table.
 *
 * @module
 */

import { OSError } from "./errno.ts";
import { C, platform } from "./platform.ts";

const S = platform.structs;
const P = S.pollfd;
const { AF_INET, AF_INET6, AF_UNIX } = C;
const FAMILY_HAS_LEN = S.sockaddrFamily === "len-u8";
/** WSAPOLLFD's `fd` is a 64-bit SOCKET (Windows); a pollfd's is a 32-bit int. */
const FD64 = P.fdSize === 8;
const TWO32 = 2 ** 32;

/**
 * A socket address as Python spells it: `[host, port]` for IPv4,
 * `[host, port, flowinfo, scopeId]` for IPv6 (`[host, port]` is accepted),
 * a path string for Unix sockets (a leading `"\0"` names the abstract
 * namespace).
 */
export type Address =
  | [host: string, port: number]
  | [host: string, port: number, flowinfo: number, scopeId: number]
  | string;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Throws a `TypeError` unless `addr` has the shape family `family` takes. */
export function checkAddressShape(family: number, addr: unknown): void {
  if (family === AF_UNIX) {
    if (typeof addr !== "string") {
      throw new TypeError(`AF_UNIX address must be a path string, not ${describe(addr)}`);
    }
    return;
  }
  const max = family === AF_INET6 ? 4 : 2;
  if (
    !Array.isArray(addr) || addr.length < 2 || addr.length > max ||
    typeof addr[0] !== "string" || addr.slice(1).some((v) => typeof v !== "number")
  ) {
    const want = family === AF_INET6
      ? "[host, port] or [host, port, flowinfo, scopeId]"
      : "[host, port]";
    throw new TypeError(
      `${familyName(family)} address must be ${want}, not ${describe(addr)}`,
    );
  }
  const port = addr[1] as number;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(`port must be an integer 0-65535, not ${port}`);
  }
}

function describe(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/** `"AF_INET"`, `"AF_INET6"`, `"AF_UNIX"` or the number. */
export function familyName(family: number): string {
  if (family === AF_INET) return "AF_INET";
  if (family === AF_INET6) return "AF_INET6";
  if (family === AF_UNIX) return "AF_UNIX";
  return `address family ${family}`;
}

/** Parses a dotted-quad IPv4 literal into 4 bytes, or returns `null`. */
export function parseIPv4(host: string): Uint8Array | null {
  const parts = host.split(".");
  if (parts.length !== 4) return null;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i];
    // No leading zeros: libc reads "010" as octal, so such text is left to getaddrinfo
    // (as Python's inet_pton-first lookup does) instead of being read as decimal here.
    if (!/^(0|[1-9]\d{0,2})$/.test(p)) return null;
    const v = Number(p);
    if (v > 255) return null;
    out[i] = v;
  }
  return out;
}

/** Formats 4 bytes as a dotted quad. */
export function formatIPv4(b: Uint8Array): string {
  return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
}

/** Formats 16 bytes as RFC 5952 text (`::1`, `::ffff:1.2.3.4`), as `inet_ntop` does. */
export function formatIPv6(b: Uint8Array): string {
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push((b[i] << 8) | b[i + 1]);
  if (words.slice(0, 5).every((w) => w === 0) && words[5] === 0xffff) {
    return `::ffff:${formatIPv4(b.subarray(12))}`;
  }
  // glibc's inet_ntop also writes an IPv4-compatible address (::a.b.c.d) dotted;
  // `::` and `::1` stay as they are, since their seventh word (words[6]) is zero.
  if (words.slice(0, 6).every((w) => w === 0) && words[6] !== 0) {
    return `::${formatIPv4(b.subarray(12))}`;
  }
  let bestStart = -1, bestLen = 0;
  for (let i = 0; i < 8;) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) [bestStart, bestLen] = [i, j - i];
    i = j;
  }
  const hex = (ws: number[]) => ws.map((w) => w.toString(16)).join(":");
  if (bestStart < 0) return hex(words);
  return `${hex(words.slice(0, bestStart))}::${hex(words.slice(bestStart + bestLen))}`;
}

/** Writes a `sockaddr_in` into `out`; returns its length. */
export function encodeSockaddrIn(out: Uint8Array, ip: Uint8Array, port: number): number {
  out.fill(0, 0, S.sockaddrIn);
  const view = new DataView(out.buffer, out.byteOffset, S.sockaddrIn);
  writeFamily(out, AF_INET, S.sockaddrIn);
  view.setUint16(2, port, false);
  out.set(ip, 4);
  return S.sockaddrIn;
}

/** Writes a `sockaddr_in6` into `out`; returns its length. */
export function encodeSockaddrIn6(
  out: Uint8Array,
  ip: Uint8Array,
  port: number,
  flowinfo = 0,
  scopeId = 0,
): number {
  if (!Number.isInteger(flowinfo) || flowinfo < 0 || flowinfo > 0xfffff) {
    throw new RangeError(`flowinfo must be an integer 0-1048575, not ${flowinfo}`);
  }
  if (!Number.isInteger(scopeId) || scopeId < 0 || scopeId > 0xffffffff) {
    throw new RangeError(`scopeId must be a 32-bit unsigned integer, not ${scopeId}`);
  }
  out.fill(0, 0, S.sockaddrIn6);
  const view = new DataView(out.buffer, out.byteOffset, S.sockaddrIn6);
  writeFamily(out, AF_INET6, S.sockaddrIn6);
  view.setUint16(2, port, false);
  view.setUint32(4, flowinfo, false);
  out.set(ip, 8);
  view.setUint32(24, scopeId, true);
  return S.sockaddrIn6;
}

/**
 * Writes a `sockaddr_un` for `path` into `out`; returns its length. A path
 * longer than the kernel's `sun_path` is an `OSError(ENAMETOOLONG)`.
 */
export function encodeSockaddrUn(out: Uint8Array, path: string): number {
  const bytes = encoder.encode(path);
  if (bytes.length === 0) {
    // As in Python on Linux: an empty path is the bare family, which autobinds
    // to a fresh abstract name (a 3-byte address would name "\0" itself).
    out.fill(0, 0, S.sunPathOffset + S.sunPathMax);
    writeFamily(out, AF_UNIX, S.sunPathOffset);
    return S.sunPathOffset;
  }
  const abstract = bytes[0] === 0;
  if (bytes.length > S.sunPathMax) {
    throw new OSError(platform.errno.ENAMETOOLONG, {
      message: `AF_UNIX path too long: ${bytes.length} bytes, the limit is ${S.sunPathMax}`,
      filename: path.length > 40 ? `${path.slice(0, 37)}...` : path,
    });
  }
  if (bytes.includes(0, abstract ? 1 : 0)) {
    throw new TypeError("AF_UNIX path must not contain NUL bytes");
  }
  out.fill(0, 0, S.sunPathOffset + S.sunPathMax);
  out.set(bytes, S.sunPathOffset);
  // A filesystem path carries its NUL when it fits; an abstract name is counted exactly.
  const nul = abstract || bytes.length === S.sunPathMax ? 0 : 1;
  const len = S.sunPathOffset + bytes.length + nul;
  writeFamily(out, AF_UNIX, len);
  return len;
}

/**
 * Writes the family field of a `sockaddr` of `len` bytes: a 16-bit
 * `sa_family` (Linux) or an 8-bit `sa_len` and an 8-bit `sa_family` (BSD),
 * as the platform table says.
 */
function writeFamily(out: Uint8Array, family: number, len: number): void {
  if (FAMILY_HAS_LEN) {
    out[0] = len;
    out[1] = family;
  } else {
    out[0] = family & 0xff;
    out[1] = family >> 8;
  }
}

/** Decodes the address family of a `sockaddr` (its layout from the platform table). */
export function sockaddrFamily(buf: Uint8Array): number {
  return FAMILY_HAS_LEN ? buf[1] : buf[0] | (buf[1] << 8);
}

// The text of the last IPv4 address decoded: a server decodes the same few
// peers over and over (twice per accepted connection).
let lastIPv4 = -1;
let lastIPv4Text = "";

function ipv4Text(buf: Uint8Array): string {
  const ip = ((buf[4] << 24) | (buf[5] << 16) | (buf[6] << 8) | buf[7]) >>> 0;
  if (ip !== lastIPv4) {
    lastIPv4 = ip;
    lastIPv4Text = formatIPv4(buf.subarray(4, 8));
  }
  return lastIPv4Text;
}

/** Decodes a `sockaddr` of `len` bytes into an {@linkcode Address}. */
export function decodeSockaddr(buf: Uint8Array, len: number): Address {
  // Too short to hold a family (recvfrom from an unbound Unix socket gives 0):
  // the buffer still holds an older address, so nothing may be read from it.
  if (len < 2) return "";
  const family = sockaddrFamily(buf);
  // Read byte by byte: every accept decodes one, and a DataView or subarray
  // per call costs more than the decoding.
  const port = (buf[2] << 8) | buf[3];
  if (family === AF_INET) return [ipv4Text(buf), port];
  if (family === AF_INET6) {
    const flowinfo = ((buf[4] << 24) | (buf[5] << 16) | (buf[6] << 8) | buf[7]) >>> 0;
    const scopeId = (buf[24] | (buf[25] << 8) | (buf[26] << 16) | (buf[27] << 24)) >>> 0;
    return [formatIPv6(buf.subarray(8, 24)), port, flowinfo, scopeId];
  }
  if (family === AF_UNIX) {
    let path = buf.subarray(S.sunPathOffset, Math.max(len, S.sunPathOffset));
    if (path.length > 0 && path[0] !== 0) {
      const nul = path.indexOf(0);
      if (nul >= 0) path = path.subarray(0, nul);
    }
    return decoder.decode(path);
  }
  throw new TypeError(`cannot decode an address of family ${family}`);
}

/**
 * A reusable array of `struct pollfd`: grows when needed, never shrinks,
 * so a steady loop allocates nothing.
 */
export class PollFdArray {
  /** The raw bytes handed to `poll(2)`. */
  bytes: Uint8Array = new Uint8Array(64 * P.size);
  #view = new DataView(this.bytes.buffer);

  /** Makes room for `n` entries. */
  reserve(n: number): void {
    if (n * P.size <= this.bytes.length) return;
    let size = this.bytes.length;
    while (size < n * P.size) size *= 2;
    const bigger = new Uint8Array(size);
    bigger.set(this.bytes);
    this.bytes = bigger;
    this.#view = new DataView(bigger.buffer);
  }

  /** Sets entry `i` (call {@linkcode reserve} first). */
  set(i: number, fd: number, events: number): void {
    const o = i * P.size;
    if (FD64) {
      // A negative fd is INVALID_SOCKET (all ones), which WSAPoll skips as poll(2) skips -1.
      this.#view.setUint32(o + P.fd, fd < 0 ? 0xffff_ffff : fd % TWO32, true);
      this.#view.setUint32(o + P.fd + 4, fd < 0 ? 0xffff_ffff : Math.floor(fd / TWO32), true);
    } else {
      this.#view.setInt32(o + P.fd, fd, true);
    }
    this.#view.setInt16(o + P.events, events, true);
    this.#view.setInt16(o + P.revents, 0, true);
  }

  /** The `fd` of entry `i`. */
  fd(i: number): number {
    const o = i * P.size + P.fd;
    if (FD64) {
      const high = this.#view.getUint32(o + 4, true);
      return high === 0xffff_ffff ? -1 : this.#view.getUint32(o, true) + high * TWO32;
    }
    return this.#view.getInt32(o, true);
  }

  /** The `revents` of entry `i`. */
  revents(i: number): number {
    return this.#view.getUint16(i * P.size + P.revents, true);
  }

  /** The `events` asked for in entry `i`. */
  events(i: number): number {
    return this.#view.getUint16(i * P.size + P.events, true);
  }
}

/** Writes `seconds` (fractions allowed) as a `struct timeval`. */
export function encodeTimeval(out: Uint8Array, seconds: number): void {
  const view = new DataView(out.buffer, out.byteOffset, S.timeval);
  const whole = Math.floor(seconds);
  const micros = Math.min(999_999, Math.round((seconds - whole) * 1e6));
  if (S.timeval === 8) {
    // Windows: two 32-bit longs (a wait of more than 68 years is not asked for).
    view.setInt32(0, Math.min(whole, 0x7fffffff), true);
    view.setInt32(4, micros, true);
    return;
  }
  view.setBigInt64(0, BigInt(whole), true);
  view.setBigInt64(8, BigInt(micros), true);
}

/** What `select()` takes for each of its three sets: a bitmap or a handle list. */
export interface SelectSet {
  /** The raw bytes handed to `select`. */
  readonly bytes: Uint8Array;
  /** Empties the set. */
  clear(): void;
  /** Adds `fd`; a `RangeError` when the set cannot hold it. */
  add(fd: number): void;
  /** Whether `fd` is in the set (after `select`, whether it is ready). */
  has(fd: number): boolean;
  /** Takes `fd` out of the set. */
  delete(fd: number): void;
  /** How many leading bytes of `bytes` a call with this highest fd + 1 reads and writes. */
  usedBytes(nfds: number): number;
  /** Tells the set that `select` rewrote its bytes. */
  rewritten(): void;
}

/**
 * A reusable `fd_set` of `FD_SETSIZE` bits. Setting an fd outside
 * `0 .. FD_SETSIZE-1` is a `RangeError`, checked before any byte is written.
 */
export class FdSet implements SelectSet {
  /** The raw bytes handed to `select(2)`. */
  readonly bytes: Uint8Array = new Uint8Array(S.fdSetSize / 8);
  #high = -1;

  /** Clears every bit set since the last clear. */
  clear(): void {
    if (this.#high >= 0) this.bytes.fill(0, 0, (this.#high >> 3) + 1);
    this.#high = -1;
  }

  /** Sets the bit of `fd`. */
  add(fd: number): void {
    checkSelectable(fd);
    this.bytes[fd >> 3] |= 1 << (fd & 7);
    if (fd > this.#high) this.#high = fd;
  }

  /** Whether the bit of `fd` is set. */
  has(fd: number): boolean {
    return (this.bytes[fd >> 3] & (1 << (fd & 7))) !== 0;
  }

  /** Clears the bit of `fd`. */
  delete(fd: number): void {
    if (fd >= 0 && fd < S.fdSetSize) this.bytes[fd >> 3] &= ~(1 << (fd & 7));
  }

  /** The bytes holding bits `0 .. nfds-1`. */
  usedBytes(nfds: number): number {
    return Math.ceil(nfds / 8);
  }

  /** Nothing to do: the bits are read where they lie. */
  rewritten(): void {}
}

/**
 * Winsock's `fd_set`: a 32-bit count, 4 bytes of padding, then an array of
 * 64-bit `SOCKET` handles (`fdSetSize` of them, 512 as in Python's Windows
 * build). `select` rewrites it to the ready handles; a lookup table of them
 * is built on the first `has` after that.
 */
export class HandleSet implements SelectSet {
  /** The raw bytes handed to Winsock's `select`. */
  readonly bytes: Uint8Array = new Uint8Array(8 + 8 * S.fdSetSize);
  readonly #words = new Uint32Array(this.bytes.buffer);
  #high = 0;
  #members: Set<number> | null = new Set();

  /** Empties the set. */
  clear(): void {
    // select() may have shortened the list; every slot written since the last clear goes.
    this.bytes.fill(0, 0, 8 + 8 * this.#high);
    this.#high = 0;
    if (this.#members === null) this.#members = new Set();
    else this.#members.clear();
  }

  /** Appends `fd`, unless it is there; a `RangeError` past `FD_SETSIZE` handles. */
  add(fd: number): void {
    const members = this.#lookup();
    if (members.has(fd)) return;
    const n = this.#words[0];
    if (n >= S.fdSetSize) {
      throw new RangeError(
        `select() cannot watch more than ${S.fdSetSize} sockets in one set on ${platform.name} ` +
          `(FD_SETSIZE, as in Python): ${n + 1} asked; use usePoll: true or poller: "poll" instead`,
      );
    }
    this.#words[2 + 2 * n] = fd % TWO32;
    this.#words[3 + 2 * n] = Math.floor(fd / TWO32);
    this.#words[0] = n + 1;
    if (n + 1 > this.#high) this.#high = n + 1;
    members.add(fd);
  }

  /** Whether `fd` is in the set. */
  has(fd: number): boolean {
    return this.#lookup().has(fd);
  }

  /** Takes `fd` out (the last handle moves into its place). */
  delete(fd: number): void {
    const w = this.#words;
    const n = w[0];
    for (let i = 0; i < n; i++) {
      if (w[2 + 2 * i] + w[3 + 2 * i] * TWO32 !== fd) continue;
      w[2 + 2 * i] = w[2 + 2 * (n - 1)];
      w[3 + 2 * i] = w[3 + 2 * (n - 1)];
      w[2 + 2 * (n - 1)] = w[3 + 2 * (n - 1)] = 0;
      w[0] = n - 1;
      this.#members?.delete(fd);
      return;
    }
  }

  /** The count, the padding and the handles in use (`nfds` means nothing to Winsock). */
  usedBytes(_nfds: number): number {
    return 8 + 8 * this.#words[0];
  }

  /** Forgets the lookup table: `select` left other handles. */
  rewritten(): void {
    this.#members = null;
  }

  #lookup(): Set<number> {
    if (this.#members !== null) return this.#members;
    const w = this.#words, members = new Set<number>();
    for (let i = 0; i < w[0]; i++) members.add(w[2 + 2 * i] + w[3 + 2 * i] * TWO32);
    return this.#members = members;
  }
}

/** A new empty set of the platform's kind. */
export function newSelectSet(): SelectSet {
  return S.fdSetIsArray ? new HandleSet() : new FdSet();
}

/**
 * Throws the `RangeError` that `select()` owes an fd it cannot watch. Where
 * an `fd_set` is a handle list (Windows), any handle fits and the limit is
 * the count, which `HandleSet.add` checks.
 */
export function checkSelectable(fd: number): void {
  if (S.fdSetIsArray) {
    if (!Number.isInteger(fd) || fd < 0) {
      throw new RangeError(`select() cannot watch ${fd}: not a socket handle`);
    }
    return;
  }
  if (!Number.isInteger(fd) || fd < 0 || fd >= S.fdSetSize) {
    throw new RangeError(
      `select() cannot watch fd ${fd}: fd_set holds only fds 0-${
        S.fdSetSize - 1
      }; use usePoll: true or poller: "poll" / "epoll" instead`,
    );
  }
}
