/**
 * The transport seam: what a channel reads, writes and waits through, as
 * asyncio's transports are to its protocols. A plain socket's transport
 * makes the system calls; a TLS transport wraps the same fd, owns every
 * piece of TLS state, and says what OpenSSL waits for. A channel asks its
 * socket for the transport once (`sock[kTransport]()`) and never tests the
 * socket's class.
 *
 * @module
 */

import { C } from "./platform.ts";

/** Interest bit: watch the fd for reading. */
export const READ = 1;
/** Interest bit: watch the fd for writing. */
export const WRITE = 2;

let passMs = 0;

/**
 * The loop's clock: `performance.now()` as the loop read it when its
 * current pass stopped waiting (HAProxy's `now_ms`). Reading it costs
 * nothing, where `performance.now()` costs about 180 ns in Deno: a
 * transport uses it for coarse decisions made on every write (how long a
 * connection has been quiet). 0 before any pass.
 */
export function passClock(): number {
  return passMs;
}

/** Sets {@linkcode passClock} (the loop calls it once per pass, after its wait). */
export function tickPassClock(): void {
  passMs = performance.now();
}

/** The method of a socket-like object that returns its {@linkcode Transport}. */
export const kTransport: unique symbol = Symbol("asyncore.transport");

/** A scheduled call a transport can cancel (a loop's timer handle). */
export interface Cancellable {
  /** Stops the call. */
  cancel(): void;
}

/**
 * Output a transport holds past the call that took it (TLS records gathered
 * for one `send` at the end of the pass).
 */
export interface HeldOutput {
  /**
   * Sends what is held. Returns true when the loop is done with it (all
   * sent, or the rest waits for a write event the transport asked for);
   * false to be called again after the next pass (a closed channel's last
   * bytes, still going out).
   */
  flush(): boolean;
}

/** What a transport may ask of the channel that took it over. */
export interface TransportHooks {
  /**
   * Calls `output.flush()` once this pass's handlers and timers have run (at
   * the start of the next pass if no pass is running), and keeps the loop
   * running while it returns false.
   */
  flushLater(output: HeldOutput): void;
  /** Calls `fn` `seconds` from now, on the channel's loop. */
  callLater(seconds: number, fn: () => void): Cancellable;
  /** What the transport waits for changed outside one of its events. */
  interestChanged(): void;
  /** The session the transport was setting up is ready (a TLS handshake finished). */
  sessionUp(): void;
  /** The session failed outside an event (a handshake that timed out): close with `error`. */
  sessionFailed(error: Error): void;
}

/**
 * One connection's byte path. I/O calls never throw "would block": they
 * return -1 instead; 0 from a read is the end of the stream. Other failures
 * throw `OSError` (or `SSLError`).
 */
export interface Transport {
  /** The fd the loop watches, -1 once closed. */
  fileno(): number;
  /** Reads up to `n` bytes into `buffer`: the count, 0 at the end, -1 when it would block. */
  tryRecvInto(buffer: Uint8Array, n: number): number;
  /** Writes from `data`: the bytes taken, -1 when it would block. */
  trySend(data: Uint8Array): number;
  /**
   * Whether {@linkcode trySendfile} may hand a file to the kernel. False when
   * the bytes must pass through the transport (TLS encrypts them): the
   * caller reads the file and writes it with {@linkcode trySend}.
   */
  canSendfile(): boolean;
  /** One `sendfile(2)` of `count` bytes of `inFd` from `offset`: sent, 0 at the end of the file, -1 would block. */
  trySendfile(inFd: number, offset: number, count: number): number;
  /** Shuts down one or both directions of the fd. */
  shutdown(how: number): void;
  /**
   * Ends the write direction once nothing is held (a half-close; reading
   * goes on): a TLS session sends close_notify first, then the fd is shut
   * down for writing. Returns 0 when done, else READ or WRITE for what to
   * wait for before calling again (a handshake to finish, records to send).
   */
  closeWrite(): number;
  /** Ends the session (if any) and closes the fd. */
  close(): void;

