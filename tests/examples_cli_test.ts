// The seven examples' shared command line (examples/_cli.ts), run as a user runs
// them: --help; one line and exit status 2 for a bad argument, file,
// certificate or key; one line and exit status 1 for a port in use; SIGINT and
// SIGTERM close every channel and exit 0; and each still does its job against
// a real peer (nc, python3, openssl s_client/s_server, curl as the reference).
// Every child is bounded by a timeout and reaped.
import { assert, assertEquals, assertMatch } from "@std/assert";
import { assertType, type IsExact } from "@std/testing/types";
import { AF_INET, type PollerName, SOCK_DGRAM, Socket } from "../mod.ts";
import { type Command, helpText, parseCommandLine, pollerFlag } from "../examples/_cli.ts";
import { hasCommand, python, randomBytes, sha256 } from "./_util.ts";
import {
  freePort,
  run,
  type RunResult,
  spawn,
  type Spawned,
  stop,
  waitForPort,
} from "./fixtures/subprocess.ts";
import { tlsCerts } from "./fixtures/tls_certs.ts";

const root = new URL("..", import.meta.url).pathname;
const decoder = new TextDecoder();
const certs = await tlsCerts();
const peers = new URL("./fixtures/cli_peers.py", import.meta.url).pathname;
const hasNc = hasCommand("nc");

/** Each example: its file, the permissions it runs with, whether it is a server. */
const EXAMPLES = {
  echo: { file: "echo.ts", perms: ["--allow-ffi"], server: true },
  echo_workers: { file: "echo_workers.ts", perms: ["--allow-ffi", "--allow-read"], server: true },
  chat_server: { file: "chat_server.ts", perms: ["--allow-ffi"], server: true },
  tls_echo: { file: "tls_echo.ts", perms: ["--allow-ffi"], server: true },
  http_client: { file: "http_client.ts", perms: ["--allow-ffi"], server: false },
  https_client: { file: "https_client.ts", perms: ["--allow-ffi"], server: false },
  // UDP: no connections to hold or a TCP port to take; tests/datagram_test.ts runs it with peers.
  udp_echo: { file: "udp_echo.ts", perms: ["--allow-ffi"], server: false, udp: true },
} as const;
type Prog = keyof typeof EXAMPLES;
const PROGS = Object.keys(EXAMPLES) as Prog[];
/** The examples that hold TCP connections (the signal tests hold two each). */
const TCP_PROGS = PROGS.filter((p) => !("udp" in EXAMPLES[p]));

function denoArgs(prog: Prog, args: string[]): string[] {
  const { file, perms } = EXAMPLES[prog];
  return ["run", "--no-prompt", ...perms, `examples/${file}`, ...args];
}

function example(prog: Prog, args: string[], ms = 30_000): Promise<RunResult> {
  return run(Deno.execPath(), denoArgs(prog, args), { cwd: root, env: { NO_COLOR: "1" }, ms });
}

/** The arguments that start `prog` as a server on `port` (the TLS one with the test pair). */
function serverArgs(prog: Prog, port: number, extra: string[] = []): string[] {
  const tls = prog === "tls_echo" ? [certs.cert, certs.key] : [];
  const workers = prog === "echo_workers" ? ["--workers=2"] : [];
  return [...tls, "127.0.0.1", String(port), ...workers, ...extra];
}

/** Asserts one line on stderr matching `want`, nothing on stdout, no stack trace. */
function assertOneLine(r: RunResult, status: number, want: RegExp, what: string): void {
  assertEquals(r.code, status, `${what}: ${r.stderr}`);
  const lines = r.stderr.trimEnd().split("\n");
  assertEquals(lines.length, 1, `${what}: ${r.stderr}`);
  assertMatch(lines[0], want, what);
  assert(!/\bat .*:\d+:\d+/.test(r.stderr), `${what}: no stack trace`);
  assertEquals(decoder.decode(r.stdout), "", what);
}

