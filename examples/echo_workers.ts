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
 * SIGINT or SIGTERM stops every loop, each closing its connections, and
 * exits 0 (Workers: each loop notices the signal itself; subprocesses: the
 * parent passes SIGTERM on and waits for them).
 *
 * @module
 */

import {
  AI_PASSIVE,
  callEvery,
  callLater,
  closeAll,
  Dispatcher,
  DispatcherWithSend,
  FileDispatcher,
  formatAddress,
  getaddrinfo,
  inetAddress,
  IPPROTO_TCP,
  type PollerName,
  SO_REUSEPORT,
  SOCK_STREAM,
  Socket,
  socketMap,
  SOL_SOCKET,
  TCP_NODELAY,
} from "../mod.ts";
import {
  type Command,
  DEFAULT_POLLER,
  errorText,
  fail,
  openOrExit,
  parseCommandLine,
  parsePort,
  pollerFlag,
  runLoop,
  SERVER_NOTES,
} from "./_cli.ts";

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

/** What a worker tells the main thread: a line to print, or that it stopped. */
type WorkerMessage = { line: string } | { stopped: string };

/** Sends back whatever arrives. */
class EchoHandler extends DispatcherWithSend {
  override handleRead(): void {
    const data = this.recv(65536);
    if (data.length > 0) this.send(data);
  }
}

/** As a Python server does: the resolver picks the family ("localhost", "::1", a name). */
function resolve(host: string, port: number) {
  const [[family, , , , address]] = getaddrinfo(host, port, 0, SOCK_STREAM, 0, AI_PASSIVE);
  return [family, address] as const;
}

/** One worker's listener: `SO_REUSEPORT`, so every worker can bind the same port. */
export class ReusePortEchoServer extends Dispatcher {
  constructor(readonly config: WorkerConfig) {
    super();
    const [family, address] = resolve(config.host, config.port);
    this.createSocket(family);
    this.setReuseAddr();
    this.setReusePort();
    this.bind(address);
    this.listen(config.backlog);
  }

  override handleAccepted(sock: Socket): void {
    sock.setsockopt(IPPROTO_TCP, TCP_NODELAY, 1);
    const handler = new EchoHandler(sock);
    const { id, workers, hello } = this.config;
    if (hello) handler.send(`hello from worker ${id} of ${workers} (pid ${Deno.pid})\n`);
  }
}

/** Why the loop is being stopped, and how many channels it had then. */
let stopping: { why: string; channels: number } | null = null;

/** Stops this thread's loop: every channel closes, and an empty map ends `loop()`. */
function stopLoop(why: string): void {
  if (stopping !== null) return;
  stopping = { why, channels: socketMap.size };
  // From a timer: the loop is between passes, no handler is running.
  callLater(0, () => closeAll(socketMap, true));
}

/**
 * In a subprocess loop: stdin is a pipe from the parent, which never writes
 * to it. Its end means the parent wants this loop to stop (it closes the
 * pipe on SIGINT/SIGTERM), or is gone (even by SIGKILL): either way, stop.
 */
class ParentWatch extends FileDispatcher {
  override writable(): boolean {
    return false;
  }
  override handleRead(): void {
    this.recv(512); // end of stream: recv calls handleClose
  }
  override handleClose(): void {
    stopLoop("asked by the parent");
    this.close();
  }
}

/** What the main thread stores in a Worker's stop flag: which signal arrived. */
const STOP_SIGNALS = ["", "SIGINT", "SIGTERM"] as const;

/**
 * Runs one loop until it is stopped; returns the line that says so. A
 * subprocess's loop takes SIGINT/SIGTERM itself (`stopSignals`: Ctrl-C
 * reaches the whole process group), or stops when its parent closes its
 * stdin. A Worker's loop cannot take the signal: once a Worker runs, Deno
 * keeps a SIGINT handler of its own on the process, so the main thread
 * listens (`Deno.addSignalListener`) and raises `stopFlag`, which a timer
 * of this loop reads every 0.1 s.
 */
