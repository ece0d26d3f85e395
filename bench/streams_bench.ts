/**
 * Streams: an echo over this library's Web Streams (`listen()`, then
 * `conn.readable.pipeTo(conn.writable)` per connection:
 * `bench/servers/streams_echo.ts`) against the same echo over Deno's own
 * (`Deno.listen`: `bench/servers/deno_streams_echo.ts`), each pinned to CPU
 * 0 and driven by the C load generator on CPU 1: ping-pong of 64 B on 100
 * and 1,000 connections, and bulk on one connection. The targets: at least
 * Deno's rate with 100 connections, and Jain's fairness index of 0.99 or
 * more with 1,000.
 *
 *     deno run -A bench/streams_bench.ts [--quick]      (or as part of `deno task bench`)
 *
 * @module
 */

import {
  BENCH,
  type BenchContext,
  DENO,
  fmtInt,
  loadgenAgainst,
  type LoadgenResult,
  medianRow,
  roundOrder,
  runStandalone,
  type ServerSpec,
  table,
} from "./_harness.ts";

/** The two servers. */
const SERVERS: ServerSpec[] = [
  {
    name: "asyncore streams",
    cmd: [DENO, "run", "--no-prompt", "--allow-ffi", `${BENCH}/servers/streams_echo.ts`],
  },
  {
    name: "Deno native streams",
    cmd: [DENO, "run", "--no-prompt", "--allow-net", `${BENCH}/servers/deno_streams_echo.ts`],
    reference: true,
  },
];

/** One measured situation. */
interface Scenario {
  id: string;
  label: string;
  mode: "pingpong" | "bulk";
  conns: number;
}

const SCENARIOS: Scenario[] = [
  { id: "pp100", label: "ping-pong 64 B, 100 conns", mode: "pingpong", conns: 100 },
  { id: "pp1000", label: "ping-pong 64 B, 1,000 conns", mode: "pingpong", conns: 1000 },
  { id: "bulk", label: "bulk, 1 conn (MB/s echoed)", mode: "bulk", conns: 1 },
];

/** One run of one server in one scenario. */
interface StreamsRow {
  scenario: string;
  server: string;
  rate?: number;
  p50?: number;
  p99?: number;
  cpuPerOp?: number;
  jain?: number;
  errors?: number;
  note?: string;
}

function rowOf(sc: Scenario, server: string, r: LoadgenResult): StreamsRow {
  const bulk = sc.mode === "bulk";
  const units = bulk ? r.bytes_recv / 1e6 : r.ops;
  return {
    scenario: sc.id,
    server,
    rate: bulk ? r.rx_mb_per_s : r.ops_per_s,
    p50: bulk ? undefined : r.p50_us,
    p99: bulk ? undefined : r.p99_us,
    cpuPerOp: r.server.cpu_s >= 0 && units > 0 ? (r.server.cpu_s * 1e6) / units : undefined,
    jain: bulk ? undefined : r.jain,
    errors: r.errors,
    note: r.errors ? r.error_detail.join("; ") : undefined,
  };
}

/** Runs the streams rows and returns the section. */
export async function streamsBench(ctx: BenchContext): Promise<string> {
  const { env, quick, log } = ctx;
  const rounds = quick ? 1 : 3;
  const warmup = quick ? 0.25 : 0.4, duration = quick ? 1 : 1.5;
  const runs = new Map<string, StreamsRow[]>();
  for (let round = 1; round <= rounds; round++) {
    for (const sc of SCENARIOS) {
      for (const spec of roundOrder(SERVERS, round, rounds)) {
        let row: StreamsRow;
        try {
          const r = await loadgenAgainst(env, spec, {
            mode: sc.mode,
            conns: sc.conns,
            idle: 0,
            size: 64,
            warmup,
            duration,
            window: 4 * 1024 * 1024,
            "connect-timeout": 60,
          }, warmup + duration + 120);
          row = rowOf(sc, spec.name, r);
        } catch (error) {
          row = {
            scenario: sc.id,
            server: spec.name,
            note: (error as Error).message.slice(0, 200),
          };
        }
        const what = row.rate === undefined
          ? row.note
          : sc.mode === "bulk"
          ? `${row.rate.toFixed(0)} MB/s`
          : `${fmtInt(row.rate)} rt/s, Jain ${row.jain?.toFixed(4)}`;
        log(`streams [${round}/${rounds}] ${sc.label} — ${spec.name}: ${what}`);
        const key = `${sc.id} ${spec.name}`;
        runs.set(key, [...(runs.get(key) ?? []), row]);
      }
    }
  }
  const body: string[][] = [];
  const verdicts: string[] = [];
  for (const sc of SCENARIOS) {
    const rows = SERVERS.map((s) => medianRow(runs.get(`${sc.id} ${s.name}`)!, (r) => r.rate));
    const deno = rows.find((r) => r.server === "Deno native streams");
    const ours = rows.find((r) => r.server === "asyncore streams");
    for (const r of rows) {
      const bulk = sc.mode === "bulk";
      body.push(
        r.rate === undefined ? [sc.label, r.server, "error", "", "", "", "", "", r.note ?? ""] : [
          r === rows[0] ? sc.label : "",
          r.server,
          bulk ? `${r.rate.toFixed(0)} MB/s` : `${fmtInt(r.rate)} rt/s`,
          r.p50?.toFixed(1) ?? "-",
          r.p99?.toFixed(1) ?? "-",
          r.cpuPerOp === undefined ? "-" : bulk ? r.cpuPerOp.toFixed(0) : r.cpuPerOp.toFixed(2),
          r.jain?.toFixed(4) ?? "-",
          deno?.rate ? `${(r.rate / deno.rate).toFixed(2)}×` : "-",
          r.errors ? `${r.errors} errors: ${r.note}` : "",
        ],
      );
    }
    if (sc.id === "pp100" && ours?.rate && deno?.rate) {
      const x = ours.rate / deno.rate;
      verdicts.push(
        `100 connections: ${x.toFixed(2)}× Deno native streams (target ≥ 1.0×: ${
          x >= 1 ? "met" : "not met"
        })`,
      );
    }
    if (sc.id === "pp1000" && ours?.jain !== undefined) {
      verdicts.push(
        `1,000 connections: Jain ${ours.jain.toFixed(4)} (target ≥ 0.99: ${
          ours.jain >= 0.99 ? "met" : "not met"
        })`,
      );
    }
  }
  return [
    "### Streams: listen() and pipeTo against Deno.listen's streams (bench/streams_bench.ts)",
    "",
    "Both servers echo with `conn.readable.pipeTo(conn.writable)` per connection: ours over " +
    "`listen()` (the streams run on the default loop's background run, epoll), Deno's over " +
    `\`Deno.listen\`. ${rounds} round${rounds > 1 ? "s" : ""} of ${warmup} s warm-up + ` +
    `${duration} s, the median by rate shown; server CPU µs per round trip (per MB for bulk).`,
    "",
    table(
      [
        "Scenario",
        "Server",
        "Rate",
        "p50 µs",
        "p99 µs",
        "Server CPU µs/op",
        "Jain",
        "vs Deno",
        "Notes",
      ],
      body,
    ),
    "",
    ...verdicts.map((v) => `- ${v}`),
  ].join("\n");
}

if (import.meta.main) await runStandalone(streamsBench);
