/**
 * The listener side of the PROXY protocol: an accepted connection waits,
 * on the listener's own loop, for its header before the listener admits it
 * (`maxConnections`, `handleAccepted`) under the client's address.
 *
 * The header is read with `MSG_PEEK` and then exactly its length is
 * consumed, so nothing past it ever leaves the kernel: the bytes a client
 * sent after the header (a request, a TLS ClientHello) reach the channel's
 * first `recv`, whatever wraps the socket next. A header that comes in
 * pieces has its pieces consumed as they come (each is all header: the
 * header is not complete yet), so a waiting connection never leaves the
 * socket readable to a level-triggered poller, and holds at most one
 * header's bytes. Internal: `Dispatcher.proxyProtocol` is the knob.
 *
 * @module
 */

import { OSError } from "../ffi/errno.ts";
import { C } from "../ffi/platform.ts";
import type { Socket } from "../ffi/socket.ts";
import type { Address } from "../ffi/structs.ts";
import { handleErrorSafely } from "./_events.ts";
import { trackPredicates } from "./_interest.ts";
import { announceAdded, type Channel, ChannelCore, kCore, removeFromMap } from "./_loop_core.ts";
import { isReraised } from "./errors.ts";
import { formatAddress } from "../ffi/address.ts";
import {
  checkProxyProtocol,
  parseProxyHeader,
  type ProxyHeader,
  proxyHeaderLimit,
  type ProxyProtocolVersion,
} from "./proxy_header.ts";
import type { TimerHandle } from "./timers.ts";

/** What the waiting connection needs of its listener. */
export interface ProxyListener {
  readonly [kCore]: ChannelCore;
  /** Which header to expect, or null for none. */
  proxyProtocol: ProxyProtocolVersion | null;
  /** Seconds to wait for it. */
  proxyProtocolTimeout: number;
  /** Where a dropped connection is reported (as a `"warning"`). */
  logInfo(message: unknown, type?: string): void;
  /** Where an error of the admission (`handleAccepted` throwing) goes, as in `handleAccept`. */
  handleError(error: unknown): void;
}

/** Admits `sock` under `addr` (the listener's limits, then `handleAccepted`). */
export type AdmitFn = (sock: Socket, addr: Address) => void;

const headers = new WeakMap<Socket, ProxyHeader>();

/**
 * The PROXY protocol header a listener with `proxyProtocol` read from
 * `sock` before handing it to `handleAccepted`, or null for a socket that
 * came without one. It carries what the address alone does not: the
 * address the client connected to (`destination`), the protocol, and v2's
 * TLVs (ALPN, authority, unique ID, SSL details).
 *
 * @example
 * ```ts
 * import { type Address, Dispatcher, DispatcherWithSend, proxyHeaderOf, type Socket } from "@asyncore/deno";
 *
 * class Server extends Dispatcher {
 *   override handleAccepted(sock: Socket, addr: Address) {
 *     const header = proxyHeaderOf(sock);
 *     console.log(addr, "via", header?.destination, header?.tlvs.length, "TLVs");
 *     new DispatcherWithSend(sock);
 *   }
 * }
 * ```
 */
export function proxyHeaderOf(sock: Socket): ProxyHeader | null {
  return headers.get(sock) ?? null;
}

// Peeked and consumed bytes land here: the loop is single-threaded, and a
// waiting connection keeps only the pieces of a header that came in pieces.
let scratch = new Uint8Array(0);

function scratchOf(n: number): Uint8Array {
  if (scratch.length < n) scratch = new Uint8Array(n);
  return scratch;
}

/** A listener's PROXY protocol settings, checked. */
export interface ProxySettings {
  /** Which header to expect. */
  version: ProxyProtocolVersion;
  /** Seconds to wait for it. */
  timeout: number;
}

/**
 * The settings of `listener`, checked, or null when it takes no header.
 * Called before accepting, so a bad setting (a `TypeError` or `RangeError`
 * for the listener's `handleError`) strands no accepted socket.
 */
