/**
 * Churn: 50 concurrent clients, each connecting, echoing one 64-byte message
 * and closing, over and over (bench/loadgen.c `--mode=churn`; every
 * connection from its own source address in 127.0.0.0/8, so TIME_WAIT never
 * runs out of ports). Connections per second, the server's CPU per
 * connection and the p99 from connect() to the echo, for this library's
 * epoll server beside C epoll, Deno native, Node and Python asyncore.
 *
 *     deno run -A bench/churn_bench.ts [--quick]      (or as part of `deno task bench`)
 *
 * @module
 */

import {
  type BenchContext,
  fmtInt,
  loadgenAgainst,
  medianRow,
  peerServers,
  roundOrder,
  runStandalone,
  table,
} from "./_harness.ts";

const CLIENTS = 50;

interface ChurnRow {
  server: string;
  rate?: number;
  cpuPerConn?: number;
  p99?: number;
  errors?: number;
  note?: string;
}

/** Runs the churn rows and returns the section. */
export async function churnBench(ctx: BenchContext): Promise<string> {
  const { env, quick, log } = ctx;
  const rounds = quick ? 1 : 3;
  const warmup = quick ? 0.25 : 0.5, duration = quick ? 1 : 2;
  const servers = peerServers(env);
  const runs = new Map<string, ChurnRow[]>();
  for (let round = 1; round <= rounds; round++) {
    for (const spec of roundOrder(servers, round, rounds)) {
      let row: ChurnRow;
      try {
        const r = await loadgenAgainst(env, spec, {
          mode: "churn",
          conns: CLIENTS,
          size: 64,
          warmup,
          duration,
        }, warmup + duration + 60);
        row = {
          server: spec.name,
          rate: r.ops_per_s,
          cpuPerConn: r.ops > 0 && r.server.cpu_s >= 0 ? (r.server.cpu_s * 1e6) / r.ops : undefined,
          p99: r.p99_us,
          errors: r.errors,
          note: r.errors ? r.error_detail.join("; ") : undefined,
        };
      } catch (error) {
        row = { server: spec.name, note: (error as Error).message.slice(0, 200) };
      }
      log(
        `churn [${round}/${rounds}] ${spec.name}: ${
          row.rate
            ? `${fmtInt(row.rate)} conn/s, ${row.cpuPerConn?.toFixed(0)} µs CPU/conn`
            : row.note
        }`,
      );
      runs.set(spec.name, [...(runs.get(spec.name) ?? []), row]);
    }
  }
  const rows = servers.map((s) => medianRow(runs.get(s.name)!, (r) => r.rate));
  const deno = rows.find((r) => r.server === "Deno native");
  const c = rows.find((r) => r.server === "C epoll");
  const body = rows.map((r) =>
    r.rate === undefined ? [r.server, "error", "", "", "", "", r.note ?? ""] : [
      r.server,
      fmtInt(r.rate),
      r.cpuPerConn?.toFixed(1) ?? "-",
      r.cpuPerConn && c?.cpuPerConn ? `${(r.cpuPerConn / c.cpuPerConn).toFixed(2)}×` : "-",
      (r.p99! / 1000).toFixed(2),
      deno?.rate ? `${(r.rate / deno.rate).toFixed(2)}×` : "-",
      r.errors ? `${r.errors} errors: ${r.note}` : "",
    ]
  );
  return [
    "### Churn: connect, echo 64 B, close (bench/churn_bench.ts)",
    "",
    `${CLIENTS} concurrent clients (C, bench/loadgen.c), each connection from its own 127.0.0.0/8 ` +
    `source address; ${rounds} round${
      rounds > 1 ? "s" : ""
    } of ${warmup} s warm-up + ${duration} s, ` +
    "the median by rate shown. Server CPU: utime+stime per completed connection.",
    "",
    table(
      ["Server", "Connections/s", "Server CPU µs/conn", "CPU vs C", "p99 ms", "vs Deno", "Notes"],
      body,
    ),
  ].join("\n");
}

if (import.meta.main) await runStandalone(churnBench);
