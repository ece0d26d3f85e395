/**
 * Timers run by the loop: `callLater` and `callEvery`, process-wide (not
 * tied to a map), kept in a binary heap ordered by due time. The loop
 * shortens its wait to the next due timer and runs the due ones after each
 * pass.
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
   * ```ts ignore
   * const idle = callLater(30, () => channel.close());
   * // ... whenever the peer does something:
   * idle.reset();
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
    public due: number,
    public readonly interval: number,
    public readonly fn: () => void,
    public seq: number,
    public readonly delay: number,
  ) {}

  reset(seconds?: number): void {
    if (this.stopped) return;
    const ms = seconds === undefined ? this.delay : checkDelay(seconds, this.interval > 0) * 1000;
    this.due = performance.now() + ms;
    this.seq = seq++;
    if (this.index >= 0) {
      siftUp(this.index);
      siftDown(this.index);
    } else {
      heapPush(this);
    }
    if (this.cancelled) {
      this.cancelled = false;
      live++;
    }
    for (const wake of listeners) wake();
  }

  cancel(): void {
    this.stopped = true;
    if (this.cancelled) return;
    this.cancelled = true;
    live--;
    // A cancelled timer stays in the heap until it comes due. "Cancel and
    // reschedule an idle timeout on every read" would grow the heap by one
    // entry per read, so once dead entries are the majority they are dropped.
    if (heap.length > COMPACT_MIN && live * 2 < heap.length) compact();
  }
}

const heap: Timer[] = [];
let seq = 0;
/** Uncancelled timers; every one of them is in the heap. */
let live = 0;
const listeners = new Set<() => void>();
/** Below this many entries the heap is never compacted. */
const COMPACT_MIN = 64;

function before(a: Timer, b: Timer): boolean {
  return a.due < b.due || (a.due === b.due && a.seq < b.seq);
}

// Drops the cancelled entries; a sorted array is a valid heap.
function compact(): void {
  let n = 0;
  for (const t of heap) {
    if (!t.cancelled) heap[n++] = t;
    else t.index = -1;
  }
  heap.length = n;
  heap.sort((a, b) => (before(a, b) ? -1 : 1));
  for (let i = 0; i < n; i++) heap[i].index = i;
}

// Every timer knows its heap position, so reset() can move it in O(log n).
function swap(i: number, j: number): void {
  const a = heap[i], b = heap[j];
  heap[i] = b;
  heap[j] = a;
  b.index = i;
  a.index = j;
}

function siftUp(i: number): number {
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (!before(heap[i], heap[parent])) break;
    swap(i, parent);
    i = parent;
  }
  return i;
}

function siftDown(i: number): void {
  for (;;) {
    const l = 2 * i + 1, r = l + 1;
    let m = i;
    if (l < heap.length && before(heap[l], heap[m])) m = l;
    if (r < heap.length && before(heap[r], heap[m])) m = r;
    if (m === i) return;
    swap(i, m);
    i = m;
  }
}

function heapPush(t: Timer): void {
  t.index = heap.length;
  heap.push(t);
  siftUp(t.index);
}

function heapPop(): Timer {
  const top = heap[0];
  const last = heap.pop()!;
  top.index = -1;
  if (heap.length > 0) {
    heap[0] = last;
    last.index = 0;
    siftDown(0);
  }
  return top;
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

function schedule(seconds: number, fn: () => void, repeat: boolean): TimerHandle {
  if (typeof fn !== "function") throw new TypeError("the timer callback must be a function");
  checkDelay(seconds, repeat);
  const ms = seconds * 1000;
  const t = new Timer(performance.now() + ms, repeat ? ms : 0, fn, seq++, ms);
  heapPush(t);
  live++;
  for (const wake of listeners) wake();
  return t;
}

/** Calls `fn` once, `seconds` from now, from inside `loop()` or `loopAsync()`. */
export function callLater(seconds: number, fn: () => void): TimerHandle {
  return schedule(seconds, fn, false);
}

/** Calls `fn` every `seconds`, the first time one interval from now. */
export function callEvery(seconds: number, fn: () => void): TimerHandle {
  return schedule(seconds, fn, true);
}

/** Seconds until the next timer is due (0 if overdue), or null when none is scheduled. */
export function nextTimerDelay(): number | null {
  while (heap.length > 0 && heap[0].cancelled) heapPop();
  if (heap.length === 0) return null;
  return Math.max(0, heap[0].due - performance.now()) / 1000;
}

/** The number of scheduled, uncancelled timers. */
export function pendingTimers(): number {
  return live;
}

/** Receives an error thrown by a timer callback. */
export type TimerErrorHandler = (error: unknown, handle: TimerHandle) => void;

function defaultTimerError(error: unknown): void {
  const [, t, v, info] = compactTraceback(error);
  console.error(`error: uncaptured exception in timer (${t}:${v} ${info})`);
}

let onTimerError: TimerErrorHandler = defaultTimerError;

/**
 * Sets where errors thrown by timer callbacks go (default: one line on
 * stderr). The timer is not run again if it was a `callLater`; a
 * `callEvery` keeps its schedule. `ExitNow` is not caught: it leaves the loop.
 */
export function setTimerErrorHandler(handler: TimerErrorHandler | null): void {
  onTimerError = handler ?? defaultTimerError;
}

/** Runs every timer that is due; returns how many ran. */
export function runDueTimers(): number {
  if (heap.length === 0) return 0;
  const now = performance.now();
  let ran = 0;
  // Timers scheduled by a callback for "now" wait for the next pass, so a
  // callback that reschedules itself cannot starve the sockets.
  const limit = seq;
  while (heap.length > 0 && heap[0].due <= now && heap[0].seq < limit) {
    const t = heapPop();
    if (t.cancelled) continue;
    if (t.interval > 0) {
      // The next tick after now on the original grid: a late loop skips the
      // ticks it missed instead of calling twice in a row to catch up.
      t.due += t.interval * (Math.floor((now - t.due) / t.interval) + 1);
      t.seq = seq++;
      heapPush(t);
    } else {
      t.cancelled = true;
      live--;
    }
    ran++;
    try {
      t.fn();
    } catch (error) {
      if (isReraised(error)) throw error;
      try {
        onTimerError(error, t);
      } catch (inner) {
        if (isReraised(inner)) throw inner;
        defaultTimerError(inner);
      }
    }
  }
  return ran;
}

/** Calls `listener` whenever a timer is scheduled; returns the function that stops it. */
export function onTimerScheduled(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}
