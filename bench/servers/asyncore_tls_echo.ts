/**
 * Bench server: this library's TLS echo on epoll (recvInto into one reused
 * buffer, DispatcherWithSend for what the socket does not take).
 *
 *     deno run --allow-ffi bench/servers/asyncore_tls_echo.ts CERT KEY HOST PORT
 *
 * Prints "listening PORT" once ready.
 *
 * @module
 */
import {
  Dispatcher,
  DispatcherWithSend,
  loop,
  PROTOCOL_TLS_SERVER,
  type Socket,
  SSLContext,
} from "../../mod.ts";

const buf = new Uint8Array(65536);

class Echo extends DispatcherWithSend {
  override handleRead(): void {
    const n = this.recvInto(buf);
    if (n > 0) this.send(buf.subarray(0, n)); // DispatcherWithSend copies what it must keep
  }
  override handleClose(): void {
    this.close();
  }
  override handleError(): void {
    this.close();
  }
}

class Server extends Dispatcher {
  constructor(readonly ctx: SSLContext, host: string, port: number) {
    super();
    this.createSocket();
    this.setReuseAddr();
    this.bind([host, port]);
    this.listen(4096);
  }
  override handleAccepted(sock: Socket): void {
    new Echo(this.ctx.wrapSocket(sock, { serverSide: true }));
  }
}

const [cert, key, host = "127.0.0.1", port = "0"] = Deno.args;
const ctx = new SSLContext(PROTOCOL_TLS_SERVER);
ctx.loadCertChain(cert, key);
const server = new Server(ctx, host, Number(port));
console.log(`listening ${((server.socket as Socket).getsockname() as [string, number])[1]}`);
loop({ poller: "epoll", timeout: 1 });
