// Socket activation: listenFds/listenFdsWithNames under the real
// systemd-socket-activate (stream, Unix, datagram, names, a dispatcher serving
// what it was handed), and sd_listen_fds' rules for the environment
// (LISTEN_PID for another process, malformed values, unsetting) in-process.
import { assert, assertEquals, assertThrows } from "@std/assert";
import {
  AF_INET,
  AF_UNIX,
  listenFds,
  listenFdsWithNames,
  OSError,
  SOCK_DGRAM,
  SOCK_NONBLOCK,
  SOCK_STREAM,
  Socket,
} from "../mod.ts";
import {
  delay,
  emulated,
  hasCommand,
  leakTest,
  python,
  PythonPeer,
  tempSocketPath,
  withTimeout,
} from "./_util.ts";

const ACTIVATE = "systemd-socket-activate";
const haveActivate = hasCommand(ACTIVATE);
const fixture = new URL("./fixtures/activation.ts", import.meta.url).pathname;
const enc = new TextEncoder();
const dec = new TextDecoder();
/** How long a started Deno may take to answer: much longer under emulation (qemu-user). */
const START_MS = emulated ? 180_000 : 30_000;

interface Report {
  pid: number;
  sockets: {
    fd: number;
    name: string;
    family: number;
    type: number;
    cloexec: boolean;
    blocking: boolean;
    address: unknown;
  }[];
  env: (string | null)[];
  child: string;
  again: number;
}

/** A TCP port that was free a moment ago (systemd-socket-activate takes no port 0). */
function freePort(type = SOCK_STREAM): number {
  const s = new Socket(AF_INET, type);
  try {
    s.bind(["127.0.0.1", 0]);
    return (s.getsockname() as [string, number])[1];
  } finally {
    s.close();
  }
}

/** `systemd-socket-activate ARGS deno run fixture MODE`, its output read as it comes. */
class Activated implements AsyncDisposable {
  readonly child: Deno.ChildProcess;
  #out = "";
  #err = "";
  #pumps: Promise<void>[];

