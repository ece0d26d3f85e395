/**
 * A wake-up that another piece of code (a timer, a promise, an abort) uses
 * to end a wait made on a worker thread: something readable to put in the
 * wait set. A non-blocking pipe on Unix; on Windows, where WSAPoll and
 * select take sockets only, a connected loopback socket pair.
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
  #pending = false;
  readonly #drainBuf = new Uint8Array(64);

  /** Opens the pipe or socket pair. */
  constructor() {
    [this.fd, this.#writeFd] = winsock !== null ? winsock.loopbackPair() : os.pipe(true);
  }

  /** Makes `fd` readable; a second wake before `drain()` writes nothing more. */
  wake(): void {
    if (this.#pending) return;
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

  /** Empties `fd` after a wake, so the next wait blocks again. */
  drain(): void {
    if (!this.#pending) return;
    this.#pending = false;
    if (winsock !== null) {
      winsock.drainSocket(this.fd, this.#drainBuf);
      return;
    }
    for (;;) {
      try {
        if (os.read(this.fd, this.#drainBuf.length).length === 0) return;
      } catch {
        return; // EAGAIN: drained
      }
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
