/**
 * Dispatchers that handshake themselves: the channel side of TLS. The
 * `Dispatcher` hooks (`handleReadEvent`, `handleWriteEvent`,
 * `handleConnectEvent`, `setSocket`, `[kPolicy]`, `startTls`) delegate here
 * when the channel's socket is an `SSLSocket`. While the handshake runs, the
 * channel watches only what OpenSSL waits for and its events step the
 * handshake; a client's `handleConnect` fires once it is done. Afterwards a
 * read that needs a write (or the reverse) adds that interest, and bytes
 * OpenSSL already decrypted are handed to `handleRead` in the same pass.
 * Importing this module does not open OpenSSL.
 *
 * @module
 */

import { errno as E, OSError, strerror } from "../ffi/errno.ts";
import { C } from "../ffi/platform.ts";
import type { Socket } from "../ffi/socket.ts";
import type { SSLContext } from "../tls/context.ts";
import { SSLSocket } from "../tls/ssl_socket.ts";
import type { Dispatcher } from "./dispatcher.ts";
import { isReraised } from "./errors.ts";
import { notifyInterest, READ, WRITE } from "./_interest.ts";
import { pauseIfOver } from "./_limits.ts";
import { callLater, type TimerHandle } from "./timers.ts";

/** How many times one read event hands already-decrypted bytes to `handleRead`. */
const MAX_DRAIN = 64;

/** Per-channel TLS state, kept beside the socket. */
interface TlsState {
  /** The dispatcher runs the handshake (doHandshakeOnConnect). */
  managed: boolean;
  /** The handshake is still to finish. */
  handshaking: boolean;
  /** The TCP connection is up (a client may wrap before connecting). */
  tcpUp: boolean;
  /** The handshake-timeout timer. */
  timer: TimerHandle | null;
  /**
   * Bytes OpenSSL holds wait for a handler the fd will not wake: the policy
   * asked for WRITE (ready at once on a healthy socket) to read them then.
   */
  drainOnWrite: boolean;
  /** Whether the predicates asked for WRITE at the last policy call. */
  userWrite: boolean;
}

const states = new WeakMap<SSLSocket, TlsState>();

function isOpen(d: Dispatcher): boolean {
  return d.fileno() !== null;
}

/** Options of `Dispatcher.startTls`. */
export interface StartTlsOptions {
  /** Act as the TLS server. Default: false. */
  serverSide?: boolean;
  /** The server's name for SNI and certificate checking (clients). */
  serverHostname?: string;
  /** false: the program calls `doHandshake()` itself. Default true. */
  doHandshakeOnConnect?: boolean;
  /** Seconds the handshake may take (default: the context's `handshakeTimeout`). */
  handshakeTimeout?: number | null;
}

/** Called when a dispatcher adopts an `SSLSocket` (constructor, `setSocket`, `startTls`). */
export function tlsAdopted(d: Dispatcher, sock: SSLSocket): void {
  if (states.has(sock)) return;
  const managed = sock.doHandshakeOnConnect && !sock.handshakeDone;
  const st: TlsState = {
    managed,
    handshaking: managed,
    tcpUp: isConnected(sock),
    timer: null,
    drainOnWrite: false,
    userWrite: true,
  };
  states.set(sock, st);
  sock._onClose = () => {
    st.timer?.cancel();
    st.timer = null;
  };
  if (managed) {
    sock._gate = true;
    const seconds = sock.handshakeTimeout;
    if (seconds !== null && seconds > 0 && Number.isFinite(seconds)) {
      st.timer = callLater(seconds, () => handshakeTimedOut(d, sock, st));
    }
  }
}

function isConnected(sock: Socket): boolean {
  try {
    sock.getpeername();
    return true;
  } catch {
    return false;
  }
}

function handshakeTimedOut(d: Dispatcher, sock: SSLSocket, st: TlsState): void {
  st.timer = null;
  if (!st.handshaking || d.socket !== sock || !isOpen(d)) return;
  // Nothing may be written now: the peer is not reading, and a write that
  // cannot go out would keep the fd writable and the loop spinning.
  sock._noShutdown = true;
  const error = new OSError(E.ETIMEDOUT, {
    syscall: "SSL_do_handshake",
    message: "The handshake operation timed out",
  });
  try {
    d.handleError(error);
  } catch (inner) {
    if (isReraised(inner)) throw inner;
    d.close();
  }
  if (isOpen(d) && d.socket === sock) d.close();
}

/** Steps the handshake; finishes the connect when it is done. */
function stepHandshake(d: Dispatcher, sock: SSLSocket, st: TlsState): void {
  sock._gate = false;
  let want: number;
  try {
    want = sock._handshakeStep();
  } finally {
    if (st.handshaking) sock._gate = true;
  }
  if (want !== 0) return;
  st.handshaking = false;
  sock._gate = false;
  st.timer?.cancel();
  st.timer = null;
  if (d.connecting || !d.connected) {
    // A client: the connection is made only now (asyncore's order).
    d.handleConnect();
    d.connected = true;
    d.connecting = false;
  }
  d.interestChanged();
}

