/**
 * The readable half of a connection: a byte `ReadableStream` fed by the
 * channel's read events, with backpressure back to the loop (a full stream
 * queue takes the socket out of the loop's read interest; the consumer's
 * next read puts it back), BYOB reads straight into the reader's buffer,
 * and errors delivered only after the bytes already received.
 *
 * @module
 */

/** Bytes the stream reads ahead of its consumer before the loop stops reading the socket. */
export const READ_AHEAD = 64 * 1024;

/** The most bytes one read event takes from the socket (default readers). */
const READ_SIZE = 64 * 1024;

/**
 * Where default reads land before being copied out at their exact size: one
 * buffer for every connection (the loop runs one handler at a time, and the
 * copy is made before the handler returns).
 */
const scratch = new Uint8Array(READ_SIZE);

/** What the read side asks of its channel. */
export interface ReadHost {
  /** Reads into `buffer` (up to `n`): the count, 0 at the end of the stream, -1 when it would block. */
  read(buffer: Uint8Array, n: number): number;
  /** What the side wants from the loop changed (`wants`). */
  interestChanged(): void;
  /** The side no longer needs the socket (end of stream, or cancelled). */
  finished(): void;
  /** Reading failed: the whole connection fails with `error` (see {@linkcode ReadSide.fail}). */
  failed(error: unknown): void;
}

/**
 * `open`: reading the socket; `failed`: an error waits until the consumer
 * has the bytes queued before it; `done`: closed, errored or cancelled.
 */
type State = "open" | "failed" | "done";

/** The readable half of a stream channel. */
export class ReadSide {
  /** The stream handed to the program. */
  readonly stream: ReadableStream<Uint8Array>;
  readonly #host: ReadHost;
  #c!: ReadableByteStreamController;
  #state: State = "open";
  /** The stream's queue is full: the loop leaves the socket alone until the consumer reads. */
  #paused = false;
  #error: unknown = undefined;

  /** A read side over `host`. */
  constructor(host: ReadHost) {
    this.#host = host;
    this.stream = new ReadableStream({
      type: "bytes",
      start: (c) => {
        this.#c = c;
      },
      pull: () => this.#pull(),
      cancel: () => this.#cancel(),
    }, { highWaterMark: READ_AHEAD });
  }

  /** Whether the loop should watch the socket for reading. */
  get wants(): boolean {
    return this.#state === "open" && !this.#paused;
  }

  /** Whether the side no longer reads the socket. */
  get finished(): boolean {
    return this.#state !== "open";
  }

  /**
   * A read event: one read, into the pending BYOB reader's buffer if there
   * is one, else into the shared buffer and enqueued as a copy of its size.
   */
  onReadable(): void {
    if (!this.wants) return;
    const c = this.#c;
    const req = c.byobRequest;
    let n: number;
    try {
      if (req !== null && req.view !== null) {
        const v = req.view;
        n = this.#host.read(new Uint8Array(v.buffer, v.byteOffset, v.byteLength), v.byteLength);
      } else {
        n = this.#host.read(scratch, READ_SIZE);
      }
    } catch (error) {
      this.#host.failed(error);
      return;
    }
    if (n < 0) return;
    if (n === 0) {
      this.#end();
      return;
    }
    if (req !== null && req.view !== null) req.respond(n);
    else c.enqueue(scratch.slice(0, n));
    if ((c.desiredSize ?? 0) <= 0) {
      this.#paused = true;
      this.#host.interestChanged();
    }
  }

  /**
   * The connection failed or was closed under the stream: the stream errors
   * with `error` once its consumer has read what was queued before (at once
   * if nothing is). A stream that already ended keeps its clean end.
   */
  fail(error: unknown): void {
    if (this.#state !== "open") return;
    this.#error = error;
    if (this.#queueEmpty()) {
      this.#state = "done";
      this.#c.error(error);
    } else {
      this.#state = "failed";
    }
  }

  /** The peer's end of stream: the stream closes after what is queued. */
  #end(): void {
    this.#state = "done";
    const req = this.#c.byobRequest;
    this.#c.close();
    // A pending BYOB read settles (done) only through its request.
    req?.respond(0);
    this.#host.finished();
  }

  #queueEmpty(): boolean {
    return this.#c.desiredSize === READ_AHEAD;
  }

  /** The consumer wants more: deliver a deferred error once the queue is empty, or resume reading. */
  #pull(): void {
    if (this.#state === "failed") {
      if (this.#queueEmpty()) {
        this.#state = "done";
        this.#c.error(this.#error);
      }
      return;
    }
    if (this.#paused) {
      this.#paused = false;
      this.#host.interestChanged();
    }
  }

  /** The consumer cancelled the stream: nothing more is read. */
  #cancel(): void {
    if (this.#state === "done") return;
    const wasOpen = this.#state === "open";
    this.#state = "done";
    this.#paused = false;
    if (wasOpen) {
      this.#host.interestChanged();
      this.#host.finished();
    }
  }
}
