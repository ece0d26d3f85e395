/**
 * `DatagramDispatcher`: a `SOCK_DGRAM` channel that reads and writes in
 * batches, `recvmmsg(2)`/`sendmmsg(2)` over a preallocated
 * {@linkcode MessageBatch}, so one readable event moves up to `batchSize`
 * datagrams in one system call each way and allocates nothing per datagram.
 * Where the platform has no batch calls (Windows), or when asked
 * (`batchCalls: false`), the same methods make one `recvfrom`/`sendto` per
 * datagram: the program does not change.
 *
 * Datagrams the socket cannot take now (its send buffer is full) are copied
 * into a queue and sent when it is writable, in order; while more than
 * `highWaterMark` bytes wait there the channel stops reading, as a stream
 * channel does, so a burst is never dropped here (the kernel drops what its
 * receive buffer cannot hold, which is UDP's contract).
 *
 * @module
 */

import { asBytes, type BytesLike } from "../ffi/bytes.ts";
import { errno as E, OSError } from "../ffi/errno.ts";
import { hasBatchCalls, MessageBatch } from "../ffi/mmsg.ts";
import { C } from "../ffi/platform.ts";
import type { Socket } from "../ffi/socket.ts";
import { formatAddress } from "../ffi/address.ts";
import type { Address } from "../ffi/structs.ts";
import { Dispatcher, type SocketMap } from "./dispatcher.ts";
import { DEFAULT_HIGH_WATER_MARK, resumeIfDrained } from "./limits.ts";
import { trackPredicates } from "./_interest.ts";

/** What a {@linkcode DatagramDispatcher} is built with. */
export interface DatagramOptions {
  /** The most datagrams one read event takes (the receive batch's capacity), 1-1024. Default 64. */
  batchSize?: number;
  /**
   * Bytes of room per datagram (default 2048: an Ethernet frame fits). A
   * longer datagram arrives cut: `batch.truncated(i)`.
   */
  datagramSize?: number;
  /**
   * Use `recvmmsg`/`sendmmsg` (default: where the platform has them). False:
   * one `recvfrom`/`sendto` per datagram.
   */
  batchCalls?: boolean;
}

/** Errors that belong to the channel, not to one datagram: they go to `handleError`. */
const CHANNEL_ERRORS = new Set([E.EBADF, E.ENOTSOCK, E.EFAULT, E.ENOMEM, E.ENOBUFS]);

const SENT = 0, BLOCKED = 1, REFUSED = 2;

/** A datagram waiting for room in the socket's send buffer. */
interface Queued {
  data: Uint8Array;
  address: Address | null;
}

/**
 * A datagram channel (UDP, or `AF_UNIX` + `SOCK_DGRAM`) with batched reads
 * and writes. Override {@linkcode handleDatagrams} (the whole batch: the
 * fast path) or {@linkcode handleDatagram} (one datagram at a time), and
 * send with {@linkcode sendDatagrams} or {@linkcode sendDatagram}.
 *
 * @example A UDP echo: every batch received goes back to its senders in one call
 * ```ts no-run
 * // serves until stopped
 * import { DatagramDispatcher, loop, type MessageBatch } from "@asyncore/deno";
 *
 * class UdpEcho extends DatagramDispatcher {
 *   constructor(port: number) {
 *     super();
 *     this.createSocket(); // AF_INET, SOCK_DGRAM
 *     this.bind(["127.0.0.1", port]);
 *   }
 *   override handleDatagrams(batch: MessageBatch, count: number) {
 *     this.sendDatagrams(batch, count); // each back to its sender
 *   }
 * }
 * new UdpEcho(9999);
 * loop();
 * ```
 */
