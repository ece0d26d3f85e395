/**
 * Workers: `examples/echo_workers.ts` (one loop per Deno Worker, all on one
 * port with SO_REUSEPORT) with 1 and 2 workers, ping-pong of 64 B on 100
 * connections (bench/loadgen.c), beside the single-loop server and Deno
 * native. The servers here are not pinned (the workers need more than one
 * CPU); the load generator is pinned to the last CPU. How much of the
 * machine was free before the rows is printed with them: a second worker
 * can only help where a core is free for it.
 *
 *     deno run -A bench/workers_bench.ts [--quick]      (or as part of `deno task bench`)
 *
 * @module
 */

import {
  type BenchContext,
  DENO,
  fmtInt,
  loadgenAgainst,
  medianRow,
  ROOT,
  roundOrder,
  run,
  runStandalone,
  serverNamed,
  type ServerSpec,
  sleep,
  table,
} from "./_harness.ts";

const CONNS = 100;

function workers(n: number): ServerSpec {
  return {
    name: `echo_workers, ${n} worker${n > 1 ? "s" : ""}`,
    cmd: [
      DENO,
      "run",
      "--no-prompt",
      "--allow-ffi",
      `--allow-read=${ROOT}`,
      `${ROOT}/examples/echo_workers.ts`,
    ],
  };
}

/** The idle share of every CPU over `ms`, in CPUs (from /proc/stat). */
async function freeCpus(ms: number): Promise<number> {
  const read = async () => {
    const line = (await run(["cat", "/proc/stat"])).stdout.split("\n")[0];
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    return { idle: v[3] + v[4], total: v.reduce((a, b) => a + b, 0) };
  };
  const a = await read();
  await sleep(ms);
  const b = await read();
  const ncpu = navigator.hardwareConcurrency;
  return b.total > a.total ? ((b.idle - a.idle) / (b.total - a.total)) * ncpu : NaN;
}

interface WorkersRow {
  server: string;
  rate?: number;
  cpuPct?: number;
  note?: string;
}

/** Runs the workers rows and returns the section. */
export async function workersBench(ctx: BenchContext): Promise<string> {
  const { env, quick, log } = ctx;
  const rounds = quick ? 1 : 3;
  const warmup = quick ? 0.25 : 0.4, duration = 1;
  const specs: [ServerSpec, string[]][] = [
    [serverNamed("asyncore epoll"), []],
    [workers(1), ["--workers=1"]],
    [workers(2), ["--workers=2"]],
    [serverNamed("Deno native"), []],
  ];
  const free = await freeCpus(1000);
  const runs = new Map<string, WorkersRow[]>();
  for (let round = 1; round <= rounds; round++) {
    for (const [spec, extra] of roundOrder(specs, round, rounds)) {
      let row: WorkersRow = { server: spec.name };
      try {
        const r = await loadgenAgainst(
          env,
          spec,
          {
            mode: "pingpong",
            conns: CONNS,
            size: 64,
            warmup,
            duration,
            "connect-timeout": 60,
          },
          warmup + duration + 120,
          extra,
          false,
        );
        row = { ...row, rate: r.ops_per_s, cpuPct: r.server.cpu_pct };
        if (r.errors) row.note = r.error_detail.join("; ");
      } catch (error) {
        row.note = (error as Error).message.slice(0, 200);
      }
      log(
        `workers [${round}/${rounds}] ${spec.name}: ${
          row.rate ? `${fmtInt(row.rate)} rt/s, ${row.cpuPct?.toFixed(0)}% CPU` : row.note
        }`,
      );
      runs.set(spec.name, [...(runs.get(spec.name) ?? []), row]);
    }
  }
  const rows = specs.map(([s]) => medianRow(runs.get(s.name)!, (r) => r.rate));
  const one = rows[1];
  const deno = rows.find((r) => r.server === "Deno native");
  const body = rows.map((r) => [
    r.server,
    r.rate === undefined ? "error" : fmtInt(r.rate),
    r.cpuPct?.toFixed(0) ?? "-",
    r.rate && one.rate ? `${(r.rate / one.rate).toFixed(2)}×` : "-",
    r.rate && deno?.rate ? `${(r.rate / deno.rate).toFixed(2)}×` : "-",
    r.note ?? "",
  ]);
  return [
    "### Workers: one loop per core with SO_REUSEPORT (bench/workers_bench.ts)",
    "",
    `Ping-pong 64 B on ${CONNS} connections; ${rounds} round${rounds > 1 ? "s" : ""} of ` +
    `${warmup} s warm-up + ${duration} s, median shown. ${navigator.hardwareConcurrency} CPUs, ` +
    `${free.toFixed(1)} of them free in the second before these rows; servers unpinned, the load ` +
    "generator pinned to CPU 1 — on 2 CPUs the second worker shares a core with it.",
    "",
    table(["Server", "Round trips/s", "Server CPU %", "vs 1 worker", "vs Deno", "Notes"], body),
  ].join("\n");
}

if (import.meta.main) await runStandalone(workersBench);
