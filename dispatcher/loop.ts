/**
 * The loop: one pass asks every channel `readable()`/`writable()`, waits in
 * `select()`, `poll()` or `epoll_wait()`, and fires the handlers; `loop()`
 * repeats passes until the map is empty or `count` runs out.
 *
 * @module
 */

import { OSError } from "../ffi/errno.ts";
import { Epoll } from "../ffi/epoll.ts";
import { C, platform } from "../ffi/platform.ts";
import { Poller, timeoutMs } from "../ffi/poll.ts";
import { Selector } from "../ffi/select.ts";
import type { Dispatcher } from "./dispatcher.ts";
import { compactTraceback, DISCONNECTED, isReraised } from "./errors.ts";
import { announceRemoved, type SocketMap, socketMap, watchMap } from "./map.ts";
import { nextTimerDelay, runDueTimers } from "./timers.ts";
import { kPolicy } from "./_interest.ts";

const { POLLIN, POLLPRI, POLLOUT, POLLERR, POLLHUP, POLLNVAL } = C;
const WANT_READ = POLLIN | POLLPRI;

/** The readiness backends `loop()` can use. */
export type PollerName = "select" | "poll" | "epoll";

// ---- calling handlers ----

function isOpen(obj: Dispatcher): boolean {
  // Plain objects standing in for channels (as in the reference's tests) count as open.
  return obj._fileno !== null;
}

/**
 * Hands `error` to `obj.handleError`. If `handleError` itself throws, the
 * loop reports that on stderr and closes the channel by force, so one broken
 * channel cannot stop the others.
 */
export function handleErrorSafely(obj: Dispatcher, error: unknown): void {
  try {
    obj.handleError(error);
  } catch (inner) {
    if (isReraised(inner)) throw inner;
    const [, t, v, info] = compactTraceback(inner);
    console.error(`error: handleError of ${safeName(obj)} threw (${t}:${v} ${info}); closing it`);
    forceClose(obj);
  }
}

function safeName(obj: Dispatcher): string {
  try {
    return String(obj);
  } catch {
    return obj?.constructor?.name ?? "channel";
  }
}

function forceClose(obj: Dispatcher): void {
  try {
    obj.close();
  } catch {
    // close() is overridden and broken: take the channel out by hand, as
    // delChannel would: the pollers hear of it before the fd is closed (epoll
    // must forget it first) and fileno() then says closed.
    const fd = obj._fileno;
    if (fd !== null && fd !== undefined) {
      const map = (obj as unknown as { _map: SocketMap })._map;
      if (map?.get(fd) === obj) {
        announceRemoved(map, fd);
        map.delete(fd);
      }
      obj._fileno = null;
    }
    try {
      obj.socket?.close();
    } catch { /* already closed */ }
  }
}

/** Calls one event method of `obj`; what it throws goes to `handleError` (ExitNow leaves). */
function fire(
  obj: Dispatcher,
  event: "handleReadEvent" | "handleWriteEvent" | "handleExptEvent",
): void {
  try {
    obj[event]();
  } catch (error) {
    if (isReraised(error)) throw error;
    handleErrorSafely(obj, error);
  }
}

/** A read event for `obj`, errors to `handleError` (asyncore's `read`). */
export function read(obj: Dispatcher): void {
  fire(obj, "handleReadEvent");
}

/** A write event for `obj`, errors to `handleError` (asyncore's `write`). */
export function write(obj: Dispatcher): void {
  fire(obj, "handleWriteEvent");
}

/** An exceptional-condition event for `obj` (asyncore's `_exception`). */
export function exception(obj: Dispatcher): void {
  fire(obj, "handleExptEvent");
}

/**
 * Fires the handlers `poll()` flags call for (asyncore's `readwrite`).
 * Two differences from the reference: once a handler has closed the channel
 * the remaining events are dropped (no second `handleClose`), and a hang-up
 * that arrives together with readable data (`POLLHUP | POLLIN`, as Unix
 * sockets report a closed peer) reads first: the close comes when `recv`
 * reaches the end of the stream, so no byte is lost.
 */
