/**
 * `listen()` and `Listener`: a listening socket whose connections come out
 * as {@linkcode Conn}s, through `accept()` or `for await`.
 *
 * @module
 */

import { errno as E, OSError } from "../ffi/errno.ts";
import { getaddrinfo } from "../ffi/netdb.ts";
import { C } from "../ffi/platform.ts";
import type { Socket } from "../ffi/socket.ts";
import type { Address } from "../ffi/structs.ts";
import type { SSLContext } from "../tls/ssl.ts";
import { trackPredicates } from "../dispatcher/_interest.ts";
import { retainBackground } from "../dispatcher/_run.ts";
import { Dispatcher } from "../dispatcher/dispatcher.ts";
import { defaultLoop } from "../dispatcher/loop.ts";
import { StreamChannel } from "./_channel.ts";
import { checkListenOptions, type ListenOptions } from "./_options.ts";
import { type Conn, StreamConn } from "./conn.ts";
import { inetFamily, setStreamOptions } from "./_socket.ts";

/**
 * Connections accepted ahead of `accept()` calls, at most: past it the
 * listener stops accepting and the rest wait in the kernel's backlog.
 */
export const ACCEPT_AHEAD = 64;

/**
 * A listening socket, from {@linkcode listen}. Its connections come out as
 * {@linkcode Conn}s, through `accept()` or `for await`. A program that
 * awaits `accept()` stays alive; `close()` (or leaving a `for await` with
 * `break`) stops listening.
 *
 * @example An echo server
 * ```ts no-run
 * import { listen } from "@asyncore/deno";
 *
 * const listener = listen({ port: 8080 });
 * for await (const conn of listener) { // serves until the process is stopped
 *   conn.readable.pipeTo(conn.writable).catch(() => {});
 * }
 * ```
 */
export interface Listener extends AsyncIterable<Conn>, AsyncDisposable {
  /** The address listened on (with the port the system picked for port 0). */
  readonly addr: Address;
  /**
   * The next connection. Rejects with `OSError` `EBADF` once the listener
   * is closed (a `for await` just ends then).
   */
  accept(): Promise<Conn>;
  /** Stops listening: pending `accept()`s reject, connections not yet accepted are closed. */
  close(): void;
}

/** A waiting `accept()`. */
interface Waiter {
  resolve(conn: Conn): void;
  reject(error: unknown): void;
}

/** Why `accept()` fails on a closed listener. */
function listenerClosed(): OSError {
  return new OSError(E.EBADF, { message: "Bad file descriptor (the listener is closed)" });
}

/** The listening dispatcher under a `Listener`. */
class ListenChannel extends Dispatcher {
  readonly #tls: SSLContext | null;
  readonly #tcp: boolean;
  #waiters: Waiter[] = [];
  #ready: Conn[] = [];
  #release: (() => void) | null = null;
  #closed = false;

  constructor(family: number, tls: SSLContext | null) {
    super(null, defaultLoop.map);
    this.#tls = tls;
    this.#tcp = family !== C.AF_UNIX;
    this.createSocket(family, C.SOCK_STREAM);
  }

  /** Starts serving: the default loop runs for the listener from now on. */
  start(): void {
    this.#release = retainBackground(defaultLoop.map, defaultLoop.poller);
  }

  /** Accepts while an `accept()` waits or fewer than {@linkcode ACCEPT_AHEAD} wait for one. */
  override readable(): boolean {
    return this.#waiters.length > 0 || this.#ready.length < ACCEPT_AHEAD;
  }

  override writable(): boolean {
    return false;
  }

