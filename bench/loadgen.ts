/**
 * The fallback load generator, for machines without a C compiler: the same
 * command line, modes and JSON output as `bench/loadgen.c`, built on this
 * library's epoll loop. It is slower than the C one, so against fast servers
 * it measures itself; `bench/main.ts` says so when it uses it.
 *
 *     deno run --allow-all bench/loadgen.ts --port=P [--mode=pingpong|bulk|soak|hold] ...
 *
 * (`--allow-all` because it reads /proc, which Deno 2.9 allows with nothing less.)
 *
 * @module
 */

import {
  callEvery,
  callLater,
  Dispatcher,
  ExitNow,
  IPPROTO_TCP,
  loop,
  Socket,
  type SocketMap,
  TCP_NODELAY,
} from "../mod.ts";

const CHUNK = 65536;
const MAX_BACKLOG = 100;

// ---- options ----

const opt = {
  host: "127.0.0.1",
  port: 0,
  serverPid: 0,
  mode: "pingpong",
  conns: 1,
  idle: 0,
  size: 64,
  minSize: 64,
  maxSize: 65536,
  warmup: 0.5,
  duration: 3,
  window: 4 << 20,
  connectTimeout: 60,
  seed: 0x9e3779b9,
};

function parseArgs(args: string[]): void {
  for (let i = 0; i < args.length; i++) {
    let [k, v] = args[i].split(/=(.*)/s);
    if (v === undefined) v = args[++i];
    const key = k.replace(/^--/, "").replace(/-(.)/g, (_, c: string) => c.toUpperCase());
    if (!(key in opt)) throw new Error(`unknown option ${k}`);
    const o = opt as Record<string, string | number>;
    o[key] = typeof o[key] === "number" ? Number(v) : v;
  }
  if (!opt.port) throw new Error("--port is required");
}

// ---- /proc ----

const CLK_TCK = 100;

/** [utime + stime, utime] in clock ticks, or [-1, -1]. */
function cpuTicks(pid: number | "self"): [number, number] {
  if (pid === 0) return [-1, -1];
  try {
    const s = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
    return [Number(f[11]) + Number(f[12]), Number(f[11])]; // fields 14 and 15
  } catch {
    return [-1, -1];
  }
}

function statusKb(pid: number, key: string): number {
  if (pid === 0) return -1;
  try {
    const m = Deno.readTextFileSync(`/proc/${pid}/status`).match(
      new RegExp(`^${key}:\\s+(\\d+)`, "m"),
    );
    return m ? Number(m[1]) : -1;
  } catch {
    return -1;
  }
}

function fdCount(pid: number): number {
  if (pid === 0) return -1;
  try {
    let n = 0;
    for (const _ of Deno.readDirSync(`/proc/${pid}/fd`)) n++;
    return n;
  } catch {
    return -1;
  }
}

function cpuBusy(): [number, number][] {
  const out: [number, number][] = [];
  try {
    for (const line of Deno.readTextFileSync("/proc/stat").split("\n")) {
      const m = line.match(/^cpu(\d+)\s+(.*)$/);
      if (!m) continue;
      const v = m[2].split(/\s+/).slice(0, 8).map(Number);
      const total = v.reduce((a, b) => a + b, 0);
      out[Number(m[1])] = [total - v[3] - v[4], total];
    }
  } catch { /* no /proc/stat */ }
  return out;
}

interface Mark {
  t: number;
  srv: [number, number];
  self: [number, number];
  cpus: [number, number][];
}

function mark(): Mark {
  return {
    cpus: cpuBusy(),
    srv: cpuTicks(opt.serverPid),
    self: cpuTicks("self"),
    t: performance.now(),
  };
}

// ---- message content (as loadgen.c) ----

function msgByte(id: number, seq: number, j: number): number {
  if (j < 4) return (id >>> (8 * j)) & 0xff;
  if (j < 8) return (seq >>> (8 * (j - 4))) & 0xff;
  return (Math.imul(id, 31) + Math.imul(seq, 17) + j) % 251;
}

function msgFill(buf: Uint8Array, id: number, seq: number, off: number, len: number): void {
  for (let i = 0; i < len; i++) buf[i] = msgByte(id, seq, off + i);
}

function msgCheck(buf: Uint8Array, id: number, seq: number, off: number): number {
  for (let i = 0; i < buf.length; i++) if (buf[i] !== msgByte(id, seq, off + i)) return i;
  return -1;
}

