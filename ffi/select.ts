/**
 * `select(2)` over three reusable {@linkcode FdSet}s. An fd the `fd_set`
 * cannot hold is a `RangeError` raised by `FdSet.add`, before any memory is
 * touched.
 *
 * @module
 */

import { errno as E, readErrno } from "./errno.ts";
import { osError } from "./socket.ts";
import { checkSelectable, encodeTimeval, FdSet } from "./structs.ts";
import { platform } from "./platform.ts";
import { stopRequested, stopSliceMs } from "./signals.ts";
import { libc } from "./symbols.ts";

/** Three fd sets and a timeval, reused by every call. */
export class Selector {
  /** Fds to watch for reading; on return, those ready. */
  readonly read: FdSet = new FdSet();
  /** Fds to watch for writing; on return, those ready. */
  readonly write: FdSet = new FdSet();
  /** Fds to watch for exceptional conditions; on return, those ready. */
  readonly except: FdSet = new FdSet();
  readonly #timeval = new Uint8Array(platform.structs.timeval);
  readonly #saved = [new Uint8Array(128), new Uint8Array(128), new Uint8Array(128)];

  /** Clears all three sets. */
  clear(): void {
    this.read.clear();
    this.write.clear();
    this.except.clear();
  }

  /**
   * Waits until an fd is ready or `timeout` seconds pass (`null`: forever).
   * `nfds` is the highest fd plus one. EINTR is retried with the time left.
   * Returns the number of ready bits.
   */
  select(nfds: number, timeout: number | null): number {
    // The kernel reads and writes nfds bits of each set: more than the sets
    // hold would be memory corruption, so it is the same RangeError as add().
    if (!Number.isInteger(nfds) || nfds < 0) {
      throw new RangeError(`nfds must be a non-negative integer, not ${nfds}`);
    }
    if (nfds > 0) checkSelectable(nfds - 1);
    const lib = libc();
    const deadline = timeout === null ? Infinity : performance.now() + timeout * 1000;
    const bytes = Math.ceil(nfds / 8);
    this.#save(bytes);
    for (;;) {
      const left = deadline === Infinity ? null : Math.max(0, deadline - performance.now()) / 1000;
      // Sliced only while a stop signal may miss this thread (ffi/signals.ts).
      const sliceMs = stopSliceMs(left === null ? -1 : Math.ceil(left * 1000));
      const sliced = sliceMs >= 0 && (left === null || sliceMs < left * 1000);
      const wait = sliced ? sliceMs / 1000 : left;
      if (wait !== null) encodeTimeval(this.#timeval, wait);
      const r = lib.select(
        nfds,
        this.read.bytes,
        this.write.bytes,
        this.except.bytes,
        wait === null ? null : this.#timeval,
      );
      if (r > 0 || (r === 0 && !sliced)) return r;
      if (r < 0) {
        const err = readErrno();
        if (err !== E.EINTR) throw osError(err, "select");
      }
      if (stopRequested()) return 0; // a stop signal (ffi/signals.ts): the loop ends the pass
      this.#restore(bytes);
    }
  }

  // select() rewrites the sets; a retry after EINTR needs the originals.
  #save(bytes: number): void {
    this.#saved[0].set(this.read.bytes.subarray(0, bytes));
    this.#saved[1].set(this.write.bytes.subarray(0, bytes));
    this.#saved[2].set(this.except.bytes.subarray(0, bytes));
  }

  #restore(bytes: number): void {
    this.read.bytes.set(this.#saved[0].subarray(0, bytes));
    this.write.bytes.set(this.#saved[1].subarray(0, bytes));
    this.except.bytes.set(this.#saved[2].subarray(0, bytes));
  }
}
