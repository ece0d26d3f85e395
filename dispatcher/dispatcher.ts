/**
 * `Dispatcher`: asyncore's `dispatcher`, method for method, in the
 * reference's order. What the library adds (listener limits, backpressure,
 * idle timeouts, the receive pool, TLS) lives in its own modules; the
 * channel reaches its socket's bytes through the socket's transport
 * (`ffi/transport.ts`), so a TLS session, a plain socket and a pipe are
 * driven by the same methods.
 *
 * @module
 */

import { asBytes, type BytesLike } from "../ffi/bytes.ts";
import { errno as E, OSError, strerror } from "../ffi/errno.ts";
import { C } from "../ffi/platform.ts";
import { acceptedSocket, Socket } from "../ffi/socket.ts";
import type { Address } from "../ffi/structs.ts";
import { READ, type Transport, transportOf, WRITE } from "../ffi/transport.ts";
import type { SSLContext, SSLSocket, WrapSocketOptions } from "../tls/ssl.ts";
import { trackPredicates } from "./_interest.ts";
import {
  announceAdded,
  ChannelCore,
  defaultCore,
  kCore,
  kPolicy,
  notifyInterest,
  removeFromMap,
} from "./_loop_core.ts";
import { compactTraceback, isDisconnect } from "./errors.ts";
import type { FileWrapper } from "./file_wrapper.ts";
import {
  applyBackpressure,
  checkIdleSeconds,
  guarded,
  IdleWatch,
  pauseIfOver,
  resumeIfDrained,
} from "./limits.ts";
import { ACCEPT_BATCH, AcceptBackoff, admit, adoptSlot, ConnectionCounter } from "./listener.ts";
import { awaitProxyHeader, proxySettings } from "./proxy_accept.ts";
import type { ProxyProtocolVersion } from "./proxy_header.ts";
import { recvBuffer, takeReceived } from "./recv_pool.ts";
import { ChannelHooks } from "./_channel_hooks.ts";
import { FrozenSet } from "./_frozen_set.ts";
import { formatAddress } from "../ffi/address.ts";

export { ACCEPT_BACKOFF_SECONDS, ACCEPT_BATCH } from "./listener.ts";

/** fd → channel, as asyncore's `socket_map`. */
export type SocketMap = Map<number, Dispatcher>;

/** What `socket` may hold: a socket (plain or TLS) or a `FileWrapper`. */
export type ChannelSocket = Socket | FileWrapper;

const EMPTY = new Uint8Array(0);
/** How many times one read event hands bytes the transport already holds to `handleRead`. */
const MAX_DRAIN = 64;
let nextId = 1;

/**
 * A thin wrapper around a non-blocking socket, with event handlers called by
 * the loop, as Python's `asyncore.dispatcher`. Subclass it and override the
 * `handle*` methods; a handler that throws goes to `handleError`.
 *
 * @example A listening server that hands each connection to a handler
 * ```ts no-run
 * import { type Address, Dispatcher, formatAddress, loop, type Socket } from "@asyncore/deno";
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
 *     console.log("connection from", formatAddress(addr));
 *     sock.close();
 *   }
 * }
 * new Server(8080);
 * loop(); // serves until the process is stopped
 * ```
 */
