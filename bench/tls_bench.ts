/**
 * The TLS section of `deno task bench` (issue 19's rows), also standalone:
 * `deno run -A bench/tls_bench.ts [--quick] [--duration=S] [--rounds=N] [--only=a,b] [--idle=N1,N2]`.
 *
 * Echo servers over TLS 1.3 with an ECDSA P-256 certificate, each pinned to
 * CPU 0 with 20,000 fds: this library (`servers/asyncore_tls_echo.ts`,
 * epoll), Deno's native `Deno.listenTls` (rustls, the yardstick), Node's
 * `tls`, and a C epoll + OpenSSL server (`servers/tls_epoll_echo.c`). One C
 * OpenSSL client (`tls_loadgen.c`, CPU 1) drives every row, so every server
 * meets the same peer:
 *
 * - churn: 50 clients, each connecting, making a full handshake (no
 *   resumption), echoing 64 B and closing, again and again: connections/s
 *   and server CPU per connection;
 * - ping-pong: 64 B on 100 connections: round trips/s and server CPU each;
 * - bulk: one connection, 4 MiB in flight: MB/s echoed;
 * - memory per idle connection, on a fresh server: the slope of its RSS
 *   between N1 and N2 idle connections (default 1,000 and 10,000), and the
 *   RSS with N2 held. The old measure (growth from 0 to N1, per connection)
 *   is printed beside it.
 *
 * Churn, ping-pong and bulk run in `--rounds` rounds (default 3), each with
 * the servers in another order and a fresh server process per run; a ratio
 * is taken within a round and the median of the rounds shown, as in the
 * main table.
 *
 * Every server's negotiated protocol, cipher and key exchange group are
 * printed, and each of issue 19's targets is marked met or missed.
 *
 * @module
 */

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const OUT = `${ROOT}/bench/out`;
const DENO = Deno.execPath();
const args = new Map(
  Deno.args.map((a) => a.replace(/^--/, "").split("=") as [string, string | undefined]),
);
const QUICK = args.has("quick") || Deno.env.get("BENCH_QUICK") === "1";
const DURATION = Number(args.get("duration") ?? (QUICK ? 1 : 3));
const ROUNDS = Number(args.get("rounds") ?? (QUICK ? 1 : 3));
const ONLY = args.get("only")?.split(",");
const IDLE = (args.get("idle") ?? (QUICK ? "200,2000" : "1000,10000")).split(",").map(Number);
const FDS = 20000;
const TICK_US = 1e6 / 100; // USER_HZ

