/**
 * `deno task bench`: echo servers on loopback, each in its own process pinned
 * to CPU 0, driven by the same load generator pinned to CPU 1.
 *
 * Servers: ours (`bench/servers/asyncore_echo.ts`) on select, poll and epoll;
 * Deno's own networking (`bench/servers/deno_echo.ts`, the yardstick every
 * row is compared with); Python 3 asyncore on select and poll; a plain C
 * epoll server (`bench/servers/epoll_echo.c`). The load generator is C
 * (`bench/loadgen.c`); both C programs are compiled into `bench/out/` with
 * cc/gcc. Without a C compiler, the Deno load generator `bench/loadgen.ts`
 * (built on this library's epoll loop) is used instead and the C server is
 * left out.
 *
 * Scenarios: ping-pong of 64 B messages with 1, 10, 100 and 1,000
 * connections; 10 active + 5,000 idle connections; bulk on one connection;
 * 5,000 connections all ping-ponging (peak RSS). Then a soak (mixed sizes,
 * every byte checked, fd count before/after) and the cost of a connection.
 *
 * Options:
 *   --quick              1 round of 1 s windows, 5 s soak with 500 connections
 *   --only=a,b           servers with a word a or b in their name ("C", "epoll", "python",
 *                        "asyncore epoll"); Deno native is always run
 *   --scenarios=x,y      scenario ids: pp1 pp10 pp100 pp1000 idle5000 bulk rss5000
 *   --rounds=N           measure every row N times, interleaved; the median is shown (default 3)
 *   --duration=S         measured seconds per run (default 1)
 *   --warmup=S           warm-up seconds per run (default 0.4)
 *   --soak=S             soak seconds (default 20; 0 skips the soak)
 *   --soak-conns=N       soak connections (default 2000)
 *   --soak-servers=a,b   servers to soak (default "asyncore epoll")
 *   --window=BYTES       bulk: bytes in flight (default 4 MiB)
 *   --retries=N          re-run a row up to N times (default 2) when other processes
 *   --max-other=PCT      used more than PCT percent of a CPU during it (default 10)
 *   --loadgen=c|ts       force the load generator
 *   --no-conn-cost       skip the connection-cost measurement
 *   --no-extras          skip the AsyncChat parsing and loopAsync benchmarks run at the end
 *   --record             also write the run into bench/RESULTS.md (between its markers)
 *
 * Results go to stdout (markdown) and to bench/out/results.{md,json}.
 * TLS rows are a separate run: `deno run -A bench/tls_bench.ts` (see that file).
 *
 * @module
 */

import { type ConnCost, measureConnCost } from "./conn_cost.ts";

// ---- paths and tools ----

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const BENCH = `${ROOT}/bench`;
const OUT = `${BENCH}/out`;
const HOST = "127.0.0.1";
const DENO = Deno.execPath();

/** A server under test. Host and port ("0": any) are appended to `cmd`. */
export interface ServerSpec {
  /** Row label. */
  name: string;
  /** argv; `host port` are appended. */
  cmd: string[];
  /** select(): no fd may be >= 1024, so big rows are "n/a". */
  select?: boolean;
  /** The yardstick of the "vs Deno" column. */
  reference?: boolean;
  /** Left out when there is no C compiler. */
  needsCc?: boolean;
}

const OURS = `${BENCH}/servers/asyncore_echo.ts`;
const DENO_OURS = [DENO, "run", "--no-prompt", "--allow-ffi", OURS];
const PYTHON = ["python3", "-W", "ignore", `${BENCH}/servers/asyncore_echo.py`];

/** The servers, in table order. Adding a row is adding one line here. */
export const SERVERS: ServerSpec[] = [
  { name: "asyncore epoll", cmd: [...DENO_OURS, "--poller=epoll"] },
  { name: "asyncore poll", cmd: [...DENO_OURS, "--poller=poll"] },
  { name: "asyncore select", cmd: [...DENO_OURS, "--poller=select"], select: true },
  // The same handler reading with recvInto into one shared buffer (no allocation per read).
  { name: "asyncore epoll recvInto", cmd: [...DENO_OURS, "--poller=epoll", "--recv-into"] },
  // loopAsync instead of loop(): Deno's event loop keeps running beside it.
  { name: "asyncore loopAsync epoll", cmd: [...DENO_OURS, "--poller=epoll", "--loop=async"] },
  {
    name: "Deno native",
    cmd: [DENO, "run", "--no-prompt", "--allow-net", `${BENCH}/servers/deno_echo.ts`],
    reference: true,
  },
  { name: "Python asyncore select", cmd: [...PYTHON, "--poller=select"], select: true },
  { name: "Python asyncore poll", cmd: [...PYTHON, "--poller=poll"] },
  { name: "C epoll", cmd: [`${OUT}/epoll_echo`], needsCc: true },
];

/** One measured situation. */
export interface Scenario {
  id: string;
  label: string;
  mode: "pingpong" | "bulk";
  conns: number;
  idle: number;
  /** Load generator runs per server start; the median is kept. */
  reps?: number;
  /** Settle longer before the run: this row's RSS at 0 connections is the baseline. */
  rssBaseline?: boolean;
}

/** The scenarios, in table order. */
export const SCENARIOS: Scenario[] = [
  { id: "pp1", label: "ping-pong 64 B, 1 conn", mode: "pingpong", conns: 1, idle: 0 },
  { id: "pp10", label: "ping-pong 64 B, 10 conns", mode: "pingpong", conns: 10, idle: 0 },
  { id: "pp100", label: "ping-pong 64 B, 100 conns", mode: "pingpong", conns: 100, idle: 0 },
  { id: "pp1000", label: "ping-pong 64 B, 1,000 conns", mode: "pingpong", conns: 1000, idle: 0 },
  {
    id: "idle5000",
    label: "10 active + 5,000 idle",
    mode: "pingpong",
    conns: 10,
    idle: 5000,
  },
  { id: "bulk", label: "bulk, 1 conn (MB/s echoed)", mode: "bulk", conns: 1, idle: 0 },
  {
    id: "rss5000",
    label: "5,000 conns ping-pong (peak RSS)",
    mode: "pingpong",
    conns: 5000,
    idle: 0,
    rssBaseline: true,
  },
];