/** The TCP connect completed for a TLS channel: returns true when TLS took it over. */
export function tlsConnectEvent(d: Dispatcher, sock: SSLSocket): boolean {
  const st = states.get(sock);
  if (st === undefined || !st.handshaking) return false;
  const err = sock.getsockopt(C.SOL_SOCKET, C.SO_ERROR);
  if (err !== 0) throw new OSError(err, { syscall: "connect", message: strerror(err) });
  st.tcpUp = true;
  d.interestChanged();
  return true;
}

/** A read event on a TLS channel. */
export function tlsReadEvent(d: Dispatcher, sock: SSLSocket): void {
  if (d.accepting) {
    d.handleAccept();
    return;
  }
  const st = states.get(sock);
  if (connectAndHandshake(d, sock, st)) return;
  if (sock._writeWants === READ) {
    // A write waited for this read (renegotiation, key update): retry it.
    sock._writeWants = 0;
    d.handleWrite();
    if (!isOpen(d)) return;
  }
  // Backpressure counts what this event's reads queued, as for plain channels.
  const queuedBefore = d.queuedBytes;
  d.handleRead();
  drainPending(d, sock);
  if (isOpen(d)) pauseIfOver(d, queuedBefore);
}

/** Hands `handleRead` what OpenSSL already decrypted: the fd will not report it. */
function drainPending(d: Dispatcher, sock: SSLSocket): void {
  for (let i = 0; i < MAX_DRAIN; i++) {
    if (!isOpen(d) || d.socket !== sock || sock.pending() === 0) return;
    if (!d.readable()) return; // the policy hook reads it once readable() says so
    d.handleRead();
  }
}

/**
 * What a read or write event does before application data: finish the TCP
 * connect, then step the handshake. True when that used the event up (the
 * handshake moved, or the channel closed).
 */
function connectAndHandshake(d: Dispatcher, sock: SSLSocket, st: TlsState | undefined): boolean {
  if (st !== undefined && st.handshaking) {
    if (!st.tcpUp) {
      d.handleConnectEvent();
      if (!isOpen(d)) return true;
    }
    stepHandshake(d, sock, st);
    return true;
  }
  if (!d.connected && d.connecting) {
    d.handleConnectEvent();
    if (!isOpen(d)) return true;
  }
  return false;
}

/** A write event on a TLS channel. */
export function tlsWriteEvent(d: Dispatcher, sock: SSLSocket): void {
  if (d.accepting) return;
  const st = states.get(sock);
  if (connectAndHandshake(d, sock, st)) return;
  const userWrite = st === undefined || st.userWrite;
  if (sock._readWants === WRITE || st?.drainOnWrite) {
    if (st !== undefined) st.drainOnWrite = false;
    sock._readWants = 0;
    d.handleRead();
    drainPending(d, sock);
    if (!isOpen(d)) return;
  }
  if (userWrite) d.handleWrite();
}

/**
 * The TLS channel's interest: during the handshake what OpenSSL waits for
 * (or the connect, before TCP is up); afterwards what the predicates asked,
 * plus the other direction when a read or write waits on it.
 */
export function tlsPolicy(_d: Dispatcher, sock: SSLSocket, want: number): number {
  const st = states.get(sock);
  if (st === undefined) return want;
  if (st.handshaking) return st.tcpUp ? sock._hsWants : want;
  st.userWrite = (want & WRITE) !== 0;
  st.drainOnWrite = false;
  if (want & READ) {
    if (sock._readWants === WRITE) want |= WRITE;
    // Decrypted bytes no poller can see (SSL_pending; an unfinished record
    // in OpenSSL's buffer needs more from the kernel, which the poller
    // reports): a write event, ready at once, reads them.
    if (sock.pending() > 0) {
      st.drainOnWrite = true;
      want |= WRITE;
    }
  }
  if (want & WRITE && sock._writeWants === READ) want |= READ;
  return want;
}

/**
 * Upgrades the live connection of `d` to TLS (STARTTLS): its socket is
 * wrapped with `context` and, unless `doHandshakeOnConnect` is false, the
 * loop runs the handshake. Send the plaintext go-ahead first and let it
 * drain: bytes still queued would leave encrypted.
 */
export function startTls(
  d: Dispatcher,
  context: SSLContext,
  options: StartTlsOptions = {},
): SSLSocket {
  const sock = d.socket;
  if (sock === null || d.fileno() === null) throw new TypeError("startTls needs an open socket");
  if (sock instanceof SSLSocket) throw new TypeError("the connection already runs TLS");
  if (!("tryAccept" in sock)) throw new TypeError("startTls needs a socket, not a file");
  const queued = (d as unknown as { outBuffer?: { length: number } }).outBuffer;
  if (queued !== undefined && queued.length > 0) {
    throw new TypeError(
      `startTls with ${queued.length} plaintext bytes still queued: call it once outBuffer is empty`,
    );
  }
  const tls = context.wrapSocket(sock as Socket, {
    serverSide: options.serverSide ?? false,
    serverHostname: options.serverHostname,
    doHandshakeOnConnect: options.doHandshakeOnConnect ?? true,
    handshakeTimeout: options.handshakeTimeout,
  });
  if (tls.getblocking()) tls.setblocking(false);
  d.socket = tls;
  tlsAdopted(d, tls);
  notifyInterest(d);
  return tls;
}