let rng = opt.seed;
function pickSize(): number {
  rng ^= rng << 13;
  rng ^= rng >>> 17;
  rng ^= rng << 5;
  const u = (rng >>> 0) / 4294967296;
  const s = Math.floor(opt.minSize * Math.exp(u * Math.log(opt.maxSize / opt.minSize)));
  return Math.min(opt.maxSize, Math.max(opt.minSize, s));
}

// ---- state ----

let errors = 0;
const errorDetail: string[] = [];
function recordError(s: string): void {
  errors++;
  if (errorDetail.length < 5) errorDetail.push(s);
}

let measuring = false;
let stopping = false;
let winOps = 0;
let winBytes = 0;
let latencies: number[] = [];
const scratch = new Uint8Array(CHUNK);
const map: SocketMap = new Map();

// ---- connecting ----

let fdsBefore = -1, fdsConnected = -1, fdsAfter = -1, rssConnectedKb = -1, connectSeconds = 0;

function connectOne(): Socket {
  for (let tries = 0;; tries++) {
    const s = new Socket();
    try {
      s.connect([opt.host, opt.port]);
      s.setsockopt(IPPROTO_TCP, TCP_NODELAY, 1);
      return s;
    } catch (error) {
      s.close();
      if (tries >= 50) throw error;
      nap(20);
    }
  }
}

const napCell = new Int32Array(new SharedArrayBuffer(4));
/** Sleeps `ms` without an event loop turn. */
function nap(ms: number): void {
  Atomics.wait(napCell, 0, 0, ms);
}

function waitUntil(cond: () => boolean, what: () => string): void {
  let last = -1, lastProgress = performance.now();
  for (;;) {
    const have = fdCount(opt.serverPid) - fdsBefore;
    if (cond()) return;
    if (have !== last) {
      last = have;
      lastProgress = performance.now();
    }
    if (performance.now() - lastProgress > opt.connectTimeout * 1000) throw new Error(what());
    nap(0.5);
  }
}

function connectAll(n: number): Socket[] {
  const t0 = performance.now();
  fdsBefore = fdCount(opt.serverPid);
  const socks: Socket[] = [];
  const have = () => fdCount(opt.serverPid) - fdsBefore;
  for (let i = 0; i < n; i++) {
    if (opt.serverPid && fdsBefore >= 0 && i > 0 && i % 32 === 0) {
      waitUntil(() => have() >= i - MAX_BACKLOG, () => `server stopped accepting at ${have()}`);
    }
    socks.push(connectOne());
  }
  if (opt.serverPid && fdsBefore >= 0) {
    waitUntil(() => have() >= n - 4, () => `server accepted ${have()} of ${n}`);
    fdsConnected = fdCount(opt.serverPid);
    rssConnectedKb = statusKb(opt.serverPid, "VmRSS");
  }
  connectSeconds = (performance.now() - t0) / 1000;
  return socks;
}

// ---- ping-pong and soak ----

class MessageConn extends Dispatcher {
  seq = 0;
  size = 0;
  sent = 0;
  got = 0;
  tStart = 0;
  count = 0;
  bytesEchoed = 0;
  busy = false;
  dead = false;

  constructor(sock: Socket, readonly id: number, readonly soak: boolean) {
    super(sock, map);
  }

  override readable(): boolean {
    return true;
  }

  override writable(): boolean {
    return this.sent < this.size;
  }

  start(): void {
    this.seq++;
    this.size = this.soak ? pickSize() : opt.size;
    this.sent = 0;
    this.got = 0;
    this.busy = true;
    this.tStart = performance.now();
    this.handleWrite();
  }

  override handleWrite(): void {
    while (this.sent < this.size) {
      const len = Math.min(CHUNK, this.size - this.sent);
      const chunk = scratch.subarray(0, len);
      msgFill(chunk, this.id, this.seq, this.sent, len);
      const n = this.send(chunk);
      this.sent += n;
      if (n < len) return;
    }
  }