export function readwrite(obj: Dispatcher, flags: number): void {
  try {
    if (flags & POLLIN) obj.handleReadEvent();
    if (flags & POLLOUT && isOpen(obj)) obj.handleWriteEvent();
    if (flags & POLLPRI && isOpen(obj)) obj.handleExptEvent();
    if (flags & (POLLHUP | POLLERR | POLLNVAL) && isOpen(obj)) {
      const hangupWithData = (flags & (POLLERR | POLLNVAL)) === 0 && (flags & POLLIN) !== 0;
      if (!hangupWithData) obj.handleClose();
    }
  } catch (error) {
    if (isReraised(error)) throw error;
    if (error instanceof OSError && DISCONNECTED.has(error.errno)) {
      try {
        obj.handleClose();
      } catch (inner) {
        if (isReraised(inner)) throw inner;
        handleErrorSafely(obj, inner);
      }
    } else {
      handleErrorSafely(obj, error);
    }
  }
}

// ---- interest ----

const R = 1, W = 2;
/** Set by a pass: the earliest end of an accept back-off, in performance.now() ms. */
let pauseWake = Infinity;

/**
 * What `obj` wants watched: R and/or W, as the reference computes it
 * (`writable() and not accepting`). A predicate that throws sends the error
 * to `handleError` and the channel is left out of this pass.
 */
function interest(obj: Dispatcher, now: number): number {
  let want = 0;
  try {
    if (obj.readable()) want = R;
    if (obj.writable() && !obj.accepting) want |= W;
    // Plain objects standing in for channels (the reference's tests) have no policy.
    if (obj[kPolicy] !== undefined) want = obj[kPolicy](want);
  } catch (error) {
    if (isReraised(error)) throw error;
    handleErrorSafely(obj, error);
    return 0;
  }
  const paused = obj.acceptPausedUntil;
  if (paused !== 0 && paused !== undefined && want & R) {
    if (now < paused) {
      want &= ~R;
      if (paused < pauseWake) pauseWake = paused;
    } else {
      obj.acceptPausedUntil = 0;
    }
  }
  return want;
}

/** The wait of one pass, in seconds (null: forever), shortened for back-offs. */
function cappedTimeout(timeout: number | null): number | null {
  if (pauseWake === Infinity) return timeout;
  const left = Math.max(0, pauseWake - performance.now()) / 1000;
  return timeout === null ? left : Math.min(timeout, left);
}

// ---- one pass over select() ----

const selectors: Selector[] = [];
const sleeper = new Poller();

/** Blocks for `timeout` seconds (null: forever) with nothing to watch. */
function sleep(timeout: number | null): void {
  sleeper.poll(0, timeoutMs(timeout));
}

/**
 * One pass with `select()` (asyncore's `poll`). An fd of `FD_SETSIZE` (1024)
 * or more cannot be watched: the pass throws a `RangeError` naming it.
 * Returns the number of ready fds.
 */
export function poll(timeout: number | null = 0, map: SocketMap = socketMap): number {
  if (map.size === 0) return 0;
  // A handler may run a nested loop: each depth gets its own buffers.
  const sel = selectors.pop() ?? new Selector();
  try {
    return selectPass(sel, timeout, map);
  } finally {
    selectors.push(sel);
  }
}