async function sh(cmd: string[]): Promise<string> {
  const out = await new Deno.Command(cmd[0], { args: cmd.slice(1), stderr: "piped" }).output();
  if (!out.success) throw new Error(`${cmd.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  return new TextDecoder().decode(out.stdout);
}

async function has(cmd: string[]): Promise<boolean> {
  try {
    return (await new Deno.Command(cmd[0], { args: cmd.slice(1), stdout: "null", stderr: "null" })
      .output()).success;
  } catch {
    return false;
  }
}

/** What pins a process to `cpu` with the fds 10,000 connections need. */
const LIMIT = (await has(["prlimit", `--nofile=${FDS}:${FDS}`, "true"]))
  ? ["prlimit", `--nofile=${FDS}:${FDS}`]
  : [];
const pinned = (cpu: number, cmd: string[]) => ["taskset", "-c", String(cpu), ...LIMIT, ...cmd];

function statusKiB(pid: number, key: string): number {
  const m = Deno.readTextFileSync(`/proc/${pid}/status`).match(new RegExp(`${key}:\\s+(\\d+)`));
  return m ? Number(m[1]) : NaN;
}

function cpuTicks(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(f[11]) + Number(f[12]); // utime + stime (fields 14, 15)
}

/** The process whose RSS and CPU count: the server under taskset/prlimit (they exec it). */
function serverPid(child: Deno.ChildProcess): number {
  return child.pid;
}

async function makeCert(): Promise<[string, string]> {
  await Deno.mkdir(`${OUT}/tls`, { recursive: true });
  const cert = `${OUT}/tls/cert.pem`, key = `${OUT}/tls/key.pem`;
  await sh([
    "openssl",
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    key,
    "-out",
    cert,
    "-days",
    "30",
    "-subj",
    "/CN=localhost",
    "-addext",
    "subjectAltName=DNS:localhost,IP:127.0.0.1",
  ]);
  return [cert, key];
}

interface Server {
  name: string;
  cmd: string[];
}

async function start(s: Server): Promise<{ child: Deno.ChildProcess; port: number }> {
  const child = new Deno.Command(pinned(0, [...s.cmd, "127.0.0.1", "0"])[0], {
    args: pinned(0, [...s.cmd, "127.0.0.1", "0"]).slice(1),
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.getReader();
  let text = "";
  while (!/listening (\d+)/.test(text)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`${s.name} did not start`);
    text += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  child.stdout.cancel().catch(() => {});
  return { child, port: Number(text.match(/listening (\d+)/)![1]) };
}

async function stopServer(child: Deno.ChildProcess): Promise<void> {
  try {
    child.kill("SIGTERM");
  } catch { /* exited */ }
  await child.status;
}

/** One run of the C client; its JSON answer. */
async function loadgen(argv: string[]): Promise<Record<string, number | string>> {
  const out = await sh(pinned(1, [`${OUT}/tls_loadgen`, ...argv]));
  return JSON.parse(out.trim().split("\n").pop()!);
}

/** Opens idle connections up to each count, reading the server's RSS at each; then closes them. */
async function idleSlope(pid: number, port: number): Promise<{ ready: number[]; rss: number[] }> {
  const cmd = pinned(1, [`${OUT}/tls_loadgen`, "idle", String(port), IDLE.join(",")]);
  const child = new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.getReader();
  const writer = child.stdin.getWriter();
  const ready: number[] = [], rss: number[] = [];
  let text = "";
  try {
    for (let i = 0; i < IDLE.length; i++) {
      while (!text.includes("\n")) {
        const { value, done } = await reader.read();
        if (done) throw new Error("the idle client stopped");
        text += new TextDecoder().decode(value);
      }
      const line = text.slice(0, text.indexOf("\n"));
      text = text.slice(text.indexOf("\n") + 1);
      ready.push(JSON.parse(line).ready);
      await new Promise((r) => setTimeout(r, 300)); // the server finishes its last handshakes
      rss.push(statusKiB(pid, "VmRSS"));
      await writer.write(new TextEncoder().encode("go\n"));
    }
  } finally {
    await writer.close().catch(() => {});
    reader.releaseLock();
    await child.stdout.cancel().catch(() => {});
    await child.status;
  }
  return { ready, rss };
}

const [cert, key] = await makeCert();
const servers: Server[] = [
  {
    name: "asyncore TLS (epoll)",
    cmd: [DENO, "run", "--allow-ffi", `${ROOT}/bench/servers/asyncore_tls_echo.ts`, cert, key],
  },
  {
    name: "Deno native (listenTls)",
    cmd: [
      DENO,
      "run",
      "--allow-net",
      "--allow-read",
      `${ROOT}/bench/servers/deno_tls_echo.ts`,
      cert,
      key,
    ],
  },
];
// BENCH_BASELINE=DIR: an earlier commit's TLS server beside ours (see bench/_servers.ts).
const baseline = Deno.env.get("BENCH_BASELINE");
if (baseline) {
  servers.push({
    name: "asyncore TLS (epoll) (baseline)",
    cmd: [DENO, "run", "--allow-ffi", `${baseline}/bench/servers/asyncore_tls_echo.ts`, cert, key],
  });
}
if (await has(["node", "--version"])) {
  servers.push({
    name: "Node tls",
    cmd: ["node", `${ROOT}/bench/servers/node_tls_echo.mjs`, cert, key],
  });
}
await Deno.mkdir(OUT, { recursive: true });
for (
  const [src, bin] of [["servers/tls_epoll_echo.c", "tls_epoll_echo"], [
    "tls_loadgen.c",
    "tls_loadgen",
  ]]
) {
  await sh(["cc", "-O2", "-o", `${OUT}/${bin}`, `${ROOT}/bench/${src}`, "-lssl", "-lcrypto"]);
}
servers.push({ name: "C epoll + OpenSSL", cmd: [`${OUT}/tls_epoll_echo`, cert, key] });

interface Row {
  name: string;
  info: string;
  churn: number;
  churnUs: number;
  rt: number;
  rtUs: number;
  mb: number;
  slopeKiB: number;
  firstKiB: number;
  heldRssMiB: number;
  held: number;
  errors: number;
}

/** One server's churn, ping-pong and bulk in one round. */
type Sample = Pick<Row, "info" | "churn" | "churnUs" | "rt" | "rtUs" | "mb" | "errors">;

/** Starts `s`, warms it up and measures churn, ping-pong and bulk once. */
async function measure(s: Server): Promise<Sample> {
  const { child, port } = await start(s);
  try {
    const pid = serverPid(child);
    const info = await loadgen(["info", String(port)]);
    // Warm-up (JIT, allocator), not measured.
    await loadgen(["churn", String(port), "0.5", "50"]);
    await loadgen(["pingpong", String(port), "0.5", "100", "64"]);
    let t0 = cpuTicks(pid);
    const churn = await loadgen(["churn", String(port), String(DURATION), "50"]);
    const churnUs = (cpuTicks(pid) - t0) * TICK_US / Math.max(1, Number(churn.count));
    t0 = cpuTicks(pid);
    const pp = await loadgen(["pingpong", String(port), String(DURATION), "100", "64"]);
    const rtUs = (cpuTicks(pid) - t0) * TICK_US / Math.max(1, Number(pp.count));
    const bulk = await loadgen(["bulk", String(port), String(DURATION)]);
    return {
      info: `${info.protocol} ${info.cipher} ${info.group}`,
      churn: Number(churn.count) / Number(churn.seconds),
      churnUs,
      rt: Number(pp.count) / Number(pp.seconds),
      rtUs,
      mb: Number(bulk.bytes) / Number(bulk.seconds) / 1e6,
      errors: Number(churn.errors) + Number(pp.errors) + Number(bulk.errors),
    };
  } finally {
    await stopServer(child);
  }
}

const median = (xs: number[]) => {
  const v = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
};

const chosen = servers.filter((s) =>
  !ONLY || s.name.startsWith("Deno native") || ONLY.some((w) => s.name.includes(w))
);
// Rounds interleaved, each in another server order (a server started right
// after another one exits runs slower on a VM; see echo_matrix.ts): a ratio
// is taken within a round, between runs seconds apart, and the median shown.
const samples = new Map<string, Sample[]>(chosen.map((s) => [s.name, []]));
for (let round = 0; round < ROUNDS; round++) {
  const order = chosen.map((_, i) => chosen[(i + round) % chosen.length]);
  for (const s of order) {
    samples.get(s.name)!.push(await measure(s));
    console.error(`round ${round + 1}/${ROUNDS}, ${s.name}: done`);
  }
}

const rows: Row[] = [];
for (const s of chosen) {
  const runs = samples.get(s.name)!;
  const pick = (k: "churn" | "churnUs" | "rt" | "rtUs" | "mb") => median(runs.map((r) => r[k]));
  const row: Row = {
    name: s.name,
    info: [...new Set(runs.map((r) => r.info))].join(" / "),
    churn: pick("churn"),
    churnUs: pick("churnUs"),
    rt: pick("rt"),
    rtUs: pick("rtUs"),
    mb: pick("mb"),
    slopeKiB: NaN,
    firstKiB: NaN,
    heldRssMiB: NaN,
    held: 0,
    errors: runs.reduce((n, r) => n + r.errors, 0),
  };
  // Memory on a fresh server: the runs above leave freed heap behind.
  const fresh = await start(s);
  try {
    const pid = serverPid(fresh.child);
    const before = statusKiB(pid, "VmRSS");
    const { ready, rss } = await idleSlope(pid, fresh.port);
    const [n1, n2] = ready, [r1, r2] = rss;
    row.firstKiB = (r1 - before) / Math.max(1, n1);
    row.slopeKiB = (r2 - r1) / Math.max(1, n2 - n1);
    row.heldRssMiB = r2 / 1024;
    row.held = n2;
  } finally {
    await stopServer(fresh.child);
  }
  rows.push(row);
  console.error(`${s.name}: memory done`);
}

/** The median over the rounds of `name`'s `key` over `base`'s in the same round. */
function roundRatio(name: string, base: string | undefined, key: "churn" | "rt" | "mb"): number {
  const a = samples.get(name), b = base === undefined ? undefined : samples.get(base);
  if (a === undefined || b === undefined) return NaN;
  return median(a.map((r, i) => r[key] / b[i][key]));
}

/** Each round's ratio, for the notes under the table. */
function perRound(name: string, base: string | undefined, key: "churn" | "rt" | "mb"): string {
  const a = samples.get(name), b = base === undefined ? undefined : samples.get(base);
  if (a === undefined || b === undefined) return "n/a";
  return a.map((r, i) => (r[key] / b[i][key]).toFixed(2)).join(", ");
}

const by = (prefix: string) => rows.find((r) => r.name.startsWith(prefix));
const deno = by("Deno native"), c = by("C epoll");
const ours = rows.find((r) => r.name === "asyncore TLS (epoll)");
const x = (r: Row, base: Row | undefined, key: "churn" | "rt" | "mb") =>
  base ? ` (${roundRatio(r.name, base.name, key).toFixed(2)}x)` : "";
const xMem = (v: number, b: number | undefined) => b ? ` (${(v / b).toFixed(2)}x)` : "";
const f0 = (v: number) => Number.isFinite(v) ? v.toFixed(0) : "n/a";
const f1 = (v: number) => Number.isFinite(v) ? v.toFixed(1) : "n/a";

console.log(
  `TLS 1.3, ECDSA P-256 certificate; ${ROUNDS} round(s) of ${DURATION} s per row, interleaved, each round in another server order (median shown); servers on CPU 0, the C OpenSSL client (bench/tls_loadgen.c) on CPU 1.`,
);
console.log(
  "Ratios (the median of the rounds' ratios): to Deno native for ping-pong and bulk, to C + OpenSSL for churn and memory (issue 19's yardsticks; memory once, on a fresh server).\n",
);
console.log(
  "| Server | negotiated | churn conn/s (50 clients) | server µs per conn | ping-pong 64 B x 100 rt/s | server µs per rt | bulk MB/s | KiB per idle conn, slope | KiB, 0 to first | RSS with idle conns held | errors |",
);
console.log("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
for (const r of rows) {
  console.log(
    `| ${r.name} | ${r.info} | ${f0(r.churn)}${x(r, c, "churn")} | ${f0(r.churnUs)} | ${f0(r.rt)}${
      x(r, deno, "rt")
    } | ${f1(r.rtUs)} | ${f0(r.mb)}${x(r, deno, "mb")} | ${f1(r.slopeKiB)}${
      xMem(r.slopeKiB, c?.slopeKiB)
    } | ${f1(r.firstKiB)} | ${f1(r.heldRssMiB)} MiB, ${r.held} conns | ${r.errors} |`,
  );
}

if (ours !== undefined) {
  const mark = (ok: boolean | undefined) =>
    ok === undefined ? "not measured" : ok ? "met" : "missed";
  const pp = roundRatio(ours.name, deno?.name, "rt");
  const bulk = roundRatio(ours.name, deno?.name, "mb");
  const churn = roundRatio(ours.name, c?.name, "churn");
  const mem = c ? ours.slopeKiB / c.slopeKiB : NaN;
  const want = IDLE[IDLE.length - 1];
  console.log(`\nIssue 19's targets (this run):\n`);
  console.log(
    `- ping-pong 64 B x 100, >= 1.10x Deno native: ${pp.toFixed(2)}x, ${
      mark(deno && pp >= 1.1)
    } (rounds: ${perRound(ours.name, deno?.name, "rt")})`,
  );
  console.log(
    `- bulk, 1 connection, >= 1.00x Deno native: ${bulk.toFixed(2)}x, ${
      mark(deno && bulk >= 1)
    } (rounds: ${perRound(ours.name, deno?.name, "mb")})`,
  );
  console.log(
    `- churn, 50 clients, >= 1.00x C + OpenSSL: ${churn.toFixed(2)}x, ${
      mark(c && churn >= 1)
    } (rounds: ${perRound(ours.name, c?.name, "churn")})`,
  );
  console.log(
    `- memory per idle connection (slope ${IDLE[0]} to ${want}), <= 1.5x C + OpenSSL: ${
      f1(ours.slopeKiB)
    } KiB against ${f1(c?.slopeKiB ?? NaN)}, ${mem.toFixed(2)}x, ${mark(c && mem <= 1.5)}`,
  );
  console.log(
    `- ${want} idle TLS connections held: ${ours.held} held, RSS ${f1(ours.heldRssMiB)} MiB, ${
      mark(ours.held === want)
    }`,
  );
}
