/**
 * `DispatcherWithSend`: asyncore's `dispatcher_with_send`, a dispatcher
 * with an output buffer, plus files queued in order with the bytes
 * (`sendFile`).
 *
 * @module
 */

import { asBytes, type BytesLike } from "../ffi/bytes.ts";
import type { SendfileSource } from "../ffi/sendfile.ts";
import { transportOf } from "../ffi/transport.ts";
import { trackPredicates } from "./_interest.ts";
import { Dispatcher } from "./dispatcher.ts";
import { isDisconnect } from "./errors.ts";
import { DEFAULT_HIGH_WATER_MARK, resumeIfDrained } from "./limits.ts";
import { adoptQueue, advanceProducer, ByteQueue, closeQueuedFiles } from "./output_queue.ts";
import { FileProducer, type FileProducerOptions } from "./producers.ts";

/** The most bytes one send hands to the socket. */
const SEND_CHUNK = 65536;

/**
 * A dispatcher with an output buffer, as Python's `dispatcher_with_send`:
 * `send` queues what the socket does not take at once, and the loop sends
 * the rest as the socket becomes writable.
 *
 * @example The echo handler
 * ```ts
 * import { DispatcherWithSend } from "@asyncore/deno";
 *
 * class EchoHandler extends DispatcherWithSend {
 *   override handleRead() {
 *     const data = this.recv(8192);
 *     if (data.length > 0) this.send(data); // never blocks, never drops
 *   }
 * }
 * ```
 */
export class DispatcherWithSend extends Dispatcher {
  #out: ByteQueue = adoptQueue(this, null, new ByteQueue(), ByteQueue, "outBuffer");

  /**
   * Bytes waiting to be sent (files queued by `sendFile` wait among them).
   * Assigning a new `ByteQueue` (the port of Python's
   * `self.out_buffer = b''`) works under every poller: the channel adopts
   * it. Anything else is a `TypeError`, as is a queue that already belongs
   * to another channel.
   */
  get outBuffer(): ByteQueue {
    return this.#out;
  }
  set outBuffer(queue: ByteQueue) {
    if (queue !== this.#out) this.#out = adoptQueue(this, this.#out, queue, ByteQueue, "outBuffer");
  }

  /** See `Dispatcher.highWaterMark`; default 1 MiB (`Infinity`: the reference's unbounded queue). */
  override highWaterMark: number = DEFAULT_HIGH_WATER_MARK;

  /** The bytes queued for sending: `outBuffer.length`, plus what the transport holds. */
  override get queuedBytes(): number {
    return this.outBuffer.length + super.queuedBytes;
  }

  /**
   * Sends from the front of `outBuffer`: bytes, or a step of a queued file
   * (`sendfile(2)` where the transport allows it, else its next piece).
   */
  initiateSend(): void {
    const out = this.outBuffer;
    const fifo = out.fifo;
    while (fifo.length > 0) {
      const head = fifo.at(0)!;
      if (head instanceof Uint8Array) {
        const sent = super.send(out.front(SEND_CHUNK));
        out.consume(sent);
        break;
      }
      if (head === null) {
        fifo.shift(); // AsyncChat's "close here" has no meaning in a plain outBuffer
        continue;
      }
      try {
        if (advanceProducer(fifo, head, this.#transport())) break;
      } catch (error) {
        if (!isDisconnect(error)) throw error;
        this.handleClose();
        return;
      }
    }
    if (this._readPaused) resumeIfDrained(this);
  }

  #transport() {
    return this.socket === null ? null : transportOf(this.socket);
  }

  /** Sends more of the buffer. */
  override handleWrite(): void {
    this.initiateSend();
  }

  /** Writable while connecting or while output is queued. */
  override writable(): boolean {
    return !this.connected || this.outBuffer.fifo.length > 0;
  }

  /**
   * Queues `data` and starts sending; returns the bytes accepted (all of them).
   * With nothing queued the socket gets `data` directly, with no copy.
   */
  override send(data: BytesLike): number {
    const bytes = asBytes(data);
    if (this.debug) this.logInfo(`sending ${bytes.length} bytes`);
    const fifo = this.outBuffer.fifo;
    if (fifo.length === 0 && this.connected && this.socket !== null) {
      const sent = super.send(bytes);
      if (sent < bytes.length && this.fileno() !== null) {
        this.outBuffer.push(bytes.subarray(sent));
      }
      return bytes.length;
    }
    this.outBuffer.push(bytes);
    this.initiateSend();
    return bytes.length;
  }

  /**
   * Queues a file after everything sent so far (and before anything sent
   * later), and starts sending it; the loop sends the rest with
   * non-blocking `sendfile(2)` (over TLS: read and encrypted). `file` is an
   * fd (left open), a path (closed when sent or when the channel closes) or
   * an object with `fileno()`; see {@linkcode FileProducer}. Returns the
   * producer (its `sent` counts the bytes gone).
   *
   * @example
   * ```ts
   * import { DispatcherWithSend } from "@asyncore/deno";
   *
   * class IndexServer extends DispatcherWithSend {
   *   override handleRead() {
   *     if (this.recv(4096).length === 0) return;
   *     this.send("HTTP/1.0 200 OK\r\n\r\n");
   *     this.sendFile("index.html");
   *     this.send("more bytes, after the file");
   *   }
   * }
   * ```
   */
  sendFile(file: SendfileSource | FileProducer, options?: FileProducerOptions): FileProducer {
    const producer = file instanceof FileProducer ? file : new FileProducer(file, options);
    this.outBuffer.fifo.push(producer);
    if (this.connected) this.initiateSend();
    return producer;
  }

  /**
   * The first file still to send, or null (internal).
   * @ignore
   */
  get _files(): FileProducer | null {
    for (const e of this.outBuffer.fifo) if (e instanceof FileProducer && !e.done) return e;
    return null;
  }

  /** Closes the channel and any file still queued. */
  override close(): void {
    closeQueuedFiles(this.outBuffer.fifo);
    super.close();
  }
}
trackPredicates(DispatcherWithSend.prototype.writable);
