/**
 * Timers run by a loop: `callLater` and `callEvery` of one loop, kept in a
 * binary heap ordered by due time. Each loop owns a {@linkcode TimerQueue};
 * the loop shortens its wait to the next due timer and runs the due ones
 * after each pass, so one loop's timers never fire in another's run.
 *
 * @module
 */

import { compactTraceback, isReraised } from "./errors.ts";

/**
 * A scheduled call; `cancel()` stops it (also from inside the call),
 * `reset()` starts its delay again.
 */
export interface TimerHandle {
  /** Stops the timer; a no-op once it has run (`callLater`) or been cancelled. */
  cancel(): void;
  /**
   * Starts the delay again from now: the call comes `seconds` from now
   * (default: the delay the timer was scheduled with; for `callEvery` its
   * interval, and the ticks go on every interval from there). Works on a
   * pending timer and on a `callLater` that has already run (also from
   * inside its own callback: it runs once more); a no-op on a cancelled
   * timer, since `cancel()` is final. Costs O(log n) in the number of timers.
   *
   * @example An idle timer pushed back by activity (pyftpdlib's pattern)
   * ```ts
   * import { callLater, Dispatcher } from "@asyncore/deno";
   *
   * const channel = new Dispatcher();
   * const idle = callLater(30, () => channel.close());
   * // ... whenever the peer does something:
   * idle.reset();
   * // ... and when the channel closes first:
   * idle.cancel();
   * ```
   */
  reset(seconds?: number): void;
  /** Whether the timer was cancelled (or, for `callLater`, has run and not been reset). */
  readonly cancelled: boolean;
}

class Timer implements TimerHandle {
  cancelled = false;
  /** cancel() was called: reset() no longer re-arms it. */
  stopped = false;
  /** Position in the heap, -1 when not in it. */
  index = -1;
  constructor(
    readonly queue: TimerQueue,
    public due: number,
    public readonly interval: number,
    public readonly fn: () => void,
    public seq: number,
    public readonly delay: number,
  ) {}

  reset(seconds?: number): void {
    if (this.stopped) return;
    const ms = seconds === undefined ? this.delay : checkDelay(seconds, this.interval > 0) * 1000;
    this.queue.rearm(this, ms);
  }

  cancel(): void {
    this.stopped = true;
    if (this.cancelled) return;
    this.cancelled = true;
    this.queue.dropped();
  }
}

/** Below this many entries the heap is never compacted. */
const COMPACT_MIN = 64;

function before(a: Timer, b: Timer): boolean {
  return a.due < b.due || (a.due === b.due && a.seq < b.seq);
}

/** Checks a delay in seconds (an interval must be > 0) and returns it. */
function checkDelay(seconds: number, repeat: boolean): number {
  if (typeof seconds !== "number" || !Number.isFinite(seconds) || seconds < 0) {
    throw new RangeError(`timer delay must be a finite number of seconds >= 0, not ${seconds}`);
  }
  if (repeat && seconds <= 0) {
    throw new RangeError(`callEvery needs an interval > 0 seconds, not ${seconds}`);
  }
  return seconds;
}

/** Receives an error thrown by a timer callback. */
export type TimerErrorHandler = (error: unknown, handle: TimerHandle) => void;

/** The default {@linkcode TimerErrorHandler}: one line on stderr. */
export function defaultTimerError(error: unknown): void {
  const [, t, v, info] = compactTraceback(error);
  console.error(`error: uncaptured exception in timer (${t}:${v} ${info})`);
}

/**
 * One loop's timers, in a binary heap ordered by due time (then by the
 * order they were scheduled in). The loop shortens its wait to
 * {@linkcode nextDelay} and calls {@linkcode runDue} after each pass.
 */
export class TimerQueue {
  readonly #heap: Timer[] = [];
  #seq = 0;
  /** Uncancelled timers; every one of them is in the heap. */
  #live = 0;
  readonly #listeners = new Set<() => void>();
  /** Where errors thrown by callbacks go. */
  errorHandler: TimerErrorHandler = defaultTimerError;

  /** Calls `fn` once, `seconds` from now. */
  callLater(seconds: number, fn: () => void): TimerHandle {
    return this.#schedule(seconds, fn, false);
  }

  /** Calls `fn` every `seconds`, the first time one interval from now. */
  callEvery(seconds: number, fn: () => void): TimerHandle {
    return this.#schedule(seconds, fn, true);
  }

  #schedule(seconds: number, fn: () => void, repeat: boolean): TimerHandle {
    if (typeof fn !== "function") throw new TypeError("the timer callback must be a function");
    checkDelay(seconds, repeat);
    const ms = seconds * 1000;
    const t = new Timer(this, performance.now() + ms, repeat ? ms : 0, fn, this.#seq++, ms);
    this.#push(t);
    this.#live++;
    this.#scheduled();
    return t;
  }

