/**
 * The classic asyncore echo server: every connection gets back what it sends.
 *
 *     deno run --allow-ffi examples/echo.ts [host] [port]     (default localhost 8080)
 *
 * Options: --poller=select|poll|epoll (default epoll on Linux, poll elsewhere),
 * --proxy-protocol=v1|v2|any (behind HAProxy's `send-proxy`/`send-proxy-v2`:
 * each connection starts with a PROXY header, and the address printed is the
 * client's from it), --backlog=N, --help.
 *
 * In production:
 * - `--systemd` serves the listening sockets systemd passes (socket
 *   activation): `systemd-socket-activate -l 127.0.0.1:8080 deno run
 *   --allow-ffi examples/echo.ts --systemd`.
 * - `--handoff=PATH` serves a handoff of the listener at the Unix socket
 *   PATH; `--takeover=PATH` takes the listener from the process serving
 *   there, which stops accepting, finishes its open connections and exits 0.
 *   Both together (`--takeover=OLD --handoff=NEW`, NEW may be OLD) make the
 *   successor ready for the next switch: a restart without one connection
 *   refused.
 *
 * Ctrl-C or SIGTERM closes every connection and exits 0; a bad argument
 * prints one line and exits 2; a port in use (or a failed takeover), one
 * line and exit status 1.
 *
 * @module
 */

import {
  type Address,
  AI_PASSIVE,
  Dispatcher,
  DispatcherWithSend,
  formatAddress,
  getaddrinfo,
  listenFds,
  serveHandoff,
  SOCK_STREAM,
  Socket,
  takeOverListeners,
} from "../mod.ts";
import {
  type Command,
  DEFAULT_POLLER,
  fail,
  openOrExit,
  parseCommandLine,
  parsePort,
  pollerFlag,
  runLoop,
  SERVER_NOTES,
  usageError,
} from "./_cli.ts";

/** Sends back whatever arrives. */
export class EchoHandler extends DispatcherWithSend {
  override handleRead(): void {
    const data = this.recv(8192);
    if (data.length > 0) this.send(data);
  }
}

/** Listens and gives each connection an {@linkcode EchoHandler}. */
export class EchoServer extends Dispatcher {
  /**
   * Listens on `host`:`port`, or serves `where`, a listening socket handed
   * over (by systemd, or by the process this one succeeds): `listen()` on it
   * keeps its queue, so connections that waited there are accepted here.
   *
   * The backlog is 5 by default, as in the asyncore documentation. A server
   * that takes bursts of new connections wants 1024: a full accept queue
   * drops SYNs, and each client dropped waits for a retransmit (1 s). See
   * docs/production.md, "Bursts and the backlog".
   */
  constructor(where: { host: string; port: number } | Socket, backlog = 5) {
    super(where instanceof Socket ? where : null);
    if (!(where instanceof Socket)) {
      // As a Python server does: the resolver picks the family ("localhost", "::1", a name).
      const [[family, , , , address]] = getaddrinfo(
        where.host || null,
        where.port,
        0,
        SOCK_STREAM,
        0,
        AI_PASSIVE,
      );
      this.createSocket(family);
      this.setReuseAddr();
      this.bind(address);
    }
    this.listen(backlog);
  }

  override handleAccepted(sock: Socket, addr: Address): void {
    console.log(`Incoming connection from ${formatAddress(addr)}`);
    new EchoHandler(sock);
  }
}

/** The command line: `--help` is written from this table. */
export const CLI = {
  prog: "echo",
  file: "examples/echo.ts",
  summary: "The classic asyncore echo server: every connection gets back what it sends.",
  arguments: [
    { name: "host", help: "address or name to listen on", default: "localhost" },
    { name: "port", help: "0-65535; 0 picks a free port", default: "8080" },
  ],
  flags: {
    poller: pollerFlag(DEFAULT_POLLER),
    "proxy-protocol": {
      type: "choice",
      choices: ["v1", "v2", "any"],
      help:
        "behind a proxy that sends PROXY headers (HAProxy's send-proxy: v1, send-proxy-v2: v2); the address printed is the client's",
    },
    backlog: {
      type: "number",
      integer: true,
      min: 1,
      max: 65535,
      default: 5,
      help: "the listen backlog (1024 for bursts of new connections)",
    },
    systemd: {
      type: "boolean",
      help: "serve the listening sockets systemd passes (socket activation); host and port unused",
    },
    handoff: {
      type: "string",
      metavar: "PATH",
      help: "hand the listener(s) to a successor that connects to the Unix socket PATH",
    },
    takeover: {
      type: "string",
      metavar: "PATH",
      help:
        "take the listener(s) from the process serving a handoff at PATH (it finishes its connections and exits); host and port unused",
    },
  },
  notes: `${SERVER_NOTES.trim()}
A restart without a refused connection: start the first process with
--handoff=PATH, the next with --takeover=PATH --handoff=PATH.`,
} as const satisfies Command;

/** The listening servers the flags ask for: systemd's sockets, a predecessor's, or a new one. */
function openServers(
  flags: { systemd: boolean; takeover: string | undefined; backlog: number },
  host: string,
  portText: string,
): EchoServer[] {
  const { prog } = CLI;
  if (flags.systemd && flags.takeover !== undefined) {
    usageError(prog, "--systemd and --takeover both give the listeners: use one");
  }
  let sockets: Socket[];
  if (flags.systemd) {
    sockets = openOrExit(prog, () => listenFds());
    if (sockets.length === 0) {
      fail(prog, "--systemd: no sockets were passed (LISTEN_FDS is not set for this process)", 2);
    }
  } else if (flags.takeover !== undefined) {
    const path = flags.takeover;
    sockets = openOrExit(prog, () => takeOverListeners(path));
  } else {
    const port = parsePort(prog, portText);
    return [openOrExit(prog, () => new EchoServer({ host, port }, flags.backlog))];
  }
  const bad = sockets.find((s) => s.type !== SOCK_STREAM);
  if (bad !== undefined) fail(prog, `fd ${bad.fileno()} is not a stream socket`, 2);
  return sockets.map((sock) => openOrExit(prog, () => new EchoServer(sock, flags.backlog)));
}

if (import.meta.main) {
  const { prog } = CLI;
  const { args: [host, portText], flags } = parseCommandLine(CLI);
  const servers = openServers(flags, host!, portText!);
  const from = flags.systemd
    ? " (from systemd)"
    : flags.takeover !== undefined
    ? ` (taken over from ${flags.takeover})`
    : "";
  for (const server of servers) {
    server.proxyProtocol = flags["proxy-protocol"] ?? null;
    console.log(`echo server listening on ${formatAddress(server.sock.getsockname())}${from}`);
  }
  let handedOff = false;
  if (flags.handoff !== undefined) {
    const path = flags.handoff;
    openOrExit(prog, () =>
      serveHandoff(path, servers, () => {
        handedOff = true;
        console.log(
          `echo server handed its listener(s) over at ${path}; finishing the open connections`,
        );
      }));
    console.log(`echo server serving a handoff at ${path}`);
  }
  const stopped = runLoop({
    poller: flags.poller,
    onStop: (signal, n) => console.log(`echo server stopping (${signal}): closing ${n} channel(s)`),
  });
  if (stopped === null && handedOff) console.log("echo server: the last connection closed");
}