  /** A channel took this transport over: it may now use the hooks. */
  attach(hooks: TransportHooks): void;
  /**
   * The TCP connection came up under the channel (its connect finished).
   * Returns true when the channel may call `handleConnect` now; false when
   * the transport sets up a session first (`hooks.sessionUp` follows).
   */
  connectionMade(): boolean;
  /** Whether the transport encrypts what it carries (a TLS session over an `SSLSocket`). */
  readonly secure: boolean;
  /** While true, the fd's events belong to the transport (a handshake runs), not to the channel. */
  readonly busy: boolean;
  /** What to watch (`READ`/`WRITE` bits), given what the channel wants. */
  wants(want: number): number;
  /**
   * The fd reported `events`: the transport does its own work first (a
   * handshake step, a write that waited for a read) and returns the events
   * left for the channel; 0 when it used them up.
   */
  ready(events: number): number;
  /** Bytes read and held that the fd will not report again (decrypted data): read them now. */
  buffered(): number;
  /**
   * Bytes taken by {@linkcode trySend} that have not reached the kernel yet
   * (TLS records waiting for the end of the pass, or refused by a full
   * socket buffer): they count toward the channel's queued bytes.
   */
  queued(): number;
}

/** The calls a plain transport forwards to its socket (a `Socket`, a `FileWrapper`, a test's stand-in). */
export interface SocketLike {
  /** The fd, -1 (or null) once closed. */
  fileno(): number | null;
  /** Reads into `buffer`: the count, 0 at the end, -1 when it would block. */
  tryRecvInto?(buffer: Uint8Array, n: number): number;
  /** Writes `data`: the bytes taken, -1 when it would block. */
  trySend?(data: Uint8Array): number;
  /** Whether the kernel may send files onto it. */
  canSendfile?(): boolean;
  /** One `sendfile(2)`. */
  trySendfile?(inFd: number, offset: number, count: number): number;
  /** Shuts down one or both directions. */
  shutdown?(how: number): void;
  /** Closes it. */
  close(): void;
}

/**
 * The transport of a plain socket (or anything socket-like): its own system
 * calls, and no session of its own, so nothing to wait for but what its
 * channel wants.
 */
export class SocketTransport implements Transport {
  readonly #sock: SocketLike;
  /** A plain transport never sets up a session. */
  readonly busy = false;
  /** Nothing is encrypted. */
  readonly secure = false;

  /** The transport of `sock`. */
  constructor(sock: SocketLike) {
    this.#sock = sock;
  }
  /** The socket's fd. */
  fileno(): number {
    return this.#sock.fileno() ?? -1;
  }
  /** The socket's `tryRecvInto`. */
  tryRecvInto(buffer: Uint8Array, n: number): number {
    return this.#sock.tryRecvInto!(buffer, n);
  }
  /** The socket's `trySend`. */
  trySend(data: Uint8Array): number {
    return this.#sock.trySend!(data);
  }
  /** Whether the socket says the kernel may send files onto it. */
  canSendfile(): boolean {
    return this.#sock.canSendfile?.() ?? false;
  }
  /** The socket's `trySendfile`. */
  trySendfile(inFd: number, offset: number, count: number): number {
    return this.#sock.trySendfile!(inFd, offset, count);
  }
  /** The socket's `shutdown`. */
  shutdown(how: number): void {
    this.#sock.shutdown!(how);
  }
  /** Shuts the socket down for writing. */
  closeWrite(): number {
    this.#sock.shutdown!(C.SHUT_WR);
    return 0;
  }
  /** Closes the socket. */
  close(): void {
    this.#sock.close();
  }
  /** Nothing to set up. */
  attach(): void {}
  /** The connection is the channel's at once. */
  connectionMade(): boolean {
    return true;
  }
  /** What the channel wants. */
  wants(want: number): number {
    return want;
  }
  /** The events, all for the channel. */
  ready(events: number): number {
    return events;
  }
  /** Nothing is held. */
  buffered(): number {
    return 0;
  }
  /** Every byte taken went to the kernel. */
  queued(): number {
    return 0;
  }
}

/** The transport of `sock`: what it answers to `kTransport`, or a plain one over its calls. */
export function transportOf(sock: SocketLike): Transport {
  const own = (sock as { [kTransport]?: () => Transport })[kTransport];
  return typeof own === "function" ? own.call(sock) : new SocketTransport(sock);
}
