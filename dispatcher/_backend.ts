/**
 * The one interface every readiness backend implements (as libuv's
 * `src/unix/` and Python's `selectors` have one per poller), and the one pass
 * that drives them all, for `loop()` and `loopAsync()` alike.
 *
 * @module
 */

import { timeoutMs } from "../ffi/poll.ts";
import type { PollFdArray } from "../ffi/structs.ts";
import { tickPassClock } from "../ffi/transport.ts";
import type { LoopCore } from "./_loop_core.ts";

/** While a closed channel's last output still waits for room, a pass waits at most this long (ms). */
export const FLUSH_RETRY_MS = 10;

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

/**
 * One pass: flush what transports hold (output queued since the last pass),
 * prepare, wait up to `seconds` (null: forever), dispatch, and flush what
 * this pass's handlers gathered (one `send` per TLS channel). Returns events
 * handled.
 */
export function runPass(backend: Backend, seconds: number | null, core: LoopCore): number {
  const retry = core.runFlushes();
  const readyNow = backend.prepare();
  let ms = readyNow ? 0 : timeoutMs(seconds);
  if (retry && (ms < 0 || ms > FLUSH_RETRY_MS)) ms = FLUSH_RETRY_MS;
  const ready = backend.wait(ms);
  tickPassClock();
  const handled = backend.dispatch(ready);
  core.runFlushes();
  return handled;
}