export class DatagramDispatcher extends Dispatcher {
  /** The receive batch, refilled by each read event (its contents are valid until the next). */
  readonly batch: MessageBatch;
  /** Whether this channel uses `recvmmsg`/`sendmmsg` (false: one call per datagram). */
  readonly batchCalls: boolean;
  /** Datagrams received so far. */
  datagramsReceived = 0;
  /** Datagrams handed to the kernel so far. */
  datagramsSent = 0;
  /** Datagrams received cut (longer than `datagramSize`). */
  datagramsTruncated = 0;
  /** Datagrams the kernel refused (each reported to `handleDatagramError`). */
  sendErrors = 0;
  /**
   * While more than this many bytes of datagrams wait to be sent, the loop
   * does not read this channel. Default 1 MiB.
   */
  override highWaterMark: number = DEFAULT_HIGH_WATER_MARK;
  readonly #queue: Queued[] = [];
  #head = 0;
  #queuedBytes = 0;

  /**
   * Wraps `sock` (a datagram socket, made non-blocking), or starts empty
   * (call `createSocket`, whose type defaults to `SOCK_DGRAM` here).
   *
   * @throws {RangeError} For a `batchSize` or `datagramSize` out of range.
   */
  constructor(sock: Socket | null = null, map?: SocketMap, options: DatagramOptions = {}) {
    super(sock, map);
    const { batchSize = 64, datagramSize = 2048, batchCalls = true } = options;
    this.batch = new MessageBatch(batchSize, datagramSize);
    this.batchCalls = Boolean(batchCalls) && hasBatchCalls();
  }

  /** Creates a non-blocking datagram socket (`AF_INET`, `SOCK_DGRAM` by default) and adds the channel. */
  override createSocket(family: number = C.AF_INET, type: number = C.SOCK_DGRAM): void {
    super.createSocket(family, type);
  }

  /** Writable only while datagrams wait in the queue. */
  override writable(): boolean {
    return this.#queue.length > this.#head;
  }

  /** Bytes of datagrams waiting for room in the socket's send buffer. */
  override get queuedBytes(): number {
    return this.#queuedBytes;
  }

  /** Datagrams waiting for room in the socket's send buffer. */
  get queuedDatagrams(): number {
    return this.#queue.length - this.#head;
  }

  /**
   * A read event: takes up to `batchSize` datagrams (one `recvmmsg`, or one
   * `recvfrom` each) into {@linkcode batch} and hands them to
   * {@linkcode handleDatagrams}. An error the kernel reports for the socket
   * (an ICMP port unreachable on a connected socket: `ECONNREFUSED`) goes to
   * {@linkcode handleDatagramError}.
   */
  override handleRead(): void {
    // select() reports a connected socket's pending error as readable, and the receive
    // that reads it is repeated by the errno policy, which loses it: look first.
    if (this.connected && this.#reportPendingError()) return;
    const batch = this.batch;
    let n: number;
    try {
      n = this.#receive(batch);
    } catch (error) {
      if (!(error instanceof OSError) || CHANNEL_ERRORS.has(error.errno)) throw error;
      this.handleDatagramError(error, null);
      return;
    }
    if (n <= 0) return;
    this._ioSeen = true;
    this.datagramsReceived += n;
    for (let i = 0; i < n; i++) if (batch.truncated(i)) this.datagramsTruncated++;
    this.handleDatagrams(batch, n);
  }

  /** Fills `batch` with what is queued: the count (0 when nothing was). */
  #receive(batch: MessageBatch): number {
    const sock = this.sock;
    if (this.batchCalls) return Math.max(0, sock.tryRecvmmsgInto(batch, batch.capacity));
    const fd = sock.fileno();
    let n = 0;
    while (n < batch.capacity) {
      // Each received datagram is kept: an error after the first waits for the next event.
      let r: number;
      try {
        r = batch._recvOne(fd, n, 0, E.EAGAIN);
      } catch (error) {
        if (n > 0) break;
        throw error;
      }
      if (r < 0) break;
      n++;
    }
    return n;
  }

