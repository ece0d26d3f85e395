// loopAsync: asyncore channels served while Deno's own event loop keeps
// running (Deno.serve, fetch, Deno.connect, setTimeout) in the same process;
// abort, resume, count, the map emptying, channels added from outside,
// ExitNow, one loop per map, every poller, and idle CPU.
//
// Real loopback sockets only; every wait is bounded by a deadline; each test
// has its own map and checks for fd leaks.
import { assert, assertEquals, assertGreaterOrEqual, assertLess, assertRejects } from "@std/assert";
import {
  closeAll,
  DispatcherWithSend,
  ExitNow,
  FileDispatcher,
  loopAsync,
  type LoopAsyncOptions,
  type PollerName,
  type Socket,
  type SocketMap,
} from "../mod.ts";
import * as os from "../ffi/os.ts";
import {
  BEST_POLLER,
  delay,
  EchoHandler,
  EchoServer,
  leakTest,
  Listener,
  onWindows,
  POLLERS,
  randomBytes,
  TIME_SLACK,
  withTimeout,
} from "./_util.ts";

const HOST = "127.0.0.1";

// ---- channels ----

// ---- bounded waiting ----

/** A running loopAsync with its abort controller and whether it has settled. */
interface Running {
  ac: AbortController;
  done: Promise<void>;
  settled: () => boolean;
  /** Aborts and waits (bounded) for the loop to stop. */
  stop(): Promise<void>;
}

function start(map: SocketMap, options: LoopAsyncOptions = {}): Running {
  const ac = new AbortController();
  let settled = false;
  const done = loopAsync({ map, timeout: 30, signal: ac.signal, ...options });
  done.then(() => settled = true, () => settled = true);
  return {
    ac,
    done,
    settled: () => settled,
    async stop() {
      ac.abort();
      await withTimeout(done, 2000, "loopAsync to stop after abort");
    },
  };
}

// ---- Deno clients ----

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await conn.write(data.subarray(off));
}

async function readExactly(conn: Deno.Conn, n: number): Promise<Uint8Array<ArrayBuffer>> {
  const out = new Uint8Array(n);
  let got = 0;
  while (got < n) {
    const r = await conn.read(out.subarray(got));
    if (r === null) throw new Error(`end of stream after ${got} of ${n} bytes`);
    got += r;
  }
  return out;
}

/** Ping-pongs `rounds` messages of `size` bytes with an echo server; `onRound` after each. */
async function pingPong(
  port: number,
  rounds: number,
  size: number,
  seed: number,
  onRound?: () => void,
): Promise<void> {
  const conn = await Deno.connect({ hostname: HOST, port });
  try {
    for (let i = 0; i < rounds; i++) {
      const msg = randomBytes(size, seed * 1000 + i);
      await writeAll(conn, msg);
      assertEquals(await readExactly(conn, size), msg);
      onRound?.();
    }
  } finally {
    conn.close();
  }
}

// ---- /proc/self/stat ----

const CLK_TCK = (() => {
  try {
    const out = new Deno.Command("getconf", { args: ["CLK_TCK"], stdout: "piped" }).outputSync();
    const n = Number(new TextDecoder().decode(out.stdout).trim());
    return n > 0 ? n : 100;
  } catch {
    return 100;
  }
})();

/** CPU seconds (user + system) this process has used. */
function cpuSeconds(): number {
  const stat = Deno.readTextFileSync("/proc/self/stat");
  // Fields after "(comm)": state is field 3, utime 14, stime 15.
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}

// ---- the tests ----

