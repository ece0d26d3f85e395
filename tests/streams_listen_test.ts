// listen() beyond the plain case: the PROXY protocol passed through (a raw
// v1 header, python behind a v2 header with TLS after it, HAProxy in front),
// SO_REUSEPORT, IPv6, the bound on connections accepted ahead of accept(),
// and a write to a peer that went away.
import { assert, assertEquals, assertRejects } from "@std/assert";
import { ACCEPT_BATCH, connect, listen, OSError, socketMap } from "../mod.ts";
import { ACCEPT_AHEAD } from "../streams/listener.ts";
import { acceptOne, loopSettled, portOf, readAll, readExactly } from "./_streams.ts";
import {
  delay,
  hasCommand,
  hasIPv6,
  leakTest,
  python,
  randomBytes,
  sha256,
  withTimeout,
} from "./_util.ts";
import { proxyClient, startHaproxy, v1, v2 } from "./fixtures/proxy.ts";
import { freePort } from "./fixtures/subprocess.ts";
import { serverContext, tlsCerts } from "./fixtures/tls_certs.ts";

const encoder = new TextEncoder();

/** Echoes every connection of `listener`, recording each one's remote address. */
function echoRecording(listener: ReturnType<typeof listen>, seen: unknown[]): Promise<void> {
  return (async () => {
    for await (const conn of listener) {
      seen.push(conn.remoteAddr);
      conn.readable.pipeTo(conn.writable).catch(() => {});
    }
  })();
}

leakTest(
  "streams listen: proxyProtocol v1 gives the client's address; the data follows",
  async () => {
    const listener = listen({ hostname: "127.0.0.1", port: 0, proxyProtocol: "v1" });
    const accepted = acceptOne(listener);
    const client = await Deno.connect({ hostname: "127.0.0.1", port: portOf(listener) });
    const header = v1("TCP4 192.0.2.7 198.51.100.1 40123 443");
    const payload = encoder.encode("hello after the header");
    const both = new Uint8Array(header.length + payload.length);
    both.set(header);
    both.set(payload, header.length);
    await client.write(both); // header and data in one segment: the data must not be lost
    const conn = await accepted;
    assertEquals(conn.remoteAddr, ["192.0.2.7", 40123]);
    const got = await readExactly(conn.readable.getReader(), payload.length);
    assertEquals(got, payload);
    client.close();
    conn.close();
    listener.close();
    await loopSettled();
  },
);

leakTest(
  "streams listen: proxyProtocol any with TLS after a v2 header (python clients)",
  async () => {
    const certs = await tlsCerts();
    const listener = listen({
      hostname: "127.0.0.1",
      port: 0,
      tls: serverContext(certs),
      proxyProtocol: "any",
    });
    const seen: unknown[] = [];
    const serving = echoRecording(listener, seen);
    const results = await proxyClient(python!, "127.0.0.1", portOf(listener), 300_000, {
      header: v2(),
      tlsCa: certs.ca,
      clients: 3,
    });
    for (const r of results) {
      assert(!r.error, r.error);
      assertEquals([r.got, r.gotSha], [r.sent, r.sentSha]);
    }
    assertEquals(seen, [["127.0.0.9", 40001], ["127.0.0.9", 40001], ["127.0.0.9", 40001]]);
    listener.close();
    await withTimeout(serving, 5000, "the listener's loop");
    await loopSettled();
  },
  python === null,
);

leakTest(
  "streams listen: behind HAProxy (send-proxy-v2), remoteAddr is the real client",
  async () => {
    const listener = listen({ hostname: "127.0.0.1", port: 0, proxyProtocol: "v2" });
    const seen: unknown[] = [];
    const serving = echoRecording(listener, seen);
    const front = freePort();
    await using _haproxy = await startHaproxy({
      bind: `127.0.0.1:${front}`,
      backend: portOf(listener),
      serverOptions: "send-proxy-v2",
    });
    const conn = await connect({ hostname: "127.0.0.1", port: front });
    const data = randomBytes(500_000, 51);
    const writer = conn.writable.getWriter();
    const [, back] = await Promise.all([
      (async () => {
        await writer.write(data);
        await writer.close();
      })(),
      readAll(conn.readable),
    ]);
    assertEquals(await sha256(back), await sha256(data));
    assertEquals(seen, [conn.localAddr]);
    conn.close();
    listener.close();
    await withTimeout(serving, 5000, "the listener's loop");
    await loopSettled();
  },
  !hasCommand("haproxy"),
);

leakTest("streams listen: reusePort lets two listeners share a port", async () => {
  const a = listen({ hostname: "127.0.0.1", port: 0, reusePort: true });
  const b = listen({ hostname: "127.0.0.1", port: portOf(a), reusePort: true });
  assertEquals(portOf(a), portOf(b));
  a.close();
  b.close();
  await loopSettled();
});

leakTest("streams listen: IPv6", async () => {
  const listener = listen({ hostname: "::1", port: 0 });
  const accepted = acceptOne(listener);
  const conn = await connect({ hostname: "::1", port: portOf(listener) });
  const server = await accepted;
  assertEquals((server.remoteAddr as unknown[])[0], "::1");
  const w = conn.writable.getWriter();
  await w.write(encoder.encode("v6"));
  await w.close();
  assertEquals(new TextDecoder().decode(await readAll(server.readable)), "v6");
  server.close();
  conn.close();
  listener.close();
  await loopSettled();
}, !hasIPv6);

leakTest("streams listen: connections accepted ahead of accept() are bounded", async () => {
  const listener = listen({ hostname: "127.0.0.1", port: 0 });
  const N = 200;
  const clients = await Promise.all(
    Array.from(
      { length: N },
      () => Deno.connect({ hostname: "127.0.0.1", port: portOf(listener) }),
    ),
  );
  await delay(500);
  // The rest wait in the kernel's backlog.
  assert(
    socketMap.size <= 1 + ACCEPT_AHEAD + ACCEPT_BATCH,
    `${socketMap.size - 1} connections accepted with nobody calling accept()`,
  );
  const conns = [];
  for (let i = 0; i < N; i++) conns.push(await acceptOne(listener));
  assertEquals(conns.length, N);
  for (const c of conns) c.close();
  for (const c of clients) c.close();
  listener.close();
  await loopSettled();
});

leakTest("streams listen: writing to a peer that went away rejects with OSError", async () => {
  const listener = listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = acceptOne(listener);
  const peer = await Deno.connect({ hostname: "127.0.0.1", port: portOf(listener) });
  const conn = await accepted;
  peer.close();
  const writer = conn.writable.getWriter();
  const chunk = new Uint8Array(64 * 1024);
  const e = await assertRejects(
    () =>
      withTimeout(
        (async () => {
          for (;;) {
            await writer.write(chunk);
            await delay(5);
          }
        })(),
        10_000,
        "a write to fail",
      ),
    OSError,
  );
  assert(["EPIPE", "ECONNRESET"].includes(e.code), e.code);
  // The peer's end of stream reads as such.
  assertEquals((await readAll(conn.readable)).length, 0);
  conn.close();
  listener.close();
  await loopSettled();
});