  /**
   * The datagrams of one read event: `batch.data(i)` from
   * `batch.address(i)` for `i < count`. The batch is refilled by the next
   * read event: keep a copy (`slice()`) of what must outlive this call. The
   * default hands each to {@linkcode handleDatagram}; override this for
   * speed (`sendDatagrams(batch, count)` echoes them all in one call).
   */
  handleDatagrams(batch: MessageBatch, count: number): void {
    for (let i = 0; i < count; i++) {
      this.handleDatagram(batch.data(i), batch.address(i));
      if (this.fileno() === null) return;
    }
  }

  /**
   * One datagram and its sender (null on a connected socket). `data` views
   * the receive batch: copy it to keep it. The default logs a warning.
   */
  handleDatagram(_data: Uint8Array, _address: Address | null): void {
    this.logInfo("unhandled datagram", "warning");
  }

  /**
   * The kernel refused a datagram (`EMSGSIZE`, `EHOSTUNREACH`,
   * `ENETUNREACH`, `EACCES` for a broadcast, `ECONNREFUSED` reported after
   * an ICMP port unreachable, ...): `address` is its destination, or null
   * when the error came on a receive. The datagram is dropped and the
   * channel goes on. The default logs it (`logInfo(..., "error")`).
   */
  handleDatagramError(error: OSError, address: Address | null): void {
    const to = address === null ? "" : ` (to ${formatAddress(address)})`;
    this.logInfo(`${this} datagram error${to}: ${error.message}`, "error");
  }

  /**
   * Sends messages `start..start+count-1` of `batch` (`batch.lengths[i]`
   * bytes to `batch.address(i)`; none on a connected socket), in one
   * `sendmmsg` where it can. A received batch sent as it is goes back to
   * each sender. What the socket cannot take now is copied into the queue
   * and sent when it is writable, after what was queued before; a datagram
   * the kernel refuses goes to {@linkcode handleDatagramError} and is
   * dropped. Returns how many were sent now (the rest were queued or refused).
   */
  sendDatagrams(batch: MessageBatch, count: number, start = 0): number {
    if (!(batch instanceof MessageBatch)) throw new TypeError("sendDatagrams needs a MessageBatch");
    if (!Number.isInteger(start) || start < 0 || start > batch.capacity) {
      throw new RangeError(`start must be an integer 0-${batch.capacity}, not ${start}`);
    }
    if (!Number.isInteger(count) || count < 0 || start + count > batch.capacity) {
      throw new RangeError(`count must be an integer 0-${batch.capacity - start}, not ${count}`);
    }
    const end = start + count;
    if (this.queuedDatagrams > 0) this.#flush();
    const before = this.datagramsSent;
    let i = start;
    if (this.queuedDatagrams === 0) i = this.#sendNow(batch, start, end);
    for (let j = i; j < end; j++) this.#enqueue(batch.data(j).slice(), batch.address(j));
    return this.datagramsSent - before;
  }

