/**
 * The classic asyncore echo server: every connection gets back what it sends.
 *
 *     deno run --allow-ffi examples/echo.ts [host] [port]     (default localhost 8080)
 *
 * Options: --poller=select|poll|epoll (default epoll on Linux, poll elsewhere),
 * --proxy-protocol=v1|v2|any (behind HAProxy's `send-proxy`/`send-proxy-v2`:
 * each connection starts with a PROXY header, and the address printed is the
 * client's from it), --help.
 * Ctrl-C or SIGTERM closes every connection and exits 0; a bad argument
 * prints one line and exits 2; a port in use, one line and exit status 1.
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

/** Sends back whatever arrives. */
export class EchoHandler extends DispatcherWithSend {
  override handleRead(): void {
    const data = this.recv(8192);
    if (data.length > 0) this.send(data);
  }
}

/** Listens and gives each connection an {@linkcode EchoHandler}. */
export class EchoServer extends Dispatcher {
  constructor(host: string, port: number) {
    super();
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
    // 5, as in the asyncore documentation. A server that takes bursts of new
    // connections wants listen(1024): a full accept queue drops SYNs, and each
    // client dropped waits for a retransmit (1 s). See docs/production.md,
    // "Bursts and the backlog".
    this.listen(5);
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
  },
  notes: SERVER_NOTES,
} as const satisfies Command;

if (import.meta.main) {
  const { prog } = CLI;
  const { args: [host, portText], flags } = parseCommandLine(CLI);
  const port = parsePort(prog, portText!);
  const server = openOrExit(prog, () => new EchoServer(host!, port));
  server.proxyProtocol = flags["proxy-protocol"] ?? null;
  console.log(`echo server listening on ${formatAddress(server.sock.getsockname())}`);
  runLoop({
    poller: flags.poller,
    onStop: (signal, n) => console.log(`echo server stopping (${signal}): closing ${n} channel(s)`),
  });
}