function serve(
  config: WorkerConfig,
  announce: (line: string) => void,
  stopFlag?: Int32Array,
): string {
  new ReusePortEchoServer(config);
  announce(`worker ${config.id} of ${config.workers} listening (pid ${Deno.pid})`);
  if (stopFlag) {
    const watch = callEvery(0.1, () => {
      const code = Atomics.load(stopFlag, 0);
      if (code === 0) return;
      watch.cancel();
      stopLoop(STOP_SIGNALS[code]);
    });
  }
  const signal = runLoop({
    poller: config.poller,
    stopSignals: stopFlag ? [] : undefined,
    onStop: (sig, channels) => stopping ??= { why: sig, channels },
  });
  const { why, channels } = stopping ?? { why: signal ?? "no channels left", channels: 0 };
  return `worker ${config.id} stopping (${why}): closing ${channels} channel(s)`;
}

/**
 * Holds the port for the workers: bound with `SO_REUSEPORT` but never
 * listening, so it takes no connections; port 0 becomes a real port here.
 */
function reservePort(host: string, port: number): [Socket, number] {
  const [family, address] = resolve(host, port);
  const sock = new Socket(family);
  try {
    sock.setsockopt(SOL_SOCKET, SO_REUSEPORT, 1);
    sock.bind(address);
  } catch (error) {
    sock.close();
    throw error;
  }
  return [sock, inetAddress(sock.getsockname())[1]];
}

/** Starts the loops as Deno Workers; resolves once all of them listen, with their stops. */
async function startWorkers(
  base: Omit<WorkerConfig, "id">,
  stopFlag: Int32Array,
): Promise<Promise<void>[]> {
  const ready: Promise<void>[] = [];
  const stopped: Promise<void>[] = [];
  for (let id = 1; id <= base.workers; id++) {
    const worker = new Worker(import.meta.url, { type: "module", name: `echo-worker-${id}` });
    let listening!: () => void, done!: () => void;
    ready.push(new Promise((resolve) => listening = resolve));
    stopped.push(new Promise((resolve) => done = resolve));
    worker.onmessage = (e: MessageEvent<WorkerMessage>) => {
      if ("line" in e.data) {
        console.log(e.data.line);
        listening();
      } else {
        console.log(e.data.stopped);
        done();
      }
    };
    // A loop that fails, starting (its bind) or later, ends the program: one line, status 1.
    worker.onerror = (e) => {
      e.preventDefault();
      fail(CLI.prog, `worker ${id}: ${e.message}`, 1);
    };
    worker.postMessage([{ ...base, id } satisfies WorkerConfig, stopFlag]);
  }
  await Promise.all(ready);
  return stopped;
}

/** Starts the loops as subprocesses; resolves once all of them listen, with their exits. */
async function startProcesses(
  base: Omit<WorkerConfig, "id">,
): Promise<[Deno.ChildProcess, Promise<void>][]> {
  const children: [Deno.ChildProcess, Promise<void>][] = [];
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
    // Pass the child's lines on; the first one says it is listening.
    let listening!: () => void;
    const first = new Promise<void>((r) => listening = r);
    const pumped = (async () => {
      for await (const text of child.stdout.pipeThrough(new TextDecoderStream())) {
        Deno.stdout.writeSync(new TextEncoder().encode(text));
        listening();
      }
    })();
    children.push([child, pumped]);
    const exited = child.status.then((s) => {
      throw new Error(`loop ${id} exited (code ${s.code}) before listening`);
    });
    ready.push(Promise.race([first, exited]));
  }
  try {
    await Promise.all(ready);
  } catch (error) {
    await Promise.all(children.map(([child]) => stopChild(child)));
    throw error;
  }
  return children;
}

/**
 * Asks a subprocess loop to stop by closing its stdin (not by a signal: one
 * that Ctrl-C already sent it would make this a second, which ends a process
 * at once).
 */
async function stopChild(child: Deno.ChildProcess): Promise<void> {
  try {
    await child.stdin.close();
  } catch {
    // exited already
  }
}