function selectPass(sel: Selector, timeout: number | null, map: SocketMap): number {
  sel.clear();
  const fds: number[] = [];
  let nfds = 0;
  const now = performance.now();
  pauseWake = Infinity;
  for (const [fd, obj] of map) {
    const want = interest(obj, now);
    if (want === 0) continue;
    if (want & R) sel.read.add(fd);
    if (want & W) sel.write.add(fd);
    sel.except.add(fd);
    fds.push(fd);
    if (fd >= nfds) nfds = fd + 1;
  }
  const wait = cappedTimeout(timeout);
  if (fds.length === 0) {
    sleep(wait);
    return 0;
  }
  const ready = sel.select(nfds, wait);
  if (ready === 0) return 0;
  for (const fd of fds) {
    if (!sel.read.has(fd)) continue;
    const obj = map.get(fd);
    if (obj !== undefined) read(obj);
  }
  for (const fd of fds) {
    if (!sel.write.has(fd)) continue;
    const obj = map.get(fd);
    if (obj !== undefined) write(obj);
  }
  for (const fd of fds) {
    if (!sel.except.has(fd)) continue;
    const obj = map.get(fd);
    if (obj !== undefined) exception(obj);
  }
  return ready;
}

// ---- one pass over poll() ----

const pollers: Poller[] = [];

/** One pass with `poll()` (asyncore's `poll2`). Returns the number of ready fds. */
export function poll2(timeout: number | null = 0, map: SocketMap = socketMap): number {
  if (map.size === 0) return 0;
  const p = pollers.pop() ?? new Poller();
  try {
    return pollPass(p, timeout, map);
  } finally {
    pollers.push(p);
  }
}

/** Same as {@linkcode poll2} (asyncore keeps `poll3` as an alias). */
export const poll3: typeof poll2 = poll2;

function pollMask(want: number): number {
  return (want & R ? WANT_READ : 0) | (want & W ? POLLOUT : 0);
}

function pollPass(p: Poller, timeout: number | null, map: SocketMap): number {
  const arr = p.fds;
  arr.reserve(map.size);
  let n = 0;
  const now = performance.now();
  pauseWake = Infinity;
  for (const [fd, obj] of map) {
    const want = interest(obj, now);
    if (want !== 0) arr.set(n++, fd, pollMask(want));
  }
  const ready = p.poll(n, timeoutMs(cappedTimeout(timeout)));
  let seen = 0;
  for (let i = 0; i < n && seen < ready; i++) {
    const revents = arr.revents(i);
    if (revents === 0) continue;
    seen++;
    const obj = map.get(arr.fd(i));
    if (obj !== undefined) readwrite(obj, revents);
  }
  return ready;
}

/**
 * Fills `p` with the fds `map` wants watched, as a `poll()` pass would, and
 * returns how many. Used to wait for readiness without dispatching
 * (`loopAsync`). The wait should be shortened by {@linkcode pausedTimeout}.
 */
export function collectInterest(map: SocketMap, p: Poller, extra = 0): number {
  const arr = p.fds;
  arr.reserve(map.size + extra);
  let n = 0;
  const now = performance.now();
  pauseWake = Infinity;
  for (const [fd, obj] of map) {
    const want = interest(obj, now);
    if (want !== 0) arr.set(n++, fd, pollMask(want));
  }
  return n;
}

/** `timeout` shortened to the end of the earliest accept back-off of the last interest scan. */
export function pausedTimeout(timeout: number | null): number | null {
  return cappedTimeout(timeout);
}

// ---- passes over epoll ----

const TRACKED = Symbol("asyncore.trackedPredicate");

/**
 * Marks a `readable`/`writable` implementation whose answer depends only on
 * its channel's own state, changed only through methods that call
 * `Dispatcher._interestChanged()`. The epoll pass asks such predicates again
 * only when that happens or the channel had an event.
 */
export function markTrackedPredicate(fn: () => boolean): void {
  (fn as unknown as Record<symbol, boolean>)[TRACKED] = true;
}

function isTracked(obj: Dispatcher): boolean {
  const r = obj.readable as unknown as Record<symbol, boolean>;
  const w = obj.writable as unknown as Record<symbol, boolean>;
  return r[TRACKED] === true && w[TRACKED] === true;
}

