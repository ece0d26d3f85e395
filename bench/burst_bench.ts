/**
 * Burst: 1,000 connections opened at once (bench/loadgen.c `--mode=burst`),
 * each sending one 64-byte message as soon as it connects. The time until
 * every one is echoed, how many waited longer than 0.9 s (a SYN dropped by
 * a full accept queue is retransmitted after 1 s), the p99, and the accept
 * backlog each server really has (the Send-Q `ss` shows for its listening
 * socket): this library with listen(1024) and with listen(128), beside C
 * epoll, Deno native (its default backlog), Node and Python asyncore.
 *
 *     deno run -A bench/burst_bench.ts [--quick]      (or as part of `deno task bench`)
 *
 * @module
 */

import {
  type BenchContext,
  listenBacklog,
  loadgenCmd,
  medianRow,
  peerServers,
  roundOrder,
  runStandalone,
  serverNamed,
  type ServerSpec,
  sleep,
  startServer,
  table,
} from "./_harness.ts";

const CONNS = 1000;
const TIMEOUT_S = 15;

interface BurstResult {
  done: number;
  failed: number;
  unfinished: number;
  delayed_over_0_9s: number;
  all_done_ms: number;
  p50_ms: number;
  p99_ms: number;
  server_cpu_s: number;
  errors: number;
}

interface BurstRow {
  server: string;
  backlog: number | null;
  /** The first burst a fresh server process sees (its code not yet compiled by the JIT). */
  r?: BurstResult;
  /** The second burst on the same process, once the first is over (warm). */
  warm?: BurstResult;
  note?: string;
}

async function burstOnce(ctx: BenchContext, port: number, pid: number): Promise<BurstResult> {
  const cmd = [
    ...loadgenCmd(ctx.env),
    `--port=${port}`,
    `--server-pid=${pid}`,
    "--mode=burst",
    `--conns=${CONNS}`,
    "--size=64",
    `--duration=${TIMEOUT_S}`,
  ];
  const out = await new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  const text = new TextDecoder().decode(out.stdout).trim();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr).trim().slice(0, 200));
  return JSON.parse(text.split("\n").pop()!) as BurstResult;
}

/** Runs the burst rows and returns the section. */
export async function burstBench(ctx: BenchContext): Promise<string> {
  const { env, quick, log } = ctx;
  const rounds = quick ? 1 : 3;
  const ours128: ServerSpec = {
    ...serverNamed("asyncore epoll"),
    name: "asyncore epoll, listen(128)",
    cmd: [...serverNamed("asyncore epoll").cmd, "--backlog=128"],
  };
  const servers = [...peerServers(env), ours128];
  const runs = new Map<string, BurstRow[]>();
  for (let round = 1; round <= rounds; round++) {
    for (const spec of roundOrder(servers, round, rounds)) {
      let row: BurstRow = { server: spec.name, backlog: null };
      try {
        const srv = await startServer(env, spec);
        try {
          // A settled server (Deno opens a few fds lazily), and a cold accept queue.
          await sleep(800);
          row.backlog = await listenBacklog(srv.port);
          row.r = await burstOnce(ctx, srv.port, srv.pid);
          // The same burst again on the now warm process (its TIME_WAITs are the client's).
          await sleep(1000);
          row.warm = await burstOnce(ctx, srv.port, srv.pid);
        } finally {
          await srv.stop();
        }
      } catch (error) {
        row = { ...row, note: (error as Error).message.slice(0, 200) };
      }
      log(
        `burst [${round}/${rounds}] ${spec.name} (backlog ${row.backlog}): ${
          row.r
            ? `all echoed in ${row.r.all_done_ms.toFixed(0)} ms (warm: ${
              row.warm?.all_done_ms.toFixed(0) ?? "-"
            } ms), ${row.r.delayed_over_0_9s} waited > 0.9 s`
            : row.note
        }`,
      );
      runs.set(spec.name, [...(runs.get(spec.name) ?? []), row]);
      // Let TIME_WAIT and the SYN queue settle between servers.
      await sleep(500);
    }
  }
  const cold = servers.map((s) => medianRow(runs.get(s.name)!, (r) => r.r?.all_done_ms));
  const warm = servers.map((s) => medianRow(runs.get(s.name)!, (r) => r.warm?.all_done_ms));
  const cCold = cold.find((r) => r.server === "C epoll")?.r;
  const cWarm = warm.find((r) => r.server === "C epoll")?.warm;
  const done = (r: BurstResult | undefined, c: BurstResult | undefined) => {
    if (!r) return ["error", ""];
    const missing = r.failed + r.unfinished;
    return [
      `${r.all_done_ms.toFixed(0)}${missing ? ` (${missing} never echoed)` : ""}`,
      c ? `${(r.all_done_ms / c.all_done_ms).toFixed(2)}×` : "-",
    ];
  };
  const body = servers.map((_, i) => {
    const row = cold[i], r = row.r, w = warm[i].warm;
    if (!r) {
      return [
        row.server,
        String(row.backlog ?? "-"),
        "error",
        "",
        "",
        "",
        "",
        "",
        "",
        row.note ?? "",
      ];
    }
    return [
      row.server,
      String(row.backlog ?? "-"),
      ...done(r, cCold),
      ...done(w, cWarm),
      `${r.delayed_over_0_9s} / ${w?.delayed_over_0_9s ?? "-"}`,
      r.p99_ms.toFixed(0),
      r.server_cpu_s >= 0 ? `${((r.server_cpu_s * 1e6) / CONNS).toFixed(0)} µs/conn` : "-",
      w && w.server_cpu_s >= 0 ? `${((w.server_cpu_s * 1e6) / CONNS).toFixed(0)} µs/conn` : "-",
    ];
  });
  return [
    "### Burst: 1,000 connections at once (bench/burst_bench.ts)",
    "",
    `Each of ${CONNS} connections (opened in one tight loop of non-blocking connects) sends 64 B ` +
    `once connected; times are from the first connect. First burst: a fresh server process ` +
    "(its code not yet compiled by the JIT, as after a restart); second burst: the same burst " +
    `again on that process 1 s later (a running server). ${rounds} round${
      rounds > 1 ? "s" : ""
    }, each in another server order; the median of each column's rounds shown. Backlog: the ` +
    "accept-queue limit of the listening socket (`ss` Send-Q; the kernel caps it at " +
    "net.core.somaxconn).",
    "",
    table(
      [
        "Server",
        "Backlog",
        "First burst: all echoed ms",
        "vs C",
        "Second burst: all echoed ms",
        "vs C",
        "Waited > 0.9 s (first / second)",
        "p99 ms (first)",
        "Server CPU (first)",
        "Server CPU (second)",
      ],
      body,
    ),
  ].join("\n");
}

if (import.meta.main) await runStandalone(burstBench);
