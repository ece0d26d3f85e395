/**
 * `AsyncChat` and `findPrefixAtEnd`: asynchat's `async_chat` and
 * `find_prefix_at_end`, method for method, in the reference's order (its
 * producers are in `producers.ts`, its output queue in `output_queue.ts`).
 *
 * Where the reference copies, this module does not:
 *
 * - Input. The reference appends every read to `ac_in_buffer` and re-slices
 *   it after each terminator, which is quadratic in the number of lines a
 *   read holds. Here the unprocessed input is a view into the chunk `recv`
 *   returned, searched from an offset; the pieces handed to
 *   `collectIncomingData` are views of that chunk. All that survives a read
 *   is a possible partial terminator (shorter than the terminator), which
 *   the next read matches across the boundary without joining the two reads.
 * - Output. `push` splits large data into `acOutBufferSize` views of the
 *   caller's array (no copy), and `initiateSend` sends views. Small pushes
 *   (up to 4 KiB) are copied into a shared 16 KiB block, so that many short
 *   lines leave in few system calls instead of one send each.
 *
 * The bytes given to `collectIncomingData` may be cut at other places than
 * in the reference (they always are, across reads); their concatenation and
 * the points where `foundTerminator` runs are the same.
 *
 * @module
 */

import { asBytes, encodeText } from "../ffi/bytes.ts";
import { errno as E, OSError } from "../ffi/errno.ts";
import type { Socket } from "../ffi/socket.ts";
import { transportOf } from "../ffi/transport.ts";
import { trackPredicates } from "./_interest.ts";
import { Dispatcher, type SocketMap } from "./dispatcher.ts";
import { isDisconnect } from "./errors.ts";
import { DEFAULT_HIGH_WATER_MARK, resumeIfDrained } from "./limits.ts";
import {
  adoptQueue,
  advanceProducer,
  closeQueuedFiles,
  type FifoEntry,
  PACK_MAX,
  ProducerFifo,
} from "./output_queue.ts";
import { type Producer, SimpleProducer } from "./producers.ts";

export { type FifoEntry, type Producer, ProducerFifo, SimpleProducer };

const EMPTY = new Uint8Array(0);

/** The default `maxInputLength`: 1 MiB. */
export const DEFAULT_MAX_INPUT_LENGTH = 1024 * 1024;

/** What a terminator can be once set: bytes, a byte count, or null (none). */
export type Terminator = Uint8Array | number | null;

