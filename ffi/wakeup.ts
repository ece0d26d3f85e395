/**
 * `Wakeup`: an fd a waiting poll includes in its set, and a call that makes
 * it readable, so that code running on the JS thread (a Deno timer, a
 * promise, a signal listener) can cut short a wait made on another thread.
 * A non-blocking pipe here; a wake-up that finds one already pending writes
 * nothing.
 *
 * @module
 */

import * as os from "./os.ts";

const ONE = new Uint8Array([1]);

/** A pipe whose read end wakes a waiting poll. */
export class Wakeup {
  /** The fd to wait on for reading. */
  readonly readFd: number;
  readonly #writeFd: number;
  /** Set while a wait that includes `readFd` is under way: wake-ups write only then. */
  waiting = false;
  #pending = false;
  readonly #drainBuf = new Uint8Array(64);

  /** Opens the pipe (close-on-exec, non-blocking). */
  constructor() {
    [this.readFd, this.#writeFd] = os.pipe(true);
  }

  /** Makes `readFd` readable if a wait is under way and no wake-up is pending. */
  wake(): void {
    if (!this.waiting || this.#pending) return;
    this.#pending = true;
    try {
      os.write(this.#writeFd, ONE);
    } catch {
      // The pipe is full: a wake-up is already pending.
    }
  }

  /**
   * Empties the pipe after a wait. A wake-up writes one byte while none is
   * pending, so one read nearly always empties it; "would block" ends the
   * loop without building an exception (this runs after every wait that
   * was woken).
   */
  drain(): void {
    if (!this.#pending) return;
    this.#pending = false;
    const buf = this.#drainBuf;
    try {
      while (os.tryRead(this.readFd, buf) === buf.length);
    } catch {
      // The pipe is gone: nothing left to drain.
    }
  }

  /** Closes both ends. */
  close(): void {
    os.close(this.readFd);
    os.close(this.#writeFd);
  }
}