  override handleRead(): void {
    const want = this.size - this.got;
    const data = this.recv(want > 0 ? Math.min(CHUNK, want) : CHUNK);
    if (data.length === 0) return;
    if (want === 0) return this.fail(`conn ${this.id}: ${data.length} unexpected bytes`);
    const bad = msgCheck(data, this.id, this.seq, this.got);
    if (bad >= 0) {
      return this.fail(`conn ${this.id} seq ${this.seq}: wrong byte at offset ${this.got + bad}`);
    }
    this.got += data.length;
    this.bytesEchoed += data.length;
    if (measuring) winBytes += data.length;
    if (this.got < this.size) return;
    this.busy = false;
    if (measuring) {
      this.count++;
      winOps++;
      latencies.push((performance.now() - this.tStart) * 1000);
    }
    if (!stopping) this.start();
  }

  fail(why: string): void {
    recordError(why);
    this.dead = true;
    this.busy = false;
    this.close();
  }

  override handleClose(): void {
    this.fail(`conn ${this.id}: closed by the server (${this.got} of ${this.size} bytes back)`);
  }

  override handleError(error: unknown): void {
    this.fail(`conn ${this.id}: ${error}`);
  }
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

function report(
  mode: string,
  counts: number[],
  a: Mark,
  b: Mark,
  bytes: [number, number],
  echoedTotal: number,
  drained: boolean,
): void {
  const secs = (b.t - a.t) / 1000;
  const ticks = a.srv[0] >= 0 && b.srv[0] >= 0 ? b.srv[0] - a.srv[0] : -1;
  const srvCpu = ticks >= 0 ? ticks / CLK_TCK : -1;
  const srvUser = ticks >= 0 ? (b.srv[1] - a.srv[1]) / CLK_TCK : -1;
  const selfCpu = (b.self[0] - a.self[0]) / CLK_TCK;
  const sum = counts.reduce((x, y) => x + y, 0);
  const sum2 = counts.reduce((x, y) => x + y * y, 0);
  const sorted = latencies.sort((x, y) => x - y);
  const round = (x: number, d = 1) => Number(x.toFixed(d));
  console.log(JSON.stringify({
    mode,
    conns: opt.conns,
    idle: opt.idle,
    connect_s: round(connectSeconds, 3),
    window_s: round(secs, 4),
    ops: winOps,
    ops_per_s: round(winOps / secs),
    bytes_sent: bytes[0],
    bytes_recv: bytes[1],
    tx_mb_per_s: round(bytes[0] / secs / 1e6, 2),
    rx_mb_per_s: round(bytes[1] / secs / 1e6, 2),
    bytes_echoed_total: echoedTotal,
    p50_us: round(quantile(sorted, 0.5)),
    p99_us: round(quantile(sorted, 0.99)),
    max_us: round(sorted.length ? sorted[sorted.length - 1] : 0),
    jain: sum2 > 0 ? round((sum * sum) / (counts.length * sum2), 5) : 0,
    errors,
    error_detail: errorDetail,
    drained,
    server: {
      pid: opt.serverPid,
      cpu_ticks: ticks,
      clk_tck: CLK_TCK,
      cpu_s: srvCpu,
      user_s: srvUser,
      cpu_pct: srvCpu >= 0 ? round((100 * srvCpu) / secs) : -1,
      vm_rss_connected_kb: rssConnectedKb,
      vm_rss_end_kb: statusKb(opt.serverPid, "VmRSS"),
      vm_hwm_kb: statusKb(opt.serverPid, "VmHWM"),
      fds_before: fdsBefore,
      fds_connected: fdsConnected,
      fds_after: fdsAfter,
    },
    loadgen: { cpu_s: selfCpu, cpu_pct: round((100 * selfCpu) / secs) },
    other_cpu_pct: (() => {
      let busy = 0;
      b.cpus.forEach((c, i) => {
        if (a.cpus[i]) busy += c[0] - a.cpus[i][0];
      });
      const other = busy / 100 - Math.max(0, srvCpu) - selfCpu;
      return other > 0 ? round((100 * other) / secs) : 0;
    })(),
    cpu_busy_pct: b.cpus.map((c, i) => {
      const p = a.cpus[i];
      return p && c[1] > p[1] ? round((100 * (c[0] - p[0])) / (c[1] - p[1])) : -1;
    }),
    per_conn: counts,
  }));
}

function runMessages(soak: boolean): void {
  const socks = connectAll(opt.conns + opt.idle);
  const conns: MessageConn[] = [];
  for (let i = 0; i < opt.conns; i++) conns.push(new MessageConn(socks[opt.idle + i], i + 1, soak));
  let a = mark(), b = a;
  let drained = true;
  callLater(opt.warmup, () => {
    latencies = [];
    winOps = winBytes = 0;
    for (const c of conns) c.count = 0;
    measuring = true;
    a = mark();
  });
  callLater(opt.warmup + opt.duration, () => {
    b = mark();
    measuring = false;
    stopping = true;
    if (!soak) throw new ExitNow();
    const deadline = performance.now() + 15000;
    callEvery(0.01, () => {
      const busy = conns.filter((c) => c.busy && !c.dead).length;
      if (busy === 0) throw new ExitNow();
      if (performance.now() > deadline) {
        drained = false;
        recordError(`${busy} messages still outstanding 15 s after the end`);
        throw new ExitNow();
      }
    });
  });
  for (const c of conns) c.start();
  try {
    loop({ poller: "epoll", map, timeout: 0.1 });
  } catch (error) {
    if (!(error instanceof ExitNow)) throw error;
  }
  const bytes = winBytes;
  for (const c of conns) c.close();
  for (const s of socks.slice(0, opt.idle)) s.close();
  if (soak && opt.serverPid) {
    const deadline = performance.now() + 10000;
    for (;;) {
      fdsAfter = fdCount(opt.serverPid);
      if (fdsAfter <= fdsBefore || performance.now() > deadline) break;
      nap(20);
    }
  }
  const total = conns.reduce((x, c) => x + c.bytesEchoed, 0);
  report(
    soak ? "soak" : "pingpong",
    conns.map((c) => c.count),
    a,
    b,
    [bytes, bytes],
    total,
    drained,
  );
}

// ---- bulk ----

const PATTERN = new Uint8Array(CHUNK + 256).map((_, i) => i % 251);

class BulkConn extends Dispatcher {
  sent = 0;
  recvd = 0;
  winSent = 0;
  winRecv = 0;

