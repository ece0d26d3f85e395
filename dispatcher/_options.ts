/**
 * The options of `loop()`, `loopAsync()` and a `Loop`'s runs, and the one
 * place that checks them.
 *
 * @module
 */

import { checkStopSignals, type StopSignal } from "../ffi/signals.ts";
import type { ChannelMap } from "./_loop_core.ts";
import type { SocketMap } from "./dispatcher.ts";
import { checkPoller, type PollerName } from "./_pollers.ts";

/** Options of `loop()`. */
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
   * Signals that make `loop()` throw `KeyboardInterrupt` after the current
   * pass (e.g. `["SIGINT", "SIGTERM"]`), as Python's Ctrl-C. While the loop
   * runs they do nothing else; when it returns or throws, what they did
   * before (end the process, a Deno listener) is restored. Sync `loop()`
   * only: for `loopAsync` use its `signal` with `Deno.addSignalListener`.
   */
  stopSignals?: StopSignal[];
}

/** Options of `loopAsync()`: those of `loop()` plus an abort signal. */
export interface LoopAsyncOptions extends LoopOptions {
  /** Stops the loop (promptly, even while waiting); the map's channels stay open. */
  signal?: AbortSignal;
}

/** Checked loop options with defaults filled in. */
export interface ResolvedLoopOptions {
  /** Seconds per pass, null for forever. */
  timeout: number | null;
  /** The map. */
  map: ChannelMap;
  /** Passes left, or Infinity. */
  count: number;
  /** The backend. */
  poller: PollerName;
  /** Signals that stop the loop (sync `loop()` only). */
  stopSignals?: StopSignal[];
}

/** Validates loop arguments in either call form; `map` and `poller` default as given. */
export function resolveLoopOptions(
  args: [LoopOptions?] | [(number | null)?, boolean?, SocketMap?, (number | null)?],
  defaults: { map: ChannelMap; poller?: PollerName },
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
  const map = o.map ?? defaults.map;
  if (!(map instanceof Map)) throw new TypeError("map must be a Map of fd to Dispatcher");
  const count = o.count === undefined || o.count === null ? Infinity : o.count;
  if (count !== Infinity && (!Number.isInteger(count) || count < 0)) {
    throw new RangeError(`count must be a non-negative integer, not ${o.count}`);
  }
  const poller = checkPoller(o.poller ?? (o.usePoll ? "poll" : defaults.poller ?? "select"));
  const stopSignals = o.stopSignals === undefined ? undefined : checkStopSignals(o.stopSignals);
  return { timeout, map, count, poller, stopSignals };
}
