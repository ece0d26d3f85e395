/**
 * `Wakeup`: an fd a waiting poll includes in its set, and a call that makes
 * it readable, so that code running on the JS thread (a Deno timer, a
 * promise, a signal listener) can cut short a wait made on another thread.
 * A non-blocking pipe on Unix; on Windows, where WSAPoll and select take
 * sockets only, a connected loopback socket pair. A wake-up that finds one
 * already pending writes nothing.
 *
 * @module
 */

import * as os from "./os.ts";
import { winsock } from "./symbols.ts";

const ONE = new Uint8Array([1]);

/** One wake-up channel: wait on {@linkcode Wakeup.fd} for reading, end the wait with `wake()`. */
export class Wakeup {
  /** The fd (a socket handle on Windows) that turns readable on `wake()`. */
  readonly fd: number;
  readonly #writeFd: number;
  /** Set while a wait that includes `fd` is under way: wake-ups write only then. */
  waiting = false;
  #pending = false;
  readonly #drainBuf = new Uint8Array(64);

  /** Opens the pipe or socket pair. */
  constructor() {
    [this.fd, this.#writeFd] = winsock !== null ? winsock.loopbackPair() : os.pipe(true);
  }

  /** Makes `fd` readable if a wait is under way and no wake-up is pending. */
  wake(): void {
    if (!this.waiting || this.#pending) return;
    this.#pending = true;
    if (winsock !== null) {
      winsock.poke(this.#writeFd, ONE);
      return;
    }
    try {
      os.write(this.#writeFd, ONE);
    } catch {
      // The pipe is full: a wake-up is already pending.
    }
  }

  /**
   * Empties `fd` after a wait, so the next wait blocks again. A wake-up
   * writes one byte while none is pending, so one read nearly always empties
   * it; "would block" ends the loop without building an exception (this
   * runs after every wait that was woken).
   */
  drain(): void {
    if (!this.#pending) return;
    this.#pending = false;
    const buf = this.#drainBuf;
    if (winsock !== null) {
      winsock.drainSocket(this.fd, buf);
      return;
    }
    try {
      while (os.tryRead(this.fd, buf) === buf.length);
    } catch {
      // The pipe is gone: nothing left to drain.
    }
  }

  /** Closes both ends. */
  close(): void {
    if (winsock !== null) {
      winsock.closeHandle(this.fd);
      winsock.closeHandle(this.#writeFd);
      return;
    }
    os.close(this.fd);
    os.close(this.#writeFd);
  }
}
