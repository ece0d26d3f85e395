/**
 * The one interface every readiness backend implements (as libuv's
 * `src/unix/` and Python's `selectors` have one per poller), and the one pass
 * that drives them all, for `loop()` and `loopAsync()` alike.
 *
 * @module
 */

import { platform } from "../ffi/platform.ts";
import { timeoutMs } from "../ffi/poll.ts";
import { checkStopSignals, type StopSignal } from "../ffi/signals.ts";
import type { PollFdArray } from "../ffi/structs.ts";
import { EpollBackend } from "./_backend_epoll.ts";
import { PollBackend } from "./_backend_poll.ts";
import { SelectBackend } from "./_backend_select.ts";
import type { LoopOptions, PollerName } from "./loop.ts";
import { type SocketMap, socketMap } from "./map.ts";
import { nextTimerDelay } from "./timers.ts";

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

/** The backend for `poller` over `map`. */
export function createBackend(poller: PollerName, map: SocketMap): Backend {
  if (poller === "epoll") return new EpollBackend(map);
  return poller === "poll" ? new PollBackend(map) : new SelectBackend(map);
}

/** Checked loop options with defaults filled in. */
export interface ResolvedLoopOptions {
  /** Seconds per pass, null for forever. */
  timeout: number | null;
  /** The map. */
  map: SocketMap;
  /** Passes left, or Infinity. */
  count: number;
  /** The backend. */
  poller: PollerName;
  /** Signals that stop the loop (sync `loop()` only). */
  stopSignals?: StopSignal[];
}

/** Validates loop arguments in either call form. */
export function resolveLoopOptions(
  args: [LoopOptions?] | [
    (number | null)?,
    boolean?,
    SocketMap?,
    (number | null)?,
  ],
): ResolvedLoopOptions {
  let o: LoopOptions;
  const first = args[0];
  if (first !== null && typeof first === "object") {
    o = first as LoopOptions;
  } else {
    const [timeout, usePoll, map, count] = args as [number?, boolean?, SocketMap?, number?];
    o = { timeout, usePoll, map, count };
  }
  const timeout = o.timeout === undefined ? 30 : o.timeout;
  if (timeout !== null && (typeof timeout !== "number" || !(timeout >= 0))) {
    throw new RangeError(`timeout must be a number of seconds >= 0 or null, not ${timeout}`);
  }
  const map = o.map ?? socketMap;
  if (!(map instanceof Map)) throw new TypeError("map must be a Map of fd to Dispatcher");
  const count = o.count === undefined || o.count === null ? Infinity : o.count;
  if (count !== Infinity && (!Number.isInteger(count) || count < 0)) {
    throw new RangeError(`count must be a non-negative integer, not ${o.count}`);
  }
  const poller = o.poller ?? (o.usePoll ? "poll" : "select");
  if (poller !== "select" && poller !== "poll" && poller !== "epoll") {
    throw new RangeError(`poller must be "select", "poll" or "epoll", not ${String(poller)}`);
  }
  if (poller === "epoll" && !platform.hasEpoll) {
    throw new RangeError(`epoll is not available on ${platform.name}; use "poll"`);
  }
  const stopSignals = o.stopSignals === undefined ? undefined : checkStopSignals(o.stopSignals);
  return { timeout, map, count, poller, stopSignals };
}

/** The wait of the next pass: `timeout`, shortened to the next due timer. */
export function timeoutWithTimers(timeout: number | null): number | null {
  const next = nextTimerDelay();
  if (next === null) return timeout;
  return timeout === null ? next : Math.min(timeout, next);
}