/** Runs `fn` over `items`, `width` at a time (each item starts a Deno). */
async function inBatches<T>(items: T[], width: number, fn: (item: T) => Promise<void>) {
  for (let i = 0; i < items.length; i += width) {
    await Promise.all(items.slice(i, i + width).map(fn));
  }
}

// ---- --help ----

for (const prog of PROGS) {
  Deno.test(`examples/${EXAMPLES[prog].file} --help: usage on stdout, exit status 0`, async () => {
    for (const flag of ["--help", "-h"]) {
      const r = await example(prog, [flag]);
      assertEquals(r.code, 0, r.stderr);
      assertEquals(r.stderr, "");
      const text = decoder.decode(r.stdout);
      assertMatch(
        text,
        new RegExp(`^Usage: deno run --allow-ffi.* examples/${EXAMPLES[prog].file} `),
      );
      assertMatch(text, /\n {2}-h, --help {2,}print this help and exit\n/);
    }
  });
}

// ---- bad arguments, files, certificates and keys: one line, exit status 2 ----

const missing = `${certs.dir}/no-such-file.pem`;
/** [example, arguments, what the one line says] */
const BAD: [Prog, string[], RegExp][] = [
  [
    "echo",
    ["127.0.0.1", "99999"],
    /^echo: bad port '99999': expected a number 0-65535 \(see --help\)$/,
  ],
  ["echo", ["127.0.0.1", "-1"], /^echo: unknown option '-1'/],
  ["echo", ["127.0.0.1", "80x"], /^echo: bad port '80x'/],
  ["echo", ["no-such-host.invalid", "0"], /^echo: unknown host: \[Errno -2\] /],
  ["echo", ["--bogus"], /^echo: unknown option '--bogus'/],
  ["echo", ["--poller=kqueue"], /^echo: --poller must be one of select, poll, epoll, not 'kqueue'/],
  [
    "echo",
    ["--poller", "kqueue"],
    /^echo: --poller must be one of select, poll, epoll, not 'kqueue'/,
  ],
  ["echo", ["--poller"], /^echo: --poller needs a value/],
  ["echo", ["a", "1", "extra"], /^echo: unexpected argument 'extra'/],
  ["echo", ["--proxy-protocol=v3"], /^echo: --proxy-protocol must be one of v1, v2, any/],
  // The production flags: socket activation without sockets, two sources of listeners, a backlog.
  [
    "echo",
    ["--systemd"],
    /^echo: --systemd: no sockets were passed \(LISTEN_FDS is not set for this process\)$/,
  ],
  [
    "echo",
    ["--systemd", "--takeover=/run/echo.sock"],
    /^echo: --systemd and --takeover both give the listeners: use one \(see --help\)$/,
  ],
  ["echo", ["--handoff"], /^echo: --handoff needs a value/],
  ["echo", ["--backlog=0"], /^echo: --backlog must be an integer >= 1 and <= 65535, not '0'/],
  ["udp_echo", ["127.0.0.1", "65536"], /^udp_echo: bad port '65536'/],
  ["udp_echo", ["--batch=0"], /^udp_echo: --batch must be an integer >= 1 and <= 1024, not '0'/],
  ["udp_echo", ["--size=x"], /^udp_echo: --size must be an integer/],
  ["udp_echo", ["--per-datagram=yes"], /^udp_echo: --per-datagram takes no value/],
  ["udp_echo", ["--join=10.0.0.1"], /^udp_echo: --join wants an IPv4 multicast group/],
  ["udp_echo", ["no-such-host.invalid", "0"], /^udp_echo: unknown host: /],
  [
    "echo_workers",
    ["--workers=0"],
    /^echo_workers: --workers must be an integer >= 1 and <= 1024, not '0'/,
  ],
  ["echo_workers", ["--workers", "two"], /^echo_workers: --workers must be an integer/],
  [
    "echo_workers",
    ["--backlog=1.5"],
    /^echo_workers: --backlog must be an integer >= 1, not '1\.5'/,
  ],
  ["echo_workers", ["--hello=yes"], /^echo_workers: --hello takes no value/],
  ["echo_workers", ["127.0.0.1", "65536"], /^echo_workers: bad port '65536'/],
  ["echo_workers", ["--bogus"], /^echo_workers: unknown option '--bogus'/],
  ["chat_server", ["127.0.0.1", "http"], /^chat_server: bad port 'http'/],
  ["chat_server", ["no-such-host.invalid", "0"], /^chat_server: unknown host: /],
  ["chat_server", ["--nope"], /^chat_server: unknown option '--nope'/],
  ["chat_server", ["--idle=0"], /^chat_server: --idle must be a number > 0, not '0'/],
  ["chat_server", ["--max-per-host", "x"], /^chat_server: --max-per-host must be an integer/],
  ["tls_echo", [], /^tls_echo: missing CERT \(see --help\)$/],
  ["tls_echo", [certs.cert], /^tls_echo: missing KEY/],
  ["tls_echo", [certs.cert, certs.key, "127.0.0.1", "99999"], /^tls_echo: bad port '99999'/],
  ["tls_echo", [certs.cert, certs.key, "--poller=x"], /^tls_echo: --poller must be one of/],
  [
    "tls_echo",
    [missing, certs.key],
    /^tls_echo: cannot load the certificate and key: \[Errno 2\] No such file or directory: '.*no-such-file\.pem'$/,
  ],
  [
    "tls_echo",
    [certs.cert, missing],
    /^tls_echo: cannot load the certificate and key: \[Errno 2\] No such file or directory: /,
  ],
  // Swapped: the key where the certificate goes, and the reverse.
  [
    "tls_echo",
    [certs.key, certs.cert],
    /^tls_echo: cannot load the certificate and key: .*server\.key holds no PEM certificate \(is it the key\? CERT comes first\): \[PEM: NO_START_LINE\] /,
  ],
  [
    "tls_echo",
    [certs.cert, certs.cert],
    /^tls_echo: cannot load the certificate and key: .*server\.pem holds no PEM private key /,
  ],
  // Not a pair; a directory (unreadable as a file); an encrypted key without its password.
  [
    "tls_echo",
    [certs.cert, certs.clientKey],
    /^tls_echo: cannot load the certificate and key: \[X509: KEY_VALUES_MISMATCH\] key values mismatch$/,
  ],
  [
    "tls_echo",
    [certs.dir, certs.key],
    /^tls_echo: cannot load the certificate and key: .* holds no PEM/,
  ],
  [
    "tls_echo",
    [certs.cert, certs.encKey],
    /^tls_echo: cannot load the certificate and key: \[PROVIDER: BAD_DECRYPT\] bad decrypt$/,
  ],
  ["http_client", [], /^http_client: missing URL \(see --help\)$/],
  ["http_client", ["https://127.0.0.1/"], /^http_client: only http:\/\/ URLs/],
  ["http_client", ["http://127.0.0.1:99999/"], /^http_client: Invalid URL/],
  [
    "http_client",
    ["http://127.0.0.1/", "/extra"],
    /^http_client: unexpected argument '\/extra' after a URL/,
  ],
  ["http_client", ["http://no-such-host.invalid/"], /^http_client: unknown host: \[Errno -2\] /],
  ["http_client", ["--poller", "x", "127.0.0.1"], /^http_client: --poller must be/],
  ["https_client", [], /^https_client: missing URL/],
  ["https_client", ["http://127.0.0.1/"], /^https_client: only https:\/\/ URLs/],
  ["https_client", ["https://no-such-host.invalid/"], /^https_client: unknown host: /],
  ["https_client", ["https://localhost/", "--cafile"], /^https_client: --cafile needs a value/],
  // `--cafile PATH` (a space, not `=`) is read, not dropped: the missing file is named.
  [
    "https_client",
    ["https://localhost/", "--cafile", missing],
    /^https_client: cannot load --cafile .*no-such-file\.pem: \[Errno 2\] No such file or directory/,
  ],
  [
    "https_client",
    [`--cafile=${certs.key}`, "https://localhost/"],
    /^https_client: cannot load --cafile .*server\.key: \[X509: NO_CERTIFICATE_OR_CRL_FOUND\] /,
  ],
  [
    "https_client",
    ["https://localhost/", "--unknown=1"],
    /^https_client: unknown option '--unknown'/,
  ],
];

