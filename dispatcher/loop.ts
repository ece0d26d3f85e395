/**
 * The loop: `Loop`, an object that owns a map, its timers and its runs (as
 * libuv's `uv_loop_t`), and asyncore's function forms, which run
 * `defaultLoop`: one pass asks every channel `readable()`/`writable()`,
 * waits in `select()`, `poll()` or `epoll_wait()`, and fires the handlers;
 * `loop()` repeats passes until the map is empty or `count` runs out.
 *
 * @module
 */

import { OSError } from "../ffi/errno.ts";
import { platform } from "../ffi/platform.ts";
import type { StopSignal } from "../ffi/signals.ts";
import { type Backend, runPass } from "./_backend.ts";
import { PollBackend } from "./_backend_poll.ts";
import { SelectBackend } from "./_backend_select.ts";
import { coreOf, defaultCore, LoopCore } from "./_loop_core.ts";
import { type LoopOptions, resolveLoopOptions } from "./_options.ts";
import { bestPoller, checkPoller, type PollerName } from "./_pollers.ts";
import { runAsync, runSync } from "./_run.ts";
import type { SocketMap } from "./dispatcher.ts";
import { isReraised } from "./errors.ts";
import type { TimerErrorHandler, TimerHandle } from "./timers.ts";

export { read, readwrite, write } from "./_events.ts";
export type { LoopOptions, PollerName };

/** Options of {@linkcode Loop}'s constructor. */
export interface LoopConstructorOptions {
  /** The readiness backend of its runs; default the best one here (`"epoll"` on Linux). */
  poller?: PollerName;
}

/** Options of {@linkcode Loop.run}. */
export interface LoopRunOptions {
  /** Seconds each pass may wait (fractions allowed; null waits until something happens). Default 30. */
  timeout?: number | null;
  /** Stop after this many passes; default: run until the loop's map is empty. */
  count?: number | null;
  /** Signals that make `run()` throw `KeyboardInterrupt` (see `loop()`'s `stopSignals`). */
  stopSignals?: StopSignal[];
}

/** Options of {@linkcode Loop.runAsync}. */
export interface LoopRunAsyncOptions {
  /** Seconds each wait may take (null: until something happens). Default 30. */
  timeout?: number | null;
  /** Stop after this many passes; default: run until the loop's map is empty. */
  count?: number | null;
  /** Stops the run (promptly, even while waiting); the channels stay open. */
  signal?: AbortSignal;
}

/** The core the next `Loop` is built on (set around one constructor call, for `defaultLoop`). */
let adoptCore: LoopCore | null = null;

/**
 * A loop of its own: a map, timers, and runs over them, as libuv's
 * `uv_loop_t`. Channels join it through its map (`new Handler(sock,
 * loop.map)`); its timers fire only in its runs, and its channels' own
 * timers (idle and handshake timeouts, the accept back-off) are its timers.
 * Two loops in one process never see each other's channels or timers: run
 * them in turn, or as two concurrent `runAsync()` calls.
 *
 * @example Two servers, each on its own loop, served together
 * ```ts
 * import { Dispatcher, Loop, type SocketMap } from "@asyncore/deno";
 *
 * class Server extends Dispatcher {
 *   constructor(port: number, map: SocketMap) {
 *     super(null, map); // joins the loop that owns `map`
 *     this.createSocket();
 *     this.bind(["127.0.0.1", port]);
 *     this.listen(5);
 *   }
 * }
 *
 * const a = new Loop(), b = new Loop();
 * new Server(0, a.map);
 * new Server(0, b.map);
 * a.callEvery(60, () => console.log("a is alive")); // fires in a's runs only
 * b.callLater(0.1, () => { // closing a loop ends its run
 *   a.close();
 *   b.close();
 * });
 * await Promise.all([a.runAsync(), b.runAsync()]);
 * ```
 */
export class Loop {
  readonly #core: LoopCore;
  /** The readiness backend of this loop's runs. */
  readonly poller: PollerName;

  /** A loop with an empty map of its own. */
  constructor(options: LoopConstructorOptions = {}) {
    this.#core = adoptCore ?? new LoopCore();
    adoptCore = null;
    this.poller = checkPoller(options.poller ?? bestPoller());
  }

  /** The loop's channels, by fd: pass it to a channel's constructor to add the channel here. */
  get map(): SocketMap {
    return this.#core.map as SocketMap;
  }

