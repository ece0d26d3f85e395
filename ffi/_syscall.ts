/**
 * The errno policy, in one place, for every wrapper of a libc call.
 *
 * errno is read right after a failed call, but the runtime can overwrite it
 * in between (seen about once in 100,000 calls). So:
 *
 * - `EINTR` is retried (PEP 475); waits retry with the time left.
 * - The answer the caller expects on a failure (`EAGAIN` on a non-blocking
 *   socket, `EINPROGRESS` from a non-blocking connect) is believed at once:
 *   one call, no exception. A false "would block" heals by itself: the
 *   level-triggered loop reports the fd again on the next pass.
 * - Any other errno is confirmed by making the call once more (a failed call
 *   has no effect, so repeating it is safe; `close` is never repeated) and
 *   the second answer is believed. A repeat that succeeds returns its result.
 *
 * Results come back as numbers, never as exceptions: `>= 0` is the call's
 * result, a negative number is `-errno`. {@linkcode check} turns the latter
 * into an `OSError` where the caller wants one.
 *
 * @module
 */

import { errno as E, OSError, readErrno } from "./errno.ts";
import { stopRequested, stopSliceMs } from "./signals.ts";
import { holdSpareFd, releaseSpareFd } from "./spare_fd.ts";

const EINTR = E.EINTR;
/** Reported when errno reads 0 twice after a failure: the real cause was lost. */
const EIO = E.EIO;

/**
 * Builds the `OSError` for `err`. Out of fds, the spare fd is freed while the
 * error and its stack are built, so Deno has the fd it needs to format them.
 */
export function osError(err: number, syscall: string, filename?: string): OSError {
  if (err !== E.EMFILE && err !== E.ENFILE) return new OSError(err, { syscall, filename });
  releaseSpareFd();
  const error = new OSError(err, { syscall, filename });
  void error.stack;
  holdSpareFd();
  return error;
}

/**
 * Makes `fn` (a libc call returning -1 on failure) and settles errno by the
 * module's policy. `expected` is the errno believed without a repeat (e.g.
 * `EAGAIN` when non-blocking; 0 for none). With `eofKeepsError` (for
 * `recv`), a repeat that reads end-of-stream after a real error reports
 * that error: the reset happened, the 0 is its aftermath. Returns the
 * result (`>= 0`) or `-errno`.
 */
export function attempt(fn: () => number, expected = 0, eofKeepsError = false): number {
  let first = 0;
  for (;;) {
    const r = fn();
    if (r >= 0) {
      if (r === 0 && eofKeepsError && first !== 0) return -first;
      return r;
    }
    const err = readErrno();
    if (err === EINTR) continue;
    if (err !== 0 && err === expected) return -err;
    if (first !== 0) return -(err !== 0 ? err : first);
    first = err !== 0 ? err : EIO;
  }
}

/** Returns `r`, or throws the `OSError` of `-r` for a failed {@linkcode attempt}. */
export function check(r: number, syscall: string, filename?: string): number {
  if (r >= 0) return r;
  throw osError(-r, syscall, filename);
}

/**
 * Calls `wait(ms)` (a poll-like call taking a timeout in ms, -1: forever)
 * until it is not interrupted: EINTR is retried with the time left, as
 * Python does since PEP 475, unless a stop signal arrived (then 0: nothing
 * ready, and the loop ends the pass). Where the kernel would not interrupt
 * this thread for a stop signal the wait is made in slices (`signals.ts`).
 * Another failure is confirmed by one repeat and thrown. Returns the number
 * of ready entries.
 */
export function waitUninterrupted(
  syscall: string,
  timeout: number,
  wait: (ms: number) => number,
): number {
  const start = timeout > 0 ? performance.now() : 0;
  let first = 0;
  for (let left = timeout;;) {
    const slice = stopSliceMs(left);
    const r = wait(slice);
    if (r > 0 || (r === 0 && slice === left)) return r;
    if (r < 0) {
      const err = readErrno();
      if (err !== EINTR) {
        if (first !== 0) throw osError(err !== 0 ? err : first, syscall);
        first = err !== 0 ? err : EIO;
      }
    }
    if (stopRequested()) return 0;
    if (timeout > 0) {
      left = Math.max(0, Math.ceil(start + timeout - performance.now()));
      if (left === 0 && r === 0) return 0;
    }
  }
}
