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

/** While passes keep finding work, Deno's event loop still gets a turn this often (ms). */
export const YIELD_EVERY_MS = 5;

/** After a pass that found work, how long (ms) quick passes go on before waiting on a thread. */
export const SPIN_MS = 0.1;

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
 * still yields to Deno's event loop every {@linkcode YIELD_EVERY_MS} ms.
 */
export async function runAsync({ map, poller, timeout, count, signal }: Run): Promise<void> {
  if (signal?.aborted) return;
  const core = coreOf(map);
  if (core.serving.has(map)) throw new Error("loopAsync is already serving this map");
  core.serving.add(map);
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
      if (!busy || performance.now() - lastYield >= YIELD_EVERY_MS) {
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
        busy = true;
        lastActive = performance.now();
      } else {
        // Right after activity the next event usually follows within a round
        // trip: a few more quick passes beat a thread hop. Never when passes
        // are counted, nor once the channels have gone quiet.
        busy = count === Infinity && performance.now() - lastActive < SPIN_MS;
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
    core.serving.delete(map);
  }

  // Waits on the worker thread until a watched fd or the wake-up is ready.
  async function waitReady(seconds: number | null): Promise<void> {
    const readyNow = backend.prepare();
    let n = backend.fillWaitSet(waitSet.fds, 0);
    waitSet.fds.set(n++, wakeup.readFd, C.POLLIN);
    wakeup.waiting = true;
    try {
      await waitSet.pollAsync(n, readyNow ? 0 : timeoutMs(seconds));
    } finally {
      wakeup.waiting = false;
      wakeup.drain();
    }
  }
}
