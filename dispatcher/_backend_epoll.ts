/**
 * The epoll backend: the interest list lives in the kernel and changes
 * (`epoll_ctl`) only when a channel's interest changes, and a pass touches
 * only the channels whose interest can have changed: those that had an
 * event, those that sent a notice (`notifyInterest`, sent by every setter of
 * state the library's predicates read), and the untracked ones (a class that
 * overrides `readable`/`writable`, asked every pass as in asyncore). Idle
 * channels of the library's own classes cost nothing, so a pass costs
 * O(active channels).
 *
 * @module
 */

import { Epoll } from "../ffi/epoll.ts";
import { C, platform } from "../ffi/platform.ts";
import type { PollFdArray } from "../ffi/structs.ts";
import type { Backend } from "./_backend.ts";
import { pollEvents } from "./_backend_poll.ts";
import { readwrite } from "./_events.ts";
import { interestOf, isTracked } from "./_interest.ts";
import { type Channel, type ChannelMap, kCore, watchMap } from "./_loop_core.ts";

/** Watches a map with `epoll(7)`. */
export class EpollBackend implements Backend {
  readonly #map: ChannelMap;
  readonly #ep: Epoll;
  readonly #known = new Map<number, Channel>(); // fd -> channel classified
  readonly #polled = new Set<Channel>(); // untracked: asked every pass
  #dirty = new Set<Channel>(); // tracked channels to ask again
  #spare = new Set<Channel>();
  /** Joined since the last pass: classified then, once their constructors are done. */
  readonly #joined = new Set<number>();
  /** fds epoll refuses (regular files): always ready, as poll() treats them. */
  readonly #always = new Map<number, number>();
  readonly #unwatch: () => void;

  /** Creates the epoll instance for `map`. */
  constructor(map: ChannelMap) {
    this.#map = map;
    this.#ep = new Epoll(1024);
    for (const fd of map.keys()) this.#joined.add(fd);
    this.#unwatch = watchMap(map, {
      added: (fd) => this.#joined.add(fd),
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
    if (old === obj) return;
    if (old !== undefined) this.#forget(fd);
    this.#known.set(fd, obj);
    // Notices go to the channel's own map: elsewhere it must be asked every pass.
    if (isTracked(obj) && obj[kCore]?.map === this.#map) this.#dirty.add(obj);
    else this.#polled.add(obj);
  }

  // Called before the channel's fd is closed: afterwards epoll_ctl could no
  // longer name it, and a dup of the file would keep reporting it.
  #forget(fd: number): void {
    this.#joined.delete(fd);
    this.#always.delete(fd);
    const obj = this.#known.get(fd);
    if (obj !== undefined) {
      this.#unregister(fd, obj);
      this.#known.delete(fd);
      this.#polled.delete(obj);
      this.#dirty.delete(obj);
    }
  }

  // What a channel has registered lives on its core: a pass then needs no
  // lookup per event.
  #unregister(fd: number, obj: Channel): void {
    const core = obj[kCore];
    if (core?.backend !== this) return;
    core.backend = null;
    core.events = 0;
    this.#ep.ctl(C.EPOLL_CTL_DEL, fd, 0);
  }

  #register(fd: number, obj: Channel, events: number): void {
    const core = obj[kCore];
    const mine = core?.backend === this;
    if (mine && core.events === events) return;
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
    if (err !== 0 || core === undefined) {
      // EPERM: a regular file, always ready as poll() says. EBADF and the
      // like: the channel finds out when it next uses its fd.
      if (core !== undefined) {
        core.backend = null;
        core.events = 0;
      }
      this.#always.set(fd, events);
      return;
    }
    this.#always.delete(fd);
    core.backend = this;
    core.events = events;
  }

  #evaluate(obj: Channel): void {
    const fd = obj.fileno();
    if (fd === null || this.#map.get(fd) !== obj) return;
    this.#register(fd, obj, pollEvents(interestOf(obj)));
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

  /** Brings the kernel's interest list up to date. */
  prepare(): boolean {
    if (this.#joined.size > 0) {
      for (const fd of this.#joined) this.#classify(fd);
      this.#joined.clear();
    }
    if (this.#known.size !== this.#map.size) this.#rescan();
    for (const obj of this.#polled) this.#evaluate(obj);
    if (this.#dirty.size > 0) {
      // Channels marked while these are asked wait for the next pass.
      const dirty = this.#dirty;
      this.#dirty = this.#spare;
      for (const obj of dirty) this.#evaluate(obj);
      dirty.clear();
      this.#spare = dirty;
    }
    const map = this.#map;
    if (map.size > this.#ep.capacity && this.#ep.capacity < 65536) {
      this.#ep.reserve(Math.min(65536, this.#ep.capacity * 2));
    }
    return this.#always.size > 0;
  }

  /** Waits in `epoll_wait()`. */
  wait(ms: number): number {
    return this.#ep.wait(ms);
  }

  /** Fires the ready channels' handlers, then those of always-ready files. */
  dispatch(ready: number): number {
    const map = this.#map;
    const dirty = this.#dirty;
    for (let i = 0; i < ready; i++) {
      const obj = map.get(this.#ep.fd(i));
      if (obj === undefined || obj[kCore]?.backend !== this) continue;
      readwrite(obj, this.#ep.events(i));
      // Its handlers may have changed what it wants.
      dirty.add(obj);
    }
    const always = this.#always.size;
    if (always > 0) {
      for (const [fd, events] of [...this.#always]) {
        const obj = map.get(fd);
        if (obj === undefined) continue;
        readwrite(obj, events);
        if (this.#known.get(fd) === obj) this.#dirty.add(obj);
      }
    }
    return ready + always;
  }

  /** The epoll fd: readable when a registered fd is ready. */
  fillWaitSet(out: PollFdArray, at: number): number {
    out.reserve(at + 2);
    out.set(at++, this.#ep.fileno(), C.POLLIN);
    return at;
  }

  /** Releases the epoll fd and stops watching the map. */
  close(): void {
    this.#unwatch();
    for (const [fd, obj] of this.#known) {
      const core = obj[kCore];
      if (core?.backend === this) {
        core.backend = null;
        core.events = 0;
      }
      this.#known.delete(fd);
    }
    this.#ep.close();
  }
}
