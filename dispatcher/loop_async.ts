/**
 * `loopAsync`: the same passes as `loop()`, but waiting for readiness on a
 * worker thread (a `nonblocking` FFI call), so Deno's event loop keeps
 * running timers, promises, `fetch` and `Deno.serve` in the same process
 * (see `_run.ts` for how it waits and wakes).
 *
 * @module
 */

import { type LoopAsyncOptions, resolveLoopOptions } from "./_options.ts";
import { runAsync, SPIN_MS, SPIN_SECONDS, YIELD_EVERY_MS, YIELD_EVERY_SECONDS } from "./_run.ts";
import { socketMap } from "./loop.ts";

export { type LoopAsyncOptions, SPIN_MS, SPIN_SECONDS, YIELD_EVERY_MS, YIELD_EVERY_SECONDS };

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
 * ```ts
 * import { closeAll, loopAsync } from "@asyncore/deno";
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
  const run = resolveLoopOptions([options], { map: socketMap });
  if (run.stopSignals) {
    throw new TypeError(
      "stopSignals is for the sync loop(); loopAsync stops on its `signal` (abort it from Deno.addSignalListener)",
    );
  }
  await runAsync({ ...run, signal: options.signal });
}
