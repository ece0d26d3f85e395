/**
 * The classic asyncore echo server: every connection gets back what it sends.
 *
 *     deno run --allow-ffi examples/echo.ts [host] [port]     (default localhost 8080)
 *
 * Options: --poller=select|poll|epoll (default epoll on Linux, poll elsewhere), --help.
 * Ctrl-C or SIGTERM closes every connection and exits 0; a bad argument
 * prints one line and exits 2.
 *
 * @module
 */

import {
  type Address,
  AI_PASSIVE,
  closeAll,
  Dispatcher,
  DispatcherWithSend,
  getaddrinfo,
  KeyboardInterrupt,
  loop,
  SOCK_STREAM,
  type Socket,
  socketMap,
} from "../mod.ts";
import { openOrExit, parseCommandLine, parsePort } from "./_cli.ts";

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
    // client dropped waits for a retransmit (1 s). See README "Bursts".
    this.listen(5);
  }

  override handleAccepted(sock: Socket, addr: Address): void {
    console.log(`Incoming connection from ${JSON.stringify(addr)}`);
    new EchoHandler(sock);
  }
}

const HELP = `
Usage: deno run --allow-ffi examples/echo.ts [host] [port] [--poller=select|poll|epoll]

The classic asyncore echo server: every connection gets back what it sends.
  host      address or name to listen on (default localhost)
  port      0-65535 (default 8080; 0 picks a free port)
  --poller  readiness backend (default epoll on Linux, poll elsewhere)
  -h, --help
Ctrl-C (SIGINT) or SIGTERM closes every connection and exits 0.
`;

if (import.meta.main) {
  const prog = "echo";
  const { positionals, poller } = parseCommandLine(prog, HELP, Deno.args, {
    maxPositionals: 2,
    poller: Deno.build.os === "linux" ? "epoll" : "poll",
  });
  const host = positionals[0] ?? "localhost";
  const port = parsePort(prog, positionals[1] ?? "8080");
  const server = openOrExit(prog, () => new EchoServer(host, port));
  console.log(`echo server listening on ${JSON.stringify(server.sock.getsockname())}`);
  // Python: try: asyncore.loop() except KeyboardInterrupt: ... finally: asyncore.close_all()
  try {
    loop({ poller, stopSignals: ["SIGINT", "SIGTERM"] });
  } catch (error) {
    if (!(error instanceof KeyboardInterrupt)) throw error;
    console.log(`echo server stopping (${error.signal}): closing ${socketMap.size} channel(s)`);
  } finally {
    closeAll(socketMap, true);
  }
}
