/**
 * Producers: sources of outgoing data that a channel's output queue asks
 * for more as it sends (asynchat's `simple_producer`, and `FileProducer`, a
 * file the loop sends with `sendfile(2)` where the transport allows it).
 *
 * @module
 */

import { asBytes } from "../ffi/bytes.ts";
import { close } from "../ffi/os.ts";
import {
  checkSendfileRange,
  readAt,
  resolveFd,
  SENDFILE_UNSUPPORTED,
  type SendfileSource,
} from "../ffi/sendfile.ts";
import { OSError } from "../ffi/errno.ts";

const EMPTY = new Uint8Array(0);

/**
 * A source of outgoing data for `AsyncChat.pushWithProducer`:
 * `more()` returns the next piece (a string is sent as UTF-8); an empty
 * result (or null/undefined) means the producer is exhausted.
 */
export interface Producer {
  /** The next piece of data; empty when there is no more. */
  more(): Uint8Array | string;
}

/** Where a `FileProducer` sends: a socket or a channel's transport. */
export interface FileSink {
  /** Whether the kernel may send files onto it (false: read and send). */
  canSendfile(): boolean;
  /** One `sendfile(2)`: sent, 0 at the end of the file, -1 when it would block. */
  trySendfile(inFd: number, offset: number, count: number): number;
  /** Sends bytes: the count taken, -1 when it would block. */
  trySend(data: Uint8Array): number;
}

/** The read size when the file goes by read and send (and of `more()`). */
const READ_CHUNK = 64 * 1024;
/** Lengths handed to one call are capped so `ssize_t` results fit in an `i32`. */
const MAX_IO = 0x3fff_0000;

/** Options of {@linkcode FileProducer}. */
export interface FileProducerOptions {
  /** Where in the file to start; default 0. */
  offset?: number;
  /** How many bytes to send; default: up to the end of the file. */
  count?: number;
}

/**
 * A file to send, for `DispatcherWithSend.sendFile` and
 * `AsyncChat.pushWithProducer`. Where the channel's transport lets the
 * kernel send files (a plain socket), the loop sends it with non-blocking
 * `sendfile(2)` (the bytes never enter JavaScript); elsewhere (a file the
 * kernel cannot send from, a TLS connection, whose bytes must be encrypted)
 * it is read in 64 KiB pieces (`more()`) and sent as bytes.
 *
 * `file` is an fd (left open: the caller owns it), a path (opened now and
 * closed when done or when the channel closes), or an object with
 * `fileno()`. A bad fd or path fails here, with an `OSError`.
 *
 * @example
 * ```ts
 * import { DispatcherWithSend } from "@asyncore/deno";
 *
 * class FileServer extends DispatcherWithSend {
 *   override handleRead() {
 *     if (this.recv(4096).length > 0) {
 *       this.send("HTTP/1.0 200 OK\r\n\r\n");
 *       this.sendFile("/srv/www/big.iso"); // goes after the header
 *       this.send("trailer"); // and this after the file
 *     }
 *   }
 * }
 * ```
 */
export class FileProducer {
  /** The fd read from (-1 once closed). */
  fd: number;
  /** The offset of the next byte to send. */
  offset: number;
  /** Bytes still to send; Infinity for "up to the end of the file". */
  remaining: number;
  /** Bytes sent so far. */
  sent = 0;
  readonly #owned: boolean;
  #done = false;
  #bySendfile = true;
  #pending: Uint8Array | null = null; // read but not yet sent (read-and-send mode)

  /** Opens (a path) or adopts (an fd) `file`; see the class notes. */
  constructor(file: SendfileSource, options: FileProducerOptions = {}) {
    const { offset = 0, count } = options;
    checkSendfileRange(offset, count);
    const { fd, owned } = resolveFd(file);
    this.fd = fd;
    this.#owned = owned;
    this.offset = offset;
    this.remaining = count ?? Infinity;
    try {
      readAt(fd, new Uint8Array(0), offset, 0); // a bad fd fails now, clearly (EBADF)
    } catch (error) {
      this.close();
      throw error;
    }
  }

  /** Whether everything was sent (or the producer was closed). */
  get done(): boolean {
    return this.#done;
  }

  /**
   * One non-blocking step on `sock`: the bytes sent, -1 when the socket
   * would block, 0 when the file is done (it is then closed if it was
   * opened here). Errors are `OSError`s of the socket or the file.
   */
  sendTo(sock: FileSink): number {
    if (this.#done) return 0;
    if (this.#bySendfile && !sock.canSendfile()) this.#bySendfile = false;
    if (this.#bySendfile && this.#pending === null) {
      const want = Math.min(this.remaining, MAX_IO);
      let n: number;
      try {
        n = sock.trySendfile(this.fd, this.offset, want);
      } catch (error) {
        if (
          this.sent === 0 && error instanceof OSError && SENDFILE_UNSUPPORTED.has(error.errno)
        ) {
          this.#bySendfile = false;
          return this.sendTo(sock);
        }
        throw error;
      }
      if (n < 0) return -1;
      if (n === 0) return this.#finish();
      this.#advance(n);
      this.sent += n;
      if (this.remaining === 0) this.#finish();
      return n;
    }
    if (this.#pending === null || this.#pending.length === 0) {
      const piece = this.more();
      if (piece.length === 0) return 0;
      this.#pending = piece;
    }
    const n = sock.trySend(this.#pending);
    if (n < 0) return -1;
    this.sent += n;
    this.#pending = n < this.#pending.length ? this.#pending.subarray(n) : null;
    if (this.#pending === null && this.remaining === 0) this.#finish();
    return n;
  }

  /**
   * The next piece of the file as bytes (up to 64 KiB), empty when done:
   * the `Producer` interface, for channels that send bytes themselves.
   */
  more(): Uint8Array {
    if (this.#done || this.remaining === 0) {
      this.#finish();
      return new Uint8Array(0);
    }
    const buf = new Uint8Array(Math.min(READ_CHUNK, this.remaining));
    const got = readAt(this.fd, buf, this.offset, buf.length);
    if (got <= 0) {
      this.#finish();
      return new Uint8Array(0);
    }
    this.#advance(got);
    return got === buf.length ? buf : buf.subarray(0, got);
  }

  #advance(n: number): void {
    this.offset += n;
    this.remaining -= n;
  }

  #finish(): 0 {
    this.#done = true;
    this.close();
    return 0;
  }

  /** Stops: closes the fd if it was opened here. Safe to call twice. */
  close(): void {
    this.#done = true;
    this.#pending = null;
    const fd = this.fd;
    this.fd = -1;
    if (this.#owned && fd >= 0) close(fd);
  }
}

/** A producer handing out `data` in pieces of at most `bufferSize` bytes (views, no copies). */
export class SimpleProducer implements Producer {
  /** What is left to hand out. */
  data: Uint8Array;
  /** The most bytes one `more()` returns. */
  bufferSize: number;

  /** Wraps `data` (a string as UTF-8). */
  constructor(data: Uint8Array | string, bufferSize = 512) {
    if (!Number.isSafeInteger(bufferSize) || bufferSize <= 0) {
      throw new RangeError(`bufferSize must be a positive integer, not ${bufferSize}`);
    }
    this.data = asBytes(data, "data", true);
    this.bufferSize = bufferSize;
  }

  /** The next piece; empty when done. */
  more(): Uint8Array {
    if (this.data.length > this.bufferSize) {
      const result = this.data.subarray(0, this.bufferSize);
      this.data = this.data.subarray(this.bufferSize);
      return result;
    }
    const result = this.data;
    this.data = EMPTY;
    return result;
  }
}
