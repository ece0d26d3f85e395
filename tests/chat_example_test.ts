// End-to-end test of examples/chat_server.ts: the server runs as a
// subprocess with only --allow-ffi; three clients talk at once: two
// Deno.connect clients in this process and a python3 socket client in a
// subprocess. Everyone must see everyone else's lines, in order, and /quit
// must end with the goodbye and then EOF. Then its limits: a client that
// stops reading is cut off, a silent one times out, too many connections
// from one address are refused.
import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import { assertNoFdLeak, delay, python, withTimeout } from "./_util.ts";
import { EXAMPLE_STOP_SIGNAL, exampleDeno } from "./fixtures/subprocess.ts";

const enc = new TextEncoder();
const root = new URL("..", import.meta.url).pathname;
const N = 200; // lines each client sends

/** Lines from a byte stream, read in the background. */
class Lines {
  all: string[] = [];
  #next = 0;
  eof = false;
  #wake: (() => void) | null = null;
  readonly done: Promise<void>;

  constructor(read: (buf: Uint8Array) => Promise<number | null>) {
    this.done = this.#pump(read);
  }

  async #pump(read: (buf: Uint8Array) => Promise<number | null>): Promise<void> {
    const dec = new TextDecoder();
    const buf = new Uint8Array(16384);
    let text = "";
    try {
      for (;;) {
        const n = await read(buf);
        if (n === null) break;
        text += dec.decode(buf.subarray(0, n), { stream: true });
        let i;
        while ((i = text.indexOf("\n")) >= 0) {
          this.all.push(text.slice(0, i));
          text = text.slice(i + 1);
        }
        this.#notify();
      }
    } catch {
      // closed under a pending read
    } finally {
      if (text) this.all.push(text);
      this.eof = true;
      this.#notify();
    }
  }

  #notify(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }

  #changed(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      this.#wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }

  /** The next line not yet taken; null at EOF. */
  async next(ms = 10000): Promise<string | null> {
    const deadline = performance.now() + ms;
    while (this.#next >= this.all.length && !this.eof) {
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`no line within ${ms} ms (got ${JSON.stringify(this.all)})`);
      await this.#changed(left);
    }
    return this.#next < this.all.length ? this.all[this.#next++] : null;
  }

  /** Takes lines until one satisfies `pred`, which is returned. */
  async until(pred: (line: string) => boolean, what: string, ms = 10000): Promise<string> {
    const deadline = performance.now() + ms;
    for (;;) {
      const line = await this.next(Math.max(1, deadline - performance.now())).catch(() => null);
      if (line === null) {
        throw new Error(`never got ${what}; lines: ${JSON.stringify(this.all.slice(-20))}`);
      }
      if (pred(line)) return line;
    }
  }

  /** Waits until `cond()` holds (checked as lines arrive). */
  async waitFor(cond: () => boolean, what: string, ms = 15000): Promise<void> {
    const deadline = performance.now() + ms;
    while (!cond()) {
      const left = deadline - performance.now();
      if (left <= 0 || this.eof) throw new Error(`timed out waiting for ${what}`);
      await this.#changed(left);
    }
  }
}

/** A chat client over Deno.connect. */
class Client {
  readonly lines: Lines;
  #closed = false;
  constructor(readonly nick: string, readonly conn: Deno.TcpConn) {
    this.lines = new Lines((buf) => conn.read(buf));
  }
  static async connect(nick: string, port: number): Promise<Client> {
    return new Client(nick, await Deno.connect({ hostname: "127.0.0.1", port }));
  }
  async send(line: string): Promise<void> {
    const data = enc.encode(line + "\n");
    for (let o = 0; o < data.length;) o += await this.conn.write(data.subarray(o));
  }
  /** Lines from `nick`, without the prefix. */
  from(nick: string): string[] {
    const p = `${nick}: `;
    return this.lines.all.filter((l) => l.startsWith(p)).map((l) => l.slice(p.length));
  }
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      try {
        this.conn.close();
      } catch {
        // already closed
      }
    }
    await this.lines.done;
  }
}

