/**
 * What the limits of a server facing careless peers cost and save (run by
 * `deno task bench` after the main table, or alone):
 *
 *     deno run --allow-all bench/memory_bench.ts [--quick] [--bytes=N] [--rounds=N] [--seconds=S]
 *
 * 1. Memory: a peer sends `--bytes` (default 1 GiB) to an echo server and
 *    never reads; it stops when its sends make no progress for a second. The
 *    server's resident memory (VmHWM, peak) is compared with its idle VmRSS:
 *    this library's echo with the default `highWaterMark` (1 MiB) and with
 *    `Infinity` (the reference's unbounded queue), Deno native (`Deno.listen`
 *    with `await conn.write`), Node `net` (`socket.pipe(socket)`) and Python
 *    asyncore.
 * 2. Cost of idle timeouts: ping-pong of 64 B messages over 100 connections
 *    (the load generator of bench/main.ts) against this library's epoll echo
 *    without and with `setIdleTimeout(60)` on every channel; round trips per
 *    second and server CPU per round trip, the median of `--rounds`
 *    interleaved runs.
 *
 * `--quick`: 256 MiB, one round of 1 s.
 *
 * @module
 */

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const BENCH = `${ROOT}/bench`;
const OUT = `${BENCH}/out`;
const DENO = Deno.execPath();
const HOST = "127.0.0.1";
const MiB = 1024 * 1024;