/** Waits for SIGINT or SIGTERM (this thread runs no loop: Deno's listener works). */
function nextSignal(): Promise<Deno.Signal> {
  return new Promise((resolve) => {
    for (const sig of ["SIGINT", "SIGTERM"] as const) {
      Deno.addSignalListener(sig, () => resolve(sig));
    }
  });
}

/** The command line: `--help` is written from this table. */
export const CLI = {
  prog: "echo_workers",
  file: "examples/echo_workers.ts",
  permissions: "--allow-ffi --allow-read",
  summary: `The echo server on every core: one asyncore loop per Deno Worker (or, with
--processes, per subprocess: run with --allow-run instead of --allow-read), all
listening on one port with SO_REUSEPORT; the kernel spreads the connections.`,
  arguments: [
    { name: "host", help: "address or name to listen on", default: "127.0.0.1" },
    { name: "port", help: "0-65535; 0 picks a free port", default: "8080" },
  ],
  flags: {
    workers: {
      type: "number",
      integer: true,
      min: 1,
      max: 1024,
      default: navigator.hardwareConcurrency ?? 1,
      defaultText: "the number of CPUs",
      help: "how many loops",
    },
    processes: { type: "boolean", help: "one subprocess per loop instead of a Worker thread" },
    poller: pollerFlag(DEFAULT_POLLER),
    hello: { type: "boolean", help: "greet each connection with the worker that took it" },
    backlog: {
      type: "number",
      integer: true,
      min: 1,
      default: 1024,
      help: "listen() backlog: room for bursts of new connections",
    },
    // Internal: this process is loop number N of --processes.
    child: { type: "number", integer: true, min: 1, hidden: true, help: "" },
  },
  notes: SERVER_NOTES,
} as const satisfies Command;

declare const self: {
  name?: string;
  onmessage: unknown;
  postMessage(m: WorkerMessage): void;
  close(): void;
};
const inWorker = typeof self !== "undefined" && self.name?.startsWith("echo-worker-") === true;

if (inWorker) {
  self.onmessage = (e: MessageEvent<[WorkerConfig, Int32Array]>) => {
    const [config, stopFlag] = e.data;
    const stopped = serve(config, (line) => self.postMessage({ line }), stopFlag);
    self.postMessage({ stopped });
    self.close();
  };
} else if (import.meta.main) {
  const { prog } = CLI;
  const { args: [host, portText], flags } = parseCommandLine(CLI);
  const base = {
    host: host!,
    port: parsePort(prog, portText!),
    workers: flags.workers,
    poller: flags.poller,
    hello: flags.hello,
    backlog: flags.backlog,
  };
  if (flags.child !== undefined) {
    new ParentWatch(0);
    console.log(serve({ ...base, id: flags.child }, (l) => console.log(l)));
  } else {
    const [holder, port] = openOrExit(prog, () => reservePort(base.host, base.port));
    const kind = flags.processes ? "processes" : "workers";
    let stops: Promise<unknown>[];
    let children: Deno.ChildProcess[] = [];
    const signalled = nextSignal();
    const stopFlag = new Int32Array(new SharedArrayBuffer(4));
    try {
      if (flags.processes) {
        const started = await startProcesses({ ...base, port });
        children = started.map(([c]) => c);
        stops = started.map(([c, pumped]) => Promise.all([c.status, pumped]));
      } else {
        stops = await startWorkers({ ...base, port }, stopFlag);
      }
    } catch (error) {
      holder.close();
      fail(prog, errorText(error), 1);
    }
    holder.close(); // the loops listen now; the holder never took a connection
    console.log(
      `${prog}: ${flags.workers} ${kind} listening on ${formatAddress([base.host, port])}`,
    );
    const signal = await signalled;
    Atomics.store(stopFlag, 0, STOP_SIGNALS.indexOf(signal as "SIGINT" | "SIGTERM"));
    await Promise.all(children.map(stopChild));
    await Promise.all(stops);
    console.log(`${prog}: ${flags.workers} ${kind} stopped (${signal})`);
    Deno.exit(0);
  }
}
