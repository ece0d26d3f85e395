/**
 * Our echo server for the bench: `examples/echo.ts` without the log line per
 * connection, with `recv(65536)`, `listen(1024)` and TCP_NODELAY, as the
 * other bench servers.
 *
 *     deno run --allow-ffi bench/servers/asyncore_echo.ts [host] [port]
 *         [--poller=select|poll|epoll] [--loop=sync|async] [--recv-into] [--backlog=N]
 *         [--hwm=BYTES|Infinity] [--idle=SECONDS]
 *
 * `--loop=async` serves with `loopAsync()` instead of `loop()`; `--recv-into`
 * reads with `recvInto` into one shared buffer instead of `recv`;
 * `--backlog=N` listens with N instead of 1024; `--hwm` sets every channel's
 * `highWaterMark` (default 1 MiB), `--idle` an idle timeout on every channel
 * (bench/memory_bench.ts). Prints
 * `LISTENING <port>` once listening.
 *
 * @module
 */

import {
  type Address,
  Dispatcher,
  DispatcherWithSend,
  IPPROTO_TCP,
  loop,
  loopAsync,
  type PollerName,
  type Socket,
  TCP_NODELAY,
} from "../../mod.ts";

const BUF = 65536;

/** Sends back whatever arrives. */
export class EchoHandler extends DispatcherWithSend {
  override handleRead(): void {
    const data = this.recv(BUF);
    if (data.length > 0) this.send(data);
  }
}

/** One buffer for every connection: a handler's data is sent (or queued as a copy) before the next runs. */
const shared = new Uint8Array(BUF);

/** The same echo without an allocation per read: `recvInto` a shared buffer. */
export class RecvIntoEchoHandler extends DispatcherWithSend {
  override handleRead(): void {
    const n = this.recvInto(shared);
    if (n > 0) this.send(shared.subarray(0, n));
  }
}

let Handler: typeof EchoHandler = EchoHandler;
let highWaterMark: number | null = null;
let idleSeconds: number | null = null;

/** Listens and gives each connection an {@linkcode EchoHandler}. */
export class EchoServer extends Dispatcher {
  constructor(host: string, port: number, backlog = 1024) {
    super();
    this.createSocket();
    this.setReuseAddr();
    this.bind([host, port]);
    this.listen(backlog);
  }

  override handleAccepted(sock: Socket, _addr: Address): void {
    sock.setsockopt(IPPROTO_TCP, TCP_NODELAY, 1);
    const h = new Handler(sock);
    if (highWaterMark !== null) h.highWaterMark = highWaterMark;
    if (idleSeconds !== null) h.setIdleTimeout(idleSeconds);
  }
}

if (import.meta.main) {
  const args = Deno.args.filter((a) => !a.startsWith("--"));
  const flag = (name: string) =>
    Deno.args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
  const poller = (flag("poller") ?? "epoll") as PollerName;
  if (Deno.args.includes("--recv-into")) Handler = RecvIntoEchoHandler;
  if (flag("hwm") !== undefined) highWaterMark = Number(flag("hwm"));
  if (flag("idle") !== undefined) idleSeconds = Number(flag("idle"));
  const server = new EchoServer(
    args[0] ?? "127.0.0.1",
    Number(args[1] ?? 0),
    Number(flag("backlog") ?? 1024),
  );
  const [, port] = (server.socket as Socket).getsockname() as [string, number];
  console.log(`LISTENING ${port}`);
  if (flag("loop") === "async") {
    await loopAsync({ poller });
  } else {
    loop({ poller });
  }
}
