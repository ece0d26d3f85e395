/**
 * `FileQueue`, kept for programs that used it: `DispatcherWithSend` now
 * queues files in its one output queue (`outBuffer`), in order with the
 * bytes, and no longer uses this class.
 *
 * @module
 */

import { transportOf } from "../ffi/transport.ts";
import type { SocketLike } from "../ffi/transport.ts";
import { isDisconnect } from "./errors.ts";
import { advanceProducer, closeQueuedFiles, ProducerFifo } from "./output_queue.ts";
import type { FileProducer } from "./producers.ts";

/**
 * What `FileQueue` needs of its channel.
 * @deprecated `DispatcherWithSend` queues files in `outBuffer`; see {@linkcode FileQueue}.
 */
export interface FileQueueOwner {
  /** The channel's socket. */
  socket: unknown;
  /** Its byte queue, which always goes before the file queue. */
  outBuffer: { length: number; pushOwned(data: Uint8Array): void };
  /** The channel's file queue; set to null here when it empties. */
  _files: FileQueue | null;
  /** Tells the loop that `writable()` may have changed. */
  interestChanged(): void;
  /** A gone peer. */
  handleClose(): void;
}

/**
 * Files, and the bytes sent after them, in order, waiting behind a byte
 * queue.
 * @deprecated `DispatcherWithSend.sendFile` queues files in `outBuffer` (one
 * output queue for bytes, producers and files); this class is kept working
 * for programs that drive it by hand.
 */
export class FileQueue {
  readonly #fifo = new ProducerFifo();

  /** Queues a file. */
  pushFile(file: FileProducer): void {
    this.#fifo.push(file);
  }

  /** Queues bytes behind the files (a copy: the caller may reuse its buffer). */
  pushBytes(data: Uint8Array): void {
    if (data.length > 0) this.#fifo.push(data.slice());
  }

  /**
   * One step, with `outBuffer` empty: sends from the file at the front, or
   * moves the bytes at the front into `outBuffer` (the caller sends them).
   */
  step(owner: FileQueueOwner): void {
    const fifo = this.#fifo;
    while (fifo.length > 0) {
      const head = fifo.at(0)!;
      if (head instanceof Uint8Array) {
        owner.outBuffer.pushOwned(head);
        fifo.shift();
        if (owner.outBuffer.length > 0) break;
        continue;
      }
      if (head === null) {
        fifo.shift();
        continue;
      }
      const sock = owner.socket as SocketLike | null;
      try {
        if (advanceProducer(fifo, head, sock === null ? null : transportOf(sock))) break;
      } catch (error) {
        if (!isDisconnect(error)) throw error;
        owner.handleClose();
        return;
      }
    }
    if (fifo.length === 0) owner._files = null;
  }

  /** Closes every queued file (the channel closed). */
  close(): void {
    closeQueuedFiles(this.#fifo);
    this.#fifo.clear();
  }
}
