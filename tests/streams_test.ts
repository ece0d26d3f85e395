// connect/listen/Conn/Listener: echo over TCP and Unix sockets with hashed
// data, against Deno's own networking both ways, the listener's end under
// `for await`, `await using`, and the errors of bad options and refused
// connections. The streams run on the default loop's background run: each
// test waits for it to end (no async op left behind) and leaves no fd.
import { assert, assertEquals, assertInstanceOf, assertRejects } from "@std/assert";
import { type Conn, connect, listen, OSError, socketMap } from "../mod.ts";
import {
  acceptOne,
  loopSettled,
  portOf,
  readAll,
  readExactly,
  servedInBackground,
  writePieces,
} from "./_streams.ts";
import { leakTest, randomBytes, sha256, tempSocketPath, withTimeout } from "./_util.ts";

const SIZE = 4 * 1024 * 1024;

/** Echoes every connection of `listener` with pipeTo until the listener closes. */
async function echoAll(listener: ReturnType<typeof listen>): Promise<void> {
  const pipes: Promise<void>[] = [];
  for await (const conn of listener) pipes.push(conn.readable.pipeTo(conn.writable));
  await Promise.all(pipes);
}

/** Sends `data` through an echo at `conn` in seeded pieces; returns what came back. */
async function roundTrip(conn: Conn, data: Uint8Array, seed: number): Promise<Uint8Array> {
  const [, back] = await Promise.all([
    writePieces(conn.writable, data, seed),
    readAll(conn.readable),
  ]);
  return back;
}

leakTest("streams: TCP echo through listen() and connect(), 4 MiB both ways, hashed", async () => {
  const listener = listen({ hostname: "127.0.0.1", port: 0 });
  const serving = echoAll(listener);
  const data = randomBytes(SIZE, 11);
  const conns = await Promise.all(
    [1, 2, 3].map(() => connect({ hostname: "127.0.0.1", port: portOf(listener) })),
  );
  assert(servedInBackground(), "the streams run on the default loop's background run");
  const backs = await Promise.all(conns.map((c, i) => roundTrip(c, data, 100 + i)));
  for (const back of backs) assertEquals(await sha256(back), await sha256(data));
  listener.close();
  await withTimeout(serving, 10_000, "the echo pipes to end");
  await loopSettled();
  assertEquals(socketMap.size, 0);
});

leakTest("streams: the addresses of both ends", async () => {
  const listener = listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = acceptOne(listener);
  const client = await connect({ port: portOf(listener) }); // hostname defaults to 127.0.0.1
  const server = await accepted;
  assertEquals(client.remoteAddr, ["127.0.0.1", portOf(listener)]);
  assertEquals(server.remoteAddr, client.localAddr);
  assertEquals(server.localAddr, client.remoteAddr);
  client.close();
  server.close();
  listener.close();
  await loopSettled();
});

leakTest("streams: Unix socket echo, hashed", async () => {
  const path = tempSocketPath("streams");
  const listener = listen({ path, transport: "unix" });
  assertEquals(listener.addr, path);
  const serving = echoAll(listener);
  const data = randomBytes(SIZE, 12);
  const conn = await connect({ path, transport: "unix" });
  assertEquals(conn.remoteAddr, path);
  assertEquals(await sha256(await roundTrip(conn, data, 7)), await sha256(data));
  listener.close();
  await withTimeout(serving, 10_000, "the echo pipe to end");
  await loopSettled();
  await Deno.remove(path.slice(0, path.lastIndexOf("/")), { recursive: true });
});

leakTest("streams: Deno.connect against listen(), hashed", async () => {
  const listener = listen({ hostname: "127.0.0.1", port: 0 });
  const serving = echoAll(listener);
  const data = randomBytes(SIZE, 13);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: portOf(listener) });
  const [, back] = await Promise.all([
    (async () => {
      await writePieces(conn.writable, data, 5, false);
      await conn.closeWrite();
    })(),
    readAll(conn.readable),
  ]);
  assertEquals(await sha256(back), await sha256(data));
  listener.close();
  await withTimeout(serving, 10_000, "the echo pipe to end");
  await loopSettled();
});

