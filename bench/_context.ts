/**
 * What every scenario of `deno task bench` gets (`BenchContext`): the
 * options, the environment, the servers chosen, a log on stderr, and the
 * report it adds its sections to; and the start and end of a run (building
 * the C programs; writing bench/out/results.{md,json} and, with
 * `--record`, bench/RESULTS.md).
 *
 * @module
 */

import { compile, type Env, probeEnv } from "./_env.ts";
import { type Options, parseOptions } from "./_options.ts";
import { BENCH, DENO, OUT, run } from "./_proc.ts";
import { selectServers, type ServerSpec } from "./_servers.ts";

/** The state of one bench run, handed to each scenario in turn. */
export interface BenchContext {
  opts: Options;
  env: Env;
  /** The servers chosen for this run (see `--only`). */
  servers: ServerSpec[];
  /** Progress on stderr. */
  log: (line: string) => void;
  /** The markdown report, in order: each scenario appends its lines. */
  report: string[];
  /** What goes into bench/out/results.json, by scenario. */
  json: Record<string, unknown>;
  /** Rows with errors so far (a failed row makes the run exit 1). */
  failures: number;
  /** `performance.now()` at the start. */
  started: number;
}

/** Parses the options, probes the machine, builds the C programs. */
export async function startBench(args: string[]): Promise<BenchContext> {
  const opts = parseOptions(args);
  const env = await probeEnv();
  await compile(env);
  const ctx: BenchContext = {
    opts,
    env,
    servers: selectServers(env, opts),
    log: (line) => console.error(line),
    report: [],
    json: { env, opts },
    failures: 0,
    started: performance.now(),
  };
  ctx.log(envSection(ctx));
  ctx.log("");
  return ctx;
}

/** The machine and the settings, as a markdown list. */
export function envSection({ env, opts }: BenchContext): string {
  return [
    `- Machine: ${env.nproc} CPUs, ${env.cpuModel}, ${env.kernel}; library at commit ${env.commit}`,
    `- Deno ${env.deno}; Python ${env.python ?? "(none)"}; ${env.ccVersion ?? "no C compiler"}`,
    `- Pinning: ${
      env.taskset ? "servers on CPU 0, load generator on CPU 1 (taskset)" : "none"
    }; fd limit of the children: ${env.fdLimit} (${env.fdPrefix[0] ?? "inherited"})`,
    `- Load generator: bench/loadgen.c (epoll, C); ` +
    `${opts.rounds} round${
      opts.rounds > 1 ? "s" : ""
    } of ${opts.warmup} s warm-up + ${opts.duration} s measured per row; bulk window ${
      (opts.window / 1048576).toFixed(1)
    } MiB; servers read 64 KiB at a time, TCP_NODELAY on`,
    ...env.notes.map((n) => `- Note: ${n}`),
  ].join("\n");
}

/** Prints the report and writes it out; sets the exit code when a row failed. */
export async function finishBench(ctx: BenchContext): Promise<void> {
  const { opts, log } = ctx;
  const elapsed = (performance.now() - ctx.started) / 1000;
  const md = [
    `Run of ${new Date().toISOString()} (${elapsed.toFixed(0)} s${opts.quick ? ", --quick" : ""})`,
    "",
    envSection(ctx),
    ...ctx.report,
  ].join("\n");
  console.log(md);
  await Deno.mkdir(OUT, { recursive: true });
  await Deno.writeTextFile(`${OUT}/results.md`, md + "\n");
  await Deno.writeTextFile(`${OUT}/results.json`, JSON.stringify(ctx.json, null, 2) + "\n");
  log(`\nwritten: bench/out/results.md, bench/out/results.json`);
  if (opts.record) await record(md, log);
  if (ctx.failures > 0) {
    log(`${ctx.failures} rows with errors`);
    Deno.exitCode = 1;
  }
}

/** Replaces the run block of bench/RESULTS.md (between its markers) with `md`. */
async function record(md: string, log: (line: string) => void): Promise<void> {
  const path = `${BENCH}/RESULTS.md`;
  const begin = "<!-- bench:run:begin -->", end = "<!-- bench:run:end -->";
  let text = "";
  try {
    text = await Deno.readTextFile(path);
  } catch { /* new file */ }
  const block = `${begin}\n${md}\n${end}`;
  if (text.includes(begin) && text.includes(end)) {
    text = text.slice(0, text.indexOf(begin)) + block + text.slice(text.indexOf(end) + end.length);
  } else {
    text = `# Bench results\n\n${block}\n${text}`;
  }
  await Deno.writeTextFile(path, text);
  // `deno fmt --check` runs in CI: leave the file formatted.
  await run([DENO, "fmt", "--quiet", path]);
  log(`written: bench/RESULTS.md`);
}

/**
 * Runs `cmd` (a benchmark that prints its own report) to its end and adds
 * its output to the report under `title`; a failure is reported, not thrown.
 */
export async function runSection(
  ctx: BenchContext,
  title: string,
  cmd: string[],
): Promise<void> {
  ctx.log(`\n${title} ...`);
  const r = await run(cmd);
  const text = r.ok ? r.stdout.trimEnd() : `failed (exit ${r.code}):\n${r.stderr.trimEnd()}`;
  if (!r.ok) ctx.failures++;
  ctx.log(text);
  ctx.report.push("", `### ${title}`, "", "```", text, "```");
}
