// Stopping the synchronous loop on a real signal (loop({ stopSignals })),
// in this process and in the examples run as subprocesses.
import { assert, assertEquals, assertInstanceOf, assertMatch, assertThrows } from "@std/assert";
import {
  callLater,
  Dispatcher,
  KeyboardInterrupt,
  loop,
  loopAsync,
  type LoopOptions,
  type SocketMap,
} from "../mod.ts";
import { assertNoFdLeak, delay, POLLERS } from "./_util.ts";
import { spawn, type Spawned } from "./fixtures/subprocess.ts";

const root = new URL("..", import.meta.url).pathname;

/** A listening channel in `map`, so the loop has something to wait on. */
function listener(map: SocketMap): Dispatcher {
  const d = new Dispatcher(null, map);
  d.createSocket();
  d.bind(["127.0.0.1", 0]);
  d.listen(5);
  return d;
}

/** Has `kill(1)` send `sig` to this process after `seconds`, from another process. */
function killLater(sig: string, seconds: number): Deno.ChildProcess {
  return new Deno.Command("sh", {
    args: ["-c", `sleep ${seconds}; kill -${sig} ${Deno.pid}`],
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
  }).spawn();
}

/** Runs `loop` with a 30 s wait and returns what it threw and how long it ran. */
function loopUntilThrown(options: LoopOptions): [unknown, number] {
  const start = performance.now();
  try {
    loop({ timeout: 30, ...options });
  } catch (error) {
    return [error, performance.now() - start];
  }
  return [null, performance.now() - start];
}

for (const poller of POLLERS) {
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    Deno.test(`signals: kill -${sig} during the wait stops loop() with KeyboardInterrupt (${poller})`, async () => {
      await assertNoFdLeak(async () => {
        const map: SocketMap = new Map();
        const d = listener(map);
        const killer = killLater(sig.slice(3), 0.3);
        const [error, ms] = loopUntilThrown({ map, poller, stopSignals: ["SIGINT", "SIGTERM"] });
        assertEquals((await killer.status).code, 0);
        assertInstanceOf(error, KeyboardInterrupt);
        assertEquals(error.signal, sig);
        // Far below the 30 s wait: the signal ended it (a loaded machine gets seconds of slack).
        assert(ms < 10_000, `loop() took ${ms} ms`);
        assertEquals(map.size, 1); // the channels stay for the cleanup to close
        d.close();
      });
    });
  }
}

for (const poller of POLLERS) {
  Deno.test(`signals: with stopSignals armed, another signal (SIGUSR1) neither stops nor shortens a pass (${poller})`, async () => {
    let usr1 = 0;
    const onUsr1 = () => usr1++;
    Deno.addSignalListener("SIGUSR1", onUsr1);
    try {
      await assertNoFdLeak(async () => {
        const map: SocketMap = new Map();
        const d = listener(map);
        const killer = killLater("USR1", 0.2);
        const start = performance.now();
        // One pass of 1 s: the signal, and the slices the wait is cut into here, must not end it.
        loop({ map, poller, timeout: 1, count: 1, stopSignals: ["SIGINT", "SIGTERM"] });
        const ms = performance.now() - start;
        await killer.status;
        assert(ms >= 950, `the pass ended after ${ms} ms`);
        d.close();
        for (let i = 0; i < 500 && usr1 === 0; i++) await delay(10);
        assertEquals(usr1, 1, "the SIGUSR1 listener ran once the loop returned");
      });
    } finally {
      Deno.removeSignalListener("SIGUSR1", onUsr1);
    }
  });
}

Deno.test("signals: a signal that arrives while a handler runs stops the loop after that pass", async () => {
  await assertNoFdLeak(() => {
    const map: SocketMap = new Map();
    const d = listener(map);
    callLater(0.05, () => Deno.kill(Deno.pid, "SIGINT"));
    const [error] = loopUntilThrown({ map, poller: "epoll", stopSignals: ["SIGINT"] });
    assertInstanceOf(error, KeyboardInterrupt);
    d.close();
  });
});

Deno.test("signals: what the signal did before comes back when loop() ends (a Deno listener here)", async () => {
  let heard = 0;
  const onHup = () => heard++;
  Deno.addSignalListener("SIGHUP", onHup);
  try {
    const map: SocketMap = new Map();
    const d = listener(map);
    const killer = killLater("HUP", 0.2);
    const [error] = loopUntilThrown({ map, poller: "poll", stopSignals: ["SIGHUP"] });
    await killer.status;
    assertInstanceOf(error, KeyboardInterrupt);
    assertEquals(heard, 0, "while the loop ran, the trap took the signal");
    // A clean return restores too.
    loop({ map, poller: "poll", timeout: 0, count: 1, stopSignals: ["SIGHUP"] });
    d.close();
    Deno.kill(Deno.pid, "SIGHUP");
    for (let i = 0; i < 500 && heard === 0; i++) await delay(10);
    assertEquals(heard, 1, "the Deno listener is back after loop()");
  } finally {
    Deno.removeSignalListener("SIGHUP", onHup);
  }
});

