/**
 * `loopAsync`: the same passes as `loop()`, but waiting for readiness on a
 * worker thread (a `nonblocking` FFI call), so Deno's event loop keeps
 * running timers, promises, `fetch` and `Deno.serve` in the same process.
 *
 * A pass that finds work runs synchronously, like `loop()`; only when
 * nothing is ready does it await a `poll()` on the worker thread, over the
 * channels' fds (or the epoll fd) plus a wake-up pipe. The pipe is written
 * when the signal aborts, a channel joins or leaves the map or changes what
 * it waits for (`send` queues data, `connect` starts) or a timer is
 * scheduled, so those are noticed at once. While busy, it still yields to
 * Deno's event loop every {@linkcode YIELD_EVERY_MS} ms.
 *
 * @module
 */

import { C } from "../ffi/platform.ts";
import { Poller, timeoutMs } from "../ffi/poll.ts";
import { Wakeup } from "../ffi/wakeup.ts";
import { createBackend, resolveLoopOptions, runPass, timeoutWithTimers } from "./_backend.ts";
import type { LoopOptions } from "./loop.ts";
import { type SocketMap, watchMap } from "./map.ts";
import { onTimerScheduled, runDueTimers } from "./timers.ts";

/** Options of {@linkcode loopAsync}: those of `loop()` plus an abort signal. */
export interface LoopAsyncOptions extends LoopOptions {
  /** Stops the loop (promptly, even while waiting); the map's channels stay open. */
  signal?: AbortSignal;
}

/** While passes keep finding work, Deno's event loop still gets a turn this often. */
export const YIELD_EVERY_MS = 5;

/** After a pass that found work, how long (ms) quick passes go on before waiting on a thread. */
export const SPIN_MS = 0.1;

const serving = new WeakSet<SocketMap>();

/** The wake-up of a waiting poll (ffi/wakeup.ts), written only while a wait is under way. */
class Waker extends Wakeup {
  waiting = false;

  override wake(): void {
    if (this.waiting) super.wake();
  }
}

/**
 * Runs passes like `loop()` without blocking Deno's event loop. Resolves when
 * the map is empty, `count` passes are done or `signal` aborts (an abort
 * never rejects and leaves the channels open, so the loop can be resumed).
 * Rejects with what `loop()` would throw (e.g. `ExitNow`). One `loopAsync`
 * per map at a time.
 *
 * @param options As `loop()`'s (without `stopSignals`), plus `signal`: an `AbortSignal` that stops it.
 * @returns A promise that settles when the loop stops.
 * @throws {TypeError} When `stopSignals` is given (use `signal`, see the example) or
 * another `loopAsync` already serves the map.
 *
 * @example Stopping on Ctrl-C: Deno's signal listeners run while it waits
 * ```ts ignore
 * import { closeAll, loopAsync } from "jsr:@asyncore/deno";
 *
 * const stop = new AbortController();
 * const onSignal = () => stop.abort();
 * Deno.addSignalListener("SIGINT", onSignal);
 * Deno.addSignalListener("SIGTERM", onSignal);
 * try {
 *   await loopAsync({ poller: "epoll", signal: stop.signal });
 * } finally {
 *   Deno.removeSignalListener("SIGINT", onSignal);
 *   Deno.removeSignalListener("SIGTERM", onSignal);
 *   closeAll();
 * }
 * ```
 */
export async function loopAsync(options: LoopAsyncOptions = {}): Promise<void> {
  const { timeout, map, count, poller, stopSignals } = resolveLoopOptions([options]);
  if (stopSignals) {
    throw new TypeError(
      "stopSignals is for the sync loop(); loopAsync stops on its `signal` (abort it from Deno.addSignalListener)",
    );
  }
  const signal = options.signal;
  if (signal?.aborted) return;
  if (serving.has(map)) throw new Error("loopAsync is already serving this map");
  serving.add(map);
  const waker = new Waker();
  const backend = createBackend(poller, map);
  const waitSet = new Poller();
  const wake = () => waker.wake();
  // Code outside the loop (a timer of Deno's, a promise, a Deno.serve
  // handler) runs while the worker thread waits on a snapshot of interest:
  // a channel closed there may be the last one (and poll() never notices
  // that another thread closed an fd it waits on), and data queued there
  // needs POLLOUT, which the snapshot may not ask for.
  const unwatch = watchMap(map, { added: wake, removed: wake, changed: wake });
  const unlisten = onTimerScheduled(wake);
  signal?.addEventListener("abort", wake);
  try {
    let busy = false;
    let lastYield = performance.now();
    let lastActive = -Infinity;
    for (let left = count; map.size > 0 && left > 0 && !signal?.aborted; left--) {
      if (!busy || performance.now() - lastYield >= YIELD_EVERY_MS) {
        await waitReady(busy ? 0 : timeoutWithTimers(timeout));
        lastYield = performance.now();
        if (signal?.aborted || map.size === 0) break;
      }
      const handled = runPass(backend, 0);
      runDueTimers();
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
  } finally {
    signal?.removeEventListener("abort", wake);
    unlisten();
    unwatch();
    backend.close();
    waker.close();
    serving.delete(map);
  }

  // Waits on the worker thread until a watched fd or the waker is ready.
  async function waitReady(seconds: number | null): Promise<void> {
    const readyNow = backend.prepare();
    let n = backend.fillWaitSet(waitSet.fds, 0);
    waitSet.fds.set(n++, waker.fd, C.POLLIN);
    waker.waiting = true;
    try {
      await waitSet.pollAsync(n, readyNow ? 0 : timeoutMs(seconds));
    } finally {
      waker.waiting = false;
      waker.drain();
    }
  }
}
