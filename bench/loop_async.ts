/**
 * loopAsync against loop() and against Deno's own sockets: 64-byte
 * ping-pong round trips per second with 1 and 50 connections (the C load
 * generator, as every row of the bench), and the idle CPU of each server
 * with one listening channel and no clients.
 *
 * @module
 */

import type { BenchContext } from "./_context.ts";
import { serverPrefix } from "./_env.ts";
import { runLoadgen } from "./_loadgen.ts";
import { cpuSeconds, fmtInt, HOST, run, RunningServer, sleep } from "./_proc.ts";
import { serverNamed, type ServerSpec } from "./_servers.ts";

/** The three servers compared, by their names in `SERVERS`, with their labels here. */
const KINDS = {
  sync: ["asyncore epoll", "asyncore loop() (epoll)"],
  async: ["asyncore loopAsync epoll", "asyncore loopAsync() (epoll)"],
  deno: ["Deno native", "Deno.listen (native)"],
} as const;
type Kind = keyof typeof KINDS;

/** One cell: round trips/s, and the server's and load generator's CPU (1 = one core). */
interface Cell {
  rps: number;
  cpu: number;
  clientCpu: number;
}

/** Starts `server` in a fresh process and waits for it to listen. */
async function start(ctx: BenchContext, server: ServerSpec): Promise<RunningServer> {
  const srv = new RunningServer([...serverPrefix(ctx.env), ...server.cmd, HOST, "0"]);
  await srv.ready();
  return srv;
}

async function pingPong(
  ctx: BenchContext,
  server: ServerSpec,
  conns: number,
  seconds: number,
): Promise<Cell> {
  await using srv = await start(ctx, server);
  const r = await runLoadgen(ctx.env, {
    host: HOST,
    port: srv.port,
    "server-pid": srv.pid,
    mode: "pingpong",
    conns,
    idle: 0,
    size: 64,
    warmup: 0.5,
    duration: seconds,
    "connect-timeout": 60,
  }, seconds + 120);
  return { rps: r.ops_per_s, cpu: r.server.cpu_pct / 100, clientCpu: r.loadgen.cpu_pct / 100 };
}

async function idleCpu(ctx: BenchContext, server: ServerSpec, seconds: number, clkTck: number) {
  await using srv = await start(ctx, server);
  await sleep(300); // past start-up work
  const cpu0 = await cpuSeconds(srv.pid, clkTck);
  const t0 = performance.now();
  await sleep(seconds * 1000);
  return ((await cpuSeconds(srv.pid, clkTck)) - cpu0) / ((performance.now() - t0) / 1000);
}

const pad = (s: string, n: number, right = false) => (right ? s.padStart(n) : s.padEnd(n));
const pct = (x: number) => `${(x * 100).toFixed(1)}%`;

/** Measures the three servers and adds the table to the report (skipped with `--no-extras`). */
export async function runLoopAsync(ctx: BenchContext): Promise<void> {
  if (!ctx.opts.extras) return;
  const title = "loopAsync against loop() and Deno native";
  ctx.log(`\n${title} ...`);
  const seconds = ctx.opts.quick ? 1 : 3;
  const idleSeconds = 2;
  const clkTck = Number((await run(["getconf", "CLK_TCK"])).stdout.trim()) || 100;
  const servers = Object.fromEntries(
    Object.entries(KINDS).map(([k, [name]]) => [k, serverNamed(name)!]),
  ) as Record<Kind, ServerSpec>;
  const out = [
    `ping-pong, 64 B messages, ${seconds} s per run; client: bench/loadgen.c on CPU 1`,
    "",
  ];
  const header = [
    pad("server", 30),
    pad("conns", 5, true),
    pad("round trips/s", 14, true),
    pad("µs/rt", 7, true),
    pad("vs loop()", 9, true),
    pad("vs Deno", 8, true),
    pad("server CPU", 11, true),
    pad("client CPU", 11, true),
  ].join(" ");
  out.push(header, "-".repeat(header.length));
  let clientBound = false;
  try {
    for (const conns of [1, 50]) {
      const cells = {} as Record<Kind, Cell>;
      for (const kind of Object.keys(KINDS) as Kind[]) {
        cells[kind] = await pingPong(ctx, servers[kind], conns, seconds);
      }
      for (const kind of Object.keys(KINDS) as Kind[]) {
        const c = cells[kind];
        out.push([
          pad(KINDS[kind][1], 30),
          pad(String(conns), 5, true),
          pad(fmtInt(c.rps), 14, true),
          pad((1e6 / c.rps * conns).toFixed(1), 7, true),
          pad((c.rps / cells.sync.rps).toFixed(2), 9, true),
          pad((c.rps / cells.deno.rps).toFixed(2), 8, true),
          pad(pct(c.cpu), 11, true),
          pad(pct(c.clientCpu) + (c.clientCpu >= 0.9 ? "*" : " "), 11, true),
        ].join(" "));
        if (c.clientCpu >= 0.9) clientBound = true;
      }
    }
    if (clientBound) {
      out.push("* the load generator used most of a core: that row may measure the client");
    }
    out.push("", `idle CPU over ${idleSeconds} s, one listening channel, no clients:`);
    for (const kind of ["async", "sync", "deno"] as Kind[]) {
      const cpu = await idleCpu(ctx, servers[kind], idleSeconds, clkTck);
      out.push(`  ${pad(KINDS[kind][1], 30)} ${pad(pct(cpu), 7, true)} of one core`);
    }
    out.push(
      `(CPU from /proc/PID/stat at ${clkTck} ticks/s, 100% = one core; ` +
        "µs/rt = mean time of one round trip on one connection)",
    );
  } catch (error) {
    out.push(`failed: ${(error as Error).message}`);
    ctx.failures++;
  }
  const text = out.join("\n");
  ctx.log(text);
  ctx.report.push("", `### ${title}`, "", "```", text, "```");
}
