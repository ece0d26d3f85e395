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

/** Frames kept in a stack while a loop runs (unless the program asked for more). */
export const LOOP_STACK_TRACE_LIMIT = 50;

/** One running loop's setup; {@linkcode LoopSession.end} undoes it. */
export class LoopSession {
  readonly #trap: SignalTrap | null;
  readonly #stackLimit: number;

  /** Arms `stopSignals` (if any) and raises `Error.stackTraceLimit`. */
  constructor(stopSignals: readonly StopSignal[] | undefined) {
    this.#trap = stopSignals && stopSignals.length > 0
      ? new SignalTrap(checkStopSignals(stopSignals))
      : null;
    this.#stackLimit = Error.stackTraceLimit;
    if (!(Error.stackTraceLimit >= LOOP_STACK_TRACE_LIMIT)) {
      Error.stackTraceLimit = LOOP_STACK_TRACE_LIMIT;
    }
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
