// The streams' loop: they run on the default loop's background run without a
// call from the program; a program's own loopAsync (on every poller), started
// before or after them, serves them instead and hands back when it ends; a
// program that only awaits accept() stays alive, one that closed everything
// exits.
import { assert, assertEquals } from "@std/assert";
import { connect, Dispatcher, listen, loopAsync, socketMap } from "../mod.ts";
import {
  loopServing,
  loopSettled,
  portOf,
  readAll,
  servedInBackground,
  writePieces,
} from "./_streams.ts";
import { delay, leakTest, POLLERS, randomBytes, sha256, withTimeout } from "./_util.ts";

const ROOT = new URL("..", import.meta.url).pathname;

/** Echoes through a fresh connection to `port`: the hash of what came back. */
async function echoThrough(port: number, data: Uint8Array, seed: number): Promise<string> {
  const conn = await connect({ hostname: "127.0.0.1", port });
  const [, back] = await Promise.all([
    writePieces(conn.writable, data, seed),
    readAll(conn.readable),
  ]);
  return await sha256(back);
}

for (const poller of POLLERS) {
  leakTest(
    `streams: a loopAsync({ poller: "${poller}" }) started after them serves them`,
    async () => {
      const listener = listen({ hostname: "127.0.0.1", port: 0 });
      const serving = (async () => {
        for await (const conn of listener) conn.readable.pipeTo(conn.writable).catch(() => {});
      })();
      const data = randomBytes(1024 * 1024, 41);
      const want = await sha256(data);
      assertEquals(await echoThrough(portOf(listener), data, 1), want);
      assert(servedInBackground());
      const stop = new AbortController();
      const run = loopAsync({ poller, signal: stop.signal, timeout: null });
      await delay(20);
      assert(loopServing() && !servedInBackground(), "the program's run took over");
      assertEquals(await echoThrough(portOf(listener), data, 2), want);
      assert(!servedInBackground());
      stop.abort();
      await withTimeout(run, 5000, "the program's run to stop");
      // The background run comes back for the streams still open.
      await delay(20);
      assert(servedInBackground(), "the background run came back");
      assertEquals(await echoThrough(portOf(listener), data, 3), want);
      listener.close();
      await withTimeout(serving, 5000, "the listener's loop");
      await loopSettled();
    },
  );
}

leakTest(
  "streams: a loopAsync started before them serves them; none starts beside it",
  async () => {
    // The program's own channel keeps its run going.
    class Idle extends Dispatcher {
      override readable(): boolean {
        return false;
      }
      override writable(): boolean {
        return false;
      }
    }
    const idle = new Idle();
    idle.createSocket();
    const stop = new AbortController();
    const run = loopAsync({ poller: "poll", signal: stop.signal, timeout: null });
    await delay(20);
    assert(loopServing() && !servedInBackground());
    const listener = listen({ hostname: "127.0.0.1", port: 0 });
    const serving = (async () => {
      for await (const conn of listener) conn.readable.pipeTo(conn.writable).catch(() => {});
    })();
    const data = randomBytes(512 * 1024, 42);
    assertEquals(await echoThrough(portOf(listener), data, 4), await sha256(data));
    assert(!servedInBackground(), "a background run started beside the program's");
    listener.close();
    await withTimeout(serving, 5000, "the listener's loop");
    idle.close();
    // The map is empty: the program's run ends by itself, and no background run follows.
    await withTimeout(run, 5000, "the program's run to end");
    await loopSettled();
    assertEquals(socketMap.size, 0);
  },
);

leakTest("streams: connecting again right after the last connection closed", async () => {
  // The background run ends with the map; a connection made in the same moment starts it again.
  const deno = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const answering = (async () => {
    for await (const c of deno) {
      await c.write(new Uint8Array([1, 2, 3]));
      c.close();
    }
  })().catch(() => {});
  for (let i = 0; i < 100; i++) {
    const c = await withTimeout(
      connect({ hostname: "127.0.0.1", port: deno.addr.port }),
      5000,
      `connection ${i}`,
    );
    assertEquals((await readAll(c.readable, 5000)).length, 3);
    c.close();
  }
  deno.close();
  await answering;
  await loopSettled();
});

leakTest("streams: a listener made as the last connection ends is served", async () => {
  // The background run's last pass closes the last channel; a promise reaction of that pass
  // (before the run has ended) makes a listener: the run starts again for it.
  const deno = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const answering = (async () => {
    const c = await deno.accept();
    await c.write(new Uint8Array([1]));
    await delay(200); // the end of stream comes in a pass of its own
    c.close();
  })();
  const conn = await connect({ hostname: "127.0.0.1", port: deno.addr.port });
  const reader = conn.readable.getReader();
  await reader.read();
  let listener: ReturnType<typeof listen> | undefined;
  const ended = reader.read().then(() => {
    listener = listen({ hostname: "127.0.0.1", port: 0 });
  });
  await conn.closeWrite(); // the write side is done: the end of stream closes the channel
  await withTimeout(ended, 5000, "the end of stream");
  const accepted = listener!.accept();
  const client = await Deno.connect({ hostname: "127.0.0.1", port: portOf(listener!) });
  const server = await withTimeout(accepted, 5000, "accept() on the new listener");
  server.close();
  client.close();
  listener!.close();
  await answering;
  deno.close();
  await loopSettled();
});

/** Runs a Deno program with `--allow-ffi`; returns the child. */
function program(code: string): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["eval", "--quiet", code],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

Deno.test("streams: a program that only awaits accept() stays alive", async () => {
  const child = program(`
    import { listen } from "./mod.ts";
    const l = listen({ hostname: "127.0.0.1", port: 0 });
    console.log("listening");
    await l.accept();
    console.log("accepted");
  `);
  const status = child.status;
  const alive = await Promise.race([status.then(() => false), delay(2500).then(() => true)]);
  child.kill("SIGKILL");
  const out = await child.output();
  const text = new TextDecoder().decode(out.stdout);
  assert(alive, `it exited: ${text} ${new TextDecoder().decode(out.stderr)}`);
  assertEquals(text, "listening\n");
});

Deno.test("streams: a program that closed everything exits by itself", async () => {
  const child = program(`
    import { connect, listen } from "./mod.ts";
    const l = listen({ hostname: "127.0.0.1", port: 0 });
    const accepted = l.accept();
    const c = await connect({ hostname: "127.0.0.1", port: l.addr[1] });
    const s = await accepted;
    const w = c.writable.getWriter();
    await w.write(new Uint8Array([104, 105]));
    await w.close();
    for await (const chunk of s.readable) console.log(new TextDecoder().decode(chunk));
    s.close();
    c.close();
    l.close();
    console.log("closed");
  `);
  const out = await withTimeout(child.output(), 20_000, "the program to exit");
  assertEquals(new TextDecoder().decode(out.stdout), "hi\nclosed\n");
  assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
});