function concat2(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b;
  if (b.length === 0) return a;
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

/** The first index >= `from` where `needle` (non-empty) starts in `hay`, or -1. */
function indexOfBytes(hay: Uint8Array, needle: Uint8Array, from: number): number {
  const first = needle[0];
  const t = needle.length;
  if (t === 1) return hay.indexOf(first, from);
  const last = hay.length - t;
  let i = from;
  while (i <= last) {
    i = hay.indexOf(first, i);
    if (i === -1 || i > last) return -1;
    let j = 1;
    while (j < t && hay[i + j] === needle[j]) j++;
    if (j === t) return i;
    i++;
  }
  return -1;
}

/**
 * The longest proper prefix of `needle` that `hay[from:]` ends with: its
 * length, 0 for none (the reference's `find_prefix_at_end` on a view).
 */
function prefixAtEnd(hay: Uint8Array, from: number, needle: Uint8Array): number {
  const end = hay.length;
  const avail = end - from;
  if (avail <= 0) return 0;
  const lastByte = hay[end - 1];
  for (let l = Math.min(needle.length - 1, avail); l > 0; l--) {
    if (needle[l - 1] !== lastByte) continue;
    let k = 0;
    const start = end - l;
    while (k < l - 1 && hay[start + k] === needle[k]) k++;
    if (k === l - 1) return l;
  }
  return 0;
}

/**
 * Given `haystack`, how many bytes at its end are a prefix of `needle`
 * (the longest such proper prefix; 0 when none). As in the reference, an
 * exact match of the whole `needle` is assumed to have been looked for
 * already: `findPrefixAtEnd("qwerty\r", "\r\n")` is 1,
 * `findPrefixAtEnd("qwertydkjf", "\r\n")` is 0. Strings are taken as UTF-8.
 * An empty `needle` gives 0 (the reference returns -1 there).
 */
export function findPrefixAtEnd(
  haystack: Uint8Array | string,
  needle: Uint8Array | string,
): number {
  const hay = asBytes(haystack, "haystack", true);
  const ndl = asBytes(needle, "needle", true);
  if (ndl.length === 0) return 0;
  return prefixAtEnd(hay, 0, ndl);
}

/**
 * A channel for command/response ("chat") protocols: incoming data is cut
 * at a terminator (bytes such as `"\r\n"`, a byte count, or null for
 * "everything"); outgoing data is queued with `push` and producers.
 *
 * Subclass it and override {@linkcode AsyncChat.collectIncomingData} and
 * {@linkcode AsyncChat.foundTerminator}.
 *
 * @example A line-echo channel
 * ```ts
 * import { AsyncChat, type Socket } from "@asyncore/deno";
 *
 * class LineEcho extends AsyncChat {
 *   constructor(sock: Socket) {
 *     super(sock);
 *     this.setTerminator("\n");
 *   }
 *   override collectIncomingData(data: Uint8Array) {
 *     this._collectIncomingData(data);
 *   }
 *   override foundTerminator() {
 *     this.push(this._getData());
 *     this.push("\n");
 *   }
 * }
 * ```
 */
export class AsyncChat extends Dispatcher {
  /** The most bytes one read asks `recv` for. */
  acInBufferSize = 65536;
  /** The most bytes one send hands to the socket; `push` splits data into pieces of this size. */
  acOutBufferSize = 65536;
  /**
   * Encode strings given to `push`, `pushWithProducer` and `setTerminator`
   * in `encoding`, as asynchat's `use_encoding`. Off by default (as in
   * Python, where strings are then refused): here strings are then sent as
   * UTF-8.
   */
  useEncoding = false;
  /** The encoding of strings with `useEncoding`: `"latin-1"` (the default, as Python's), `"ascii"` or `"utf-8"`. */
  encoding = "latin-1";
  /** See `Dispatcher.highWaterMark`; default 1 MiB (`Infinity`: the reference's unbounded queue). */
  override highWaterMark: number = DEFAULT_HIGH_WATER_MARK;
  /**
   * The most bytes collected while a byte terminator (such as `"\r\n"`) has
   * not been found: more calls `handleInputOverflow`. Counted from the last
   * terminator (or `setTerminator`); numeric and null terminators are not
   * bounded, since the program chose how much to take. Default 1 MiB;
   * raise it for protocols with bigger messages, `Infinity` for none.
   */
  maxInputLength: number = DEFAULT_MAX_INPUT_LENGTH;

  /** Bytes gathered by `_collectIncomingData`, joined and cleared by `_getData`. */
  incoming: Uint8Array[] = [];
  #fifo: ProducerFifo = adoptQueue(this, null, new ProducerFifo(), ProducerFifo, "producerFifo");
  /**
   * The current terminator (see `setTerminator`); a number counts down as
   * bytes arrive. Null (the default) hands every byte to `collectIncomingData`.
   */
  terminator: Terminator = null;

  // Unprocessed input is #head (a short tail of an earlier read, normally
  // empty) followed by #buf[#pos:], a view of the chunk being processed.
  #head: Uint8Array = EMPTY;
  #buf: Uint8Array = EMPTY;
  #pos = 0;
  // Bytes collected since the last byte terminator, and whether the rest of
  // an overflowing message is being dropped.
  #unterminated = 0;
  #discarding = false;

  /**
   * Wraps a connected `sock`, or starts without a socket (see `Dispatcher`).
   *
   * @param sock The connection to serve (from `handleAccepted`), or null to `createSocket` later.
   * @param map The map the loop serves this channel from; default `socketMap`.
   * @throws {OSError} When `sock` cannot be made non-blocking or queried.
   */
  constructor(sock: Socket | null = null, map?: SocketMap) {
    super(sock, map);
  }

  /**
   * The output queue: byte arrays, producers, and null for "close here".
   * Assigning a new `ProducerFifo` works under every poller (the channel
   * adopts it); anything else is a `TypeError`.
   */
  get producerFifo(): ProducerFifo {
    return this.#fifo;
  }
  set producerFifo(fifo: ProducerFifo) {
    if (fifo !== this.#fifo) {
      this.#fifo = adoptQueue(this, this.#fifo, fifo, ProducerFifo, "producerFifo");
    }
  }

  /**
   * Received data before its terminator: override this. It may be called
   * several times per message; the views it gets stay valid (each read is a
   * fresh array), so keeping them is safe and cheaper than copying.
   */
  collectIncomingData(_data: Uint8Array): void {
    throw new Error("collectIncomingData must be implemented in a subclass");
  }

  /** A ready-made `collectIncomingData`: appends `data` to `incoming`. */
  _collectIncomingData(data: Uint8Array): void {
    this.incoming.push(data);
  }

  /** Everything in `incoming` as one array, and empties `incoming`. */
  _getData(): Uint8Array {
    const parts = this.incoming;
    this.incoming = [];
    if (parts.length === 0) return new Uint8Array(0);
    if (parts.length === 1) return parts[0];
    let n = 0;
    for (const p of parts) n += p.length;
    const out = new Uint8Array(n);
    let o = 0;
    for (const p of parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  }

  /** The terminator was seen (or the byte count reached): override this. */
  foundTerminator(): void {
    throw new Error("foundTerminator must be implemented in a subclass");
  }

  /**
   * Sets the input delimiter: bytes of any length (a string is taken as
   * UTF-8), a non-negative integer number of bytes, or null for none.
   * An empty terminator or 0 means "no terminator", as in the reference.
   * Throws `RangeError` for a negative or non-integer number, `TypeError`
   * for any other type.
   */
  setTerminator(term: Uint8Array | string | number | null): void {
    this.#unterminated = 0;
    this.#discarding = false;
    if (term === null) {
      this.terminator = null;
    } else if (typeof term === "number") {
      if (!Number.isSafeInteger(term) || term < 0) {
        throw new RangeError(
          `the number of received bytes must be a non-negative integer, not ${term}`,
        );
      }
      this.terminator = term;
    } else if (typeof term === "string" || ArrayBuffer.isView(term)) {
      this.terminator = this.#bytes(term, "terminator");
    } else {
      throw new TypeError(
        `terminator must be a Uint8Array, a string, a number or null, not ${typeof term}`,
      );
    }
  }

  /** The current terminator (bytes, the bytes still to come, or null). */
  getTerminator(): Terminator {
    return this.terminator;
  }

  /**
   * The unprocessed input: at most a partial terminator between reads
   * (the reference's `ac_in_buffer`). A copy, for inspection.
   */
  get acInBuffer(): Uint8Array {
    return concat2(this.#head, this.#buf.subarray(this.#pos)).slice();
  }

  /**
   * Reads up to `acInBufferSize` bytes and feeds them to
   * `collectIncomingData`, calling `foundTerminator` at each terminator.
   * "Would block" is ignored; any other `OSError` goes to `handleError`.
   */
  override handleRead(): void {
    let data: Uint8Array;
    try {
      data = this.recv(this.acInBufferSize);
    } catch (error) {
      if (error instanceof OSError) {
        if (error.errno === E.EAGAIN || error.errno === E.EWOULDBLOCK) return;
        this.handleError(error);
        return;
      }
      throw error;
    }
    if (this.#pos < this.#buf.length) {
      // A handler threw during an earlier read: keep what it left unprocessed.
      this.#head = concat2(this.#head, this.#buf.subarray(this.#pos));
    }
    this.#buf = data;
    this.#pos = 0;
    if (this.#head.length > 0) this.#bridge();
    this.#scan();
  }

  /**
   * Handles input that starts in #head (a partial terminator left by the
   * last read) without joining it to the new chunk: a terminator that
   * starts in #head is matched byte by byte across the two. Rare or tiny
   * cases (terminator changed meanwhile, chunk shorter than the terminator)
   * just join them.
   */
  #bridge(): void {
    const head = this.#head;
    const term = this.getTerminator();
    const p = head.length;
    const rest = this.#buf.length - this.#pos;
    if (!(term instanceof Uint8Array) || term.length <= p || rest < term.length) {
      this.#buf = concat2(head, this.#buf.subarray(this.#pos));
      this.#pos = 0;
      this.#head = EMPTY;
      return;
    }
    const t = term.length;
    const buf = this.#buf;
    const pos = this.#pos;
    // The first start i < p where head[i:] + buf[pos:] begins with term.
    let found = -1;
    for (let i = 0; i < p && found < 0; i++) {
      let k = 0;
      while (k < t) {
        const j = i + k;
        const b = j < p ? head[j] : buf[pos + j - p];
        if (b !== term[k]) break;
        k++;
      }
      if (k === t) found = i;
    }
    this.#head = EMPTY;
    if (found < 0) {
      // No terminator starts in head: it is plain data; the chunk follows.
      this.#collectBounded(head);
      return;
    }
    if (found > 0) this.#collectBounded(head.subarray(0, found));
    this.#pos = pos + found + t - p;
    this.#terminated();
  }

  /** Collects data before a byte terminator, within `maxInputLength`. */
  #collectBounded(data: Uint8Array): void {
    if (this.#discarding) return;
    const n = this.#unterminated + data.length;
    if (n > this.maxInputLength) {
      this.#overflow();
      return;
    }
    this.#unterminated = n;
    this.collectIncomingData(data);
  }

  #overflow(): void {
    this.#discarding = true;
    this.#unterminated = 0;
    this.handleInputOverflow();
    // Still open: what was gathered of this message is of no use now.
    if (this.fileno() !== null) this.incoming = [];
  }

  /** A byte terminator was found. */
  #terminated(): void {
    this.#unterminated = 0;
    if (this.#discarding) {
      // The end of the overflowing message, which is not reported; a closed
      // channel hears nothing more of this read.
      if (this.fileno() !== null) this.#discarding = false;
      return;
    }
    this.foundTerminator();
  }

  /**
   * More than `maxInputLength` bytes came without a terminator. The default
   * logs it (`logInfo(..., "info")`) and closes. An override that keeps the
   * channel open (say, after pushing an error reply) gets the rest of that
   * message dropped up to the next terminator, without `foundTerminator`;
   * `incoming` is emptied, and a subclass that collects elsewhere forgets
   * its partial message here. (`setTerminator` ends the dropping.)
   */
  handleInputOverflow(): void {
    this.logInfo(
      `${this} sent more than ${this.maxInputLength} bytes without a terminator: closing`,
      "info",
    );
    this.close();
  }

  /**
   * The bytes queued for sending (producers count once they have produced),
   * plus what the transport holds.
   */
  override get queuedBytes(): number {
    return this.producerFifo.bytes + super.queuedBytes;
  }

  /** The reference's `handle_read` loop over #buf[#pos:]. */
  #scan(): void {
    for (;;) {
      const buf = this.#buf;
      const pos = this.#pos;
      const end = buf.length;
      const lb = end - pos;
      if (lb <= 0) break;
      const terminator = this.getTerminator();
      if (
        terminator === null || terminator === 0 ||
        (terminator instanceof Uint8Array && terminator.length === 0)
      ) {
        // no terminator, collect it all
        this.collectIncomingData(pos === 0 ? buf : buf.subarray(pos));
        this.#clearInput();
      } else if (typeof terminator === "number") {
        // numeric terminator
        const n = terminator;
        if (lb < n) {
          this.collectIncomingData(pos === 0 ? buf : buf.subarray(pos));
          this.#clearInput();
          this.terminator = (this.terminator as number) - lb;
        } else {
          this.collectIncomingData(buf.subarray(pos, pos + n));
          this.#pos = pos + n;
          this.terminator = 0;
          this.foundTerminator();
        }
      } else {
        // 3 cases:
        // 1) the terminator is in the input: collect up to it, transition
        // 2) the input ends with a prefix of it: collect up to the prefix
        // 3) neither: collect it all
        const index = indexOfBytes(buf, terminator, pos);
        if (index !== -1) {
          // don't bother reporting the empty string (source of subtle bugs)
          if (index > pos) this.#collectBounded(buf.subarray(pos, index));
          this.#pos = index + terminator.length;
          // This does the Right Thing if the terminator is changed here.
          this.#terminated();
        } else {
          const k = prefixAtEnd(buf, pos, terminator);
          if (k) {
            if (k !== lb) this.#collectBounded(buf.subarray(pos, end - k));
            // Keep the partial terminator (fewer bytes than it) for the next read.
            this.#head = buf.slice(end - k);
            this.#clearInput();
            break;
          } else {
            this.#collectBounded(pos === 0 ? buf : buf.subarray(pos));
            this.#clearInput();
          }
        }
      }
    }
  }

  #clearInput(): void {
    this.#buf = EMPTY;
    this.#pos = 0;
  }

  /** Sends more of the queue. */
  override handleWrite(): void {
    this.initiateSend();
  }

  /** Closes the channel (no warning, unlike `Dispatcher.handleClose`). */
  override handleClose(): void {
    this.close();
  }

  /**
   * Queues `data` and starts sending. A string is sent as UTF-8, or in
   * `encoding` with `useEncoding` (as asynchat). Data larger than
   * `acOutBufferSize` is queued as views of that size. Data over 4 KiB is
   * queued by reference, as the reference does, so do not change the array
   * until it is sent; smaller pushes are copied (packed together, so that
   * many short lines leave in few system calls).
   */
  push(data: Uint8Array | string): void {
    const fifo = this.producerFifo;
    if (typeof data === "string" && !this.useEncoding && data.length <= PACK_MAX / 3) {
      // Encoded straight into the packing block: TextEncoder.encode would
      // cost an allocation and several times the copy.
      fifo.pushText(data);
      if (data.length > 0) this.initiateSend();
      return;
    }
    const bytes = this.#bytes(data, "data");
    const n = bytes.length;
    if (n === 0) return;
    const sabs = this.acOutBufferSize;
    if (n <= PACK_MAX) {
      fifo.pushCopy(bytes);
    } else if (n > sabs) {
      if (!Number.isSafeInteger(sabs) || sabs <= 0) {
        throw new RangeError(`acOutBufferSize must be a positive integer, not ${sabs}`);
      }
      for (let i = 0; i < n; i += sabs) fifo.push(bytes.subarray(i, i + sabs));
    } else {
      fifo.push(bytes);
    }
    this.initiateSend();
  }

  /** `data` as bytes: a string in `encoding` with `useEncoding`, else as UTF-8. */
  #bytes(data: unknown, what: string): Uint8Array {
    if (typeof data === "string" && this.useEncoding) return encodeText(data, this.encoding);
    return asBytes(data, what, true);
  }

  /**
   * Queues a producer and starts sending. Bytes or a string are accepted
   * too and queued whole (the reference's "string producer").
   */
  pushWithProducer(producer: Producer | Uint8Array | string): void {
    let entry: FifoEntry;
    if (typeof producer === "string" || ArrayBuffer.isView(producer)) {
      entry = this.#bytes(producer, "producer");
    } else if (
      producer !== null && typeof producer === "object" &&
      typeof (producer as Producer).more === "function"
    ) {
      entry = producer;
    } else {
      throw new TypeError(
        `producer must have a more() method, or be a Uint8Array or a string`,
      );
    }
    this.producerFifo.push(entry);
    this.initiateSend();
  }

  /** Always true, as in the reference: a channel always wants input. */
  override readable(): boolean {
    return true;
  }

  /** True while output is queued, or while not connected yet. */
  override writable(): boolean {
    return this.producerFifo.length > 0 || !this.connected;
  }

  /** Closes the channel once everything queued so far has been sent. */
  closeWhenDone(): void {
    this.producerFifo.push(null);
  }

  /**
   * Sends from the front of the queue: at most one send of up to
   * `acOutBufferSize` bytes per call, asking producers for more as needed;
   * a null entry closes the channel (`handleClose`).
   */
  initiateSend(): void {
    const fifo = this.producerFifo;
    while (fifo.length > 0 && this.connected) {
      const first = fifo.at(0)!;
      // handle empty data or a null ("close") entry
      if (first === null) {
        fifo.shift();
        this.handleClose();
        return;
      }
      if (first instanceof Uint8Array && first.length === 0) {
        fifo.shift();
        continue;
      }

      // handle classic producer behavior
      const obs = this.acOutBufferSize;
      if (!(first instanceof Uint8Array)) {
        // A file goes by sendfile(2) where the transport allows it.
        if (this.#advance(first)) return;
        continue;
      }
      const data = first.length > obs ? first.subarray(0, obs) : first;

      // send the data
      let numSent: number;
      try {
        numSent = this.send(data);
      } catch (error) {
        if (error instanceof OSError) {
          this.handleError(error);
          return;
        }
        throw error;
      }

      if (numSent) {
        if (numSent < data.length || obs < first.length) {
          fifo.set(0, first.subarray(numSent));
        } else {
          fifo.shift();
        }
        if (this._readPaused) resumeIfDrained(this);
      }
      // we tried to send some actual data
      return;
    }
  }

  /** The producer at the front: true when that was this call's send (see `advanceProducer`). */
  #advance(producer: Producer): boolean {
    try {
      return advanceProducer(this.producerFifo, producer, this.socket && transportOf(this.socket));
    } catch (error) {
      if (isDisconnect(error)) {
        this.handleClose();
        return true;
      }
      if (error instanceof OSError) {
        this.handleError(error);
        return true;
      }
      throw error;
    }
  }

  /** Closes the channel; a queued `FileProducer` closes the file it opened. */
  override close(): void {
    closeQueuedFiles(this.producerFifo);
    super.close();
  }

  /** Emergencies only: drops unprocessed input, `incoming` and the output queue. */
  discardBuffers(): void {
    this.#head = EMPTY;
    this.#clearInput();
    this.incoming = [];
    this.producerFifo.clear();
  }
}

trackPredicates(AsyncChat.prototype.readable, AsyncChat.prototype.writable);
