/**
 * `FileDispatcher`: asyncore's `file_dispatcher`, for driving pipes,
 * terminals and the like from the loop (over a `FileWrapper`).
 *
 * @module
 */

import * as os from "../ffi/os.ts";
import { Dispatcher, type SocketMap } from "./dispatcher.ts";
import { FileWrapper, type HasFileno } from "./file_wrapper.ts";

export { FileWrapper, type HasFileno };

/** A dispatcher over a file descriptor (a pipe, a tty) instead of a socket. */
export class FileDispatcher extends Dispatcher {
  /**
   * Wraps `fd` (a number or anything with `fileno()`), sets it
   * non-blocking and adds the channel to `map`.
   */
  constructor(fd: number | HasFileno, map?: SocketMap) {
    super(null, map);
    this.connected = true;
    const n = typeof fd === "number" ? fd : fd.fileno();
    if (!Number.isInteger(n) || n < 0) {
      throw new TypeError(`FileDispatcher needs an fd or an object with fileno(), got ${n}`);
    }
    this.setFile(n);
    os.setBlocking(n, false);
  }

  /** Wraps a duplicate of `fd` and adds the channel. */
  setFile(fd: number): void {
    this.setSocket(new FileWrapper(fd));
  }
}
