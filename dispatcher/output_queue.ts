/**
 * The one output queue of the library's channels: {@linkcode ProducerFifo}
 * (bytes, producers and files, in order), {@linkcode ByteQueue} (the same
 * queue seen as a stream of bytes, Python's `out_buffer`), and the step
 * that moves a producer at the front of a queue along.
 *
 * @module
 */

import { asBytes } from "../ffi/bytes.ts";
import type { Transport } from "../ffi/transport.ts";
import { type ChannelCore, type kCore, notifyInterest } from "./_loop_core.ts";
import { FileProducer, type Producer } from "./producers.ts";

const encoder = new TextEncoder();
const EMPTY = new Uint8Array(0);

/** Small pushes are packed into blocks of this size. */
const PACK_BLOCK = 16 * 1024;
/** Pushes up to this size are packed; larger ones are queued whole. */
export const PACK_MAX = PACK_BLOCK / 4;

/** The method by which a channel adopts an output queue, so its changes notify the channel. */
export const kAdopt: unique symbol = Symbol("asyncore.adopt");

/** One entry of the output queue: data, a producer, or null ("close here"). */
export type FifoEntry = Uint8Array | Producer | null;

function sizeOf(entry: FifoEntry | undefined): number {
  return entry instanceof Uint8Array ? entry.length : 0;
}

/**
 * The output queue of a channel: byte arrays, producers, and null for
 * "close here" (asynchat's `producer_fifo` deque, which `AsyncChat` keeps
 * as `producerFifo` and `DispatcherWithSend` behind its `outBuffer`). A ring
 * buffer, O(1) at both ends; it counts the bytes of its byte arrays.
 */
