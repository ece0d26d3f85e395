/**
 * `Dispatcher` and `DispatcherWithSend`: asyncore's `dispatcher` and
 * `dispatcher_with_send`, method for method, in the reference's order.
 *
 * @module
 */

import { errno as E, OSError, strerror } from "../ffi/errno.ts";
import { C } from "../ffi/platform.ts";
import { acceptedSocket, type BytesLike, Socket } from "../ffi/socket.ts";
import type { Address } from "../ffi/structs.ts";
import { ByteQueue } from "./byte_queue.ts";
import { compactTraceback, DISCONNECTED, isReraised } from "./errors.ts";
import type { FileWrapper } from "./file_dispatcher.ts";
import { announceAdded, removeFromMap, type SocketMap, socketMap } from "./map.ts";
import { callLater, type TimerHandle } from "./timers.ts";
import { FileProducer, type FileProducerOptions, FileQueue } from "./file_producer.ts";
import type { SendfileSource } from "../ffi/sendfile.ts";
import {
  ChannelCore,
  kAdopt,
  kCore,
  kPolicy,
  notifyInterest,
  READ,
  trackPredicates,
} from "./_interest.ts";
import { handleErrorSafely } from "./_events.ts";
import {
  ACCEPT_BATCH,
  applyBackpressure,
  checkIdleSeconds,
  ConnectionCounter,
  DEFAULT_HIGH_WATER_MARK,
  IdleWatch,
  moveSlot,
  pauseIfOver,
  releaseSlot,
  resumeIfDrained,
  type Watched,
} from "./_limits.ts";
import type { SSLContext } from "../tls/context.ts";
import { SSLSocket } from "../tls/ssl_socket.ts";
import * as tls from "./tls.ts";
import { asBytes } from "../ffi/bytes.ts";

const EMPTY = new Uint8Array(0);
/** One receive buffer shared by every channel: the loop runs one handler at a time. */
let recvScratch = new Uint8Array(65536);

export { ACCEPT_BATCH };

// An idle hook's error goes where an event handler's would.
function guarded(ch: Watched, fn: () => void): void {
  try {
    fn();
  } catch (error) {
    if (isReraised(error)) throw error;
    handleErrorSafely(ch as unknown as Dispatcher, error);
  }
}

/** How long a listening channel stops accepting after running out of fds. */
export const ACCEPT_BACKOFF_SECONDS = 0.1;

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
 * the loop, as Python's `asyncore.dispatcher`. Subclass it and override the
 * `handle*` methods; a handler that throws goes to `handleError`.
 *
 * @example A listening server that hands each connection to a handler
 * ```ts ignore
 * import { type Address, Dispatcher, loop, type Socket } from "jsr:@asyncore/deno";
 *
 * class Server extends Dispatcher {
 *   constructor(port: number) {
 *     super();
 *     this.createSocket();
 *     this.setReuseAddr();
 *     this.bind(["127.0.0.1", port]);
 *     this.listen(5);
 *   }
 *   override handleAccepted(sock: Socket, addr: Address) {
 *     console.log("connection from", addr);
 *     sock.close();
 *   }
 * }
 * new Server(8080);
 * loop();
 * ```
 */
export class Dispatcher {
  /** Log every `send` (used by `DispatcherWithSend`). */
  debug = false;
  /** Used by subclasses (asynchat) to mark a channel that closes once drained. */
  closing = false;
  /** The peer address (connected) or the bound address (listening). */
  addr: Address | null = null;
  /** The wrapped socket, or a `FileWrapper` for `FileDispatcher`. */
  socket: Socket | FileWrapper | null = null;
  /** The family and type given to `createSocket`. */
  familyAndType: [number, number] | null = null;
  /**
   * A listener: the most live connections accepted through it; past it a
   * new connection goes to `handleAcceptRefused`. Default Infinity.
   */
  maxConnections: number = Infinity;
  /**
   * A listener: the most live connections from one peer IP address (Unix
   * socket peers count as one host). Default Infinity.
   */
  maxConnectionsPerHost: number = Infinity;
  /**
   * A byte was received or sent since the idle watch last looked.
   * @ignore
   */
  _ioSeen = false;
  /** @ignore */
  readonly [kCore]: ChannelCore;
  #idle: IdleWatch | null = null;
  #conns: ConnectionCounter | null = null;
  #connected = false;
  #accepting = false;
  #connecting = false;
  #acceptPausedUntil = 0;
  #acceptResume: TimerHandle | null = null;
  readonly #id = nextId++;

