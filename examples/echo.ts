/**
 * The classic asyncore echo server: every connection gets back what it sends.
 *
 *     deno run --allow-ffi examples/echo.ts [host] [port]     (default localhost 8080)
 *
 * Options: --poller=select|poll|epoll (default epoll on Linux).
 *
 * @module
 */

import {
  type Address,
  AF_INET,
  AF_INET6,
  Dispatcher,
  DispatcherWithSend,
  loop,
  type Socket,
} from "../mod.ts";

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
    this.createSocket(host.includes(":") ? AF_INET6 : AF_INET);
    this.setReuseAddr();
    this.bind([host, port]);
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

if (import.meta.main) {
  const args = Deno.args.filter((a) => !a.startsWith("--"));
  const poller = (Deno.args.find((a) => a.startsWith("--poller="))?.slice(9) ?? "epoll") as
    | "select"
    | "poll"
    | "epoll";
  const host = args[0] ?? "localhost";
  const port = Number(args[1] ?? 8080);
  const server = new EchoServer(host, port);
  console.log(
    `echo server listening on ${JSON.stringify((server.socket as Socket).getsockname())}`,
  );
  loop({ poller });
}