// ---- options ----

interface Options {
  rounds: number;
  duration: number;
  warmup: number;
  soak: number;
  soakConns: number;
  soakServers: string[];
  only: string[] | null;
  scenarios: string[] | null;
  window: number;
  retries: number;
  maxOther: number;
  loadgen: "c" | "ts" | null;
  connCost: boolean;
  /** Also run bench/asynchat_bench.ts and bench/loop_async_bench.ts. */
  extras: boolean;
  record: boolean;
  quick: boolean;
}

function parseOptions(args: string[]): Options {
  const o: Options = {
    rounds: 3,
    duration: 1,
    warmup: 0.4,
    soak: 20,
    soakConns: 2000,
    soakServers: ["asyncore epoll"],
    only: null,
    scenarios: null,
    window: 4 << 20,
    retries: 2,
    maxOther: 10,
    loadgen: null,
    connCost: true,
    extras: true,
    record: false,
    quick: false,
  };
  const list = (v: string) => v.split(",").map((s) => s.trim()).filter((s) => s !== "");
  const num = (k: string, v: string) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${k} wants a number, not ${v}`);
    return n;
  };
  // --quick first, so explicit values win whatever the order.
  if (args.includes("--quick")) {
    Object.assign(o, {
      quick: true,
      rounds: 1,
      duration: 1,
      warmup: 0.25,
      soak: 5,
      soakConns: 500,
    });
  }
  for (const a of args) {
    const [k, v = ""] = a.replace(/^--/, "").split(/=(.*)/s);
    switch (k) {
      case "quick":
        break;
      case "rounds":
        o.rounds = Math.max(1, Math.floor(num(k, v)));
        break;
      case "duration":
        o.duration = num(k, v);
        break;
      case "warmup":
        o.warmup = num(k, v);
        break;
      case "soak":
        o.soak = num(k, v);
        break;
      case "soak-conns":
        o.soakConns = Math.floor(num(k, v));
        break;
      case "soak-servers":
        o.soakServers = list(v);
        break;
      case "only":
        o.only = list(v);
        break;
      case "scenarios":
        o.scenarios = list(v);
        break;
      case "window":
        o.window = Math.floor(num(k, v));
        break;
      case "retries":
        o.retries = Math.floor(num(k, v));
        break;
      case "max-other":
        o.maxOther = num(k, v);
        break;
      case "loadgen":
        if (v !== "c" && v !== "ts") throw new Error("--loadgen is c or ts");
        o.loadgen = v;
        break;
      case "no-extras":
        o.extras = false;
        break;
      case "no-conn-cost":
        o.connCost = false;
        break;
      case "record":
        o.record = true;
        break;
      case "help":
        console.log(
          (Deno.readTextFileSync(new URL(import.meta.url)).match(/Options:[\s\S]*?\n \*\n/) ?? [
            "",
          ])[0].replace(/^ \* ?/gm, ""),
        );
        Deno.exit(0);
        break;
      default:
        throw new Error(`unknown option ${a} (try --help)`);
    }
  }
  return o;
}

// ---- small helpers ----

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function run(cmd: string[], opts: { stdin?: string } = {}): Promise<
  { ok: boolean; code: number; stdout: string; stderr: string }
> {
  try {
    const child = new Deno.Command(cmd[0], {
      args: cmd.slice(1),
      stdin: opts.stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    if (opts.stdin !== undefined) {
      const w = child.stdin.getWriter();
      await w.write(new TextEncoder().encode(opts.stdin));
      await w.close();
    }
    const out = await child.output();
    const dec = new TextDecoder();
    return {
      ok: out.success,
      code: out.code,
      stdout: dec.decode(out.stdout),
      stderr: dec.decode(out.stderr),
    };
  } catch (error) {
    return { ok: false, code: -1, stdout: "", stderr: String(error) };
  }
}

async function which(name: string): Promise<string | null> {
  const r = await run(["sh", "-c", `command -v ${name}`]);
  return r.ok ? r.stdout.trim() : null;
}

// Deno 2.9 wants --allow-all for any read under /proc, which `deno task bench`
// does not grant: /proc is read through small subprocesses instead.

async function statusKb(pid: number, key: string): Promise<number | null> {
  const r = await run(["cat", `/proc/${pid}/status`]);
  const m = r.stdout.match(new RegExp(`^${key}:\\s+(\\d+)`, "m"));
  return m ? Number(m[1]) : null;
}

async function fdCount(pid: number): Promise<number | null> {
  const r = await run(["ls", `/proc/${pid}/fd`]);
  return r.ok ? r.stdout.split("\n").filter((l) => l.trim() !== "").length : null;
}

const fmtInt = (n: number) => Math.round(n).toLocaleString("en-US");
const mib = (
  kb: number | null | undefined,
) => (kb == null || kb < 0 ? "-" : (kb / 1024).toFixed(1));

// ---- the environment ----

interface Env {
  nproc: number;
  cpuModel: string;
  kernel: string;
  deno: string;
  python: string | null;
  cc: string | null;
  ccVersion: string | null;
  taskset: boolean;
  fdPrefix: string[];
  fdLimit: number;
  loadgen: "c" | "ts";
  commit: string;
  notes: string[];
}

async function probeEnv(opts: Options): Promise<Env> {
  const notes: string[] = [];
  const cpuinfo = (await run(["cat", "/proc/cpuinfo"])).stdout;
  const cpuModel = cpuinfo.match(/^model name\s*:\s*(.*)$/m)?.[1]?.trim() ?? "unknown";
  const nproc = Number((await run(["nproc"])).stdout.trim()) || navigator.hardwareConcurrency;
  const kernel = (await run(["uname", "-srm"])).stdout.trim();
  const git = await run(["git", "-C", ROOT, "describe", "--always", "--dirty"]);
  const commit = git.ok ? git.stdout.trim() : "unknown";
  const py = await run([
    "python3",
    "-W",
    "ignore",
    "-c",
    "import asyncore,sys;print(sys.version.split()[0])",
  ]);
  const python = py.ok ? py.stdout.trim() : null;
  if (!python) notes.push("python3 with asyncore not found: the Python rows are skipped.");
  let cc: string | null = null;
  for (const c of ["cc", "gcc", "clang"]) {
    if (await which(c)) {
      cc = c;
      break;
    }
  }
  const ccVersion = cc ? (await run([cc, "--version"])).stdout.split("\n")[0] : null;
  const taskset = nproc >= 2 && (await which("taskset")) !== null;
  if (!taskset) {
    notes.push(
      nproc < 2
        ? "one CPU only: server and load generator share it (no pinning)."
        : "taskset not found: processes are not pinned.",
    );
  }
  // The children need >= 5,010 fds (the servers) and >= 5,010 (the load generator).
  const want = 20000;
  let fdPrefix: string[] = [];
  let fdLimit = want;
  if ((await run(["prlimit", `--nofile=${want}:${want}`, "true"])).ok) {
    fdPrefix = ["prlimit", `--nofile=${want}:${want}`];
  } else {
    const hard = (await run(["sh", "-c", "ulimit -Hn"])).stdout.trim();
    fdLimit = hard === "unlimited" ? want : Math.min(want, Number(hard) || 1024);
    fdPrefix = ["sh", "-c", `ulimit -n ${fdLimit} && exec "$@"`, "sh"];
    notes.push(`prlimit refused ${want} fds: children run with ulimit -n ${fdLimit}.`);
  }
  if (fdLimit < 5100) notes.push(`fd limit ${fdLimit}: the 5,000-connection rows will fail.`);
  let loadgen: "c" | "ts" = opts.loadgen ?? (cc ? "c" : "ts");
  if (loadgen === "c" && !cc) {
    notes.push("--loadgen=c but no C compiler: using the Deno load generator.");
    loadgen = "ts";
  }
  if (loadgen === "ts") {
    notes.push(
      "load generator: bench/loadgen.ts (Deno, this library's epoll loop), not C: it is likely " +
        "slower than the faster servers, so those rows measure the load generator.",
    );
  }
  return {
    nproc,
    cpuModel,
    kernel,
    deno: `${Deno.version.deno} (V8 ${Deno.version.v8})`,
    python,
    cc,
    ccVersion,
    taskset,
    fdPrefix,
    fdLimit,
    loadgen,
    commit,
    notes,
  };
}

async function compile(env: Env): Promise<void> {
  if (!env.cc) return;
  await Deno.mkdir(OUT, { recursive: true });
  const jobs: [string, string, string[]][] = [
    [`${BENCH}/loadgen.c`, `${OUT}/loadgen`, ["-lm"]],
    [`${BENCH}/servers/epoll_echo.c`, `${OUT}/epoll_echo`, []],
  ];
  for (const [src, bin, libs] of jobs) {
    const r = await run([env.cc, "-O2", "-Wall", "-o", bin, src, ...libs]);
    if (!r.ok) throw new Error(`compiling ${src} failed:\n${r.stderr}`);
  }
}

function serverPrefix(env: Env): string[] {
  return [...(env.taskset ? ["taskset", "-c", "0"] : []), ...env.fdPrefix];
}

function loadgenCmd(env: Env): string[] {
  const pin = env.taskset ? ["taskset", "-c", "1"] : [];
  if (env.loadgen === "c") return [...pin, ...env.fdPrefix, `${OUT}/loadgen`];
  return [
    ...pin,
    ...env.fdPrefix,
    DENO,
    "run",
    "--no-prompt",
    "--allow-all", // it reads /proc, which Deno 2.9 only allows with --allow-all
    `${BENCH}/loadgen.ts`,
  ];
}

// ---- a running server ----

class RunningServer {
  readonly #child: Deno.ChildProcess;
  readonly pid: number;
  port = 0;
  exited = false;
  #stderr = "";
  #stdout = "";

  constructor(cmd: string[]) {
    this.#child = new Deno.Command(cmd[0], {
      args: cmd.slice(1),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.pid = this.#child.pid;
    void this.#child.status.then(() => this.exited = true);
    void this.#drain(this.#child.stderr, (s) => this.#stderr = (this.#stderr + s).slice(-4000));
  }

  async #drain(stream: ReadableStream<Uint8Array>, sink: (s: string) => void): Promise<void> {
    const dec = new TextDecoder();
    try {
      for await (const chunk of stream) sink(dec.decode(chunk, { stream: true }));
    } catch { /* closed */ }
  }

  /** Waits for "LISTENING <port>". */
  async ready(timeoutMs = 20000): Promise<void> {
    const dec = new TextDecoder();
    const reader = this.#child.stdout.getReader();
    const deadline = Date.now() + timeoutMs;
    while (!/LISTENING (\d+)/.test(this.#stdout)) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no LISTENING line after ${timeoutMs} ms: ${this.stderr}`);
      const next = await Promise.race([reader.read(), sleep(left).then(() => null)]);
      if (next === null) continue;
      if (next.done) throw new Error(`server exited before listening: ${this.stderr}`);
      this.#stdout += dec.decode(next.value, { stream: true });
    }
    this.port = Number(this.#stdout.match(/LISTENING (\d+)/)![1]);
    // Keep draining stdout so the server never blocks on a full pipe.
    void (async () => {
      try {
        for (;;) if ((await reader.read()).done) break;
      } catch { /* closed */ }
    })();
  }

  get stderr(): string {
    return this.#stderr.trim().split("\n").slice(-5).join(" | ");
  }

  async stop(): Promise<void> {
    if (!this.exited) {
      try {
        this.#child.kill("SIGTERM");
      } catch { /* gone */ }
      const t = setTimeout(() => {
        try {
          this.#child.kill("SIGKILL");
        } catch { /* gone */ }
      }, 2000);
      await this.#child.status;
      clearTimeout(t);
    }
  }
}