  /**
   * Wraps `sock` (made non-blocking; connected if it has a peer) or starts
   * empty (call `createSocket`). `map` defaults to the global `socketMap`.
   *
   * @param sock A socket to serve (e.g. the one `handleAccepted` receives), or null.
   * @param map The map the loop serves this channel from.
   * @throws {OSError} When `sock` cannot be made non-blocking or queried.
   */
  constructor(sock: Socket | null = null, map?: SocketMap) {
    this[kCore] = new ChannelCore(map ?? socketMap);
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

  /**
   * The wrapped {@linkcode Socket}, typed as one: `this.sock.getsockname()`
   * needs no cast. `socket` stays the field Python has (it may also hold a
   * `FileWrapper`, or nothing yet).
   *
   * @throws {TypeError} When the channel has no socket yet (call
   * `createSocket`/`setSocket`) or holds something else (a `FileDispatcher`'s
   * `FileWrapper`).
   */
  get sock(): Socket {
    const s = this.socket;
    if (s instanceof Socket) return s;
    const name = this.constructor.name;
    throw new TypeError(
      s === null
        ? `${name} has no socket yet (call createSocket or setSocket first)`
        : `${name}.socket is a ${s.constructor.name} (fd ${s.fileno()}), not a Socket`,
    );
  }

  /** Like Python's repr: `<EchoHandler connected 127.0.0.1:4242 at #3>`. */
  toString(): string {
    const status = [this.constructor.name];
    if (this.accepting && this.addr) status.push("listening");
    else if (this.connected) status.push("connected");
    if (this.addr !== null) status.push(formatAddress(this.addr));
    return `<${status.join(" ")} at #${this.#id}>`;
  }

  // State the library's predicates read: each change tells the pollers, so
  // the epoll backend can leave idle channels alone (see `_interest.ts`).

  /** The socket is connected. */
  get connected(): boolean {
    return this.#connected;
  }
  set connected(value: boolean) {
    if (this.#connected === value) return;
    this.#connected = value;
    notifyInterest(this);
  }

  /** The socket is listening. */
  get accepting(): boolean {
    return this.#accepting;
  }
  set accepting(value: boolean) {
    if (this.#accepting === value) return;
    this.#accepting = value;
    notifyInterest(this);
  }

  /** A non-blocking connect is under way. */
  get connecting(): boolean {
    return this.#connecting;
  }
  set connecting(value: boolean) {
    if (this.#connecting === value) return;
    this.#connecting = value;
    notifyInterest(this);
  }

  /**
   * Until when (`performance.now()` ms) a listening channel that ran out of
   * fds leaves accepting alone; 0 when it is not backing off.
   */
  get acceptPausedUntil(): number {
    return this.#acceptPausedUntil;
  }

  /**
   * The map this channel lives in (asyncore's `_map`), for handing on to the
   * channels it creates: `new Handler(sock, this._map)`.
   * @ignore
   */
  get _map(): SocketMap {
    return this[kCore].map;
  }

  /** Adds this channel to `map` (default: its own map). */
  addChannel(map?: SocketMap): void {
    const m = map ?? this[kCore].map;
    const fd = this[kCore].fd!;
    m.set(fd, this);
    announceAdded(m, fd);
  }

  /** Removes this channel from `map` (default: its own map). */
  delChannel(map?: SocketMap): void {
    const core = this[kCore];
    const fd = core.fd;
    const m = map ?? core.map;
    if (fd !== null) removeFromMap(m, fd, this);
    core.fd = null;
  }

  /**
   * Tells the loop that this channel's `readable()`/`writable()` answer may
   * have changed. The library's own state sends this notice by itself; a
   * class with predicates of its own whose answer changes from outside the
   * loop (a Deno timer, a promise) calls it to wake a waiting `loopAsync`.
   */
  interestChanged(): void {
    notifyInterest(this);
  }

  /** The fd of the socket, or null once closed. */
  fileno(): number | null {
    return this[kCore].fd;
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
    this[kCore].fd = sock.fileno();
    moveSlot(sock, this);
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

  /**
   * Sets `SO_REUSEPORT` (Linux 3.9+, the BSDs): several sockets, in one
   * process or many, can then bind and listen on the same address and port,
   * and the kernel spreads new connections across the listening ones — one
   * loop per core, each with its own listener (see `examples/echo_workers.ts`).
   * Call it before `bind`. Unlike {@linkcode setReuseAddr}, a failure is not
   * ignored (a program counting on it would otherwise fail to bind later):
   * it throws `OSError`.
   */
  setReusePort(): void {
    (this.socket as Socket).setsockopt(C.SOL_SOCKET, C.SO_REUSEPORT, 1);
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
   * `_interest.ts`): a listener backing off from EMFILE does not read.
   * @ignore
   */
  [kPolicy](want: number): number {
    const paused = this.#acceptPausedUntil;
    if (paused !== 0 && want & READ) {
      // Checked against the clock too, so single passes (poll(), poll2())
      // driven by a program without timers also resume.
      if (performance.now() < paused) return want & ~READ;
      this.#acceptPausedUntil = 0;
    }
    // A TLS channel watches what OpenSSL waits for (dispatcher/tls.ts).
    if (this.socket instanceof SSLSocket) want = tls.tlsPolicy(this, this.socket, want);
    return applyBackpressure(this, want);
  }

  // ---- send backpressure (the queue lives in DispatcherWithSend and AsyncChat) ----

  /**
   * When a read event leaves more than this many bytes queued
   * (`queuedBytes`), the loop stops reading this channel (even if
   * `readable()` is overridden); it reads again once the queue is down to
   * half of it, and calls `handleDrain`. Nothing is lost: the peer's bytes
   * wait in the kernel, and TCP slows the peer down. Output queued outside
   * the channel's own read events (on connect, from a timer or another
   * channel) does not pause it. `DispatcherWithSend` and `AsyncChat`
   * default to 1 MiB; a plain `Dispatcher`, which queues nothing, to
   * `Infinity` (the reference's unbounded behaviour).
   */
  highWaterMark: number = Infinity;
  /**
   * Reading is paused by `highWaterMark` (internal).
   * @ignore
   */
  _readPaused = false;

  /** The bytes queued for sending; a plain `Dispatcher` queues none. */
  get queuedBytes(): number {
    return 0;
  }

  /**
   * The queue went over `highWaterMark` and is now down to half of it
   * (reading resumes): a good moment to queue more, as Node's `'drain'`.
   * The default does nothing.
   */
  handleDrain(): void {}

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
    if (this.#acceptPausedUntil !== 0) this.#endAcceptPause();
    this.#outOfFds = false;
    return [acceptedSocket(sock, fd), sock.lastAcceptedAddress()];
  }

  // Logged once per episode: each pause ends by itself, so the end of a pause
  // cannot tell a retry from a new shortage.
  #outOfFds = false;

  #backOffAccepting(error: OSError): void {
    if (!this.#outOfFds) {
      this.#outOfFds = true;
      this.logInfo(
        `${error.message} on accept: ${this} pauses accepting, retrying every ${ACCEPT_BACKOFF_SECONDS}s until an fd is free`,
        "error",
      );
    }
    this.#acceptPausedUntil = performance.now() + ACCEPT_BACKOFF_SECONDS * 1000;
    // The end of the pause is an event of its own: it shortens the loop's
    // wait and tells the pollers to ask this listener again.
    this.#acceptResume?.cancel();
    this.#acceptResume = callLater(ACCEPT_BACKOFF_SECONDS, () => {
      this.#acceptResume = null;
      notifyInterest(this);
    });
  }

  #endAcceptPause(): void {
    this.#acceptPausedUntil = 0;
    this.#acceptResume?.cancel();
    this.#acceptResume = null;
  }

  /**
   * Sends `data`; returns the bytes sent, 0 when it would block. A gone peer
   * (`EPIPE`, `ECONNRESET`, ...) calls `handleClose` and returns 0.
   */
  send(data: BytesLike): number {
    try {
      const n = (this.socket as Socket).trySend(asBytes(data));
      if (n > 0) this._ioSeen = true;
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
    if (bufferSize === 0) return new Uint8Array(0); // as Python's socket.recv(0): no system call
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
      this._ioSeen = true;
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
    if (n > 0) this._ioSeen = true;
    else if (n === 0 && nbytes > 0) this.handleClose();
    return n < 0 ? 0 : n;
  }

  /** Closes the socket and leaves the map. Safe to call twice. */
  close(): void {
    this.connected = false;
    this.accepting = false;
    this.connecting = false;
    if (this.#acceptResume !== null) this.#endAcceptPause();
    this.#idle?.stop();
    this.#idle = null;
    releaseSlot(this);
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
    } else {
      // Backpressure starts where output answers this channel's own input.
      const queuedBefore = this.queuedBytes;
      if (!this.connected) {
        if (this.connecting) this.handleConnectEvent();
        this.handleRead();
      } else {
        this.handleRead();
      }
      pauseIfOver(this, queuedBefore);
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
   * A listener is readable: accepts connections until none is left (or
   * {@linkcode ACCEPT_BATCH} were taken in this event), each passed to
   * `handleAccepted`, or to `handleAcceptRefused` when it would exceed
   * `maxConnections` or `maxConnectionsPerHost`. If a handler throws before
   * a channel adopted the socket, the socket is closed and the error goes on
   * to `handleError`. (A subclass overriding this method keeps the
   * reference's one accept per event.)
   */
  handleAccept(): void {
    for (let i = 0; i < ACCEPT_BATCH; i++) {
      const pair = this.accept();
      if (pair === null) return;
      this.#admit(pair[0], pair[1]);
      if (!this.accepting) return; // a handler closed the listener
    }
  }

  #admit(sock: Socket, addr: Address): void {
    const conns = this.#conns ??= new ConnectionCounter();
    const admitted = conns.admits(addr, this.maxConnections, this.maxConnectionsPerHost);
    if (admitted) conns.take(sock, addr);
    try {
      if (admitted) this.handleAccepted(sock, addr);
      else this.handleAcceptRefused(sock, addr);
    } catch (error) {
      // In Python the dropped socket object closes itself; here nothing else
      // would ever close the fd, so a failing handler would leak one per connection.
      if (!adopted.has(sock)) sock.close();
      throw error;
    } finally {
      // Closed without a channel adopting it: its slot is free again.
      if (!adopted.has(sock) && sock.fileno() < 0) releaseSlot(sock);
    }
  }

  /** A listener: the live connections accepted through it (freed as their channels close). */
  get connectionCount(): number {
    return this.#conns?.live ?? 0;
  }

  /**
   * A connection past `maxConnections` or `maxConnectionsPerHost`; the
   * default closes it. A subclass may send a refusal first (the socket is
   * non-blocking: `sock.send` what fits, e.g. `"421 Too many connections\r\n"`)
   * or hand it to a channel that does.
   */
  handleAcceptRefused(sock: Socket, addr: Address): void {
    sock.close();
    this.logInfo(`refused a connection from ${formatAddress(addr)}: over the limit`, "warning");
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

  // ---- idle timeout ----

  /**
   * After `seconds` with no byte received or sent (counted from this call),
   * `handleIdleTimeout` runs; null turns the timeout off. Cancelled by
   * `close()`. A read or send costs one field store, never a timer
   * operation; the timer looks four times per period, so the call comes
   * between `seconds` and `1.25 * seconds` after the last byte. Bytes
   * moved by calling the socket's own methods directly are not seen.
   *
   * @example Close peers that stay silent for a minute
   * ```ts ignore
   * class Handler extends DispatcherWithSend {
   *   constructor(sock: Socket) {
   *     super(sock);
   *     this.setIdleTimeout(60);
   *   }
   * }
   * ```
   */
  setIdleTimeout(seconds: number | null): void {
    const s = checkIdleSeconds(seconds);
    this.#idle?.stop();
    this.#idle = s === null ? null : new IdleWatch(this, s, guarded);
  }

  /** The idle timeout in seconds, or null when none is set. */
  get idleTimeout(): number | null {
    return this.#idle?.seconds ?? null;
  }

  /**
   * No byte in or out for the idle timeout: the default logs it
   * (`logInfo(..., "info")`) and closes. If an override leaves the channel
   * open, the next call comes a whole timeout later (unless bytes move).
   */
  handleIdleTimeout(): void {
    this.logInfo(`${this} idle for ${this.idleTimeout}s: closing`, "info");
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
trackPredicates(Dispatcher.prototype.readable, Dispatcher.prototype.writable);

/**
 * A dispatcher with an output buffer, as Python's `dispatcher_with_send`:
 * `send` queues what the socket does not take at once, and the loop sends
 * the rest as the socket becomes writable.
 *
 * @example The echo handler
 * ```ts ignore
 * import { DispatcherWithSend } from "jsr:@asyncore/deno";
 *
 * class EchoHandler extends DispatcherWithSend {
 *   override handleRead() {
 *     const data = this.recv(8192);
 *     if (data.length > 0) this.send(data); // never blocks, never drops
 *   }
 * }
 * ```
 */
export class DispatcherWithSend extends Dispatcher {
  #out: ByteQueue = this.#adopt(new ByteQueue());

  /**
   * Bytes waiting to be sent. Assigning a new `ByteQueue` (the port of
   * Python's `self.out_buffer = b''`) works under every poller: the channel
   * adopts it. Anything else is a `TypeError`, as is a queue that already
   * belongs to another channel.
   */
  get outBuffer(): ByteQueue {
    return this.#out;
  }
  set outBuffer(queue: ByteQueue) {
    if (queue === this.#out) return;
    if (!(queue instanceof ByteQueue)) {
      throw new TypeError(
        `outBuffer must be a ByteQueue (e.g. new ByteQueue()), not ${
          queue === null ? "null" : typeof queue
        }`,
      );
    }
    const old = this.#out;
    this.#out = this.#adopt(queue);
    old[kAdopt](null);
    notifyInterest(this);
  }

  #adopt(queue: ByteQueue): ByteQueue {
    queue[kAdopt](() => notifyInterest(this));
    return queue;
  }

  /** See `Dispatcher.highWaterMark`; default 1 MiB (`Infinity`: the reference's unbounded queue). */
  override highWaterMark: number = DEFAULT_HIGH_WATER_MARK;

  /** The bytes queued for sending (`outBuffer.length`). */
  override get queuedBytes(): number {
    return this.outBuffer.length;
  }
  #files: FileQueue | null = null;

  /**
   * Files queued by `sendFile`, and what was sent after them; null when
   * none. Setting it tells the pollers (`writable()` reads it).
   * @ignore
   */
  get _files(): FileQueue | null {
    return this.#files;
  }
  /** @ignore */
  set _files(files: FileQueue | null) {
    if (this.#files === files) return;
    this.#files = files;
    notifyInterest(this);
  }

  /** Sends from the front of `outBuffer` (then of the queued files). */
  initiateSend(): void {
    const out = this.outBuffer;
    if (out.length === 0 && this._files !== null) this._files.step(this);
    if (out.length === 0) return;
    const sent = super.send(out.front(65536));
    out.consume(sent);
    if (this._readPaused) resumeIfDrained(this);
  }

  /** Sends more of the buffer. */
  override handleWrite(): void {
    this.initiateSend();
  }

  /** Writable while connecting or while output is queued. */
  override writable(): boolean {
    return !this.connected || this.outBuffer.length > 0 || this._files !== null;
  }

  /**
   * Queues `data` and starts sending; returns the bytes accepted (all of them).
   * With nothing queued the socket gets `data` directly, with no copy.
   */
  override send(data: BytesLike): number {
    const bytes = asBytes(data);
    if (this.debug) this.logInfo(`sending ${bytes.length} bytes`);
    if (this._files !== null) {
      this._files.pushBytes(bytes); // after the queued file
      return bytes.length;
    }
    if (this.outBuffer.length === 0 && this.connected && this.socket !== null) {
      const sent = super.send(bytes);
      if (sent < bytes.length && this.socket !== null && this[kCore].fd !== null) {
        this.outBuffer.push(bytes.subarray(sent));
      }
      return bytes.length;
    }
    this.outBuffer.push(bytes);
    this.initiateSend();
    return bytes.length;
  }

  /**
   * Queues a file after everything sent so far (and before anything sent
   * later), and starts sending it; the loop sends the rest with
   * non-blocking `sendfile(2)`. `file` is an fd (left open), a path
   * (closed when sent or when the channel closes) or an object with
   * `fileno()`; see {@linkcode FileProducer}. Returns the producer (its
   * `sent` counts the bytes gone).
   *
   * @example
   * ```ts ignore
   * this.send("HTTP/1.0 200 OK\r\n\r\n");
   * this.sendFile("index.html");
   * this.send("more bytes, after the file");
   * ```
   */
  sendFile(file: SendfileSource | FileProducer, options?: FileProducerOptions): FileProducer {
    const producer = file instanceof FileProducer ? file : new FileProducer(file, options);
    if (this._files === null) this._files = new FileQueue();
    this._files.pushFile(producer);
    if (this.connected) this.initiateSend();
    return producer;
  }

  /** Closes the channel and any file still queued. */
  override close(): void {
    const files = this._files;
    this._files = null;
    files?.close();
    super.close();
  }
}
trackPredicates(DispatcherWithSend.prototype.writable);
