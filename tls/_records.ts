/**
 * `RecordPath`: how a channel's TLS session moves bytes, once a loop drives
 * it (`TlsTransport.attach`). What fast TLS servers do, and a session used
 * on its own does not:
 *
 * - **Read ahead, then decrypt.** OpenSSL reads the fd with read-ahead on:
 *   one `recv` fills its buffer with as many records as have arrived
 *   (without it: one `recv` for each 5-byte header and one for each body).
 *   `read` decrypts records until the caller's buffer is full or OpenSSL
 *   holds no more; a streaming connection reads on until the kernel is
 *   empty. Whole records read ahead are invisible to the poller, so
 *   `readMore` tells the channel to read again without waiting (checked
 *   with `SSL_peek`: part of a record is the poller's to report).
 * - **Gather records, one `send` per pass.** Records go into the thread's
 *   shared memory BIO (`_gather.ts`) and leave when the pass ends, when
 *   another session needs the buffer, or when a batch reaches `GATHER_MAX`:
 *   one `send` for all of them, from OpenSSL's memory. What the kernel
 *   refuses stays in the shared buffer until another session needs it
 *   (then it is copied out), counts as queued output (backpressure), and
 *   goes out on the next write event before anything else.
 * - **Size records to the traffic.** A connection starts, and starts again
 *   after a second of quiet, with records of about one TCP segment
 *   (`SMALL_RECORD`, nginx's dynamic record size), which the peer can
 *   decrypt as soon as one segment arrives; once it has sent `BIG_AFTER`
 *   bytes in a row it streams 16 KiB records (fewer records, less CPU).
 *   The size is chosen by what each `SSL_write` is given (one record per
 *   call while small), never by `SSL_set_max_send_fragment`: OpenSSL 3.0
 *   sizes its write buffer by that setting when it allocates it, keeps the
 *   buffer across partial writes, and fails with "internal error" when a
 *   raised setting meets a buffer sized for small records.
 *
 * @module
 */

import { attempt } from "../ffi/_syscall.ts";
import { errno as E, OSError } from "../ffi/errno.ts";
import { openssl, SSLC } from "../ffi/openssl.ts";
import { C } from "../ffi/platform.ts";
import type { Socket } from "../ffi/socket.ts";
import { libc } from "../ffi/symbols.ts";
import { type HeldOutput, passClock, READ, type TransportHooks, WRITE } from "../ffi/transport.ts";
import {
  claim,
  discard,
  disown,
  type GatherOwner,
  owns,
  pendingBytes,
  sendGathered,
  sharedWriteBio,
  takeGathered,
} from "./_gather.ts";

/** A batch of records this large (bytes on the wire) is sent at once, not at the end of the pass. */
export const GATHER_MAX = 4 * (16384 + 256);
/** Records of about one TCP segment: 1369 B of data + 22 B of TLS + IPv6/TCP headers fit 1500 B. */
export const SMALL_RECORD = 1369;
/** The largest record (TLS's limit). */
export const BIG_RECORD = 16384;
/** Bytes sent without a quiet second before records grow to `BIG_RECORD`. */
export const BIG_AFTER = 64 * 1024;
/** Quiet time (ms) after which records start small again. */
export const IDLE_MS = 1000;
/**
 * OpenSSL's read buffer once a connection streams: room for four full
 * records, so one `recv` fills a 64 KiB read. Idle and trickling
 * connections keep OpenSSL's default (one record), which also bounds what
 * a peer that sends part of a record and stops can make us hold.
 */
export const BIG_READ_BUFFER = 4 * (16384 + 256) + 512;
/** A read of less than this (bytes) ends a connection's streaming (see `RecordPath.read`). */
export const TRICKLE = 2048;
/** Past this much held output (the peer is not reading) the session stops reading too. */
export const HELD_READ_LIMIT = 2 * GATHER_MAX;
/** The longest a closed channel's held records keep its fd open (see `TlsTransport.close`). */
export const LINGER_SECONDS = 5;
/** A lingering close tries to send again after this long (ms), then twice as long each time... */
export const LINGER_FIRST_RETRY_MS = 10;
/** ...up to this (ms). */
export const LINGER_MAX_RETRY_MS = 320;