// ---- load generator results ----

/** What the load generator prints (see bench/loadgen.c). */
export interface LoadgenResult {
  mode: string;
  conns: number;
  idle: number;
  connect_s: number;
  window_s: number;
  ops: number;
  ops_per_s: number;
  bytes_sent: number;
  bytes_recv: number;
  tx_mb_per_s: number;
  rx_mb_per_s: number;
  bytes_echoed_total: number;
  p50_us: number;
  p99_us: number;
  max_us: number;
  jain: number;
  errors: number;
  error_detail: string[];
  drained: boolean;
  server: {
    pid: number;
    cpu_ticks: number;
    clk_tck: number;
    cpu_s: number;
    user_s: number;
    cpu_pct: number;
    vm_rss_connected_kb: number;
    vm_rss_end_kb: number;
    vm_hwm_kb: number;
    fds_before: number;
    fds_connected: number;
    fds_after: number;
  };
  loadgen: { cpu_s: number; cpu_pct: number };
  other_cpu_pct: number;
  cpu_busy_pct: number[];
  per_conn: number[];
}

async function runLoadgen(
  env: Env,
  args: Record<string, string | number>,
  timeoutS: number,
): Promise<LoadgenResult> {
  const cmd = [...loadgenCmd(env), ...Object.entries(args).map(([k, v]) => `--${k}=${v}`)];
  const child = new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let timedOut = false;
  const t = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }, timeoutS * 1000);
  const out = await child.output();
  clearTimeout(t);
  const stdout = new TextDecoder().decode(out.stdout).trim();
  const stderr = new TextDecoder().decode(out.stderr).trim();
  if (timedOut) throw new Error(`load generator timed out after ${timeoutS} s`);
  if (!out.success) {
    throw new Error(`load generator failed: ${stderr.split("\n").slice(-3).join(" | ")}`);
  }
  try {
    return JSON.parse(stdout.split("\n").pop()!) as LoadgenResult;
  } catch {
    throw new Error(
      `load generator printed no JSON: ${stdout.slice(0, 200)} ${stderr.slice(0, 200)}`,
    );
  }
}

