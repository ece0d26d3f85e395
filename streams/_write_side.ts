/**
 * The writable half of a connection: a `WritableStream` whose chunks go to
 * the socket at once when nothing is queued, and otherwise to the channel's
 * output queue, which the loop sends as the socket takes it. A write
 * resolves once no more than the high-water mark is queued (the caller may
 * then reuse its buffer: what is still queued of it is a copy); closing
 * resolves once everything is sent and the write side is shut down.
 *
 * @module
 */

import { errno as E, OSError } from "../ffi/errno.ts";
import { ByteQueue } from "../dispatcher/output_queue.ts";

/** A write resolves once no more than this many bytes are queued for the connection. */
export const WRITE_HIGH_WATER_MARK = 64 * 1024;

/** What the write side asks of its channel. */
export interface WriteHost {
  /** Sends from `data`: the bytes taken, -1 when it would block (throws on failure). */
  send(data: Uint8Array): number;
  /**
   * Ends the write direction once the queue is empty (TLS close_notify, then
   * `shutdown(SHUT_WR)`): true when done, false when it must be tried again
   * on the next write event (throws on failure).
   */
  shutdown(): boolean;
  /** What the side wants from the loop changed (`wants`). */
  interestChanged(): void;
  /** The side no longer needs the socket (shut down, failed or aborted). */
  finished(): void;
  /** The stream was aborted: the whole connection closes. */
  abort(): void;
}

/** A settled-later promise's two ends. */
interface Waiter {
  resolve(): void;
  reject(error: unknown): void;
}

/**
 * `open`: writes go on; `ending`: closed for writing, the queue drains, then
 * the direction is shut down; `ended`: shut down; `failed`: an error ended it.
 */
type State = "open" | "ending" | "ended" | "failed";

/** The writable half of a stream channel. */
export class WriteSide {
  /** The stream handed to the program. */
  readonly stream: WritableStream<Uint8Array>;
  /** Bytes accepted and not yet sent. */
  readonly queue: ByteQueue = new ByteQueue();
  readonly #host: WriteHost;
  #c!: WritableStreamDefaultController;
  #state: State = "open";
  #error: unknown = undefined;
  /** The write waiting for the queue to go down to the high-water mark, and its chunk's buffer. */
  #owed: (Waiter & { buffer: ArrayBufferLike }) | null = null;
  /** Waiting for the direction to be shut down (`closeWrite()`, the stream's close). */
  #endWaiters: Waiter[] = [];
  /** Waiting for the queue to be empty (an `asyncDispose`). */
  #flushWaiters: Waiter[] = [];

  /** A write side over `host`. */
  constructor(host: WriteHost) {
    this.#host = host;
    this.stream = new WritableStream<Uint8Array>({
      start: (c) => {
        this.#c = c;
      },
      write: (chunk) => this.#write(chunk),
      close: () => this.end(),
      abort: () => this.#abort(),
    });
  }

  /** Whether the loop should watch the socket for writing. */
  get wants(): boolean {
    return this.queue.fifo.length > 0 || this.#state === "ending";
  }

  /** Whether the side no longer writes to the socket. */
  get finished(): boolean {
    return this.#state === "ended" || this.#state === "failed";
  }

  /** The bytes queued. */
  get queuedBytes(): number {
    return this.queue.length;
  }

  #write(chunk: Uint8Array): Promise<void> | undefined {
    if (!(chunk instanceof Uint8Array)) throw notBytes(chunk);
    if (this.#state !== "open") throw this.#refusal();
    if (chunk.length === 0) return;
    const q = this.queue;
    let rest = chunk;
    if (q.fifo.length === 0) {
      const n = this.#send(chunk);
      if (n === chunk.length) return;
      if (n > 0) rest = chunk.subarray(n);
    }
    const wasEmpty = q.fifo.length === 0;
    let owed: Promise<void> | undefined;
    if (q.length + rest.length <= WRITE_HIGH_WATER_MARK) {
      q.push(rest); // a copy: the caller may reuse its buffer once this returns
    } else {
      // Over the mark: queued without a copy, and the write waits; what is
      // left of it is copied when the queue is down to the mark.
      q.pushOwned(rest);
      owed = new Promise<void>((resolve, reject) => {
        this.#owed = { resolve, reject, buffer: rest.buffer };
      });
    }
    if (wasEmpty) this.#host.interestChanged();
    return owed;
  }

