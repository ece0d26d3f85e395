// How a channel's TLS session moves bytes (tls/_records.ts): reads that
// read ahead, records gathered in one shared memory BIO and sent once per
// pass, records the kernel refused held (and counted as queued output),
// record sizes that follow the traffic, a close that still sends what was
// taken. Real peers (Deno.connectTls, python3 ssl) check every byte by hash,
// and a relay between them and our server checks that only well-formed TLS
// records cross the wire. Every test on every poller.
import { assert, assertEquals, assertGreater, assertLessOrEqual } from "@std/assert";
import {
  AsyncChat,
  Dispatcher,
  DispatcherWithSend,
  loopAsync,
  type PollerName,
  SO_SNDBUF,
  type Socket,
  type SocketMap,
  SOL_SOCKET,
  type SSLContext,
} from "../mod.ts";
import { BIG_RECORD, LINGER_SECONDS, recordStats, SMALL_RECORD } from "../tls/_records.ts";
import {
  assertNoFdLeak,
  closeMap,
  delay,
  denoTlsEcho,
  POLLERS,
  python,
  pythonChild,
  randomBytes,
  rng,
  serveWhile,
  sha256,
  withTimeout,
} from "./_util.ts";
import { serverContext, tlsCerts } from "./fixtures/tls_certs.ts";
import { RecordRelay } from "./fixtures/tls_wire.ts";
import { Lines } from "./fixtures/subprocess.ts";

const certs = await tlsCerts();
const MiB = 1024 * 1024;
const decoder = new TextDecoder();
const encoder = new TextEncoder();
const root = new URL("..", import.meta.url).pathname;
const fixture = (name: string) => new URL(`./fixtures/${name}`, import.meta.url).pathname;
/** TLS 1.3 adds 17 bytes to a record's data (content type and AEAD tag). */
const TLS13_OVERHEAD = 17;

/** A listener that wraps each connection in TLS and hands it to `make`. */
class TlsListener extends Dispatcher {
  constructor(
    readonly ctx: SSLContext,
    map: SocketMap,
    readonly make: (sock: Socket) => Dispatcher,
  ) {
    super(null, map);
    this.createSocket();
    this.setReuseAddr();
    this.bind(["127.0.0.1", 0]);
    this.listen(1024);
  }
  get port(): number {
    return (this.sock.getsockname() as [string, number])[1];
  }
  override handleAccepted(sock: Socket): void {
    this.make(this.ctx.wrapSocket(sock, { serverSide: true }));
  }
}

/**
 * Echoes in pieces: reads of seeded sizes (1 B to 64 KiB), each sent back
 * in 1 to 4 sends, so that one pass gathers several writes of one channel.
 * Records the largest share of its queued bytes the transport held.
 */