leakTest(
  "loopAsync: Deno.serve and an asyncore echo server answer clients at the same time",
  async () => {
    const map: SocketMap = new Map();
    const echo = new EchoServer({ map });
    const echoPort = echo.port;
    const serverAc = new AbortController();
    // The HTTP handler itself is a client of the echo server: both servers must
    // progress together for a request to complete.
    const server = Deno.serve(
      { hostname: HOST, port: 0, signal: serverAc.signal, onListen() {} },
      async (req) => {
        const path = new URL(req.url).pathname;
        if (path === "/echo") {
          const body = new Uint8Array(await req.arrayBuffer());
          const conn = await Deno.connect({ hostname: HOST, port: echoPort });
          try {
            await writeAll(conn, body);
            return new Response(await readExactly(conn, body.length));
          } finally {
            conn.close();
          }
        }
        return new Response(`hello ${path}`);
      },
    );
    const client = Deno.createHttpClient({ poolMaxIdlePerHost: 0 });
    const running = start(map, { poller: BEST_POLLER });
    const log: string[] = [];
    try {
      const base = `http://${HOST}:${server.addr.port}`;
      const httpClient = async (id: number) => {
        for (let i = 0; i < 15; i++) {
          const r = await fetch(`${base}/c${id}/${i}`, { client });
          assertEquals(await r.text(), `hello /c${id}/${i}`);
          log.push("h");
          const payload = randomBytes(100 + i, id * 100 + i) as Uint8Array<ArrayBuffer>;
          const e = await fetch(`${base}/echo`, { client, method: "POST", body: payload });
          assertEquals(new Uint8Array(await e.arrayBuffer()), payload);
          log.push("h");
        }
      };
      const echoClient = (id: number) => pingPong(echoPort, 40, 64 + id, id, () => log.push("e"));
      await withTimeout(
        Promise.all([
          ...[1, 2, 3, 4].map(httpClient),
          ...[1, 2, 3, 4].map(echoClient),
        ]),
        15_000,
        "HTTP and echo clients",
      );
      assertEquals(log.filter((x) => x === "h").length, 4 * 30);
      assertEquals(log.filter((x) => x === "e").length, 4 * 40);
      // Interleaved, not one server after the other.
      const firstE = log.indexOf("e"), lastE = log.lastIndexOf("e");
      const firstH = log.indexOf("h"), lastH = log.lastIndexOf("h");
      assert(log.slice(firstE, lastE).includes("h"), "no HTTP reply while echo clients ran");
      assert(log.slice(firstH, lastH).includes("e"), "no echo reply while HTTP clients ran");
      assertGreaterOrEqual(echo.accepted, 4 + 4 * 15);
      assertEquals(running.settled(), false);
    } finally {
      await running.stop();
      closeAll(map);
      client.close();
      serverAc.abort();
      await withTimeout(server.finished, 5000, "Deno.serve to shut down");
    }
  },
);

leakTest("loopAsync: a setTimeout fires while it waits", async () => {
  const map: SocketMap = new Map();
  new EchoServer({ map });
  const running = start(map);
  try {
    for (const ms of [1, 20, 50]) {
      const t0 = performance.now();
      await delay(ms);
      const took = performance.now() - t0;
      assertGreaterOrEqual(took, ms - 1);
      assertLess(took, ms + 50 * TIME_SLACK, `setTimeout(${ms}) took ${took.toFixed(1)} ms`);
    }
    assertEquals(running.settled(), false, "loopAsync returned while the map was not empty");
  } finally {
    await running.stop();
    closeAll(map);
  }
});

for (const poller of POLLERS) {
  leakTest(
    `loopAsync(${poller}): abort stops a 30 s wait within 50 ms; resuming still serves`,
    async () => {
      const map: SocketMap = new Map();
      const echo = new EchoServer({ map });
      try {
        const first = start(map, { poller });
        await withTimeout(pingPong(echo.port, 3, 64, 1), 3000, "echo before abort");
        await delay(30); // let it settle into its 30 s wait
        const size = map.size;
        const t0 = performance.now();
        first.ac.abort();
        await withTimeout(first.done, 1000, "loopAsync to stop");
        const took = performance.now() - t0;
        assertLess(took, 50 * TIME_SLACK, `abort took ${took.toFixed(1)} ms`);
        assertEquals(map.size, size, "abort closed channels");
        assert(echo.fileno() !== null && echo.accepting);

        const second = start(map, { poller });
        try {
          await withTimeout(
            Promise.all([pingPong(echo.port, 5, 64, 2), pingPong(echo.port, 5, 3000, 3)]),
            3000,
            "echo after resuming",
          );
        } finally {
          await second.stop();
        }
      } finally {
        closeAll(map);
      }
    },
  );
}

