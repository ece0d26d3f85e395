/**
 * Zero-downtime restart: a running process hands its listening sockets to
 * its successor over a Unix socket (`SCM_RIGHTS`), as HAProxy and nginx do.
 * The old process serves {@linkcode serveHandoff}; the new one calls
 * {@linkcode takeOverListeners}. The wire format is in `_handoff_wire.ts`.
 *
 * Why nothing is refused: a listening socket is one kernel object whatever
 * number of processes hold an fd for it, and its accept queue belongs to
 * it. The old process keeps accepting until the successor acknowledges that
 * it holds the fds; only then does it close its copies. At every moment at
 * least one process holds the socket, so the kernel never answers a SYN with
 * a reset, and a connection queued but not yet accepted is accepted by the
 * successor. Connections the old process accepted stay its own: it serves
 * them until their peers close them.
 *
 * @module
 */

import { Socket } from "../ffi/socket.ts";
import { errno as E, OSError } from "../ffi/errno.ts";
import { C, platform } from "../ffi/platform.ts";
import { sendFds } from "../ffi/msg.ts";
import { canStatPaths, statPath, unlinkPath } from "../ffi/unix_path.ts";
import type { Address } from "../ffi/structs.ts";
import { Dispatcher, type SocketMap } from "./dispatcher.ts";
import { kCore } from "./_loop_core.ts";
import { guarded } from "./limits.ts";
import { trackPredicates } from "./_interest.ts";
import type { TimerHandle } from "./timers.ts";
import {
  doneLine,
  errorLine,
  fdsLine,
  HANDOFF_VERSION,
  LineReader,
  MAX_HANDOFF_FDS,
  MAX_LINE,
  parseLine,
  type SocketKind,
} from "./_handoff_wire.ts";
import { pathError, takeOverListeners, unixOnly } from "./handoff_successor.ts";

export { takeOverListeners };

/** Successors talking to a handoff server at once; more are refused (closed). */
const MAX_SESSIONS = 8;

/**
 * The Unix-socket dispatcher {@linkcode serveHandoff} returns: it listens at
 * `path` and hands `listeners` to the first successor that asks and
 * acknowledges. Then it closes itself (removing its socket file).
 */
export class HandoffServer extends Dispatcher {
  /** The socket file (or `"\0name"`, an abstract name) successors connect to. */
  readonly path: string;
  /** The listeners handed over, in order. */
  readonly listeners: readonly Dispatcher[];
  /**
   * Seconds a successor has to say hello, and then to acknowledge the fds
   * (default 10); past it the attempt is dropped and the listeners go on.
   */
  handoffTimeout = 10;
  /** The listeners went to a successor (they are closed here). */
  handedOff = false;
  readonly #onHandedOff: () => void;
  /** The file bound, to remove only that one on close (null: abstract, or not known). */
  #identity: string | null = null;
  /** What the sessions share with this server, out of its public surface. */
  readonly #side: ServerSide;