Deno.test("signals: KeyboardInterrupt thrown by a handler leaves the loop, never reaching handleError", async () => {
  await assertNoFdLeak(() => {
    const map: SocketMap = new Map();
    let handled = 0;
    class Thrower extends Dispatcher {
      override writable() {
        return true;
      }
      override handleWrite(): void {
        throw new KeyboardInterrupt();
      }
      override handleError(): void {
        handled++;
      }
    }
    const t = new Thrower(null, map);
    t.createSocket();
    t.connect(["127.0.0.1", (listener(map).sock.getsockname() as [string, number])[1]]);
    assertThrows(() => loop({ map, timeout: 5, count: 10 }), KeyboardInterrupt);
    assertEquals(handled, 0);
    for (const x of [...map.values()]) x.close();
  });
});

Deno.test("signals: bad stopSignals are refused; loopAsync points to its AbortSignal", async () => {
  const map: SocketMap = new Map();
  assertThrows(() => loop({ map, stopSignals: ["SIGKILL" as "SIGINT"] }), RangeError, "SIGKILL");
  assertThrows(() => loop({ map, stopSignals: "SIGINT" as unknown as ["SIGINT"] }), TypeError);
  let thrown: unknown = null;
  await loopAsync({ map, stopSignals: ["SIGINT"] }).catch((e) => thrown = e);
  assertInstanceOf(thrown, TypeError);
  assertMatch((thrown as Error).message, /Deno\.addSignalListener/);
});

// ---- the examples, stopped by a real signal ----

async function startExample(file: string): Promise<Spawned & { port: number }> {
  const s = spawn(
    Deno.execPath(),
    ["run", "--allow-ffi", `examples/${file}`, "127.0.0.1", "0"],
    root,
  );
  const line = await s.stdout.waitFor(/listening on/);
  if (!line) {
    s.child.kill("SIGKILL");
    throw new Error(`${file} did not start: ${await s.stderr}`);
  }
  return { ...s, port: Number(/(\d+)\D*$/.exec(line[0])![1]) };
}

/** Reads from `conn` until `re` matches what arrived (or the stream ends); returns the text. */
async function readUntil(conn: Deno.Conn, re: RegExp, ms = 10_000): Promise<string> {
  const buf = new Uint8Array(4096);
  let text = "";
  const deadline = Date.now() + ms;
  while (!re.test(text) && Date.now() < deadline) {
    const n = await conn.read(buf);
    if (n === null) break;
    text += new TextDecoder().decode(buf.subarray(0, n));
  }
  return text;
}

/** Whether the server closed `conn` (end of stream within `ms`). */
async function endsSoon(conn: Deno.Conn, ms = 10_000): Promise<boolean> {
  const buf = new Uint8Array(4096);
  const timer = setTimeout(() => conn.close(), ms);
  try {
    while ((await conn.read(buf)) !== null) { /* drain */ }
    return true;
  } catch {
    return false; // closed by the timer
  } finally {
    clearTimeout(timer);
  }
}

for (
  const [file, sig] of [["echo.ts", "SIGINT"], ["echo.ts", "SIGTERM"], [
    "chat_server.ts",
    "SIGINT",
  ]] as const
) {
  Deno.test(`signals: examples/${file} stops on ${sig}: every client closed, exit status 0`, async () => {
    const s = await startExample(file);
    const clients: Deno.Conn[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        const c = await Deno.connect({ hostname: "127.0.0.1", port: s.port });
        clients.push(c);
        if (file === "echo.ts") {
          await c.write(new TextEncoder().encode(`ping ${i}\n`));
          assertEquals(await readUntil(c, /\n/), `ping ${i}\n`);
        } else {
          await readUntil(c, /nickname/);
          await c.write(new TextEncoder().encode(`user${i}\n`));
          await readUntil(c, /Hello user/);
        }
      }
      s.child.kill(sig);
      const status = await s.child.status;
      await s.stdout.done;
      const stderr = await s.stderr;
      assertEquals(status.code, 0, stderr);
      assertEquals(stderr, "");
      assertEquals(
        s.stdout.matching(new RegExp(`stopping \\(${sig}\\): closing 4 channel\\(s\\)`)).length,
        1,
        s.stdout.lines.join("\n"),
      );
      for (const c of clients) assert(await endsSoon(c), "a client was left open");
    } finally {
      for (const c of clients) {
        try {
          c.close();
        } catch { /* closed already */ }
      }
      try {
        s.child.kill("SIGKILL");
      } catch { /* exited */ }
      await s.child.status;
    }
  });
}
