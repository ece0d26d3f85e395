/**
 * The TLS load generator of `bench/tls_bench.ts`, built on this library
 * (epoll loop, dispatcher-run handshakes; it does not verify the server, to
 * keep the client's own cost down). One JSON line on stdout per run.
 *
 *     deno run --allow-ffi bench/tls_loadgen.ts handshake PORT SECONDS CONCURRENCY
 *     deno run --allow-ffi bench/tls_loadgen.ts pingpong  PORT SECONDS CONNS SIZE
 *     deno run --allow-ffi bench/tls_loadgen.ts bulk      PORT SECONDS
 *     deno run --allow-ffi bench/tls_loadgen.ts idle      PORT CONNS     (prints "ready", then holds them until stdin closes)
 *
 * @module
 */
import { CERT_NONE, Dispatcher, loop, SSLContext } from "../mod.ts";

const [mode, portArg, a3, a4, a5] = Deno.args;
const port = Number(portArg);
const ctx = new SSLContext();
ctx.checkHostname = false;
ctx.verifyMode = CERT_NONE;
ctx.minimumVersion = "TLSv1.3";

let count = 0;
let bytes = 0;
let errors = 0;

class Client extends Dispatcher {
  constructor() {
    super();
    this.createSocket();
    this.connect(["127.0.0.1", port]);
    this.startTls(ctx, { serverHostname: "localhost" });
  }
  override handleConnect(): void {}
  override writable(): boolean {
    return false;
  }
  override handleClose(): void {
    this.close();
  }
  override handleError(error: unknown): void {
    if (errors++ === 0) console.error(`tls_loadgen: ${error}`);
    this.close();
  }
}

/** Handshake, one byte there and back, close; then the next one. */
class Handshaker extends Client {
  override handleConnect(): void {
    this.send("x");
  }
  override handleRead(): void {
    if (this.recv(16).length > 0) {
      count++;
      this.close();
      if (running) new Handshaker();
    }
  }
  override handleError(): void {
    errors++;
    this.close();
    if (running) new Handshaker();
  }
}

const buf = new Uint8Array(65536);

class PingPong extends Client {
  got = 0;
  constructor(readonly msg: Uint8Array) {
    super();
  }
  override handleConnect(): void {
    this.send(this.msg);
  }
  override handleRead(): void {
    const n = this.recvInto(buf);
    this.got += n;
    if (this.got >= this.msg.length) {
      this.got -= this.msg.length;
      count++;
      if (running) this.send(this.msg);
    }
  }
}

const WINDOW = 4 * 1024 * 1024;
class Bulk extends Client {
  sent = 0;
  chunk = new Uint8Array(65536);
  override writable(): boolean {
    return this.connected && this.sent - bytes < WINDOW;
  }
  override handleWrite(): void {
    this.sent += this.send(this.chunk);
  }
  override handleRead(): void {
    bytes += this.recvInto(buf);
  }
}

let running = true;
function runFor(seconds: number): number {
  const start = performance.now();
  const end = start + seconds * 1000;
  while (performance.now() < end) loop({ poller: "epoll", timeout: 0.05, count: 50 });
  running = false;
  return (performance.now() - start) / 1000;
}

if (mode === "handshake") {
  for (let i = 0; i < Number(a4 ?? 4); i++) new Handshaker();
  const s = runFor(Number(a3));
  console.log(JSON.stringify({ count, seconds: s, errors }));
} else if (mode === "pingpong") {
  const msg = new Uint8Array(Number(a5 ?? 64)).fill(97);
  const conns = Array.from({ length: Number(a4 ?? 100) }, () => new PingPong(msg));
  // Not counted: the handshakes.
  for (let i = 0; i < 2000 && conns.some((c) => !c.connected); i++) {
    loop({ poller: "epoll", timeout: 0.01, count: 1 });
  }
  count = 0;
  const s = runFor(Number(a3));
  console.log(JSON.stringify({ count, seconds: s, errors }));
} else if (mode === "bulk") {
  new Bulk();
  for (let i = 0; i < 200 && bytes === 0; i++) loop({ poller: "epoll", timeout: 0.01, count: 1 });
  bytes = 0;
  const s = runFor(Number(a3));
  console.log(JSON.stringify({ bytes, seconds: s, errors }));
} else if (mode === "idle") {
  const n = Number(a3);
  let made = 0;
  const all: Client[] = [];
  // Opened 50 at a time so the server's accept queue never overflows.
  while (made < n) {
    const batch = Math.min(50, n - made);
    for (let i = 0; i < batch; i++) all.push(new Client());
    made += batch;
    for (let i = 0; i < 2000 && all.some((c) => !c.connected && c.fileno() !== null); i++) {
      loop({ poller: "epoll", timeout: 0.01, count: 1 });
    }
  }
  console.log(JSON.stringify({ ready: all.filter((c) => c.connected).length, errors }));
  // Keep the connections (and let the server's session tickets arrive) until stdin closes.
  const done = Deno.stdin.read(new Uint8Array(1));
  let finished = false;
  done.then(() => finished = true);
  while (!finished) {
    loop({ poller: "epoll", timeout: 0.02, count: 1 });
    await new Promise((r) => setTimeout(r, 10));
  }
} else {
  console.error("mode: handshake | pingpong | bulk | idle");
  Deno.exit(2);
}