for (const prog of PROGS) {
  const cases = BAD.filter(([p]) => p === prog);
  Deno.test(`examples/${EXAMPLES[prog].file}: ${cases.length} bad command lines, one line each, exit status 2`, async () => {
    await inBatches(cases, 4, async ([, args, want]) => {
      assertOneLine(await example(prog, args), 2, want, `${prog} ${args.join(" ")}`);
    });
  });
}

// ---- a port in use: one line, exit status 1 ----

for (const prog of PROGS.filter((p) => EXAMPLES[p].server)) {
  Deno.test(`examples/${EXAMPLES[prog].file} on a port in use: one line, exit status 1`, async () => {
    const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    try {
      const port = (taken.addr as Deno.NetAddr).port;
      const r = await example(prog, serverArgs(prog, port));
      const want = new RegExp(
        `^${prog}: \\[Errno 98\\] Address already in use: '127\\.0\\.0\\.1:${port}'$`,
      );
      assertOneLine(r, 1, want, prog);
    } finally {
      taken.close();
    }
  });
}

Deno.test("examples/udp_echo.ts on a UDP port in use: one line, exit status 1", async () => {
  const taken = new Socket(AF_INET, SOCK_DGRAM);
  try {
    taken.bind(["127.0.0.1", 0]);
    const port = (taken.getsockname() as [string, number])[1];
    const r = await example("udp_echo", ["127.0.0.1", String(port)]);
    const want = new RegExp(
      `^udp_echo: \\[Errno 98\\] Address already in use: '127\\.0\\.0\\.1:${port}'$`,
    );
    assertOneLine(r, 1, want, "udp_echo");
  } finally {
    taken.close();
  }
});