  /**
   * Runs passes until the map is empty or `count` passes are done, firing
   * this loop's due timers after each pass. It blocks the thread: Deno's
   * timers and promises wait until it returns (see {@linkcode runAsync}).
   *
   * @throws {KeyboardInterrupt} When a signal named in `stopSignals` arrives.
   * @throws {ExitNow} When a handler throws it.
   */
  run(options: LoopRunOptions = {}): void {
    const { timeout, count, stopSignals } = this.#resolve(options);
    runSync({ map: this.#core.map, poller: this.poller, timeout, count, stopSignals });
  }

  /**
   * Runs passes like {@linkcode run} without blocking Deno's event loop (see
   * `loopAsync`). Resolves when the map is empty, `count` passes are done or
   * `signal` aborts; rejects with what `run()` would throw.
   */
  runAsync(options: LoopRunAsyncOptions = {}): Promise<void> {
    let run;
    try {
      run = this.#resolve(options);
    } catch (error) {
      return Promise.reject(error);
    }
    const { timeout, count } = run;
    return runAsync({
      map: this.#core.map,
      poller: this.poller,
      timeout,
      count,
      signal: options.signal,
    });
  }

  #resolve(options: LoopRunOptions): ReturnType<typeof resolveLoopOptions> {
    if (options === null || typeof options !== "object") {
      throw new TypeError("run options must be an object");
    }
    const { timeout, count, stopSignals } = options;
    return resolveLoopOptions([{ timeout, count, stopSignals }], {
      map: this.#core.map,
      poller: this.poller,
    });
  }

  /** Calls `fn` once, `seconds` from now, from inside this loop's runs. */
  callLater(seconds: number, fn: () => void): TimerHandle {
    return this.#core.timers.callLater(seconds, fn);
  }

  /** Calls `fn` every `seconds`, the first time one interval from now, from inside this loop's runs. */
  callEvery(seconds: number, fn: () => void): TimerHandle {
    return this.#core.timers.callEvery(seconds, fn);
  }

  /**
   * Sets where errors thrown by this loop's timer callbacks go (default:
   * one line on stderr); see the module-level `setTimerErrorHandler`.
   */
  setTimerErrorHandler(handler: TimerErrorHandler | null): void {
    this.#core.timers.errorHandler = handler ?? defaultTimerErrorHandler;
  }

  /**
   * Closes every channel of the loop and cancels its timers; a run under
   * way then ends, since its map is empty.
   */
  close(): void {
    try {
      closeAll(this.map, true);
    } finally {
      this.#core.timers.cancelAll();
    }
  }
}

const defaultTimerErrorHandler = defaultCore.timers.errorHandler;

adoptCore = defaultCore;
/**
 * The loop the function forms use: `loop()`, `loopAsync()`, `poll*()`,
 * `socketMap` and the module-level `callLater`/`callEvery`.
 */
export const defaultLoop: Loop = new Loop();

/** The global map (`defaultLoop.map`), used whenever no map is given. */
export const socketMap: SocketMap = defaultLoop.map;

/** Calls `fn` once, `seconds` from now, from inside a run of `defaultLoop` (`loop()`, `loopAsync()`). */
export function callLater(seconds: number, fn: () => void): TimerHandle {
  return defaultLoop.callLater(seconds, fn);
}

/** Calls `fn` every `seconds` on `defaultLoop`, the first time one interval from now. */
export function callEvery(seconds: number, fn: () => void): TimerHandle {
  return defaultLoop.callEvery(seconds, fn);
}

/**
 * Sets where errors thrown by `defaultLoop`'s timer callbacks go (default:
 * one line on stderr). The timer is not run again if it was a `callLater`;
 * a `callEvery` keeps its schedule. `ExitNow` is not caught: it leaves the
 * loop.
 */
export function setTimerErrorHandler(handler: TimerErrorHandler | null): void {
  defaultLoop.setTimerErrorHandler(handler);
}

/** One pass of `backend` over `map`, released afterwards (no timers: asyncore's `poll` runs none). */
function onePass(backend: Backend, timeout: number | null, map: SocketMap): number {
  try {
    return runPass(backend, timeout, coreOf(map));
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
  return onePass(new SelectBackend(map), timeout, map);
}

/** One pass with `poll()` (asyncore's `poll2`). Returns the number of ready fds. */
export function poll2(timeout: number | null = 0, map: SocketMap = socketMap): number {
  if (map.size === 0) return 0;
  return onePass(new PollBackend(map), timeout, map);
}

/** Same as {@linkcode poll2} (asyncore keeps `poll3` as an alias). */
export const poll3: typeof poll2 = poll2;

/**
 * Runs passes until the map is empty or `count` passes are done, firing
 * due timers after each pass (those of the loop that owns the map:
 * `defaultLoop` for `socketMap` and for any map no `Loop` owns). Call as in
 * Python, `loop(timeout, usePoll, map, count)`, or with an options object.
 * It blocks the thread: Deno's timers and promises wait until it returns
 * (see `loopAsync`).
 *
 * @param options `timeout` (seconds per wait, default 30), `map`, `count`,
 * `poller` (`"select"`, `"poll"`, `"epoll"`), `stopSignals`.
 * @throws {KeyboardInterrupt} When a signal named in `stopSignals` arrives.
 * @throws {ExitNow} When a handler throws it.
 * @throws {RangeError} For a bad option (negative timeout, unknown poller,
 * an fd of 1024 or more under select).
 *
 * @example Serving until Ctrl-C, then cleaning up (Python's `except KeyboardInterrupt`)
 * ```ts
 * import { closeAll, KeyboardInterrupt, loop } from "@asyncore/deno";
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
  runSync(resolveLoopOptions(args, { map: socketMap }));
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