export function proxySettings(listener: ProxyListener): ProxySettings | null {
  const version = checkProxyProtocol(listener.proxyProtocol);
  if (version === null) return null;
  const timeout = listener.proxyProtocolTimeout;
  if (typeof timeout !== "number" || !Number.isFinite(timeout) || timeout <= 0) {
    throw new RangeError(
      `proxyProtocolTimeout must be a finite number of seconds > 0, not ${String(timeout)}`,
    );
  }
  return { version, timeout };
}

/**
 * Reads the PROXY header of `sock`, just accepted by `listener` from
 * `peer`: at once if it is there, otherwise as it arrives on the
 * listener's loop, for at most `settings.timeout` seconds. Then `admit`
 * runs with the client's address (the header's source, or `peer` when the
 * header gives none). A missing, malformed, oversized or late header
 * closes `sock`, logged as a warning by the listener.
 */
export function awaitProxyHeader(
  listener: ProxyListener,
  sock: Socket,
  peer: Address,
  settings: ProxySettings,
  admit: AdmitFn,
): void {
  // A listener's accepted sockets are non-blocking; one set up by hand
  // might not be, and a peek must never block the loop.
  if (sock.getblocking()) sock.setblocking(false);
  const wait = new HeaderWait(listener, sock, peer, settings.version, admit);
  // Most headers came with the connection: one read decides, with no map
  // entry and no timer.
  if (!wait.step()) return;
  wait.park(settings.timeout);
}

/**
 * A connection waiting for its header: a channel of the listener's map
 * (so every poller watches it) that only reads, and leaves the map when
 * the header is in, handing the socket over untouched.
 */
class HeaderWait implements Channel {
  readonly [kCore]: ChannelCore;
  readonly accepting = false;
  /** The peer the connection comes from (the proxy), for repr and messages. */
  readonly addr: Address;
  #sock: Socket;
  readonly #listener: ProxyListener;
  readonly #version: ProxyProtocolVersion;
  readonly #admit: AdmitFn;
  readonly #limit: number;
  /** The header bytes consumed so far, when it came in pieces. */
  #got: Uint8Array | null = null;
  #timer: TimerHandle | null = null;
  #timeout = 0;

  constructor(
    listener: ProxyListener,
    sock: Socket,
    peer: Address,
    version: ProxyProtocolVersion,
    admit: AdmitFn,
  ) {
    this[kCore] = new ChannelCore(listener[kCore].map);
    this.#listener = listener;
    this.#sock = sock;
    this.addr = peer;
    this.#version = version;
    this.#admit = admit;
    this.#limit = proxyHeaderLimit(version);
  }

  /** The socket, for a forced close. */
  get socket(): Socket {
    return this.#sock;
  }