  constructor(args: string[], mode: string) {
    this.child = new Deno.Command(ACTIVATE, {
      args: [
        ...args,
        Deno.execPath(),
        "run",
        "--allow-ffi",
        "--allow-env",
        "--allow-run",
        "--no-check",
        fixture,
        mode,
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    const pump = async (stream: ReadableStream<Uint8Array>, add: (t: string) => void) => {
      for await (const text of stream.pipeThrough(new TextDecoderStream())) add(text);
    };
    this.#pumps = [
      pump(this.child.stdout, (t) => this.#out += t),
      pump(this.child.stderr, (t) => this.#err += t),
    ];
  }

  /** Waits (bounded) until `test` holds for what was printed. */
  async #until(test: () => boolean, what: string, ms = START_MS): Promise<void> {
    const deadline = performance.now() + ms;
    while (!test()) {
      if (performance.now() > deadline) {
        throw new Error(`timed out waiting for ${what}; stderr: ${this.#err}`);
      }
      await delay(5);
    }
  }

  /** Waits until it listens on `n` sockets ("Listening on ... as N." each). */
  listening(n: number): Promise<void> {
    return this.#until(() => (this.#err.match(/Listening on/g) ?? []).length >= n, "listening");
  }

  /** The fixture's JSON line. */
  async report(): Promise<Report> {
    await this.#until(() => this.#out.includes("\n"), "the fixture's report");
    return JSON.parse(this.#out.slice(0, this.#out.indexOf("\n")));
  }

  /** Waits for the exit; its code (stderr goes into the message of a failure). */
  async exit(): Promise<number> {
    const status = await withTimeout(this.child.status, START_MS, "the fixture's exit");
    await Promise.all(this.#pumps);
    if (status.code !== 0) console.error(this.#err);
    return status.code;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.child.kill("SIGKILL");
    } catch {
      // already exited
    }
    await this.child.status;
    await Promise.all(this.#pumps).catch(() => {});
  }
}

async function activate(args: string[], mode: string): Promise<Activated> {
  const a = new Activated(args, mode);
  await a.listening(args.filter((x) => x === "-l").length);
  return a;
}

/** Sends `data` on a stream connection and reads until the peer closes; bounded. */
async function ask(conn: Deno.Conn, data: string): Promise<string> {
  await conn.write(enc.encode(data));
  const parts: Uint8Array[] = [];
  const buf = new Uint8Array(1024);
  for (;;) {
    const n = await withTimeout(conn.read(buf), START_MS, "the activated server's answer");
    if (n === null) break;
    parts.push(buf.slice(0, n));
    if (dec.decode(parts.at(-1)!).includes("!")) break;
  }
  return parts.map((p) => dec.decode(p)).join("");
}

function activationTest(name: string, fn: () => Promise<void>): void {
  leakTest(name, fn, !haveActivate);
}

activationTest(
  "activation: systemd-socket-activate hands a TCP and a Unix listener, named",
  async () => {
    const port = freePort();
    const path = tempSocketPath("activated");
    try {
      await using child = await activate(
        ["-l", `127.0.0.1:${port}`, "-l", path, "--fdname=web:admin"],
        "stream",
      );
      // The first connection makes it start the fixture (which answers it).
      const web = await Deno.connect({ hostname: "127.0.0.1", port });
      const r = await child.report();
      assertEquals(r.sockets.map((s) => [s.fd, s.name, s.family, s.type]), [
        [3, "web", AF_INET, SOCK_STREAM],
        [4, "admin", AF_UNIX, SOCK_STREAM],
      ]);
      assertEquals(r.sockets.map((s) => s.address), [["127.0.0.1", port], path]);
      assert(r.sockets.every((s) => s.cloexec), "the inherited fds are made close-on-exec");
      assert(r.sockets.every((s) => s.blocking), "blocking, as systemd passes them");
      assertEquals(r.env, [null, null, null], "LISTEN_* are unset");
      assertEquals(r.child, "unset unset unset", "a child sees neither the fds nor the variables");
      assertEquals(r.again, 0, "a second call finds nothing");
      try {
        assertEquals(await ask(web, "hello!"), "web:hello!");
      } finally {
        web.close();
      }
      if (hasCommand("nc")) {
        // nc (netcat-openbsd) on the Unix listener: -N shuts down writing after stdin's end.
        const nc = new Deno.Command("nc", {
          args: ["-N", "-U", path],
          stdin: "piped",
          stdout: "piped",
        })
          .spawn();
        const w = nc.stdin.getWriter();
        await w.write(enc.encode("status!"));
        await w.close();
        const out = await withTimeout(nc.output(), START_MS, "nc");
        assertEquals(dec.decode(out.stdout), "admin:status!");
      } else {
        const admin = await Deno.connect({ path, transport: "unix" });
        try {
          assertEquals(await ask(admin, "status!"), "admin:status!");
        } finally {
          admin.close();
        }
      }
      assertEquals(await child.exit(), 0);
    } finally {
      Deno.removeSync(path.slice(0, path.lastIndexOf("/")), { recursive: true });
    }
  },
);

activationTest(
  'activation: a datagram socket (--datagram), unnamed fds are "unknown"',
  async () => {
    const port = freePort(SOCK_DGRAM);
    await using child = await activate(["--datagram", "-l", `127.0.0.1:${port}`], "dgram");
    const client = new Socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK);
    try {
      client.sendto("ping!", ["127.0.0.1", port]);
      const r = await child.report();
      assertEquals(r.sockets.map((s) => [s.fd, s.name, s.type]), [[3, "unknown", SOCK_DGRAM]]);
      let answer: Uint8Array | null = null;
      for (let i = 0; i < 5000 && answer === null; i++) {
        try {
          answer = client.recvfrom(64)[0];
        } catch (error) {
          if (!(error instanceof OSError && error.code === "EAGAIN")) throw error;
          await delay(2);
        }
      }
      assertEquals(answer && dec.decode(answer), "unknown:ping!");
      assertEquals(await child.exit(), 0);
    } finally {
      client.close();
    }
  },
);

const PY_CLIENT = `
import socket, sys
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=int(sys.argv[2]))
c.sendall(b"via loop()!")
print(c.recv(64).decode(), flush=True)
`;

activationTest(
  "activation: a Dispatcher given a handed listener serves it as its own (python client)",
  async () => {
    if (!python) return;
    const port = freePort();
    await using child = await activate(["-l", `127.0.0.1:${port}`, "--fdname=echo"], "dispatcher");
    await using peer = new PythonPeer(PY_CLIENT, [String(port), String(START_MS / 1000)]);
    const r = await child.report();
    assertEquals(r.sockets.map((s) => s.name), ["echo"]);
    assertEquals(await peer.line(START_MS), "echo:via loop()!");
    await peer.finish();
    assertEquals(await child.exit(), 0);
  },
);

/** Sets the LISTEN_* variables for one in-process call (they are restored after). */
function withEnv(vars: Record<string, string>, fn: () => void): void {
  const names = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PIDFDID"];
  const saved = names.map((n) => Deno.env.get(n));
  try {
    for (const n of names) Deno.env.delete(n);
    for (const [k, v] of Object.entries(vars)) Deno.env.set(k, v);
    fn();
  } finally {
    names.forEach((n, i) =>
      saved[i] === undefined ? Deno.env.delete(n) : Deno.env.set(n, saved[i]!)
    );
  }
}

Deno.test("activation: sd_listen_fds' rules for LISTEN_PID, LISTEN_FDS and the unsetting", () => {
  // Nothing set: nothing handed.
  withEnv({}, () => assertEquals([listenFds(), listenFdsWithNames()], [[], []]));
  // For another process (a parent's variables inherited): nothing, and the variables go.
  withEnv({ LISTEN_PID: String(Deno.pid + 100000), LISTEN_FDS: "2" }, () => {
    assertEquals(listenFds(false), []);
    assertEquals(Deno.env.get("LISTEN_FDS"), "2", "kept with unsetEnvironment false");
    assertEquals(listenFds(), []);
    assertEquals([Deno.env.get("LISTEN_PID"), Deno.env.get("LISTEN_FDS")], [undefined, undefined]);
  });
  // LISTEN_PID ours but no LISTEN_FDS: nothing.
  withEnv({ LISTEN_PID: String(Deno.pid) }, () => assertEquals(listenFds(), []));
  // Malformed values are EINVAL, and the variables are removed all the same.
  const malformed: Record<string, string>[] = [
    { LISTEN_PID: "abc", LISTEN_FDS: "1" },
    { LISTEN_PID: "0", LISTEN_FDS: "1" },
    { LISTEN_PID: String(Deno.pid), LISTEN_FDS: "0" },
    { LISTEN_PID: String(Deno.pid), LISTEN_FDS: "-1" },
    { LISTEN_PID: String(Deno.pid), LISTEN_FDS: "two" },
    { LISTEN_PID: String(Deno.pid), LISTEN_PIDFDID: "x", LISTEN_FDS: "1" },
  ];
  for (const vars of malformed) {
    withEnv(vars, () => {
      const e = assertThrows(() => listenFdsWithNames(), OSError, "Invalid argument");
      assertEquals(e.code, "EINVAL", JSON.stringify(vars));
      assertEquals(Deno.env.get("LISTEN_PID"), undefined);
      assertEquals(Deno.env.get("LISTEN_FDNAMES"), undefined);
    });
  }
});

activationTest(
  "activation: names must match the fds; an fd that is not a socket is ENOTSOCK",
  async () => {
    // In a child, where fds 3 and up are what the shell gives it.
    const code = `
    import { listenFdsWithNames } from ${
      JSON.stringify(new URL("../mod.ts", import.meta.url).href)
    };
    try { listenFdsWithNames(); } catch (e) { console.log(e.code, e.message); }`;
    const run = async (fds: string, names: string) => {
      const out = await new Deno.Command("sh", {
        args: [
          "-c",
          `${fds} LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=${names} exec "$0" eval --no-check "$1"`,
          Deno.execPath(),
          code,
        ],
        env: { NO_COLOR: "1" },
      }).output();
      return dec.decode(out.stdout).trim() + dec.decode(out.stderr).trim();
    };
    const [mismatch, notSocket] = [
      await run("exec 3</dev/null;", "a:b"),
      await run("exec 3</dev/null;", "a"),
    ];
    assert(mismatch.startsWith("EINVAL") && mismatch.includes("LISTEN_FDNAMES"), mismatch);
    assert(notSocket.startsWith("ENOTSOCK") && notSocket.includes("fd 3"), notSocket);
  },
);
