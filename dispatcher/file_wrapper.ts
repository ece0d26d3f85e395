/**
 * `FileWrapper`: asyncore's `file_wrapper`, an fd (a pipe, a terminal) that
 * looks like a socket to a channel.
 *
 * @module
 */

import { asBytes } from "../ffi/bytes.ts";
import { C } from "../ffi/platform.ts";
import * as os from "../ffi/os.ts";
import { kTransport, SocketTransport, type Transport } from "../ffi/transport.ts";

/** Something with an fd, like a Deno file or Python file object. */
export interface HasFileno {
  /** The fd. */
  fileno(): number;
}

/**
 * Makes an fd look like a socket to the dispatcher. It works on its own
 * `dup()` of the fd, so closing it leaves the original open.
 */
export class FileWrapper {
  /** The duplicated fd, or -1 once closed. */
  fd: number;

  /** Duplicates `fd`. */
  constructor(fd: number) {
    this.fd = os.dup(fd);
  }

  /** Reads up to `n` bytes (`OSError(EAGAIN)` when none are ready). */
  recv(n: number): Uint8Array {
    return os.read(this.fd, n);
  }

  /** Same as `recv`. */
  read(n: number): Uint8Array {
    return this.recv(n);
  }

  /** Reads into `buffer`; returns the count, -1 when it would block. */
  tryRecvInto(buffer: Uint8Array, n: number = buffer.length): number {
    return os.tryRead(this.fd, buffer, n);
  }

  /** Writes `data`; returns the count (`OSError(EAGAIN)` when it would block). */
  send(data: Uint8Array | string): number {
    return os.write(this.fd, asBytes(data));
  }

  /** Same as `send`. */
  write(data: Uint8Array | string): number {
    return this.send(data);
  }

  /** Writes `data`; returns the count, -1 when it would block (no error is built). */
  trySend(data: Uint8Array): number {
    return os.tryWrite(this.fd, data);
  }

  /** Only `getsockopt(SOL_SOCKET, SO_ERROR)` is supported: it answers 0. */
  getsockopt(level: number, option: number): number {
    if (level === C.SOL_SOCKET && option === C.SO_ERROR) return 0;
    throw new Error("FileWrapper.getsockopt: only SOL_SOCKET/SO_ERROR is implemented");
  }

  /** Closes the duplicated fd; safe to call twice. */
  close(): void {
    if (this.fd < 0) return;
    const fd = this.fd;
    this.fd = -1;
    os.close(fd);
  }

  /** The fd, or -1 once closed. */
  fileno(): number {
    return this.fd;
  }

  #transport: Transport | null = null;

  /**
   * What a channel reads and writes through: this file's own calls.
   * @ignore
   */
  [kTransport](): Transport {
    return this.#transport ??= new SocketTransport(this);
  }
}
