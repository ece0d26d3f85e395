/**
 * What a synchronous `loop()` sets up around its passes and puts back when it
 * returns: the stop-signal trap (ffi/signals.ts) and a deeper stack trace
 * limit, so the stack of an error thrown in a handler reaches back to where
 * the loop called it (V8 keeps 10 frames by default, and the loop's own
 * frames between `loop()` and a handler are about as many).
 *
 * @module
 */

import { checkStopSignals, SignalTrap, type StopSignal } from "../ffi/signals.ts";
import { KeyboardInterrupt } from "./errors.ts";

/**
 * Longest wait of a pass, in seconds, while stop signals are armed on a
 * thread the kernel does not interrupt for them (see ffi/signals.ts): how
 * late a stop may be noticed there.
 */
export const OFF_MAIN_THREAD_WAIT = 0.25;

/** Frames kept in a stack while a loop runs (unless the program asked for more). */
export const LOOP_STACK_TRACE_LIMIT = 50;

/** One running loop's setup; {@linkcode LoopSession.end} undoes it. */
export class LoopSession {
  readonly #trap: SignalTrap | null;
  readonly #stackLimit: number;
  readonly #maxWait: number | null;

  /** Arms `stopSignals` (if any) and raises `Error.stackTraceLimit`. */
  constructor(stopSignals: readonly StopSignal[] | undefined) {
    this.#trap = stopSignals && stopSignals.length > 0
      ? new SignalTrap(checkStopSignals(stopSignals))
      : null;
    this.#maxWait = this.#trap && SignalTrap.offMainThread() ? OFF_MAIN_THREAD_WAIT : null;
    this.#stackLimit = Error.stackTraceLimit;
    if (!(Error.stackTraceLimit >= LOOP_STACK_TRACE_LIMIT)) {
      Error.stackTraceLimit = LOOP_STACK_TRACE_LIMIT;
    }
  }

  /** The wait for the next pass: `timeout` (seconds, null: forever), capped when needed. */
  wait(timeout: number | null): number | null {
    const max = this.#maxWait;
    if (max === null) return timeout;
    return timeout === null ? max : Math.min(timeout, max);
  }

  /** Throws {@linkcode KeyboardInterrupt} if a stop signal arrived; called between passes. */
  check(): void {
    const sig = this.#trap?.fired();
    if (sig) throw new KeyboardInterrupt(sig);
  }

  /** Releases the trap and restores the stack trace limit. */
  end(): void {
    this.#trap?.release();
    Error.stackTraceLimit = this.#stackLimit;
  }
}
