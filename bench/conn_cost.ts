/**
 * What one connection costs our echo server, measured inside the server
 * process: the bench's echo server runs `loop({ poller: "epoll" })`, the
 * load generator (in `hold` mode) opens N idle connections to it, and once
 * the N-th is accepted, from inside the loop (so the epoll bookkeeping is
 * live), the JS heap and RSS are compared with the same numbers taken before
 * the first connection and at N/2 (the marginal cost, without fixed costs
 * such as V8's young generation growing under load), after a full GC. Then N socketless `EchoHandler`s are
 * made, and N `Socket` objects over the listener's fd, to split the heap
 * cost between the handler objects, the socket objects and the rest.
 *
 *     deno run --allow-ffi --allow-read --allow-run --v8-flags=--expose-gc \
 *         bench/conn_cost.ts [--conns=5000] -- LOADGEN_ARGV...
 *
 * Prints one JSON object ({@linkcode ConnCost}). `bench/main.ts` runs it via
 * {@linkcode measureConnCost}.
 *
 * @module
 */

import { callLater, ExitNow, loop, Socket, socketMap } from "../mod.ts";
import { EchoHandler, EchoServer } from "./servers/asyncore_echo.ts";
import type { BenchContext } from "./_context.ts";
import { serverPrefix } from "./_env.ts";
import { loadgenCmd } from "./_loadgen.ts";
import { fmtInt, mib } from "./_proc.ts";
import type { Row } from "./echo_matrix.ts";

/** The measurement, in bytes. */
export interface ConnCost {
  conns: number;
  heapPerConn: number;
  handlerOnlyHeapPerConn: number;
  /** A `Socket` object alone (no fd of its own: all wrap the listener's fd). */
  socketOnlyHeapPerConn: number;
  /** The peer address kept in `addr` (an array and a string). */
  addressHeapPerConn: number;
  externalPerConn: number;
  rssPerConn: number;
  rss0: number;
  rssConnected: number;
  heapUsed0: number;
  heapUsedConnected: number;
  heapTotal0: number;
  heapTotalConnected: number;
  /** Between N/2 and N connections: fixed costs (young-generation growth, code) left out. */
  marginal: { heapPerConn: number; heapTotalPerConn: number; rssPerConn: number };
}

/** Runs this file in a fresh process and returns its result. */
export async function measureConnCost(
  opts: { conns: number; loadgen: string[]; prefix?: string[] },
): Promise<ConnCost> {
  const cmd = [
    ...(opts.prefix ?? []),
    Deno.execPath(),
    "run",
    "--no-prompt",
    "--allow-ffi",
    "--allow-read",
    "--allow-run",
    "--v8-flags=--expose-gc",
    new URL(import.meta.url).pathname,
    `--conns=${opts.conns}`,
    "--",
    ...opts.loadgen,
  ];
  const out = await new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout).trim();
  if (!out.success) {
    throw new Error(new TextDecoder().decode(out.stderr).trim().split("\n").slice(-3).join(" | "));
  }
  return JSON.parse(text.split("\n").pop()!) as ConnCost;
}

function snapshot(): Deno.MemoryUsage {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error("run with --v8-flags=--expose-gc");
  gc();
  gc();
  return Deno.memoryUsage();
}

