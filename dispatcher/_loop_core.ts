/**
 * What one loop owns, as libuv's `uv_loop_t`: its map of channels, its
 * timers, the watchers told when a channel joins, leaves or changes what it
 * waits for (the epoll backend, a waiting `loopAsync`), and which maps a
 * `loopAsync` serves. The public `Loop` (loop.ts) is built on one of these.
 *
 * A map given to the function forms (`loop({ map })`, `new Handler(sock,
 * map)`) that no `Loop` owns is served by the default loop: its timers are
 * the default loop's, and its watchers are kept by the default loop per map.
 *
 * Also the part of a channel the loop keeps ({@linkcode ChannelCore}) and
 * the interface a map's channels offer the loop ({@linkcode Channel}).
 * Internal: mod.ts exports the public names.
 *
 * @module
 */

import type { HeldOutput } from "../ffi/transport.ts";
import { TimerQueue } from "./timers.ts";

/** The key of a channel's {@linkcode ChannelCore}. */
export const kCore: unique symbol = Symbol("asyncore.core");

/**
 * The method a channel's class implements to apply library policy to the
 * predicates' answer: it gets the bits `readable()`/`writable()` asked for
 * and returns the bits to watch. Calling `super[kPolicy](want)` chains them.
 */
export const kPolicy: unique symbol = Symbol("asyncore.interestPolicy");

/** What a map holds and the loop drives: a `Dispatcher`, or a stand-in (the reference's tests use plain objects). */
export interface Channel {
  /** The fd, or null once closed. */
  fileno(): number | null;
  /** Whether to watch for reading. */
  readable(): boolean;
  /** Whether to watch for writing. */
  writable(): boolean;
  /** A listening channel (never watched for writing). */
  readonly accepting: boolean;
  /** The fd is readable. */
  handleReadEvent(): void;
  /** The fd is writable. */
  handleWriteEvent(): void;
  /** An exceptional condition. */
  handleExptEvent(): void;
  /** The peer hung up. */
  handleClose(): void;
  /** A handler threw `error`. */
  handleError(error: unknown): void;
  /** Closes the channel. */
  close(): void;
  /** The channel's socket, closed by force when its `close()` is broken. */
  readonly socket?: { close(): void } | null;
  /**
   * The library's part of the channel (absent on stand-ins).
   * @ignore
   */
  readonly [kCore]?: ChannelCore;
  /**
   * Library policy on top of the predicates (absent on stand-ins).
   * @ignore
   */
  [kPolicy]?(want: number): number;
}

/** fd → channel, as asyncore's `socket_map` (typed `SocketMap` in the public API). */
export type ChannelMap = Map<number, Channel>;

/** Told when a channel joins or leaves a map. */
export interface MapWatcher {
  /** `fd` was added to the map. */
  added(fd: number): void;
  /** `fd` is leaving the map; its socket is still open. */
  removed(fd: number): void;
  /** The channel of `fd` changed state its `readable()`/`writable()` may depend on. */
  changed?(fd: number): void;
}

const NONE: readonly MapWatcher[] = [];
const kOwner: unique symbol = Symbol("asyncore.loopOwner");

/** A map a loop owns carries its loop. */
interface OwnedMap extends ChannelMap {
  [kOwner]?: LoopCore;
}

/** A `loopAsync`-style run serving a map. */
export interface Serving {
  /** Started by the library for channels that need serving (streams), not by the program. */
  readonly background: boolean;
  /** Asks the run to end (promptly, even while it waits). */
  stop(): void;
  /** Settles when the run has ended. */
  readonly done: Promise<void>;
}

/** The state one loop owns. */
export class LoopCore {
  /** The loop's own map. */
  readonly map: ChannelMap;
  /** The loop's timers. */
  readonly timers: TimerQueue = new TimerQueue();
  // Watcher lists are replaced (never edited) on every change, so a notice
  // iterates a snapshot even if a watcher (un)registers meanwhile.
  #watchers: readonly MapWatcher[] = NONE;
  /** Watchers of the maps no loop owns, which this (the default) loop serves. */
  readonly #foreign = new WeakMap<ChannelMap, readonly MapWatcher[]>();
  // A notice goes out several times per connection, nearly always to the
  // same map: the last foreign map's watchers are kept at hand.
  #lastForeign: ChannelMap | null = null;
  #lastForeignWatchers: readonly MapWatcher[] = NONE;
  /** The asynchronous run serving each map of this loop, if one does. */
  readonly serving: WeakMap<ChannelMap, Serving> = new WeakMap();
  /** How many channels of each map need it served in the background (streams). */
  readonly backgroundNeeds: WeakMap<ChannelMap, number> = new WeakMap();
  // Output transports hold for the end of the pass (TLS records gathered for
  // one send). Two arrays, swapped, so a pass allocates nothing.
  #flushes: HeldOutput[] = [];
  #spareFlushes: HeldOutput[] = [];
  #onFlush: ReadonlySet<() => void> = new Set();

  /** A loop state with a new, empty map of its own. */
  constructor() {
    const map: OwnedMap = new Map();
    map[kOwner] = this;
    this.map = map;
  }