/** Counters of what the record path did, for tests (a few increments, off the hot path). */
export const recordStats = {
  /** Times the kernel refused gathered records and they were held. */
  held: 0,
  /** Closes that kept the fd open to send held records. */
  lingered: 0,
  /** Reads made because `readMore` said records were held, that found none (must stay 0). */
  readForNothing: 0,
};

const EAGAIN = E.EAGAIN;
/** Where `SSL_peek` puts the byte it looks at. */
const peekByte = new Uint8Array(1);
const SEND_FLAGS = C.MSG_NOSIGNAL;

/** What the path needs of its session (which the loop flushes through `HeldOutput`). */
export interface Session extends HeldOutput {
  /** Turns a failed call's result into READ/WRITE (would block), 0 (end) or a throw. */
  settle(r: number, call: string): number;
  /** Whether the handshake is done. */
  readonly handshakeDone: boolean;
  /** A read finished the handshake (the program drives it). */
  noteHandshake(): void;
}

/** One session's loop-side byte path (see the module's comment). */
export class RecordPath implements GatherOwner {
  readonly #session: Session;
  readonly #ssl: Deno.PointerObject;
  readonly #sock: Socket;
  readonly #hooks: TransportHooks;
  /**
   * Records the kernel refused and another session's claim moved out of the
   * shared buffer, sent from `#heldAt` on; null when none.
   */
  #held: Uint8Array | null = null;
  #heldAt = 0;
  /** Some of this session's records in the shared buffer were refused by the kernel. */
  #stuck = false;
  /** Whether `#held` or `#stuck` was true when the loop was last told. */
  #holding = false;
  /** This session's bytes in the shared buffer, as last counted. */
  #gathered = 0;
  #flushQueued = false;
  /** A send failed (the peer is gone): the next write reports it. */
  #writeError: OSError | null = null;
  /** What stopped a read after it had data: reported by the next read. */
  #readEnd: Error | 0 | null = null;
  /** 1 when OpenSSL may hold records the poller cannot report (see `TlsTransport.buffered`). */
  readMore = 0;
  #lastWrite = -Infinity;
  #streamed = 0;
  #bigRecords = true;
  /** The peer streams: reads go on until the kernel is empty (see `#sizeReads`). */
  #streaming = false;
  /** The channel closed; held records still go out (see `startLinger`). */
  lingering = false;
  #lingerUntil = 0;
  /** When a lingering close next tries to send, and how long it waits after that. */
  #lingerNext = 0;
  #lingerDelay = 0;
  #released = false;

  /** Moves `ssl` to the loop's path: read-ahead on, records into the shared buffer. */
  constructor(session: Session, ssl: Deno.PointerObject, sock: Socket, hooks: TransportHooks) {
    this.#session = session;
    this.#ssl = ssl;
    this.#sock = sock;
    this.#hooks = hooks;
    const lib = openssl().ssl;
    lib.SSL_set0_wbio(ssl, sharedWriteBio());
    lib.SSL_set_read_ahead(ssl, 1);
    // A memory BIO takes every record: one SSL_write writes all it is given
    // (not one record per call, as partial writes would).
    lib.SSL_ctrl(ssl, SSLC.SSL_CTRL_CLEAR_MODE, BigInt(SSLC.SSL_MODE_ENABLE_PARTIAL_WRITE), null);
  }

  /** Output taken from the channel and not yet in the kernel. */
  get queued(): number {
    const copied = this.#held === null ? 0 : this.#held.length - this.#heldAt;
    return this.#gathered > 0 && owns(this) ? copied + this.#gathered : copied;
  }

  /** Bytes the kernel refused, still to send. */
  get held(): number {
    const copied = this.#held === null ? 0 : this.#held.length - this.#heldAt;
    return this.#stuck ? copied + this.#gathered : copied;
  }

