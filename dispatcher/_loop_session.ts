/**
 * What a synchronous `loop()` sets up around its passes and puts back when it
 * returns: the stop-signal trap (ffi/signals.ts) and a deeper stack trace
 * limit, so the stack of an error thrown in a handler reaches back to where
 * the loop called it (V8 keeps 10 frames by default, and the loop's own
 * frames between `loop()` and a handler are about as many).
 *
 * @module
 */

import {
  armStopSignals,
  checkStopSignals,
  type StopSignal,
  type StopTrap,
} from "../ffi/signals.ts";
import { KeyboardInterrupt } from "./errors.ts";

/**
 * How often, at most, a pass asks the kernel whether a stop signal arrived,
 * in ms: a `sigaction` query costs about 1.5 us here, and a busy loop makes
 * many short passes. A signal during a wait is seen at once (`EINTR`).
 */
export const STOP_CHECK_INTERVAL_MS = 1;

/** Frames kept in a stack while a loop runs (unless the program asked for more). */
export const LOOP_STACK_TRACE_LIMIT = 50;

/** One running loop's setup; {@linkcode LoopSession.end} undoes it. */
export class LoopSession {
  readonly #trap: StopTrap | null;
  readonly #stackLimit: number;
  #nextCheck = 0;

  /** Arms `stopSignals` (if any) and raises `Error.stackTraceLimit`. */
  constructor(stopSignals: readonly StopSignal[] | undefined) {
    this.#trap = stopSignals && stopSignals.length > 0
      ? armStopSignals(checkStopSignals(stopSignals))
      : null;
    this.#stackLimit = Error.stackTraceLimit;
    if (!(Error.stackTraceLimit >= LOOP_STACK_TRACE_LIMIT)) {
      Error.stackTraceLimit = LOOP_STACK_TRACE_LIMIT;
    }
  }

  /** Throws {@linkcode KeyboardInterrupt} if a stop signal arrived; called between passes. */
  check(): void {
    const trap = this.#trap;
    if (trap === null) return;
    let sig = trap.seen();
    if (sig === null) {
      const now = performance.now();
      if (now < this.#nextCheck) return;
      this.#nextCheck = now + STOP_CHECK_INTERVAL_MS;
      sig = trap.fired();
    }
    if (sig !== null) throw new KeyboardInterrupt(sig);
  }

  /** Releases the trap and restores the stack trace limit. */
  end(): void {
    this.#trap?.release();
    Error.stackTraceLimit = this.#stackLimit;
  }
}