const args = Deno.args;
const flag = (name: string) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const quick = args.includes("--quick");
const TOTAL = Number(flag("bytes") ?? (quick ? 256 * MiB : 1024 * MiB));
const ROUNDS = Number(flag("rounds") ?? (quick ? 1 : 3));
const SECONDS = Number(flag("seconds") ?? 1);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function statusKb(pid: number, key: string): number | null {
  try {
    const m = Deno.readTextFileSync(`/proc/${pid}/status`).match(
      new RegExp(`^${key}:\\s+(\\d+)`, "m"),
    );
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

function has(cmd: string): boolean {
  try {
    return new Deno.Command("sh", { args: ["-c", `command -v ${cmd}`], stdout: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}

const pin = (
  cpu: number,
) => (has("taskset") && navigator.hardwareConcurrency >= 2 ? ["taskset", "-c", String(cpu)] : []);

/** A server subprocess that prints `LISTENING <port>`. */
class Server {
  readonly child: Deno.ChildProcess;
  port = 0;
  constructor(cmd: string[]) {
    this.child = new Deno.Command(cmd[0], {
      args: cmd.slice(1),
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).spawn();
  }
  async ready(): Promise<void> {
    const reader = this.child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
      const m = text.match(/LISTENING (\d+)/);
      if (m) {
        this.port = Number(m[1]);
        // Keep draining its stdout in the background.
        void (async () => {
          try {
            while (!(await reader.read()).done) { /* discard */ }
          } catch { /* closed */ }
        })();
        return;
      }
    }
    throw new Error(`server did not start: ${text}`);
  }
  get pid(): number {
    return this.child.pid;
  }
  async stop(): Promise<void> {
    try {
      this.child.kill("SIGKILL");
    } catch { /* gone */ }
    await this.child.status;
  }
}

// ---- 1. memory against a peer that never reads ----

const NODE_PIPE = `
const net = require("net");
const srv = net.createServer((s) => { s.setNoDelay(true); s.on("error", () => {}); s.pipe(s); });
srv.listen(0, process.argv[1] || "127.0.0.1", () => console.log("LISTENING " + srv.address().port));
`;

// Sends up to TOTAL bytes without reading; stops once a second passes without progress.
const NON_READER = `
import os, select, socket, sys, time
port, total = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port))
s.setblocking(False)
block = memoryview(os.urandom(1 << 20))
sent, last = 0, time.monotonic()
while sent < total:
    try:
        n = s.send(block[: min(len(block), total - sent)])
    except BlockingIOError:
        n = 0
    if n:
        sent += n
        last = time.monotonic()
        continue
    if time.monotonic() - last > 1.0:
        break
    select.select([], [s], [], 0.1)
print(sent, flush=True)
time.sleep(0.5)
`;

interface MemRow {
  name: string;
  sentMiB?: number;
  idleKb?: number | null;
  peakKb?: number | null;
  note?: string;
}

async function memoryRow(name: string, cmd: string[]): Promise<MemRow> {
  const srv = new Server([...pin(0), ...cmd, HOST, "0"]);
  try {
    await srv.ready();
    await sleep(300);
    const idleKb = statusKb(srv.pid, "VmRSS");
    const peer = await new Deno.Command("python3", {
      args: ["-c", NON_READER, String(srv.port), String(TOTAL)],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!peer.success) throw new Error(new TextDecoder().decode(peer.stderr).slice(-300));
    const sent = Number(new TextDecoder().decode(peer.stdout).trim());
    const peakKb = statusKb(srv.pid, "VmHWM");
    return { name, sentMiB: sent / MiB, idleKb, peakKb };
  } catch (error) {
    return { name, note: String(error).slice(0, 200) };
  } finally {
    await srv.stop();
  }
}

function memoryTable(rows: MemRow[]): string {
  const f = (kb: number | null | undefined) => (kb == null ? "-" : (kb / 1024).toFixed(1));
  const lines = [
    `| server (peer sends ${
      TOTAL / MiB
    } MiB, reads nothing) | peer got in (MiB) | RSS idle (MiB) | RSS peak (MiB) | growth (MiB) |`,
    "| --- | ---: | ---: | ---: | ---: |",
  ];
  for (const r of rows) {
    if (r.note) {
      lines.push(`| ${r.name} | n/a: ${r.note} | | | |`);
      continue;
    }
    const growth = r.idleKb != null && r.peakKb != null ? r.peakKb - r.idleKb : null;
    lines.push(
      `| ${r.name} | ${r.sentMiB!.toFixed(1)} | ${f(r.idleKb)} | ${f(r.peakKb)} | ${f(growth)} |`,
    );
  }
  return lines.join("\n");
}

// ---- 2. ping-pong with and without idle timeouts ----

async function loadgen(): Promise<string[]> {
  const bin = `${OUT}/loadgen`;
  try {
    Deno.statSync(bin);
    return [bin];
  } catch { /* not built yet */ }
  if (has("cc")) {
    Deno.mkdirSync(OUT, { recursive: true });
    const r = await new Deno.Command("cc", {
      args: ["-O2", "-o", bin, `${BENCH}/loadgen.c`, "-lm"],
      stderr: "piped",
    }).output();
    if (r.success) return [bin];
  }
  throw new Error("the bench needs a C compiler (cc) for bench/loadgen.c");
}

interface PingRow {
  name: string;
  rates: number[];
  cpuUs: number[];
  errors: number;
}

async function pingPong(
  lg: string[],
  cmd: string[],
): Promise<{ rate: number; cpuUs: number; errors: number }> {
  const srv = new Server([...pin(0), ...cmd, HOST, "0"]);
  try {
    await srv.ready();
    const cmd = [...pin(1), ...lg, ...[
      `--host=${HOST}`,
      `--port=${srv.port}`,
      `--server-pid=${srv.pid}`,
      "--mode=pingpong",
      "--conns=100",
      "--idle=0",
      "--size=64",
      "--warmup=0.4",
      `--duration=${SECONDS}`,
      "--connect-timeout=60",
    ]];
    const r = await new Deno.Command(cmd[0], {
      args: cmd.slice(1),
      stdout: "piped",
      stderr: "piped",
    }).output();
    const out = new TextDecoder().decode(r.stdout).trim().split("\n").pop() ?? "";
    const j = JSON.parse(out);
    return {
      rate: j.ops_per_s,
      cpuUs: j.server.cpu_s >= 0 && j.ops > 0 ? (j.server.cpu_s * 1e6) / j.ops : NaN,
      errors: j.errors,
    };
  } finally {
    await srv.stop();
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[(s.length - 1) >> 1];
};

async function main(): Promise<void> {
  const ours = [DENO, "run", "--no-prompt", "--allow-ffi", `${BENCH}/servers/asyncore_echo.ts`];
  const servers: [string, string[]][] = [
    ["asyncore epoll (default highWaterMark 1 MiB)", [...ours, "--poller=epoll"]],
    ["asyncore epoll, highWaterMark Infinity (the reference)", [
      ...ours,
      "--poller=epoll",
      "--hwm=Infinity",
    ]],
    ["Deno native (Deno.listen, await conn.write)", [
      DENO,
      "run",
      "--no-prompt",
      "--allow-net",
      `${BENCH}/servers/deno_echo.ts`,
    ]],
  ];
  if (has("node")) servers.push(["Node net (socket.pipe(socket))", ["node", "-e", NODE_PIPE]]);
  if (has("python3")) {
    servers.push([
      "Python asyncore (dispatcher_with_send)",
      ["python3", "-W", "ignore", `${BENCH}/servers/asyncore_echo.py`],
    ]);
  }
  const mem: MemRow[] = [];
  for (const [name, cmd] of servers) {
    console.error(`  memory: ${name} ...`);
    mem.push(await memoryRow(name, cmd));
  }
  console.log(memoryTable(mem));
  console.log(
    "\nPython asyncore's peer stalls because every read copies the whole queue " +
      "(`out_buffer + data`, quadratic), not because of a bound: it keeps growing while the peer keeps sending.\n",
  );

  const lg = await loadgen();
  const rows: PingRow[] = [
    { name: "asyncore epoll, no idle timeout", rates: [], cpuUs: [], errors: 0 },
    {
      name: "asyncore epoll, setIdleTimeout(60) on every channel",
      rates: [],
      cpuUs: [],
      errors: 0,
    },
  ];
  const cmds = [[...ours, "--poller=epoll"], [...ours, "--poller=epoll", "--idle=60"]];
  for (let round = 0; round < ROUNDS; round++) {
    for (let i = 0; i < rows.length; i++) {
      console.error(`  ping-pong round ${round + 1}: ${rows[i].name} ...`);
      try {
        const r = await pingPong(lg, cmds[i]);
        rows[i].rates.push(r.rate);
        rows[i].cpuUs.push(r.cpuUs);
        rows[i].errors += r.errors;
      } catch (error) {
        console.error(`    failed: ${error}`);
      }
    }
  }
  const base = rows[0].rates.length ? median(rows[0].rates) : NaN;
  console.log(
    `| ping-pong, 100 connections, 64 B (median of ${ROUNDS}) | round trips/s | vs no timeout | server CPU µs/round trip | errors |`,
  );
  console.log("| --- | ---: | ---: | ---: | ---: |");
  for (const r of rows) {
    if (r.rates.length === 0) {
      console.log(`| ${r.name} | failed | | | |`);
      continue;
    }
    const rate = median(r.rates);
    console.log(
      `| ${r.name} | ${Math.round(rate).toLocaleString("en-US")} | ${(rate / base).toFixed(3)} | ${
        median(r.cpuUs).toFixed(2)
      } | ${r.errors} |`,
    );
  }
}

if (import.meta.main) await main();
