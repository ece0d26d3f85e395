/**
 * `Socket.sendfile`: Python's `socket.sendfile` — `sendfile(2)` where the
 * kernel can do it, and a read-and-send loop where it cannot (a file the
 * kernel will not map, a platform without Linux's `sendfile`, a
 * `Deno.FsFile`, whose fd Deno does not expose).
 *
 * @module
 */

import { errno as E, OSError } from "./errno.ts";
import { C } from "./platform.ts";
import { close, openReadOnly, tryPread, tryRead } from "./os.ts";

/** Lengths handed to one call are capped so `ssize_t` results fit in an `i32`. */
const MAX_IO = 0x3fff_0000;
/** The read size of the read-and-send fallback. */
const FALLBACK_CHUNK = 256 * 1024;

/** What `Socket.sendfile` sends on: the parts of a `Socket` it uses. */
export interface SendfileTarget {
  /** The socket type (`SOCK_STREAM` only). */
  readonly type: number;
  /** Whether the kernel may send a file onto it (false: read and `sendall`). */
  canSendfile(): boolean;
  /** One `sendfile(2)`: bytes sent, 0 at the end of the file, -1 when it would block. */
  trySendfile(inFd: number, offset: number, count: number): number;
  /** Sends all of `data`. */
  sendall(data: Uint8Array): void;
}

/** Anything with an fd, such as a `FileWrapper`. */
export interface HasFilenoLike {
  /** The file descriptor. */
  fileno(): number | null;
}

/**
 * What `Socket.sendfile` and `FileProducer` send from: an fd (not closed),
 * a path (opened read-only, closed afterwards), an object with `fileno()`,
 * or (sendfile only) a `Deno.FsFile`.
 */
export type SendfileSource = number | string | HasFilenoLike | Deno.FsFile;

/**
 * The errnos with which `sendfile(2)` says "not this file" (as opposed to
 * "this socket is broken"): the bytes then go by read and send instead.
 */
export const SENDFILE_UNSUPPORTED: ReadonlySet<number> = new Set(
  [E.EINVAL, E.ENOSYS, E.ESPIPE, E.EOPNOTSUPP].filter((e) => e !== undefined),
);

/** Checks `offset` (an integer >= 0) and `count` (undefined, or an integer > 0). */
export function checkSendfileRange(offset: number, count: number | undefined): void {
  if (!Number.isSafeInteger(offset) || offset < 0) {
    throw new RangeError(`offset must be a non-negative integer, not ${offset}`);
  }
  if (count !== undefined && (!Number.isSafeInteger(count) || count <= 0)) {
    throw new RangeError(`count must be a positive integer, not ${count}`);
  }
}

/** Whether `file` is a `Deno.FsFile` (which has no fd to hand to the kernel). */
export function isFsFile(file: unknown): file is Deno.FsFile {
  return typeof Deno.FsFile === "function" && file instanceof Deno.FsFile;
}

/**
 * The fd of `file` and whether this library opened it (and must close it).
 * A `Deno.FsFile` is a `TypeError` here: callers handle it before.
 */
export function resolveFd(file: SendfileSource): { fd: number; owned: boolean } {
  if (typeof file === "string") return { fd: openReadOnly(file), owned: true };
  if (typeof file === "number") {
    if (!Number.isInteger(file) || file < 0) {
      throw new RangeError(`fd must be a non-negative integer, not ${file}`);
    }
    return { fd: file, owned: false };
  }
  if (isFsFile(file)) {
    throw new TypeError("a Deno.FsFile has no fd to send from: pass its path or an fd");
  }
  if (file !== null && typeof file === "object" && typeof file.fileno === "function") {
    const fd = file.fileno();
    if (typeof fd !== "number" || fd < 0) throw new TypeError("the file is closed");
    return { fd, owned: false };
  }
  throw new TypeError(
    `file must be an fd, a path, a Deno.FsFile or have fileno(), not ${
      file === null ? "null" : typeof file
    }`,
  );
}

/**
 * Reads from `offset` of `fd` into `buf`: `pread`, or a plain `read` for a
 * file without positions (a pipe), as Python's fallback reads `file.read`.
 */
export function readAt(fd: number, buf: Uint8Array, offset: number, n: number): number {
  try {
    return tryPread(fd, buf, offset, n);
  } catch (error) {
    if (error instanceof OSError && error.errno === E.ESPIPE) return tryRead(fd, buf, n);
    throw error;
  }
}

/** The body of `Socket.sendfile` for a blocking stream socket. */
export function sendfileBlocking(
  sock: SendfileTarget,
  file: SendfileSource,
  offset: number,
  count: number | undefined,
): number {
  checkSendfileRange(offset, count);
  if (sock.type !== C.SOCK_STREAM) {
    throw new TypeError("sendfile supports SOCK_STREAM sockets only");
  }
  if (isFsFile(file)) return sendFsFile(sock, file, offset, count);
  const { fd, owned } = resolveFd(file);
  try {
    if (!sock.canSendfile()) {
      return sendByReading(sock, (buf, at, len) => readAt(fd, buf, at, len), offset, count);
    }
    let total = 0;
    for (;;) {
      const want = Math.min(count === undefined ? MAX_IO : count - total, MAX_IO);
      if (want <= 0) return total;
      let n: number;
      try {
        n = sock.trySendfile(fd, offset + total, want);
      } catch (error) {
        if (total === 0 && error instanceof OSError && SENDFILE_UNSUPPORTED.has(error.errno)) {
          return sendByReading(sock, (buf, at, len) => readAt(fd, buf, at, len), offset, count);
        }
        throw error;
      }
      if (n === 0) return total; // end of file
      if (n < 0) throw new OSError(E.EAGAIN, { syscall: "sendfile" }); // a send timeout
      total += n;
    }
  } finally {
    if (owned) close(fd);
  }
}

/** Python's `_sendfile_use_send`: read a chunk, `sendall` it, until `count` or end of file. */
function sendByReading(
  sock: SendfileTarget,
  read: (buf: Uint8Array, offset: number, n: number) => number,
  offset: number,
  count: number | undefined,
): number {
  const buf = new Uint8Array(FALLBACK_CHUNK);
  let total = 0;
  for (;;) {
    const want = Math.min(count === undefined ? buf.length : count - total, buf.length);
    if (want <= 0) return total;
    const got = read(buf, offset + total, want);
    if (got <= 0) return total; // end of file (or nothing readable from a non-blocking fd)
    sock.sendall(buf.subarray(0, got));
    total += got;
  }
}

/** A `Deno.FsFile` by seek, read and send; its position ends after the bytes sent, as in Python. */
function sendFsFile(
  sock: SendfileTarget,
  file: Deno.FsFile,
  offset: number,
  count: number | undefined,
): number {
  file.seekSync(offset, Deno.SeekMode.Start);
  return sendByReading(
    sock,
    (buf, _at, n) => file.readSync(buf.subarray(0, n)) ?? 0,
    offset,
    count,
  );
}