Deno.test("examples/echo.ts --takeover with nothing to take over: one line, exit status 1", async () => {
  const path = `${Deno.makeTempDirSync({ prefix: "asyncore-cli-" })}/none.sock`;
  const r = await example("echo", [`--takeover=${path}`]);
  assertOneLine(
    r,
    1,
    /^echo: \[Errno 2\] No such file or directory: '.*none\.sock' \(no process serves a handoff there\)$/,
    "takeover",
  );
});

// ---- SIGINT and SIGTERM: every channel closed, exit status 0 ----

/** Starts a server example on a free port (retrying if the port was taken meanwhile). */
async function startServer(prog: Prog, extra: string[] = []): Promise<Spawned & { port: number }> {
  let last = "";
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = freePort();
    const s = {
      ...spawn(Deno.execPath(), denoArgs(prog, serverArgs(prog, port, extra)), root),
      port,
    };
    if (await s.stdout.waitFor(/listening on 127\.0\.0\.1:\d+/, 1, 30_000)) return s;
    await stop(s);
    last = `${s.stdout.lines.join("\n")}\n${await s.stderr}`;
  }
  throw new Error(`${prog} did not start: ${last}`);
}

/** A python3 peer from cli_peers.py, with its output collected line by line. */
function peer(args: string[]): Spawned {
  return spawn(python!, ["-u", peers, ...args]);
}

/** How client `i` holds a connection to each server: host, port, CA file or "-", send, expect. */
function holdArgs(prog: Prog, port: number, i: number): string[] {
  const at = ["127.0.0.1", String(port)];
  switch (prog) {
    case "tls_echo":
      return [...at, certs.ca, `ping ${i}\n`, `ping ${i}\n`];
    case "chat_server":
      return [...at, "-", `user${i}\n`, `Hello user${i}`];
    default:
      return [...at, "-", `ping ${i}\n`, `ping ${i}\n`];
  }
}