  /** Makes this session the shared buffer's owner (before an `SSL_*` call that may write). */
  claim(): void {
    claim(this);
  }

  // ---- reading ----

  /** Decrypts into `buffer` up to `len` bytes: the count, 0 at the end, -1 would block. */
  read(ssl: Deno.PointerObject, buffer: Uint8Array, len: number): number {
    const end = this.#readEnd;
    if (end !== null) {
      this.#readEnd = null;
      this.readMore = 0;
      if (end === 0) return 0;
      throw end;
    }
    if (this.held > HELD_READ_LIMIT) return -1;
    const promised = this.readMore;
    const lib = openssl().ssl;
    const crypto = openssl().crypto;
    if (crypto.ERR_peek_error() !== 0) crypto.ERR_clear_error();
    claim(this); // a read may write: an alert, the answer to a key update
    let got = 0;
    let result: number;
    try {
      for (;;) {
        const r = lib.SSL_read(ssl, got === 0 ? buffer : buffer.subarray(got), len - got);
        if (r > 0) {
          got += r;
          // A full buffer: whole records may still be held.
          if (got === len) {
            this.readMore = this.#holdsRecords(ssl);
            break;
          }
          // A streaming connection reads on until the kernel is empty (one
          // recv that would block, where a return to the poller costs more);
          // any other stops when OpenSSL holds nothing more: the next record
          // is in the kernel, where the poller sees it.
          if (!this.#streaming && lib.SSL_has_pending(ssl) === 0) {
            this.readMore = 0;
            break;
          }
          continue;
        }
        if (got === 0) {
          this.readMore = 0;
          const want = this.#session.settle(r, "SSL_read");
          got = want === 0 ? 0 : -1;
          break;
        }
        // What stopped this read belongs to the next one (the data goes first).
        try {
          if (this.#session.settle(r, "SSL_read") === 0) this.#readEnd = 0;
        } catch (error) {
          this.#readEnd = error as Error;
        }
        this.readMore = this.#readEnd !== null ? 1 : 0;
        break;
      }
      result = got;
    } finally {
      this.#afterCall();
    }
    if (!this.#session.handshakeDone) this.#session.noteHandshake();
    this.#sizeReads(result);
    if (result === -1 && promised) recordStats.readForNothing++;
    return result;
  }

  /**
   * A read of two records or more makes the connection streaming: it reads
   * until the kernel is empty, with a read buffer for four records; a read
   * of less than `TRICKLE` makes it a trickle again (one record's buffer).
   */
  #sizeReads(got: number): void {
    const streaming = got >= 2 * BIG_RECORD
      ? true
      : got >= 0 && got < TRICKLE
      ? false
      : this.#streaming;
    if (streaming === this.#streaming) return;
    this.#streaming = streaming;
    // Takes effect when OpenSSL next allocates its buffer (released whenever empty).
    const len = streaming ? BigInt(BIG_READ_BUFFER) : 0n;
    openssl().ssl.SSL_set_default_read_buffer_len(this.#ssl, len);
  }

  /** The handshake finished: application data may have come with its last flight. */
  handshakeDone(): void {
    this.readMore = this.#holdsRecords(this.#ssl);
    this.#afterCall();
  }

  /**
   * 1 when a read would return something without the kernel: decrypted
   * bytes, a whole record read ahead, or the end of the session (stashed for
   * the next read). 0 when OpenSSL holds nothing or only part of a record,
   * whose rest the poller reports: a channel is never called to read nothing.
   */
  #holdsRecords(ssl: Deno.PointerObject): number {
    const lib = openssl().ssl;
    if (lib.SSL_pending(ssl) > 0) return 1;
    if (lib.SSL_has_pending(ssl) === 0) return 0;
    // Encrypted bytes: SSL_peek decrypts a whole record (which the next
    // read then takes), or asks the kernel for the rest of one.
    const r = lib.SSL_peek(ssl, peekByte, 1);
    if (r > 0) return 1;
    try {
      if (this.#session.settle(r, "SSL_read") !== 0) return 0; // would block: the rest is coming
      this.#readEnd = 0;
    } catch (error) {
      this.#readEnd = error as Error;
    }
    return 1;
  }

  // ---- writing ----

  /** Encrypts `data` (its first `n` bytes) into records: the bytes taken, -1 would block. */
  write(ssl: Deno.PointerObject, data: Uint8Array, n: number): number {
    if (this.#writeError !== null) throw this.#writeError;
    if (this.#holding && this.sendHeld() > 0) return -1;
    if (this.#writeError !== null) throw this.#writeError;
    const lib = openssl().ssl;
    const crypto = openssl().crypto;
    if (crypto.ERR_peek_error() !== 0) crypto.ERR_clear_error();
    claim(this);
    this.#noteQuiet();
    let taken = 0;
    try {
      while (taken < n) {
        const big = this.#bigRecords;
        let room = GATHER_MAX - this.#gathered;
        if (room < (big ? BIG_RECORD : SMALL_RECORD)) {
          // A full batch leaves now; past what the kernel takes, the rest waits.
          if (this.flushNow() > 0 || this.#writeError !== null) break;
          room = GATHER_MAX;
        }
        // Small records: one per call. Big ones: as many as the batch has room for.
        const chunk = Math.min(n - taken, big ? room : SMALL_RECORD);
        const r = lib.SSL_write(ssl, taken === 0 ? data : data.subarray(taken), chunk);
        if (r <= 0) {
          // A memory BIO never blocks: this is the session failing (or the peer's close_notify).
          if (this.#session.settle(r, "SSL_write") === 0) {
            throw new OSError(E.EPIPE, { syscall: "SSL_write" });
          }
          break;
        }
        taken += r;
        this.#gathered = pendingBytes();
        if (!big && (this.#streamed += r) >= BIG_AFTER) this.#bigRecords = true;
      }
    } finally {
      this.#afterCall(taken > 0 ? this.#gathered : -1);
    }
    if (taken > 0) return taken;
    if (this.#writeError !== null) throw this.#writeError;
    return -1;
  }

  /** After a quiet second records start small again (by the loop's clock: no clock read per write). */
  #noteQuiet(): void {
    const now = passClock();
    if (now - this.#lastWrite > IDLE_MS) {
      this.#streamed = 0;
      this.#bigRecords = false;
    }
    this.#lastWrite = now;
  }

  /**
   * After a call that may have written: the records leave at the end of the
   * pass. `known`: the gathered count, when the caller just read it.
   */
  #afterCall(known = -1): void {
    const n = known >= 0 ? known : pendingBytes();
    this.#gathered = n;
    if (n > 0 && !this.#flushQueued) {
      this.#flushQueued = true;
      this.#hooks.flushLater(this.#session);
    }
  }

  /** The end of a pass: the records gathered go out. */
  endOfPass(): number {
    this.#flushQueued = false;
    return this.flushNow();
  }

  /**
   * Sends what this session holds and has gathered, now; returns the bytes
   * still held. Records the kernel refuses stay where they are: in the
   * shared buffer (no copy) until another session needs it (`vacate`).
   */
  flushNow(): number {
    if (this.#released) return 0;
    if (this.#held !== null) this.#sendCopy();
    if (!owns(this)) {
      this.#stuck = false; // whatever was ours left with `vacate`
    } else if (this.#writeError !== null || this.#sock.fileno() < 0) {
      discard();
      this.#gathered = 0;
      this.#stuck = false;
    } else if (this.#held !== null) {
      // Behind what was copied out before, in order.
      if (pendingBytes() > 0) this.#copyOut();
    } else {
      const left = sendGathered(this.#sock.fileno()); // 0 at once when nothing is gathered
      if (left < 0) {
        discard();
        this.#fail(-left);
      } else {
        this.#gathered = left;
        if (left > 0 && !this.#stuck) recordStats.held++;
        this.#stuck = left > 0;
      }
    }
    this.#noteHolding();
    return this.held;
  }

  /** Another session needs the shared buffer: ours go out, and what the kernel refuses is copied out. */
  vacate(): void {
    this.flushNow();
    if (this.#stuck) {
      this.#copyOut();
      this.#noteHolding();
    }
  }

  /** Moves this session's records from the shared buffer into `#held`. */
  #copyOut(): void {
    const bytes = takeGathered();
    this.#gathered = 0;
    this.#stuck = false;
    const held = this.#held;
    if (held === null) {
      this.#held = bytes;
      this.#heldAt = 0;
      return;
    }
    const rest = held.subarray(this.#heldAt);
    const joined = new Uint8Array(rest.length + bytes.length);
    joined.set(rest);
    joined.set(bytes, rest.length);
    this.#held = joined;
    this.#heldAt = 0;
  }

  /** Sends from `#held`. */
  #sendCopy(): void {
    const held = this.#held!;
    const fd = this.#sock.fileno();
    const at = this.#heldAt;
    const lib = libc();
    const len = BigInt(held.length - at);
    const view = at === 0 ? held : held.subarray(at);
    const r = fd < 0 ? -E.EBADF : attempt(() => lib.send(fd, view, len, SEND_FLAGS), EAGAIN);
    if (r === -EAGAIN) return;
    if (r < 0) {
      this.#fail(-r);
      return;
    }
    this.#heldAt = at + r;
    if (this.#heldAt === held.length) {
      this.#held = null;
      this.#heldAt = 0;
    }
  }

  /** Sends held records (a write event): the bytes still held afterwards. */
  sendHeld(): number {
    return this.#holding ? this.flushNow() : 0;
  }

  /** Tells the loop when holding starts or ends: WRITE interest, and queued output for backpressure. */
  #noteHolding(): void {
    const holding = this.#held !== null || this.#stuck;
    if (holding === this.#holding) return;
    this.#holding = holding;
    this.#hooks.interestChanged();
  }

  /** A send failed: what is held is dropped, and the next write reports the error. */
  #fail(errno: number): void {
    this.#writeError = new OSError(errno, { syscall: "send" });
    this.#held = null;
    this.#heldAt = 0;
    this.#stuck = false;
    this.#gathered = 0;
    this.#noteHolding();
  }

  /** What to watch besides the channel's wish: WRITE while records are held; no READ past the limit. */
  wants(want: number): number {
    const held = this.held;
    if (held === 0) return want;
    return held > HELD_READ_LIMIT ? (want | WRITE) & ~READ : want | WRITE;
  }

  // ---- closing ----

  /**
   * The channel closed: sends what it can now. Records the kernel still
   * refuses keep the session open while the loop runs (it calls `flush`
   * after each pass) for at most `LINGER_SECONDS`; returns true then.
   */
  startLinger(): boolean {
    if (this.lingering) return true; // closed twice: the first close's linger goes on
    if (this.flushNow() === 0 || this.#writeError !== null) return false;
    this.lingering = true;
    recordStats.lingered++;
    const now = performance.now();
    this.#lingerUntil = now + LINGER_SECONDS * 1000;
    this.#lingerDelay = LINGER_FIRST_RETRY_MS;
    this.#lingerNext = now + this.#lingerDelay;
    this.#hooks.flushLater(this.#session);
    return true;
  }

  /**
   * A lingering close's turn (after a pass): sends again once its wait is
   * over, waiting twice as long after each refusal (up to
   * `LINGER_MAX_RETRY_MS`), so that many closed channels whose peers do not
   * read cost few system calls. True when it is over: all sent, the peer
   * gone, or out of time.
   */
  lingerStep(): boolean {
    const now = performance.now();
    if (now >= this.#lingerNext) {
      if (this.flushNow() === 0) return true;
      this.#lingerDelay = Math.min(this.#lingerDelay * 2, LINGER_MAX_RETRY_MS);
      this.#lingerNext = now + this.#lingerDelay;
    }
    return this.#writeError !== null || now > this.#lingerUntil;
  }

  /** The session is freed: it gives up the shared buffer (what it left there is dropped). */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    this.#held = null;
    this.#stuck = false;
    disown(this);
  }
}