  /** Sends from `start` until the socket is full; returns the first message not sent. */
  #sendNow(batch: MessageBatch, start: number, end: number): number {
    const sock = this.sock;
    const fd = sock.fileno();
    let i = start;
    while (i < end) {
      let n: number;
      try {
        n = this.batchCalls
          ? sock.trySendmmsg(batch, end - i, 0, i)
          : batch._sendOne(fd, i, 0, E.EAGAIN) < 0
          ? -1
          : 1;
      } catch (error) {
        // sendmmsg reports an error only for the first message it tried: that one is refused.
        if (!(error instanceof OSError) || CHANNEL_ERRORS.has(error.errno)) throw error;
        this.sendErrors++;
        this.handleDatagramError(error, batch.address(i));
        if (this.fileno() === null) return end;
        i++;
        continue;
      }
      if (n < 0) break;
      i += n;
      this.datagramsSent += n;
      this._ioSeen = true;
    }
    return i;
  }

  /**
   * Sends one datagram to `address` (omit it on a connected socket): true
   * when it went now, false when it was queued (or refused: see
   * {@linkcode handleDatagramError}).
   */
  sendDatagram(data: BytesLike, address: Address | null = null): boolean {
    const bytes = asBytes(data);
    if (this.queuedDatagrams > 0) this.#flush();
    if (this.queuedDatagrams > 0) {
      this.#enqueue(bytes.slice(), address);
      return false;
    }
    const r = this.#sendOne(bytes, address);
    if (r === BLOCKED) this.#enqueue(bytes.slice(), address);
    return r === SENT;
  }

  /** One `sendto`/`send`: SENT, BLOCKED (the socket is full) or REFUSED (reported, dropped). */
  #sendOne(data: Uint8Array, address: Address | null): number {
    const sock = this.sock;
    try {
      const n = address === null ? sock.trySend(data) : trySendto(sock, data, address);
      if (n < 0) return BLOCKED;
    } catch (error) {
      if (!(error instanceof OSError) || CHANNEL_ERRORS.has(error.errno)) throw error;
      this.sendErrors++;
      this.handleDatagramError(error, address);
      return REFUSED;
    }
    this.datagramsSent++;
    this._ioSeen = true;
    return SENT;
  }

  #enqueue(data: Uint8Array, address: Address | null): void {
    this.#queue.push({ data, address });
    this.#queuedBytes += data.length;
    if (this.#queue.length - this.#head === 1) this.interestChanged();
  }

  /** Sends queued datagrams until the socket is full or the queue is empty. */
  #flush(): void {
    const q = this.#queue;
    while (this.#head < q.length && this.fileno() !== null) {
      const { data, address } = q[this.#head];
      if (this.#sendOne(data, address) === BLOCKED) break;
      q[this.#head++] = undefined as unknown as Queued;
      this.#queuedBytes -= data.length;
    }
    if (this.#head === q.length) {
      q.length = 0;
      this.#head = 0;
      this.interestChanged();
    } else if (this.#head > 1024 && this.#head * 2 > q.length) {
      q.splice(0, this.#head);
      this.#head = 0;
    }
    if (this._readPaused) resumeIfDrained(this);
  }

  /** A write event: sends what the queue holds. */
  override handleWrite(): void {
    this.#flush();
  }

  /**
   * A connected datagram socket (`connect()` sets its default destination
   * and makes the kernel report ICMP errors): nothing to do by default.
   */
  override handleConnect(): void {}

  /**
   * poll and epoll report a datagram socket's pending error (an ICMP port
   * unreachable on a connected socket) as `POLLERR`, which asyncore takes
   * for a hang-up: here the error is read and goes to
   * {@linkcode handleDatagramError}, and the channel stays open. Without a
   * pending error it closes, as a `Dispatcher`'s does.
   */
  override handleClose(): void {
    if (!this.#reportPendingError()) this.close();
  }

  /** A pending socket error goes to `handleDatagramError`; otherwise `handleExpt`. */
  override handleExptEvent(): void {
    if (!this.#reportPendingError()) this.handleExpt();
  }

  /** Reads and clears the socket's pending error (`SO_ERROR`); true when there was one. */
  #reportPendingError(): boolean {
    if (this.fileno() === null) return false;
    const err = this.sock.getsockopt(C.SOL_SOCKET, C.SO_ERROR);
    if (err === 0) return false;
    this.handleDatagramError(new OSError(err, { syscall: "recvfrom" }), null);
    return true;
  }

  /** Closes the channel; datagrams still queued are dropped (UDP promises no delivery). */
  override close(): void {
    this.#queue.length = 0;
    this.#head = 0;
    this.#queuedBytes = 0;
    super.close();
  }
}
trackPredicates(DatagramDispatcher.prototype.readable, DatagramDispatcher.prototype.writable);

/** `sendto` without an exception for "would block": -1 then. */
function trySendto(sock: Socket, data: Uint8Array, address: Address): number {
  try {
    return sock.sendto(data, address);
  } catch (error) {
    if (error instanceof OSError && error.errno === E.EAGAIN) return -1;
    throw error;
  }
}
