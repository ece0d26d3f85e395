/**
 * The echo matrix: every scenario (ping-pong with 1 to 1,000 connections,
 * 10 active + 5,000 idle, bulk, 5,000 connections for peak RSS) on every
 * chosen server, in interleaved rounds, each server a fresh process per
 * row, driven by the C load generator; one table with ratios to Deno native.
 *
 * @module
 */

import type { BenchContext } from "./_context.ts";
import type { Env } from "./_env.ts";
import { type LoadgenResult, runLoadgen } from "./_loadgen.ts";
import type { Options } from "./_options.ts";
import { DENO, fdCount, fmtInt, HOST, mib, RunningServer, sleep, statusKb } from "./_proc.ts";
import { roundOrder, SERVERS, type ServerSpec } from "./_servers.ts";
import { serverPrefix } from "./_env.ts";

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
  { env, opts }: BenchContext,
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

/** Runs the matrix; adds the table and its legend to the report, the rows to `ctx.json.rows`. */
export async function runEchoMatrix(ctx: BenchContext): Promise<Row[]> {
  const { opts, log } = ctx;
  const scenarios = SCENARIOS.filter((s) => !opts.scenarios || opts.scenarios.includes(s.id));
  const started = performance.now();
  // Re-runs of busy rows stop once the rows have taken this long (the default run stays
  // under ~6 minutes).
  const perRun = opts.warmup + opts.duration + 0.5;
  const budgetS = opts.rounds * scenarios.length * ctx.servers.length * perRun;
  const budgetLeft = () => (performance.now() - started) / 1000 < budgetS;
  // Rounds: every scenario on every server, then again, each round in another order
  // (roundOrder); a server's rows of one scenario are compared with Deno native's row of the
  // same round, measured moments apart.
  const byKey = new Map<string, Row[]>();
  const totalRuns = opts.rounds * scenarios.length * ctx.servers.length;
  let done = 0;
  for (let round = 1; round <= opts.rounds; round++) {
    for (const sc of scenarios) {
      const group: Row[] = [];
      for (const server of roundOrder(ctx.servers, round, opts.rounds)) {
        const t0 = performance.now();
        const row = await measureRow(ctx, server, sc, budgetLeft);
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
    for (const server of ctx.servers) {
      rows.push(combine(byKey.get(`${sc.id}\u0000${server.name}`)!));
    }
  }
  ctx.json.rows = rows;
  ctx.failures += rows.filter((r) => r.status === "error" || (r.errors ?? 0) > 0).length;
  ctx.report.push("", mainTable(rows, opts.maxOther), "", LEGEND);
  return rows;
}
