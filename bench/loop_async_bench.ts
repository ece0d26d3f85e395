/**
 * loopAsync against loop() and against Deno's own sockets: 64-byte ping-pong
 * round trips per second with 1 and 50 connections, and the idle CPU of each
 * server.
 *
 *     deno run -A bench/loop_async_bench.ts [--seconds=3] [--conns=1,50]
 *         [--size=64] [--client=asyncore|deno] [--repeat=1] [--idle-seconds=2]
 *
 * `--repeat=N` runs every cell N times, interleaved, and keeps the best (the
 * machine may be busy with other work).
 *
 * Every server and the load generator run in processes of their own (this
 * file, started again with `--role=...`):
 *
 * - `sync`:   an asyncore echo server on `loop({ poller: "epoll" })`;
 * - `async`:  the same server on `loopAsync({ poller: "epoll" })`;
 * - `deno`:   an echo server on `Deno.listen` / `conn.read` / `conn.write`;
 * - `client`: N connections, each sending `size` bytes and waiting for all of
 *   them to come back before sending again. The default client is this
 *   library's synchronous epoll loop (cheaper per round trip than Deno's
 *   promise-based sockets, so the client is less likely to be the limit);
 *   `--client=deno` uses `Deno.connect`.
 *
 * The server's CPU time during the measured window is read from
 * `/proc/PID/stat`, as is its idle CPU over `--idle-seconds` with one live
 * listening channel and no clients.
 *
 * @module
 */

import {
  callLater,
  Dispatcher,
  DispatcherWithSend,
  ExitNow,
  IPPROTO_TCP,
  loop,
  loopAsync,
  type Socket,
  type SocketMap,
  TCP_NODELAY,
} from "../mod.ts";

const HOST = "127.0.0.1";

function flag(name: string, fallback: string): string {
  const prefix = `--${name}=`;
  return Deno.args.find((a) => a.startsWith(prefix))?.slice(prefix.length) ?? fallback;
}

// ---- servers ----

/** Sends back whatever arrives. */
class EchoHandler extends DispatcherWithSend {
  override handleRead(): void {
    const data = this.recv(65536);
    if (data.length > 0) this.send(data);
  }

  override handleClose(): void {
    this.close();
  }
}

/** Gives each connection an {@linkcode EchoHandler}. */
class EchoServer extends Dispatcher {
  constructor(map: SocketMap) {
    super(null, map);
    this.createSocket();
    this.setReuseAddr();
    this.bind([HOST, 0]);
    this.listen(1024);
  }

  get port(): number {
    return ((this.socket as Socket).getsockname() as [string, number])[1];
  }

  override handleAccepted(sock: Socket): void {
    sock.setsockopt(IPPROTO_TCP, TCP_NODELAY, 1);
    new EchoHandler(sock, this._map);
  }
}

async function serveAsyncore(kind: "sync" | "async"): Promise<void> {
  const map: SocketMap = new Map();
  const server = new EchoServer(map);
  console.log(`READY ${server.port}`);
  if (kind === "sync") loop({ map, poller: "epoll", timeout: 30 });
  else await loopAsync({ map, poller: "epoll", timeout: 30 });
}

async function serveDeno(): Promise<void> {
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  console.log(`READY ${(listener.addr as Deno.NetAddr).port}`);
  for await (const conn of listener) {
    conn.setNoDelay(true);
    (async () => {
      const buf = new Uint8Array(65536);
      try {
        for (;;) {
          const n = await conn.read(buf);
          if (n === null) break;
          let off = 0;
          while (off < n) off += await conn.write(buf.subarray(off, n));
        }
      } catch {
        // the client went away
      } finally {
        try {
          conn.close();
        } catch { /* already closed */ }
      }
    })();
  }
}

// ---- clients ----

/** What a client prints when it is done. */
interface ClientResult {
  roundTrips: number;
  seconds: number;
}