leakTest("loopAsync: abort from a handler stops after that pass", async () => {
  const map: SocketMap = new Map();
  const ac = new AbortController();
  class Stopper extends Listener {
    override handleAccepted(sock: Socket): void {
      new EchoHandler(sock, this.map);
      ac.abort();
    }
  }
  const l = new Stopper({ map });
  const conn = await Deno.connect({ hostname: HOST, port: l.port });
  try {
    await withTimeout(loopAsync({ map, timeout: 30, signal: ac.signal }), 2000, "abort");
    assertEquals(map.size, 2, "the accepted channel stays");
  } finally {
    conn.close();
    closeAll(map);
  }
});

leakTest("loopAsync: abort before start resolves at once and runs no pass", async () => {
  const map: SocketMap = new Map();
  class Watched extends EchoServer {
    asked = 0;
    override readable(): boolean {
      this.asked++;
      return true;
    }
  }
  const l = new Watched({ map });
  try {
    const ac = new AbortController();
    ac.abort();
    for (const signal of [AbortSignal.abort(), ac.signal]) {
      const t0 = performance.now();
      await withTimeout(loopAsync({ map, timeout: 30, signal }), 1000, "pre-aborted loopAsync");
      assertLess(performance.now() - t0, 20 * TIME_SLACK);
    }
    assertEquals(l.asked, 0);
    assertEquals(map.size, 1);
    // It did not take the map: a real loop may start right after.
    await start(map).stop();
  } finally {
    closeAll(map);
  }
});

leakTest("loopAsync: count limits the passes, idle or busy", async () => {
  const map: SocketMap = new Map();
  new Listener({ map });
  // A pipe's write end is always writable: every pass calls handleWrite once.
  class Counter extends FileDispatcher {
    writes = 0;
    override readable(): boolean {
      return false;
    }
    override handleWrite(): void {
      this.writes++;
    }
  }
  const [r, w] = os.pipe();
  try {
    let t0 = performance.now();
    await withTimeout(loopAsync({ map, timeout: 30, count: 0 }), 1000, "count 0");
    assertLess(performance.now() - t0, 20 * TIME_SLACK);

    t0 = performance.now();
    await withTimeout(loopAsync({ map, timeout: 0.05, count: 3 }), 2000, "count 3, idle");
    const took = performance.now() - t0;
    assertGreaterOrEqual(took, 149, `3 idle passes of 50 ms took ${took.toFixed(1)} ms`);
    assertLess(took, 400);

    const c = new Counter(w, map);
    for (const poller of POLLERS) {
      c.writes = 0;
      await withTimeout(loopAsync({ map, timeout: 30, count: 7, poller }), 2000, "count 7, busy");
      assertEquals(c.writes, 7, poller);
    }
    c.writes = 0;
    await withTimeout(loopAsync({ map, timeout: 30, count: 2000 }), 5000, "count 2000, busy");
    assertEquals(c.writes, 2000);
  } finally {
    closeAll(map);
    os.close(r);
    os.close(w);
  }
  // FileDispatcher is Unix-only.
}, onWindows);

leakTest("loopAsync: resolves when the last channel closes itself", async () => {
  const map: SocketMap = new Map();
  // Serves one connection, then stops listening: the map empties when it ends.
  class OneShot extends Listener {
    override handleAccepted(sock: Socket): void {
      new EchoHandler(sock, this.map);
      this.close();
    }
  }
  const l = new OneShot({ map });
  try {
    const t0 = performance.now();
    const looping = loopAsync({ map, timeout: 30 });
    await withTimeout(pingPong(l.port, 5, 64, 7), 3000, "one-shot echo");
    await withTimeout(looping, 1000, "loopAsync to resolve on an empty map");
    assertEquals(map.size, 0);
    assertLess(performance.now() - t0, 1000);
  } finally {
    closeAll(map);
  }
});

