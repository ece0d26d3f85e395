/**
 * The two ways a loop runs over a map: synchronously (`loop()`,
 * `Loop.run()`), blocking the thread in the poller, and asynchronously
 * (`loopAsync()`, `Loop.runAsync()`), waiting for readiness on a worker
 * thread (a `nonblocking` FFI call) so Deno's event loop keeps running
 * timers, promises, `fetch` and `Deno.serve` in the same process.
 *
 * Both run the passes of one backend and the due timers of the loop that
 * serves the map, after each pass.
 *
 * @module
 */

import { C } from "../ffi/platform.ts";
import { Poller, timeoutMs } from "../ffi/poll.ts";
import type { StopSignal } from "../ffi/signals.ts";
import { Wakeup } from "../ffi/wakeup.ts";
import { FLUSH_RETRY_MS, runPass } from "./_backend.ts";
import { type ChannelMap, coreOf, watchMap } from "./_loop_core.ts";
import { LoopSession } from "./_loop_session.ts";
import { createBackend, type PollerName } from "./_pollers.ts";
import type { TimerQueue } from "./timers.ts";

/** While passes keep finding work, Deno's event loop still gets a turn this often (seconds). */
export const YIELD_EVERY_SECONDS = 0.005;

/** After a pass that found work, how long (seconds) quick passes go on before waiting on a thread. */
export const SPIN_SECONDS = 0.0001;

/**
 * {@linkcode YIELD_EVERY_SECONDS} in milliseconds.
 *
 * @deprecated Milliseconds, unlike every other time in the API: use
 * {@linkcode YIELD_EVERY_SECONDS}.
 */
export const YIELD_EVERY_MS = YIELD_EVERY_SECONDS * 1000;

/**
 * {@linkcode SPIN_SECONDS} in milliseconds.
 *
 * @deprecated Milliseconds, unlike every other time in the API: use {@linkcode SPIN_SECONDS}.
 */
export const SPIN_MS = SPIN_SECONDS * 1000;

// performance.now() counts milliseconds.
const YIELD_MS = YIELD_EVERY_SECONDS * 1000;
const SPIN_FOR_MS = SPIN_SECONDS * 1000;

/**
 * After a pass that fired handlers, this many microtask turns (about 0.1 µs
 * each) come before the next pass, so that promise reactions the handlers set
 * off run at once rather than at the next real yield, which costs a thread
 * hop: a stream's reader takes the chunk just enqueued, `pipeTo` sends it on
 * and asks for the next one. Measured on the streams echo: a third less CPU
 * per MB in bulk, and 2.5 times the round trips of one connection.
 */
const REACTION_TURNS = 8;

/** What one run is asked to do. */
export interface Run {
  /** The map to serve. */
  map: ChannelMap;
  /** The backend. */
  poller: PollerName;
  /** Seconds each pass may wait; null: until something happens. */
  timeout: number | null;
  /** Passes left, or Infinity. */
  count: number;
  /** Signals that stop a synchronous run with `KeyboardInterrupt`. */
  stopSignals?: StopSignal[];
  /** Stops an asynchronous run. */
  signal?: AbortSignal;
  /**
   * An asynchronous run the library starts for channels that need serving
   * (streams): a run the program starts takes over from it, and it comes
   * back when the program's run ends while they still need it.
   */
  background?: boolean;
}

/** The wait of the next pass: `timeout`, shortened to the next due timer. */
function timeoutWithTimers(timers: TimerQueue, timeout: number | null): number | null {
  const next = timers.nextDelay();
  if (next === null) return timeout;
  return timeout === null ? next : Math.min(timeout, next);
}

/** Runs passes until the map is empty or `count` passes are done. */
export function runSync({ map, poller, timeout, count, stopSignals }: Run): void {
  const core = coreOf(map);
  const timers = core.timers;
  const backend = createBackend(poller, map);
  let session: LoopSession | undefined;
  try {
    session = new LoopSession(stopSignals);
    // A closed channel's last output keeps the loop running until it is out.
    for (let left = count; (map.size > 0 || core.flushPending) && left > 0; left--) {
      runPass(backend, timeoutWithTimers(timers, timeout), core);
      timers.runDue();
      session.check();
    }
    core.runFlushes(); // what the last timers sent
  } finally {
    backend.close();
    session?.end();
  }
}

/**
 * Runs passes like {@linkcode runSync} without blocking Deno's event loop.
 * A pass that finds work runs synchronously; only when nothing is ready
 * does it await a `poll()` on a worker thread, over the channels' fds (or
 * the epoll fd) plus a wake-up pipe. The pipe is written when the signal
 * aborts, a channel joins or leaves the map or changes what it waits for,
 * or a timer is scheduled, so those are noticed at once. While busy, it
 * still yields to Deno's event loop every {@linkcode YIELD_EVERY_SECONDS} seconds.
 */