for (const prog of TCP_PROGS) {
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    Deno.test({
      name: `examples/${
        EXAMPLES[prog].file
      } stops on ${sig}: its connections closed, exit status 0`,
      ignore: !python,
      async fn() {
        const peersUp: Spawned[] = [];
        let s: Spawned | null = null;
        try {
          if (EXAMPLES[prog].server) {
            s = await startServer(prog);
            // Two real clients, each holding a live connection (an exchange done first).
            for (let i = 0; i < 2; i++) {
              const p = peer([
                "hold",
                ...holdArgs(prog, (s as Spawned & { port: number }).port, i),
              ]);
              peersUp.push(p);
              if (!await p.stdout.waitFor(/^ready$/, 1, 20_000)) {
                await stop(p);
                throw new Error(`the peer did not connect: ${p.stdout.lines} ${await p.stderr}`);
              }
            }
          } else {
            // A server that accepts and never answers: the client waits on it.
            const p = peer(["silent"]);
            peersUp.push(p);
            const portLine = await p.stdout.waitFor(/^\d+$/, 1, 20_000);
            assert(portLine, "the silent peer did not start");
            const scheme = prog === "https_client" ? "https://localhost" : "http://127.0.0.1";
            const args = [`${scheme}:${portLine[0]}/`];
            if (prog === "https_client") args.push("--cafile", certs.ca);
            s = spawn(Deno.execPath(), denoArgs(prog, args), root);
            assert(await p.stdout.waitFor(/^request$/, 1, 20_000), "the client sent nothing");
          }
          s.child.kill(sig);
          const status = await s.child.status;
          await s.stdout.done;
          const stderr = await s.stderr;
          assertEquals([status.code, status.signal], [0, null], stderr);
          assertEquals(stderr, "");
          if (EXAMPLES[prog].server) {
            const stopLine = prog === "echo_workers"
              ? new RegExp(`^echo_workers: 2 workers stopped \\(${sig}\\)$`)
              : new RegExp(`stopping \\(${sig}\\): closing 3 channel\\(s\\)$`);
            assertEquals(s.stdout.matching(stopLine).length, 1, s.stdout.lines.join("\n"));
          }
          // Each peer saw its connection closed by the example.
          for (const p of peersUp) {
            assert(
              await p.stdout.waitFor(/^eof$/, 1, 20_000),
              `a peer was left open: ${p.stdout.lines}`,
            );
          }
        } finally {
          if (s) await stop(s);
          for (const p of peersUp) await stop(p);
        }
      },
    });
  }
}

// ---- each still does its job against a real peer ----

Deno.test({
  name: "examples/echo.ts echoes to nc",
  ignore: !hasNc,
  async fn() {
    const s = await startServer("echo");
    try {
      const r = await run("nc", ["-N", "-w", "10", "127.0.0.1", String(s.port)], {
        input: new TextEncoder().encode("hello from nc\n"),
      });
      assertEquals(decoder.decode(r.stdout), "hello from nc\n", r.stderr);
      assert(
        await s.stdout.waitFor(/^Incoming connection from 127\.0\.0\.1:\d+$/),
        "logged as host:port",
      );
    } finally {
      await stop(s);
    }
  },
});

Deno.test({
  name: "examples/echo.ts --systemd: systemd-socket-activate hands it the listener; nc is echoed",
  ignore: !hasNc || !hasCommand("systemd-socket-activate"),
  async fn() {
    const port = freePort();
    // systemd-socket-activate listens, and starts the example on the first connection.
    const s = spawn("systemd-socket-activate", [
      "-l",
      `127.0.0.1:${port}`,
      ...[Deno.execPath(), ...denoArgs("echo", ["--systemd"])],
    ], root);
    try {
      assert(await waitForPort(port), "systemd-socket-activate did not listen");
      const r = await run("nc", ["-N", "-w", "30", "127.0.0.1", String(port)], {
        input: new TextEncoder().encode("activated\n"),
        ms: 60_000,
      });
      assertEquals(decoder.decode(r.stdout), "activated\n", r.stderr);
      const line = await s.stdout.waitFor(/^echo server listening on /);
      assertEquals(line, [`echo server listening on 127.0.0.1:${port} (from systemd)`]);
      // Stopped as a service manager stops it: SIGTERM, exit status 0.
      assertEquals((await stop(s)).code, 0);
    } finally {
      await stop(s);
    }
  },
});

