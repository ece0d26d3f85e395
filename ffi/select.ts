/**
 * `select(2)` over three reusable sets: `fd_set` bitmaps, or Winsock's
 * handle lists on Windows. An fd (or a count) a set cannot hold is a
 * `RangeError` raised by `add`, before any memory is touched.
 *
 * @module
 */

import { waitUninterrupted } from "./_syscall.ts";
import { checkSelectable, encodeTimeval, newSelectSet, type SelectSet } from "./structs.ts";
import { platform } from "./platform.ts";
import { stopWakeFd } from "./signals.ts";
import { libc } from "./symbols.ts";

/** Three fd sets and a timeval, reused by every call. */
export class Selector {
  /** Fds to watch for reading; on return, those ready. */
  readonly read: SelectSet = newSelectSet();
  /** Fds to watch for writing; on return, those ready. */
  readonly write: SelectSet = newSelectSet();
  /** Fds to watch for exceptional conditions; on return, those ready. */
  readonly except: SelectSet = newSelectSet();
  readonly #timeval = new Uint8Array(platform.structs.timeval);
  readonly #sets = [this.read, this.write, this.except];
  readonly #saved = this.#sets.map((s) => new Uint8Array(s.bytes.length));
  readonly #savedLength = [0, 0, 0];

  /** Clears all three sets. */
  clear(): void {
    this.read.clear();
    this.write.clear();
    this.except.clear();
  }

  /**
   * Waits until an fd is ready or `timeout` seconds pass (`null`: forever).
   * `nfds` is the highest fd plus one (Winsock ignores it). EINTR is retried
   * with the time left. Returns the number of ready bits.
   */
  select(nfds: number, timeout: number | null): number {
    // The kernel reads and writes nfds bits of each set: more than the sets
    // hold would be memory corruption, so it is the same RangeError as add().
    if (!Number.isInteger(nfds) || nfds < 0) {
      throw new RangeError(`nfds must be a non-negative integer, not ${nfds}`);
    }
    if (nfds > 0) checkSelectable(nfds - 1);
    // Where a stop signal cannot interrupt the wait (Windows), its wake-up socket joins it.
    const wake = stopWakeFd();
    if (wake >= 0) {
      this.read.add(wake);
      if (wake >= nfds) nfds = wake + 1;
    }
    const lib = libc();
    this.#save(nfds);
    const ms = timeout === null ? -1 : Math.min(0x7fffffff, Math.ceil(timeout * 1000));
    let first = true;
    let r = waitUninterrupted("select", ms, (left) => {
      // select() rewrote the sets on the interrupted try.
      if (!first) this.#restore();
      first = false;
      if (left >= 0) encodeTimeval(this.#timeval, left / 1000);
      return lib.select(
        nfds,
        this.read.bytes,
        this.write.bytes,
        this.except.bytes,
        left < 0 ? null : this.#timeval,
      );
    });
    this.read.rewritten();
    this.write.rewritten();
    this.except.rewritten();
    if (platform.structs.fdSetIsArray && r > 0) r += this.#failedConnectsWritable();
    if (wake >= 0 && this.read.has(wake)) {
      // Left unread: the stop is seen after this pass, and until then every wait returns.
      this.read.delete(wake);
      r--;
    }
    return r;
  }

  /**
   * Winsock reports a failed non-blocking connect in `exceptfds` only, where
   * Unix reports it writable (and WSAPoll's POLLERR is reported so here, see
   * ffi/winsock.ts): a socket asked for writing that turns up in `except`
   * is also put in `write`, so the caller reads the connect's result
   * (`SO_ERROR`) as it does on Unix. (The other cause, urgent data, makes a
   * write attempt that finds nothing to do.) Returns the handles added.
   */
  #failedConnectsWritable(): number {
    const except = new DataView(this.except.bytes.buffer);
    const asked = new DataView(this.#saved[1].buffer);
    let added = 0;
    for (let i = 0, n = except.getUint32(0, true); i < n; i++) {
      const fd = Number(except.getBigUint64(8 + 8 * i, true));
      if (this.write.has(fd)) continue;
      for (let j = 0, m = asked.getUint32(0, true); j < m; j++) {
        if (Number(asked.getBigUint64(8 + 8 * j, true)) !== fd) continue;
        this.write.add(fd);
        added++;
        break;
      }
    }
    return added;
  }

  // select() rewrites the sets; a retry after EINTR needs the originals.
  #save(nfds: number): void {
    for (let i = 0; i < 3; i++) {
      const n = this.#sets[i].usedBytes(nfds);
      this.#saved[i].set(this.#sets[i].bytes.subarray(0, n));
      this.#savedLength[i] = n;
    }
  }

  #restore(): void {
    for (let i = 0; i < 3; i++) {
      this.#sets[i].bytes.set(this.#saved[i].subarray(0, this.#savedLength[i]));
      this.#sets[i].rewritten();
    }
  }
}
