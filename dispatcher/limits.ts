/**
 * The limits a channel facing careless or hostile peers needs, one section
 * per policy: send backpressure (stop reading a channel whose output queue
 * is over its high-water mark) and idle timeouts (one lazily re-armed timer
 * per channel). The listener's limits live in `listener.ts`. Internal:
 * `Dispatcher`, `DispatcherWithSend` and `AsyncChat` expose the knobs.
 *
 * @module
 */

import { READ } from "../ffi/transport.ts";
import { handleErrorSafely } from "./_events.ts";
import { type Channel, type ChannelCore, type kCore, notifyInterest } from "./_loop_core.ts";
import { isReraised } from "./errors.ts";
import type { TimerHandle, TimerQueue } from "./timers.ts";

// ---- backpressure ----

/** The default `highWaterMark`: 1 MiB. */
export const DEFAULT_HIGH_WATER_MARK = 1024 * 1024;

/** The part of a channel with an output queue that backpressure uses. */
export interface Sender {
  highWaterMark: number;
  readonly queuedBytes: number;
  _readPaused: boolean;
  handleDrain(): void;
  readonly [kCore]: ChannelCore;
}

/**
 * Reading resumes once the queue is down to this: half the high-water mark,
 * so the socket still has plenty to send while the next reads refill it
 * (resuming only at empty would leave the link idle for a round trip).
 */
export function lowWaterMark(highWaterMark: number): number {
  return highWaterMark / 2;
}

/**
 * Called at the end of each read event of `ch` with the queue size before
 * it: pauses reading when the event grew the queue past the high-water
 * mark. Only output queued while the channel handles its own input pauses
 * it: that output answers the input, so not reading is what bounds it.
 * Output queued from elsewhere (a connect handler, a timer, another
 * channel) does not: not reading could not slow its source, and a client
 * that queues a big upload and reads the answers as they come would
 * deadlock against a server that applies the same rule.
 */
export function pauseIfOver(ch: Sender, queuedBefore: number): void {
  const q = ch.queuedBytes;
  if (!ch._readPaused && q > ch.highWaterMark && q > queuedBefore) {
    ch._readPaused = true;
    notifyInterest(ch);
  }
}

/**
 * Called after sending from a paused channel's queue: once it is down to
 * the low-water mark, reading resumes and `handleDrain` runs. The epoll pass
 * is told, since this may run outside the channel's own events.
 */
export function resumeIfDrained(ch: Sender): void {
  if (ch._readPaused && ch.queuedBytes <= lowWaterMark(ch.highWaterMark)) {
    ch._readPaused = false;
    notifyInterest(ch);
    ch.handleDrain();
  }
}

/**
 * The interest policy: drops READ from `want` while the channel is paused.
 * A queue emptied by hand (`discardBuffers`, `outBuffer.clear()`) ends the
 * pause here; `handleDrain` runs only from the sending path.
 */
export function applyBackpressure(ch: Sender, want: number): number {
  if (ch._readPaused && ch.queuedBytes <= lowWaterMark(ch.highWaterMark)) ch._readPaused = false;
  return ch._readPaused ? want & ~READ : want;
}

// ---- idle timeouts ----

/** Runs `fn` (a hook the loop calls outside an event) for `ch`: an error goes where an event handler's would. */
export function guarded(ch: Channel, fn: () => void): void {
  try {
    fn();
  } catch (error) {
    if (isReraised(error)) throw error;
    handleErrorSafely(ch, error);
  }
}

/** The part of a channel the idle watch uses. */
export interface Watched {
  fileno(): number | null;
  /** Set by every recv/send that moved a byte; cleared by the watch. */
  _ioSeen: boolean;
  handleIdleTimeout(): void;
}

/**
 * How many looks per timeout: a channel is found idle between `timeout`
 * and `timeout * (1 + 1/LOOKS)` after its last byte.
 */
const LOOKS = 4;

/**
 * One channel's idle timer. A read or send costs one boolean store
 * (`_ioSeen = true`), never a timer operation: the timer looks every
 * `timeout / LOOKS`, notes the time it saw activity, and re-arms itself for
 * what is left; only `timeout` after the last look that saw activity does
 * it call `handleIdleTimeout`. So it never fires early, and at most a
 * quarter of the timeout late.
 */
export class IdleWatch {
  readonly #ch: Watched;
  readonly #ms: number;
  readonly #timer: TimerHandle;
  readonly #guard: (fn: () => void) => void;
  #lastSeen: number;

  /** Starts watching `ch` on `timers` (`guard` runs the hook, errors to `handleError`). */
  constructor(
    ch: Watched,
    seconds: number,
    timers: TimerQueue,
    guard: (fn: () => void) => void,
  ) {
    this.#ch = ch;
    this.#ms = seconds * 1000;
    this.#guard = guard;
    this.#lastSeen = performance.now();
    ch._ioSeen = false;
    this.#timer = timers.callLater(seconds / LOOKS, () => this.#look());
  }

  /** The timeout, in seconds. */
  get seconds(): number {
    return this.#ms / 1000;
  }

  /** Stops watching (the channel closed or the timeout was changed). */
  stop(): void {
    this.#timer.cancel();
  }

  #look(): void {
    const ch = this.#ch;
    if (ch.fileno() === null) return; // closed: the watch ends with it
    const now = performance.now();
    if (ch._ioSeen) {
      ch._ioSeen = false;
      this.#lastSeen = now;
    }
    const left = this.#ms - (now - this.#lastSeen);
    if (left > 0) {
      this.#timer.reset(Math.min(left, this.#ms / LOOKS) / 1000);
      return;
    }
    this.#guard(() => ch.handleIdleTimeout());
    if (ch.fileno() !== null && !this.#timer.cancelled) {
      // The hook kept the channel open: a whole new period before the next call.
      this.#lastSeen = performance.now();
      ch._ioSeen = false;
      this.#timer.reset(this.#ms / LOOKS / 1000);
    }
  }
}

/** Checks an idle timeout argument. */
export function checkIdleSeconds(seconds: unknown): number | null {
  if (seconds === null) return null;
  if (typeof seconds !== "number" || !Number.isFinite(seconds) || seconds <= 0) {
    throw new RangeError(
      `the idle timeout must be a finite number of seconds > 0 or null, not ${String(seconds)}`,
    );
  }
  return seconds;
}