Deno.test({
  name:
    "examples/echo.ts --handoff/--takeover: the successor answers nc on the same port, the first exits 0",
  ignore: !hasNc,
  async fn() {
    const path = `${Deno.makeTempDirSync({ prefix: "asyncore-cli-" })}/echo.sock`;
    const first = await startServer("echo", [`--handoff=${path}`]);
    let second: Spawned | null = null;
    try {
      assert(await first.stdout.waitFor(/^echo server serving a handoff at /));
      second = spawn(
        Deno.execPath(),
        denoArgs("echo", [`--takeover=${path}`, `--handoff=${path}`]),
        root,
      );
      const taken = await second.stdout.waitFor(/taken over from/);
      assertEquals(taken, [
        `echo server listening on 127.0.0.1:${first.port} (taken over from ${path})`,
      ]);
      assertEquals((await first.child.status).code, 0, await first.stderr);
      assert(first.stdout.matching(/handed its listener\(s\) over/).length === 1);
      const r = await run("nc", ["-N", "-w", "10", "127.0.0.1", String(first.port)], {
        input: new TextEncoder().encode("after the switch\n"),
      });
      assertEquals(decoder.decode(r.stdout), "after the switch\n", r.stderr);
      assert(await second.stdout.waitFor(/^Incoming connection from 127\.0\.0\.1:\d+$/));
    } finally {
      await stop(first);
      if (second) await stop(second);
    }
  },
});

Deno.test({
  name: "examples/echo_workers.ts: both Workers answer nc on one port",
  ignore: !hasNc,
  async fn() {
    const s = await startServer("echo_workers", ["--hello"]);
    try {
      const seen = new Set<string>();
      for (let i = 0; i < 200 && seen.size < 2; i++) {
        const r = await run("nc", ["-N", "-w", "10", "127.0.0.1", String(s.port)], {
          input: new TextEncoder().encode(`ping ${i}\n`),
        });
        const m = /^hello from worker (\d) of 2 \(pid \d+\)\nping \d+\n$/.exec(
          decoder.decode(r.stdout),
        );
        assert(m, `unexpected answer ${JSON.stringify(decoder.decode(r.stdout))} ${r.stderr}`);
        seen.add(m[1]);
      }
      assertEquals([...seen].sort(), ["1", "2"]);
    } finally {
      await stop(s);
    }
  },
});

Deno.test({
  name: "examples/chat_server.ts: two python3 clients talk",
  ignore: !python,
  async fn() {
    const s = await startServer("chat_server");
    try {
      const script = `
import socket, sys
port = int(sys.argv[1])
def client(nick):
    c = socket.create_connection(("127.0.0.1", port), timeout=15)
    c.sendall(nick.encode() + b"\\n")
    return c
def read_until(c, text):
    got = b""
    while text.encode() not in got:
        chunk = c.recv(4096)
        if not chunk: break
        got += chunk
    return got.decode()
a = client("alice"); read_until(a, "Hello alice")
b = client("bob"); read_until(b, "Hello bob"); read_until(a, "bob has joined")
a.sendall(b"hi bob\\n")
print(read_until(b, "alice: hi bob\\n").splitlines()[-1])
`;
      const r = await run(python!, ["-c", script, String(s.port)]);
      assertEquals(decoder.decode(r.stdout).trim(), "alice: hi bob", r.stderr);
      assert(await s.stdout.waitFor(/^\+ bob \(127\.0\.0\.1:\d+\)$/), s.stdout.lines.join("\n"));
    } finally {
      await stop(s);
    }
  },
});