// ---- rows ----

/** One table row. */
export interface Row {
  scenario: string;
  scenarioLabel: string;
  server: string;
  /** "ok", "n/a" (cannot be run, see note) or "error". */
  status: "ok" | "n/a" | "error";
  note?: string;
  mode?: "pingpong" | "bulk";
  rate?: number; // round trips/s, or MB/s for bulk
  p50?: number;
  p99?: number;
  cpuPerOp?: number; // µs per round trip, or per MB for bulk
  userPerOp?: number; // the user-mode part of it
  serverCpuPct?: number;
  loadgenCpuPct?: number;
  coreBusy?: number[];
  /** CPU used by other processes during the window, % of one CPU. */
  otherCpuPct?: number;
  /** Runs it took (a run is repeated when the machine was busy). */
  attempts?: number;
  /** The round of this run; after combining, how many rounds there were and their rates. */
  round?: number;
  rounds?: number;
  rates?: number[];
  /** Wall time of the run, seconds (server start to stop). */
  wallS?: number;
  rss0Kb?: number | null;
  rssConnectedKb?: number;
  hwmKb?: number | null;
  jain?: number;
  errors?: number;
  vsDeno?: number;
}

/**
 * Runs a row; when other processes took more than `--max-other` percent of a
 * CPU meanwhile, runs it again (up to `--retries` times, while the time
 * budget lasts) and keeps the quietest run.
 */
async function measureRow(
  env: Env,
  opts: Options,
  server: ServerSpec,
  sc: Scenario,
  budgetLeft: () => boolean,
): Promise<Row> {
  let best: Row | null = null;
  for (let attempt = 1;; attempt++) {
    const row = await runRow(env, opts, server, sc);
    row.attempts = attempt;
    const quieter = best === null ||
      (row.status === "ok" && (row.otherCpuPct ?? 0) < (best.otherCpuPct ?? 0));
    if (quieter) best = row;
    if (row.status !== "ok" || (row.otherCpuPct ?? 0) <= opts.maxOther) break;
    if (attempt > opts.retries || !budgetLeft()) break;
    console.error(
      `    (others used ${row.otherCpuPct!.toFixed(0)}% of a CPU meanwhile: running it again)`,
    );
    await sleep(2000);
  }
  return best!;
}

