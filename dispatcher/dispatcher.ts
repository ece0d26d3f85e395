/**
 * `Dispatcher` and `DispatcherWithSend`: asyncore's `dispatcher` and
 * `dispatcher_with_send`, method for method, in the reference's order.
 *
 * @module
 */

import { errno as E, OSError, strerror } from "../ffi/errno.ts";
import { C } from "../ffi/platform.ts";
import { type BytesLike, Socket } from "../ffi/socket.ts";
import type { Address } from "../ffi/structs.ts";
import { ByteQueue } from "./byte_queue.ts";
import { compactTraceback, DISCONNECTED } from "./errors.ts";
import type { FileWrapper } from "./file_dispatcher.ts";
import {
  announceAdded,
  announceChanged,
  announceRemoved,
  type SocketMap,
  socketMap,
} from "./map.ts";
import { markTrackedPredicate } from "./loop.ts";
import { kPolicy } from "./_interest.ts";
import type { SSLContext } from "../tls/context.ts";
import { SSLSocket } from "../tls/ssl_socket.ts";
import * as tls from "./tls.ts";

const encoder = new TextEncoder();
const EMPTY = new Uint8Array(0);
/** One receive buffer shared by every channel: the loop runs one handler at a time. */
let recvScratch = new Uint8Array(65536);

/** How long a listening channel stops accepting after running out of fds. */
export const ACCEPT_BACKOFF_SECONDS = 0.1;

function toBytes(data: BytesLike): Uint8Array {
  if (typeof data === "string") return encoder.encode(data);
  if (data instanceof Uint8Array) return data;
  throw new TypeError(`data must be a Uint8Array or a string, not ${typeof data}`);
}

function formatAddress(addr: Address): string {
  if (typeof addr === "string") return JSON.stringify(addr);
  return addr[0].includes(":") ? `[${addr[0]}]:${addr[1]}` : `${addr[0]}:${addr[1]}`;
}

/**
 * Small reads are handed out as views into a shared slab, as Node.js does
 * for small Buffers: a new ArrayBuffer per read costs more than the read.
 * (So `data.buffer` of a small result is the slab, not just the data.)
 */
const POOL_SIZE = 64 * 1024;
const POOL_MAX = 4096;
let pool = new ArrayBuffer(POOL_SIZE);
let poolUsed = 0;

function fromPool(src: Uint8Array, n: number): Uint8Array {
  if (poolUsed + n > POOL_SIZE) {
    pool = new ArrayBuffer(POOL_SIZE);
    poolUsed = 0;
  }
  const out = new Uint8Array(pool, poolUsed, n);
  out.set(n === src.length ? src : src.subarray(0, n));
  poolUsed = (poolUsed + n + 7) & ~7; // keep views 8-byte aligned
  return out;
}

let nextId = 1;

/** Sockets some channel has taken over (`setSocket`), so they are not closed behind its back. */
const adopted = new WeakSet<Socket | FileWrapper>();

/**
 * A thin wrapper around a non-blocking socket, with event handlers called by
 * the loop. Subclass it and override the `handle*` methods.
 */
export class Dispatcher {
  /** Log every `send` (used by `DispatcherWithSend`). */
  debug = false;
  /** The socket is connected. */
  connected = false;
  /** The socket is listening. */
  accepting = false;
  /** A non-blocking connect is under way. */
  connecting = false;
  /** Used by subclasses (asynchat) to mark a channel that closes once drained. */
  closing = false;
  /** The peer address (connected) or the bound address (listening). */
  addr: Address | null = null;
  /** The wrapped socket, or a `FileWrapper` for `FileDispatcher`. */
  socket: Socket | FileWrapper | null = null;
  /** The family and type given to `createSocket`. */
  familyAndType: [number, number] | null = null;
  /**
   * Until when (`performance.now()` ms) a listening channel that ran out of
   * fds leaves accepting alone; 0 when it is not backing off.
   */
  acceptPausedUntil = 0;
  /** The map this channel lives in (internal). */
  _map: SocketMap;
  /** The fd under which this channel is in its map, or null. */
  _fileno: number | null = null;
  /** The epoll pass this channel is registered with, if any (internal). */
  _epollPass: unknown = null;
  /** The events registered with that pass (internal). */
  _epollEvents = 0;
  readonly #id = nextId++;

