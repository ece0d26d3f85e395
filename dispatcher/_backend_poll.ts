/**
 * The `poll()` backend (asyncore's `poll2`): the pollfd array is rebuilt
 * from every channel's interest on each pass.
 *
 * @module
 */

import { C } from "../ffi/platform.ts";
import { Poller } from "../ffi/poll.ts";
import type { PollFdArray } from "../ffi/structs.ts";
import type { Backend } from "./_backend.ts";
import { readwrite } from "./_events.ts";
import { interestOf, READ, WRITE } from "./_interest.ts";
import type { ChannelMap } from "./_loop_core.ts";

const WANT_READ = C.POLLIN | C.POLLPRI;
// A handler may run a nested loop: each depth takes its own buffers.
const sparePollers: Poller[] = [];

/** The poll(2) events for interest bits. */
export function pollEvents(want: number): number {
  return (want & READ ? WANT_READ : 0) | (want & WRITE ? C.POLLOUT : 0);
}

/** Watches a map with `poll(2)`. */
export class PollBackend implements Backend {
  readonly #map: ChannelMap;
  readonly #p: Poller;
  #n = 0;

  /** A backend for `map`. */
  constructor(map: ChannelMap) {
    this.#map = map;
    this.#p = sparePollers.pop() ?? new Poller();
  }

  /** Rebuilds the pollfd array. */
  prepare(): boolean {
    this.#n = this.#fill(this.#p.fds, 0);
    return false;
  }

  #fill(arr: PollFdArray, at: number): number {
    arr.reserve(at + this.#map.size + 1);
    for (const [fd, obj] of this.#map) {
      const want = interestOf(obj);
      if (want !== 0) arr.set(at++, fd, pollEvents(want));
    }
    return at;
  }

  /** Waits in `poll()`. */
  wait(ms: number): number {
    return this.#p.poll(this.#n, ms);
  }

  /** Fires each ready channel's handlers in array order. */
  dispatch(ready: number): number {
    const arr = this.#p.fds, map = this.#map;
    let seen = 0;
    for (let i = 0; i < this.#n && seen < ready; i++) {
      const revents = arr.revents(i);
      if (revents === 0) continue;
      seen++;
      const obj = map.get(arr.fd(i));
      if (obj !== undefined) readwrite(obj, revents);
    }
    return ready;
  }

  /** The prepared entries, copied. */
  fillWaitSet(out: PollFdArray, at: number): number {
    const arr = this.#p.fds;
    out.reserve(at + this.#n + 1);
    for (let i = 0; i < this.#n; i++) out.set(at++, arr.fd(i), arr.events(i));
    return at;
  }

  /** Gives the buffers back for the next backend. */
  close(): void {
    sparePollers.push(this.#p);
  }
}