/**
 * An epoll instance serving one map during one `loop()`. The interest list
 * lives in the kernel and changes (`epoll_ctl`) only when a channel's
 * `readable()`/`writable()` answer changes, and a pass touches only the
 * channels that can have changed: those that had an event, those whose state
 * changed through their own methods (`send`, `push`, `listen`, ...), and
 * those whose class overrides `readable`/`writable` (asked every pass, as in
 * asyncore). Idle channels of the library's own classes cost nothing, so a
 * pass costs O(active channels).
 */
export class EpollPass {
  readonly #map: SocketMap;
  readonly #ep: Epoll;
  readonly #known = new Map<number, Dispatcher>(); // fd -> channel classified
  readonly #polled = new Set<Dispatcher>(); // custom predicates: asked every pass
  #dirty = new Set<Dispatcher>(); // tracked channels to ask again
  #spare = new Set<Dispatcher>();
  /** fds epoll refuses (regular files): always ready, as poll() treats them. */
  readonly #always = new Map<number, number>();
  readonly #unwatch: () => void;

  /** Creates the epoll instance for `map`. */
  constructor(map: SocketMap) {
    this.#map = map;
    this.#ep = new Epoll(1024);
    this.#unwatch = watchMap(map, {
      added: (fd) => this.#classify(fd),
      removed: (fd) => this.#forget(fd),
      changed: (fd) => {
        const obj = this.#known.get(fd);
        if (obj !== undefined) this.#dirty.add(obj);
      },
    });
  }

  #classify(fd: number): void {
    const obj = this.#map.get(fd);
    if (obj === undefined) return;
    const old = this.#known.get(fd);
    if (old !== undefined && old !== obj) this.#forget(fd);
    this.#known.set(fd, obj);
    if (isTracked(obj) && obj._map === this.#map) this.#dirty.add(obj);
    else this.#polled.add(obj);
  }

  // Called before the channel's fd is closed: afterwards epoll_ctl could no
  // longer name it, and a dup of the file would keep reporting it.
  #forget(fd: number): void {
    this.#always.delete(fd);
    const obj = this.#known.get(fd);
    if (obj !== undefined) {
      this.#unregister(fd, obj);
      this.#known.delete(fd);
      this.#polled.delete(obj);
      this.#dirty.delete(obj);
    }
  }

  // What a channel has registered lives on the channel itself (`_epollPass`,
  // `_epollEvents`): a pass then needs no lookup per event.
  #unregister(fd: number, obj: Dispatcher): void {
    if (obj._epollPass !== this) return;
    obj._epollPass = null;
    obj._epollEvents = 0;
    this.#ep.ctl(C.EPOLL_CTL_DEL, fd, 0);
  }

  #register(fd: number, obj: Dispatcher, events: number): void {
    const mine = obj._epollPass === this;
    if (mine && obj._epollEvents === events) return;
    if (events === 0) {
      // poll() reports nothing for an unregistered fd; epoll would still report HUP/ERR.
      this.#unregister(fd, obj);
      this.#always.delete(fd);
      return;
    }
    let err: number;
    if (mine) {
      err = this.#ep.ctl(C.EPOLL_CTL_MOD, fd, events);
      if (err === platform.errno.ENOENT) err = this.#ep.ctl(C.EPOLL_CTL_ADD, fd, events);
    } else {
      err = this.#ep.ctl(C.EPOLL_CTL_ADD, fd, events);
      if (err === platform.errno.EEXIST) err = this.#ep.ctl(C.EPOLL_CTL_MOD, fd, events);
    }
    if (err !== 0) {
      // EPERM: a regular file, always ready as poll() says. EBADF and the
      // like: the channel finds out when it next uses its fd.
      obj._epollPass = null;
      obj._epollEvents = 0;
      this.#always.set(fd, events);
      return;
    }
    this.#always.delete(fd);
    obj._epollPass = this;
    obj._epollEvents = events;
  }

  #evaluate(obj: Dispatcher, now: number): void {
    const fd = obj._fileno;
    if (fd === null || this.#map.get(fd) !== obj) return;
    this.#register(fd, obj, pollMask(interest(obj, now)));
    // A listener backing off from EMFILE must be asked again when the pause ends.
    if (obj.acceptPausedUntil !== 0 && this.#known.get(fd) === obj) this.#dirty.add(obj);
  }

  // The map was edited by hand (not through addChannel/delChannel): start over.
  #rescan(): void {
    for (const [fd, obj] of this.#known) {
      if (this.#map.get(fd) !== obj) this.#forget(fd);
    }
    for (const fd of this.#map.keys()) {
      if (!this.#known.has(fd)) this.#classify(fd);
    }
  }

  /**
   * Brings the kernel's interest list up to date; returns how many fds must
   * be treated as always ready (epoll refuses them).
   */
  sync(): number {
    if (this.#known.size !== this.#map.size) this.#rescan();
    const now = performance.now();
    pauseWake = Infinity;
    for (const obj of this.#polled) this.#evaluate(obj, now);
    if (this.#dirty.size > 0) {
      // Channels marked while these are asked wait for the next pass.
      const dirty = this.#dirty;
      this.#dirty = this.#spare;
      for (const obj of dirty) this.#evaluate(obj, now);
      dirty.clear();
      this.#spare = dirty;
    }
    return this.#always.size;
  }

  /** One pass: sync interest, wait up to `timeout` seconds, dispatch. Returns events handled. */
  run(timeout: number | null): number {
    const map = this.#map;
    const always = this.sync();
    if (map.size > this.#ep.capacity && this.#ep.capacity < 65536) {
      this.#ep.reserve(Math.min(65536, this.#ep.capacity * 2));
    }
    const wait = always > 0 ? 0 : timeoutMs(cappedTimeout(timeout));
    const n = this.#ep.wait(wait);
    const dirty = this.#dirty;
    for (let i = 0; i < n; i++) {
      const fd = this.#ep.fd(i);
      const obj = map.get(fd);
      if (obj === undefined || obj._epollPass !== this) continue;
      readwrite(obj, this.#ep.events(i));
      // Its handlers may have changed what it wants.
      dirty.add(obj);
    }
    if (always > 0) {
      for (const [fd, events] of [...this.#always]) {
        const obj = map.get(fd);
        if (obj === undefined) continue;
        readwrite(obj, events);
        if (this.#known.get(fd) === obj) this.#dirty.add(obj);
      }
    }
    return n + always;
  }

  /** The epoll fd, for waiting on it from elsewhere (`loopAsync`). */
  fileno(): number {
    return this.#ep.fileno();
  }

  /** Releases the epoll fd and stops watching the map. */
  close(): void {
    this.#unwatch();
    this.#ep.close();
  }
}

// ---- loop ----

/** Options of {@linkcode loop}. */
export interface LoopOptions {
  /** Seconds each pass may wait (fractions allowed; null waits forever). Default 30. */
  timeout?: number | null;
  /** Use `poll()` instead of `select()` (as asyncore's `use_poll`). */
  usePoll?: boolean;
  /** The map to serve; default the global `socketMap`. */
  map?: SocketMap;
  /** Stop after this many passes; default: run until the map is empty. */
  count?: number | null;
  /** The readiness backend; overrides `usePoll`. `"epoll"` is the best choice on Linux. */
  poller?: PollerName;
}

/** Checked loop options with defaults filled in. */
export interface ResolvedLoopOptions {
  /** Seconds per pass, null for forever. */
  timeout: number | null;
  /** The map. */
  map: SocketMap;
  /** Passes left, or Infinity. */
  count: number;
  /** The backend. */
  poller: PollerName;
}

/** Validates loop arguments in either call form. */
export function resolveLoopOptions(
  args: [LoopOptions?] | [
    (number | null)?,
    boolean?,
    SocketMap?,
    (number | null)?,
  ],
): ResolvedLoopOptions {
  let o: LoopOptions;
  const first = args[0];
  if (first !== null && typeof first === "object") {
    o = first as LoopOptions;
  } else {
    const [timeout, usePoll, map, count] = args as [number?, boolean?, SocketMap?, number?];
    o = { timeout, usePoll, map, count };
  }
  const timeout = o.timeout === undefined ? 30 : o.timeout;
  if (timeout !== null && (typeof timeout !== "number" || !(timeout >= 0))) {
    throw new RangeError(`timeout must be a number of seconds >= 0 or null, not ${timeout}`);
  }
  const map = o.map ?? socketMap;
  if (!(map instanceof Map)) throw new TypeError("map must be a Map of fd to Dispatcher");
  const count = o.count === undefined || o.count === null ? Infinity : o.count;
  if (count !== Infinity && (!Number.isInteger(count) || count < 0)) {
    throw new RangeError(`count must be a non-negative integer, not ${o.count}`);
  }
  const poller = o.poller ?? (o.usePoll ? "poll" : "select");
  if (poller !== "select" && poller !== "poll" && poller !== "epoll") {
    throw new RangeError(`poller must be "select", "poll" or "epoll", not ${String(poller)}`);
  }
  if (poller === "epoll" && !platform.hasEpoll) {
    throw new RangeError(`epoll is not available on ${platform.name}; use "poll"`);
  }
  return { timeout, map, count, poller };
}

/** A pass function bound to one map, and what releases it. */
export interface PassRunner {
  /** Runs one pass waiting up to `timeout` seconds; returns the events handled. */
  run(timeout: number | null): number;
  /** Releases what the runner holds. */
  close(): void;
  /** The epoll fd when the runner is epoll-based. */
  epoll?: EpollPass;
}

/** Makes the pass runner for `poller` over `map`. */
export function passRunner(poller: PollerName, map: SocketMap): PassRunner {
  if (poller === "epoll") {
    const ep = new EpollPass(map);
    return { run: (t) => ep.run(t), close: () => ep.close(), epoll: ep };
  }
  const fn = poller === "poll" ? poll2 : poll;
  return { run: (t) => fn(t, map), close: () => {} };
}

/** The wait of the next pass: `timeout`, shortened to the next due timer. */
export function timeoutWithTimers(timeout: number | null): number | null {
  const next = nextTimerDelay();
  if (next === null) return timeout;
  return timeout === null ? next : Math.min(timeout, next);
}

/**
 * Runs passes until the map is empty or `count` passes are done, firing
 * due timers after each pass. Call as in Python, `loop(timeout, usePoll,
 * map, count)`, or with an options object.
 */
export function loop(options?: LoopOptions): void;
/** Positional form, as asyncore's `loop(timeout, use_poll, map, count)`. */
export function loop(
  timeout?: number | null,
  usePoll?: boolean,
  map?: SocketMap,
  count?: number | null,
): void;
export function loop(
  ...args: [LoopOptions?] | [(number | null)?, boolean?, SocketMap?, (number | null)?]
): void {
  const { timeout, map, count, poller } = resolveLoopOptions(args);
  const runner = passRunner(poller, map);
  try {
    for (let left = count; map.size > 0 && left > 0; left--) {
      runner.run(timeoutWithTimers(timeout));
      runDueTimers();
    }
  } finally {
    runner.close();
  }
}

/**
 * Closes every channel in `map` and empties it. `EBADF` is ignored; other
 * errors propagate unless `ignoreAll`.
 */
export function closeAll(map: SocketMap = socketMap, ignoreAll = false): void {
  for (const x of [...map.values()]) {
    try {
      x.close();
    } catch (error) {
      if (isReraised(error)) throw error;
      if (error instanceof OSError && error.errno === platform.errno.EBADF) continue;
      if (!ignoreAll) throw error;
    }
  }
  map.clear();
}