function clientAsyncore(port: number, conns: number, size: number, seconds: number): void {
  const map: SocketMap = new Map();
  const msg = new Uint8Array(size).fill(0x61);
  let connected = 0;
  let rounds = 0;
  class Pinger extends DispatcherWithSend {
    #got = 0;
    constructor() {
      super(null, map);
      this.createSocket();
      (this.socket as Socket).setsockopt(IPPROTO_TCP, TCP_NODELAY, 1);
      this.connect([HOST, port]);
    }
    override handleConnect(): void {
      connected++;
      this.send(msg);
    }
    override handleRead(): void {
      const data = this.recv(65536);
      this.#got += data.length;
      while (this.#got >= size) {
        this.#got -= size;
        rounds++;
        this.send(msg);
      }
    }
    override handleClose(): void {
      throw new Error("the server closed a connection");
    }
    override handleError(error: unknown): void {
      throw error instanceof ExitNow ? error : new ExitNow(String(error));
    }
  }
  for (let i = 0; i < conns; i++) new Pinger();
  const runFor = (s: number) => {
    const stop = callLater(s, () => {
      throw new ExitNow("time");
    });
    try {
      loop({ map, poller: "epoll", timeout: 1 });
      throw new Error("the map emptied");
    } catch (error) {
      if (!(error instanceof ExitNow) || error.message !== "time") throw error;
    } finally {
      stop.cancel();
    }
  };
  const deadline = performance.now() + 10_000;
  while (connected < conns) {
    if (performance.now() > deadline) throw new Error(`only ${connected} of ${conns} connected`);
    loop({ map, poller: "epoll", timeout: 0.1, count: 1 });
  }
  runFor(0.5); // warm up
  console.log("START");
  const r0 = rounds;
  const t0 = performance.now();
  runFor(seconds);
  const result: ClientResult = {
    roundTrips: rounds - r0,
    seconds: (performance.now() - t0) / 1000,
  };
  console.log(JSON.stringify(result));
  for (const ch of [...map.values()]) {
    ch.handleClose = () => ch.close();
    ch.close();
  }
}

async function clientDeno(port: number, conns: number, size: number, seconds: number) {
  const msg = new Uint8Array(size).fill(0x61);
  let rounds = 0;
  let phase: "warm" | "run" | "stop" = "warm";
  const sockets = await Promise.all(
    Array.from({ length: conns }, () => Deno.connect({ hostname: HOST, port })),
  );
  const workers = sockets.map(async (conn) => {
    conn.setNoDelay(true);
    const buf = new Uint8Array(65536);
    while (phase !== "stop") {
      let off = 0;
      while (off < size) off += await conn.write(msg.subarray(off));
      let got = 0;
      while (got < size) {
        const n = await conn.read(buf);
        if (n === null) throw new Error("the server closed a connection");
        got += n;
      }
      if (phase === "run") rounds++;
    }
    conn.close();
  });
  await new Promise((r) => setTimeout(r, 500));
  console.log("START");
  phase = "run";
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const result: ClientResult = { roundTrips: rounds, seconds: (performance.now() - t0) / 1000 };
  phase = "stop";
  await Promise.all(workers);
  console.log(JSON.stringify(result));
}

// ---- the driver ----

/** Clock ticks per second, for /proc/PID/stat. */
function clockTicks(): number {
  try {
    const out = new Deno.Command("getconf", { args: ["CLK_TCK"], stdout: "piped" }).outputSync();
    const n = Number(new TextDecoder().decode(out.stdout).trim());
    return n > 0 ? n : 100;
  } catch {
    return 100;
  }
}
const CLK_TCK = clockTicks();

/** CPU seconds (user + system) process `pid` has used. */
function cpuSeconds(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}

/** A child process of this script, read line by line. */
class Child {
  readonly proc: Deno.ChildProcess;
  readonly #lines: AsyncIterator<string>;

