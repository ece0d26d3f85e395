// Resource limits: accept() out of fds (EMFILE) in a subprocess with a small
// fd limit, select()'s FD_SETSIZE, and 5,000 connections over poll and epoll.
import {
  assert,
  assertEquals,
  assertGreater,
  assertGreaterOrEqual,
  assertLess,
  assertMatch,
  assertStringIncludes,
  assertThrows,
} from "@std/assert";
import { closeAll, Dispatcher, loop, poll, Socket, type SocketMap } from "../mod.ts";
import { FdSet } from "../ffi/structs.ts";
import {
  concat,
  delay,
  EchoHandler,
  hasCommand,
  leakTest,
  POLLERS,
  Recording,
  withTimeout,
} from "./_util.ts";

const decoder = new TextDecoder();
const encoder = new TextEncoder();
const fixture = (name: string) => new URL(`./fixtures/${name}`, import.meta.url).pathname;
const hasPrlimit = hasCommand("prlimit");

/** Reads a child's output line by line; `next(re)` waits (bounded) for a matching line. */
class LineReader {
  readonly lines: string[] = [];
  #buf = "";
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #done = false;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.getReader();
  }

  async next(re: RegExp, ms = 10_000): Promise<RegExpMatchArray> {
    const deadline = performance.now() + ms;
    let seen = 0;
    for (;;) {
      for (; seen < this.lines.length; seen++) {
        const m = this.lines[seen].match(re);
        if (m) {
          this.lines.splice(0, seen + 1);
          return m;
        }
      }
      if (this.#done) throw new Error(`output ended without ${re}`);
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`no line matching ${re} within ${ms} ms`);
      const { value, done } = await withTimeout(this.#reader.read(), left, `${re}`);
      if (done) {
        this.#done = true;
        if (this.#buf) this.lines.push(this.#buf);
        continue;
      }
      this.#buf += decoder.decode(value, { stream: true });
      let i;
      while ((i = this.#buf.indexOf("\n")) >= 0) {
        this.lines.push(this.#buf.slice(0, i));
        this.#buf = this.#buf.slice(i + 1);
      }
    }
  }

  /** Reads to the end (so the pipe is released). */
  async drain(): Promise<string> {
    while (!this.#done) {
      const { value, done } = await this.#reader.read();
      if (done) this.#done = true;
      else this.#buf += decoder.decode(value, { stream: true });
    }
    return [...this.lines, this.#buf].join("\n");
  }
}

/** utime + stime of a process, in clock ticks. */
function cpuTicks(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // After "pid (comm) ": state is field 3, so utime (14) and stime (15) are at 11 and 12.
  return Number(fields[11]) + Number(fields[12]);
}

/** Reads `n` bytes from `conn` (bounded). */
async function readExactly(conn: Deno.Conn, n: number, ms: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let got = 0;
  const deadline = performance.now() + ms;
  while (got < n) {
    const left = deadline - performance.now();
    if (left <= 0) throw new Error(`got ${got} of ${n} bytes`);
    const r = await withTimeout(conn.read(out.subarray(got)), left, "the echo");
    if (r === null) throw new Error(`end of stream after ${got} of ${n} bytes`);
    got += r;
  }
  return out;
}

// ---- accept() out of fds ----

const EMFILE_CLIENTS = 5;

for (const poller of POLLERS) {
  Deno.test({
    name: `emfile: accept out of fds backs off without spinning, then serves the queue (${poller})`,
    async fn() {
      // The fixture fills its own fd table; a low limit only makes that quick.
      const deno = Deno.execPath();
      const run = [deno, "run", "--allow-ffi", fixture("reliability_emfile.ts"), poller];
      const args = [...run, String(EMFILE_CLIENTS)];
      const child = new Deno.Command(hasPrlimit ? "prlimit" : args[0], {
        args: hasPrlimit ? ["--nofile=64:64", ...args] : args.slice(1),
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const out = new LineReader(child.stdout);
      const errText = new Response(child.stderr).text();
      const conns: Deno.Conn[] = [];
      try {
        const port = Number((await out.next(/^PORT (\d+)$/))[1]);
        const lines = [];
        for (let i = 0; i < EMFILE_CLIENTS; i++) {
          const conn = await Deno.connect({ hostname: "127.0.0.1", port });
          conns.push(conn);
          lines.push(encoder.encode(`hello from client ${i}\n`));
          await conn.write(lines[i]);
        }
        const stdin = child.stdin.getWriter();
        await stdin.write(encoder.encode("go\n"));
        await stdin.close();

        const fillers = Number((await out.next(/^FULL (\d+)$/))[1]);
        assertGreater(fillers, 0);
        // CPU over most of the second the table stays full: a spinning loop would use ~all of it.
        const t0 = performance.now();
        const ticks0 = cpuTicks(child.pid);
        await delay(700);
        const ticks1 = cpuTicks(child.pid);
        const elapsed = performance.now() - t0;
        await out.next(/^FREED$/);
        const cpuShare = (ticks1 - ticks0) / 100 / (elapsed / 1000);

        for (let i = 0; i < EMFILE_CLIENTS; i++) {
          const echo = await readExactly(conns[i], lines[i].length, 10_000);
          assertEquals(decoder.decode(echo), decoder.decode(lines[i]));
          conns[i].close();
        }
        conns.length = 0;
        const result = JSON.parse((await out.next(/^RESULT (.*)$/, 20_000))[1]);
        const status = await withTimeout(child.status, 20_000, "the fixture to exit");
        const stderr = await errText;
        assertEquals(status.code, 0, stderr);
        assert(!/panicked|RUST_BACKTRACE/.test(stderr), `Deno panicked:\n${stderr}`);

        assertEquals(result.outcome, "ok");
        assertEquals(result.fillError, "EMFILE");
        // One log line through logInfo(..., "error") for the whole episode.
        assertEquals(result.errors.length, 1, result.errors.join("\n"));
        assertMatch(result.errors[0], /Too many open files.*accept.*pauses accepting/);
        // Back-off: about one attempt per ACCEPT_BACKOFF_SECONDS, a few passes each.
        const period = result.backoff * 1000;
        const attempts = result.during.acceptCalls;
        assertGreaterOrEqual(attempts, 3, "accept was retried while full");
        assertLess(attempts, 1000 / period + 5, `accept tried ${attempts} times in 1 s`);
        // readable() is asked about once a pass; a spinning loop would ask ~100,000 times.
        assertLess(
          result.during.passes,
          500,
          `readable() asked ${result.during.passes} times in 1 s`,
        );
        assert(result.during.pausedAtEnd, "still backing off when the fds were freed");
        assert(result.during.spareHeld, "the spare fd was taken back after each EMFILE");
        assertLess(cpuShare, 0.3, `the fixture used ${(cpuShare * 100).toFixed(0)}% CPU`);
        assertEquals(result.accepted, EMFILE_CLIENTS);
        assertEquals(result.served, EMFILE_CLIENTS);
        console.log(
          `  ${poller}: ${fillers} filler fds, ${attempts} accept attempts and ${result.during.passes} passes in 1 s, CPU ${
            (cpuShare * 100).toFixed(0)
          }%`,
        );
      } finally {
        for (const c of conns) c.close();
        try {
          child.kill();
        } catch { /* already exited */ }
        await child.status;
        await out.drain();
        await errText;
      }
    },
  });
}

// ---- select() and FD_SETSIZE ----

/** The soft and hard fd limits of this process. */
function nofileLimits(): { soft: number; hard: number } {
  const line = Deno.readTextFileSync("/proc/self/limits").split("\n")
    .find((l) => l.startsWith("Max open files")) ?? "";
  const [soft, hard] = line.replace("Max open files", "").trim().split(/\s+/).map((v) =>
    v === "unlimited" ? Infinity : Number(v)
  );
  return { soft, hard };
}

const limits = nofileLimits();

/** Echoes; counts handler calls that should never happen here. */
class HighEcho extends Recording(EchoHandler) {}

class HighListener extends Dispatcher {
  channels: HighEcho[] = [];

  override handleAccepted(sock: Socket): void {
    this.channels.push(new HighEcho(sock, this._map));
  }
}

leakTest(
  "select limits: an fd >= 1024 is a RangeError naming it, the map untouched; poll and epoll serve it",
  () => {
    const map: SocketMap = new Map();
    const fillers: Socket[] = [];
    try {
      const listener = new HighListener(null, map);
      listener.createSocket();
      listener.bind(["127.0.0.1", 0]);
      listener.listen(8);
      const addr = (listener.socket as Socket).getsockname();
      // Take every fd up to 1023, so the next sockets land at 1024 and above.
      while (fillers.length < 2000) {
        const s = new Socket();
        fillers.push(s);
        if (s.fileno() >= 1023) break;
      }
      const client = new HighEcho(null, map);
      client.createSocket();
      client.connect(addr);
      const highFd = client.fileno()!;
      assertGreaterOrEqual(highFd, 1024);
      for (let i = 0; i < 100 && listener.channels.length === 0; i++) {
        loop({ map, poller: "poll", timeout: 0.05, count: 1 });
      }
      assertEquals(listener.channels.length, 1);
      for (const s of fillers) s.close();
      fillers.length = 0;

      const snapshot = [...map];
      const fds = snapshot.map(([, obj]) => obj.socket!.fileno());
      const calls: Array<() => void> = [
        () => poll(0, map),
        () => poll(null, map),
        () => loop({ map, poller: "select", timeout: 0, count: 1 }),
        () => loop(0, false, map, 1),
      ];
      for (const call of calls) {
        const error = assertThrows(call, RangeError);
        assertMatch(error.message, /select\(\) cannot watch fd (\d+)/);
        const named = Number(error.message.match(/fd (\d+)/)![1]);
        assertGreaterOrEqual(named, 1024);
        assert(map.has(named), "the fd named is one of the map's");
        assertStringIncludes(error.message, "usePoll");
        assertStringIncludes(error.message, "epoll");
        // The map, the channels and their sockets are as they were.
        assertEquals([...map], snapshot);
        assertEquals(snapshot.map(([, obj]) => obj.socket!.fileno()), fds);
      }
      for (const ch of [client, ...listener.channels]) {
        assertEquals(ch.errors, []);
        assertEquals(ch.closes, 0);
      }

      // The same map over poll and epoll: a round trip on the high fds.
      for (const poller of ["poll", "epoll"] as const) {
        const msg = new TextEncoder().encode(`over ${poller}`);
        client.send(msg);
        const got: Uint8Array[] = [];
        const orig = client.handleRead.bind(client);
        client.handleRead = () => {
          const data = client.recv(4096);
          if (data.length > 0) got.push(data);
        };
        for (let i = 0; i < 200 && got.reduce((n, c) => n + c.length, 0) < msg.length; i++) {
          loop({ map, poller, timeout: 0.05, count: 1 });
        }
        client.handleRead = orig;
        assertEquals(decoder.decode(concat(got)), `over ${poller}`);
      }
    } finally {
      for (const s of fillers) s.close();
      closeAll(map);
    }
  },
  limits.soft < 1200,
);

Deno.test("select limits: FdSet refuses an fd outside 0-1023 before writing a byte", () => {
  const set = new FdSet();
  set.add(5);
  set.add(1023);
  const before = set.bytes.slice();
  for (const fd of [1024, 1025, 4096, 65536, -1, 2 ** 31, 1.5, NaN]) {
    const error = assertThrows(() => set.add(fd), RangeError);
    assertStringIncludes(error.message, `fd ${fd}`);
    assertEquals(set.bytes, before);
  }
  assert(set.has(5) && set.has(1023));
});

// ---- 5,000 connections over poll and epoll ----

const MANY = 5000;
const MANY_NOFILE = 12000;
// A subprocess with its own limit: prlimit may lower the hard limit, and root may raise it.
const canRunMany = hasPrlimit && (limits.hard >= MANY_NOFILE || Deno.uid?.() === 0);
if (!canRunMany) {
  console.log(
    `emfile_test: skipping the ${MANY}-connection tests: need prlimit and a hard fd limit >= ${MANY_NOFILE} (hard limit here: ${limits.hard})`,
  );
}

for (const poller of ["poll", "epoll"] as const) {
  Deno.test({
    name: `many connections: ${MANY} at once over ${poller}, select refuses the same map`,
    ignore: !canRunMany,
    async fn() {
      const out = await new Deno.Command("prlimit", {
        args: [
          `--nofile=${MANY_NOFILE}:${MANY_NOFILE}`,
          Deno.execPath(),
          "run",
          "--allow-ffi",
          fixture("reliability_many.ts"),
          poller,
          String(MANY),
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stdout = decoder.decode(out.stdout);
      const stderr = decoder.decode(out.stderr);
      if (!out.success && /prlimit: .*(Operation not permitted|failed to set)/.test(stderr)) {
        console.log(`  skipped: prlimit could not set ${MANY_NOFILE} fds: ${stderr.trim()}`);
        return;
      }
      assert(out.success, `fixture failed:\n${stdout}\n${stderr}`);
      const line = stdout.split("\n").find((l) => l.startsWith("RESULT "));
      assert(line, stdout);
      const r = JSON.parse(line.slice(7));
      assertEquals(r.outcome, "ok");
      assertEquals(r.accepted, MANY);
      assertEquals(r.done, MANY, `${r.failed} clients failed`);
      assertEquals(r.failed, 0);
      assertEquals(r.serverClosed, MANY);
      assertEquals(r.peakMap, 2 * MANY + 1, "all connections open at once");
      assertGreater(r.maxFd, 2 * MANY);
      assertMatch(r.selectError, /^RangeError: select\(\) cannot watch fd \d{4,}.*usePoll/);
      assertEquals(r.mapSize, 0);
      console.log(`  ${poller}: ${MANY} connections echoed in ${r.seconds.toFixed(2)} s`);
    },
  });
}