leakTest("streams: connect() against Deno.listen, hashed", async () => {
  const deno = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served = (async () => {
    const c = await deno.accept();
    await c.readable.pipeTo(c.writable);
  })();
  const data = randomBytes(SIZE, 14);
  const conn = await connect({ hostname: "127.0.0.1", port: deno.addr.port });
  assertEquals(await sha256(await roundTrip(conn, data, 9)), await sha256(data));
  await withTimeout(served, 10_000, "Deno's pipe to end");
  deno.close();
  await loopSettled();
});

leakTest(
  "streams: closing the listener ends `for await` cleanly and rejects accept()",
  async () => {
    const listener = listen({ hostname: "127.0.0.1", port: 0 });
    const seen: Conn[] = [];
    const looping = (async () => {
      for await (const conn of listener) {
        seen.push(conn);
        conn.close();
      }
    })();
    const c = await connect({ hostname: "127.0.0.1", port: portOf(listener) });
    await withTimeout(
      (async () => {
        while (seen.length === 0) await new Promise((r) => setTimeout(r, 5));
      })(),
      10_000,
      "the loop to see a connection",
    );
    const second = listen({ hostname: "127.0.0.1", port: 0 });
    const pending = second.accept();
    listener.close();
    second.close();
    await withTimeout(looping, 5000, "for await to end"); // no error
    const e = await assertRejects(() => pending, OSError);
    assertEquals(e.code, "EBADF");
    await assertRejects(() => listener.accept(), OSError);
    c.close();
    await loopSettled();
  },
);

leakTest("streams: leaving `for await` with break closes the listener", async () => {
  const listener = listen({ hostname: "127.0.0.1", port: 0 });
  const port = portOf(listener);
  const client = connect({ hostname: "127.0.0.1", port });
  for await (const conn of listener) {
    conn.close();
    break;
  }
  (await client).close();
  await assertRejects(() => listener.accept(), OSError);
  await assertRejects(() => connect({ hostname: "127.0.0.1", port }), OSError);
  await loopSettled();
});

leakTest("streams: an exception in the `for await` body closes the listener", async () => {
  const listener = listen({ hostname: "127.0.0.1", port: 0 });
  const port = portOf(listener);
  const client = connect({ hostname: "127.0.0.1", port });
  await assertRejects(
    async () => {
      for await (const conn of listener) {
        conn.close();
        throw new Error("in the body");
      }
    },
    Error,
    "in the body",
  );
  (await client).close();
  await assertRejects(() => listener.accept(), OSError);
  await loopSettled();
});

leakTest("streams: `await using` sends what is queued, then closes", async () => {
  const deno = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const data = randomBytes(SIZE, 15);
  const received = (async () => {
    const c = await deno.accept();
    return await readAll(c.readable);
  })();
  {
    await using conn = await connect({ hostname: "127.0.0.1", port: deno.addr.port });
    const writer = conn.writable.getWriter();
    await writer.write(data); // resolves with up to 64 KiB still queued
    writer.releaseLock();
  }
  assertEquals(await sha256(await received), await sha256(data));
  deno.close();
  {
    await using listener = listen({ hostname: "127.0.0.1", port: 0 });
    assert(portOf(listener) > 0);
  }
  await loopSettled();
});

leakTest(
  "streams: close() drops the queue; the streams and later writes reject EBADF",
  async () => {
    const listener = listen({ hostname: "127.0.0.1", port: 0 });
    const accepted = acceptOne(listener);
    const conn = await connect({ hostname: "127.0.0.1", port: portOf(listener) });
    const server = await accepted;
    const reader = conn.readable.getReader();
    const read = reader.read();
    conn.close();
    const e = await assertRejects(() => read, OSError);
    assertEquals(e.code, "EBADF");
    await assertRejects(() => conn.writable.getWriter().write(new Uint8Array(1)), OSError);
    conn.close(); // twice is fine
    // The server sees the end of stream.
    assertEquals((await readAll(server.readable)).length, 0);
    server.close();
    listener.close();
    await loopSettled();
  },
);

