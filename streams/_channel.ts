/**
 * `StreamChannel`: the dispatcher under a `Conn`. Its read events feed a
 * {@linkcode ReadSide}, its write events drain a {@linkcode WriteSide}, and
 * its predicates are what the two sides want (tracked: every change sends
 * the loop a notice, so the epoll backend leaves idle connections alone).
 * The socket closes once both sides are done with it, or at once on
 * `close()` or an error. While open, the channel holds the default loop's
 * background run (`retainBackground`), so the streams run without a call
 * from the program.
 *
 * @module
 */

import { errno as E, OSError } from "../ffi/errno.ts";
import { C } from "../ffi/platform.ts";
import type { Socket } from "../ffi/socket.ts";
import type { Address } from "../ffi/structs.ts";
import { type Transport, transportOf } from "../ffi/transport.ts";
import { trackPredicates } from "../dispatcher/_interest.ts";
import { retainBackground } from "../dispatcher/_run.ts";
import { Dispatcher } from "../dispatcher/dispatcher.ts";
import { defaultLoop } from "../dispatcher/loop.ts";
import { ReadSide } from "./_read_side.ts";
import { WriteSide } from "./_write_side.ts";

/** The error the streams and waiting calls of a connection closed by the program get. */
export function closedError(): OSError {
  return new OSError(E.EBADF, { message: "Bad file descriptor (the connection is closed)" });
}

/** The dispatcher under one `Conn`. */
export class StreamChannel extends Dispatcher {
  /** The readable half. */
  readonly reader: ReadSide;
  /** The writable half. */
  readonly writer: WriteSide;
  /** The peer's address: the one connected to, or the one accept (or a PROXY header) gave. */
  readonly peer: Address | null;
  readonly #t: Transport;
  #release: (() => void) | null;
  #connecting: { resolve(): void; reject(error: unknown): void } | null = null;
  /** Why the channel closed, for the streams and waiting calls; null: closed by the program. */
  #failure: unknown = null;
  #ended = false;

  /**
   * Serves `sock` (connected, or about to be with {@linkcode connectTo}) on
   * the default loop. `peer` is the peer's address when known.
   */
  constructor(sock: Socket, peer: Address | null = null) {
    super(sock, defaultLoop.map);
    this.#t = transportOf(sock);
    this.peer = peer;
    this.reader = new ReadSide({
      read: (buffer, n) => this.#read(buffer, n),
      interestChanged: () => this.interestChanged(),
      finished: () => this.#sideFinished(),
      failed: (error) => this.#fail(error),
    });
    this.writer = new WriteSide({
      send: (data) => this.#send(data),
      shutdown: () => this.#shutdownWrite(),
      interestChanged: () => this.interestChanged(),
      finished: () => this.#sideFinished(),
      abort: () => this.close(),
    });
    this.#release = retainBackground(defaultLoop.map, defaultLoop.poller);
  }

  /**
   * Starts connecting to `address`; resolves once connected (for TLS, once
   * the handshake is done), rejects with the connect's or handshake's error.
   */
  connectTo(address: Address): Promise<void> {
    const done = new Promise<void>((resolve, reject) => {
      this.#connecting = { resolve, reject };
    });
    try {
      this.connect(address);
    } catch (error) {
      this.#fail(error);
    }
    return done;
  }

  /** Dispatcher's connect, but a Unix socket's full backlog is an error, not a connect under way. */
  override connect(address: Address): void {
    if (typeof address === "string") {
      const err = this.sock.connectEx(address);
      if (err !== 0 && err !== E.EISCONN) {
        // EAGAIN on a Unix socket: the listener's backlog is full, nothing is under way.
        throw new OSError(err, { syscall: "connect", filename: address });
      }
      this.addr = address;
      this.handleConnectEvent();
      return;
    }
    super.connect(address);
  }

  /** The connection (and a TLS handshake) is up. */
  override handleConnect(): void {
    const c = this.#connecting;
    this.#connecting = null;
    c?.resolve();
  }

  /** Bytes queued for sending. */
  override get queuedBytes(): number {
    return this.writer.queuedBytes;
  }

  /** Reads while the readable side wants bytes. */
  override readable(): boolean {
    return this.reader.wants;
  }

  /** Writes while connecting, while bytes are queued, and until the write side is shut down. */
  override writable(): boolean {
    return this.connecting || this.writer.wants;
  }

  /** A read event feeds the readable side. */
  override handleRead(): void {
    this.reader.onReadable();
  }

  /** A write event drains the queue. */
  override handleWrite(): void {
    this.writer.onWritable();
  }

  /** Urgent data is read in line (`SO_OOBINLINE`): nothing to do here. */
  override handleExpt(): void {}

  /**
   * The loop saw a hang-up or an error on the socket. Before the connection
   * is up, the connect failed. Afterwards the write side ends, and the read
   * side finds out in order: `recv` returns what the peer sent first, then
   * its error (a reset) or the end of stream. So the pending error is left
   * for `recv` to report (reading `SO_ERROR` here would clear it, and a
   * reset would then read as a clean end). Nothing spins meanwhile: a read
   * side that waits for its consumer asks the loop for nothing.
   */
  override handleClose(): void {
    if (this.fileno() === null) return;
    if (!this.connected) {
      let err = 0;
      try {
        err = this.sock.getsockopt(C.SOL_SOCKET, C.SO_ERROR);
      } catch (error) {
        this.#fail(error);
        return;
      }
      this.#fail(new OSError(err || E.ECONNRESET, { syscall: "connect" }));
      return;
    }
    this.writer.fail(
      new OSError(E.EPIPE, {
        syscall: "send",
        message: "Broken pipe (the peer closed the connection or reset it)",
      }),
    );
  }

  /** A handler failed (a connect refused, a TLS handshake): the connection fails with it. */
  override handleError(error: unknown): void {
    this.#fail(error);
  }

  /** Closes the socket at once: what is queued is dropped, and the streams error. */
  override close(): void {
    super.close();
    if (this.#ended) return;
    this.#ended = true;
    this.#release?.();
    this.#release = null;
    const error = this.#failure ?? closedError();
    const c = this.#connecting;
    this.#connecting = null;
    c?.reject(error);
    this.reader.fail(error);
    this.writer.fail(error);
  }

  /** Waits until what is queued is sent (or the connection fails). */
  flushed(): Promise<void> {
    return this.writer.flushed();
  }

  #fail(error: unknown): void {
    if (this.#ended) return;
    this.#failure = error;
    this.close();
  }

  #sideFinished(): void {
    if (this.reader.finished && this.writer.finished) this.close();
  }

  #read(buffer: Uint8Array, n: number): number {
    const got = this.#t.tryRecvInto(buffer, n);
    if (got > 0) this._ioSeen = true;
    return got;
  }

  #send(data: Uint8Array): number {
    const n = this.#t.trySend(data);
    if (n > 0) this._ioSeen = true;
    return n;
  }

  /** Half-closes through the transport (TLS: close_notify first); false: not yet, try again. */
  #shutdownWrite(): boolean {
    return this.#t.closeWrite() === 0;
  }
}
trackPredicates(StreamChannel.prototype.readable, StreamChannel.prototype.writable);
