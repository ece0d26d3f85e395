/**
 * What the scenario modules (churn, burst, sendfile, workers) share beyond
 * the bench's common modules (`_proc.ts`, `_env.ts`, `_servers.ts`,
 * `_loadgen.ts`, re-exported here): the Node echo server, the servers beside
 * ours, starting a pinned server, small statistics and tables, and running a
 * module on its own (`deno run -A bench/churn_bench.ts [--quick]`).
 *
 * @module
 */

import { compile, type Env as BaseEnv, probeEnv, serverPrefix } from "./_env.ts";
import { BENCH, HOST, run, RunningServer, sleep, which } from "./_proc.ts";
import { type LoadgenResult, runLoadgen } from "./_loadgen.ts";
import { BASELINE, serverNamed as findServer, type ServerSpec } from "./_servers.ts";

export { BENCH, DENO, fmtInt, OUT, ROOT, run, sleep } from "./_proc.ts";
export { loadgenCmd, type LoadgenResult, runLoadgen } from "./_loadgen.ts";
export { roundOrder, type ServerSpec } from "./_servers.ts";

/** The probed environment, plus Node's version (null without `node`). */
export interface Env extends BaseEnv {
  node: string | null;
}

/** What a scenario module gets. */
export interface BenchContext {
  /** The probed environment (C programs compiled). */
  env: Env;
  /** Short runs (`--quick`). */
  quick: boolean;
  /** Progress lines (stderr). */
  log: (line: string) => void;
}

/** A scenario module: runs its rows and returns its section of the report (markdown). */
export type BenchModule = (ctx: BenchContext) => Promise<string>;

/** Node's echo server (`bench/servers/node_echo.js`), for the rows of the scenario modules. */
export const NODE_ECHO: ServerSpec = {
  name: "Node",
  cmd: ["node", `${BENCH}/servers/node_echo.js`],
};

/** A server spec by its name in `SERVERS`; a name that is not there is an error. */
export function serverNamed(name: string): ServerSpec {
  const s = findServer(name);
  if (!s) throw new Error(`no bench server named ${name}`);
  return s;
}

/**
 * Runs a scenario module on its own: probes the machine, compiles the C
 * programs, prints the section.
 */
export async function runStandalone(module: BenchModule): Promise<void> {
  const base = await probeEnv();
  await compile(base);
  const node = (await which("node")) ? (await run(["node", "--version"])).stdout.trim() : null;
  const env: Env = { ...base, node };
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

/**
 * One load-generator run against a fresh `spec` process: starts it (as
 * {@linkcode startServer}), lets it settle 300 ms, runs the load generator
 * with `args` plus the server's host, port and pid, and stops the server.
 */
export async function loadgenAgainst(
  env: Env,
  spec: ServerSpec,
  args: Record<string, string | number>,
  timeoutS: number,
  extra: string[] = [],
  pin = true,
): Promise<LoadgenResult> {
  const srv = await startServer(env, spec, extra, pin);
  try {
    await sleep(300);
    return await runLoadgen(env, {
      host: HOST,
      port: srv.port,
      "server-pid": srv.pid,
      ...args,
    }, timeoutS);
  } finally {
    await srv.stop();
  }
}

/** The median of numbers (the mean of the middle two for an even count). */
export function median(xs: number[]): number {
  const v = [...xs].sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  return v.length % 2 ? v[v.length >> 1] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
}

/**
 * The round whose `value` is the median of the rounds that have one (the
 * first round when none has): rows keep every figure of one real run.
 */
export function medianRow<T>(rows: T[], value: (row: T) => number | undefined): T {
  const ok = rows.filter((r) => value(r) !== undefined);
  if (ok.length === 0) return rows[0];
  const m = median(ok.map((r) => value(r)!));
  return ok.reduce((best, r) => Math.abs(value(r)! - m) < Math.abs(value(best)! - m) ? r : best);
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
    ...(BASELINE !== undefined ? [serverNamed("asyncore epoll (baseline)")] : []),
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
