/**
 * `poll(2)` over a reusable {@linkcode PollFdArray}, synchronous or on a
 * worker thread.
 *
 * @module
 */

import { waitUninterrupted } from "./_syscall.ts";
import { PollFdArray } from "./structs.ts";
import { C, platform } from "./platform.ts";
import { stopWakeFd } from "./signals.ts";
import { libc } from "./symbols.ts";

// The kernel reads and writes n entries: more than the array holds would be
// memory corruption, so it is refused before the call.
function checkCount(fds: PollFdArray, n: number): void {
  if (!Number.isInteger(n) || n < 0 || n * platform.structs.pollfd.size > fds.bytes.length) {
    throw new RangeError(
      `poll() count must be an integer 0-${
        fds.bytes.length / platform.structs.pollfd.size
      } (call fds.reserve(n) first), not ${n}`,
    );
  }
}

/** Milliseconds for a timeout in seconds: `null` or negative waits forever; rounds up. */
export function timeoutMs(seconds: number | null): number {
  if (seconds === null || seconds < 0) return -1;
  return Math.min(0x7fffffff, Math.ceil(seconds * 1000));
}

/** EINTR-retrying waits live with the rest of the errno policy. */
export { waitUninterrupted };

/** A pollfd array and the calls that wait on it. */
export class Poller {
  /** The entries; fill with `fds.reserve(n)` and `fds.set(i, fd, events)`. */
  readonly fds: PollFdArray = new PollFdArray();

  /**
   * Waits on the first `n` entries for up to `timeout` ms (-1: forever);
   * returns how many have events. EINTR is retried with the time left.
   */
  poll(n: number, timeout: number): number {
    checkCount(this.fds, n);
    // Where a stop signal cannot interrupt the wait (Windows), its wake-up socket joins it,
    // after the caller's entries. It is left unread: the loop sees the stop after this pass.
    const wake = stopWakeFd();
    if (wake >= 0) {
      this.fds.reserve(n + 1);
      this.fds.set(n, wake, C.POLLIN);
    }
    const lib = libc();
    const bytes = this.fds.bytes;
    const count = BigInt(wake >= 0 ? n + 1 : n);
    const r = waitUninterrupted("poll", timeout, (ms) => lib.poll(bytes, count, ms));
    return wake >= 0 && this.fds.revents(n) !== 0 ? r - 1 : r;
  }

  /**
   * The same wait on a worker thread, so Deno's event loop runs meanwhile.
   * Do not touch `fds` until the promise settles. EINTR resolves to 0.
   */
  async pollAsync(n: number, timeout: number): Promise<number> {
    checkCount(this.fds, n);
    const r = await libc().pollAsync(this.fds.bytes, BigInt(n), timeout);
    // errno lives on the worker thread: a failure here is reported as "nothing ready"
    // and the caller's next synchronous pass sees the real state.
    return r < 0 ? 0 : r;
  }
}
