/**
 * Socket timeouts as Python has them (`settimeout`): the error a timed-out
 * call throws, the check of a timeout value, and the wait made before each
 * call. As in CPython's `sock_call`, a socket with a timeout keeps its fd
 * non-blocking and waits for readiness with `poll(2)` before the call (and
 * again after a false "ready"), never with `SO_RCVTIMEO`/`SO_SNDTIMEO`: the
 * kernel options would time each call separately, and `sendall` or
 * `connect` would wait longer than asked.
 *
 * @module
 */

import { waitUninterrupted } from "./_syscall.ts";
import { errno as E, OSError } from "./errno.ts";
import { platform } from "./platform.ts";
import { libc } from "./symbols.ts";

const P = platform.structs.pollfd;

/**
 * A socket call did not complete within the socket's timeout, as Python's
 * `TimeoutError` (`socket.timeout`): the message is `"timed out"`. Python
 * leaves its `errno` unset; here it is `ETIMEDOUT`, so that `code` names it.
 *
 * @example
 * ```ts
 * import { socketpair, TimeoutError } from "@asyncore/deno";
 *
 * const [sock, peer] = socketpair();
 * sock.settimeout(0.2);
 * try {
 *   sock.recv(1024);
 * } catch (e) {
 *   if (e instanceof TimeoutError) console.log("no answer in 0.2 s");
 * }
 * sock.close();
 * peer.close();
 * ```
 */
export class TimeoutError extends OSError {
  /** Builds the error; `syscall` names the call that waited. */
  constructor(syscall?: string) {
    super(E.ETIMEDOUT, { message: "timed out", syscall });
    this.name = "TimeoutError";
    // Python's str(e) is "timed out", without "[Errno ...]".
    this.message = "timed out";
  }
}

/**
 * Checks a timeout as Python's `settimeout` does: `null` (block), or a
 * number of seconds >= 0. Anything else is a `TypeError` (not a number) or a
 * `RangeError` (negative, NaN, infinite).
 */
export function checkTimeout(value: unknown): number | null {
  if (value === null || value === undefined) return null;
  if (typeof value !== "number") {
    throw new TypeError(`timeout must be a number of seconds or null, not ${typeof value}`);
  }
  if (Number.isNaN(value)) throw new RangeError("Invalid value NaN (not a number)");
  if (value < 0) throw new RangeError("Timeout value out of range");
  // poll(2) takes an int of milliseconds; Python refuses what its clock cannot hold.
  if (!Number.isFinite(value) || value > 0x7fffffff / 1000) {
    throw new RangeError(`timeout too large: ${value} (at most ${0x7fffffff / 1000} seconds)`);
  }
  return value;
}

// One pollfd for every timed wait: the loop is single-threaded.
const pollfd = new Uint8Array(new ArrayBuffer(Math.max(P.size, 16)), 0, P.size);
const pollView = new DataView(pollfd.buffer);

/**
 * Waits until `fd` is ready for `events` (`POLLIN`, `POLLOUT`), until
 * `deadline` (a `performance.now()` time); throws {@linkcode TimeoutError}
 * naming `syscall` when it passes first. A deadline already reached still
 * looks once without waiting, as CPython does. EINTR is retried with the
 * time left.
 */
export function waitReady(fd: number, events: number, deadline: number, syscall: string): void {
  // A closed socket is "ready", as in CPython: the call itself then fails with EBADF.
  if (fd < 0) return;
  const lib = libc();
  for (;;) {
    const left = deadline - performance.now();
    if (left < 0) throw new TimeoutError(syscall);
    pollView.setInt32(P.fd, fd, true);
    pollView.setInt16(P.events, events, true);
    pollView.setInt16(P.revents, 0, true);
    const ms = Math.ceil(left);
    if (waitUninterrupted("poll", ms, (slice) => lib.poll(pollfd, 1n, slice)) > 0) return;
    // Nothing ready: the time ran out, or a stop signal cut the wait short (look again).
    if (performance.now() >= deadline) throw new TimeoutError(syscall);
  }
}