async function runRow(env: Env, opts: Options, server: ServerSpec, sc: Scenario): Promise<Row> {
  const base: Row = { scenario: sc.id, scenarioLabel: sc.label, server: server.name, status: "ok" };
  const srv = new RunningServer([...serverPrefix(env), ...server.cmd, HOST, "0"]);
  try {
    await srv.ready();
    // Deno opens a few fds lazily about 0.5 s after start: select() servers on Deno wait for them, so
    // that the fd count below is final; the RSS baseline also wants a settled process.
    await sleep(sc.rssBaseline || (server.select && server.cmd[0] === DENO) ? 1200 : 100);
    const fds = (await fdCount(srv.pid)) ?? 0;
    const total = sc.conns + sc.idle;
    if (server.select && fds + total > 1024) {
      return {
        ...base,
        status: "n/a",
        note: `select(): fds would reach ${fds + total - 1} (>= 1024)`,
      };
    }
    const rss0Kb = await statusKb(srv.pid, "VmRSS");
    const args: Record<string, string | number> = {
      host: HOST,
      port: srv.port,
      "server-pid": srv.pid,
      mode: sc.mode,
      conns: sc.conns,
      idle: sc.idle,
      size: 64,
      warmup: opts.warmup,
      duration: opts.duration,
      window: opts.window,
      "connect-timeout": 60,
    };
    const reps = sc.reps ?? 1;
    const results: LoadgenResult[] = [];
    for (let i = 0; i < reps; i++) {
      results.push(await runLoadgen(env, args, opts.warmup + opts.duration + 240));
    }
    const rateOf = (x: LoadgenResult) => (sc.mode === "bulk" ? x.rx_mb_per_s : x.ops_per_s);
    results.sort((x, y) => rateOf(x) - rateOf(y));
    const r = results[(results.length - 1) >> 1];
    const hwmKb = await statusKb(srv.pid, "VmHWM");
    if (srv.exited) throw new Error(`server died: ${srv.stderr}`);
    const bulk = sc.mode === "bulk";
    const rate = bulk ? r.rx_mb_per_s : r.ops_per_s;
    const units = bulk ? r.bytes_recv / 1e6 : r.ops;
    return {
      ...base,
      mode: sc.mode,
      rate,
      p50: bulk ? undefined : r.p50_us,
      p99: bulk ? undefined : r.p99_us,
      cpuPerOp: r.server.cpu_s >= 0 && units > 0 ? (r.server.cpu_s * 1e6) / units : undefined,
      userPerOp: r.server.user_s >= 0 && units > 0 ? (r.server.user_s * 1e6) / units : undefined,
      serverCpuPct: r.server.cpu_pct,
      loadgenCpuPct: r.loadgen.cpu_pct,
      coreBusy: r.cpu_busy_pct,
      otherCpuPct: r.other_cpu_pct,
      rss0Kb,
      rssConnectedKb: r.server.vm_rss_connected_kb,
      hwmKb,
      jain: bulk ? undefined : r.jain,
      errors: r.errors,
      note: r.errors ? `${r.errors} errors: ${r.error_detail.join("; ")}` : undefined,
    };
  } catch (error) {
    return { ...base, status: "error", note: (error as Error).message.slice(0, 300) };
  } finally {
    await srv.stop();
  }
}

// ---- the other benchmarks of the project ----

/**
 * Runs `bench/asynchat_bench.ts` (AsyncChat input parsing: linear in the
 * input?) and `bench/loop_async_bench.ts` (loopAsync against loop() and Deno
 * native, and loopAsync's idle CPU), each its own process after the servers
 * are done, and returns their output as sections of the report.
 */
async function runExtras(opts: Options): Promise<string[]> {
  const out: string[] = [];
  const scripts: [string, string, string[]][] = [
    [
      "AsyncChat input and output (bench/asynchat_bench.ts)",
      `${BENCH}/asynchat_bench.ts`,
      opts.quick ? ["--quick"] : [],
    ],
    [
      "loopAsync against loop() and Deno native (bench/loop_async_bench.ts)",
      `${BENCH}/loop_async_bench.ts`,
      opts.quick ? ["--seconds=1"] : [],
    ],
  ];
  for (const [title, script, args] of scripts) {
    console.error(`\n${title} ...`);
    const r = await run([DENO, "run", "--allow-all", script, ...args]);
    const text = r.ok ? r.stdout.trimEnd() : `failed (exit ${r.code}):\n${r.stderr.trimEnd()}`;
    console.error(text);
    out.push("", `### ${title}`, "", "```", text, "```");
  }
  return out;
}

// ---- soak ----

/** One soak run. */
export interface SoakRow {
  server: string;
  status: "ok" | "error";
  note?: string;
  conns: number;
  seconds: number;
  messages?: number;
  bytesEchoed?: number;
  mbPerS?: number;
  p50?: number;
  p99?: number;
  errors?: number;
  drained?: boolean;
  fdsBefore?: number;
  fdsConnected?: number;
  fdsAfter?: number;
  rss0Kb?: number | null;
  hwmKb?: number | null;
}

async function runSoak(env: Env, opts: Options, server: ServerSpec): Promise<SoakRow> {
  const base: SoakRow = {
    server: server.name,
    status: "ok",
    conns: opts.soakConns,
    seconds: opts.soak,
  };
  const srv = new RunningServer([...serverPrefix(env), ...server.cmd, HOST, "0"]);
  try {
    await srv.ready();
    await sleep(1200);
    const rss0Kb = await statusKb(srv.pid, "VmRSS");
    const r = await runLoadgen(env, {
      host: HOST,
      port: srv.port,
      "server-pid": srv.pid,
      mode: "soak",
      conns: opts.soakConns,
      "min-size": 64,
      "max-size": 65536,
      warmup: 0,
      duration: opts.soak,
      "connect-timeout": 60,
    }, opts.soak + 300);
    const hwmKb = await statusKb(srv.pid, "VmHWM");
    if (srv.exited) throw new Error(`server died: ${srv.stderr}`);
    return {
      ...base,
      messages: r.ops,
      bytesEchoed: r.bytes_echoed_total,
      mbPerS: r.rx_mb_per_s,
      p50: r.p50_us,
      p99: r.p99_us,
      errors: r.errors,
      drained: r.drained,
      fdsBefore: r.server.fds_before,
      fdsConnected: r.server.fds_connected,
      fdsAfter: r.server.fds_after,
      rss0Kb,
      hwmKb,
      note: r.errors ? r.error_detail.join("; ") : undefined,
    };
  } catch (error) {
    return { ...base, status: "error", note: (error as Error).message.slice(0, 300) };
  } finally {
    await srv.stop();
  }
}