function child(): void {
  const sep = Deno.args.indexOf("--");
  const own = sep < 0 ? Deno.args : Deno.args.slice(0, sep);
  const loadgen = sep < 0 ? [] : Deno.args.slice(sep + 1);
  if (loadgen.length === 0) throw new Error("give the load generator command after --");
  const n = Number(own.find((a) => a.startsWith("--conns="))?.slice(8) ?? 5000);

  let accepted = 0;
  let before: Deno.MemoryUsage | null = null;
  let half: Deno.MemoryUsage | null = null;
  let after: Deno.MemoryUsage | null = null;
  let gen: Deno.ChildProcess | null = null;

  class CountingServer extends EchoServer {
    override handleAccepted(sock: Socket, addr: [string, number] | string): void {
      super.handleAccepted(sock, addr as [string, number]);
      if (++accepted === n >> 1) half = snapshot();
      if (accepted === n) {
        after = snapshot();
        throw new ExitNow("all connected");
      }
    }
  }
  const server = new CountingServer("127.0.0.1", 0);
  const [, port] = (server.socket as Socket).getsockname() as [string, number];
  // Runs after the first pass: the epoll instance exists, nothing is connected yet.
  callLater(0, () => {
    before = snapshot();
    gen = new Deno.Command(loadgen[0], {
      args: [
        ...loadgen.slice(1),
        "--mode=hold",
        `--port=${port}`,
        `--server-pid=${Deno.pid}`,
        `--idle=${n}`,
      ],
      stdin: "piped",
      stdout: "null",
      stderr: "inherit",
    }).spawn();
  });
  try {
    loop({ poller: "epoll", timeout: 0.05 });
  } catch (error) {
    if (!(error instanceof ExitNow)) throw error;
  }
  if (!before || !half || !after) throw new Error(`only ${accepted} of ${n} connections arrived`);
  const b = before as Deno.MemoryUsage, m = half as Deno.MemoryUsage, a = after as Deno.MemoryUsage;
  const rest = n - (n >> 1);

  // The handler objects alone (a Dispatcher and its ByteQueue, no socket, not in a map).
  const h0 = snapshot();
  const keep: EchoHandler[] = [];
  for (let i = 0; i < n; i++) keep.push(new EchoHandler());
  const h1 = snapshot();
  const handlerOnly = (h1.heapUsed - h0.heapUsed - n * 8) / n; // minus the array's slots
  void keep.length;
  // Socket objects alone: all wrap the listener's fd (nothing is closed or collected).
  const fd = (server.socket as Socket).fileno();
  const s0 = snapshot();
  const socks: Socket[] = [];
  for (let i = 0; i < n; i++) socks.push(new Socket(2, 1, 0, fd));
  const s1 = snapshot();
  const socketOnly = (s1.heapUsed - s0.heapUsed - n * 8) / n;
  void socks.length;
  // The peer addresses: dropped, and the heap compared.
  const a0 = snapshot();
  for (const ch of socketMap.values()) if (ch !== server) ch.addr = null;
  const a1 = snapshot();
  const address = (a0.heapUsed - a1.heapUsed) / n;

  const result: ConnCost = {
    conns: n,
    heapPerConn: (a.heapUsed - b.heapUsed) / n,
    handlerOnlyHeapPerConn: handlerOnly,
    socketOnlyHeapPerConn: socketOnly,
    addressHeapPerConn: address,
    externalPerConn: (a.external - b.external) / n,
    rssPerConn: (a.rss - b.rss) / n,
    rss0: b.rss,
    rssConnected: a.rss,
    heapUsed0: b.heapUsed,
    heapUsedConnected: a.heapUsed,
    heapTotal0: b.heapTotal,
    heapTotalConnected: a.heapTotal,
    marginal: {
      heapPerConn: (a.heapUsed - m.heapUsed) / rest,
      heapTotalPerConn: (a.heapTotal - m.heapTotal) / rest,
      rssPerConn: (a.rss - m.rss) / rest,
    },
  };
  console.log(JSON.stringify(result));
  (gen as Deno.ChildProcess | null)?.kill("SIGKILL");
  Deno.exit(0);
}

// ---- the bench scenario ----

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

/**
 * Adds the connection-cost section: bytes per connection from the echo
 * matrix's 5,000-connection rows and (unless `--no-conn-cost`) the
 * in-process breakdown of {@linkcode measureConnCost}.
 */
export async function runConnCost(ctx: BenchContext): Promise<void> {
  const { opts, env, log } = ctx;
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

  ctx.json.cost = cost;
  const rows = (ctx.json.rows ?? []) as Row[];
  ctx.report.push("", "### Connection cost", "", connCostTable(rows, cost));
}

if (import.meta.main) child();
