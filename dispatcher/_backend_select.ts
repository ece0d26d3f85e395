/**
 * The `select()` backend (asyncore's `poll`): the fd sets are rebuilt from
 * every channel's interest on each pass. An fd of `FD_SETSIZE` (1024) or more
 * cannot be watched: the pass throws a `RangeError` naming it.
 *
 * @module
 */

import { C } from "../ffi/platform.ts";
import { Poller } from "../ffi/poll.ts";
import { Selector } from "../ffi/select.ts";
import type { PollFdArray } from "../ffi/structs.ts";
import type { Backend } from "./_backend.ts";
import { exception, read, write } from "./_events.ts";
import { interestOf, READ, WRITE } from "./_interest.ts";
import type { ChannelMap } from "./_loop_core.ts";

// A handler may run a nested loop: each depth takes its own buffers.
const spareSelectors: Selector[] = [];
const sleeper = new Poller();

/** Watches a map with `select(2)`. */
export class SelectBackend implements Backend {
  readonly #map: ChannelMap;
  readonly #sel: Selector;
  readonly #fds: number[] = [];
  #nfds = 0;

  /** A backend for `map`. */
  constructor(map: ChannelMap) {
    this.#map = map;
    this.#sel = spareSelectors.pop() ?? new Selector();
  }

  /** Rebuilds the three sets. */
  prepare(): boolean {
    const sel = this.#sel, fds = this.#fds;
    sel.clear();
    fds.length = 0;
    let nfds = 0;
    for (const [fd, obj] of this.#map) {
      const want = interestOf(obj);
      if (want === 0) continue;
      if (want & READ) sel.read.add(fd);
      if (want & WRITE) sel.write.add(fd);
      sel.except.add(fd);
      fds.push(fd);
      if (fd >= nfds) nfds = fd + 1;
    }
    this.#nfds = nfds;
    return false;
  }

  /** Waits in `select()`; with nothing to watch it just sleeps. */
  wait(ms: number): number {
    if (this.#fds.length === 0) {
      sleeper.poll(0, ms);
      return 0;
    }
    return this.#sel.select(this.#nfds, ms < 0 ? null : ms / 1000);
  }

  /** Reads, then writes, then exceptional conditions, as the reference does. */
  dispatch(ready: number): number {
    if (ready === 0) return 0;
    const sel = this.#sel, fds = this.#fds, map = this.#map;
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

  /** The prepared sets as pollfd entries. */
  fillWaitSet(out: PollFdArray, at: number): number {
    const sel = this.#sel;
    out.reserve(at + this.#fds.length + 1);
    for (const fd of this.#fds) {
      const events = (sel.read.has(fd) ? C.POLLIN | C.POLLPRI : 0) |
        (sel.write.has(fd) ? C.POLLOUT : 0);
      if (events !== 0) out.set(at++, fd, events);
    }
    return at;
  }

  /** Gives the buffers back for the next backend. */
  close(): void {
    spareSelectors.push(this.#sel);
  }
}