  /** Binds `path` (removing a stale socket file first) and listens. */
  constructor(path: string, listeners: Dispatcher[], onHandedOff: () => void, map?: SocketMap) {
    super(null, map);
    this.path = path;
    this.listeners = [...listeners];
    this.#onHandedOff = onHandedOff;
    this.#side = {
      server: this,
      inFlight: null,
      sessions: new Set(),
      listenerFds: () => this.#listenerFds(),
      handedOff: (session) => this.#handedOff(session),
    };
    this.maxConnections = MAX_SESSIONS;
    this.createSocket(C.AF_UNIX, C.SOCK_STREAM);
    try {
      bindReplacingStale(this, path);
      if (!path.startsWith("\0") && canStatPaths()) {
        this.#identity = statPath(path)?.identity ?? null;
      }
      this.listen(MAX_SESSIONS);
    } catch (error) {
      this.#closeSocketOnly();
      throw error;
    }
  }

  #closeSocketOnly(): void {
    super.close();
  }

  /** A successor connected: its conversation runs in a channel of its own. */
  override handleAccepted(sock: Socket, _addr: Address): void {
    new HandoffSession(sock, this.#side);
  }

  /** More successors at once than it serves: told so, and closed. */
  override handleAcceptRefused(sock: Socket, _addr: Address): void {
    try {
      sock.send(errorLine("busy: too many handoff requests at once"));
    } catch {
      // the successor is gone already
    }
    sock.close();
  }

  /** The fds and their kinds, or why they cannot go (a listener closed, not a socket). */
  #listenerFds(): { fds: number[]; kinds: SocketKind[] } | string {
    const fds: number[] = [], kinds: SocketKind[] = [];
    for (const [i, l] of this.listeners.entries()) {
      const fd = l.fileno();
      const sock = l.socket;
      if (fd === null || !(sock instanceof Socket)) {
        return `listener ${i + 1} of ${this.listeners.length} is closed`;
      }
      fds.push(fd);
      // The kernel's protocol number (a socket made with 0 says 0 here, 6 there).
      const proto = sock.proto !== 0 ? sock.proto : sock.getsockopt(C.SOL_SOCKET, C.SO_PROTOCOL);
      kinds.push({ family: sock.family, type: sock.type, proto });
    }
    return { fds, kinds };
  }

  /** The successor acknowledged: the listeners stop here, and so does this server. */
  #handedOff(session: HandoffSession): void {
    this.handedOff = true;
    this.#side.inFlight = null;
    for (const l of this.listeners) l.close();
    this.close();
    for (const other of this.#side.sessions) {
      if (other !== session) other._finish(errorLine("the listeners went to another successor"));
    }
    this.logInfo(
      `handed ${this.listeners.length} listener(s) to a successor at ${JSON.stringify(this.path)}`,
      "info",
    );
    session._finish(doneLine());
    this.#onHandedOff();
  }

  /** Closes the server and removes its socket file (when it is still the one bound here). */
  override close(): void {
    const open = this.fileno() !== null;
    super.close();
    if (!open || this.path.startsWith("\0") || this.path === "") return;
    try {
      if (this.#identity !== null && statPath(this.path)?.identity !== this.#identity) return;
      unlinkPath(this.path);
    } catch (error) {
      if (!(error instanceof OSError)) throw error;
      // Gone already, or not ours to remove: nothing to clean.
    }
  }

  /** The server's socket failed: it closes (the listeners go on here). */
  override handleClose(): void {
    this.close();
  }
}

/** What a session needs of its server. */
interface ServerSide {
  readonly server: HandoffServer;
  /** The session whose successor holds the fds and has not acknowledged yet. */
  inFlight: HandoffSession | null;
  /** The open sessions (told off once the handoff is done). */
  readonly sessions: Set<HandoffSession>;
  listenerFds(): { fds: number[]; kinds: SocketKind[] } | string;
  handedOff(session: HandoffSession): void;
}

/** One successor's conversation with a {@linkcode HandoffServer}. */
class HandoffSession extends Dispatcher {
  readonly #side: ServerSide;
  readonly #server: HandoffServer;
  readonly #lines = new LineReader();
  #state: "hello" | "sent" | "done" = "hello";
  #count = 0;
  #timer: TimerHandle | null;

  constructor(sock: Socket, side: ServerSide) {
    const server = side.server;
    super(sock, server._map);
    this.#side = side;
    this.#server = server;
    side.sessions.add(this);
    this.#timer = this[kCore].loop.timers.callLater(
      server.handoffTimeout,
      () => guarded(this, () => this.#fail(`no answer in ${server.handoffTimeout} s`)),
    );
  }

  override writable(): boolean {
    return false;
  }

