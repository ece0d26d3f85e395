/**
 * Interest: what a channel wants the poller to watch. One place decides it
 * for every poller: the channel's `readable()`/`writable()` answer (as
 * asyncore asks it), then the library's own policies for that channel
 * (accept back-off, send backpressure, what TLS waits for) through the
 * channel's {@linkcode kPolicy} method. Internal: not exported by mod.ts.
 *
 * @module
 */

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

/** The part of a channel the interest hooks use. */
interface Notifiable {
  _interestChanged(): void;
}

/**
 * Tells the pollers that what `obj` wants may have changed outside one of
 * its events (the epoll pass asks the library's own channels again only
 * after an event or such a notice). Call it whenever state a
 * {@linkcode kPolicy} method reads changes.
 */
export function notifyInterest(obj: Notifiable): void {
  obj._interestChanged();
}
