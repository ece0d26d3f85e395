/**
 * `AsyncChat`, `SimpleProducer` and `findPrefixAtEnd`: asynchat's
 * `async_chat`, `simple_producer` and `find_prefix_at_end`, method for
 * method, in the reference's order.
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

import { errno as E, OSError } from "../ffi/errno.ts";
import type { Socket } from "../ffi/socket.ts";
import { DISCONNECTED } from "./errors.ts";
import { Dispatcher } from "./dispatcher.ts";
import { kAdopt, notifyInterest, trackPredicates } from "./_interest.ts";
import { FileProducer, kernelSendsFiles } from "./file_producer.ts";
import type { SocketMap } from "./map.ts";
import { DEFAULT_HIGH_WATER_MARK, resumeIfDrained } from "./_limits.ts";
import { asBytes } from "../ffi/bytes.ts";

const encoder = new TextEncoder();
const EMPTY = new Uint8Array(0);

/** Small pushes are packed into blocks of this size. */
const PACK_BLOCK = 16 * 1024;
/** Pushes up to this size are packed; larger ones are queued as views. */
const PACK_MAX = PACK_BLOCK / 4;

/** The default `maxInputLength`: 1 MiB. */
export const DEFAULT_MAX_INPUT_LENGTH = 1024 * 1024;

function sizeOf(entry: FifoEntry | undefined): number {
  return entry instanceof Uint8Array ? entry.length : 0;
}

/**
 * A source of outgoing data for {@linkcode AsyncChat.pushWithProducer}:
 * `more()` returns the next piece (a string is sent as UTF-8); an empty
 * result (or null/undefined) means the producer is exhausted.
 */
export interface Producer {
  /** The next piece of data; empty when there is no more. */
  more(): Uint8Array | string;
}

/** What a terminator can be once set: bytes, a byte count, or null (none). */
export type Terminator = Uint8Array | number | null;

/** One entry of the output queue: data, a producer, or null ("close here"). */
export type FifoEntry = Uint8Array | Producer | null;

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
 * The output queue of an {@linkcode AsyncChat} (the reference's
 * `producer_fifo` deque): a ring buffer, O(1) at both ends.
 */
export class ProducerFifo {
  #items: (FifoEntry | undefined)[] = new Array(8);
  #head = 0;
  #length = 0;
  #bytes = 0;
  #owner: (() => void) | null = null;

  /**
   * Makes `notify` the owner, told when the queue turns empty or non-empty
   * (its channel's `writable()` depends on that); `null` releases the
   * queue. A fifo serves one channel at a time.
   * @ignore
   */
  [kAdopt](notify: (() => void) | null): void {
    if (notify !== null && this.#owner !== null) {
      throw new TypeError("this ProducerFifo already belongs to another channel");
    }
    this.#owner = notify;
  }

  /** The number of queued entries. */
  get length(): number {
    return this.#length;
  }

  /** The bytes in the queued byte arrays (producers count once they have produced). */
  get bytes(): number {
    return this.#bytes;
  }

