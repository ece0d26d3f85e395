/**
 * The bench harness shared by `bench/main.ts` and the bench modules beside it
 * (`churn_bench.ts`, `burst_bench.ts`, `sendfile_bench.ts`,
 * `workers_bench.ts`): paths, subprocesses, the environment probe, the C
 * programs' compilation, pinning, a running server and the load generator.
 *
 * @module
 */

// ---- paths and tools ----

export const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
export const BENCH = `${ROOT}/bench`;
export const OUT = `${BENCH}/out`;
export const HOST = "127.0.0.1";
export const DENO = Deno.execPath();

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

export const OURS = `${BENCH}/servers/asyncore_echo.ts`;
export const DENO_OURS = [DENO, "run", "--no-prompt", "--allow-ffi", OURS];
export const PYTHON = ["python3", "-W", "ignore", `${BENCH}/servers/asyncore_echo.py`];

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

/** Node's echo server (`bench/servers/node_echo.js`), for the rows of the bench modules. */
export const NODE_ECHO: ServerSpec = {
  name: "Node",
  cmd: ["node", `${BENCH}/servers/node_echo.js`],
};

/** A server spec by its name in {@linkcode SERVERS}. */
export function serverNamed(name: string): ServerSpec {
  const s = SERVERS.find((x) => x.name === name);
  if (!s) throw new Error(`no bench server named ${name}`);
  return s;
}

// ---- small helpers ----

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function run(cmd: string[], opts: { stdin?: string } = {}): Promise<
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

export async function which(name: string): Promise<string | null> {
  const r = await run(["sh", "-c", `command -v ${name}`]);
  return r.ok ? r.stdout.trim() : null;
}

// Deno 2.9 wants --allow-all for any read under /proc, which `deno task bench`
// does not grant: /proc is read through small subprocesses instead.

export async function statusKb(pid: number, key: string): Promise<number | null> {
  const r = await run(["cat", `/proc/${pid}/status`]);
  const m = r.stdout.match(new RegExp(`^${key}:\\s+(\\d+)`, "m"));
  return m ? Number(m[1]) : null;
}

export async function fdCount(pid: number): Promise<number | null> {
  const r = await run(["ls", `/proc/${pid}/fd`]);
  return r.ok ? r.stdout.split("\n").filter((l) => l.trim() !== "").length : null;
}

export const fmtInt = (n: number) => Math.round(n).toLocaleString("en-US");
export const mib = (
  kb: number | null | undefined,
) => (kb == null || kb < 0 ? "-" : (kb / 1024).toFixed(1));

// ---- the environment ----

export interface Env {
  nproc: number;
  cpuModel: string;
  kernel: string;
  deno: string;
  python: string | null;
  /** Node's version, or null when there is no `node`. */
  node: string | null;
  cc: string | null;
  ccVersion: string | null;
  taskset: boolean;
  fdPrefix: string[];
  fdLimit: number;
  loadgen: "c" | "ts";
  commit: string;
  notes: string[];
}

export async function probeEnv(opts: { loadgen: "c" | "ts" | null }): Promise<Env> {
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
  const nodeRun = await run(["node", "--version"]);
  const node = nodeRun.ok ? nodeRun.stdout.trim() : null;
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
  if (!cc) throw new Error("the bench needs a C compiler (cc or gcc) for bench/loadgen.c");
  const loadgen: "c" | "ts" = opts.loadgen ?? "c";
  return {
    nproc,
    cpuModel,
    kernel,
    deno: `${Deno.version.deno} (V8 ${Deno.version.v8})`,
    python,
    node,
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

export async function compile(env: Env): Promise<void> {
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

export function serverPrefix(env: Env): string[] {
  return [...(env.taskset ? ["taskset", "-c", "0"] : []), ...env.fdPrefix];
}

export function loadgenCmd(env: Env): string[] {
  const pin = env.taskset ? ["taskset", "-c", "1"] : [];
  return [...pin, ...env.fdPrefix, `${OUT}/loadgen`];
}

// ---- a running server ----

/** The line a server prints once it listens: "LISTENING <port>" (or "listening on host:port"). */
const READY = /(?:LISTENING |listening on \S*:)(\d+)/;

export class RunningServer {
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
    while (!READY.test(this.#stdout)) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no LISTENING line after ${timeoutMs} ms: ${this.stderr}`);
      const next = await Promise.race([reader.read(), sleep(left).then(() => null)]);
      if (next === null) continue;
      if (next.done) throw new Error(`server exited before listening: ${this.stderr}`);
      this.#stdout += dec.decode(next.value, { stream: true });
    }
    this.port = Number(this.#stdout.match(READY)![1]);
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

export async function runLoadgen(
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

// ---- the bench modules (churn, burst, sendfile, workers) ----

/** What `bench/main.ts` hands each bench module. */
export interface BenchContext {
  /** The probed environment (C programs compiled). */
  env: Env;
  /** Short runs (`--quick`). */
  quick: boolean;
  /** Progress lines (stderr). */
  log: (line: string) => void;
}

/** A bench module: runs its rows and returns its section of the report (markdown). */
export type BenchModule = (ctx: BenchContext) => Promise<string>;

/**
 * Runs a bench module on its own (`deno run -A bench/churn_bench.ts
 * [--quick]`): probes the machine, compiles the C programs, prints the section.
 */
export async function runStandalone(module: BenchModule): Promise<void> {
  const env = await probeEnv({ loadgen: null });
  await compile(env);
  const quick = Deno.args.includes("--quick");
  console.log(await module({ env, quick, log: (l) => console.error(l) }));
}

/** Starts `spec` (host and port 0, then `extra` args), pinned as the servers of the main table unless `pin` is false. */
export async function startServer(
  env: Env,
  spec: ServerSpec,
  extra: string[] = [],
  pin = true,
): Promise<RunningServer> {
  const prefix = pin ? serverPrefix(env) : env.fdPrefix;
  const srv = new RunningServer([...prefix, ...spec.cmd, HOST, "0", ...extra]);
  try {
    await srv.ready();
  } catch (error) {
    await srv.stop();
    throw error;
  }
  return srv;
}

/** The median of numbers (the mean of the middle two for an even count). */
export function median(xs: number[]): number {
  const v = [...xs].sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  return v.length % 2 ? v[v.length >> 1] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
}

/** The accept-queue limit of the socket listening on `port` (the Send-Q `ss` shows), or null. */
export async function listenBacklog(port: number): Promise<number | null> {
  const r = await run(["ss", "-Hltn", `sport = :${port}`]);
  const cols = r.stdout.trim().split(/\s+/);
  return r.ok && cols.length >= 3 && /^\d+$/.test(cols[2]) ? Number(cols[2]) : null;
}

/** The servers beside ours in the connection rows: C epoll, Deno native, Node, Python asyncore. */
export function peerServers(env: Env): ServerSpec[] {
  return [
    serverNamed("asyncore epoll"),
    serverNamed("Deno native"),
    ...(env.cc ? [serverNamed("C epoll")] : []),
    ...(env.node ? [NODE_ECHO] : []),
    ...(env.python ? [serverNamed("Python asyncore poll")] : []),
  ];
}

/** A markdown table from a header and rows of cells. */
export function table(head: string[], rows: string[][]): string {
  return [
    `| ${head.join(" | ")} |`,
    `|${head.map(() => "---").join("|")}|`,
    ...rows.map((r) => `| ${r.join(" | ")} |`),
  ].join("\n");
}