export class ProducerFifo {
  #items: (FifoEntry | undefined)[] = new Array(8);
  #head = 0;
  #length = 0;
  #bytes = 0;
  #owner: (() => void) | null = null;
  // The block small pushes are packed into, and how much of it is used.
  #block: Uint8Array | null = null;
  #blockUsed = 0;

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
    this.#block = null;
    this.#items = new Array(8);
    this.#head = 0;
    this.#length = 0;
    this.#bytes = 0;
    if (had !== 0) this.#owner?.();
  }

  // ---- packing: small pushes are copied into a shared block, so that many
  // short writes leave in few system calls ----

  /**
   * Appends a copy of `data`: a short one into the packing block (growing
   * the last entry when it ends there), a long one as a copy of its own.
   * The caller may reuse its buffer afterwards.
   */
  pushCopy(data: Uint8Array): void {
    const n = data.length;
    if (n === 0) return;
    if (n > PACK_MAX) {
      this.#block = null;
      this.push(data.slice());
      return;
    }
    const at = this.#reserve(n);
    this.#block!.set(data, at);
    this.#commit(at, n);
  }

  /** Appends a short string (at most `PACK_MAX / 3` UTF-16 units) encoded as UTF-8 into the packing block. */
  pushText(text: string): void {
    const len = text.length;
    if (len === 0) return;
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
    this.#blockUsed = at + n;
    const last = this.#length > 0 ? this.at(-1) : undefined;
    if (
      last instanceof Uint8Array && last.buffer === block.buffer &&
      last.byteOffset + last.length === block.byteOffset + at
    ) {
      this.set(-1, block.subarray(last.byteOffset - block.byteOffset, at + n));
    } else {
      this.push(block.subarray(at, at + n));
    }
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
 * Bytes waiting to be sent, as Python's `dispatcher_with_send.out_buffer`:
 * a {@linkcode ProducerFifo} seen as a stream of bytes (`length` counts
 * bytes). Appending never copies what is already queued, and consuming
 * moves a view, so pushing and draining N bytes costs O(N) however they are
 * split; small pushes are packed so that many tiny writes still leave in
 * few system calls. Files queued by `sendFile` wait in the same queue.
 */
export class ByteQueue {
  readonly #q = new ProducerFifo();

  /**
   * Makes `notify` the owner, told when the queue turns non-empty or empty
   * (its channel's `writable()` depends on that); `null` releases the
   * queue. A queue serves one channel at a time.
   * @ignore
   */
  [kAdopt](notify: (() => void) | null): void {
    this.#q[kAdopt](notify);
  }

  /**
   * The entries behind the byte view (files queued by `sendFile` among them).
   * @ignore
   */
  get fifo(): ProducerFifo {
    return this.#q;
  }

  /** The number of queued bytes (files not counted). */
  get length(): number {
    return this.#q.bytes;
  }

  /** Appends a copy of `data` (the caller may reuse its buffer afterwards). */
  push(data: Uint8Array): void {
    this.#q.pushCopy(data);
  }

  /** Appends `data` without copying it: the caller promises not to change it. */
  pushOwned(data: Uint8Array): void {
    if (data.length > 0) this.#q.push(data);
  }

  /** A view of the first queued bytes (at most `max`, within one chunk); empty when a file is first. */
  front(max = Infinity): Uint8Array {
    const head = this.#q.at(0);
    if (!(head instanceof Uint8Array)) return EMPTY;
    return head.length > max ? head.subarray(0, max) : head;
  }

  /** Drops the first `n` queued bytes (up to the first file). */
  consume(n: number): void {
    const q = this.#q;
    while (n > 0) {
      const head = q.at(0);
      if (!(head instanceof Uint8Array)) return;
      if (n < head.length) {
        q.set(0, head.subarray(n));
        return;
      }
      n -= head.length;
      q.shift();
    }
  }

  /** Empties the queue. */
  clear(): void {
    this.#q.clear();
  }

  /** A copy of the queued bytes, as one array. */
  toBytes(): Uint8Array {
    const out = new Uint8Array(this.length);
    let o = 0;
    for (const e of this.#q) {
      if (!(e instanceof Uint8Array)) continue;
      out.set(e, o);
      o += e.length;
    }
    return out;
  }
}

/**
 * The front of `fifo` is the producer `head`: a file goes by `sendfile(2)`
 * when `transport` lets the kernel send it (returns true: this send step is
 * done); anything else is asked for its next piece, which goes to the front
 * of the queue, or leaves the queue when it has no more (returns false: go
 * on with the new front).
 */
export function advanceProducer(
  fifo: ProducerFifo,
  head: Producer,
  transport: Transport | null,
): boolean {
  if (head instanceof FileProducer && transport !== null && transport.canSendfile()) {
    head.sendTo(transport);
    if (head.done) fifo.shift();
    return true;
  }
  const more = head.more();
  const data = more === null || more === undefined ? EMPTY : asBytes(more, "more()", true);
  if (data.length > 0) fifo.unshift(data);
  else fifo.shift();
  return false;
}

/** A queue a channel can adopt. */
interface Adoptable {
  [kAdopt](notify: (() => void) | null): void;
}

/**
 * `ch`'s queue becomes `next` (a `Type`, not already another channel's) in
 * place of `old` (null: the channel's first queue), which is released; the
 * pollers hear of it, since `writable()` reads the queue. Python programs
 * assign a fresh queue (`self.out_buffer = b''`): that works under every
 * poller. Anything else is a `TypeError` naming `what`.
 */
export function adoptQueue<Q extends Adoptable>(
  ch: { readonly [kCore]: ChannelCore },
  old: Q | null,
  next: unknown,
  Type: new () => Q,
  what: string,
): Q {
  if (!(next instanceof Type)) {
    throw new TypeError(
      `${what} must be a ${Type.name} (e.g. new ${Type.name}()), not ${
        next === null ? "null" : typeof next
      }`,
    );
  }
  next[kAdopt](() => notifyInterest(ch));
  if (old !== null) {
    old[kAdopt](null);
    notifyInterest(ch);
  }
  return next;
}

/** Closes the files still queued in `fifo` (its channel closed). */
export function closeQueuedFiles(fifo: ProducerFifo): void {
  for (const e of fifo) if (e instanceof FileProducer) e.close();
}