  /**
   * Wraps `sock` (made non-blocking; connected if it has a peer) or starts
   * empty (call `createSocket`). `map` defaults to the global `socketMap`.
   */
  constructor(sock: Socket | null = null, map?: SocketMap) {
    this._map = map ?? socketMap;
    if (sock) {
      sock.setblocking(false);
      this.setSocket(sock, map);
      this.connected = true;
      try {
        this.addr = sock.getpeername();
      } catch (error) {
        if (error instanceof OSError && (error.errno === E.ENOTCONN || error.errno === E.EINVAL)) {
          // A socket that is not connected yet (or is a listener).
          this.connected = false;
        } else {
          this.delChannel(map);
          throw error;
        }
      }
    }
  }

  /** Like Python's repr: `<EchoHandler connected 127.0.0.1:4242 at #3>`. */
  toString(): string {
    const status = [this.constructor.name];
    if (this.accepting && this.addr) status.push("listening");
    else if (this.connected) status.push("connected");
    if (this.addr !== null) status.push(formatAddress(this.addr));
    return `<${status.join(" ")} at #${this.#id}>`;
  }

  /** Adds this channel to `map` (default: its own map). */
  addChannel(map?: SocketMap): void {
    const m = map ?? this._map;
    const fd = this._fileno!;
    m.set(fd, this);
    announceAdded(m, fd);
  }

  /** Removes this channel from `map` (default: its own map). */
  delChannel(map?: SocketMap): void {
    const fd = this._fileno;
    const m = map ?? this._map;
    if (fd !== null && m.get(fd) === this) {
      announceRemoved(m, fd);
      m.delete(fd);
    }
    this._fileno = null;
  }

  /**
   * Tells the loop that state `readable()`/`writable()` depend on has
   * changed (the epoll pass asks the library's own predicates again only
   * then). Call it from a subclass that changes such state outside a handler.
   */
  _interestChanged(): void {
    const fd = this._fileno;
    if (fd !== null) announceChanged(this._map, fd);
  }

  /** The fd of the socket, or null once closed. */
  fileno(): number | null {
    return this._fileno;
  }

  /** Creates a non-blocking socket (`AF_INET`, `SOCK_STREAM` by default) and adds the channel. */
  createSocket(family: number = C.AF_INET, type: number = C.SOCK_STREAM): void {
    this.familyAndType = [family, type];
    const sock = new Socket(family, type | C.SOCK_NONBLOCK);
    this.setSocket(sock);
  }

  /** Adopts `sock` and adds the channel to `map`. */
  setSocket(sock: Socket | FileWrapper, map?: SocketMap): void {
    adopted.add(sock);
    this.socket = sock;
    this._fileno = sock.fileno();
    this.addChannel(map);
    if (sock instanceof SSLSocket) tls.tlsAdopted(this, sock);
  }

  /** Sets `SO_REUSEADDR` (errors ignored, as in the reference). */
  setReuseAddr(): void {
    try {
      const sock = this.socket as Socket;
      sock.setsockopt(
        C.SOL_SOCKET,
        C.SO_REUSEADDR,
        sock.getsockopt(C.SOL_SOCKET, C.SO_REUSEADDR) | 1,
      );
    } catch (error) {
      if (!(error instanceof OSError)) throw error;
    }
  }

  // ---- predicates for the loop ----

  /** Whether the loop should watch for reading. */
  readable(): boolean {
    return true;
  }

  /** Whether the loop should watch for writing. */
  writable(): boolean {
    return true;
  }

  /**
   * Library policy applied to what the predicates asked for (see
   * `_interest.ts`); the base class applies none.
   * @ignore
   */
  [kPolicy](want: number): number {
    // A TLS channel watches what OpenSSL waits for (dispatcher/tls.ts).
    return this.socket instanceof SSLSocket ? tls.tlsPolicy(this, this.socket, want) : want;
  }

  /**
   * Upgrades this live connection to TLS (STARTTLS): the socket is wrapped
   * with `context` and the loop runs the handshake (a client's
   * `handleConnect` does not fire again). Call it after the plaintext
   * go-ahead has been sent.
   *
   * @example
   * ```ts ignore
   * this.send("220 Ready to start TLS\r\n");
   * this.startTls(serverContext, { serverSide: true });
   * ```
   */
  startTls(context: SSLContext, options?: tls.StartTlsOptions): void {
    tls.startTls(this, context, options);
  }

