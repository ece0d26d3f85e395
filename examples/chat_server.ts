/**
 * A multi-user line chat on `AsyncChat`.
 *
 *     deno run --allow-ffi examples/chat_server.ts [host] [port]    (default 127.0.0.1 8090)
 *
 * Options: --poller=select|poll|epoll (default epoll on Linux, poll elsewhere),
 * --idle=SECONDS (default 600), --max-per-host=N (default 16),
 * --help. Port 0 picks a free port; the "listening" line says which. Ctrl-C
 * or SIGTERM closes every connection and exits 0; a bad argument prints one
 * line and exits 2.
 *
 * Limits, each from the library: a line longer than {@linkcode MAX_LINE}
 * bytes is refused (`maxInputLength` and `handleInputOverflow`); a client
 * that stops reading while others talk is cut off once
 * {@linkcode MAX_QUEUED_BYTES} wait for it (`queuedBytes`); a client silent
 * for the idle timeout is told and closed (`setIdleTimeout`); an address
 * with too many connections is refused (`maxConnectionsPerHost`).
 *
 * Connect with `nc 127.0.0.1 8090` (or telnet). The first line you send is
 * your nickname; after that every line goes to everyone else as
 * `nick: text`. Commands: `/nick NAME`, `/who`, `/me ACTION`, `/help`,
 * `/quit [MESSAGE]`. Joins, renames and leaves are announced with `* `.
 *
 * @module
 */

import {
  type Address,
  AI_PASSIVE,
  AsyncChat,
  Dispatcher,
  formatAddress,
  getaddrinfo,
  SOCK_STREAM,
  type Socket,
} from "../mod.ts";
import {
  type Command,
  DEFAULT_POLLER,
  openOrExit,
  parseCommandLine,
  parsePort,
  pollerFlag,
  runLoop,
  SERVER_NOTES,
} from "./_cli.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Longest line a client may send, in bytes (without the line end); longer ones are refused. */
export const MAX_LINE = 1024;
/**
 * Bytes of other people's messages that may wait for a client before it
 * counts as not reading and is cut off. (The alternative policy, dropping
 * messages for it while over, keeps it connected but lets it miss lines.)
 */
export const MAX_QUEUED_BYTES = 256 * 1024;

const NICK = /^[\p{L}\p{N}_-]{1,20}$/u;

/** One connected client. */
export class ChatSession extends AsyncChat {
  /** The nickname, once chosen. */
  nick: string | null = null;
  #gone = false;

  /** Greets the client and asks for a nickname. */
  constructor(sock: Socket, readonly server: ChatServer, readonly peer: Address) {
    super(sock, server.map);
    this.setTerminator("\n");
    this.maxInputLength = MAX_LINE + 1; // a "\r" before the "\n" is allowed
    this.setIdleTimeout(server.idleSeconds);
    this.push("* Welcome to the chat! Your nickname?\n");
  }

  override collectIncomingData(data: Uint8Array): void {
    this._collectIncomingData(data);
  }

  /** The library drops the rest of the line; the client is told. */
  override handleInputOverflow(): void {
    if (!this.#gone) this.push(`* Line too long (max ${MAX_LINE} bytes), ignored\n`);
  }

  /** Silent for too long: say so, and close once that is sent. */
  override handleIdleTimeout(): void {
    if (this.#gone) {
      this.close(); // a goodbye that never drained: the client is not reading
      return;
    }
    this.push(`* Idle for ${this.server.idleSeconds} s, goodbye\n`);
    this.closeWhenDone();
    this.#leave("idle");
  }

  override foundTerminator(): void {
    let line = decoder.decode(this._getData());
    if (this.#gone) return; // after /quit: ignore what follows
    if (line.endsWith("\r")) line = line.slice(0, -1);
    if (this.nick === null) {
      this.#chooseNick(line.trim());
    } else if (line.startsWith("/")) {
      this.#command(line);
    } else if (line.length > 0) {
      this.server.broadcast(`${this.nick}: ${line}\n`, this);
    }
  }

  #chooseNick(nick: string): void {
    const problem = this.server.nickProblem(nick);
    if (problem) {
      this.push(`* ${problem}; your nickname?\n`);
      return;
    }
    this.nick = nick;
    const others = this.server.nicks(this);
    this.push(
      `* Hello ${nick}! ${
        others.length ? `Also here: ${others.join(", ")}.` : "Nobody else is here yet."
      } Type /help for commands.\n`,
    );
    this.server.broadcast(`* ${nick} has joined\n`, this);
    this.server.log(`+ ${nick} (${formatAddress(this.peer)})`);
  }

  #command(line: string): void {
    const space = line.indexOf(" ");
    const cmd = (space < 0 ? line : line.slice(0, space)).toLowerCase();
    const arg = space < 0 ? "" : line.slice(space + 1).trim();
    switch (cmd) {
      case "/nick": {
        const problem = this.server.nickProblem(arg);
        if (problem) {
          this.push(`* ${problem}\n`);
          return;
        }
        const old = this.nick;
        this.nick = arg;
        this.push(`* You are now ${arg}\n`);
        this.server.broadcast(`* ${old} is now known as ${arg}\n`, this);
        this.server.log(`= ${old} -> ${arg}`);
        return;
      }
      case "/who":
        this.push(`* Here: ${this.server.nicks().join(", ")}\n`);
        return;
      case "/me":
        if (arg) this.server.broadcast(`* ${this.nick} ${arg}\n`, this);
        return;
      case "/help":
        this.push("* Commands: /nick NAME, /who, /me ACTION, /quit [MESSAGE], /help\n");
        return;
      case "/quit":
        this.push(`* Goodbye, ${this.nick}!\n`);
        this.closeWhenDone();
        this.#leave(arg ? `says "${arg}"` : "");
        return;
      default:
        this.push(`* Unknown command ${cmd}; try /help\n`);
    }
  }

