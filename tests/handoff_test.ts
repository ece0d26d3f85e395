// Zero-downtime restart: serveHandoff/takeOverListeners (dispatcher/handoff.ts)
// with real peers. python3's socket.recv_fds/send_fds play the foreign
// successor and the foreign old process (tests/fixtures/handoff_peer.py);
// examples/echo.ts plays both sides under the C load generator
// (bench/loadgen.c, churn: connect, echo 64 B, close, continuously) through
// two switches, each generation on another poller. Connections queued in the
// listener's backlog are accepted by the successor; connections open on the
// old process finish there; wrong peers, stale socket files and timeouts get
// clear errors; no fd is left behind (received fds included).
import {
  assert,
  assertEquals,
  assertGreater,
  assertLess,
  assertMatch,
  assertThrows,
} from "@std/assert";
import {
  AF_UNIX,
  Dispatcher,
  type HandoffServer,
  Loop,
  OSError,
  type PollerName,
  serveHandoff,
  Socket,
  type SocketMap,
  takeOverListeners,
  TimeoutError,
} from "../mod.ts";
import {
  delay,
  EchoHandler,
  leakAndTimerTest,
  Listener,
  onWindows,
  POLLERS,
  python,
  PythonPeer,
  serveWhile,
  tempSocketPath,
  withTimeout,
} from "./_util.ts";
import { run, spawn, type Spawned, stop } from "./fixtures/subprocess.ts";
import { buildLoadgen, hasCompiler, runLoadgen } from "./fixtures/loadgen.ts";

const root = new URL("..", import.meta.url).pathname;
const peerSource = Deno.readTextFileSync(new URL("./fixtures/handoff_peer.py", import.meta.url));
const noPython = python === null || onWindows;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A python3 handoff peer (see fixtures/handoff_peer.py). */
function peer(...args: string[]): PythonPeer {
  return new PythonPeer(peerSource, args);
}

/** A listener that echoes; `acceptHere = false` leaves new connections in its queue. */
class HoldingServer extends Listener {
  acceptHere = true;
  override readable(): boolean {
    return this.acceptHere;
  }
  override handleAccepted(sock: Socket): void {
    new EchoHandler(sock, this.map);
  }
}

/** A dispatcher serving a listening socket handed over: `listen()` keeps its queue. */
class AdoptedServer extends Dispatcher {
  constructor(sock: Socket, map: SocketMap) {
    super(sock, map);
    this.listen(16);
  }
  override handleAccepted(sock: Socket): void {
    new EchoHandler(sock, this._map);
  }
}

/** Writes `text` and reads until `want` came back. */
async function exchange(conn: Deno.Conn, text: string, want = text): Promise<void> {
  await conn.write(encoder.encode(text));
  let got = "";
  const buf = new Uint8Array(256);
  while (got.length < want.length) {
    const n = await conn.read(buf);
    if (n === null) break;
    got += decoder.decode(buf.subarray(0, n));
  }
  assertEquals(got, want);
}

/** Resolves once `cond()` holds (checked every 10 ms). */
async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await delay(10);
}

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** An old process (this one, on `poller`) with a listener, a handoff server and its log. */
function oldSide(poller: PollerName) {
  const loop = new Loop({ poller });
  const server = new HoldingServer({ map: loop.map });
  const path = tempSocketPath("handoff");
  const handedOff: number[] = [];
  const handoff = serveHandoff(path, [server], () => handedOff.push(1)) as HandoffServer;
  const log: string[] = [];
  handoff.logInfo = (message, type = "info") => void log.push(`${type}: ${message}`);
  return { loop, map: loop.map, server, path, handoff, handedOff, log };
}