// ---- tables ----

function mainTable(rows: Row[], maxOther: number): string {
  const head = [
    "Scenario",
    "Server",
    "Rate",
    "p50 µs",
    "p99 µs",
    "Server CPU µs/op (user+sys)",
    "Server CPU %",
    "Core busy % srv/lg",
    "Others %",
    "Peak RSS MiB",
    "Jain",
    "vs Deno",
  ];
  const lines = [`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`];
  let last = "";
  for (const r of rows) {
    const label = r.scenario === last ? "" : r.scenarioLabel;
    last = r.scenario;
    if (r.status !== "ok") {
      const cell = r.status === "n/a" ? "n/a" : "error";
      lines.push(
        `| ${label} | ${r.server} | ${cell} | | | | | | | | | ${
          r.note ? `(${r.note.replace(/\|/g, "/")})` : ""
        } |`,
      );
      continue;
    }
    const bulk = r.mode === "bulk";
    const spread = r.rates && r.rates.length > 1
      ? ` ±${((50 * (Math.max(...r.rates) - Math.min(...r.rates))) / r.rate!).toFixed(0)}%`
      : "";
    const rate = (bulk ? `${r.rate!.toFixed(0)} MB/s` : `${fmtInt(r.rate!)} rt/s`) + spread;
    const split = (t: number, u: number) =>
      bulk
        ? `${t.toFixed(0)} /MB (${u.toFixed(0)}+${(t - u).toFixed(0)})`
        : `${t.toFixed(2)} (${u.toFixed(2)}+${(t - u).toFixed(2)})`;
    const cpu = r.cpuPerOp === undefined ? "-" : split(r.cpuPerOp, r.userPerOp ?? 0);
    const cores = r.coreBusy && r.coreBusy.length >= 2
      ? `${r.coreBusy[0].toFixed(0)}/${r.coreBusy[1].toFixed(0)}`
      : "-";
    const errs = r.errors ? ` ⚠ ${r.errors} errors` : "";
    const busy = (r.otherCpuPct ?? 0) > maxOther;
    const others = `${r.otherCpuPct?.toFixed(0) ?? "-"}${busy ? " ⚠" : ""}${
      (r.attempts ?? 1) > 1 ? ` (run ${r.attempts})` : ""
    }`;
    lines.push(
      `| ${label} | ${r.server} | ${rate}${errs} | ${r.p50?.toFixed(1) ?? "-"} | ${
        r.p99?.toFixed(1) ?? "-"
      } | ${cpu} | ${r.serverCpuPct?.toFixed(0) ?? "-"} | ${cores} | ${others} | ${
        mib(r.hwmKb)
      } | ${r.jain?.toFixed(4) ?? "-"} | ${
        r.vsDeno === undefined ? "-" : `${r.vsDeno.toFixed(2)}×`
      } |`,
    );
  }
  return lines.join("\n");
}

function soakTable(rows: SoakRow[]): string {
  const head = [
    "Server",
    "Conns",
    "Seconds",
    "Messages",
    "Bytes echoed",
    "MB/s",
    "p50/p99 ms",
    "Errors",
    "Drained",
    "Server fds before/during/after",
    "RSS start / peak MiB",
  ];
  const lines = [`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`];
  for (const r of rows) {
    if (r.status !== "ok") {
      lines.push(`| ${r.server} | ${r.conns} | ${r.seconds} | error: ${r.note} | | | | | | | |`);
      continue;
    }
    lines.push(
      `| ${r.server} | ${fmtInt(r.conns)} | ${r.seconds} | ${fmtInt(r.messages!)} | ${
        fmtInt(r.bytesEchoed!)
      } | ${r.mbPerS!.toFixed(0)} | ${(r.p50! / 1000).toFixed(1)}/${
        (r.p99! / 1000).toFixed(1)
      } | ${r.errors}${r.note ? ` (${r.note})` : ""} | ${
        r.drained ? "yes" : "no"
      } | ${r.fdsBefore}/${r.fdsConnected}/${r.fdsAfter} | ${mib(r.rss0Kb)} / ${mib(r.hwmKb)} |`,
    );
  }
  return lines.join("\n");
}