  // ---- socket methods ----

  /** Starts listening. */
  listen(num: number): void {
    this.accepting = true;
    this._interestChanged();
    (this.socket as Socket).listen(num);
  }

  /** Binds the socket and remembers the address. */
  bind(addr: Address): void {
    this.addr = addr;
    (this.socket as Socket).bind(addr);
  }

  /**
   * Starts connecting. In progress: `connecting` stays true and the loop
   * reports the result; done at once: `handleConnectEvent` runs now.
   */
  connect(address: Address): void {
    this.connected = false;
    this.connecting = true;
    this._interestChanged();
    const err = (this.socket as Socket).connectEx(address);
    if (err === E.EINPROGRESS || err === E.EALREADY || err === E.EWOULDBLOCK) {
      this.addr = address;
      return;
    }
    if (err === 0 || err === E.EISCONN) {
      this.addr = address;
      this.handleConnectEvent();
    } else {
      throw new OSError(err, { syscall: "connect" });
    }
  }

  /**
   * Accepts a connection: `[socket, address]`, or null when there was none
   * after all (`EWOULDBLOCK`, `ECONNABORTED`). Out of fds (`EMFILE`,
   * `ENFILE`), it logs once, stops accepting for
   * {@linkcode ACCEPT_BACKOFF_SECONDS} and returns null, instead of
   * spinning on a listener that stays readable.
   */
  accept(): [Socket, Address] | null {
    const sock = this.socket as Socket;
    let fd: number;
    try {
      fd = sock.tryAccept();
    } catch (error) {
      if (error instanceof OSError) {
        if (error.errno === E.ECONNABORTED || error.errno === E.EAGAIN) return null;
        if (error.errno === E.EMFILE || error.errno === E.ENFILE) {
          this.#backOffAccepting(error);
          return null;
        }
      }
      throw error;
    }
    if (fd < 0) return null;
    if (this.acceptPausedUntil !== 0) this.acceptPausedUntil = 0;
    this.#outOfFds = false;
    const conn = new Socket(sock.family, sock.type, sock.proto, fd);
    return [conn, sock.lastAcceptedAddress()];
  }

  // Logged once per episode: the loop sets acceptPausedUntil back to 0 when
  // each pause ends, so it cannot tell a retry from a new shortage.
  #outOfFds = false;