class ScatterEcho extends DispatcherWithSend {
  static errors: unknown[] = [];
  static transportHeld = 0;
  readonly #rand: () => number;
  constructor(sock: Socket, map: SocketMap, seed: number, highWaterMark?: number) {
    super(sock, map);
    this.#rand = rng(seed);
    if (highWaterMark !== undefined) this.highWaterMark = highWaterMark;
  }
  override handleRead(): void {
    const size = 1 + Math.floor(this.#rand() ** 3 * 65536);
    const data = this.recv(size);
    if (data.length === 0) return; // part of a record: the poller reports the rest
    const pieces = 1 + Math.floor(this.#rand() * 4);
    const step = Math.ceil(data.length / pieces);
    for (let at = 0; at < data.length; at += step) this.send(data.subarray(at, at + step));
    const held = this.queuedBytes - this.outBuffer.length;
    if (held > ScatterEcho.transportHeld) ScatterEcho.transportHeld = held;
  }
  override handleClose(): void {
    this.close();
  }
  override handleError(error: unknown): void {
    ScatterEcho.errors.push(error);
    this.close();
  }
}

for (const poller of POLLERS) {
  Deno.test(`tls records(${poller}): 100 connections x 1 MiB through gathered writes and read-ahead: hash-exact, only TLS records on the wire, records grow`, async () => {
    await assertNoFdLeak(async () => {
      const map: SocketMap = new Map();
      ScatterEcho.errors = [];
      const ctx = serverContext(certs);
      let seed = 1;
      const server = new TlsListener(ctx, map, (s) => new ScatterEcho(s, map, seed++));
      const relay = new RecordRelay(server.port);
      try {
        const work = Promise.all(Array.from({ length: 100 }, async (_, i) => {
          const data = randomBytes(MiB, 1000 + i);
          return (await denoTlsEcho(certs.caPem, relay.port, data)) === (await sha256(data));
        }));
        const ok = await serveWhile(map, poller, work, 120_000);
        assertEquals(ok.filter(Boolean).length, 100, "connections whose echo hashed right");
        await serveWhile(map, poller, delay(50));
      } finally {
        await relay.close();
        closeMap(map);
        ctx.close();
      }
      assertEquals(ScatterEcho.errors, []);
      assertEquals(recordStats.readForNothing, 0, "a read of records said to be held found none");
      assertEquals(relay.violations, [], "bytes on the wire that are not TLS records");
      assertEquals(relay.stats.length, 100);
      for (const s of relay.stats) {
        // The handshake's own records come first; then the echo's, which start small.
        const data = s.serverRecords.filter((n) => n > 300);
        assertLessOrEqual(data[0], SMALL_RECORD + TLS13_OVERHEAD, "the first echo record is small");
        assertEquals(
          Math.max(...s.serverRecords),
          BIG_RECORD + TLS13_OVERHEAD,
          "a streaming connection's records grow to 16 KiB",
        );
      }
    });
  });

  Deno.test({
    name:
      `tls records(${poller}): python peers that read slowly while writing: hash-exact; held records count as queued`,
    ignore: !python,
    fn: async () => {
      await assertNoFdLeak(async () => {
        const map: SocketMap = new Map();
        ScatterEcho.errors = [];
        ScatterEcho.transportHeld = 0;
        const heldBefore = recordStats.held;
        const ctx = serverContext(certs);
        let seed = 7;
        // A small high-water mark: the channels pause and resume all along.
        const server = new TlsListener(
          ctx,
          map,
          (s) => new ScatterEcho(s, map, seed++, 128 * 1024),
        );
        const relay = new RecordRelay(server.port);
        try {
          // Two through the relay (the wire is checked); one straight to the
          // server with a small receive buffer that reads nothing for a while
          // (the kernel refuses the server's records: they are held).
          const peers = [0, 1, 2].map((i) =>
            pythonChild([
              fixture("tls_slow_peer.py"),
              String(i < 2 ? relay.port : server.port),
              certs.ca,
              String(4 * MiB),
              String(i + 1),
              i === 0 ? "1" : "0.2",
              i === 2 ? "500" : "0",
              i === 2 ? "16384" : "0",
            ])
          );
          try {
            const outs = await serveWhile(
              map,
              poller,
              Promise.all(peers.map((p) => p.output())),
              150_000,
            );
            for (const out of outs) {
              const text = decoder.decode(out.stdout).trim();
              const [word, sent, got, hSent, hGot] = text.split(" ");
              assertEquals(word, "DONE", `${text} ${decoder.decode(out.stderr)}`);
              assertEquals(Number(sent), 4 * MiB);
              assertEquals(Number(got), 4 * MiB);
              assertEquals(hGot, hSent, "the echo is byte-exact");
            }
          } finally {
            for (const p of peers) await p[Symbol.asyncDispose]();
          }
          await serveWhile(map, poller, delay(50));
        } finally {
          await relay.close();
          closeMap(map);
          ctx.close();
        }
        assertEquals(ScatterEcho.errors, []);
        assertEquals(recordStats.readForNothing, 0, "a read of records said to be held found none");
        assertEquals(relay.violations, []);
        assertGreater(
          ScatterEcho.transportHeld,
          0,
          "records the transport held count in queuedBytes",
        );
        assertGreater(recordStats.held, heldBefore, "the kernel refused records, which were held");
      });
    },
  });
}

/**
 * A small send buffer (the kernel doubles it to 16 KiB): the last batch of
 * records a closing channel gathers (up to 64 KiB) does not fit, and close
 * must keep sending it.
 */
function smallSendBuffer(sock: Socket): void {
  sock.setsockopt(SOL_SOCKET, SO_SNDBUF, 8192);
}

/** Sends `body` once the handshake is done, then closes as soon as its queue is empty. */
class SendThenClose extends DispatcherWithSend {
  constructor(sock: Socket, map: SocketMap, readonly body: Uint8Array) {
    super(sock, map);
    smallSendBuffer(sock);
  }
  #started = false;
  override writable(): boolean {
    return true;
  }
  override handleWrite(): void {
    if (!this.#started) {
      // Queued in 64 KiB pieces: the last send takes a whole batch of records.
      this.#started = true;
      for (let at = 0; at < this.body.length; at += 65536) {
        this.send(this.body.subarray(at, at + 65536));
      }
      return;
    }
    super.handleWrite();
    // The Python idiom: an empty out_buffer means everything went out.
    if (this.outBuffer.length === 0) this.close();
  }
  override handleRead(): void {
    this.recv(65536);
  }
  override handleClose(): void {
    this.close();
  }
}

/** Pushes `body` and closes when done (AsyncChat's closeWhenDone). */
class PushThenClose extends AsyncChat {
  constructor(sock: Socket, map: SocketMap, body: Uint8Array) {
    super(sock, map);
    smallSendBuffer(sock);
    this.setTerminator(null);
    this.push(body);
    this.closeWhenDone();
  }
  override collectIncomingData(): void {}
  override foundTerminator(): void {}
}

for (const poller of POLLERS) {
  Deno.test({
    name:
      `tls records(${poller}): a channel that closes right after its last send loses nothing to a late, slow reader`,
    ignore: !python,
    fn: async () => {
      await assertNoFdLeak(async () => {
        const body = randomBytes(4 * MiB, 99);
        const want = await sha256(body);
        const lingeredBefore = recordStats.lingered;
        for (const make of ["send", "push"]) {
          const map: SocketMap = new Map();
          const ctx = serverContext(certs);
          const server = new TlsListener(
            ctx,
            map,
            (s) =>
              make === "send" ? new SendThenClose(s, map, body) : new PushThenClose(s, map, body),
          );
          try {
            await using peer = pythonChild([
              fixture("tls_slow_reader.py"),
              String(server.port),
              certs.ca,
              "300",
              "16384",
              "1",
            ]);
            const out = await serveWhile(map, poller, peer.output(), 120_000);
            const text = decoder.decode(out.stdout).trim();
            assertEquals(
              text,
              `EOF ${body.length} ${want}`,
              `${make}: ${decoder.decode(out.stderr)}`,
            );
            // The server's last records may still be going out: the loop runs until they are.
            await serveWhile(map, poller, delay(20));
          } finally {
            closeMap(map);
            ctx.close();
          }
        }
        assertGreater(recordStats.lingered, lingeredBefore, "a close kept its fd for held records");
      });
    },
  });

  Deno.test(`tls records(${poller}): a send from outside the loop (a Deno timer) leaves while loopAsync waits with no timeout`, async () => {
    await assertNoFdLeak(async () => {
      const map: SocketMap = new Map();
      const ctx = serverContext(certs);
      const channels: DispatcherWithSend[] = [];
      class Quiet extends DispatcherWithSend {
        override handleRead(): void {
          this.recv(65536);
        }
        override handleClose(): void {
          this.close();
        }
      }
      const server = new TlsListener(ctx, map, (s) => {
        const ch = new Quiet(s, map);
        channels.push(ch);
        return ch;
      });
      const stop = new AbortController();
      const serving = loopAsync({ map, poller, timeout: null, signal: stop.signal });
      try {
        const conn = await Deno.connectTls({
          hostname: "localhost",
          port: server.port,
          caCerts: [certs.caPem],
        });
        try {
          await conn.handshake();
          await withTimeout(
            (async () => {
              while (channels.length === 0 || !channels[0].connected) await delay(5);
            })(),
            10_000,
            "the server's channel",
          );
          // The loop is waiting on its thread, with no timeout: only the wake-up brings it back.
          await delay(100);
          setTimeout(() => channels[0].send("sent from a timer\n"), 0);
          const buf = new Uint8Array(64);
          const n = await withTimeout(conn.read(buf), 5_000, "the timer's bytes");
          assertEquals(decoder.decode(buf.subarray(0, n ?? 0)), "sent from a timer\n");
        } finally {
          conn.close();
        }
      } finally {
        stop.abort();
        await serving;
        closeMap(map);
        ctx.close();
      }
    });
  });
}

// ---- a TLS peer that sends without reading: bounded memory, then every byte back ----

/** A field of /proc/PID/status, in KiB. */
function statusKb(pid: number, key: string): number {
  const m = Deno.readTextFileSync(`/proc/${pid}/status`).match(
    new RegExp(`^${key}:\\s+(\\d+)`, "m"),
  );
  if (!m) throw new Error(`no ${key} in /proc/${pid}/status`);
  return Number(m[1]);
}

/**
 * Floods a server subprocess (tests/fixtures/limits_server.ts in `mode`:
 * `into` plain, `tls` the same echo over TLS) with a python3 peer that sends
 * `total` bytes without reading until it stalls, then reads everything
 * back; checks every byte and returns where it stalled and the server's
 * peak RSS growth (KiB).
 */
async function flood(
  mode: "into" | "tls",
  poller: PollerName,
  total: number,
): Promise<{ blockedAt: number; growthKb: number }> {
  const server = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-ffi",
      "tests/fixtures/limits_server.ts",
      mode,
      poller,
      certs.cert,
      certs.key,
    ],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const serverOut = new Lines(server.stdout);
  const serverErr = new Response(server.stderr).text();
  try {
    const ready = await serverOut.waitFor(/^LISTENING (\d+)$/, 1, 30_000);
    if (ready === null) throw new Error(`server did not start: ${await serverErr}`);
    const port = String(ready[0].split(" ")[1]);
    const pid = server.pid;
    const baseKb = statusKb(pid, "VmRSS");
    const args = mode === "tls"
      ? [fixture("tls_flood_client.py"), port, certs.ca, String(total), "0.5"]
      : [fixture("flood_client.py"), port, String(total), "raw", "0.5"];
    const peer = new Deno.Command(python!, {
      args,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const out = new Lines(peer.stdout);
    const err = new Response(peer.stderr).text();
    const stdin = peer.stdin.getWriter();
    try {
      const blocked = await out.waitFor(/^BLOCKED (\d+)$/, 1, 60_000);
      if (blocked === null) throw new Error(`the peer never stalled: ${await err}`);
      const blockedAt = Number(blocked[0].split(" ")[1]);
      await stdin.write(encoder.encode("GO\n"));
      const done = await out.waitFor(/^DONE /, 1, 600_000);
      if (done === null) throw new Error(`the peer did not finish: ${await err}`);
      const [, sent, got, hSent, hGot] = done[0].split(" ");
      assertEquals(Number(sent), total, `${mode}: bytes sent`);
      assertEquals(Number(got), total, `${mode}: bytes echoed back`);
      assertEquals(hGot, hSent, `${mode}: the echo is byte-exact`);
      return { blockedAt, growthKb: statusKb(pid, "VmHWM") - baseKb };
    } finally {
      await stdin.close().catch(() => {});
      try {
        peer.kill("SIGKILL");
      } catch { /* exited */ }
      await peer.status;
      await out.done;
      await err;
    }
  } finally {
    try {
      server.kill("SIGTERM");
    } catch { /* exited */ }
    await server.status;
    await serverOut.done;
    await serverErr;
  }
}

for (const poller of POLLERS) {
  // The full GiB once (epoll, the Linux default); the other pollers less.
  const total = poller === "epoll" ? 1024 * MiB : 32 * MiB;
  Deno.test({
    name: `tls records(${poller}): a python TLS peer sends ${
      total / MiB
    } MiB without reading: server RSS grows <= 64 MiB, as plain TCP does; every byte comes back`,
    ignore: !python,
    fn: async () => {
      // The same echo, plain then TLS: it reads into one reused buffer, so
      // what grows is the library's, not garbage waiting for V8's collector.
      const plain = await flood("into", poller, total);
      const tls = await flood("tls", poller, total);
      const mib = (kb: number) => (kb / 1024).toFixed(1);
      console.log(
        `    peak RSS growth over ${total / MiB} MiB: plain ${mib(plain.growthKb)} MiB, TLS ${
          mib(tls.growthKb)
        } MiB; the peer stalled after ${mib(plain.blockedAt / 1024)} / ${
          mib(tls.blockedAt / 1024)
        } MiB`,
      );
      assert(tls.blockedAt < Math.min(total, 64 * MiB), "the server kept reading a non-reader");
      assertLessOrEqual(tls.growthKb, 64 * 1024, "TLS server RSS grew by more than 64 MiB");
      assertLessOrEqual(plain.growthKb, 64 * 1024, "plain server RSS grew by more than 64 MiB");
      // No more than the plain case, within what two runs of the same server differ by.
      assertLessOrEqual(tls.growthKb, plain.growthKb + 16 * 1024, "TLS costs more than plain");
    },
  });
}

/** This process's CPU time (user + system), in seconds. */
function cpuSeconds(): number {
  const stat = Deno.readTextFileSync("/proc/self/stat");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / 100;
}

for (const poller of POLLERS) {
  Deno.test({
    name:
      `tls records(${poller}): a closed channel whose peer never reads gives its held records up after ${LINGER_SECONDS} s, quietly`,
    ignore: !python,
    fn: async () => {
      await assertNoFdLeak(async () => {
        const map: SocketMap = new Map();
        const ctx = serverContext(certs);
        const channels: DispatcherWithSend[] = [];
        class Flood extends DispatcherWithSend {
          override handleConnect(): void {}
          override handleRead(): void {
            this.recv(65536);
          }
          override handleClose(): void {
            this.close();
          }
        }
        const server = new TlsListener(ctx, map, (s) => {
          smallSendBuffer(s);
          const ch = new Flood(s, map);
          channels.push(ch);
          return ch;
        });
        const lingeredBefore = recordStats.lingered;
        try {
          // Reads nothing for 20 s: everything the server sends stays unread.
          await using peer = pythonChild([
            fixture("tls_slow_reader.py"),
            String(server.port),
            certs.ca,
            "20000",
            "16384",
            "1",
          ]);
          await serveWhile(
            map,
            poller,
            (async () => {
              while (channels.length === 0 || !channels[0].connected) await delay(5);
            })(),
            10_000,
          );
          const ch = channels[0];
          const fd = ch.fileno()!;
          ch.send(randomBytes(4 * MiB, 5));
          await serveWhile(map, poller, delay(300));
          assertGreater(ch.queuedBytes, 0);
          ch.close();
          assertEquals(recordStats.lingered, lingeredBefore + 1, "the close lingers");
          assert(Deno.readLinkSync(`/proc/self/fd/${fd}`).startsWith("socket:"), "fd kept open");
          const cpu0 = cpuSeconds();
          const t0 = performance.now();
          await serveWhile(
            map,
            poller,
            (async () => {
              for (;;) {
                try {
                  Deno.readLinkSync(`/proc/self/fd/${fd}`);
                } catch {
                  return;
                }
                await delay(20);
              }
            })(),
            (LINGER_SECONDS + 3) * 1000,
          );
          const took = (performance.now() - t0) / 1000;
          const cpu = cpuSeconds() - cpu0;
          console.log(
            `    gave up after ${took.toFixed(2)} s, ${cpu.toFixed(2)} s of CPU meanwhile`,
          );
          assertGreater(took, LINGER_SECONDS - 1, "held records were given time");
          assertLessOrEqual(cpu, 1.5, "the lingering close spun");
          peer.child.kill("SIGKILL");
        } finally {
          closeMap(map);
          ctx.close();
        }
      });
    },
  });
}
