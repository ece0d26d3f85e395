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
 * every byte checked, fd count before/after), the cost of a connection, and
 * the bench modules, each its own file: churn (`churn_bench.ts`), burst
 * (`burst_bench.ts`), sendfile (`sendfile_bench.ts`) and workers
 * (`workers_bench.ts`); each also runs alone (`deno run -A bench/x_bench.ts
 * [--quick]`).
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
 *   --modules=a,b        bench modules to run: churn burst sendfile workers (default all)
 *   --no-modules         skip the bench modules
 *   --record             also write the run into bench/RESULTS.md (between its markers)
 *
 * Results go to stdout (markdown) and to bench/out/results.{md,json}.
 *
 * @module
 */

import { type ConnCost, measureConnCost } from "./conn_cost.ts";
import { burstBench } from "./burst_bench.ts";
import { churnBench } from "./churn_bench.ts";
import { sendfileBench } from "./sendfile_bench.ts";
import { workersBench } from "./workers_bench.ts";

import {
  BENCH,
  type BenchModule,
  compile,
  DENO,
  type Env,
  fdCount,
  fmtInt,
  HOST,
  loadgenCmd,
  type LoadgenResult,
  mib,
  OUT,
  probeEnv,
  run,
  runLoadgen,
  RunningServer,
  serverPrefix,
  SERVERS,
  type ServerSpec,
  sleep,
  statusKb,
} from "./_harness.ts";

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

/** The bench modules (their own files), one line each: each returns its section of the report. */
const MODULES: [string, BenchModule][] = [
  ["churn", churnBench],
  ["burst", burstBench],
  ["sendfile", sendfileBench],
  ["workers", workersBench],
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
  /** The bench modules to run (see MODULES). */
  modules: string[];
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
    modules: MODULES.map(([name]) => name),
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
      case "modules":
        o.modules = list(v);
        for (const m of o.modules) {
          if (!MODULES.some(([name]) => name === m)) throw new Error(`no bench module ${m}`);
        }
        break;
      case "no-modules":
        o.modules = [];
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
    [
      "Bounded memory and idle timeouts (bench/memory_bench.ts)",
      `${BENCH}/memory_bench.ts`,
      opts.quick ? ["--quick"] : [],
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

  const modules: string[] = [];
  for (const [name, module] of MODULES.filter(([name]) => opts.modules.includes(name))) {
    log(`\n${name} (bench/${name}_bench.ts) ...`);
    modules.push("", await module({ env, quick: opts.quick, log }));
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
    ...modules,
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
