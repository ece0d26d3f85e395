/**
 * The one interface every readiness backend implements (as libuv's
 * `src/unix/` and Python's `selectors` have one per poller), and the one pass
 * that drives them all, for `loop()` and `loopAsync()` alike.
 *
 * @module
 */

import { timeoutMs } from "../ffi/poll.ts";
import type { PollFdArray } from "../ffi/structs.ts";

/** A readiness backend serving one map. */
export interface Backend {
  /**
   * Brings what is watched up to date with the channels' interest. Returns
   * true when some channel is ready without waiting (the wait must be 0).
   */
  prepare(): boolean;
  /** Waits up to `ms` milliseconds (-1: forever); returns how many fds are ready. */
  wait(ms: number): number;
  /** Fires the handlers of what the last wait found ready; returns the events handled. */
  dispatch(ready: number): number;
  /**
   * Puts what to wait on from another thread into `fds` from entry `at` on
   * (after {@linkcode prepare}); returns the next free entry.
   */
  fillWaitSet(fds: PollFdArray, at: number): number;
  /** Releases what the backend holds. */
  close(): void;
}

/** One pass: prepare, wait up to `seconds` (null: forever), dispatch. Returns events handled. */
export function runPass(backend: Backend, seconds: number | null): number {
  const readyNow = backend.prepare();
  return backend.dispatch(backend.wait(readyNow ? 0 : timeoutMs(seconds)));
}
