/**
 * Timers run by the loop: `callLater` and `callEvery`, process-wide (not
 * tied to a map), kept in a binary heap ordered by due time. The loop
 * shortens its wait to the next due timer and runs the due ones after each
 * pass.
 *
 * @module
 */

import { compactTraceback, isReraised } from "./errors.ts";

/** A scheduled call; `cancel()` stops it (also from inside the call). */
export interface TimerHandle {
  /** Stops the timer; a no-op once it has run (`callLater`) or been cancelled. */
  cancel(): void;
  /** Whether the timer was cancelled. */
  readonly cancelled: boolean;
}

class Timer implements TimerHandle {
  cancelled = false;
  constructor(
    public due: number,
    public readonly interval: number,
    public readonly fn: () => void,
    public seq: number,
  ) {}

  cancel(): void {
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
  for (const t of heap) if (!t.cancelled) heap[n++] = t;
  heap.length = n;
  heap.sort((a, b) => (before(a, b) ? -1 : 1));
}

function heapPush(t: Timer): void {
  heap.push(t);
  let i = heap.length - 1;
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (!before(heap[i], heap[parent])) break;
    [heap[i], heap[parent]] = [heap[parent], heap[i]];
    i = parent;
  }
}

function heapPop(): Timer {
  const top = heap[0];
  const last = heap.pop()!;
  if (heap.length > 0) {
    heap[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1, r = l + 1;
      let m = i;
      if (l < heap.length && before(heap[l], heap[m])) m = l;
      if (r < heap.length && before(heap[r], heap[m])) m = r;
      if (m === i) break;
      [heap[i], heap[m]] = [heap[m], heap[i]];
      i = m;
    }
  }
  return top;
}

function schedule(seconds: number, fn: () => void, repeat: boolean): TimerHandle {
  if (typeof fn !== "function") throw new TypeError("the timer callback must be a function");
  if (typeof seconds !== "number" || !Number.isFinite(seconds) || seconds < 0) {
    throw new RangeError(`timer delay must be a finite number of seconds >= 0, not ${seconds}`);
  }
  if (repeat && seconds <= 0) {
    throw new RangeError(`callEvery needs an interval > 0 seconds, not ${seconds}`);
  }
  const t = new Timer(performance.now() + seconds * 1000, repeat ? seconds * 1000 : 0, fn, seq++);
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
