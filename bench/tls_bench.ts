/**
 * TLS rows, standalone: `deno run -A bench/tls_bench.ts [--duration=S] [--only=a,b]`.
 *
 * Echo servers over TLS 1.3 with an ECDSA P-256 certificate, each pinned to
 * CPU 0: this library (`servers/asyncore_tls_echo.ts`, epoll), Deno's native
 * `Deno.listenTls` (the yardstick), Node's `tls`, and a C epoll + OpenSSL
 * server (`servers/tls_epoll_echo.c`, compiled into `bench/out/`). The load
 * generators run on CPU 1: a C OpenSSL client (`tls_loadgen.c`) for
 * ping-pong and bulk, and this library as the client (`tls_loadgen.ts`) for
 * handshakes and idle connections (without a C compiler it does all). The
 * rows give server CPU per operation (utime + stime from /proc) besides
 * throughput, since one client can saturate before a server does:
 *
 * - handshakes: new connection per exchange (4 at a time), server µs each;
 * - ping-pong 64 B on 100 connections: round trips/s and server µs each;
 * - bulk on one connection (4 MiB in flight): MB/s echoed;
 * - memory per idle TLS connection: server RSS growth over 1,000 connections.
 *
 * @module
 */

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const OUT = `${ROOT}/bench/out`;
const DENO = Deno.execPath();
const args = new Map(Deno.args.map((a) => a.replace(/^--/, "").split("=") as [string, string]));
const DURATION = Number(args.get("duration") ?? 2);
const ONLY = args.get("only")?.split(",");
const IDLE = Number(args.get("idle") ?? 1000);

