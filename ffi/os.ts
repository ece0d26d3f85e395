/**
 * File-descriptor calls outside sockets, as Python's `os` module has them:
 * `dup`, `pipe`, `read`, `write`, `close` and non-blocking mode.
 *
 * @module
 */

import { errno as E, OSError, readErrno } from "./errno.ts";
import { C, platform } from "./platform.ts";
import { attempt, check, osError } from "./_syscall.ts";
import { libc } from "./symbols.ts";
import { toCString } from "./bytes.ts";

const MAX_IO = 0x3fff_0000;

function checkFd(fd: number): void {
  if (!Number.isInteger(fd)) throw new TypeError(`fd must be an integer, not ${fd}`);
}

/**
 * Where the only descriptors are sockets (Windows), the file and pipe calls
 * are Unix-only, as `FileDispatcher` and `os.set_blocking` are in Python:
 * one `OSError(ENOSYS)` that says so instead of a bare "Function not implemented".
 */
function checkUnix(syscall: string): void {
  if (!platform.winsock) return;
  throw new OSError(E.ENOSYS, {
    syscall,
    message: `${syscall}() on a file or pipe is Unix-only (as FileDispatcher, FileWrapper, ` +
      `FileProducer and sendfile from a file are in Python); not available on ${platform.name}`,
  });
}

/**
 * Makes `fn` by the errno policy of `_syscall.ts`. Returns the result, or -1
 * for "would block" when that is an expected answer; other failures throw.
 */
function settle(syscall: string, fn: () => number, wouldBlockOk: boolean): number {
  checkUnix(syscall);
  const r = attempt(fn, wouldBlockOk ? E.EAGAIN : 0);
  return r === -E.EAGAIN && wouldBlockOk ? -1 : check(r, syscall);
}

/** Duplicates `fd` (the copy is close-on-exec free, as `dup(2)` makes it). */
export function dup(fd: number): number {
  checkFd(fd);
  return settle("dup", () => libc().dup(fd), false);
}

/** Creates a pipe: `[readFd, writeFd]`, close-on-exec, non-blocking unless asked. */
export function pipe(nonblocking = true): [number, number] {
  const fds = new Int32Array(2);
  const flags = C.O_CLOEXEC | (nonblocking ? C.O_NONBLOCK : 0);
  settle("pipe2", () => libc().pipe2(fds, flags), false);
  return [fds[0], fds[1]];
}

/** Reads into `buffer` (up to `n` bytes); returns the count, 0 at end of file, -1 if it would block. */
export function tryRead(fd: number, buffer: Uint8Array, n: number = buffer.length): number {
  const len = BigInt(Math.min(n, buffer.length, MAX_IO));
  return settle("read", () => libc().read(fd, buffer, len), true);
}

/** Writes `data` to `fd`; returns the count, -1 if it would block. */
export function tryWrite(fd: number, data: Uint8Array): number {
  const len = BigInt(Math.min(data.length, MAX_IO));
  return settle("write", () => libc().write(fd, data, len), true);
}

/**
 * Reads into `buffer` from `offset` of `fd` without moving its position
 * (`pread(2)`); returns the count, 0 at end of file, -1 if it would block.
 */
export function tryPread(
  fd: number,
  buffer: Uint8Array,
  offset: number,
  n = buffer.length,
): number {
  const len = BigInt(Math.min(n, buffer.length, MAX_IO));
  return settle("pread", () => libc().pread(fd, buffer, len, BigInt(offset)), true);
}

/** Opens `path` for reading (`O_RDONLY | O_CLOEXEC`) and returns the fd. */
export function openReadOnly(path: string): number {
  checkUnix("open");
  const cpath = toCString(path, "path");
  const flags = C.O_RDONLY | C.O_CLOEXEC;
  let repeated = false;
  for (;;) {
    const fd = libc().open(cpath, flags);
    if (fd >= 0) return fd;
    const err = readErrno();
    if (err === E.EINTR) continue;
    if (repeated) throw osError(err, "open", path);
    repeated = true;
  }
}

/** Reads up to `n` bytes from `fd`; empty at end of file. `OSError(EAGAIN)` if it would block. */
export function read(fd: number, n: number): Uint8Array {
  checkFd(fd);
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`read size must be >= 0, not ${n}`);
  const buf = new Uint8Array(Math.min(n, MAX_IO));
  const got = tryRead(fd, buf);
  if (got < 0) throw osError(E.EAGAIN, "read");
  return buf.subarray(0, got);
}

/** Writes `data` to `fd`; returns the count. `OSError(EAGAIN)` if it would block. */
export function write(fd: number, data: Uint8Array): number {
  checkFd(fd);
  const put = tryWrite(fd, data);
  if (put < 0) throw osError(E.EAGAIN, "write");
  return put;
}

/** Closes `fd`. Never repeated: the fd is released even when close reports an error. */
export function close(fd: number): void {
  checkFd(fd);
  checkUnix("close");
  if (libc().close(fd) < 0) {
    const err = readErrno();
    if (err !== E.EINTR) throw osError(err, "close");
  }
}

/** Sets or clears `O_NONBLOCK` on `fd`, as Python's `os.set_blocking(fd, blocking)`. */
export function setBlocking(fd: number, blocking: boolean): void {
  checkFd(fd);
  const fl = settle("fcntl", () => libc().fcntl(fd, C.F_GETFL, 0), false);
  const next = blocking ? fl & ~C.O_NONBLOCK : fl | C.O_NONBLOCK;
  if (next !== fl) settle("fcntl", () => libc().fcntl(fd, C.F_SETFL, next), false);
}