Deno.test("examples/tls_echo.ts: openssl s_client verifies and is echoed; a plaintext client is one log line", async () => {
  const s = await startServer("tls_echo");
  try {
    // s_client sends a line, and the echo comes back through TLS; closing its stdin ends it.
    const sc = spawn(
      "openssl",
      [
        "s_client",
        "-connect",
        `127.0.0.1:${s.port}`,
        "-CAfile",
        certs.ca,
        "-verify_return_error",
        "-quiet",
        "-no_ign_eof",
      ],
      undefined,
      { stdin: "piped" },
    );
    try {
      const writer = sc.child.stdin.getWriter();
      await writer.write(new TextEncoder().encode("hello over TLS\n"));
      const echoed = await sc.stdout.waitFor(/^hello over TLS$/, 1, 15_000);
      await writer.close();
      assert(echoed, `no echo: ${sc.stdout.lines.join("\n")}`);
      assertEquals((await sc.child.status).code, 0);
    } finally {
      await stop(sc);
    }
    // Plaintext HTTP at a TLS port: the failed handshake is one short line naming the peer.
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: s.port });
    await conn.write(new TextEncoder().encode("GET / HTTP/1.0\r\n\r\n"));
    const failed = await s.stdout.waitFor(/TLS handshake failed/);
    conn.close();
    assert(failed, s.stdout.lines.join("\n"));
    assertMatch(
      failed[0],
      /^127\.0\.0\.1:\d+: TLS handshake failed: \[SSL: HTTP_REQUEST\] http request$/,
    );
  } finally {
    await stop(s);
  }
});

/** Runs `fn` with `python3 -m http.server` serving a 200 KB file; gives its URL base. */
async function withHttpServer(fn: (base: string, file: Uint8Array) => Promise<void>) {
  const dir = Deno.makeTempDirSync({ prefix: "asyncore-cli-" });
  const file = randomBytes(200 * 1024, 9);
  Deno.writeFileSync(`${dir}/blob.bin`, file);
  const port = freePort();
  const server = spawn(python!, [
    "-u",
    "-m",
    "http.server",
    "--bind",
    "127.0.0.1",
    String(port),
    "--directory",
    dir,
  ]);
  try {
    assert(await server.stdout.waitFor(/Serving HTTP/, 1, 20_000), "http.server did not start");
    await fn(`http://127.0.0.1:${port}`, file);
  } finally {
    await stop(server);
    Deno.removeSync(dir, { recursive: true });
  }
}

/** The body of an HTTP response (after the blank line). */
function body(bytes: Uint8Array): Uint8Array {
  for (let i = 0; i + 3 < bytes.length; i++) {
    if (bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 && bytes[i + 3] === 10) {
      return bytes.subarray(i + 4);
    }
  }
  throw new Error("no end of headers");
}

Deno.test({
  name:
    "examples/http_client.ts fetches from python3 http.server what curl fetches; quiet when piped to a closed reader",
  ignore: !python || !hasCommand("curl"),
  async fn() {
    await withHttpServer(async (base, file) => {
      const r = await example("http_client", [`${base}/blob.bin`]);
      assertEquals(r.code, 0, r.stderr);
      const reference = await run("curl", ["-s", "--http1.0", `${base}/blob.bin`]);
      assertEquals(await sha256(body(r.stdout)), await sha256(reference.stdout));
      assertEquals(await sha256(reference.stdout), await sha256(file));
      // Like `| head -c 100`: the reader closes after a little; no "Broken pipe" on stderr.
      const piped = await run("bash", [
        "-c",
        `"${Deno.execPath()}" run --allow-ffi examples/http_client.ts ${base}/blob.bin | head -c 100 >/dev/null; echo "status \${PIPESTATUS[0]}"`,
      ], { cwd: root, ms: 30_000 });
      assertEquals(piped.stderr, "");
      assertEquals(decoder.decode(piped.stdout), "status 0\n");
    });
  },
});

