/**
 * `FileProducer`: a file sent by the loop with non-blocking `sendfile(2)`,
 * in order with the channel's other output (`DispatcherWithSend.sendFile`,
 * `AsyncChat.pushWithProducer`). And `FileQueue`, the output that waits
 * behind a file on a `DispatcherWithSend`.
 *
 * @module
 */

import { OSError } from "../ffi/errno.ts";
import { close } from "../ffi/os.ts";
import {
  checkSendfileRange,
  readAt,
  resolveFd,
  SENDFILE_UNSUPPORTED,
  type SendfileSource,
} from "../ffi/sendfile.ts";
import { Socket } from "../ffi/socket.ts";
import { DISCONNECTED } from "./errors.ts";

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
 * `AsyncChat.pushWithProducer`. On a plain `Socket` the loop sends it with
 * non-blocking `sendfile(2)` (the bytes never enter JavaScript); elsewhere
 * (a file the kernel cannot send from, a channel whose socket is not a plain
 * `Socket`) it is read in 64 KiB pieces (`more()`) and sent as bytes.
 *
 * `file` is an fd (left open: the caller owns it), a path (opened now and
 * closed when done or when the channel closes), or an object with
 * `fileno()`. A bad fd or path fails here, with an `OSError`.
 *
 * @example
 * ```ts ignore
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
  sendTo(sock: Socket): number {
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

/**
 * Whether `sock` takes files straight from the kernel: a socket that says so
 * ({@linkcode Socket.canSendfile}; an `SSLSocket` does not, its bytes must be
 * encrypted). Anything else (a `FileWrapper`, nothing) does not.
 */
export function kernelSendsFiles(sock: unknown): sock is Socket {
  return sock instanceof Socket && sock.canSendfile();
}

/** What `FileQueue` needs of its channel (a `DispatcherWithSend`). */
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
 * The output of a `DispatcherWithSend` that waits behind a file: files and
 * the bytes sent after them, in order. Everything in `outBuffer` goes
 * before everything here, so bytes move to `outBuffer` only when they reach
 * the front.
 */
export class FileQueue {
  readonly #entries: (FileProducer | Uint8Array)[] = [];
  #head = 0;

  /** Queues a file. */
  pushFile(file: FileProducer): void {
    this.#entries.push(file);
  }

  /** Queues bytes behind the files (a copy: the caller may reuse its buffer). */
  pushBytes(data: Uint8Array): void {
    if (data.length > 0) this.#entries.push(data.slice());
  }

  /**
   * One step, with `outBuffer` empty: sends from the file at the front, or
   * moves the bytes at the front into `outBuffer` (the caller sends them).
   */
  step(owner: FileQueueOwner): void {
    const entries = this.#entries;
    while (this.#head < entries.length) {
      const head = entries[this.#head];
      if (head instanceof Uint8Array) {
        owner.outBuffer.pushOwned(head);
        this.#shift(owner);
        if (owner.outBuffer.length > 0) return;
        continue;
      }
      if (!kernelSendsFiles(owner.socket)) {
        // Not a plain socket (e.g. one that encrypts): the file goes as bytes.
        const piece = head.more();
        if (piece.length > 0) return owner.outBuffer.pushOwned(piece);
        this.#shift(owner);
        continue;
      }
      let n: number;
      try {
        n = head.sendTo(owner.socket);
      } catch (error) {
        if (error instanceof OSError && DISCONNECTED.has(error.errno)) {
          owner.handleClose();
          return;
        }
        throw error;
      }
      if (head.done) this.#shift(owner);
      if (n !== 0) return; // sent some, or would block
    }
  }

  #shift(owner: FileQueueOwner): void {
    this.#entries[this.#head++] = undefined as unknown as Uint8Array;
    if (this.#head === this.#entries.length) {
      this.#entries.length = 0;
      this.#head = 0;
      owner._files = null;
    }
  }

  /** Closes every queued file (the channel closed). */
  close(): void {
    for (let i = this.#head; i < this.#entries.length; i++) {
      const e = this.#entries[i];
      if (e instanceof FileProducer) e.close();
    }
    this.#entries.length = 0;
    this.#head = 0;
  }
}