export class Dispatcher {
  /** Log every `send` (used by `DispatcherWithSend`). */
  debug = false;
  /** Used by subclasses (asynchat) to mark a channel that closes once drained. */
  closing = false;
  /** The peer address (connected) or the bound address (listening). */
  addr: Address | null = null;
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
   * A listener behind a proxy (HAProxy, nginx, a cloud load balancer): each
   * connection starts with a PROXY protocol header, `"v1"` (text), `"v2"`
   * (binary) or `"any"` (either: the first byte decides); null (default)
   * for none. The header is read before `handleAccepted(sock, addr)`, and
   * `addr` is the client's address from it (v2 `LOCAL`, v1 `UNKNOWN`: the
   * socket's own peer). The limits count that address. A missing,
   * malformed, oversized or late header closes that connection only
   * (`logInfo(..., "warning")`). Bytes after the header stay for the
   * channel's first `recv` (a TLS ClientHello too); `proxyHeaderOf(sock)`
   * gives the whole header. Connections still waiting when the listener
   * closes are handed over once their header is in (`closeAll` closes
   * them). Only trusted proxies may reach such a listener: the header is
   * believed.
   */
  proxyProtocol: ProxyProtocolVersion | null = null;
  /**
   * Seconds an accepted connection has to deliver its whole PROXY header
   * (default 5; the specification asks for at least 3, a TCP retransmit).
   * Meanwhile it waits in the listener's map, not yet counted or handed over.
   */
  proxyProtocolTimeout = 5;
  /**
   * A byte was received or sent since the idle watch last looked.
   * @ignore
   */
  _ioSeen = false;
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
  /** @ignore */
  readonly [kCore]: ChannelCore;
  #socket: ChannelSocket | null = null;
  #transport: Transport | null = null;
  #idle: IdleWatch | null = null;
  #backoff: AcceptBackoff | null = null;
  #conns: ConnectionCounter | null = null;
  #connected = false;
  #accepting = false;
  #connecting = false;
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
    this[kCore] = new ChannelCore(map ?? defaultCore.map);
    if (sock) {
      sock.setblocking(false);
      this.setSocket(sock, map);
      this.connected = true;
      try {
        this.addr = sock.getpeername();
        // Connected: a transport with a session to set up may start now (it need not ask).
        this.#transport?.connectionMade();
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
    // Python's repr: host:port, or the repr of a Unix path (quoted).
    const addr = this.addr;
    if (addr !== null) {
      status.push(typeof addr === "string" ? JSON.stringify(addr) : formatAddress(addr));
    }
    return `<${status.join(" ")} at #${this.#id}>`;
  }

  // State the library's predicates read: each change tells the pollers
  // (notifyInterest), so the epoll backend can leave idle channels alone.

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
   * The wrapped socket, or a `FileWrapper` for `FileDispatcher`. Assigning
   * one (Python programs do) makes the channel use its transport.
   */
  get socket(): ChannelSocket | null {
    return this.#socket;
  }
  set socket(sock: ChannelSocket | null) {
    this.#socket = sock;
    this.#transport = null;
    if (sock !== null) {
      this.#transport = transportOf(sock);
      this.#transport.attach(new ChannelHooks(this));
    }
    notifyInterest(this);
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
    const s = this.#socket;
    if (s instanceof Socket) return s;
    const name = this.constructor.name;
    throw new TypeError(
      s === null
        ? `${name} has no socket yet (call createSocket or setSocket first)`
        : `${name}.socket is a ${s.constructor.name} (fd ${s.fileno()}), not a Socket`,
    );
  }

  /**
   * The channel's TLS socket, typed as one (`this.tlsSocket?.cipher()` needs
   * no cast), or null when the channel does not run TLS.
   */
  get tlsSocket(): SSLSocket | null {
    // The transport knows: a secure one is the TLS session of an SSLSocket.
    return this.#transport?.secure ? this.#socket as SSLSocket : null;
  }

  /** The transport of the socket; a `TypeError` when there is no socket. */
  #io(): Transport {
    const t = this.#transport;
    if (t === null) throw new TypeError(`${this.constructor.name} has no socket`);
    return t;
  }

  /**
   * The map this channel lives in (asyncore's `_map`), for handing on to the
   * channels it creates: `new Handler(sock, this._map)`.
   * @ignore
   */
  get _map(): SocketMap {
    return this[kCore].map as SocketMap;
  }

  /** Adds this channel to `map` (default: its own map). */
  addChannel(map?: SocketMap): void {
    const m = map ?? this._map;
    const fd = this[kCore].fd!;
    m.set(fd, this);
    announceAdded(m, fd);
  }