  /** The entry at position `i` (0 is the next to go), or undefined. */
  at(i: number): FifoEntry | undefined {
    if (i < 0) i += this.#length;
    if (i < 0 || i >= this.#length) return undefined;
    return this.#items[(this.#head + i) & (this.#items.length - 1)];
  }

  /** Replaces the entry at position `i` (which must exist). */
  set(i: number, entry: FifoEntry): void {
    if (i < 0) i += this.#length;
    if (i < 0 || i >= this.#length) throw new RangeError(`no entry ${i} in the fifo`);
    const at = (this.#head + i) & (this.#items.length - 1);
    this.#bytes += sizeOf(entry) - sizeOf(this.#items[at]);
    this.#items[at] = entry;
  }

  /** Appends at the back. */
  push(entry: FifoEntry): void {
    if (this.#length === this.#items.length) this.#grow();
    this.#items[(this.#head + this.#length) & (this.#items.length - 1)] = entry;
    this.#bytes += sizeOf(entry);
    if (this.#length++ === 0) this.#owner?.();
  }

  /** Inserts at the front (the reference's `appendleft`). */
  unshift(entry: FifoEntry): void {
    if (this.#length === this.#items.length) this.#grow();
    this.#head = (this.#head - 1) & (this.#items.length - 1);
    this.#items[this.#head] = entry;
    this.#bytes += sizeOf(entry);
    if (this.#length++ === 0) this.#owner?.();
  }

  /** Removes and returns the front entry (undefined when empty). */
  shift(): FifoEntry | undefined {
    if (this.#length === 0) return undefined;
    const entry = this.#items[this.#head];
    this.#bytes -= sizeOf(entry);
    this.#items[this.#head] = undefined;
    this.#head = (this.#head + 1) & (this.#items.length - 1);
    if (--this.#length === 0) this.#owner?.();
    return entry;
  }

  /** Empties the queue. */
  clear(): void {
    const had = this.#length;
    this.#items = new Array(8);
    this.#head = 0;
    this.#length = 0;
    this.#bytes = 0;
    if (had !== 0) this.#owner?.();
  }

  /** The entries, front first. */
  *[Symbol.iterator](): IterableIterator<FifoEntry> {
    for (let i = 0; i < this.#length; i++) yield this.at(i)!;
  }

  #grow(): void {
    const old = this.#items;
    const next: (FifoEntry | undefined)[] = new Array(old.length * 2);
    for (let i = 0; i < this.#length; i++) next[i] = old[(this.#head + i) & (old.length - 1)];
    this.#items = next;
    this.#head = 0;
  }
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
 * ```ts ignore
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
  #fifo: ProducerFifo = this.#adopt(new ProducerFifo());
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
  // The block small pushes are packed into, and how much of it is used.
  #block: Uint8Array | null = null;
  #blockUsed = 0;
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
    if (fifo === this.#fifo) return;
    if (!(fifo instanceof ProducerFifo)) {
      throw new TypeError(
        `producerFifo must be a ProducerFifo, not ${fifo === null ? "null" : typeof fifo}`,
      );
    }
    const old = this.#fifo;
    this.#fifo = this.#adopt(fifo);
    old[kAdopt](null);
    this.#block = null;
    notifyInterest(this);
  }

  #adopt(fifo: ProducerFifo): ProducerFifo {
    fifo[kAdopt](() => notifyInterest(this));
    return fifo;
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
      this.terminator = asBytes(term, "terminator", true);
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

  /** The bytes queued for sending (producers count once they have produced). */
  override get queuedBytes(): number {
    return this.producerFifo.bytes;
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
   * Queues `data` (a string is sent as UTF-8) and starts sending. Data
   * larger than `acOutBufferSize` is queued as views of that size. Data
   * over 4 KiB is queued by reference, as the reference does, so do not
   * change the array until it is sent; smaller pushes are copied.
   */
  push(data: Uint8Array | string): void {
    if (typeof data === "string" && data.length <= PACK_MAX / 3) {
      // Encoded straight into the packing block: TextEncoder.encode would
      // cost an allocation and several times the copy.
      if (data.length === 0) return;
      this.#packString(data);
      this.initiateSend();
      return;
    }
    const bytes = asBytes(data, "data", true);
    const n = bytes.length;
    if (n === 0) return;
    const sabs = this.acOutBufferSize;
    if (n <= PACK_MAX) {
      const at = this.#reserve(n);
      this.#block!.set(bytes, at);
      this.#commit(at, n);
    } else if (n > sabs) {
      if (!Number.isSafeInteger(sabs) || sabs <= 0) {
        throw new RangeError(`acOutBufferSize must be a positive integer, not ${sabs}`);
      }
      this.#block = null;
      for (let i = 0; i < n; i += sabs) this.producerFifo.push(bytes.subarray(i, i + sabs));
    } else {
      this.#block = null;
      this.producerFifo.push(bytes);
    }
    this.initiateSend();
  }

  /** UTF-8-encodes a short string (at most 3 bytes per UTF-16 unit) into the packing block. */
  #packString(text: string): void {
    const len = text.length;
    const at = this.#reserve(len * 3);
    const block = this.#block!;
    let i = 0;
    if (len <= 256) {
      // Short ASCII text: a plain loop beats encodeInto's call overhead.
      for (; i < len; i++) {
        const c = text.charCodeAt(i);
        if (c > 0x7f) break;
        block[at + i] = c;
      }
    }
    const n = i === len ? len : encoder.encodeInto(text, block.subarray(at)).written;
    this.#commit(at, n);
  }

  /** Where `max` bytes can be written in the packing block (a new block if need be). */
  #reserve(max: number): number {
    if (this.#block === null || this.#blockUsed + max > this.#block.length) {
      this.#block = new Uint8Array(PACK_BLOCK);
      this.#blockUsed = 0;
    }
    return this.#blockUsed;
  }

  /** Queues the `n` bytes written at `at` of the packing block, growing the last entry when it ends there. */
  #commit(at: number, n: number): void {
    const block = this.#block!;
    const fifo = this.producerFifo;
    this.#blockUsed = at + n;
    const last = fifo.length > 0 ? fifo.at(-1) : undefined;
    if (
      last instanceof Uint8Array && last.buffer === block.buffer &&
      last.byteOffset + last.length === block.byteOffset + at
    ) {
      fifo.set(-1, block.subarray(last.byteOffset - block.byteOffset, at + n));
    } else {
      fifo.push(block.subarray(at, at + n));
    }
  }

  /**
   * Queues a producer and starts sending. Bytes or a string are accepted
   * too and queued whole (the reference's "string producer").
   */
  pushWithProducer(producer: Producer | Uint8Array | string): void {
    let entry: FifoEntry;
    if (typeof producer === "string" || ArrayBuffer.isView(producer)) {
      entry = asBytes(producer, "producer", true);
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
    this.#block = null;
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
    this.#block = null;
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
        if (first instanceof FileProducer && kernelSendsFiles(this.socket)) {
          this.#sendFileStep(first, this.socket);
          return;
        }
        const more = first.more();
        const data = more === null || more === undefined ? EMPTY : asBytes(more, "more()", true);
        if (data.length > 0) fifo.unshift(data);
        else fifo.shift();
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

  /** A file at the front of the queue: one non-blocking `sendfile(2)` (see `FileProducer`). */
  #sendFileStep(file: FileProducer, sock: Socket): void {
    try {
      file.sendTo(sock);
    } catch (error) {
      if (error instanceof OSError && DISCONNECTED.has(error.errno)) {
        this.handleClose();
        return;
      }
      if (error instanceof OSError) {
        this.handleError(error);
        return;
      }
      throw error;
    }
    if (file.done) this.producerFifo.shift();
  }

  /** Closes the channel; a queued `FileProducer` closes the file it opened. */
  override close(): void {
    const fifo = this.producerFifo;
    for (let i = 0; i < fifo.length; i++) {
      const entry = fifo.at(i);
      if (entry instanceof FileProducer) entry.close();
    }
    super.close();
  }

  /** Emergencies only: drops unprocessed input, `incoming` and the output queue. */
  discardBuffers(): void {
    this.#head = EMPTY;
    this.#clearInput();
    this.incoming = [];
    this.producerFifo.clear();
    this.#block = null;
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
trackPredicates(AsyncChat.prototype.readable, AsyncChat.prototype.writable);