  override handleRead(): void {
    const data = this.recv(MAX_LINE + 1 - this.#lines.pending);
    if (data.length === 0 || this.#done()) return;
    let line: string | null;
    try {
      line = this.#lines.push(data);
      while (line !== null && !this.#done()) {
        this.#step(line);
        line = this.#lines.next();
      }
    } catch (error) {
      this.#fail(error instanceof Error ? error.message : String(error));
    }
  }

  /** The conversation is over (a method: the state changes under the handlers' feet). */
  #done(): boolean {
    return this.#state === "done";
  }

  #step(line: string): void {
    const msg = parseLine(line);
    if (msg.kind === "error") throw new Error(`the successor gave up: ${msg.text}`);
    if (this.#state === "hello") {
      if (msg.kind !== "take") throw new Error(`expected TAKE, got ${msg.kind.toUpperCase()}`);
      this.#sendFds();
    } else if (this.#state === "sent") {
      if (msg.kind !== "ack" || msg.count !== this.#count) {
        throw new Error(`expected ACK ${this.#count}, got ${JSON.stringify(line.slice(0, 60))}`);
      }
      this.#state = "done";
      this.#side.handedOff(this);
    }
  }

  #sendFds(): void {
    const side = this.#side;
    if (side.inFlight !== null) {
      this.#refuse("busy: another successor is taking over");
      return;
    }
    const what = side.listenerFds();
    if (typeof what === "string") {
      this.#refuse(what);
      return;
    }
    const line = fdsLine(what.kinds);
    const sent = sendFds(this.sock, [line], what.fds);
    if (sent !== line.length) throw new Error(`sent ${sent} of ${line.length} bytes of FDS`);
    this.#count = what.fds.length;
    this.#state = "sent";
    side.inFlight = this;
    this.#timer?.reset(this.#server.handoffTimeout);
  }

  /** Answers ERROR and ends the conversation; nothing was handed over. */
  #refuse(text: string): void {
    this.#server.logInfo(`refused a handoff request: ${text}`, "warning");
    this._finish(errorLine(text));
  }

  /** Ends a failed attempt: the listeners stay here and go on accepting. */
  #fail(reason: string): void {
    if (this.#state === "done" || this.fileno() === null) return;
    const sent = this.#state === "sent";
    // The server's log: the one dispatcher the program holds.
    this.#server.logInfo(
      sent
        ? `handoff failed after the fds were sent (${reason}): still serving the listeners`
        : `dropped a handoff request: ${reason}`,
      sent ? "error" : "warning",
    );
    this._finish(errorLine(reason));
  }

  /** Sends `line` if it fits at once, and closes. */
  _finish(line: string): void {
    this.#state = "done";
    try {
      this.sock.trySend(line);
    } catch {
      // the successor is gone: nothing to tell it
    }
    this.close();
  }

  override handleClose(): void {
    if (this.#state === "sent") this.#fail("the successor closed the connection before ACK");
    else this.close();
  }

  override close(): void {
    this.#timer?.cancel();
    this.#timer = null;
    if (this.#side.inFlight === this) this.#side.inFlight = null;
    this.#side.sessions.delete(this);
    super.close();
  }
}

trackPredicates(HandoffSession.prototype.readable, HandoffSession.prototype.writable);

/**
 * Binds `server` to `path`; a socket file nobody listens on any more (left
 * by a process that died) is removed first. A live server's socket, or a
 * file that is not a socket, is left alone: `EADDRINUSE` says which.
 */
function bindReplacingStale(server: Dispatcher, path: string): void {
  try {
    server.bind(path);
    return;
  } catch (error) {
    if (!(error instanceof OSError) || error.errno !== E.EADDRINUSE || path.startsWith("\0")) {
      throw error;
    }
  }
  const inUse = (why: string) =>
    pathError(E.EADDRINUSE, "bind", path, `Address already in use: '${path}' (${why})`);
  const probe = new Socket(C.AF_UNIX, C.SOCK_STREAM | C.SOCK_NONBLOCK);
  let err: number;
  try {
    err = probe.connectEx(path);
  } finally {
    probe.close();
  }
  if (err !== E.ECONNREFUSED) throw inUse("a process is serving a handoff there");
  if (!canStatPaths()) throw inUse("cannot tell whether it is a stale socket here: remove it");
  const info = statPath(path);
  if (info !== null && !info.isSocket) throw inUse("it is not a socket: not removed");
  if (info !== null) unlinkPath(path);
  server.bind(path);
}

/**
 * Serves the handoff of `listeners` at the Unix socket `path`: a successor
 * that connects there ({@linkcode takeOverListeners}, or any program that
 * speaks the protocol of `dispatcher/_handoff_wire.ts`) gets the listeners'
 * fds, in order, over `SCM_RIGHTS`. Once it acknowledges, these listeners
 * stop accepting (their fds are closed here; the sockets live on in the
 * successor), the handoff server closes (removing its socket file), and
 * `onHandedOff` runs. By default nothing more happens: the open channels are
 * served until their peers close them, and `loop()` returns when the map is
 * empty. Until the acknowledgement the listeners keep accepting here, so a
 * successor that fails half-way costs nothing: its attempt is logged and
 * dropped.
 *
 * A stale socket file at `path` (its process died) is removed; a live
 * server's or a file that is not a socket is an `OSError` (`EADDRINUSE`).
 * With the usual umask the file is writable by its owner only, which is what
 * connecting needs: only the same user can take the listeners. Put it in a
 * directory of the service's own (`/run/echo/`, systemd's
 * `RuntimeDirectory=`). A path starting with `"\0"` is a Linux abstract
 * name (no file; any user of the network namespace may connect).
 *
 * Unix-only: Windows cannot pass sockets over `SCM_RIGHTS` (`OSError`
 * `ENOSYS` there).
 *
 * @param path Where successors connect.
 * @param listeners The listening dispatchers (or datagram ones) to hand over, in order; open now.
 * @param onHandedOff Runs once the successor holds the listeners.
 * @returns The handoff server, a dispatcher in the first listener's map.
 * @throws {OSError} `EADDRINUSE` as above; `ENOSYS` on Windows; a `bind` failure.
 * @throws {TypeError} When a listener is not an open dispatcher over a `Socket`.
 * @example Restartable echo server (see examples/echo.ts --handoff)
 * ```ts no-run
 * // serves until a successor takes the listener and the last connection closes
 * import { Dispatcher, loop, serveHandoff, type Socket } from "@asyncore/deno";
 *
 * class Server extends Dispatcher {
 *   override handleAccepted(sock: Socket) {
 *     sock.close(); // a real server hands it to a channel
 *   }
 * }
 * const server = new Server();
 * server.createSocket();
 * server.setReuseAddr();
 * server.bind(["0.0.0.0", 8080]);
 * server.listen(1024);
 * serveHandoff("/run/echo/handoff.sock", [server], () => console.log("handed over"));
 * loop(); // returns once the successor has the listener and the last connection closed
 * ```
 */
export function serveHandoff(
  path: string,
  listeners: Dispatcher[],
  onHandedOff: () => void = () => {},
): Dispatcher {
  if (platform.hasUnixSockets === false) unixOnly("serveHandoff");
  if (typeof path !== "string" || path === "" || path === "\0") {
    throw new TypeError(`path must be a non-empty string, not ${JSON.stringify(path)}`);
  }
  if (!Array.isArray(listeners) || listeners.length === 0) {
    throw new RangeError("serveHandoff needs at least one listener");
  }
  if (listeners.length > MAX_HANDOFF_FDS) {
    throw new RangeError(`at most ${MAX_HANDOFF_FDS} listeners go in one handoff`);
  }
  for (const [i, l] of listeners.entries()) {
    if (!(l instanceof Dispatcher) || l.fileno() === null || !(l.socket instanceof Socket)) {
      throw new TypeError(`listeners[${i}] is not an open Dispatcher over a Socket`);
    }
  }
  if (typeof onHandedOff !== "function") throw new TypeError("onHandedOff must be a function");
  return new HandoffServer(path, listeners, onHandedOff, listeners[0]._map);
}

/** The protocol version this library speaks (see `dispatcher/_handoff_wire.ts`). */
export const HANDOFF_PROTOCOL_VERSION: number = HANDOFF_VERSION;
