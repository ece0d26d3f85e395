/**
 * The classic asyncore echo server over TLS: the echo handler is unchanged,
 * each accepted socket is wrapped with a server `SSLContext` and the loop runs
 * the handshakes.
 *
 *     deno run --allow-ffi examples/tls_echo.ts CERT.pem KEY.pem [host] [port]
 *
 * (default 127.0.0.1 8443; --poller=select|poll|epoll, default epoll on Linux,
 * poll elsewhere). Make a
 * test certificate and try it:
 *
 *     openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
 *       -keyout key.pem -out cert.pem -days 30 -subj /CN=localhost \
 *       -addext subjectAltName=DNS:localhost,IP:127.0.0.1
 *     openssl s_client -connect 127.0.0.1:8443 -CAfile cert.pem
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
  type PollerName,
  PROTOCOL_TLS_SERVER,
  type Socket,
  SSLContext,
} from "../mod.ts";

/** Sends back whatever arrives (the same handler as examples/echo.ts). */
export class EchoHandler extends DispatcherWithSend {
  override handleRead(): void {
    const data = this.recv(8192);
    if (data.length > 0) this.send(data);
  }

  override handleClose(): void {
    this.close();
  }
}

/** Listens and gives each connection, wrapped in TLS, an {@linkcode EchoHandler}. */
export class TlsEchoServer extends Dispatcher {
  readonly context: SSLContext;

  constructor(context: SSLContext, host: string, port: number) {
    super();
    this.context = context;
    this.createSocket(host.includes(":") ? AF_INET6 : AF_INET);
    this.setReuseAddr();
    this.bind([host, port]);
    this.listen(128);
  }

  override handleAccepted(sock: Socket, addr: Address): void {
    console.log(`Incoming connection from ${JSON.stringify(addr)}`);
    new EchoHandler(this.context.wrapSocket(sock, { serverSide: true }));
  }
}

if (import.meta.main) {
  const args = Deno.args.filter((a) => !a.startsWith("--"));
  const poller = (Deno.args.find((a) => a.startsWith("--poller="))?.slice(9) ??
    (Deno.build.os === "linux" ? "epoll" : "poll")) as PollerName;
  if (args.length < 2) {
    console.error("usage: tls_echo.ts CERT.pem KEY.pem [host] [port]");
    Deno.exit(2);
  }
  const context = new SSLContext(PROTOCOL_TLS_SERVER);
  context.loadCertChain(args[0], args[1]);
  const server = new TlsEchoServer(context, args[2] ?? "127.0.0.1", Number(args[3] ?? 8443));
  console.log(
    `TLS echo server listening on ${JSON.stringify((server.socket as Socket).getsockname())}`,
  );
  loop({ poller });
}