export async function runAsync(run: Run): Promise<void> {
  const { map, background = false } = run;
  if (run.signal?.aborted) return;
  const core = coreOf(map);
  const current = core.serving.get(map);
  if (current !== undefined) {
    if (!current.background) throw new Error("loopAsync is already serving this map");
    if (background) return;
    // The program's own run takes over from the library's background one.
    current.stop();
    await current.done;
    if (core.serving.has(map)) throw new Error("loopAsync is already serving this map");
  }
  const stop = new AbortController();
  const stopped = () => stop.abort();
  run.signal?.addEventListener("abort", stopped);
  const done = passes({ ...run, signal: stop.signal });
  core.serving.set(map, { background, stop: stopped, done: done.catch(() => {}) });
  let ended = false;
  try {
    await done;
    ended = true;
  } finally {
    run.signal?.removeEventListener("abort", stopped);
    core.serving.delete(map);
    // A program's run hands the map back to the background. A background run
    // that saw the map empty starts again if a channel joined between its last
    // pass and now (its handlers' promise reactions run before this line);
    // not when a program's run took over, nor after an error.
    if (!background || (ended && !stop.signal.aborted)) serveInBackground(run);
  }
}

/**
 * Starts a background run over `run.map` if its channels need one (see
 * {@linkcode retainBackground}) and nothing serves it. An error from it
 * (a handler's `ExitNow`) is reported on stderr: no program awaits it.
 */
function serveInBackground(run: Run): void {
  const { map } = run;
  const core = coreOf(map);
  if ((core.backgroundNeeds.get(map) ?? 0) === 0 || map.size === 0 || core.serving.has(map)) {
    return;
  }
  runAsync({ ...run, count: Infinity, signal: undefined, background: true }).catch((error) => {
    console.error(`error: the background loop stopped: ${error}`);
  });
}

/**
 * A channel of `map` needs it served without a call from the program (a
 * stream): a background run starts unless something serves the map. Returns
 * the function that gives the need back; once no channel needs it, the
 * background run still ends only when the map is empty.
 */
export function retainBackground(map: ChannelMap, poller: PollerName): () => void {
  const core = coreOf(map);
  core.backgroundNeeds.set(map, (core.backgroundNeeds.get(map) ?? 0) + 1);
  serveInBackground({ map, poller, timeout: null, count: Infinity });
  let held = true;
  return () => {
    if (!held) return;
    held = false;
    core.backgroundNeeds.set(map, (core.backgroundNeeds.get(map) ?? 1) - 1);
  };
}

/** The passes of an asynchronous run (see {@linkcode runAsync}). */
async function passes({ map, poller, timeout, count, signal }: Run): Promise<void> {
  const core = coreOf(map);
  const timers = core.timers;
  const wakeup = new Wakeup();
  const backend = createBackend(poller, map);
  const waitSet = new Poller();
  const wake = () => wakeup.wake();
  // Code outside the loop (a timer of Deno's, a promise, a Deno.serve
  // handler) runs while the worker thread waits on a snapshot of interest:
  // a channel closed there may be the last one (and poll() never notices
  // that another thread closed an fd it waits on), and data queued there
  // needs POLLOUT, which the snapshot may not ask for.
  const unwatch = watchMap(map, { added: wake, removed: wake, changed: wake });
  const unlisten = timers.onScheduled(wake);
  const unflush = core.onFlush(wake);
  signal?.addEventListener("abort", wake);
  try {
    let busy = false;
    let lastYield = performance.now();
    let lastActive = -Infinity;
    for (
      let left = count;
      (map.size > 0 || core.flushPending) && left > 0 && !signal?.aborted;
      left--
    ) {
      if (!busy || performance.now() - lastYield >= YIELD_MS) {
        // Output queued from outside the loop (a Deno timer, a promise) goes out before the wait.
        const retry = core.runFlushes();
        let wait = busy ? 0 : timeoutWithTimers(timers, timeout);
        if (retry && (wait === null || wait > FLUSH_RETRY_MS / 1000)) wait = FLUSH_RETRY_MS / 1000;
        await waitReady(wait);
        lastYield = performance.now();
        if (signal?.aborted || (map.size === 0 && !core.flushPending)) break;
      }
      const handled = runPass(backend, 0, core);
      timers.runDue();
      if (handled > 0) {
        for (let i = 0; i < REACTION_TURNS; i++) await null;
        busy = true;
        lastActive = performance.now();
      } else {
        // Right after activity the next event usually follows within a round
        // trip: a few more quick passes beat a thread hop. Never when passes
        // are counted, nor once the channels have gone quiet.
        busy = count === Infinity && performance.now() - lastActive < SPIN_FOR_MS;
      }
    }
    core.runFlushes();
  } finally {
    signal?.removeEventListener("abort", wake);
    unflush();
    unlisten();
    unwatch();
    backend.close();
    wakeup.close();
  }

  // Waits on the worker thread until a watched fd or the wake-up is ready.
  async function waitReady(seconds: number | null): Promise<void> {
    const readyNow = backend.prepare();
    let n = backend.fillWaitSet(waitSet.fds, 0);
    waitSet.fds.set(n++, wakeup.fd, C.POLLIN);
    wakeup.waiting = true;
    try {
      await waitSet.pollAsync(n, readyNow ? 0 : timeoutMs(seconds));
    } finally {
      wakeup.waiting = false;
      wakeup.drain();
    }
  }
}