/** Bytes per connection from the 5,000-connection rows: RSS idle-connected and peak, over RSS at 0. */
function connCostTable(rows: Row[], cost: ConnCost | null): string {
  const lines = [
    "| Server | RSS at 0 conns MiB | RSS with 5,000 idle MiB | Peak RSS, 5,000 active MiB | Bytes/conn idle | Bytes/conn peak |",
    "|---|---|---|---|---|---|",
  ];
  for (const r of rows.filter((r) => r.scenario === "rss5000" && r.status === "ok")) {
    if (r.rss0Kb == null || r.rssConnectedKb == null || r.hwmKb == null) continue;
    const idle = ((r.rssConnectedKb - r.rss0Kb) * 1024) / 5000;
    const peak = ((r.hwmKb - r.rss0Kb) * 1024) / 5000;
    lines.push(
      `| ${r.server} | ${mib(r.rss0Kb)} | ${mib(r.rssConnectedKb)} | ${mib(r.hwmKb)} | ${
        fmtInt(idle)
      } | ${fmtInt(peak)} |`,
    );
  }
  let out = lines.join("\n");
  if (cost) {
    const m = cost.marginal;
    out += "\n\n" + [
      `In-process breakdown for our server (\`bench/conn_cost.ts\`: ${
        fmtInt(cost.conns)
      } accepted idle connections, epoll loop live, after a full GC), bytes per connection:`,
      "",
      "| Where | Average, 0 → N | Marginal, N/2 → N |",
      "|---|---|---|",
      `| JS heap in use (\`heapUsed\`) | ${fmtInt(cost.heapPerConn)} | ${fmtInt(m.heapPerConn)} |`,
      `| … of which the EchoHandler objects (Dispatcher + ByteQueue, no socket) | ${
        fmtInt(cost.handlerOnlyHeapPerConn)
      } | |`,
      `| … the Socket objects | ${fmtInt(cost.socketOnlyHeapPerConn)} | |`,
      `| … the peer address kept in \`addr\` | ${fmtInt(cost.addressHeapPerConn)} | |`,
      `| … the rest: socket map and EpollPass entries (4 Maps), hash-table slack | ${
        fmtInt(
          cost.heapPerConn - cost.handlerOnlyHeapPerConn - cost.socketOnlyHeapPerConn -
            cost.addressHeapPerConn,
        )
      } | |`,
      `| JS heap reserved (\`heapTotal\`) | ${
        fmtInt((cost.heapTotalConnected - cost.heapTotal0) / cost.conns)
      } | ${fmtInt(m.heapTotalPerConn)} |`,
      `| Off-heap (\`external\`) | ${fmtInt(cost.externalPerConn)} | |`,
      `| RSS | ${fmtInt(cost.rssPerConn)} | ${fmtInt(m.rssPerConn)} |`,
    ].join("\n");
  }
  return out;
}

function envSection(env: Env, opts: Options): string {
  return [
    `- Machine: ${env.nproc} CPUs, ${env.cpuModel}, ${env.kernel}; library at commit ${env.commit}`,
    `- Deno ${env.deno}; Python ${env.python ?? "(none)"}; ${env.ccVersion ?? "no C compiler"}`,
    `- Pinning: ${
      env.taskset ? "servers on CPU 0, load generator on CPU 1 (taskset)" : "none"
    }; fd limit of the children: ${env.fdLimit} (${env.fdPrefix[0] ?? "inherited"})`,
    `- Load generator: ${
      env.loadgen === "c" ? "bench/loadgen.c (epoll, C)" : "bench/loadgen.ts (Deno)"
    }; ` +
    `${opts.rounds} round${
      opts.rounds > 1 ? "s" : ""
    } of ${opts.warmup} s warm-up + ${opts.duration} s measured per row; bulk window ${
      (opts.window / 1048576).toFixed(1)
    } MiB; servers read 64 KiB at a time, TCP_NODELAY on`,
    ...env.notes.map((n) => `- Note: ${n}`),
  ].join("\n");
}

const LEGEND = [
  "Every row was run once per round, rounds interleaved; shown is the run with the median rate, ±",
  "half the spread of the rounds' rates, and the median of the rounds' ratios to Deno native.",
  "Rate: round trips/s for ping-pong rows (each round trip is 64 B out and 64 B back), MB/s (10^6) echoed for bulk.",
  "Server CPU µs/op: utime+stime of the server process (/proc/PID/stat, all threads) over the measured window,",
  "per round trip (per MB for bulk), split into user and system (kernel) time. Server CPU %: the same over wall time (100 = one core).",
  "Core busy %: busy share of CPU 0 (server) and CPU 1 (load generator) from /proc/stat, which also counts",
  "kernel work not charged to a process (softirq).",
  "Others %: CPU time used by neither the server nor the load generator (other processes, unaccounted",
  "kernel work) in % of one CPU; a row above --max-other is run again (up to --retries times) and the",
  "quietest run is kept; ⚠ marks one that stayed above. Peak RSS: VmHWM of the server at the end of the row.",
  "Bulk rows: one connection streaming both ways with at most the window in flight; the load generator",
  "checks one read in 8 byte for byte and drops the rest in the kernel (MSG_TRUNC), so that it costs",
  "less per byte than an echo server.",
  "Jain: (Σx)²/(n·Σx²) over the per-connection round-trip counts (1 = perfectly fair).",
  "vs Deno: rate over Deno native's rate in the same row of this run.",
].join(" ");

/**
 * One row from the rounds: the run with the median rate, its "vs Deno" the
 * median of the per-round ratios, and the spread of the rates.
 */
function combine(runs: Row[]): Row {
  const ok = runs.filter((r) => r.status === "ok");
  if (ok.length === 0) return runs[0];
  const median = (xs: number[]) => {
    const v = [...xs].sort((a, b) => a - b);
    return v.length % 2 ? v[v.length >> 1] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
  };
  const byRate = [...ok].sort((a, b) => a.rate! - b.rate!);
  const row: Row = { ...byRate[(byRate.length - 1) >> 1] };
  const ratios = ok.map((r) => r.vsDeno).filter((x): x is number => x !== undefined);
  row.vsDeno = ratios.length ? median(ratios) : undefined;
  row.rates = ok.map((r) => r.rate!);
  row.rounds = runs.length;
  row.errors = runs.reduce((n, r) => n + (r.errors ?? 0), 0);
  if (ok.length < runs.length) {
    row.note = `${runs.length - ok.length} of ${runs.length} runs failed: ${
      runs.find((r) => r.status !== "ok")?.note
    }`;
  }
  return row;
}

// ---- main ----