  constructor(args: string[]) {
    this.proc = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL(import.meta.url).pathname, ...args],
      stdin: "null",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#lines = lines(this.proc.stdout)[Symbol.asyncIterator]();
  }

  get pid(): number {
    return this.proc.pid;
  }

  /** The next line of output, or an error after `ms` milliseconds. */
  async line(ms: number): Promise<string> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const next = await Promise.race([
        this.#lines.next(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no output from ${this.pid} in ${ms} ms`)), ms);
        }),
      ]);
      if (next.done) throw new Error(`process ${this.pid} ended early`);
      return next.value;
    } finally {
      clearTimeout(timer);
    }
  }

  async stop(): Promise<void> {
    try {
      this.proc.kill("SIGTERM");
    } catch { /* already gone */ }
    await this.proc.status;
    await this.#lines.return?.();
  }
}

async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let buf = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    buf += chunk;
    let i: number;
    while ((i = buf.indexOf("\n")) >= 0) {
      yield buf.slice(0, i);
      buf = buf.slice(i + 1);
    }
  }
  if (buf) yield buf;
}

const SERVERS = {
  sync: "asyncore loop() (epoll)",
  async: "asyncore loopAsync() (epoll)",
  deno: "Deno.listen (native)",
} as const;
type ServerKind = keyof typeof SERVERS;

async function startServer(kind: ServerKind): Promise<[Child, number]> {
  const server = new Child([`--role=server-${kind}`]);
  const ready = await server.line(20_000);
  const m = /^READY (\d+)$/.exec(ready);
  if (!m) {
    await server.stop();
    throw new Error(`server ${kind} said ${JSON.stringify(ready)}`);
  }
  return [server, Number(m[1])];
}

interface Cell {
  rps: number;
  /** Server CPU, in cores. */
  cpu: number;
  /** Load generator CPU, in cores (near 1.0: the client may be the limit). */
  clientCpu: number;
}

async function measure(
  kind: ServerKind,
  conns: number,
  size: number,
  seconds: number,
  client: string,
): Promise<Cell> {
  const [server, port] = await startServer(kind);
  try {
    const gen = new Child([
      "--role=client",
      `--client=${client}`,
      `--port=${port}`,
      `--conns=${conns}`,
      `--size=${size}`,
      `--seconds=${seconds}`,
    ]);
    try {
      const start = await gen.line(30_000);
      if (start !== "START") throw new Error(`client said ${JSON.stringify(start)}`);
      const cpu0 = cpuSeconds(server.pid);
      const genCpu0 = cpuSeconds(gen.pid);
      const t0 = performance.now();
      const result = JSON.parse(await gen.line(seconds * 1000 + 30_000)) as ClientResult;
      const wall = (performance.now() - t0) / 1000;
      const cpu = (cpuSeconds(server.pid) - cpu0) / wall;
      const clientCpu = (cpuSeconds(gen.pid) - genCpu0) / wall;
      const status = await gen.proc.status;
      if (!status.success) throw new Error(`client exited with ${status.code}`);
      return { rps: result.roundTrips / result.seconds, cpu, clientCpu };
    } finally {
      await gen.stop();
    }
  } finally {
    await server.stop();
  }
}

async function idleCpu(kind: ServerKind, seconds: number): Promise<number> {
  const [server] = await startServer(kind);
  try {
    await new Promise((r) => setTimeout(r, 300)); // past start-up work
    const cpu0 = cpuSeconds(server.pid);
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, seconds * 1000));
    return (cpuSeconds(server.pid) - cpu0) / ((performance.now() - t0) / 1000);
  } finally {
    await server.stop();
  }
}

function pad(s: string, n: number, right = false): string {
  return right ? s.padStart(n) : s.padEnd(n);
}

function pct(x: number): string {
  return `${(x * 100).toFixed(1)}%`;
}