  /** `t` is due `ms` from now (its `reset`). */
  rearm(t: Timer, ms: number): void {
    t.due = performance.now() + ms;
    t.seq = this.#seq++;
    if (t.index >= 0) {
      this.#siftUp(t.index);
      this.#siftDown(t.index);
    } else {
      this.#push(t);
    }
    if (t.cancelled) {
      t.cancelled = false;
      this.#live++;
    }
    this.#scheduled();
  }

  /** A timer was cancelled (its `cancel`). */
  dropped(): void {
    this.#live--;
    // A cancelled timer stays in the heap until it comes due. "Cancel and
    // reschedule an idle timeout on every read" would grow the heap by one
    // entry per read, so once dead entries are the majority they are dropped.
    if (this.#heap.length > COMPACT_MIN && this.#live * 2 < this.#heap.length) this.#compact();
  }

  #scheduled(): void {
    for (const wake of this.#listeners) wake();
  }

  /** Seconds until the next timer is due (0 if overdue), or null when none is scheduled. */
  nextDelay(): number | null {
    const heap = this.#heap;
    while (heap.length > 0 && heap[0].cancelled) this.#pop();
    if (heap.length === 0) return null;
    return Math.max(0, heap[0].due - performance.now()) / 1000;
  }

  /** The number of scheduled, uncancelled timers. */
  get pending(): number {
    return this.#live;
  }

  /** Runs every timer that is due; returns how many ran. */
  runDue(): number {
    const heap = this.#heap;
    if (heap.length === 0) return 0;
    const now = performance.now();
    let ran = 0;
    // Timers scheduled by a callback for "now" wait for the next pass, so a
    // callback that reschedules itself cannot starve the sockets.
    const limit = this.#seq;
    while (heap.length > 0 && heap[0].due <= now && heap[0].seq < limit) {
      const t = this.#pop();
      if (t.cancelled) continue;
      if (t.interval > 0) {
        // The next tick after now on the original grid: a late loop skips the
        // ticks it missed instead of calling twice in a row to catch up.
        t.due += t.interval * (Math.floor((now - t.due) / t.interval) + 1);
        t.seq = this.#seq++;
        this.#push(t);
      } else {
        t.cancelled = true;
        this.#live--;
      }
      ran++;
      try {
        t.fn();
      } catch (error) {
        if (isReraised(error)) throw error;
        try {
          this.errorHandler(error, t);
        } catch (inner) {
          if (isReraised(inner)) throw inner;
          defaultTimerError(inner);
        }
      }
    }
    return ran;
  }

  /** Calls `listener` whenever a timer is scheduled; returns the function that stops it. */
  onScheduled(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Cancels every timer (the loop is closing). */
  cancelAll(): void {
    for (const t of [...this.#heap]) t.cancel();
  }

  // ---- the heap: every timer knows its position, so reset() moves it in O(log n) ----

  // Drops the cancelled entries; a sorted array is a valid heap.
  #compact(): void {
    const heap = this.#heap;
    let n = 0;
    for (const t of heap) {
      if (!t.cancelled) heap[n++] = t;
      else t.index = -1;
    }
    heap.length = n;
    heap.sort((a, b) => (before(a, b) ? -1 : 1));
    for (let i = 0; i < n; i++) heap[i].index = i;
  }

  #swap(i: number, j: number): void {
    const heap = this.#heap;
    const a = heap[i], b = heap[j];
    heap[i] = b;
    heap[j] = a;
    b.index = i;
    a.index = j;
  }

  #siftUp(i: number): void {
    const heap = this.#heap;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(heap[i], heap[parent])) break;
      this.#swap(i, parent);
      i = parent;
    }
  }

  #siftDown(i: number): void {
    const heap = this.#heap;
    for (;;) {
      const l = 2 * i + 1, r = l + 1;
      let m = i;
      if (l < heap.length && before(heap[l], heap[m])) m = l;
      if (r < heap.length && before(heap[r], heap[m])) m = r;
      if (m === i) return;
      this.#swap(i, m);
      i = m;
    }
  }

  #push(t: Timer): void {
    t.index = this.#heap.length;
    this.#heap.push(t);
    this.#siftUp(t.index);
  }

  #pop(): Timer {
    const heap = this.#heap;
    const top = heap[0];
    const last = heap.pop()!;
    top.index = -1;
    if (heap.length > 0) {
      heap[0] = last;
      last.index = 0;
      this.#siftDown(0);
    }
    return top;
  }
}