  /** Removes this channel from `map` (default: its own map). */
  delChannel(map?: SocketMap): void {
    const core = this[kCore];
    const fd = core.fd;
    if (fd !== null) removeFromMap(map ?? core.map, fd, this);
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
  setSocket(sock: ChannelSocket, map?: SocketMap): void {
    const core = this[kCore];
    core.fd = sock.fileno();
    this.socket = sock;
    const release = adoptSlot(sock);
    if (release !== null) core.releaseSlot = release;
    this.addChannel(map);
  }

  /** Sets `SO_REUSEADDR` (errors ignored, as in the reference). */
  setReuseAddr(): void {
    try {
      const sock = this.sock;
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
    this.sock.setsockopt(C.SOL_SOCKET, C.SO_REUSEPORT, 1);
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
   * `_interest.ts`): a listener backing off from EMFILE does not read; a
   * channel over its high-water mark does not read; then the transport adds
   * what it waits for (a TLS handshake, records it holds). In that order: a
   * paused channel must not get the write event by which a transport hands
   * over bytes it read ahead.
   * @ignore
   */
  [kPolicy](want: number): number {
    if (want & READ && this.#backoff?.paused()) want &= ~READ;
    want = applyBackpressure(this, want);
    const t = this.#transport;
    return t !== null ? t.wants(want) : want;
  }

  /**
   * The bytes queued for sending. A plain `Dispatcher` queues none itself;
   * its transport may hold some (TLS records gathered for the end of the
   * pass, or refused by a full socket buffer), and those count here, in
   * every class's `queuedBytes`.
   */
  get queuedBytes(): number {
    return this.#transport?.queued() ?? 0;
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
   * `handleConnect` does not fire again). Call it once the plaintext
   * go-ahead has been sent: bytes still queued would leave encrypted.
   *
   * @example
   * ```ts
   * import { DispatcherWithSend, PROTOCOL_TLS_SERVER, SSLContext } from "@asyncore/deno";
   *
   * const serverContext = new SSLContext(PROTOCOL_TLS_SERVER); // and serverContext.loadCertChain(...)
   *
   * class SmtpHandler extends DispatcherWithSend {
   *   override handleRead() {
   *     const line = new TextDecoder().decode(this.recv(1024)).trim();
   *     if (line === "STARTTLS") {
   *       this.send("220 Ready to start TLS\r\n"); // plaintext: it must have left first
   *       this.startTls(serverContext, { serverSide: true });
   *     }
   *   }
   * }
   * ```
   */
  startTls(context: SSLContext, options: StartTlsOptions = {}): void {
    const sock = this.#socket;
    if (sock === null || this.fileno() === null) {
      throw new TypeError("startTls needs an open socket");
    }
    if (this.queuedBytes > 0) {
      throw new TypeError(
        `startTls with ${this.queuedBytes} plaintext bytes still queued: call it once the queue is empty`,
      );
    }
    const tls = context.wrapSocket(sock as Socket, options);
    if (tls.getblocking()) tls.setblocking(false);
    this.socket = tls;
  }

  // ---- socket methods ----

  /** Starts listening. */
  listen(num: number): void {
    this.accepting = true;
    this.sock.listen(num);
  }

  /** Binds the socket and remembers the address. */
  bind(addr: Address): void {
    this.addr = addr;
    this.sock.bind(addr);
  }

  /**
   * Starts connecting. In progress: `connecting` stays true and the loop
   * reports the result; done at once: `handleConnectEvent` runs now.
   */
  connect(address: Address): void {
    this.connected = false;
    this.connecting = true;
    const err = this.sock.connectEx(address);
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
    const sock = this.sock;
    const fd = (this.#backoff ??= new AcceptBackoff()).accept(this, sock);
    return fd < 0 ? null : [acceptedSocket(sock, fd), sock.lastAcceptedAddress()];
  }

  /**
   * Sends `data`; returns the bytes sent, 0 when it would block. A gone peer
   * (`EPIPE`, `ECONNRESET`, ...) calls `handleClose` and returns 0.
   */
  send(data: BytesLike): number {
    try {
      const n = this.#io().trySend(asBytes(data));
      if (n > 0) this._ioSeen = true;
      return n < 0 ? 0 : n;
    } catch (error) {
      if (!isDisconnect(error)) throw error;
      this.handleClose();
      return 0;
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
    const n = this.#read(recvBuffer(bufferSize), bufferSize);
    return n > 0 ? takeReceived(n) : EMPTY;
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
    return this.#read(buffer, nbytes);
  }

  /** One read into `buffer`: the count; 0 at the end (after `handleClose`) or when it would block. */
  #read(buffer: Uint8Array, n: number): number {
    let got: number;
    try {
      got = this.#io().tryRecvInto(buffer, n);
    } catch (error) {
      if (!isDisconnect(error)) throw error;
      this.handleClose();
      return 0;
    }
    if (got > 0) this._ioSeen = true;
    else if (got === 0 && n > 0) this.handleClose();
    return got < 0 ? 0 : got;
  }

  /** Closes the channel at the end of a `using` block (`close()`). */
  [Symbol.dispose](): void {
    this.close();
  }

  /** Closes the socket and leaves the map. Safe to call twice. */
  close(): void {
    this.connected = false;
    this.accepting = false;
    this.connecting = false;
    this.#backoff?.end();
    this.#idle?.stop();
    this.#idle = null;
    const core = this[kCore];
    const release = core.releaseSlot;
    core.releaseSlot = null;
    release?.();
    this.delChannel();
    const t = this.#transport;
    if (t !== null) {
      try {
        t.close();
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
  // The transport sees each event first: a TLS session uses events for its
  // handshake, and may hand a read to the write side or the reverse.

  /** A read event: accept on a listener, finish a connect, then `handleRead`. */
  handleReadEvent(): void {
    if (this.accepting) {
      // accepting sockets are never connected, they "spawn" new sockets
      this.handleAccept();
      return;
    }
    const t = this.#io();
    const events = t.ready(READ);
    if (events === 0) return;
    // Backpressure starts where output answers this channel's own input.
    const queuedBefore = this.queuedBytes;
    if (!this.connected && this.connecting) {
      this.handleConnectEvent();
      if (t.busy) {
        t.ready(events); // the transport sets up its session first: its first step now
        return;
      }
    }
    if (events & WRITE) {
      // A write waited for this read (a TLS renegotiation or key update).
      this.handleWrite();
      if (this.fileno() === null) return;
    }
    this.handleRead();
    this.#drainBuffered(t);
    if (this.fileno() !== null) pauseIfOver(this, queuedBefore);
  }

  /** Hands `handleRead` what the transport already holds: the fd will not report it. */
  #drainBuffered(t: Transport): void {
    for (let i = 0; i < MAX_DRAIN; i++) {
      if (this.fileno() === null || this.#transport !== t || t.buffered() === 0) return;
      // The transport asks for the rest once readable() says so, or once the
      // queue is down again (the read event's end pauses this channel).
      if (!this.readable() || this.queuedBytes > this.highWaterMark) return;
      this.handleRead();
    }
  }

  /** A connect completed (or failed: `SO_ERROR` is thrown as `OSError`). */
  handleConnectEvent(): void {
    const err = this.#socket!.getsockopt(C.SOL_SOCKET, C.SO_ERROR);
    if (err !== 0) throw new OSError(err, { syscall: "connect", message: strerror(err) });
    // A transport with a session to set up (TLS) calls handleConnect once it is up.
    if (!this.#io().connectionMade()) return;
    this.handleConnect();
    this.connected = true;
    this.connecting = false;
  }

  /** A write event: finish a connect if one is under way, then `handleWrite`. */
  handleWriteEvent(): void {
    if (this.accepting) {
      // Accepting sockets shouldn't get a write event; ignore it.
      return;
    }
    const t = this.#io();
    const events = t.ready(WRITE);
    // The transport may have sent output it held: that can end a pause.
    if (this._readPaused) resumeIfDrained(this);
    if (events === 0) return;
    if (!this.connected) {
      if (this.connecting) {
        this.handleConnectEvent();
        if (t.busy) {
          t.ready(events);
          return;
        }
      }
    }
    if (events & READ) {
      // A read waited for this write, or bytes the transport holds wait for a handler.
      this.handleRead();
      this.#drainBuffered(t);
      if (this.fileno() === null) return;
    }
    if (events & WRITE) this.handleWrite();
  }

  /** An exceptional condition: a pending socket error closes, else `handleExpt`. */
  handleExptEvent(): void {
    const err = this.#socket!.getsockopt(C.SOL_SOCKET, C.SO_ERROR);
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

  /**
   * Urgent (out-of-band) data arrived. The default logs it and drops the
   * urgent byte: unread, it keeps the fd exceptional and every pass would
   * report it again (a peer's `MSG_OOB` must not make the loop spin).
   */
  handleExpt(): void {
    this.logInfo("unhandled incoming priority event", "warning");
    const s = this.#socket;
    if (!(s instanceof Socket)) return; // a file has no urgent data
    try {
      // TCP's urgent byte sits beside the stream (a TLS session's too).
      Socket.prototype.tryRecvInto.call(s, new Uint8Array(1), 1, C.MSG_OOB);
    } catch { /* nothing urgent after all, or the peer is gone */ }
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
   * `maxConnections` or `maxConnectionsPerHost`. With `proxyProtocol` set,
   * each connection's header is read first (now, or as it arrives) and the
   * connection is admitted under the client's address it gives. If a
   * handler throws before a channel adopted the socket, the socket is
   * closed and the error goes on to `handleError`. (A subclass overriding
   * this method keeps the reference's one accept per event.)
   */
  handleAccept(): void {
    // Checked before accepting: a bad setting strands no accepted socket.
    const proxy = proxySettings(this);
    const admitLater = (sock: Socket, addr: Address) => this.#admit(sock, addr);
    for (let i = 0; i < ACCEPT_BATCH; i++) {
      const pair = this.accept();
      if (pair === null) return;
      // With the PROXY protocol, admission waits for the client's address.
      if (proxy === null) this.#admit(pair[0], pair[1]);
      else awaitProxyHeader(this, pair[0], pair[1], proxy, admitLater);
      if (!this.accepting) return; // a handler closed the listener
    }
  }

  /** Counts `sock` from `addr` under the limits and hands it to `handleAccepted` (or refuses it). */
  #admit(sock: Socket, addr: Address): void {
    const conns = this.#conns ??= new ConnectionCounter();
    if (conns.admits(addr, this.maxConnections, this.maxConnectionsPerHost)) {
      admit(sock, conns.take(addr), () => this.handleAccepted(sock, addr));
    } else {
      admit(sock, null, () => this.handleAcceptRefused(sock, addr));
    }
  }

  /** A listener: the live connections accepted through it (freed as their channels close). */
  get connectionCount(): number {
    return this.#conns?.live ?? 0;
  }

  /**
   * Until when (`performance.now()` ms) a listening channel that ran out of
   * fds leaves accepting alone; 0 when it is not backing off.
   */
  get acceptPausedUntil(): number {
    return this.#backoff?.pausedUntil ?? 0;
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
   * ```ts
   * import { DispatcherWithSend, type Socket } from "@asyncore/deno";
   *
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
    this.#idle = s === null
      ? null
      : new IdleWatch(this, s, this[kCore].loop.timers, (fn) => guarded(this, fn));
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

/** Options of `Dispatcher.startTls`: those of `SSLContext.wrapSocket`. */
export type StartTlsOptions = WrapSocketOptions;

/** Log types `logInfo` stays silent about (assign a new Set to change it). */
export interface Dispatcher {
  /** Log types that `logInfo` does not print; default `{"warning"}`. */
  ignoreLogTypes: Set<string>;
}
Dispatcher.prototype.ignoreLogTypes = new FrozenSet(
  ["warning"],
  "the default ignoreLogTypes is shared: assign a new Set",
);
trackPredicates(Dispatcher.prototype.readable, Dispatcher.prototype.writable);