  #backOffAccepting(error: OSError): void {
    if (!this.#outOfFds) {
      this.#outOfFds = true;
      this.logInfo(
        `${error.message} on accept: ${this} pauses accepting, retrying every ${ACCEPT_BACKOFF_SECONDS}s until an fd is free`,
        "error",
      );
    }
    this.acceptPausedUntil = performance.now() + ACCEPT_BACKOFF_SECONDS * 1000;
  }

  /**
   * Sends `data`; returns the bytes sent, 0 when it would block. A gone peer
   * (`EPIPE`, `ECONNRESET`, ...) calls `handleClose` and returns 0.
   */
  send(data: BytesLike): number {
    try {
      const n = (this.socket as Socket).trySend(toBytes(data));
      return n < 0 ? 0 : n;
    } catch (error) {
      if (error instanceof OSError && DISCONNECTED.has(error.errno)) {
        this.handleClose();
        return 0;
      }
      throw error;
    }
  }

  /**
   * Receives up to `bufferSize` bytes. End of stream or a gone peer calls
   * `handleClose` and returns empty bytes; so does nothing to read (a
   * spurious wake-up) but without closing.
   */
  recv(bufferSize: number): Uint8Array {
    if (!Number.isInteger(bufferSize) || bufferSize < 0) {
      throw new RangeError(`bufferSize must be a non-negative integer, not ${bufferSize}`);
    }
    if (bufferSize > recvScratch.length) recvScratch = new Uint8Array(bufferSize);
    let n: number;
    try {
      n = this.socket!.tryRecvInto(recvScratch, bufferSize);
    } catch (error) {
      if (error instanceof OSError && DISCONNECTED.has(error.errno)) {
        this.handleClose();
        return EMPTY;
      }
      throw error;
    }
    if (n > 0) {
      if (n <= POOL_MAX) return fromPool(recvScratch, n);
      if (n * 2 < recvScratch.length) return recvScratch.slice(0, n);
      // A big read keeps the buffer it landed in (no copy); a new one takes its place.
      const out = recvScratch.subarray(0, n);
      recvScratch = new Uint8Array(recvScratch.length);
      return out;
    }
    if (n === 0 && bufferSize > 0) this.handleClose();
    return new Uint8Array(0);
  }

  /**
   * Receives into `buffer` (up to `nbytes`) and returns the count: the
   * allocation-free twin of {@linkcode recv}, for handlers that reuse one
   * buffer. End of stream or a gone peer calls `handleClose` and returns 0;
   * so does nothing to read, without closing.
   */
  recvInto(buffer: Uint8Array, nbytes: number = buffer.length): number {
    if (!(buffer instanceof Uint8Array)) throw new TypeError("buffer must be a Uint8Array");
    if (!Number.isInteger(nbytes) || nbytes < 0 || nbytes > buffer.length) {
      throw new RangeError(`nbytes must be an integer 0-${buffer.length}, not ${nbytes}`);
    }
    let n: number;
    try {
      n = this.socket!.tryRecvInto(buffer, nbytes);
    } catch (error) {
      if (error instanceof OSError && DISCONNECTED.has(error.errno)) {
        this.handleClose();
        return 0;
      }
      throw error;
    }
    if (n === 0 && nbytes > 0) this.handleClose();
    return n < 0 ? 0 : n;
  }

  /** Closes the socket and leaves the map. Safe to call twice. */
  close(): void {
    this.connected = false;
    this.accepting = false;
    this.connecting = false;
    this.delChannel();
    const sock = this.socket;
    if (sock !== null) {
      try {
        sock.close();
      } catch (error) {
        if (
          !(error instanceof OSError) ||
          (error.errno !== E.ENOTCONN && error.errno !== E.EBADF)
        ) throw error;
      }
    }
  }

  // ---- logging ----

  /** Writes `log: message` to stderr. */
  log(message: unknown): void {
    console.error(`log: ${message}`);
  }

  /** Prints `type: message` unless `type` is in `ignoreLogTypes`. */
  logInfo(message: unknown, type = "info"): void {
    if (!this.ignoreLogTypes.has(type)) console.log(`${type}: ${message}`);
  }

  // ---- events, called by the loop ----

  /** A read event: accept on a listener, finish a connect, then `handleRead`. */
  handleReadEvent(): void {
    if (this.socket instanceof SSLSocket) return tls.tlsReadEvent(this, this.socket);
    if (this.accepting) {
      // accepting sockets are never connected, they "spawn" new sockets
      this.handleAccept();
    } else if (!this.connected) {
      if (this.connecting) this.handleConnectEvent();
      this.handleRead();
    } else {
      this.handleRead();
    }
  }

  /** A connect completed (or failed: `SO_ERROR` is thrown as `OSError`). */
  handleConnectEvent(): void {
    if (this.socket instanceof SSLSocket && tls.tlsConnectEvent(this, this.socket)) return;
    const err = this.socket!.getsockopt(C.SOL_SOCKET, C.SO_ERROR);
    if (err !== 0) throw new OSError(err, { syscall: "connect", message: strerror(err) });
    this.handleConnect();
    this.connected = true;
    this.connecting = false;
    this._interestChanged();
  }

  /** A write event: finish a connect if one is under way, then `handleWrite`. */
  handleWriteEvent(): void {
    if (this.socket instanceof SSLSocket) return tls.tlsWriteEvent(this, this.socket);
    if (this.accepting) {
      // Accepting sockets shouldn't get a write event; ignore it.
      return;
    }
    if (!this.connected) {
      if (this.connecting) this.handleConnectEvent();
    }
    this.handleWrite();
  }

  /** An exceptional condition: a pending socket error closes, else `handleExpt`. */
  handleExptEvent(): void {
    const err = this.socket!.getsockopt(C.SOL_SOCKET, C.SO_ERROR);
    if (err !== 0) {
      // A pending error means the connection is dead: handle_close, not handle_expt.
      this.handleClose();
    } else {
      this.handleExpt();
    }
  }

  /**
   * A handler threw `error`: log its compact traceback through
   * `logInfo(..., "error")` and close the channel.
   */
  handleError(error: unknown): void {
    const [, t, v, tbinfo] = compactTraceback(error);
    let selfRepr: string;
    try {
      selfRepr = String(this);
    } catch {
      selfRepr = `<toString() failed for ${this.constructor.name}>`;
    }
    this.logInfo(
      `uncaptured exception, closing channel ${selfRepr} (${t}:${v} ${tbinfo})`,
      "error",
    );
    this.handleClose();
  }

  /** Urgent (out-of-band) data arrived. */
  handleExpt(): void {
    this.logInfo("unhandled incoming priority event", "warning");
  }

  /** Data can be read. */
  handleRead(): void {
    this.logInfo("unhandled read event", "warning");
  }

  /** Data can be written. */
  handleWrite(): void {
    this.logInfo("unhandled write event", "warning");
  }

  /** The connection was made. */
  handleConnect(): void {
    this.logInfo("unhandled connect event", "warning");
  }

  /**
   * A listener is readable: accept and pass the result to `handleAccepted`.
   * If that throws before a channel adopted the socket, the socket is closed
   * and the error goes on to `handleError`.
   */
  handleAccept(): void {
    const pair = this.accept();
    if (pair === null) return;
    try {
      this.handleAccepted(pair[0], pair[1]);
    } catch (error) {
      // In Python the dropped socket object closes itself; here nothing else
      // would ever close the fd, so a failing handler would leak one per connection.
      if (!adopted.has(pair[0])) pair[0].close();
      throw error;
    }
  }

  /** A connection was accepted; the default closes it. */
  handleAccepted(sock: Socket, _addr: Address): void {
    sock.close();
    this.logInfo("unhandled accepted event", "warning");
  }

  /** The socket closed; the default closes the channel. */
  handleClose(): void {
    this.logInfo("unhandled close event", "warning");
    this.close();
  }
}