async function sh(cmd: string[], opts: { cwd?: string } = {}): Promise<string> {
  const out = await new Deno.Command(cmd[0], { args: cmd.slice(1), cwd: opts.cwd, stderr: "piped" })
    .output();
  if (!out.success) throw new Error(`${cmd.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  return new TextDecoder().decode(out.stdout);
}

async function which(name: string): Promise<boolean> {
  return (await new Deno.Command("sh", { args: ["-c", `command -v ${name}`] }).output()).success;
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

function cpuTicks(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(f[11]) + Number(f[12]); // utime + stime (fields 14, 15)
}

function rssKiB(pid: number): number {
  const m = Deno.readTextFileSync(`/proc/${pid}/status`).match(/VmRSS:\s+(\d+)/);
  return m ? Number(m[1]) : NaN;
}

const TICK_US = 1e6 / 100; // USER_HZ

async function start(s: Server): Promise<{ child: Deno.ChildProcess; port: number }> {
  const child = new Deno.Command("taskset", {
    args: ["-c", "0", ...s.cmd, "127.0.0.1", "0"],
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

let cLoadgen = false;

async function loadgen(argv: string[]): Promise<Record<string, number>> {
  const useC = cLoadgen && (argv[0] === "pingpong" || argv[0] === "bulk");
  const cmd = useC
    ? [`${OUT}/tls_loadgen`, ...argv]
    : [DENO, "run", "--allow-ffi", `${ROOT}/bench/tls_loadgen.ts`, ...argv];
  const out = await sh(["taskset", "-c", "1", ...cmd]);
  return JSON.parse(out.trim().split("\n").pop()!);
}

async function idleCost(pid: number, port: number): Promise<number> {
  const before = rssKiB(pid);
  const child = new Deno.Command("taskset", {
    args: [
      "-c",
      "1",
      DENO,
      "run",
      "--allow-ffi",
      `${ROOT}/bench/tls_loadgen.ts`,
      "idle",
      String(port),
      String(IDLE),
    ],
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  const reader = child.stdout.getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    text += new TextDecoder().decode(value);
  }
  await new Promise((r) => setTimeout(r, 500));
  const after = rssKiB(pid);
  const ready = JSON.parse(text.trim()).ready as number;
  await child.stdin.close();
  reader.releaseLock();
  await child.stdout.cancel().catch(() => {});
  await child.status;
  return (after - before) / Math.max(1, ready);
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
if (await which("node")) {
  servers.push({
    name: "Node tls",
    cmd: ["node", `${ROOT}/bench/servers/node_tls_echo.mjs`, cert, key],
  });
}
if (await which("cc")) {
  await sh([
    "cc",
    "-O2",
    "-o",
    `${OUT}/tls_epoll_echo`,
    `${ROOT}/bench/servers/tls_epoll_echo.c`,
    "-lssl",
    "-lcrypto",
  ]);
  servers.push({ name: "C epoll + OpenSSL", cmd: [`${OUT}/tls_epoll_echo`, cert, key] });
  await sh([
    "cc",
    "-O2",
    "-o",
    `${OUT}/tls_loadgen`,
    `${ROOT}/bench/tls_loadgen.c`,
    "-lssl",
    "-lcrypto",
  ]);
  cLoadgen = true;
}

interface Row {
  name: string;
  hsPerS: number;
  hsUs: number;
  rtPerS: number;
  rtUs: number;
  mbPerS: number;
  idleKiB: number;
}
const rows: Row[] = [];
for (const s of servers) {
  if (ONLY && !s.name.startsWith("Deno native") && !ONLY.some((w) => s.name.includes(w))) continue;
  const { child, port } = await start(s);
  try {
    const pid = child.pid;
    // Warm-up (JIT, session caches), not measured.
    await loadgen(["handshake", String(port), "0.5", "4"]);
    let t0 = cpuTicks(pid);
    const hs = await loadgen(["handshake", String(port), String(DURATION), "4"]);
    const hsUs = (cpuTicks(pid) - t0) * TICK_US / hs.count;
    t0 = cpuTicks(pid);
    const pp = await loadgen(["pingpong", String(port), String(DURATION), "100", "64"]);
    const rtUs = (cpuTicks(pid) - t0) * TICK_US / Math.max(1, pp.count);
    const bulk = await loadgen(["bulk", String(port), String(DURATION)]);
    // Memory is measured on a fresh server: the runs above leave freed heap behind.
    child.kill("SIGTERM");
    await child.status;
    const fresh = await start(s);
    let idleKiB = NaN;
    try {
      await loadgen(["handshake", String(fresh.port), "0.3", "4"]);
      idleKiB = await idleCost(fresh.child.pid, fresh.port);
    } finally {
      fresh.child.kill("SIGTERM");
      await fresh.child.status;
    }
    rows.push({
      name: s.name,
      hsPerS: hs.count / hs.seconds,
      hsUs,
      rtPerS: pp.count / pp.seconds,
      rtUs,
      mbPerS: bulk.bytes / bulk.seconds / 1e6,
      idleKiB,
    });
    console.error(`${s.name}: done`);
  } finally {
    try {
      child.kill("SIGTERM");
    } catch { /* already stopped */ }
    await child.status;
  }
}

const base = rows.find((r) => r.name.startsWith("Deno native"));
const ratio = (v: number, b: number | undefined, lowerIsBetter = false) =>
  b ? ` (${(lowerIsBetter ? b / v : v / b).toFixed(2)}x)` : "";
console.log(
  `\nTLS 1.3, ECDSA P-256, ${DURATION} s per row; servers on CPU 0, clients on CPU 1 (ping-pong and bulk: ${
    cLoadgen ? "C OpenSSL client" : "this library"
  }; handshakes, 4 at a time, and ${IDLE} idle connections: this library).`,
);
console.log(
  "Ratios are to Deno native, higher is better (for CPU and memory: Deno's cost / this cost).\n",
);
console.log(
  "| Server | handshakes/s | server µs per handshake | ping-pong 64 B × 100 rt/s | server µs per rt | bulk MB/s | KiB per idle conn |",
);
console.log("| --- | --- | --- | --- | --- | --- | --- |");
for (const r of rows) {
  console.log(
    `| ${r.name} | ${r.hsPerS.toFixed(0)} | ${r.hsUs.toFixed(0)}${
      ratio(r.hsUs, base?.hsUs, true)
    } | ${r.rtPerS.toFixed(0)}${ratio(r.rtPerS, base?.rtPerS)} | ${r.rtUs.toFixed(1)}${
      ratio(r.rtUs, base?.rtUs, true)
    } | ${r.mbPerS.toFixed(0)}${ratio(r.mbPerS, base?.mbPerS)} | ${r.idleKiB.toFixed(1)}${
      ratio(r.idleKiB, base?.idleKiB, true)
    } |`,
  );
}