async function main(): Promise<void> {
  const seconds = Number(flag("seconds", "3"));
  const size = Number(flag("size", "64"));
  const connsList = flag("conns", "1,50").split(",").map(Number);
  const client = flag("client", "asyncore");
  const repeat = Number(flag("repeat", "1"));
  const idleSeconds = Number(flag("idle-seconds", "2"));
  if (client !== "asyncore" && client !== "deno") throw new Error(`--client=${client}?`);
  if (!(Number.isInteger(repeat) && repeat >= 1)) throw new Error(`--repeat=${repeat}?`);

  console.log(
    `ping-pong, ${size} B messages, ${seconds} s per run${
      repeat > 1 ? `, best of ${repeat} interleaved runs` : ""
    }; client: ${
      client === "asyncore" ? "asyncore loop() (epoll)" : "Deno.connect"
    } in its own process; Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} CPUs`,
  );
  console.log("");
  const header = [
    pad("server", 30),
    pad("conns", 5, true),
    pad("round trips/s", 14, true),
    pad("µs/rt", 7, true),
    pad("vs loop()", 9, true),
    pad("vs Deno", 8, true),
    pad("server CPU", 11, true),
    pad("client CPU", 11, true),
  ].join(" ");
  console.log(header);
  console.log("-".repeat(header.length));
  const kinds = Object.keys(SERVERS) as ServerKind[];
  let clientBound = false;
  for (const conns of connsList) {
    const cells = {} as Record<ServerKind, Cell>;
    // Interleaved, so a burst of load from elsewhere does not hit one server only.
    for (let r = 0; r < repeat; r++) {
      for (const kind of kinds) {
        const c = await measure(kind, conns, size, seconds, client);
        if (!cells[kind] || c.rps > cells[kind].rps) cells[kind] = c;
      }
    }
    for (const kind of kinds) {
      const c = cells[kind];
      console.log([
        pad(SERVERS[kind], 30),
        pad(String(conns), 5, true),
        pad(Math.round(c.rps).toLocaleString("en-US"), 14, true),
        pad((1e6 / c.rps * conns).toFixed(1), 7, true),
        pad((c.rps / cells.sync.rps).toFixed(2), 9, true),
        pad((c.rps / cells.deno.rps).toFixed(2), 8, true),
        pad(pct(c.cpu), 11, true),
        pad(pct(c.clientCpu) + (c.clientCpu >= 0.9 ? "*" : " "), 11, true),
      ].join(" "));
      if (c.clientCpu >= 0.9) clientBound = true;
    }
  }
  if (clientBound) {
    console.log("* the load generator used most of a core: that row may measure the client");
  }
  console.log("");
  console.log(`idle CPU over ${idleSeconds} s, one listening channel, no clients:`);
  for (const kind of ["async", "sync", "deno"] as ServerKind[]) {
    const cpu = await idleCpu(kind, idleSeconds);
    console.log(`  ${pad(SERVERS[kind], 30)} ${pad(pct(cpu), 7, true)} of one core`);
  }
  console.log(
    `(CPU from /proc/PID/stat at ${CLK_TCK} ticks/s, 100% = one core; ` +
      "µs/rt = mean time of one round trip on one connection)",
  );
}

if (import.meta.main) {
  const role = flag("role", "main");
  const port = Number(flag("port", "0"));
  const conns = Number(flag("conns", "1"));
  const size = Number(flag("size", "64"));
  const seconds = Number(flag("seconds", "3"));
  switch (role) {
    case "main":
      await main();
      break;
    case "server-sync":
      await serveAsyncore("sync");
      break;
    case "server-async":
      await serveAsyncore("async");
      break;
    case "server-deno":
      await serveDeno();
      break;
    case "client":
      if (flag("client", "asyncore") === "deno") await clientDeno(port, conns, size, seconds);
      else clientAsyncore(port, conns, size, seconds);
      break;
    default:
      throw new Error(`unknown --role=${role}`);
  }
}
