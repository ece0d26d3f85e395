/**
 * The echo server on every core: one asyncore loop per worker, all listening
 * on the same port with `SO_REUSEPORT`, the kernel spreading new connections
 * across them. A loop is single-threaded, so this is how one machine's cores
 * are all put to work; beyond one machine, put such processes behind a load
 * balancer.
 *
 *     deno run --allow-ffi --allow-read examples/echo_workers.ts [host] [port] [--workers=N]
 *     deno run --allow-ffi --allow-run examples/echo_workers.ts [host] [port] --processes
 *
 * Deno reads a `Worker`'s module files under the read permission (hence
 * `--allow-read`, which may be scoped to the checkout: `--allow-read=.`);
 * subprocesses need `--allow-run` instead.
 *
 * Options: `--workers=N` (default: the number of CPUs), `--processes` (one
 * subprocess per loop instead of one Deno `Worker` thread: needs
 * `--allow-run` too), `--poller=select|poll|epoll` (default epoll),
 * `--hello` (each connection first gets a line naming the worker that took
 * it: `hello from worker 2 of 4 (pid 1234)`), `--backlog=N` (default 1024:
 * room for bursts of new connections). Port 0 picks a free port, printed.
 *
 * @module
 */

import {
  AF_INET,
  AF_INET6,
  Dispatcher,
  DispatcherWithSend,
  FileDispatcher,
  IPPROTO_TCP,
  loop,
  type PollerName,
  SO_REUSEPORT,
  Socket,
  SOL_SOCKET,
  TCP_NODELAY,
} from "../mod.ts";

/** What each worker is told. */
export interface WorkerConfig {
  host: string;
  port: number;
  id: number;
  workers: number;
  poller: PollerName;
  hello: boolean;
  backlog: number;
}

/** Sends back whatever arrives. */
class EchoHandler extends DispatcherWithSend {
  override handleRead(): void {
    const data = this.recv(65536);
    if (data.length > 0) this.send(data);
  }
}

/** One worker's listener: `SO_REUSEPORT`, so every worker can bind the same port. */
export class ReusePortEchoServer extends Dispatcher {
  constructor(readonly config: WorkerConfig) {
    super();
    this.createSocket(config.host.includes(":") ? AF_INET6 : AF_INET);
    this.setReuseAddr();
    this.setReusePort();
    this.bind([config.host, config.port]);
    this.listen(config.backlog);
  }

  override handleAccepted(sock: Socket): void {
    sock.setsockopt(IPPROTO_TCP, TCP_NODELAY, 1);
    const handler = new EchoHandler(sock);
    const { id, workers, hello } = this.config;
    if (hello) handler.send(`hello from worker ${id} of ${workers} (pid ${Deno.pid})\n`);
  }
}

/**
 * In a subprocess loop: stdin is a pipe from the parent, which never writes
 * to it; its end (the parent is gone, even by SIGKILL) ends this process.
 */
class ParentWatch extends FileDispatcher {
  override writable(): boolean {
    return false;
  }
  override handleRead(): void {
    this.recv(512); // end of stream: recv calls handleClose
  }
  override handleClose(): void {
    Deno.exit(0);
  }
}

/** Runs one worker's loop (forever). */
function serve(config: WorkerConfig, announce: (line: string) => void): void {
  new ReusePortEchoServer(config);
  announce(`worker ${config.id} of ${config.workers} listening (pid ${Deno.pid})`);
  loop({ poller: config.poller });
}

/**
 * Holds the port for the workers: bound with `SO_REUSEPORT` but never
 * listening, so it takes no connections; port 0 becomes a real port here.
 */
function reservePort(host: string, port: number): [Socket, number] {
  const sock = new Socket(host.includes(":") ? AF_INET6 : AF_INET);
  sock.setsockopt(SOL_SOCKET, SO_REUSEPORT, 1);
  sock.bind([host, port]);
  return [sock, (sock.getsockname() as [string, number])[1]];
}