leakTest("streams: a refused connection rejects with OSError ECONNREFUSED", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = l.addr.port;
  l.close();
  const e = await assertRejects(() => connect({ hostname: "127.0.0.1", port }), OSError);
  assertEquals(e.code, "ECONNREFUSED");
  const u = await assertRejects(
    () => connect({ path: "/nonexistent/asyncore.sock", transport: "unix" }),
    OSError,
  );
  assertEquals(u.code, "ENOENT");
  await loopSettled();
});

leakTest("streams: bad options are TypeError, out-of-range values RangeError", async () => {
  const cases: [unknown, ErrorConstructor][] = [
    [null, TypeError],
    [{ port: "80" }, TypeError],
    [{ port: 0 }, RangeError],
    [{ port: 65536 }, RangeError],
    [{ port: 1.5 }, RangeError],
    [{ port: 80, hostname: 1 }, TypeError],
    [{ port: 80, transport: "udp" }, RangeError],
    [{ transport: "unix" }, TypeError],
    [{ port: 80, tls: {} }, TypeError],
  ];
  for (const [options, Type] of cases) {
    // deno-lint-ignore no-explicit-any
    await assertRejects(() => connect(options as any), Type, undefined, JSON.stringify(options));
  }
  const listenCases: [unknown, ErrorConstructor][] = [
    [undefined, TypeError],
    [{ port: -1 }, RangeError],
    [{ port: 0, backlog: -1 }, RangeError],
    [{ port: 0, backlog: "1" }, TypeError],
    [{ port: 0, reusePort: 1 }, TypeError],
    [{ port: 0, proxyProtocol: "v3" }, RangeError],
    [{ path: "", transport: "unix" }, RangeError],
  ];
  for (const [options, Type] of listenCases) {
    let thrown: unknown;
    try {
      // deno-lint-ignore no-explicit-any
      listen(options as any).close();
    } catch (error) {
      thrown = error;
    }
    assertInstanceOf(thrown, Type, JSON.stringify(options));
  }
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const e = (() => {
    try {
      listen({ hostname: "127.0.0.1", port: l.addr.port });
    } catch (error) {
      return error;
    }
  })();
  assertInstanceOf(e, OSError);
  assertEquals(e.code, "EADDRINUSE");
  l.close();
  await loopSettled();
  assertEquals(socketMap.size, 0);
});

leakTest("streams: a write of a non-Uint8Array is a TypeError", async () => {
  const listener = listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = acceptOne(listener);
  const conn = await connect({ hostname: "127.0.0.1", port: portOf(listener) });
  const writer = conn.writable.getWriter();
  // deno-lint-ignore no-explicit-any
  await assertRejects(() => writer.write("text" as any), TypeError);
  conn.close();
  (await accepted).close();
  listener.close();
  await loopSettled();
});

leakTest("streams: BYOB reads land in the reader's buffer", async () => {
  const listener = listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = acceptOne(listener);
  const conn = await connect({ hostname: "127.0.0.1", port: portOf(listener) });
  const server = await accepted;
  const data = randomBytes(100_000, 16);
  const writing = writePieces(server.writable, data, 3);
  const reader = conn.readable.getReader({ mode: "byob" });
  const parts: Uint8Array[] = [];
  let got = 0;
  for (;;) {
    const { value, done } = await withTimeout(reader.read(new Uint8Array(777)), 10_000, "read");
    if (done) break;
    assert(value.length <= 777);
    parts.push(value);
    got += value.length;
  }
  await writing;
  assertEquals(got, data.length);
  const back = new Uint8Array(got);
  let o = 0;
  for (const p of parts) {
    back.set(p, o);
    o += p.length;
  }
  assertEquals(await sha256(back), await sha256(data));
  conn.close();
  listener.close();
  await loopSettled();
});

leakTest("streams: readExactly across many small writes keeps order", async () => {
  const listener = listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = acceptOne(listener);
  const conn = await connect({ hostname: "127.0.0.1", port: portOf(listener) });
  const server = await accepted;
  const writer = server.writable.getWriter();
  const expect: number[] = [];
  for (let i = 0; i < 5000; i++) {
    expect.push(i & 0xff);
    await writer.write(new Uint8Array([i & 0xff]));
  }
  const got = await readExactly(conn.readable.getReader(), 5000);
  assertEquals([...got], expect);
  conn.close();
  server.close();
  listener.close();
  await loopSettled();
});
