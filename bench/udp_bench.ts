/**
 * UDP echo at 64 B: packets per second and server CPU per packet, for this
 * library's `DatagramDispatcher` (`examples/udp_echo.ts`: a batch per
 * `recvmmsg`/`sendmmsg`, and `--per-datagram`: one `recvfrom`/`sendto` per
 * packet), Deno's own `Deno.listenDatagram` (`--unstable-net`), Node's
 * `dgram`, Python asyncore with a `SOCK_DGRAM` dispatcher, and a C
 * `recvmmsg`/`sendmmsg` loop. Each server is pinned to CPU 0 and driven by
 * the C load generator on CPU 1 (`bench/loadgen.c --mode=udp`: 8 connected
 * sockets, 16 datagrams outstanding on each, every echo checked byte for
 * byte). The target: at least 1.5 times Deno native's packets per second.
 *
 *     deno run -A bench/udp_bench.ts [--quick]      (or as part of `deno task bench`)
 *
 * @module
 */

import {
  BENCH,
  type BenchContext,
  DENO,
  fmtInt,
  loadgenAgainst,
  medianRow,
  OUT,
  ROOT,
  roundOrder,
  runStandalone,
  type ServerSpec,
  table,
} from "./_harness.ts";

/** Sockets of the load generator, and datagrams in flight on each. */
const SOCKETS = 8, OUTSTANDING = 16;
/** The target: this many times Deno native's packets per second. */
const TARGET = 1.5;

const UDP_ECHO = `${ROOT}/examples/udp_echo.ts`;

/** The servers, in table order; `needs` names what the row cannot run without. */
const SERVERS: (ServerSpec & { needs?: "node" | "python" })[] = [
  {
    name: "asyncore batched (recvmmsg)",
    cmd: [DENO, "run", "--no-prompt", "--allow-ffi", UDP_ECHO, "--poller=epoll"],
  },
  {
    name: "asyncore one call per packet",
    cmd: [DENO, "run", "--no-prompt", "--allow-ffi", UDP_ECHO, "--poller=epoll", "--per-datagram"],
  },
  {
    name: "Deno native",
    cmd: [
      DENO,
      "run",
      "--no-prompt",
      "--allow-net",
      "--unstable-net",
      `${BENCH}/servers/deno_udp_echo.ts`,
    ],
    reference: true,
  },
  { name: "Node dgram", cmd: ["node", `${BENCH}/servers/node_udp_echo.js`], needs: "node" },
  {
    name: "Python asyncore poll",
    cmd: ["python3", "-W", "ignore", `${BENCH}/servers/asyncore_udp_echo.py`, "--poller=poll"],
    needs: "python",
  },
  { name: "C recvmmsg", cmd: [`${OUT}/udp_recvmmsg_echo`] },
];

interface UdpRow {
  server: string;
  pps?: number;
  cpuPerPacket?: number;
  cpuPct?: number;
  p50?: number;
  p99?: number;
  lost?: number;
  errors?: number;
  note?: string;
}

/** Runs the UDP rows and returns the section. */
export async function udpBench(ctx: BenchContext): Promise<string> {
  const { env, quick, log } = ctx;
  const rounds = quick ? 1 : 3;
  const warmup = quick ? 0.25 : 0.5, duration = quick ? 1 : 2;
  const servers = SERVERS.filter((s) =>
    s.needs === undefined || (s.needs === "node" ? env.node !== null : env.python !== null)
  );
  const runs = new Map<string, UdpRow[]>();
  for (let round = 1; round <= rounds; round++) {
    for (const spec of roundOrder(servers, round, rounds)) {
      let row: UdpRow;
      try {
        const r = await loadgenAgainst(env, spec, {
          mode: "udp",
          conns: SOCKETS,
          outstanding: OUTSTANDING,
          size: 64,
          warmup,
          duration,
        }, warmup + duration + 30);
        row = {
          server: spec.name,
          pps: r.ops_per_s,
          cpuPerPacket: r.ops > 0 && r.server.cpu_s >= 0
            ? (r.server.cpu_s * 1e6) / r.ops
            : undefined,
          cpuPct: r.server.cpu_pct,
          p50: r.p50_us,
          p99: r.p99_us,
          lost: r.lost,
          errors: r.errors,
          note: r.errors ? r.error_detail.join("; ") : undefined,
        };
      } catch (error) {
        row = { server: spec.name, note: (error as Error).message.slice(0, 200) };
      }
      log(
        `udp [${round}/${rounds}] ${spec.name}: ${
          row.pps
            ? `${fmtInt(row.pps)} packets/s, ${row.cpuPerPacket?.toFixed(2)} µs CPU/packet`
            : row.note
        }`,
      );
      runs.set(spec.name, [...(runs.get(spec.name) ?? []), row]);
    }
  }
  const rows = servers.map((s) => medianRow(runs.get(s.name)!, (r) => r.pps));
  const deno = rows.find((r) => r.server === "Deno native");
  const ours = rows.find((r) => r.server === "asyncore batched (recvmmsg)");
  const body = rows.map((r) =>
    r.pps === undefined ? [r.server, "error", "", "", "", "", "", "", r.note ?? ""] : [
      r.server,
      fmtInt(r.pps),
      r.cpuPerPacket?.toFixed(2) ?? "-",
      r.cpuPct === undefined || r.cpuPct < 0 ? "-" : `${r.cpuPct.toFixed(0)}%`,
      r.p50?.toFixed(0) ?? "-",
      r.p99?.toFixed(0) ?? "-",
      fmtInt(r.lost ?? 0),
      deno?.pps ? `${(r.pps / deno.pps).toFixed(2)}×` : "-",
      r.errors ? `${r.errors} errors: ${r.note}` : "",
    ]
  );
  const x = ours?.pps && deno?.pps ? ours.pps / deno.pps : null;
  const verdict = x === null
    ? `Target ≥ ${TARGET}× Deno native's packets per second: not measured (a row failed).`
    : `Target ≥ ${TARGET}× Deno native's packets per second: ${x.toFixed(2)}× (${
      x >= TARGET ? "met" : "missed"
    }).`;
  return [
    "### UDP echo at 64 B: packets per second (bench/udp_bench.ts)",
    "",
    `The C load generator (bench/loadgen.c --mode=udp) keeps ${OUTSTANDING} datagrams in flight ` +
    `on each of ${SOCKETS} connected sockets and checks every echo byte for byte; ${rounds} ` +
    `round${rounds > 1 ? "s" : ""} of ${warmup} s warm-up + ${duration} s, the median by rate ` +
    "shown. Server CPU: utime+stime per echoed packet, and in % of one CPU. A socket that hears " +
    "nothing for 0.5 s gives its datagrams up for lost (UDP may drop them) and starts again.",
    "",
    table(
      [
        "Server",
        "Packets/s",
        "Server CPU µs/packet",
        "Server CPU",
        "p50 µs",
        "p99 µs",
        "Lost",
        "vs Deno",
        "Notes",
      ],
      body,
    ),
    "",
    `- ${verdict}`,
  ].join("\n");
}

if (import.meta.main) await runStandalone(udpBench);
