// Loop objects: each owns its map, its timers and its runs. Two loops in one
// process, run in turn and as two concurrent runAsync() calls, never fire
// each other's timers or handlers; closing one leaves the other serving.
// The function forms keep running defaultLoop.
import { assert, assertEquals, assertRejects, assertThrows } from "@std/assert";
import {
  callLater,
  defaultLoop,
  Dispatcher,
  Loop,
  type Loop as LoopType,
  loop,
  type Socket,
  socketMap,
} from "../mod.ts";
import {
  assertNoFdLeak,
  concat,
  EchoClient,
  EchoServer,
  pendingTimers,
  POLLERS,
  randomBytes,
  sha256,
  withTimeout,
} from "./_util.ts";

/** An echo server on `lp` that counts the connections it accepted. */
function echoServer(lp: LoopType): EchoServer {
  return new EchoServer({ map: lp.map });
}

Deno.test("Loop: defaultLoop is the loop of socketMap and of the module-level timers", () => {
  assert(defaultLoop.map === socketMap);
  const before = pendingTimers();
  const t = callLater(10, () => {});
  assertEquals(pendingTimers(), before + 1);
  t.cancel();
  assertEquals(pendingTimers(), before);
  const own = new Loop();
  assert(own.map !== socketMap);
  const t2 = own.callLater(10, () => {});
  assertEquals(pendingTimers(), before, "another loop's timer is not the default loop's");
  t2.cancel();
});

Deno.test("Loop: bad options are clear errors", async () => {
  assertThrows(() => new Loop({ poller: "kqueue" as "epoll" }), RangeError, "poller");
  const lp = new Loop();
  assertThrows(() => lp.run({ timeout: -1 }), RangeError, "timeout");
  assertThrows(() => lp.run({ count: 1.5 }), RangeError, "count");
  await assertRejects(() => lp.runAsync({ timeout: -1 }), RangeError, "timeout");
  assertThrows(() => lp.callLater(-1, () => {}), RangeError);
  assertThrows(() => lp.callEvery(1, "x" as unknown as () => void), TypeError);
  lp.run(); // an empty map: returns at once
  lp.close();
});

