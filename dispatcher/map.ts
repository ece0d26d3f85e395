/**
 * The socket map and the hooks that tell the pollers when a channel joins or
 * leaves one (epoll must forget an fd before it is closed; a waiting
 * `loopAsync` must wake up for a new channel).
 *
 * @module
 */

import type { Dispatcher } from "./dispatcher.ts";

/** fd → channel, as asyncore's `socket_map`. */
export type SocketMap = Map<number, Dispatcher>;

/** The global map, used whenever no map is given. */
export const socketMap: SocketMap = new Map();

/** Told when a channel joins or leaves a map. */
export interface MapWatcher {
  /** `fd` was added to the map. */
  added(fd: number): void;
  /** `fd` is leaving the map; its socket is still open. */
  removed(fd: number): void;
  /** The channel of `fd` changed state its `readable()`/`writable()` may depend on. */
  changed?(fd: number): void;
}

// Each map's watchers, as an array replaced (never edited) on every change,
// so a notice iterates a snapshot even if a watcher (un)registers meanwhile.
const watchers = new WeakMap<SocketMap, readonly MapWatcher[]>();
const NONE: readonly MapWatcher[] = [];
// A notice goes out several times per connection, nearly always to the same
// map: the last map's watchers are kept at hand instead of a WeakMap lookup each.
let lastMap: SocketMap | null = null;
let lastWatchers: readonly MapWatcher[] = NONE;

function watchersOf(map: SocketMap): readonly MapWatcher[] {
  if (map !== lastMap) {
    lastMap = map;
    lastWatchers = watchers.get(map) ?? NONE;
  }
  return lastWatchers;
}

function setWatchers(map: SocketMap, list: readonly MapWatcher[]): void {
  if (list.length === 0) watchers.delete(map);
  else watchers.set(map, list);
  lastMap = null;
}

/** Starts telling `watcher` about `map`; returns the function that stops it. */
export function watchMap(map: SocketMap, watcher: MapWatcher): () => void {
  setWatchers(map, [...(watchers.get(map) ?? NONE), watcher]);
  return () => setWatchers(map, (watchers.get(map) ?? NONE).filter((w) => w !== watcher));
}

/** Tells the watchers of `map` that `fd` was added. */
export function announceAdded(map: SocketMap, fd: number): void {
  const list = watchersOf(map);
  for (let i = 0; i < list.length; i++) list[i].added(fd);
}

/** Tells the watchers of `map` that `fd` is leaving. */
export function announceRemoved(map: SocketMap, fd: number): void {
  const list = watchersOf(map);
  for (let i = 0; i < list.length; i++) list[i].removed(fd);
}

/** Tells the watchers of `map` that the channel of `fd` may want other events now. */
export function announceChanged(map: SocketMap, fd: number): void {
  const list = watchersOf(map);
  for (let i = 0; i < list.length; i++) list[i].changed?.(fd);
}

/** Takes `obj` out of `map` under `fd` (if it is there), telling the watchers first. */
export function removeFromMap(map: SocketMap, fd: number, obj: Dispatcher): void {
  if (map.get(fd) !== obj) return;
  announceRemoved(map, fd);
  map.delete(fd);
}