  override writable(): boolean {
    return this.sent - this.recvd < opt.window;
  }

  override handleWrite(): void {
    while (this.sent - this.recvd < opt.window) {
      const len = Math.min(CHUNK, opt.window - (this.sent - this.recvd));
      const off = this.sent % 251;
      const n = this.send(PATTERN.subarray(off, off + len));
      this.sent += n;
      if (measuring) this.winSent += n;
      if (n < len) return;
    }
  }

  override handleRead(): void {
    const data = this.recv(CHUNK);
    if (data.length === 0) return;
    const off = this.recvd % 251;
    for (let i = 0; i < data.length; i++) {
      if (data[i] !== PATTERN[off + i]) {
        recordError(`wrong byte near stream offset ${this.recvd + i}`);
        throw new ExitNow();
      }
    }
    this.recvd += data.length;
    if (measuring) this.winRecv += data.length;
    this.handleWrite();
  }

  override handleClose(): void {
    recordError("server closed the connection");
    this.close();
    throw new ExitNow();
  }
}

function runBulk(): void {
  opt.conns = 1;
  const socks = connectAll(1 + opt.idle);
  const c = new BulkConn(socks[opt.idle], map);
  let a = mark(), b = a;
  callLater(opt.warmup, () => {
    measuring = true;
    a = mark();
  });
  callLater(opt.warmup + opt.duration, () => {
    b = mark();
    throw new ExitNow();
  });
  try {
    loop({ poller: "epoll", map, timeout: 0.1 });
  } catch (error) {
    if (!(error instanceof ExitNow)) throw error;
  }
  if (b === a) b = mark();
  winOps = Math.floor(c.winRecv / CHUNK);
  report("bulk", [winOps], a, b, [c.winSent, c.winRecv], c.recvd, true);
  c.close();
  for (const s of socks) s.close();
}

// ---- hold ----

async function runHold(): Promise<void> {
  const socks = connectAll(opt.idle);
  console.log(`CONNECTED ${opt.idle} ${connectSeconds.toFixed(3)}`);
  for await (const _ of Deno.stdin.readable) { /* until stdin closes */ }
  for (const s of socks) s.close();
}

if (import.meta.main) {
  parseArgs(Deno.args);
  if (opt.mode === "pingpong") runMessages(false);
  else if (opt.mode === "soak") runMessages(true);
  else if (opt.mode === "bulk") runBulk();
  else if (opt.mode === "hold") await runHold();
  else throw new Error(`unknown mode ${opt.mode}`);
}