  /** The watchers of `map` (this loop's own map, or a foreign one it serves). */
  watchersOf(map: ChannelMap): readonly MapWatcher[] {
    if (map === this.map) return this.#watchers;
    if (map !== this.#lastForeign) {
      this.#lastForeign = map;
      this.#lastForeignWatchers = this.#foreign.get(map) ?? NONE;
    }
    return this.#lastForeignWatchers;
  }

  #setWatchers(map: ChannelMap, list: readonly MapWatcher[]): void {
    if (map === this.map) {
      this.#watchers = list;
      return;
    }
    if (list.length === 0) this.#foreign.delete(map);
    else this.#foreign.set(map, list);
    this.#lastForeign = null;
  }

  /** Starts telling `watcher` about `map`; returns the function that stops it. */
  watch(map: ChannelMap, watcher: MapWatcher): () => void {
    this.#setWatchers(map, [...this.watchersOf(map), watcher]);
    return () => this.#setWatchers(map, this.watchersOf(map).filter((w) => w !== watcher));
  }

  /**
   * Calls `output.flush()` at the next {@linkcode runFlushes}: the end of
   * this pass, or the start of the next one. A run waiting on another
   * thread is woken (output queued from a Deno timer or promise).
   */
  flushLater(output: HeldOutput): void {
    if (this.#flushes.push(output) === 1) { for (const wake of this.#onFlush) wake(); }
  }

  /**
   * Flushes what transports hold. Those whose `flush()` returns false (a
   * closed channel's last records, still going out) are kept for the next
   * call; returns whether any are.
   */
  runFlushes(): boolean {
    const list = this.#flushes;
    if (list.length === 0) return false;
    this.#flushes = this.#spareFlushes;
    for (let i = 0; i < list.length; i++) {
      if (!list[i].flush()) this.#flushes.push(list[i]);
    }
    list.length = 0;
    this.#spareFlushes = list;
    return this.#flushes.length > 0;
  }

  /** Whether output is still held for a later flush (the loop keeps running for it). */
  get flushPending(): boolean {
    return this.#flushes.length > 0;
  }

  /**
   * Tells `listener` (a waiting run's wake-up) when {@linkcode flushLater}
   * queues the first output of a pass; returns the function that stops it.
   */
  onFlush(listener: () => void): () => void {
    this.#onFlush = new Set([...this.#onFlush, listener]);
    return () => {
      const next = new Set(this.#onFlush);
      next.delete(listener);
      this.#onFlush = next;
    };
  }
}

/** The default loop's state: the one `loop()`, `socketMap` and the module-level timers use. */
export const defaultCore: LoopCore = new LoopCore();

/** The loop that serves `map`: its owner, or the default loop for a map no loop owns. */
export function coreOf(map: ChannelMap): LoopCore {
  return (map as OwnedMap)[kOwner] ?? defaultCore;
}

/** Starts telling `watcher` about `map`; returns the function that stops it. */
export function watchMap(map: ChannelMap, watcher: MapWatcher): () => void {
  return coreOf(map).watch(map, watcher);
}

/** Tells the watchers of `map` that `fd` was added. */
export function announceAdded(map: ChannelMap, fd: number): void {
  const list = coreOf(map).watchersOf(map);
  for (let i = 0; i < list.length; i++) list[i].added(fd);
}

/** Tells the watchers of `map` that `fd` is leaving. */
export function announceRemoved(map: ChannelMap, fd: number): void {
  const list = coreOf(map).watchersOf(map);
  for (let i = 0; i < list.length; i++) list[i].removed(fd);
}

/** Takes `obj` out of `map` under `fd` (if it is there), telling the watchers first. */
export function removeFromMap(map: ChannelMap, fd: number, obj: Channel): void {
  if (map.get(fd) !== obj) return;
  announceRemoved(map, fd);
  map.delete(fd);
}

/**
 * What the library keeps of a channel, out of its public surface: where it
 * lives and what a poller backend registered for it.
 */
export class ChannelCore {
  /** The map the channel lives in. */
  readonly map: ChannelMap;
  /** The loop serving that map. */
  readonly loop: LoopCore;
  /** The fd under which the channel is in its map, or null. */
  fd: number | null = null;
  /** The backend holding the channel's kernel registration (epoll), if any. */
  backend: unknown = null;
  /** The events that backend registered. */
  events = 0;
  /** Frees the connection-limit slot the channel holds, if it holds one. */
  releaseSlot: (() => void) | null = null;

  /** A core for a channel of `map`. */
  constructor(map: ChannelMap) {
    this.map = map;
    this.loop = coreOf(map);
  }
}

/**
 * Tells the pollers that what `obj` wants may have changed outside one of
 * its events. Every setter of state a library predicate or policy reads
 * calls it, as libuv's `uv__io_start`/`uv__io_stop` mark a watcher.
 */
export function notifyInterest(obj: { readonly [kCore]: ChannelCore }): void {
  const core = obj[kCore];
  const fd = core.fd;
  if (fd === null) return;
  const list = core.loop.watchersOf(core.map);
  for (let i = 0; i < list.length; i++) list[i].changed?.(fd);
}