  /** One send; a failure fails the side and is thrown on. */
  #send(data: Uint8Array): number {
    try {
      return this.#host.send(data);
    } catch (error) {
      this.fail(error);
      throw error;
    }
  }

  /** A write event: sends what is queued, releases a waiting write, then ends if asked to. */
  onWritable(): void {
    const q = this.queue;
    while (q.fifo.length > 0) {
      const front = q.front();
      let n: number;
      try {
        n = this.#host.send(front);
      } catch (error) {
        this.fail(error);
        return;
      }
      if (n <= 0) break;
      q.consume(n);
      if (n < front.length) break;
    }
    if (this.#owed !== null && q.length <= WRITE_HIGH_WATER_MARK) this.#releaseOwed();
    if (q.fifo.length > 0) return;
    this.#host.interestChanged();
    settle(this.#flushWaiters);
    this.#flushWaiters = [];
    if (this.#state === "ending") this.#finishEnd();
  }

  #releaseOwed(): void {
    const owed = this.#owed!;
    this.#owed = null;
    const fifo = this.queue.fifo;
    const last = fifo.at(-1);
    // The rest of the waiting write is the last entry, still in the caller's buffer: copy it.
    if (last instanceof Uint8Array && last.buffer === owed.buffer) fifo.set(-1, last.slice());
    owed.resolve();
  }

  /**
   * Ends the write direction: nothing more is accepted, what is queued is
   * sent, then the direction is shut down (the peer reads the end of the
   * stream); resolves then. Reading goes on.
   */
  end(): Promise<void> {
    if (this.#state === "ended") return Promise.resolve();
    if (this.#state === "failed") return Promise.reject(this.#error);
    const done = new Promise<void>((resolve, reject) => {
      this.#endWaiters.push({ resolve, reject });
    });
    if (this.#state === "open") {
      this.#state = "ending";
      this.#host.interestChanged();
      if (this.queue.fifo.length === 0) this.#finishEnd();
    }
    return done;
  }

  /** Resolves once nothing is queued (at once when nothing is), rejects if the side fails first. */
  flushed(): Promise<void> {
    if (this.queue.fifo.length === 0) return Promise.resolve();
    if (this.#state === "failed") return Promise.reject(this.#error);
    return new Promise<void>((resolve, reject) => this.#flushWaiters.push({ resolve, reject }));
  }

  #finishEnd(): void {
    let done: boolean;
    try {
      done = this.#host.shutdown();
    } catch (error) {
      this.fail(error);
      return;
    }
    if (!done) return; // the next write event tries again (wants stays true while ending)
    this.#state = "ended";
    this.#error = refusedAfterEnd();
    this.#host.interestChanged();
    settle(this.#endWaiters);
    this.#endWaiters = [];
    this.#host.finished();
  }

  /**
   * The connection failed (or was closed): queued bytes are dropped, waiting
   * writes and ends reject with `error`, and the stream errors. A side
   * already shut down keeps its clean end.
   */
  fail(error: unknown): void {
    if (this.finished) return;
    this.#state = "failed";
    this.#error = error;
    this.queue.clear();
    const owed = this.#owed;
    this.#owed = null;
    owed?.reject(error);
    settle(this.#endWaiters, error);
    settle(this.#flushWaiters, error);
    this.#endWaiters = [];
    this.#flushWaiters = [];
    this.#c.error(error);
    this.#host.finished();
  }

  #abort(): void {
    this.fail(new OSError(E.EPIPE, { message: "Broken pipe (the writable stream was aborted)" }));
    this.#host.abort();
  }

  #refusal(): unknown {
    return this.#state === "ending" ? refusedAfterEnd() : this.#error;
  }
}

/** The error for a chunk that is not a `Uint8Array`. */
function notBytes(chunk: unknown): TypeError {
  const what = chunk === null
    ? "null"
    : typeof chunk === "object"
    ? (chunk.constructor?.name ?? "object")
    : typeof chunk;
  return new TypeError(`a connection's writable takes Uint8Array chunks, not ${what}`);
}

/** Why a write after `closeWrite()` (or the stream's close) fails. */
function refusedAfterEnd(): OSError {
  return new OSError(E.EPIPE, {
    syscall: "write",
    message: "Broken pipe (the connection was closed for writing)",
  });
}

/** Resolves every waiter, or rejects them with `error` when one is given. */
function settle(waiters: Waiter[], ...error: [unknown?]): void {
  for (const w of waiters) {
    if (error.length > 0) w.reject(error[0]);
    else w.resolve();
  }
}