Deno.test({
  name:
    "examples/https_client.ts fetches from openssl s_server what curl fetches; errors under its own name",
  ignore: !hasCommand("curl"),
  async fn() {
    const dir = Deno.makeTempDirSync({ prefix: "asyncore-cli-" });
    const file = randomBytes(200 * 1024, 9);
    Deno.writeFileSync(`${dir}/blob.bin`, file);
    const port = freePort();
    const server = spawn("openssl", [
      "s_server",
      "-accept",
      `127.0.0.1:${port}`,
      "-cert",
      certs.cert,
      "-key",
      certs.key,
      "-WWW",
      "-quiet",
    ], dir);
    try {
      const url = `https://localhost:${port}/blob.bin`;
      assert(await waitForPort(port), "openssl s_server did not start");
      const r = await example("https_client", [url, "--cafile", certs.ca]);
      assertEquals(r.code, 0, r.stderr);
      assertMatch(decoder.decode(r.stdout.subarray(0, 20)), /^HTTP\/1\.0 200 ok\r\n/);
      const reference = await run("curl", ["-s", "--cacert", certs.ca, url]);
      assertEquals(await sha256(body(r.stdout)), await sha256(reference.stdout));
      assertEquals(await sha256(reference.stdout), await sha256(file));
      // The system's CA store does not trust the test CA: one line under https_client's name.
      const bad = await example("https_client", [url]);
      assertOneLine(bad, 1, /^https_client: \[SSL: CERTIFICATE_VERIFY_FAILED\] /, "untrusted");
      const piped = await run("bash", [
        "-c",
        `"${Deno.execPath()}" run --allow-ffi examples/https_client.ts ${url} --cafile ${certs.ca} | head -c 100 >/dev/null; echo "status \${PIPESTATUS[0]}"`,
      ], { cwd: root, ms: 30_000 });
      assertEquals(piped.stderr, "");
      assertEquals(decoder.decode(piped.stdout), "status 0\n");
    } finally {
      await stop(server);
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

// ---- the table, in-process: typed values, and room for the flags echo.ts will get ----

Deno.test("parseCommandLine: a table's flags come back typed, in both spellings", () => {
  const spec = {
    prog: "echo",
    file: "examples/echo.ts",
    summary: "An echo server.",
    arguments: [
      { name: "host", help: "where", default: "localhost" },
      { name: "port", help: "0-65535", default: "8080" },
    ],
    flags: {
      poller: pollerFlag("epoll"),
      systemd: { type: "boolean", help: "serve the sockets systemd passes (LISTEN_FDS)" },
      handoff: { type: "string", metavar: "PATH", help: "hand the listener over at PATH" },
      takeover: { type: "string", metavar: "PATH", help: "take the listener from PATH" },
      "proxy-protocol": { type: "choice", choices: ["v1", "v2", "any"], help: "PROXY headers" },
      idle: { type: "number", min: 0, exclusiveMin: true, default: 600, help: "seconds" },
    },
  } as const satisfies Command;
  const { args, flags } = parseCommandLine(spec, [
    "::1",
    "--systemd",
    "--handoff",
    "/run/echo.sock",
    "--takeover=/run/old.sock",
    "--proxy-protocol",
    "v2",
    "--idle=2.5",
  ]);
  assertType<IsExact<typeof flags.poller, PollerName>>(true);
  assertType<IsExact<typeof flags.systemd, boolean>>(true);
  assertType<IsExact<typeof flags.handoff, string | undefined>>(true);
  assertType<IsExact<typeof flags["proxy-protocol"], "v1" | "v2" | "any" | undefined>>(true);
  assertType<IsExact<typeof flags.idle, number>>(true);
  assertEquals(args, ["::1", "8080"]);
  assertEquals(flags, {
    poller: "epoll",
    systemd: true,
    handoff: "/run/echo.sock",
    takeover: "/run/old.sock",
    "proxy-protocol": "v2",
    idle: 2.5,
  });
  const help = helpText(spec);
  assertMatch(help, /\n {2}--proxy-protocol=VALUE {2,}PROXY headers: v1, v2, any\n/);
  assertMatch(help, /\n {2}--handoff=PATH {2,}hand the listener over at PATH\n/);
  assertMatch(help, /\n {2}--idle=N {2,}seconds \(default: 600\)\n/);
});
