/**
 * Interest: what a channel wants the poller to watch, decided in one place
 * for every poller. First the channel's `readable()`/`writable()` answer, as
 * asyncore asks it (`writable() and not accepting`); then the library's own
 * policies for that channel (accept back-off, what its transport waits for,
 * send backpressure) through the channel's `kPolicy` method.
 *
 * The epoll backend asks a channel again only after one of its events or a
 * notice (`notifyInterest`, sent by every setter of state the library's
 * predicates and policies read) when the channel is *tracked*. One check,
 * made when the channel joins a loop, decides that: its predicates are the
 * library's own, and no own field of the instance hides an accessor of its
 * classes (a plain-JS class field `connected = false` would swallow the
 * notices). Any other channel is asked every pass, as asyncore does.
 * Internal: not exported by mod.ts.
 *
 * @module
 */

import { READ, WRITE } from "../ffi/transport.ts";
import { handleErrorSafely } from "./_events.ts";
import { isReraised } from "./errors.ts";
import { type Channel, kPolicy } from "./_loop_core.ts";

export { READ, WRITE };

/** Marks a library predicate, on the function itself. */
const kLibraryPredicate: unique symbol = Symbol("asyncore.libraryPredicate");

type Marked = { [kLibraryPredicate]?: true };

/** Declares `fns` (prototype predicates of a library class) as sending notices for what they read. */
export function trackPredicates(...fns: (() => boolean)[]): void {
  for (const fn of fns) (fn as Marked)[kLibraryPredicate] = true;
}

/**
 * The accessor names along a prototype chain: a cache per prototype (a
 * class's accessors are fixed once the class is defined).
 */
const accessorCache = new WeakMap<object, readonly string[]>();

function accessorNames(proto: object | null): readonly string[] {
  if (proto === null || proto === Object.prototype) return [];
  let names = accessorCache.get(proto);
  if (names === undefined) {
    const set = new Set(accessorNames(Object.getPrototypeOf(proto)));
    for (const key of Object.getOwnPropertyNames(proto)) {
      const d = Object.getOwnPropertyDescriptor(proto, key)!;
      if (d.get !== undefined || d.set !== undefined) set.add(key);
    }
    names = [...set];
    accessorCache.set(proto, names);
  }
  return names;
}

/**
 * Whether the epoll backend may skip `obj` until it has an event or a
 * notice. Asked once the channel's constructor has finished (at the first
 * pass that sees it), so subclass fields are in place.
 */
export function isTracked(obj: Channel): boolean {
  if (
    (obj.readable as Marked)[kLibraryPredicate] !== true ||
    (obj.writable as Marked)[kLibraryPredicate] !== true
  ) return false;
  for (const name of accessorNames(Object.getPrototypeOf(obj))) {
    if (Object.hasOwn(obj, name)) return false;
  }
  return true;
}

/**
 * What `obj` wants watched: {@linkcode READ} and/or {@linkcode WRITE}. A
 * predicate or policy that throws sends the error to `handleError` and the
 * channel is left out of this pass.
 */
export function interestOf(obj: Channel): number {
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
