/**
 * The loop's error vocabulary: `ExitNow`, the errnos that mean "the peer is
 * gone", and `compactTraceback`.
 *
 * @module
 */

import { errno as E, OSError } from "../ffi/errno.ts";

/** Thrown by a handler to leave `loop()`: re-thrown by the loop instead of going to `handleError`. */
export class ExitNow extends Error {
  /** Builds the exception. */
  constructor(message = "ExitNow") {
    super(message);
    this.name = "ExitNow";
  }
}

/**
 * Thrown by `loop()` when a signal named in its `stopSignals` option arrives,
 * as Python raises `KeyboardInterrupt` on Ctrl-C. Like `ExitNow` it is never
 * handed to `handleError`.
 *
 * @example Stopping on Ctrl-C and cleaning up
 * ```ts
 * import { closeAll, KeyboardInterrupt, loop } from "@asyncore/deno";
 *
 * // ... the program's channels are made here ...
 * try {
 *   loop({ stopSignals: ["SIGINT", "SIGTERM"] });
 * } catch (error) {
 *   if (!(error instanceof KeyboardInterrupt)) throw error;
 *   console.log(`stopping on ${error.signal}`);
 * } finally {
 *   closeAll();
 * }
 * ```
 */
export class KeyboardInterrupt extends Error {
  /** The signal that arrived, e.g. `"SIGINT"`. */
  readonly signal: string;

  /** Builds the exception for `signal`. */
  constructor(signal = "SIGINT") {
    super(`interrupted by ${signal}`);
    this.name = "KeyboardInterrupt";
    this.signal = signal;
  }
}

/** The errnos that mean the connection is gone, as asyncore's `_DISCONNECTED`. */
export const DISCONNECTED: ReadonlySet<number> = new Set([
  E.ECONNRESET,
  E.ENOTCONN,
  E.ESHUTDOWN,
  E.ECONNABORTED,
  E.EPIPE,
  E.EBADF,
]);

/** Whether `error` says the connection is gone (an `OSError` whose errno is in {@linkcode DISCONNECTED}). */
export function isDisconnect(error: unknown): boolean {
  return error instanceof OSError && DISCONNECTED.has(error.errno);
}

/** Whether `error` is one the loop re-throws instead of handing to `handleError`. */
export function isReraised(error: unknown): boolean {
  return error instanceof ExitNow || error instanceof KeyboardInterrupt;
}

/** One frame: `[file, function, line]`. */
export type TracebackFrame = [file: string, fn: string, line: string];

const FRAME = /^\s*at (?:(?:async )?(.*?) \()?(.*?):(\d+):\d+\)?$/;

/**
 * Python's `asyncore.compact_traceback` for a JS error: the innermost frame
 * `[file, function, line]`, the error's name, its message, and every frame
 * (outermost first) as `"[file|function|line] ..."`.
 */
export function compactTraceback(
  error: unknown,
): [TracebackFrame, string, string, string] {
  const name = error instanceof Error ? error.name : error === null ? "null" : typeof error;
  const message = error instanceof Error ? error.message : String(error);
  const stack = error instanceof Error && typeof error.stack === "string" ? error.stack : "";
  const frames: TracebackFrame[] = [];
  for (const line of stack.split("\n")) {
    const m = FRAME.exec(line);
    if (m) frames.push([m[2], m[1] || "<anonymous>", m[3]]);
  }
  frames.reverse();
  if (frames.length === 0) frames.push(["<unknown>", "<unknown>", "0"]);
  const info = frames.map(([f, fn, l]) => `[${f}|${fn}|${l}]`).join(" ");
  return [frames[frames.length - 1], name, message, info];
}