for (const poller of POLLERS) {
  Deno.test(`Loop(${poller}): two loops run in turn: each runs only its own timers and channels`, () =>
    assertNoFdLeak(async () => {
      const a = new Loop({ poller }), b = new Loop({ poller });
      const sa = echoServer(a), sb = echoServer(b);
      const fired: string[] = [];
      a.callLater(0, () => fired.push("a"));
      b.callLater(0, () => fired.push("b"));
      const payload = randomBytes(200_000, 3);
      const ca = new EchoClient({ map: a.map, addr: ["127.0.0.1", sa.port], payload });
      const cb = new EchoClient({ map: b.map, addr: ["127.0.0.1", sb.port], payload });
      // a runs until its client is done: b's client must not move meanwhile.
      for (let i = 0; i < 10_000 && !ca.done; i++) a.run({ timeout: 0.01, count: 1 });
      assert(ca.done, "a's client finished");
      assertEquals(fired, ["a"], "only a's timer fired in a's runs");
      assertEquals([sa.accepted, sb.accepted, cb.received], [1, 0, 0]);
      for (let i = 0; i < 10_000 && !cb.done; i++) b.run({ timeout: 0.01, count: 1 });
      assert(cb.done, "b's client finished");
      assertEquals(fired, ["a", "b"]);
      await ca.verify();
      await cb.verify();
      a.close();
      b.close();
      assertEquals([a.map.size, b.map.size], [0, 0]);
    }));

  Deno.test(`Loop(${poller}): two concurrent runAsync(); closing one leaves the other serving`, () =>
    assertNoFdLeak(async () => {
      const a = new Loop({ poller }), b = new Loop({ poller });
      const sa = echoServer(a), sb = echoServer(b);
      const portA = sa.port;
      const ticks = { a: 0, b: 0 };
      a.callEvery(0.005, () => ticks.a++);
      b.callEvery(0.005, () => ticks.b++);
      const stopA = new AbortController(), stopB = new AbortController();
      const runA = a.runAsync({ timeout: 0.05, signal: stopA.signal });
      const runB = b.runAsync({ timeout: 0.05, signal: stopB.signal });
      try {
        // Deno's own client talks to both servers while both loops run.
        const roundTrip = async (port: number, data: Uint8Array) => {
          const conn = await Deno.connect({ hostname: "127.0.0.1", port });
          const parts: Uint8Array[] = [];
          let got = 0;
          const reading = (async () => {
            const buf = new Uint8Array(65536);
            while (got < data.length) {
              const n = await conn.read(buf);
              if (n === null) break;
              parts.push(buf.slice(0, n));
              got += n;
            }
          })();
          for (let off = 0; off < data.length;) off += await conn.write(data.subarray(off));
          await reading;
          conn.close();
          return await sha256(concat(parts));
        };
        const data = randomBytes(300_000, 5);
        const want = await sha256(data);
        const [ha, hb] = await withTimeout(
          Promise.all([roundTrip(sa.port, data), roundTrip(sb.port, data)]),
          20_000,
          "both loops echo",
        );
        assertEquals([ha, hb], [want, want]);
        // The echoes may finish before a 5 ms tick is due: give the timers their time.
        for (let i = 0; i < 100 && !(ticks.a > 0 && ticks.b > 0); i++) {
          await new Promise((r) => setTimeout(r, 10));
        }
        assert(ticks.a > 0 && ticks.b > 0, `both loops ran their timers: ${JSON.stringify(ticks)}`);

        // Closing a: its run ends (its map is empty), its timers stop; b goes on.
        a.close();
        await withTimeout(runA, 5000, "a's run ends once a is closed");
        const aTicks = ticks.a, bTicks = ticks.b;
        assertEquals(await withTimeout(roundTrip(sb.port, data), 20_000, "b still echoes"), want);
        await new Promise((r) => setTimeout(r, 50));
        assertEquals(ticks.a, aTicks, "a's timers stopped with it");
        assert(ticks.b > bTicks, "b's timers go on");
        await assertRejects(
          () => withTimeout(roundTrip(portA, data), 2000, "a is closed"),
          Error,
        );
      } finally {
        stopA.abort();
        stopB.abort();
        await runA;
        await runB;
        a.close();
        b.close();
      }
    }));
}

Deno.test("Loop: a handler of one loop that throws goes to its handleError; the other loop serves on", () =>
  assertNoFdLeak(() => {
    const a = new Loop(), b = new Loop();
    const errors: unknown[] = [];
    class Boom extends Dispatcher {
      override handleAccepted(sock: Socket): void {
        sock.close();
        throw new Error("boom");
      }
      override handleError(error: unknown): void {
        errors.push(error);
      }
    }
    const boom = new Boom(null, a.map);
    boom.createSocket();
    boom.bind(["127.0.0.1", 0]);
    boom.listen(5);
    const sb = echoServer(b);
    const port = (boom.sock.getsockname() as [string, number])[1];
    const c1 = new EchoClient({
      map: a.map,
      addr: ["127.0.0.1", port],
      payload: new Uint8Array(10),
    });
    const payload = randomBytes(1000, 9);
    const c2 = new EchoClient({ map: b.map, addr: ["127.0.0.1", sb.port], payload });
    for (let i = 0; i < 1000 && errors.length === 0; i++) a.run({ timeout: 0.01, count: 1 });
    assertEquals(errors.length, 1);
    for (let i = 0; i < 1000 && !c2.done; i++) b.run({ timeout: 0.01, count: 1 });
    assert(c2.done);
    c1.close();
    a.close();
    b.close();
  }));

Deno.test("Loop: loop({ map: someLoop.map }) runs that loop's timers, not the default's", () => {
  const lp = new Loop();
  const server = echoServer(lp);
  let own = 0, dflt = 0;
  lp.callLater(0, () => own++);
  const t = callLater(0, () => dflt++);
  loop({ map: lp.map, timeout: 0.01, count: 2 });
  t.cancel();
  assertEquals([own, dflt], [1, 0]);
  server.close();
  lp.close();
});