for (const poller of POLLERS) {
  leakTest(
    `loopAsync(${poller}): resolves at once when the last channel is closed from outside`,
    async () => {
      const map: SocketMap = new Map();
      const a = new EchoServer({ map });
      const b = new EchoServer({ map });
      try {
        const looping = loopAsync({ map, timeout: 30, poller });
        await delay(20);
        a.close(); // one of two: it goes on
        await delay(20);
        await withTimeout(pingPong(b.port, 2, 64, 8), 2000, "echo on the remaining channel");
        await delay(30); // the handler has gone; the loop is back in its 30 s wait
        assertEquals(map.size, 1);
        const t0 = performance.now();
        b.close();
        await withTimeout(looping, 1000, "loopAsync to notice the empty map");
        const took = performance.now() - t0;
        assertLess(took, 50 * TIME_SLACK, `took ${took.toFixed(1)} ms to notice the empty map`);
      } finally {
        closeAll(map);
      }
    },
  );
}

Deno.test("loopAsync: resolves at once for an empty map", async () => {
  const map: SocketMap = new Map();
  const t0 = performance.now();
  await withTimeout(loopAsync({ map, timeout: 30 }), 1000, "empty map");
  assertLess(performance.now() - t0, 20 * TIME_SLACK);
});

for (const poller of POLLERS) {
  leakTest(
    `loopAsync(${poller}): a channel added from a setTimeout is served within 50 ms`,
    async () => {
      const map: SocketMap = new Map();
      new Listener({ map }); // idle: keeps the loop in its 30 s wait
      const running = start(map, { poller });
      try {
        await delay(30);
        const { promise: added, resolve } = Promise.withResolvers<[EchoServer, number]>();
        const timer = setTimeout(() => {
          const s = new EchoServer({ map });
          resolve([s, performance.now()]);
        }, 10);
        let server: EchoServer, addedAt: number;
        try {
          [server, addedAt] = await withTimeout(added, 1000, "the timer");
        } finally {
          clearTimeout(timer);
        }
        const conn = await Deno.connect({ hostname: HOST, port: server.port });
        try {
          const msg = randomBytes(64, 9);
          await writeAll(conn, msg);
          assertEquals(await withTimeout(readExactly(conn, 64), 1000, "echo reply"), msg);
          const replyAt = performance.now();
          assert(server.acceptedAt > 0);
          const took = server.acceptedAt - addedAt;
          // Under Wine the bound is wider, and still shows the wake-up (without it: 30 s).
          assertLess(took, 50 * TIME_SLACK, `accepted ${took.toFixed(1)} ms after it was added`);
          assertLess(replyAt - addedAt, 100 * TIME_SLACK);
        } finally {
          conn.close();
        }
        assertEquals(running.settled(), false);
      } finally {
        await running.stop();
        closeAll(map);
      }
    },
  );
}