/** Log types `logInfo` stays silent about (assign a new Set to change it). */
export interface Dispatcher {
  /** Log types that `logInfo` does not print; default `{"warning"}`. */
  ignoreLogTypes: Set<string>;
}
/** The shared default of `ignoreLogTypes`: read-only, like the reference's frozenset. */
class FrozenSet<T> extends Set<T> {
  frozen?: boolean;
  constructor(items: Iterable<T>) {
    super(items);
    this.frozen = true;
  }
  override add(value: T): this {
    if (this.frozen) throw new TypeError("the default ignoreLogTypes is shared: assign a new Set");
    return super.add(value);
  }
  override delete(_value: T): boolean {
    throw new TypeError("the default ignoreLogTypes is shared: assign a new Set");
  }
  override clear(): void {
    throw new TypeError("the default ignoreLogTypes is shared: assign a new Set");
  }
}
Dispatcher.prototype.ignoreLogTypes = new FrozenSet(["warning"]);
markTrackedPredicate(Dispatcher.prototype.readable);
markTrackedPredicate(Dispatcher.prototype.writable);

/**
 * A dispatcher with an output buffer: `send` queues what the socket does not
 * take at once, and the loop sends the rest as the socket becomes writable.
 */
export class DispatcherWithSend extends Dispatcher {
  /** Bytes waiting to be sent. */
  outBuffer: ByteQueue = new ByteQueue(this);

  /** Sends from the front of `outBuffer`. */
  initiateSend(): void {
    const out = this.outBuffer;
    if (out.length === 0) return;
    const sent = super.send(out.front(65536));
    out.consume(sent);
  }

  /** Sends more of the buffer. */
  override handleWrite(): void {
    this.initiateSend();
  }

  /** Writable while connecting or while output is queued. */
  override writable(): boolean {
    return !this.connected || this.outBuffer.length > 0;
  }

  /**
   * Queues `data` and starts sending; returns the bytes accepted (all of them).
   * With nothing queued the socket gets `data` directly, with no copy.
   */
  override send(data: BytesLike): number {
    const bytes = toBytes(data);
    if (this.debug) this.logInfo(`sending ${bytes.length} bytes`);
    if (this.outBuffer.length === 0 && this.connected && this.socket !== null) {
      const sent = super.send(bytes);
      if (sent < bytes.length && this.socket !== null && this._fileno !== null) {
        this.outBuffer.push(bytes.subarray(sent));
      }
      return bytes.length;
    }
    this.outBuffer.push(bytes);
    this.initiateSend();
    return bytes.length;
  }
}
markTrackedPredicate(DispatcherWithSend.prototype.writable);