  /** Announces the departure once; the session stops taking part. */
  #leave(why: string): void {
    if (this.#gone) return;
    this.#gone = true;
    this.server.sessions.delete(this);
    if (this.nick !== null) {
      this.server.broadcast(`* ${this.nick} has left${why ? ` (${why})` : ""}\n`, this);
      this.server.log(`- ${this.nick}`);
    }
  }

  /** Queues a line unless the client has stopped reading: then it is cut off. */
  deliver(bytes: Uint8Array): void {
    if (this.#gone) return;
    if (this.queuedBytes > MAX_QUEUED_BYTES) {
      this.discardBuffers();
      this.#leave("not reading");
      this.close();
      return;
    }
    this.push(bytes);
  }

  override handleClose(): void {
    this.#leave("connection closed");
    this.close();
  }

  override handleError(error: unknown): void {
    this.server.log(`! ${this.nick ?? formatAddress(this.peer)}: ${error}`);
    this.handleClose();
  }
}

/** Listens, and keeps the sessions. */
export class ChatServer extends Dispatcher {
  /** Every session not yet gone. */
  readonly sessions: Set<ChatSession> = new Set();

  /** Seconds a session may stay silent before it is closed. */
  idleSeconds = 600;

  /** Listens on `host`:`port` (0 picks a free port) in `map`. */
  constructor(host: string, port: number, readonly map?: Map<number, Dispatcher>) {
    super(null, map);
    // As a Python server does: the resolver picks the family ("localhost", "::1", a name).
    const [[family, , , , address]] = getaddrinfo(
      host || null,
      port,
      0,
      SOCK_STREAM,
      0,
      AI_PASSIVE,
    );
    this.createSocket(family);
    this.setReuseAddr();
    this.bind(address);
    // Enough for a chat; a server that takes bursts of new connections wants
    // listen(1024) (see docs/production.md, "Bursts and the backlog").
    this.listen(128);
    this.maxConnectionsPerHost = 16;
  }

  /** Past `maxConnectionsPerHost`: a one-line refusal (the socket is fresh: it fits), then close. */
  override handleAcceptRefused(sock: Socket, addr: Address): void {
    try {
      sock.send("* Too many connections from your address, sorry\n");
    } catch {
      // gone already: nothing to tell
    }
    sock.close();
    this.log(`! refused ${formatAddress(addr)}: too many connections`);
  }

  /** The bound address (with the real port when 0 was asked for). */
  address(): Address {
    return this.sock.getsockname();
  }

  override handleAccepted(sock: Socket, addr: Address): void {
    this.sessions.add(new ChatSession(sock, this, addr));
  }

  /** Sends `text` to every named session but `except`. */
  broadcast(text: string, except?: ChatSession): void {
    const bytes = encoder.encode(text);
    for (const s of [...this.sessions]) {
      if (s !== except && s.nick !== null) s.deliver(bytes);
    }
  }

  /** The nicknames in use, but `except`'s. */
  nicks(except?: ChatSession): string[] {
    const out: string[] = [];
    for (const s of this.sessions) if (s !== except && s.nick !== null) out.push(s.nick);
    return out;
  }

  /** Why `nick` cannot be used, or "" when it can. */
  nickProblem(nick: string): string {
    if (!NICK.test(nick)) return "A nickname is 1 to 20 letters, digits, - or _";
    for (const s of this.sessions) {
      if (s.nick !== null && s.nick.toLowerCase() === nick.toLowerCase()) {
        return `The nickname ${nick} is taken`;
      }
    }
    return "";
  }

  /** One line of server log on stdout. */
  override log(message: unknown): void {
    console.log(String(message));
  }
}

/** The command line: `--help` is written from this table. */
export const CLI = {
  prog: "chat_server",
  file: "examples/chat_server.ts",
  summary: `A multi-user line chat: connect with \`nc 127.0.0.1 8090\`; the first line is your
nickname, then /nick NAME, /who, /me ACTION, /help, /quit [MESSAGE].`,
  arguments: [
    { name: "host", help: "address or name to listen on", default: "127.0.0.1" },
    { name: "port", help: "0-65535; 0 picks a free port", default: "8090" },
  ],
  flags: {
    poller: pollerFlag(DEFAULT_POLLER),
    idle: {
      type: "number",
      min: 0,
      exclusiveMin: true,
      default: 600,
      metavar: "SECONDS",
      help: "close a connection silent for this long",
    },
    "max-per-host": {
      type: "number",
      integer: true,
      min: 1,
      default: 16,
      help: "connections one address may hold",
    },
  },
  notes: SERVER_NOTES,
} as const satisfies Command;

if (import.meta.main) {
  const { prog } = CLI;
  const { args: [host, portText], flags } = parseCommandLine(CLI);
  const port = parsePort(prog, portText!);
  const server = openOrExit(prog, () => new ChatServer(host!, port));
  server.idleSeconds = flags.idle;
  server.maxConnectionsPerHost = flags["max-per-host"];
  console.log(`chat server listening on ${formatAddress(server.address())}`);
  runLoop({
    poller: flags.poller,
    onStop: (signal, n) => console.log(`chat server stopping (${signal}): closing ${n} channel(s)`),
  });
}