for (const poller of POLLERS) {
  leakTest(
    `loopAsync(${poller}): data sent from outside the loop flows without waiting for the timeout`,
    async () => {
      const map: SocketMap = new Map();
      const handlers: DispatcherWithSend[] = [];
      // Reads and drops; only ever written to from outside the loop.
      class Sink extends DispatcherWithSend {
        override handleRead(): void {
          this.recv(65536);
        }
        override handleClose(): void {
          this.close();
        }
      }
      class SinkServer extends Listener {
        override handleAccepted(sock: Socket): void {
          handlers.push(new Sink(sock, this.map));
        }
      }
      const l = new SinkServer({ map });
      const running = start(map, { poller });
      const conn = await Deno.connect({ hostname: HOST, port: l.port });
      try {
        const deadline = performance.now() + 2000;
        while (handlers.length === 0 && performance.now() < deadline) await delay(2);
        assertEquals(handlers.length, 1, "not accepted");
        await delay(30); // the loop is back in its 30 s wait
        // More than the socket buffers hold: the rest waits in outBuffer for
        // POLLOUT, which the wait in progress was not asked to watch.
        const data = randomBytes(8 << 20, 50);
        const t0 = performance.now();
        const timer = setTimeout(() => handlers[0].send(data), 0);
        try {
          const back = await withTimeout(readExactly(conn, data.length), 5000, "8 MiB");
          assert(back.every((x, i) => x === data[i]), "the data came out changed");
        } finally {
          clearTimeout(timer);
        }
        assertLess(performance.now() - t0, 2000);
        assertEquals(handlers[0].outBuffer.length, 0);
      } finally {
        conn.close();
        await running.stop();
        closeAll(map);
      }
    },
  );
}

leakTest(
  "loopAsync: rejects with ExitNow thrown by a handler; the map can be served again",
  async () => {
    const map: SocketMap = new Map();
    class Bomb extends DispatcherWithSend {
      override handleRead(): void {
        const data = this.recv(100);
        if (data.length > 0) throw new ExitNow(`got ${data.length}`);
      }
    }
    class BombServer extends Listener {
      override handleAccepted(sock: Socket): void {
        new Bomb(sock, this.map);
      }
    }
    const l = new BombServer({ map });
    const conn = await Deno.connect({ hostname: HOST, port: l.port });
    try {
      const looping = loopAsync({ map, timeout: 30, poller: BEST_POLLER });
      await delay(20);
      await writeAll(conn, new Uint8Array(3));
      await withTimeout(
        assertRejects(() => looping, ExitNow, "got 3"),
        2000,
        "the ExitNow rejection",
      );
      assertEquals(map.size, 2, "ExitNow leaves the channels as they are");
      // No longer serving: a new loop may take the map.
      await start(map).stop();
    } finally {
      conn.close();
      closeAll(map);
    }
  },
);

leakTest(
  "loopAsync: a second loopAsync on the same map is refused; other maps are fine",
  async () => {
    const mapA: SocketMap = new Map();
    const mapB: SocketMap = new Map();
    const a = new EchoServer({ map: mapA });
    const b = new EchoServer({ map: mapB });
    const runA = start(mapA);
    try {
      await assertRejects(() => loopAsync({ map: mapA, timeout: 30 }), Error, "already serving");
      const runB = start(mapB, { poller: BEST_POLLER });
      try {
        await withTimeout(
          Promise.all([pingPong(a.port, 10, 64, 10), pingPong(b.port, 10, 64, 11)]),
          3000,
          "two maps served side by side",
        );
      } finally {
        await runB.stop();
      }
      assertEquals(runA.settled(), false, "the refused call must not stop the first loop");
    } finally {
      await runA.stop();
      closeAll(mapA);
      closeAll(mapB);
    }
    // Once stopped, the map is free again.
    const again = new EchoServer({ map: mapA });
    try {
      await start(mapA).stop();
    } finally {
      again.close();
    }
  },
);

Deno.test("loopAsync: invalid options reject", async () => {
  const map: SocketMap = new Map();
  await assertRejects(() => loopAsync({ map, timeout: -1 }), RangeError);
  await assertRejects(() => loopAsync({ map, count: 1.5 }), RangeError);
  await assertRejects(
    () => loopAsync({ map, poller: "kqueue" as unknown as PollerName }),
    RangeError,
  );
});