for (const poller of POLLERS) {
  leakAndTimerTest(
    `handoff (${poller}): python3's recv_fds takes the listener; queued connections go to it, open ones finish here`,
    async () => {
      const old = oldSide(poller);
      const { map, server, path } = old;
      const conns: Deno.Conn[] = [];
      try {
        // A: accepted here before the switch.
        const a = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
        conns.push(a);
        await serveWhile(map, poller, exchange(a, "before"));
        // B and C wait in the listener's queue: this process stops accepting.
        server.acceptHere = false;
        server.interestChanged();
        for (const name of ["b", "c"]) {
          const c = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
          conns.push(c);
          await c.write(encoder.encode(name));
        }
        await using succ = peer("successor", path, "ack", "2");
        const [fds, done] = await serveWhile(
          map,
          poller,
          (async () => [await succ.line(), await succ.line()])(),
        );
        assertEquals(JSON.parse(fds), { line: "ASYNCORE-HANDOFF 1 FDS 1 2/1/6", fds: 1 });
        assertEquals(done, "done ASYNCORE-HANDOFF 1 DONE");
        assertEquals(old.handedOff, [1]);
        assertEquals(server.fileno(), null, "the listener is closed here");
        assertEquals(old.handoff.fileno(), null, "the handoff server is closed");
        assert(!exists(path), "the socket file is removed");
        assertMatch(old.log.join("\n"), /^info: handed 1 listener\(s\) to a successor/);
        // The queued connections were accepted by python, from the same queue.
        for (const [i, c] of conns.slice(1).entries()) {
          const buf = new Uint8Array(16);
          const n = await withTimeout(c.read(buf), 10_000, "python's answer");
          assertEquals(decoder.decode(buf.subarray(0, n ?? 0)), `py:${"bc"[i]}`);
        }
        assertEquals(await succ.line(), "served");
        // A is still served here, and the loop ends once it closes.
        await serveWhile(map, poller, exchange(a, "after the switch"));
        a.close();
        conns.shift();
        await serveWhile(map, poller, until(() => map.size === 0));
      } finally {
        for (const c of conns) c.close();
        old.loop.close();
      }
    },
    noPython,
  );

  leakAndTimerTest(
    `handoff (${poller}): a successor that breaks off, says garbage, a wrong version, a wrong ACK or nothing changes nothing here`,
    async () => {
      const old = oldSide(poller);
      const { map, server, path, handoff } = old;
      handoff.handoffTimeout = 0.3;
      try {
        const cases: [string[], RegExp, RegExp][] = [
          [
            ["garbage"],
            /^closed ASYNCORE-HANDOFF 1 ERROR not an asyncore handoff peer/,
            /warning: dropped/,
          ],
          [
            ["v2"],
            /^closed ASYNCORE-HANDOFF 1 ERROR the peer speaks handoff protocol version 2, this process 1$/,
            /warning: dropped/,
          ],
          [["silent"], /^closed ASYNCORE-HANDOFF 1 ERROR no answer in 0\.3 s$/, /warning: dropped/],
          [
            ["noack"],
            /^\{/,
            /error: handoff failed after the fds were sent \(the successor closed the connection before ACK\): still serving/,
          ],
          [
            ["badack"],
            /^\{/,
            /error: handoff failed after the fds were sent \(expected ACK 1, got /,
          ],
        ];
        for (const [mode, answer, logged] of cases) {
          old.log.length = 0;
          await using succ = peer("successor", path, ...mode);
          const got = await serveWhile(map, poller, succ.line());
          assertMatch(got, answer, mode[0]);
          await serveWhile(map, poller, until(() => old.log.length > 0));
          assertMatch(old.log.join("\n"), logged, mode[0]);
          assertEquals(
            await serveWhile(map, poller, succ.finish()),
            mode[0] === "badack"
              ? 'closed ASYNCORE-HANDOFF 1 ERROR expected ACK 1, got "ASYNCORE-HANDOFF 1 ACK 99"\n'
              : "",
          );
          // The listener is still here and accepting.
          assert(server.fileno() !== null && server.accepting, mode[0]);
          const c = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
          await serveWhile(map, poller, exchange(c, `still here after ${mode[0]}`));
          c.close();
        }
        assertEquals(old.handedOff, []);
        assert(exists(path));
        // Two successors at once: the second is told the first is taking over.
        await using two = peer("busy", path);
        const [second, done] = await serveWhile(
          map,
          poller,
          (async () => [await two.line(), await two.line()])(),
        );
        assertEquals(
          second,
          "second ASYNCORE-HANDOFF 1 ERROR busy: another successor is taking over",
        );
        assertEquals(done, "done ASYNCORE-HANDOFF 1 DONE");
        assertEquals(old.handedOff, [1]);
        await serveWhile(map, poller, until(() => map.size === 0));
      } finally {
        old.loop.close();
      }
    },
    noPython,
  );

  leakAndTimerTest(
    `takeOverListeners (${poller}): from python3's send_fds; the connections queued there are accepted here`,
    async () => {
      const path = tempSocketPath("handoff");
      await using oldPeer = peer("old", path, "ok");
      const port = Number((await oldPeer.line()).split(" ")[1]);
      const clients: Deno.Conn[] = [];
      const loop = new Loop({ poller });
      try {
        for (let i = 0; i < 3; i++) {
          const c = await Deno.connect({ hostname: "127.0.0.1", port });
          clients.push(c);
          await c.write(encoder.encode(`queued ${i}`));
        }
        const socks = takeOverListeners(path, 20);
        assertEquals(socks.length, 1);
        assertEquals(socks[0].getsockname(), ["127.0.0.1", port]);
        assertEquals(await oldPeer.line(), "handed");
        new AdoptedServer(socks[0], loop.map);
        const echoed = clients.map(async (c, i) => {
          const want = `queued ${i}`;
          let got = "";
          const buf = new Uint8Array(64);
          while (got.length < want.length) {
            const n = await c.read(buf);
            if (n === null) break;
            got += decoder.decode(buf.subarray(0, n));
          }
          assertEquals(got, want);
        });
        await serveWhile(loop.map, poller, Promise.all(echoed));
      } finally {
        for (const c of clients) c.close();
        loop.close();
      }
    },
    noPython,
  );
}

leakAndTimerTest(
  "takeOverListeners: a wrong peer, a refusal, a wrong fd count, version or kind, a pipe, silence: clear errors, every fd received closed",
  async () => {
    const cases: [string, number, RegExp][] = [
      [
        "garbage",
        0,
        /failed: not an asyncore handoff peer \(it said "220 smtp\.example\.com ESMTP\\r"\)/,
      ],
      ["error", 0, /failed: the process there refused: not today$/],
      ["count", 0, /failed: the FDS line announces 2 fds, 1 came$/],
      ["v2", 0, /failed: the peer speaks handoff protocol version 2, this process 1$/],
      ["kind", 0, /failed: fd 1 is 2\/1\/6, announced as 10\/1\/6$/],
      ["file", 0, /failed: fd 1 is not a socket$/],
    ];
    for (const [mode, , message] of cases) {
      const path = tempSocketPath("handoff");
      await using oldPeer = peer("old", path, mode);
      await oldPeer.line(); // "port N": the path is bound
      const error = assertThrows(() => takeOverListeners(path, 10), OSError);
      assertEquals(error.code, "EPROTO", mode);
      assertMatch(error.message, message, mode);
      assert(error.message.startsWith(`[Errno ${error.errno}] handoff from '${path}' failed: `));
      assertEquals(error.filename, path);
    }
    // Silence: the bound holds.
    const path = tempSocketPath("handoff");
    await using silent = peer("old", path, "silent");
    await silent.line();
    const t0 = performance.now();
    const error = assertThrows(() => takeOverListeners(path, 0.5), TimeoutError);
    const took = performance.now() - t0;
    assertGreater(took, 450);
    assertLess(took, 3000);
    assertEquals(
      error.message,
      `timed out after 0.5 s waiting for the handoff server at '${path}'`,
    );
  },
  noPython,
);

leakAndTimerTest(
  "takeOverListeners: nothing at the path, a stale socket file, bad arguments",
  () => {
    const missing = tempSocketPath("none");
    const e1 = assertThrows(() => takeOverListeners(missing), OSError);
    assertEquals(e1.code, "ENOENT");
    assertMatch(
      e1.message,
      /No such file or directory: '.*none\.sock' \(no process serves a handoff there\)$/,
    );
    const stale = tempSocketPath("stale");
    const s = new Socket(AF_UNIX);
    s.bind(stale);
    s.close(); // the file stays, nobody listens
    const e2 = assertThrows(() => takeOverListeners(stale), OSError);
    assertEquals(e2.code, "ECONNREFUSED");
    assertMatch(
      e2.message,
      /a stale socket file: the process that served a handoff there is gone\)$/,
    );
    assertThrows(
      () => takeOverListeners(stale, 0),
      RangeError,
      "timeoutSeconds must be a positive",
    );
    assertThrows(() => takeOverListeners(stale, NaN), RangeError);
    assertThrows(() => takeOverListeners(""), TypeError);
    Deno.removeSync(stale);
  },
  onWindows,
);

leakAndTimerTest(
  "serveHandoff: a stale socket file is replaced; a live server's and a regular file are not",
  () => {
    const loop = new Loop();
    try {
      const server = new HoldingServer({ map: loop.map });
      // Stale: a socket file nobody listens on.
      const path = tempSocketPath("handoff");
      const s = new Socket(AF_UNIX);
      s.bind(path);
      s.close();
      const h = serveHandoff(path, [server]);
      assert(exists(path));
      // Live: refused, and the live one is untouched.
      const e1 = assertThrows(() => serveHandoff(path, [server]), OSError);
      assertEquals(e1.code, "EADDRINUSE");
      assertMatch(
        e1.message,
        /Address already in use: '.*' \(a process is serving a handoff there\)$/,
      );
      h.close();
      assert(!exists(path), "closing removes the file");
      // Not a socket: refused, and left alone.
      Deno.writeTextFileSync(path, "precious");
      const e2 = assertThrows(() => serveHandoff(path, [server]), OSError);
      assertMatch(e2.message, /\(it is not a socket: not removed\)$/);
      assertEquals(Deno.readTextFileSync(path), "precious");
      Deno.removeSync(path);
      // A file that replaced ours is not removed when ours closes.
      const h2 = serveHandoff(path, [server]);
      Deno.removeSync(path);
      Deno.writeTextFileSync(path, "someone else's");
      h2.close();
      assertEquals(Deno.readTextFileSync(path), "someone else's");
      Deno.removeSync(path);
      // An abstract name: no file at all.
      const h3 = serveHandoff(`\0asyncore-handoff-test-${Deno.pid}`, [server]);
      h3.close();
      // Bad arguments.
      assertThrows(() => serveHandoff(path, []), RangeError, "at least one listener");
      assertThrows(() => serveHandoff("", [server]), TypeError);
      const closed = new HoldingServer({ map: loop.map });
      closed.close();
      assertThrows(() => serveHandoff(path, [closed]), TypeError, "listeners[0] is not an open");
    } finally {
      loop.close();
    }
  },
  onWindows,
);

// ---- examples/echo.ts under load: two switches, 0 failed connections ----

/** Open fds of process `pid`. */
function fdsOf(pid: number): number {
  let n = 0;
  for (const _ of Deno.readDirSync(`/proc/${pid}/fd`)) n++;
  return n;
}

function echoGeneration(port: number, poller: PollerName, extra: string[]): Spawned {
  return spawn(Deno.execPath(), [
    "run",
    "--no-prompt",
    "--allow-ffi",
    "examples/echo.ts",
    "127.0.0.1",
    String(port),
    "--backlog=128",
    `--poller=${poller}`,
    ...extra,
  ], root);
}

Deno.test({
  name:
    "examples/echo.ts --handoff/--takeover under the C load generator: two switches (epoll → poll → select), 0 connections refused or reset, 0 bytes wrong, an open connection finishes on the old process",
  ignore: !hasCompiler || onWindows,
  async fn() {
    const loadgen = (await buildLoadgen())!;
    const path = tempSocketPath("echo-handoff");
    const port = (() => {
      const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const p = (l.addr as Deno.NetAddr).port;
      l.close();
      return p;
    })();
    const gens: Spawned[] = [];
    let held: Deno.Conn | null = null;
    try {
      const gen1 = echoGeneration(port, "epoll", [`--handoff=${path}`]);
      gens.push(gen1);
      assert(await gen1.stdout.waitFor(/serving a handoff at /), gen1.stdout.lines.join("\n"));
      const baseline = fdsOf(gen1.child.pid);
      held = await Deno.connect({ hostname: "127.0.0.1", port });
      await exchange(held, "held 1");
      const seconds = 9;
      const load = runLoadgen(loadgen, {
        host: "127.0.0.1",
        port,
        mode: "churn",
        conns: 8,
        size: 64,
        warmup: 0,
        duration: seconds,
      }, (seconds + 60) * 1000);
      await delay(2000);
      // Switch 1: the same path again, for the next switch.
      const gen2 = echoGeneration(port, "poll", [`--takeover=${path}`, `--handoff=${path}`]);
      gens.push(gen2);
      assert(await gen2.stdout.waitFor(/taken over from/), gen2.stdout.lines.join("\n"));
      assert(await gen1.stdout.waitFor(/handed its listener\(s\) over/));
      await exchange(held, "held 2: still on the first process");
      await delay(2000);
      // Switch 2.
      const gen3 = echoGeneration(port, "select", [`--takeover=${path}`, `--handoff=${path}`]);
      gens.push(gen3);
      assert(await gen3.stdout.waitFor(/taken over from/), gen3.stdout.lines.join("\n"));
      // The second generation held no connection of its own past the switch: it exits 0.
      const s2 = await withTimeout(gen2.child.status, 20_000, "the second generation's exit");
      assertEquals(s2.code, 0);
      await exchange(held, "held 3");
      held.close();
      held = null;
      const s1 = await withTimeout(gen1.child.status, 20_000, "the first generation's exit");
      assertEquals(s1.code, 0);
      const result = await load;
      assertEquals(result.errors, 0, JSON.stringify(result.error_detail));
      assertGreater(result.ops, 1000);
      // Each generation served part of the load.
      for (const [i, g] of gens.entries()) {
        if (g !== gen3) await g.stdout.done; // the first two have exited
        assertGreater(
          g.stdout.matching(/^Incoming connection from /).length,
          50,
          `generation ${i + 1}`,
        );
      }
      assertEquals(gen1.stdout.matching(/^echo server: the last connection closed$/).length, 1);
      // No fd left behind by two switches and the churn: the third holds what the first did.
      await delay(500);
      assertLess(fdsOf(gen3.child.pid), baseline + 3);
      assert(exists(path), "the third generation serves the next handoff");
      const s3 = await stop(gen3);
      assertEquals(s3.code, 0);
      assert(!exists(path), "and removes its socket file when it stops");
    } finally {
      held?.close();
      for (const g of gens) await stop(g);
    }
  },
});

// python3 as a successor to examples/echo.ts: a foreign process takes the example's listener.
Deno.test({
  name: "examples/echo.ts --handoff: python3's recv_fds takes the listener; the example exits 0",
  ignore: noPython,
  async fn() {
    const path = tempSocketPath("echo-handoff");
    const gen1 = spawn(Deno.execPath(), [
      "run",
      "--no-prompt",
      "--allow-ffi",
      "examples/echo.ts",
      "127.0.0.1",
      "0",
      `--handoff=${path}`,
    ], root);
    try {
      const line = await gen1.stdout.waitFor(/listening on 127\.0\.0\.1:(\d+)/);
      assert(await gen1.stdout.waitFor(/serving a handoff/));
      const port = Number(/:(\d+)/.exec(line![0])![1]);
      const [r, answer] = await Promise.all([
        run(python!, ["-c", peerSource, "successor", path, "ack", "1"]),
        (async () => {
          await until(() => !exists(path));
          const c = await Deno.connect({ hostname: "127.0.0.1", port });
          await c.write(encoder.encode("hi"));
          const buf = new Uint8Array(16);
          const n = await c.read(buf);
          c.close();
          return decoder.decode(buf.subarray(0, n ?? 0));
        })(),
      ]);
      assertEquals(r.code, 0, r.stderr);
      assertEquals(answer, "py:hi");
      assertEquals((await withTimeout(gen1.child.status, 20_000, "exit")).code, 0);
    } finally {
      await stop(gen1);
    }
  },
});

Deno.test({
  name: "serveHandoff/takeOverListeners on Windows: one clear error",
  ignore: !onWindows,
  fn() {
    assertThrows(() => takeOverListeners("x"), OSError, "SCM_RIGHTS");
  },
});