async function main(): Promise<void> {
  const opts = parseOptions(Deno.args);
  const env = await probeEnv(opts);
  await compile(env);
  const started = performance.now();

  const servers = SERVERS.filter((s) => {
    if (s.needsCc && !env.cc) return false;
    if (s.name.startsWith("Python") && !env.python) return false;
    if (!opts.only || s.reference) return true;
    // A token matches a whole word of the name ("C", "epoll", "python") or, with spaces in it,
    // part of the name ("asyncore epoll").
    const name = s.name.toLowerCase();
    return opts.only.some((o) => {
      const t = o.toLowerCase();
      return t.includes(" ") ? name.includes(t) : name.split(/\s+/).includes(t);
    });
  });
  const scenarios = SCENARIOS.filter((s) => !opts.scenarios || opts.scenarios.includes(s.id));
  const log = (s: string) => console.error(s);
  log(envSection(env, opts));
  log("");

  // Re-runs of busy rows stop once the rows have taken this long (the default run stays
  // under ~6 minutes).
  const perRun = opts.warmup + opts.duration + 0.5;
  const budgetS = opts.rounds * scenarios.length * servers.length * perRun;
  const budgetLeft = () => (performance.now() - started) / 1000 < budgetS;
  // Rounds: every scenario on every server, then again; a server's rows of one scenario
  // are compared with Deno native's row of the same round, measured moments apart.
  const byKey = new Map<string, Row[]>();
  const totalRuns = opts.rounds * scenarios.length * servers.length;
  let done = 0;
  for (let round = 1; round <= opts.rounds; round++) {
    for (const sc of scenarios) {
      const group: Row[] = [];
      for (const server of servers) {
        const t0 = performance.now();
        const row = await measureRow(env, opts, server, sc, budgetLeft);
        row.round = round;
        row.wallS = (performance.now() - t0) / 1000;
        group.push(row);
        const what = row.status !== "ok"
          ? `${row.status} ${row.note ?? ""}`
          : row.mode === "bulk"
          ? `${row.rate!.toFixed(0)} MB/s`
          : `${fmtInt(row.rate!)} rt/s, p99 ${row.p99!.toFixed(0)} µs`;
        log(`[${++done}/${totalRuns}] ${sc.label} — ${server.name}: ${what}`);
      }
      const ref = group.find((r) => SERVERS.find((s) => s.name === r.server)?.reference);
      for (const r of group) {
        if (r.status === "ok" && ref?.status === "ok" && ref.rate) r.vsDeno = r.rate! / ref.rate;
        const key = `${sc.id}\u0000${r.server}`;
        byKey.set(key, [...(byKey.get(key) ?? []), r]);
      }
    }
  }
  const rows: Row[] = [];
  for (const sc of scenarios) {
    for (const server of servers) rows.push(combine(byKey.get(`${sc.id}\u0000${server.name}`)!));
  }

  const soaks: SoakRow[] = [];
  if (opts.soak > 0) {
    for (const name of opts.soakServers) {
      const server = SERVERS.find((s) => s.name.toLowerCase() === name.toLowerCase());
      if (!server || (server.needsCc && !env.cc)) {
        log(`soak: no server named ${name}`);
        continue;
      }
      log(`soak: ${server.name}, ${opts.soakConns} connections, ${opts.soak} s ...`);
      const s = await runSoak(env, opts, server);
      log(
        s.status === "ok"
          ? `soak: ${
            fmtInt(s.bytesEchoed!)
          } bytes echoed, ${s.errors} errors, fds ${s.fdsBefore}/${s.fdsConnected}/${s.fdsAfter}`
          : `soak: error ${s.note}`,
      );
      soaks.push(s);
    }
  }

  let cost: ConnCost | null = null;
  if (opts.connCost) {
    log("connection cost: measuring ...");
    try {
      cost = await measureConnCost({
        conns: opts.quick ? 1000 : 5000,
        loadgen: loadgenCmd(env),
        prefix: serverPrefix(env),
      });
    } catch (error) {
      log(`connection cost: failed: ${(error as Error).message}`);
    }
  }

  const elapsed = (performance.now() - started) / 1000;
  const extras = opts.extras ? await runExtras(opts) : [];
  const md = [
    `Run of ${new Date().toISOString()} (${elapsed.toFixed(0)} s${opts.quick ? ", --quick" : ""})`,
    "",
    envSection(env, opts),
    "",
    mainTable(rows, opts.maxOther),
    "",
    LEGEND,
    ...(soaks.length ? ["", "### Soak", "", soakTable(soaks)] : []),
    "",
    "### Connection cost",
    "",
    connCostTable(rows, cost),
    ...extras,
  ].join("\n");
  console.log(md);
  await Deno.mkdir(OUT, { recursive: true });
  await Deno.writeTextFile(`${OUT}/results.md`, md + "\n");
  await Deno.writeTextFile(
    `${OUT}/results.json`,
    JSON.stringify({ env, opts, rows, soaks, cost }, null, 2) + "\n",
  );
  log(`\nwritten: bench/out/results.md, bench/out/results.json`);
  if (opts.record) {
    const path = `${BENCH}/RESULTS.md`;
    const begin = "<!-- bench:run:begin -->", end = "<!-- bench:run:end -->";
    let text = "";
    try {
      text = await Deno.readTextFile(path);
    } catch { /* new file */ }
    const block = `${begin}\n${md}\n${end}`;
    if (text.includes(begin) && text.includes(end)) {
      text = text.slice(0, text.indexOf(begin)) + block +
        text.slice(text.indexOf(end) + end.length);
    } else {
      text = `# Bench results\n\n${block}\n${text}`;
    }
    await Deno.writeTextFile(path, text);
    // `deno fmt --check` runs in CI: leave the file formatted.
    await run([DENO, "fmt", "--quiet", path]);
    log(`written: bench/RESULTS.md`);
  }
  const failed = rows.filter((r) => r.status === "error" || (r.errors ?? 0) > 0).length +
    soaks.filter((s) => s.status === "error" || (s.errors ?? 0) > 0 || s.fdsAfter! > s.fdsBefore!)
      .length;
  if (failed > 0) {
    log(`${failed} rows with errors`);
    Deno.exitCode = 1;
  }
}

if (import.meta.main) await main();
