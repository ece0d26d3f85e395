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

const watchers = new WeakMap<SocketMap, Set<MapWatcher>>();

/** Starts telling `watcher` about `map`; returns the function that stops it. */
export function watchMap(map: SocketMap, watcher: MapWatcher): () => void {
  let set = watchers.get(map);
  if (!set) watchers.set(map, set = new Set());
  set.add(watcher);
  return () => {
    set.delete(watcher);
    if (set.size === 0) watchers.delete(map);
  };
}

/** Tells the watchers of `map` that `fd` was added. */
export function announceAdded(map: SocketMap, fd: number): void {
  const set = watchers.get(map);
  if (set) { for (const w of set) w.added(fd); }
}

/** Tells the watchers of `map` that `fd` is leaving. */
export function announceRemoved(map: SocketMap, fd: number): void {
  const set = watchers.get(map);
  if (set) { for (const w of set) w.removed(fd); }
}

/** Tells the watchers of `map` that the channel of `fd` may want other events now. */
export function announceChanged(map: SocketMap, fd: number): void {
  const set = watchers.get(map);
  if (set) { for (const w of set) w.changed?.(fd); }
}