  /** A new connection: a `Conn` for the first waiting `accept()`, or kept for the next. */
  override handleAccepted(sock: Socket, addr: Address): void {
    if (this.#tcp) setStreamOptions(sock);
    const s = this.#tls === null ? sock : this.#tls.wrapSocket(sock, { serverSide: true });
    const conn = new StreamConn(new StreamChannel(s, addr));
    const w = this.#waiters.shift();
    if (w !== undefined) {
      w.resolve(conn);
      if (this.#waiters.length === 0) this.interestChanged();
    } else {
      this.#ready.push(conn);
      if (this.#ready.length === ACCEPT_AHEAD) this.interestChanged();
    }
  }

  /** The next connection (see `Listener.accept`). */
  take(): Promise<Conn> {
    if (this.#closed) return Promise.reject(listenerClosed());
    const conn = this.#ready.shift();
    if (conn !== undefined) {
      if (this.#ready.length === ACCEPT_AHEAD - 1) this.interestChanged();
      return Promise.resolve(conn);
    }
    return new Promise<Conn>((resolve, reject) => {
      this.#waiters.push({ resolve, reject });
      if (this.#waiters.length === 1) this.interestChanged();
    });
  }

  /** Whether `close()` was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Accepting failed (out of memory, a TLS context that cannot make a
   * session): the waiting `accept()`s reject with it; the listener stays.
   */
  override handleError(error: unknown): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w.reject(error);
    this.interestChanged();
  }

  /** A listening socket does not hang up; if it reports so, it is closed. */
  override handleClose(): void {
    this.close();
  }

  /** Stops listening (see `Listener.close`). */
  override close(): void {
    super.close();
    if (this.#closed) return;
    this.#closed = true;
    this.#release?.();
    this.#release = null;
    const waiters = this.#waiters, ready = this.#ready;
    this.#waiters = [];
    this.#ready = [];
    for (const w of waiters) w.reject(listenerClosed());
    for (const conn of ready) conn.close();
  }
}
trackPredicates(ListenChannel.prototype.readable, ListenChannel.prototype.writable);

/** The `Listener` over a {@linkcode ListenChannel}. */
class StreamListener implements Listener {
  readonly #ch: ListenChannel;
  /** See {@linkcode Listener.addr}. */
  readonly addr: Address;

  constructor(ch: ListenChannel) {
    this.#ch = ch;
    this.addr = ch.sock.getsockname();
  }

  /** See {@linkcode Listener.accept}. */
  accept(): Promise<Conn> {
    return this.#ch.take();
  }

  /** See {@linkcode Listener.close}. */
  close(): void {
    this.#ch.close();
  }

  /**
   * The connections, until the listener is closed. Leaving the loop early
   * (`break`, or an exception in its body) closes the listener, as Deno's
   * does; an error of `accept()` itself ends the loop with that error and
   * leaves the listener open.
   */
  async *[Symbol.asyncIterator](): AsyncGenerator<Conn, void, undefined> {
    for (;;) {
      let conn: Conn;
      try {
        conn = await this.#ch.take();
      } catch (error) {
        if (this.#ch.closed) return;
        throw error;
      }
      let resumed = false;
      try {
        yield conn;
        resumed = true;
      } finally {
        if (!resumed) this.close(); // the consumer left the loop
      }
    }
  }

  /** Closes the listener. */
  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }
}

/** The address family and `bind` address of a TCP listener on `hostname`. */
function listenAddress(hostname: string, port: number): [number, Address] {
  const literal = inetFamily(hostname);
  if (literal === C.AF_INET) return [literal, [hostname, port]];
  if (literal === C.AF_INET6) return [literal, [hostname, port, 0, 0]];
  // A name: resolved here, as Deno.listen does (listening is set-up, not a hot path).
  const [first] = getaddrinfo(hostname, port, 0, C.SOCK_STREAM, 0, C.AI_PASSIVE);
  return [first[0], first[4]];
}

/**
 * Listens for connections: over TCP (optionally TLS, or behind a PROXY
 * protocol proxy) or on a Unix socket. The listener runs on the default
 * loop by itself: a program that awaits `accept()` stays alive. Accepted
 * TCP connections have `TCP_NODELAY` set, as asyncio sets it (the
 * connection's queue already gathers small writes).
 *
 * @param options `{ hostname?, port, backlog?, reusePort?, tls?, proxyProtocol? }`
 * or `{ path, transport: "unix" }`.
 * @returns The listener, listening.
 * @throws {OSError} When the socket cannot be made, bound (`EADDRINUSE`) or listen.
 * @throws {TypeError} For an option of the wrong type (or a client context as `tls`).
 * @throws {RangeError} For a value out of range (a port above 65535, a negative backlog).
 *
 * @example A TLS echo server
 * ```ts no-run
 * import { listen, PROTOCOL_TLS_SERVER, SSLContext } from "@asyncore/deno";
 *
 * const tls = new SSLContext(PROTOCOL_TLS_SERVER);
 * tls.loadCertChain("cert.pem", "key.pem"); // needs cert.pem and key.pem
 * for await (const conn of listen({ port: 8443, tls })) {
 *   conn.readable.pipeTo(conn.writable).catch((e) => console.error(e.message));
 * }
 * ```
 */
export function listen(options: ListenOptions): Listener {
  const o = checkListenOptions(options);
  const [family, address] = o.kind === "unix"
    ? [C.AF_UNIX, o.path]
    : listenAddress(o.hostname, o.port);
  const ch = new ListenChannel(family, o.kind === "tcp" ? o.tls : null);
  try {
    if (o.kind === "tcp") {
      ch.setReuseAddr();
      if (o.reusePort) ch.setReusePort();
      if (o.proxyProtocol !== null) ch.proxyProtocol = o.proxyProtocol;
    }
    ch.bind(address);
    ch.listen(o.kind === "tcp" ? o.backlog : 1024);
    const listener = new StreamListener(ch);
    ch.start();
    return listener;
  } catch (error) {
    ch.close();
    throw error;
  }
}
