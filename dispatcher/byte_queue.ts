/**
 * A FIFO of bytes kept as a queue of chunks: appending never copies what is
 * already queued, and consuming moves an offset, so pushing and draining N
 * bytes costs O(N) however they are split. Small pushes are packed into a
 * shared tail block so that many tiny writes still leave in few syscalls.
 *
 * @module
 */

import { kAdopt } from "./_interest.ts";

const BLOCK = 16 * 1024;

/** Bytes waiting to be sent. */
export class ByteQueue {
  #owner: (() => void) | null = null;
  #chunks: Uint8Array[] = [];
  #head = 0; // index of the first live chunk
  #offset = 0; // bytes of chunks[head] already consumed
  #length = 0;
  #tail: Uint8Array | null = null; // packing block, the last chunk when set
  #tailUsed = 0;

  /**
   * Makes `notify` the owner, told when the queue turns non-empty or empty
   * (its channel's `writable()` depends on that); `null` releases the
   * queue. A queue serves one channel at a time.
   * @ignore
   */
  [kAdopt](notify: (() => void) | null): void {
    if (notify !== null && this.#owner !== null) {
      throw new TypeError("this ByteQueue already belongs to another channel");
    }
    this.#owner = notify;
  }

  /** The number of queued bytes. */
  get length(): number {
    return this.#length;
  }

  /** Appends a copy of `data` (the caller may reuse its buffer afterwards). */
  push(data: Uint8Array): void {
    const n = data.length;
    if (n === 0) return;
    if (this.#length === 0) this.#owner?.();
    this.#length += n;
    if (n < BLOCK / 4) {
      if (this.#tail === null || this.#tailUsed + n > this.#tail.length) {
        this.#tail = new Uint8Array(BLOCK);
        this.#tailUsed = 0;
        this.#chunks.push(this.#tail.subarray(0, 0));
      }
      this.#tail.set(data, this.#tailUsed);
      this.#tailUsed += n;
      this.#chunks[this.#chunks.length - 1] = this.#tail.subarray(0, this.#tailUsed);
      return;
    }
    this.#tail = null;
    this.#chunks.push(data.slice());
  }

  /** Appends `data` without copying it: the caller promises not to change it. */
  pushOwned(data: Uint8Array): void {
    if (data.length === 0) return;
    if (this.#length === 0) this.#owner?.();
    this.#length += data.length;
    this.#tail = null;
    this.#chunks.push(data);
  }

  /** A view of the first queued bytes (at most `max`, within one chunk). */
  front(max = Infinity): Uint8Array {
    if (this.#length === 0) return new Uint8Array(0);
    const chunk = this.#chunks[this.#head];
    const end = Math.min(chunk.length, this.#offset + max);
    return chunk.subarray(this.#offset, end);
  }

  /** Drops the first `n` queued bytes. */
  consume(n: number): void {
    if (n > this.#length) n = this.#length;
    if (n <= 0) return;
    this.#length -= n;
    while (n > 0) {
      const chunk = this.#chunks[this.#head];
      const left = chunk.length - this.#offset;
      if (n < left) {
        this.#offset += n;
        return;
      }
      n -= left;
      this.#dropHead();
    }
    if (this.#length === 0) {
      this.#reset();
      this.#owner?.();
    }
  }

  #dropHead(): void {
    if (this.#chunks[this.#head].buffer === this.#tail?.buffer) this.#tail = null;
    this.#head++;
    this.#offset = 0;
    // Compact now and then, so the array does not grow without bound.
    if (this.#head > 1024 && this.#head * 2 > this.#chunks.length) {
      this.#chunks = this.#chunks.slice(this.#head);
      this.#head = 0;
    }
  }

  /** Empties the queue. */
  clear(): void {
    const had = this.#length;
    this.#reset();
    if (had !== 0) this.#owner?.();
  }

  #reset(): void {
    this.#chunks = [];
    this.#head = 0;
    this.#offset = 0;
    this.#length = 0;
    this.#tail = null;
  }

  /** A copy of everything queued, as one array. */
  toBytes(): Uint8Array {
    const out = new Uint8Array(this.#length);
    let o = 0;
    for (let i = this.#head; i < this.#chunks.length; i++) {
      const c = i === this.#head ? this.#chunks[i].subarray(this.#offset) : this.#chunks[i];
      out.set(c, o);
      o += c.length;
    }
    return out;
  }
}