for (const poller of POLLERS) {
  leakTest(
    `loopAsync(${poller}): echoes small and large messages to concurrent clients`,
    async () => {
      const map: SocketMap = new Map();
      const echo = new EchoServer({ map });
      const running = start(map, { poller });
      try {
        const big = randomBytes(1 << 20, 42);
        const bigClient = async () => {
          const conn = await Deno.connect({ hostname: HOST, port: echo.port });
          try {
            // Write and read at once: the echo must buffer and wait for POLLOUT.
            const [, back] = await Promise.all([
              writeAll(conn, big),
              readExactly(conn, big.length),
            ]);
            assert(back.every((x, i) => x === big[i]), "1 MiB came back changed");
          } finally {
            conn.close();
          }
        };
        await withTimeout(
          Promise.all([
            bigClient(),
            ...[1, 2, 3, 4, 5].map((i) => pingPong(echo.port, 20, 1 + i * 200, 20 + i)),
          ]),
          10_000,
          `echo over ${poller}`,
        );
        // Handlers close as their peers go.
        const deadline = performance.now() + 2000;
        while (map.size > 1 && performance.now() < deadline) await delay(5);
        assertEquals(map.size, 1);
      } finally {
        await running.stop();
        closeAll(map);
      }
    },
  );
}

leakTest("loopAsync: Deno's timers keep running while the loop is busy", async () => {
  const map: SocketMap = new Map();
  // Always writable: every pass finds work, so only the yield every
  // YIELD_EVERY_MS lets Deno's event loop (and its timers) run.
  class Busy extends FileDispatcher {
    passes = 0;
    override readable(): boolean {
      return false;
    }
    override handleWrite(): void {
      this.passes++;
    }
  }
  const [r, w] = os.pipe();
  const busy = new Busy(w, map);
  const running = start(map);
  try {
    const gaps: number[] = [];
    // Up to 40 timers or 3 s: a longer window rides out a moment when
    // the machine is busy elsewhere (a GC, another process on the core).
    const until = performance.now() + 3000;
    while (gaps.length < 40 && performance.now() < until) {
      const t0 = performance.now();
      await withTimeout(delay(1), 2000, "setTimeout during a busy loop");
      gaps.push(performance.now() - t0);
    }
    gaps.sort((a, b) => a - b);
    const median = gaps[gaps.length >> 1];
    // Deno fires a due timer when its runtime next checks the clock, which
    // under constant wake-ups is not every yield. On a quiet machine this
    // gives 40 timers at a median of about one yield (5 ms); with the other
    // core saturated by another process it fell to 6 in 3 s. What must hold
    // everywhere is that the busy loop never starves Deno's timers.
    assertGreaterOrEqual(gaps.length, 3, `only ${gaps.length} setTimeout(1) in 3 s`);
    assertLess(median, 1000, `median setTimeout(1): ${median.toFixed(1)} ms`);
    assertGreaterOrEqual(busy.passes, 1000, "the loop was not busy");
    assertEquals(running.settled(), false);
  } finally {
    await running.stop();
    busy.close();
    closeAll(map);
    os.close(r);
    os.close(w);
  }
  // FileDispatcher is Unix-only.
}, onWindows);

for (const poller of POLLERS) {
  leakTest(
    `loopAsync(${poller}): idle CPU with a live listening channel is near zero`,
    async () => {
      const map: SocketMap = new Map();
      const echo = new EchoServer({ map });
      const running = start(map, { poller });
      try {
        await withTimeout(pingPong(echo.port, 2, 64, 30), 2000, "echo before idling");
        await delay(100);
        const wall0 = performance.now();
        const cpu0 = cpuSeconds();
        await delay(1200);
        const cpu = cpuSeconds() - cpu0;
        const wall = (performance.now() - wall0) / 1000;
        const share = cpu / wall;
        assertLess(share, 0.05, `idle loopAsync used ${(share * 100).toFixed(1)}% of a core`);
        assertEquals(running.settled(), false);
        // Still awake after idling.
        await withTimeout(pingPong(echo.port, 2, 64, 31), 2000, "echo after idling");
      } finally {
        await running.stop();
        closeAll(map);
      }
    },
  );
}
