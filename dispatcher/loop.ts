/**
 * The loop: one pass asks every channel `readable()`/`writable()`, waits in
 * `select()`, `poll()` or `epoll_wait()`, and fires the handlers; `loop()`
 * repeats passes until the map is empty or `count` runs out.
 *
 * @module
 */

import { OSError } from "../ffi/errno.ts";
import { platform } from "../ffi/platform.ts";
import type { StopSignal } from "../ffi/signals.ts";
import {
  type Backend,
  createBackend,
  resolveLoopOptions,
  runPass,
  timeoutWithTimers,
} from "./_backend.ts";
import { PollBackend } from "./_backend_poll.ts";
import { SelectBackend } from "./_backend_select.ts";
import { isReraised } from "./errors.ts";
import { type SocketMap, socketMap } from "./map.ts";
import { runDueTimers } from "./timers.ts";
import { LoopSession } from "./_loop_session.ts";

export { read, readwrite, write } from "./_events.ts";

/** The readiness backends `loop()` can use. */
export type PollerName = "select" | "poll" | "epoll";

/** One pass of `backend` over `map`, released afterwards. */
function onePass(backend: Backend, timeout: number | null): number {
  try {
    return runPass(backend, timeout);
  } finally {
    backend.close();
  }
}

/**
 * One pass with `select()` (asyncore's `poll`). An fd of `FD_SETSIZE` (1024)
 * or more cannot be watched: the pass throws a `RangeError` naming it.
 * Returns the number of ready fds.
 */
export function poll(timeout: number | null = 0, map: SocketMap = socketMap): number {
  if (map.size === 0) return 0;
  return onePass(new SelectBackend(map), timeout);
}

/** One pass with `poll()` (asyncore's `poll2`). Returns the number of ready fds. */
export function poll2(timeout: number | null = 0, map: SocketMap = socketMap): number {
  if (map.size === 0) return 0;
  return onePass(new PollBackend(map), timeout);
}

/** Same as {@linkcode poll2} (asyncore keeps `poll3` as an alias). */
export const poll3: typeof poll2 = poll2;

// ---- loop ----

/** Options of {@linkcode loop}. */
export interface LoopOptions {
  /** Seconds each pass may wait (fractions allowed; null waits forever). Default 30. */
  timeout?: number | null;
  /** Use `poll()` instead of `select()` (as asyncore's `use_poll`). */
  usePoll?: boolean;
  /** The map to serve; default the global `socketMap`. */
  map?: SocketMap;
  /** Stop after this many passes; default: run until the map is empty. */
  count?: number | null;
  /** The readiness backend; overrides `usePoll`. `"epoll"` is the best choice on Linux. */
  poller?: PollerName;
  /**
   * Signals that make `loop()` throw {@linkcode KeyboardInterrupt} after the
   * current pass (e.g. `["SIGINT", "SIGTERM"]`), as Python's Ctrl-C. While the
   * loop runs they do nothing else; when it returns or throws, what they did
   * before (end the process, a Deno listener) is restored. Sync `loop()` only:
   * for `loopAsync` use its `signal` with `Deno.addSignalListener`.
   */
  stopSignals?: StopSignal[];
}

/**
 * Runs passes until the map is empty or `count` passes are done, firing
 * due timers after each pass. Call as in Python, `loop(timeout, usePoll,
 * map, count)`, or with an options object. It blocks the thread: Deno's
 * timers and promises wait until it returns (see `loopAsync`).
 *
 * @param options `timeout` (seconds per wait, default 30), `map`, `count`,
 * `poller` (`"select"`, `"poll"`, `"epoll"`), `stopSignals`.
 * @throws {KeyboardInterrupt} When a signal named in `stopSignals` arrives.
 * @throws {ExitNow} When a handler throws it.
 * @throws {RangeError} For a bad option (negative timeout, unknown poller,
 * an fd of 1024 or more under select).
 *
 * @example Serving until Ctrl-C, then cleaning up (Python's `except KeyboardInterrupt`)
 * ```ts ignore
 * import { closeAll, KeyboardInterrupt, loop } from "jsr:@asyncore/deno";
 *
 * try {
 *   loop({ poller: "epoll", stopSignals: ["SIGINT", "SIGTERM"] });
 * } catch (error) {
 *   if (!(error instanceof KeyboardInterrupt)) throw error;
 * } finally {
 *   closeAll();
 * }
 * ```
 */
export function loop(options?: LoopOptions): void;
/** Positional form, as asyncore's `loop(timeout, use_poll, map, count)`. */
export function loop(
  timeout?: number | null,
  usePoll?: boolean,
  map?: SocketMap,
  count?: number | null,
): void;
export function loop(
  ...args: [LoopOptions?] | [(number | null)?, boolean?, SocketMap?, (number | null)?]
): void {
  const { timeout, map, count, poller, stopSignals } = resolveLoopOptions(args);
  const backend = createBackend(poller, map);
  let session: LoopSession | undefined;
  try {
    session = new LoopSession(stopSignals);
    for (let left = count; map.size > 0 && left > 0; left--) {
      runPass(backend, timeoutWithTimers(timeout));
      runDueTimers();
      session.check();
    }
  } finally {
    backend.close();
    session?.end();
  }
}

/**
 * Closes every channel in `map` and empties it. `EBADF` is ignored; other
 * errors propagate unless `ignoreAll`.
 */
export function closeAll(map: SocketMap = socketMap, ignoreAll = false): void {
  for (const x of [...map.values()]) {
    try {
      x.close();
    } catch (error) {
      if (isReraised(error)) throw error;
      if (error instanceof OSError && error.errno === platform.errno.EBADF) continue;
      if (!ignoreAll) throw error;
    }
  }
  map.clear();
}