/** The chat server subprocess; its stdout lines are kept. */
class Server {
  readonly lines: Lines;
  constructor(readonly proc: Deno.ChildProcess, readonly port: number, lines: Lines) {
    this.lines = lines;
  }
  static async start(extra: string[] = []): Promise<Server> {
    const proc = new Deno.Command(exampleDeno, {
      args: ["run", "--allow-ffi", "examples/chat_server.ts", "127.0.0.1", "0", ...extra],
      cwd: root,
      stdin: "null",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const reader = proc.stdout.getReader({ mode: "byob" });
    const lines = new Lines(async (buf) => {
      const { value, done } = await reader.read(new Uint8Array(buf.length));
      if (done || !value) return null;
      buf.set(value);
      return value.length;
    });
    const first = await lines.next(20000);
    const m = first?.match(/^chat server listening on 127\.0\.0\.1:(\d+)$/);
    if (!m) {
      proc.kill("SIGKILL");
      await proc.status;
      throw new Error(`the chat server did not start: ${first}`);
    }
    return new Server(proc, Number(m[1]), lines);
  }
  async stop(): Promise<Deno.CommandStatus> {
    try {
      this.proc.kill(EXAMPLE_STOP_SIGNAL);
    } catch {
      // already gone
    }
    const status = await this.proc.status;
    await this.lines.done;
    return status;
  }
}

// The python3 client: joins as NICK, says READY; on GO it sends N lines
// while reading; once it has every line of the OTHERS it says GOT; on QUIT
// it sends /quit, reads to EOF and prints everything it received as JSON.
const PY_CLIENT = `
import json, socket, sys, threading
port, nick, n, others = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4].split(",")
s = socket.create_connection(("127.0.0.1", port), timeout=20)
f = s.makefile("rb")
def line():
    l = f.readline()
    return None if not l else l.decode().rstrip("\\n")
assert line().startswith("* Welcome")
s.sendall((nick + "\\n").encode())
hello = line()
assert hello.startswith("* Hello " + nick + "!"), hello
print("READY", flush=True)
received = [hello]
got = threading.Event()
def reader():
    counts = {o: 0 for o in others}
    while True:
        l = line()
        if l is None:
            received.append("<EOF>")
            break
        received.append(l)
        who = l.split(": ", 1)[0]
        if who in counts:
            counts[who] += 1
            if all(c >= n for c in counts.values()):
                got.set()
t = threading.Thread(target=reader)
t.start()
assert sys.stdin.readline().strip() == "GO"
for i in range(n):
    s.sendall(("%s line %d" % (nick, i) + "\\n").encode())
if not got.wait(20):
    print("MISSING", flush=True)
    sys.exit(1)
print("GOT", flush=True)
assert sys.stdin.readline().strip() == "QUIT"
s.sendall(b"/quit bye all\\n")
t.join(20)
print(json.dumps(received), flush=True)
s.close()
`;

class PyClient {
  readonly out: Lines;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;
  constructor(readonly proc: Deno.ChildProcess) {
    const reader = proc.stdout.getReader({ mode: "byob" });
    this.out = new Lines(async (buf) => {
      const { value, done } = await reader.read(new Uint8Array(buf.length));
      if (done || !value) return null;
      buf.set(value);
      return value.length;
    });
    this.#stdin = proc.stdin.getWriter();
  }
  static start(port: number, nick: string, others: string[]): PyClient {
    return new PyClient(
      new Deno.Command(python!, {
        args: ["-c", PY_CLIENT, String(port), nick, String(N), others.join(",")],
        stdin: "piped",
        stdout: "piped",
        stderr: "inherit",
      }).spawn(),
    );
  }
  async say(word: string): Promise<void> {
    await this.#stdin.write(enc.encode(word + "\n"));
  }
  async finish(): Promise<Deno.CommandStatus> {
    await this.#stdin.close().catch(() => {});
    const status = await this.proc.status;
    await this.out.done;
    return status;
  }
  kill(): void {
    try {
      this.proc.kill("SIGKILL");
    } catch {
      // gone
    }
  }
}

Deno.test({
  name: "chat example: three clients at once (two Deno, one python3) see each other, in order",
  ignore: python === null,
  fn: () =>
    assertNoFdLeak(async () => {
      const server = await Server.start();
      const clients: Client[] = [];
      let carol: PyClient | null = null;
      try {
        // alice joins an empty room
        const alice = await Client.connect("alice", server.port);
        clients.push(alice);
        assertEquals(await alice.lines.next(), "* Welcome to the chat! Your nickname?");
        await alice.send("alice");
        assertEquals(
          await alice.lines.next(),
          "* Hello alice! Nobody else is here yet. Type /help for commands.",
        );

        // bob joins; alice is told
        const bob = await Client.connect("bob", server.port);
        clients.push(bob);
        assertEquals(await bob.lines.next(), "* Welcome to the chat! Your nickname?");
        await bob.send("alice"); // taken
        assertEquals(
          await bob.lines.next(),
          "* The nickname alice is taken; your nickname?",
        );
        await bob.send("bob");
        assertEquals(
          await bob.lines.next(),
          "* Hello bob! Also here: alice. Type /help for commands.",
        );
        assertEquals(await alice.lines.next(), "* bob has joined");

        // carol (python3) joins
        carol = PyClient.start(server.port, "carol", ["alice", "bob"]);
        assertEquals(await carol.out.next(20000), "READY");
        assertEquals(await alice.lines.next(), "* carol has joined");
        assertEquals(await bob.lines.next(), "* carol has joined");

        // Everyone talks at once.
        const expected = (nick: string) => Array.from({ length: N }, (_, i) => `${nick} line ${i}`);
        await carol.say("GO");
        const talk = async (c: Client) => {
          for (let i = 0; i < N; i++) {
            await c.send(`${c.nick} line ${i}`);
            if (i % 25 === 0) await new Promise((r) => setTimeout(r, 1));
          }
        };
        await withTimeout(Promise.all([talk(alice), talk(bob)]), 20000, "alice and bob talking");
        const heard = (c: Client, others: string[]) => () =>
          others.every((o) => c.from(o).length >= N);
        await withTimeout(
          Promise.all([
            alice.lines.waitFor(heard(alice, ["bob", "carol"]), "alice hearing bob and carol"),
            bob.lines.waitFor(heard(bob, ["alice", "carol"]), "bob hearing alice and carol"),
            carol.out.next(20000).then((l) => assertEquals(l, "GOT")),
          ]),
          20000,
          "everyone hearing everyone",
        );
        for (const [c, others] of [[alice, ["bob", "carol"]], [bob, ["alice", "carol"]]] as const) {
          for (const o of others) assertEquals(c.from(o), expected(o), `${c.nick} hearing ${o}`);
          assertEquals(c.from(c.nick), [], `${c.nick} does not get her own lines back`);
        }

        // alice quits: goodbye, then EOF; the others are told.
        await alice.send("/quit");
        await alice.lines.until((l) => l === "* Goodbye, alice!", "alice's goodbye");
        assertEquals(await alice.lines.next(), null, "EOF right after the goodbye");
        assertEquals(alice.lines.all.at(-1), "* Goodbye, alice!");
        await bob.lines.until((l) => l === "* alice has left", "alice leaving (bob)");

        // carol quits with a message; her transcript has everyone, in order.
        await carol.say("QUIT");
        const json = await carol.out.next(20000);
        const carolGot: string[] = JSON.parse(json ?? "[]");
        assertEquals(await carol.finish().then((s) => s.code), 0);
        carol = null;
        const carolFrom = (nick: string) =>
          carolGot.filter((l) => l.startsWith(`${nick}: `)).map((l) => l.slice(nick.length + 2));
        assertEquals(carolFrom("alice"), expected("alice"));
        assertEquals(carolFrom("bob"), expected("bob"));
        assertEquals(carolFrom("carol"), []);
        assert(carolGot.includes("* alice has left"));
        assertEquals(carolGot.slice(-2), ["* Goodbye, carol!", "<EOF>"]);
        await bob.lines.until(
          (l) => l === `* carol has left (says "bye all")`,
          "carol leaving (bob)",
        );

        // bob just hangs up.
        await bob.close();
        await server.lines.waitFor(
          () => server.lines.all.includes("- bob"),
          "the server noticing bob left",
        );
        const log = server.lines.all.join("\n");
        for (const l of ["+ alice", "+ bob", "+ carol", "- alice", "- carol", "- bob"]) {
          assertStringIncludes(log, l);
        }
      } finally {
        carol?.kill();
        await carol?.finish();
        for (const c of clients) await c.close();
        const status = await server.stop();
        // It was still running until our SIGTERM, which it answers with a clean exit.
        assertEquals(
          [status.code, status.signal],
          [0, null],
          `the server stopped cleanly on ${EXAMPLE_STOP_SIGNAL}`,
        );
      }
    }),
});

Deno.test({
  name: "chat example: commands, bad nicknames, long lines, quitting with lines queued behind",
  fn: () =>
    assertNoFdLeak(async () => {
      const server = await Server.start();
      const clients: Client[] = [];
      try {
        const a = await Client.connect("ann", server.port);
        const b = await Client.connect("ben", server.port);
        clients.push(a, b);
        await a.lines.next();
        await b.lines.next();
        await a.send("no spaces allowed");
        assertEquals(
          await a.lines.next(),
          "* A nickname is 1 to 20 letters, digits, - or _; your nickname?",
        );
        await a.send("ann\r"); // CRLF clients (telnet) work too
        await a.lines.until((l) => l.startsWith("* Hello ann!"), "ann's hello");
        await b.send("ben");
        await b.lines.until((l) => l.startsWith("* Hello ben! Also here: ann."), "ben's hello");
        await a.lines.until((l) => l === "* ben has joined", "ben joining");

        await a.send("/who");
        assertEquals(await a.lines.next(), "* Here: ann, ben");
        await a.send("/NICK Ben");
        assertEquals(await a.lines.next(), "* The nickname Ben is taken");
        await a.send("/nick annie");
        assertEquals(await a.lines.next(), "* You are now annie");
        assertEquals(await b.lines.next(), "* ann is now known as annie");
        await a.send("/me waves");
        assertEquals(await b.lines.next(), "* annie waves");
        await a.send("/dance");
        assertEquals(await a.lines.next(), "* Unknown command /dance; try /help");
        await a.send("x".repeat(5000));
        assertEquals(await a.lines.next(), "* Line too long (max 1024 bytes), ignored");
        await a.send("\u00e9t\u00e9 \u2603");
        assertEquals(await b.lines.next(), "annie: \u00e9t\u00e9 \u2603");

        // Lines after /quit in the same write are ignored, and the goodbye is the last line.
        await a.send("/quit\nnot delivered");
        assertEquals(await a.lines.next(), "* Goodbye, annie!");
        assertEquals(await a.lines.next(), null);
        assertEquals(await b.lines.next(), "* annie has left");
        await b.send("/who");
        assertEquals(await b.lines.next(), "* Here: ben");
      } finally {
        for (const c of clients) await c.close();
        await server.stop();
      }
    }),
});

Deno.test({
  name: "chat example: a client that stops reading is cut off; the others go on",
  fn: () =>
    assertNoFdLeak(async () => {
      const server = await Server.start();
      const clients: Client[] = [];
      let slow: Deno.TcpConn | null = null;
      try {
        const talker = await Client.connect("talker", server.port);
        const watcher = await Client.connect("watcher", server.port);
        clients.push(talker, watcher);
        for (const c of [talker, watcher]) {
          await c.lines.next();
          await c.send(c.nick);
          await c.lines.until((l) => l.startsWith(`* Hello ${c.nick}!`), "hello");
        }
        // slow joins and then reads nothing at all.
        slow = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
        await slow.write(enc.encode("slow\n"));
        await watcher.lines.until((l) => l === "* slow has joined", "slow joining");
        // 16 MiB of chat: far more than the kernel buffers and MAX_QUEUED_BYTES.
        const line = "x".repeat(1000);
        const batch = enc.encode(`${line}\n`.repeat(256));
        const n = 64;
        await withTimeout(
          (async () => {
            for (let i = 0; i < n; i++) {
              for (let o = 0; o < batch.length;) o += await talker.conn.write(batch.subarray(o));
            }
          })(),
          30_000,
          "talking",
        );
        await watcher.lines.until(
          (l) => l === "* slow has left (not reading)",
          "slow being cut off",
          30_000,
        );
        await watcher.lines.waitFor(
          () => watcher.from("talker").length >= n * 256,
          "watcher hearing every line",
          30_000,
        );
        assertEquals(watcher.from("talker").length, n * 256);
        await talker.send("/who");
        await talker.lines.until((l) => l === "* Here: talker, watcher", "who");
      } finally {
        slow?.close();
        for (const c of clients) await c.close();
        await server.stop();
      }
    }),
});

Deno.test({
  name:
    "chat example: a silent client times out (--idle=1); a 3rd connection from one host is refused",
  fn: () =>
    assertNoFdLeak(async () => {
      const server = await Server.start(["--idle=1", "--max-per-host=2"]);
      const clients: Client[] = [];
      try {
        const quiet = await Client.connect("quiet", server.port);
        const busy = await Client.connect("busy", server.port);
        clients.push(quiet, busy);
        assertEquals(await quiet.lines.next(), "* Welcome to the chat! Your nickname?");
        assertEquals(await busy.lines.next(), "* Welcome to the chat! Your nickname?");
        const third = await Client.connect("third", server.port);
        clients.push(third);
        assertEquals(await third.lines.next(), "* Too many connections from your address, sorry");
        assertEquals(await third.lines.next(), null);
        // busy keeps talking, so only quiet is reaped.
        const t0 = performance.now();
        await busy.send("busy");
        const timer = setInterval(() => busy.send("/who").catch(() => {}), 300);
        try {
          assertEquals(await quiet.lines.next(5000), "* Idle for 1 s, goodbye");
          assertEquals(await quiet.lines.next(), null);
          assert(performance.now() - t0 >= 900, "not before a second of silence");
          await delay(1500);
          assert(!busy.lines.eof, "the talking client stays");
        } finally {
          clearInterval(timer);
        }
      } finally {
        for (const c of clients) await c.close();
        await server.stop();
      }
    }),
});
