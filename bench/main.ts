/**
 * `deno task bench`: echo servers on loopback, each in its own process pinned
 * to CPU 0, driven by the same load generator pinned to CPU 1.
 *
 * Servers: ours (`bench/servers/asyncore_echo.ts`) on select, poll and epoll;
 * Deno's own networking (`bench/servers/deno_echo.ts`, the yardstick every
 * row is compared with); Python 3 asyncore on select and poll; a plain C
 * epoll server (`bench/servers/epoll_echo.c`). The load generator is C
 * (`bench/loadgen.c`); both C programs are compiled into `bench/out/` with
 * cc/gcc (the bench needs a C compiler).
 *
 * Scenarios: ping-pong of 64 B messages with 1, 10, 100 and 1,000
 * connections; 10 active + 5,000 idle connections; bulk on one connection;
 * 5,000 connections all ping-ponging (peak RSS). Then a soak (mixed sizes,
 * every byte checked, fd count before/after), the cost of a connection, the
 * AsyncChat `Deno.bench` files and loopAsync against loop().
 *
 * This file is the list of scenarios, run in order; each is a module of its
 * own with one `runX(ctx)` entry (the shared harness is in `bench/_*.ts`).
 *
 * Options:
 *   --quick              1 round of 1 s windows, 5 s soak with 500 connections (or BENCH_QUICK=1)
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
 *   --no-conn-cost       skip the connection-cost measurement
 *   --no-extras          skip the AsyncChat and loopAsync benchmarks run at the end
 *   --modules=a,b        scenario modules to run: churn burst sendfile workers memory tls streams
 *                        udp (default all)
 *   --no-modules         skip the scenario modules
 *   --record             also write the run into bench/RESULTS.md (between its markers)
 *
 * BENCH_BASELINE=DIR (a checkout of an earlier commit: `git worktree add DIR COMMIT`) adds that
 * commit's echo servers (classic and recvInto, epoll; and its TLS server) as "(baseline)" rows,
 * measured in the same rounds as today's code.
 *
 * Results go to stdout (markdown) and to bench/out/results.{md,json}.
 * The TLS rows are a module too (`bench/tls_bench.ts`; also alone: `deno run -A bench/tls_bench.ts`),
 * and so are the Web Streams rows (`bench/streams_bench.ts`: `listen()` against `Deno.listen`) and
 * the UDP rows (`bench/udp_bench.ts`: `DatagramDispatcher` against `Deno.listenDatagram`, Node's
 * `dgram`, Python asyncore and a C `recvmmsg` loop, 64 B packets per second).
 *
 * @module
 */

import { finishBench, runSection, startBench } from "./_context.ts";
import { runEchoMatrix } from "./echo_matrix.ts";
import { runSoak } from "./soak.ts";
import { runConnCost } from "./conn_cost.ts";
import { runAsyncChat } from "./asynchat.ts";
import { runLoopAsync } from "./loop_async.ts";

const ctx = await startBench(Deno.args);
await runEchoMatrix(ctx);
await runSoak(ctx);
await runConnCost(ctx);
await runAsyncChat(ctx);
await runLoopAsync(ctx);

// Scenario modules that print their own section (each also runs alone: `deno run -A bench/X.ts --quick`).
const MODULES: [id: string, title: string, file: string][] = [
  ["churn", "Churn: connect, echo 64 B, close (bench/churn_bench.ts)", "churn_bench.ts"],
  ["burst", "Burst: 1,000 connections at once (bench/burst_bench.ts)", "burst_bench.ts"],
  ["sendfile", "Serving a file (bench/sendfile_bench.ts)", "sendfile_bench.ts"],
  ["workers", "One loop per core (bench/workers_bench.ts)", "workers_bench.ts"],
  ["memory", "Bounded memory and idle timeouts (bench/memory_bench.ts)", "memory_bench.ts"],
  [
    "tls",
    "TLS: churn, ping-pong, bulk, memory per idle connection (bench/tls_bench.ts)",
    "tls_bench.ts",
  ],
  ["streams", "Streams: listen() against Deno.listen (bench/streams_bench.ts)", "streams_bench.ts"],
  ["udp", "UDP echo at 64 B: packets per second (bench/udp_bench.ts)", "udp_bench.ts"],
];
for (const [id, title, file] of MODULES) {
  if (ctx.opts.modules !== null && !ctx.opts.modules.includes(id)) continue;
  const script = new URL(`./${file}`, import.meta.url).pathname;
  await runSection(ctx, title, [
    Deno.execPath(),
    "run",
    "-A",
    script,
    ...(ctx.opts.quick ? ["--quick"] : []),
  ]);
}
await finishBench(ctx);
