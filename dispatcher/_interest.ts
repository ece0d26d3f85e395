/**
 * Interest: what a channel wants the poller to watch, decided in one place
 * for every poller. First the channel's `readable()`/`writable()` answer, as
 * asyncore asks it (`writable() and not accepting`); then the library's own
 * policies for that channel (accept back-off, send backpressure, what TLS
 * waits for) through the channel's {@linkcode kPolicy} method.
 *
 * The epoll backend asks a channel again only after one of its events or a
 * notice ({@linkcode notifyInterest}) when the channel is *tracked*: its
 * predicates are the library's own and every piece of state they read is an
 * accessor that sends the notice on change. A channel whose class overrides a
 * predicate, or whose instance shadows such an accessor with a plain field,
 * is asked every pass, as asyncore does. Internal: not exported by mod.ts.
 *
 * @module
 */

import type { Dispatcher } from "./dispatcher.ts";
import { handleErrorSafely } from "./_events.ts";
import { isReraised } from "./errors.ts";
import { announceChanged, type SocketMap } from "./map.ts";

/** Watch for reading. */
export const READ = 1;
/** Watch for writing. */
export const WRITE = 2;

/**
 * The method a channel's class implements to apply library policy to the
 * predicates' answer: it gets the bits `readable()`/`writable()` asked for
 * and returns the bits to watch. Calling `super[kPolicy](want)` chains them.
 */
export const kPolicy: unique symbol = Symbol("asyncore.interestPolicy");

/** The method by which a channel adopts an output queue, so its changes notify the channel. */
export const kAdopt: unique symbol = Symbol("asyncore.adopt");

/** The key of a channel's {@linkcode ChannelCore}. */
export const kCore: unique symbol = Symbol("asyncore.core");

/**
 * What the library keeps of a channel, out of its public surface: where it
 * lives and what a poller backend registered for it.
 */
export class ChannelCore {
  /** The map the channel lives in. */
  map: SocketMap;
  /** The fd under which the channel is in its map, or null. */
  fd: number | null = null;
  /** The backend holding the channel's kernel registration (epoll), if any. */
  backend: unknown = null;
  /** The events that backend registered. */
  events = 0;

  /** A core for a channel of `map`. */
  constructor(map: SocketMap) {
    this.map = map;
  }
}

/**
 * Tells the pollers that what `obj` wants may have changed outside one of
 * its events. Every setter of state a library predicate or policy reads
 * calls it.
 */
export function notifyInterest(obj: { readonly [kCore]: ChannelCore }): void {
  const core = obj[kCore];
  if (core.fd !== null) announceChanged(core.map, core.fd);
}

// ---- which channels are tracked ----

const libraryPredicates = new WeakSet<object>();

/**
 * State the library's predicates and policies read through accessors; an
 * instance field of the same name would hide the accessor (TypeScript class
 * fields are defined on the instance) and with it the notices.
 */
const TRACKED_STATE = [
  "readable",
  "writable",
  "connected",
  "accepting",
  "connecting",
  "outBuffer",
  "producerFifo",
];

/** Declares `fns` (prototype predicates of a library class) as tracked. */
export function trackPredicates(...fns: (() => boolean)[]): void {
  for (const fn of fns) libraryPredicates.add(fn);
}

/**
 * Whether the epoll backend may skip `obj` until it has an event or a
 * notice. Asked once the channel's constructor has finished (at the first
 * pass that sees it), so subclass fields are in place.
 */
export function isTracked(obj: Dispatcher): boolean {
  if (!libraryPredicates.has(obj.readable) || !libraryPredicates.has(obj.writable)) return false;
  for (const key of TRACKED_STATE) if (Object.hasOwn(obj, key)) return false;
  return true;
}

/**
 * What `obj` wants watched: {@linkcode READ} and/or {@linkcode WRITE}. A
 * predicate or policy that throws sends the error to `handleError` and the
 * channel is left out of this pass.
 */
export function interestOf(obj: Dispatcher): number {
  let want = 0;
  try {
    if (obj.readable()) want = READ;
    if (obj.writable() && !obj.accepting) want |= WRITE;
    // Plain objects standing in for channels (the reference's tests) have no policy.
    if (obj[kPolicy] !== undefined) want = obj[kPolicy](want);
  } catch (error) {
    if (isReraised(error)) throw error;
    handleErrorSafely(obj, error);
    return 0;
  }
  return want;
}