function parseArgs(args: string[]) {
  const flag = (name: string) =>
    args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
  const plain = args.filter((a) => !a.startsWith("--"));
  const workers = Number(flag("workers") ?? navigator.hardwareConcurrency ?? 1);
  const backlog = Number(flag("backlog") ?? 1024);
  if (!Number.isInteger(workers) || workers < 1) throw new RangeError("--workers must be >= 1");
  if (!Number.isInteger(backlog) || backlog < 1) throw new RangeError("--backlog must be >= 1");
  return {
    host: plain[0] ?? "127.0.0.1",
    port: Number(plain[1] ?? 8080),
    workers,
    backlog,
    poller: (flag("poller") ?? "epoll") as PollerName,
    hello: args.includes("--hello"),
    processes: args.includes("--processes"),
    child: flag("child"), // internal: this process is loop number N
  };
}

/** Starts the loops as Deno Workers; resolves once all of them listen. */
async function startWorkers(base: Omit<WorkerConfig, "id">): Promise<void> {
  const ready: Promise<void>[] = [];
  for (let id = 1; id <= base.workers; id++) {
    const worker = new Worker(import.meta.url, { type: "module", name: `echo-worker-${id}` });
    ready.push(
      new Promise((resolve, reject) => {
        worker.onmessage = (e: MessageEvent<string>) => {
          console.log(e.data);
          resolve();
        };
        worker.onerror = (e) => {
          e.preventDefault();
          reject(new Error(`worker ${id}: ${e.message}`));
        };
      }),
    );
    worker.postMessage({ ...base, id } satisfies WorkerConfig);
  }
  await Promise.all(ready);
}

/** Starts the loops as subprocesses; resolves once all of them listen. */
async function startProcesses(base: Omit<WorkerConfig, "id">): Promise<void> {
  const ready: Promise<void>[] = [];
  for (let id = 1; id <= base.workers; id++) {
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-ffi",
        new URL(import.meta.url).pathname,
        base.host,
        String(base.port),
        `--workers=${base.workers}`,
        `--poller=${base.poller}`,
        `--backlog=${base.backlog}`,
        ...(base.hello ? ["--hello"] : []),
        `--child=${id}`,
      ],
      stdin: "piped", // never written: its end tells the loop that this process is gone
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    ready.push((async () => {
      // Pass the child's lines on; the first one says it is listening.
      const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let first = true;
      let resolveReady!: () => void;
      const listening = new Promise<void>((r) => resolveReady = r);
      void (async () => {
        for (;;) {
          const { value, done } = await lines.read();
          if (done) break;
          Deno.stdout.writeSync(new TextEncoder().encode(value));
          if (first) {
            first = false;
            resolveReady();
          }
        }
      })();
      const exited = child.status.then((s) => {
        throw new Error(`loop ${id} exited (code ${s.code}) before listening`);
      });
      await Promise.race([listening, exited]);
    })());
  }
  await Promise.all(ready);
}

declare const self: { name?: string; onmessage: unknown; postMessage(m: unknown): void };
const inWorker = typeof self !== "undefined" && self.name?.startsWith("echo-worker-") === true;

if (inWorker) {
  self.onmessage = (e: MessageEvent<WorkerConfig>) => serve(e.data, (l) => self.postMessage(l));
} else if (import.meta.main) {
  const o = parseArgs(Deno.args);
  if (o.child !== undefined) {
    new ParentWatch(0);
    serve({ ...o, id: Number(o.child) }, (l) => console.log(l));
  } else {
    const [holder, port] = reservePort(o.host, o.port);
    const base = { ...o, port };
    try {
      await (o.processes ? startProcesses(base) : startWorkers(base));
    } catch (error) {
      console.error(`echo_workers: ${(error as Error).message}`);
      Deno.exit(1);
    }
    holder.close(); // the workers listen now; the holder never took a connection
    console.log(
      `echo: ${o.workers} ${o.processes ? "processes" : "workers"} listening on ${o.host}:${port}`,
    );
  }
}