  /** Joins the listener's map and starts the clock. */
  park(timeoutSeconds: number): void {
    const core = this[kCore];
    const fd = this.#sock.fileno();
    core.fd = fd;
    core.map.set(fd, this);
    announceAdded(core.map, fd);
    this.#timeout = timeoutSeconds;
    this.#timer = core.loop.timers.callLater(timeoutSeconds, () => {
      this.#timer = null;
      this.#drop(`no complete PROXY header within ${this.#timeout}s`);
    });
  }

  /**
   * One look at the socket: true while the header is still to come; false
   * once the connection was admitted or dropped.
   */
  step(): boolean {
    const sock = this.#sock;
    const have = this.#got?.length ?? 0;
    const room = this.#limit - have;
    const buf = scratchOf(this.#limit);
    let n: number;
    try {
      n = sock.tryRecvInto(buf, room, C.MSG_PEEK);
    } catch (error) {
      if (!(error instanceof OSError)) throw error;
      this.#drop(`${error.message} before the PROXY header`);
      return false;
    }
    if (n < 0) return true; // nothing yet
    if (n === 0) {
      this.#drop(
        have === 0
          ? "closed without sending a PROXY header"
          : `closed after ${have} bytes of a PROXY header`,
      );
      return false;
    }
    const data = have === 0 ? buf.subarray(0, n) : join(this.#got!, buf.subarray(0, n));
    const r = parseProxyHeader(data, this.#version);
    if (r.status === "invalid") {
      this.#drop(r.reason);
      return false;
    }
    if (r.status === "incomplete") {
      // The parser refuses what outgrows the limit; this is a second fence.
      if (n === room) {
        this.#drop("a PROXY header over the size limit");
        return false;
      }
      // Everything there is header: take it out of the kernel, or a
      // level-triggered poller would report the same bytes every pass.
      const kept = have === 0 ? data.slice() : data;
      if (!this.#consume(n)) return false;
      this.#got = kept;
      return true;
    }
    if (!this.#consume(r.header.length - have)) return false;
    this.#admitWith(r.header);
    return false;
  }

  /** Consumes exactly `n` bytes already peeked; false (and dropped) if the kernel disagrees. */
  #consume(n: number): boolean {
    let got: number;
    try {
      got = this.#sock.tryRecvInto(scratchOf(n), n);
    } catch (error) {
      if (!(error instanceof OSError)) throw error;
      this.#drop(`${error.message} while reading the PROXY header`);
      return false;
    }
    if (got === n) return true;
    this.#drop(`read ${got} of the ${n} PROXY header bytes peeked`);
    return false;
  }

  #admitWith(header: ProxyHeader): void {
    const sock = this.#sock;
    this.#leave();
    headers.set(sock, header);
    const listener = this.#listener;
    try {
      this.#admit(sock, header.source ?? this.addr);
    } catch (error) {
      // Where the same error goes without the PROXY protocol: the listener's handleError.
      if (isReraised(error)) throw error;
      handleErrorSafely(listener as unknown as Channel, error);
    }
  }

  /** Leaves the map and stops the clock; the socket stays open. */
  #leave(): void {
    this.#timer?.cancel();
    this.#timer = null;
    this.#got = null;
    const core = this[kCore];
    if (core.fd !== null) removeFromMap(core.map, core.fd, this);
    core.fd = null;
  }

  #drop(reason: string): void {
    const listener = this.#listener;
    const peer = this.addr;
    this.close();
    try {
      listener.logInfo(
        `${listener} dropped a connection from ${formatAddress(peer)}: ${reason}`,
        "warning",
      );
    } catch (error) {
      if (isReraised(error)) throw error;
      handleErrorSafely(listener as unknown as Channel, error);
    }
  }

  // ---- the channel the loop drives ----

  /** The fd while waiting, null once handed over or closed. */
  fileno(): number | null {
    return this[kCore].fd;
  }

  /** Always reading: the header is all it waits for. */
  readable(): boolean {
    return true;
  }

  /** Never writing: nothing is sent before the header is in. */
  writable(): boolean {
    return false;
  }

  /** Bytes (or the end) arrived. */
  handleReadEvent(): void {
    if (this[kCore].fd !== null) this.step();
  }

  /** Not watched for writing. */
  handleWriteEvent(): void {}

  /**
   * Urgent (out-of-band) data: nothing a proxy sends before its header, and
   * a peek would leave it pending (select and poll would report it every pass).
   */
  handleExptEvent(): void {
    this.#drop("urgent (out-of-band) data before the PROXY header");
  }

  /** The peer hung up without data. */
  handleClose(): void {
    this.#drop("hung up before the PROXY header");
  }

  /** An error of this wait (not of the admission, which goes to the listener). */
  handleError(error: unknown): void {
    this.#drop(error instanceof Error ? error.message : String(error));
  }

  /** Closes the connection (a listener or map being closed closes its waiting connections). */
  close(): void {
    this.#leave();
    this.#sock.close();
  }

  /** `<PROXY header wait 127.0.0.1:40000 for <Server listening ...>>`. */
  toString(): string {
    return `<PROXY header wait ${formatAddress(this.addr)} for ${this.#listener}>`;
  }
}
trackPredicates(HeaderWait.prototype.readable, HeaderWait.prototype.writable);

function join(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
