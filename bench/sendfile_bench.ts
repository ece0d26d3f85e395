/**
 * sendfile: a 256 MiB file (64 MiB with `--quick`) served whole to 1 client
 * and to 10 at once (bench/loadgen.c `--mode=sink`: each client reads to the
 * end of the stream, discarding in the kernel, and checks the byte count).
 * This library with `FileProducer` (non-blocking `sendfile(2)` in the loop)
 * and with a read-and-send producer (the bytes through JavaScript), beside
 * Deno native (`Deno.open` piped to a `Deno.Conn`), Node
 * (`fs.createReadStream().pipe(socket)`) and Python asyncore (an async_chat
 * producer reading 64 KiB at a time).
 *
 *     deno run -A bench/sendfile_bench.ts [--quick]      (or as part of `deno task bench`)
 *
 * @module
 */

import {
  BENCH,
  type BenchContext,
  DENO,
  loadgenAgainst,
  medianRow,
  OUT,
  roundOrder,
  runStandalone,
  type ServerSpec,
  table,
} from "./_harness.ts";

const MiB = 1024 * 1024;

function fileServers(ctx: BenchContext, path: string): ServerSpec[] {
  const ours = [DENO, "run", "--no-prompt", "--allow-ffi", `${BENCH}/servers/file_server.ts`];
  const file = `--file=${path}`;
  return [
    { name: "asyncore FileProducer (sendfile)", cmd: [...ours, file, "--mode=sendfile"] },
    { name: "asyncore read-and-send", cmd: [...ours, file, "--mode=readsend"] },
    {
      name: "Deno native (pipeTo)",
      cmd: [
        DENO,
        "run",
        "--no-prompt",
        "--allow-net",
        `--allow-read=${path}`,
        `${BENCH}/servers/deno_file_server.ts`,
        file,
      ],
      reference: true,
    },
    ...(ctx.env.node
      ? [{ name: "Node (pipe)", cmd: ["node", `${BENCH}/servers/node_file_server.js`, file] }]
      : []),
    ...(ctx.env.python
      ? [{
        name: "Python asyncore (producer)",
        cmd: ["python3", "-W", "ignore", `${BENCH}/servers/asyncore_file_server.py`, file],
      }]
      : []),
  ];
}

/** A file of `size` pseudo-random bytes (made once, kept in bench/out/). */
async function benchFile(size: number): Promise<string> {
  const path = `${OUT}/sendfile-${size / MiB}MiB.bin`;
  try {
    if ((await Deno.stat(path)).size === size) return path;
  } catch { /* make it */ }
  await Deno.mkdir(OUT, { recursive: true });
  const f = await Deno.open(path, { write: true, create: true, truncate: true });
  const block = new Uint8Array(MiB);
  let x = 0x9e3779b9;
  for (let done = 0; done < size; done += block.length) {
    for (let i = 0; i < block.length; i += 4) {
      x ^= x << 13, x ^= x >>> 17, x ^= x << 5;
      block[i] = x, block[i + 1] = x >>> 8, block[i + 2] = x >>> 16, block[i + 3] = x >>> 24;
    }
    let o = 0;
    while (o < block.length) o += await f.write(block.subarray(o));
  }
  f.close();
  return path;
}

interface SendfileRow {
  server: string;
  clients: number;
  mbPerS?: number;
  cpuPerMb?: number;
  note?: string;
}

/** Runs the sendfile rows and returns the section. */
export async function sendfileBench(ctx: BenchContext): Promise<string> {
  const { env, quick, log } = ctx;
  const size = (quick ? 64 : 256) * MiB;
  const rounds = quick ? 1 : 3;
  const path = await benchFile(size);
  const servers = fileServers(ctx, path);
  const runs = new Map<string, SendfileRow[]>();
  for (let round = 1; round <= rounds; round++) {
    for (const clients of [1, 10]) {
      for (const spec of roundOrder(servers, round, rounds)) {
        let row: SendfileRow = { server: spec.name, clients };
        try {
          const r = await loadgenAgainst(env, spec, {
            mode: "sink",
            conns: clients,
            expect: size,
            duration: 300,
          }, 360);
          const mb = r.bytes_recv / 1e6;
          row = {
            ...row,
            mbPerS: r.rx_mb_per_s,
            cpuPerMb: r.server.cpu_s >= 0 && mb > 0 ? (r.server.cpu_s * 1e6) / mb : undefined,
            note: r.errors ? r.error_detail.join("; ") : undefined,
          };
        } catch (error) {
          row.note = (error as Error).message.slice(0, 200);
        }
        log(
          `sendfile [${round}/${rounds}] ${clients} client(s), ${spec.name}: ${
            row.mbPerS ? `${row.mbPerS.toFixed(0)} MB/s` : row.note
          }`,
        );
        const key = `${clients}\u0000${spec.name}`;
        runs.set(key, [...(runs.get(key) ?? []), row]);
      }
    }
  }
  const body: string[][] = [];
  for (const clients of [1, 10]) {
    const rows = servers.map((s) =>
      medianRow(runs.get(`${clients}\u0000${s.name}`)!, (r) => r.mbPerS)
    );
    const deno = rows.find((r) => r.server.startsWith("Deno native"));
    for (const r of rows) {
      body.push([
        r === rows[0] ? `${clients} client${clients > 1 ? "s" : ""}` : "",
        r.server,
        r.mbPerS === undefined ? "error" : r.mbPerS.toFixed(0),
        r.cpuPerMb?.toFixed(0) ?? "-",
        r.mbPerS && deno?.mbPerS ? `${(r.mbPerS / deno.mbPerS).toFixed(2)}×` : "-",
        r.note ?? "",
      ]);
    }
  }
  return [
    `### sendfile: a ${size / MiB} MiB file to 1 and to 10 clients (bench/sendfile_bench.ts)`,
    "",
    "MB/s (10^6): all bytes received over the time from the first connect to the last end of " +
    `stream; server CPU per MB sent. ${rounds} round${rounds > 1 ? "s" : ""}, median shown. ` +
    "Servers pinned to CPU 0, clients (C) to CPU 1.",
    "",
    table(["Clients", "Server", "MB/s", "Server CPU µs/MB", "vs Deno", "Notes"], body),
  ].join("\n");
}

if (import.meta.main) await runStandalone(sendfileBench);
