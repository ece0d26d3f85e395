// The examples run exactly as a user runs them: `deno run --allow-ffi examples/...`
// in a subprocess, used from nc, a python3 socket client and Deno.connect.
import { assert, assertEquals, assertMatch, assertThrows } from "@std/assert";
import { type Address, formatAddress, loop, type SocketMap } from "../mod.ts";
import { HTTPClient, parseTarget } from "../examples/http_client.ts";
import {
  assertNoFdLeak,
  concat,
  hasCommand,
  pumpUntil,
  python,
  randomBytes,
  sha256,
} from "./_util.ts";
import {
  EXAMPLE_STOP_SIGNAL,
  exampleDeno,
  examplesOnWindows,
  freePort,
  hasIPv6Loopback,
  run,
  spawn,
  type Spawned,
  stop,
} from "./fixtures/subprocess.ts";
import { hasHaproxy, proxyClient, startHaproxy } from "./fixtures/proxy.ts";

const root = new URL("..", import.meta.url).pathname;
const decoder = new TextDecoder();
/** An nc with -N (shut the socket down at EOF on stdin), as OpenBSD netcat has. */
const hasNc = hasCommand("nc") && (() => {
  const r = new Deno.Command("nc", { args: ["-h"], stdout: "piped", stderr: "piped" })
    .outputSync();
  return /^\s*-N\b/m.test(decoder.decode(r.stdout) + decoder.decode(r.stderr));
})();

/**
 * Starts a server on a free port, retrying with another port when it exits
 * before printing a line matching `ready` (the port was taken meanwhile).
 */
async function startServer(
  command: string,
  args: (port: number) => string[],
  ready: RegExp,
  hostname = "127.0.0.1",
): Promise<Spawned & { port: number }> {
  let last = "";
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = freePort(hostname);
    const s = { ...spawn(command, args(port), root), port };
    if (await s.stdout.waitFor(ready)) return s;
    await stop(s);
    last = `${s.stdout.lines.join("\n")}\n${await s.stderr}`;
  }
  throw new Error(`server did not start: ${last}`);
}

const INCOMING = /^Incoming connection from 127\.0\.0\.1:(\d+)$/;

// Under Wine (.ci/windows.sh) the server is checked on both of Windows' pollers.
const ECHO_POLLERS = examplesOnWindows ? ["select", "poll"] : ["the default"];

for (const poller of ECHO_POLLERS) {
  Deno.test({
    name: `examples/echo.ts: serves nc, a python3 client and a Deno.connect client (${poller})`,
    async fn() {
      await assertNoFdLeak(async () => {
        const pollerArg = examplesOnWindows ? [`--poller=${poller}`] : [];
        const server = await startServer(
          exampleDeno,
          (
            port,
          ) => ["run", "--allow-ffi", "examples/echo.ts", "127.0.0.1", String(port), ...pollerArg],
          /^echo server listening on /,
        );
        try {
          assertEquals(
            server.stdout.lines[0],
            `echo server listening on 127.0.0.1:${server.port}`,
          );
          const clientPorts: number[] = [];

          // 1. nc: -N shuts the socket down at EOF on stdin, then reads until the server closes.
          if (hasNc) {
            const msg = new TextEncoder().encode("hello from nc\n");
            const r = await run("nc", ["-N", "-w", "10", "127.0.0.1", String(server.port)], {
              input: msg,
            });
            assertEquals(r.code, 0, r.stderr);
            assertEquals(decoder.decode(r.stdout), "hello from nc\n");
            assert(await server.stdout.waitFor(INCOMING, 1), "no Incoming line for nc");
          }

          // 2. python3: sends 300 KB from a thread while reading the echo back.
          if (python) {
            const script = `
import hashlib, random, socket, sys, threading
port, n = int(sys.argv[1]), int(sys.argv[2])
data = random.Random(7).randbytes(n)
s = socket.create_connection(("127.0.0.1", port), timeout=15)
t = threading.Thread(target=s.sendall, args=(data,))
t.start()
got = bytearray()
while len(got) < n:
    chunk = s.recv(65536)
    if not chunk:
        break
    got += chunk
t.join()
print(s.getsockname()[1], len(got), hashlib.sha256(data).hexdigest(), hashlib.sha256(got).hexdigest())
s.close()
sys.exit(0 if got == data else 1)
`;
            const n = 300_000;
            const r = await run(python, ["-c", script, String(server.port), String(n)]);
            assertEquals(r.code, 0, r.stderr + decoder.decode(r.stdout));
            const [port, len, sent, got] = decoder.decode(r.stdout).trim().split(" ");
            assertEquals(Number(len), n);
            assertEquals(got, sent);
            clientPorts.push(Number(port));
          }

          // 3. Deno.connect: the server is another process, so async I/O is fine here.
          {
            const data = randomBytes(256 * 1024, 11);
            const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
            clientPorts.push((conn.localAddr as Deno.NetAddr).port);
            const writing = (async () => {
              for (let off = 0; off < data.length;) off += await conn.write(data.subarray(off));
            })();
            const got = new Uint8Array(data.length);
            let n = 0;
            const deadline = performance.now() + 15_000;
            while (n < data.length && performance.now() < deadline) {
              const r = await conn.read(got.subarray(n));
              if (r === null) break;
              n += r;
            }
            await writing;
            conn.close();
            assertEquals(n, data.length);
            assertEquals(await sha256(got), await sha256(data));
          }

          const expected = (hasNc ? 1 : 0) + clientPorts.length;
          const incoming = await server.stdout.waitFor(INCOMING, expected);
          assert(
            incoming,
            `expected ${expected} Incoming lines: ${server.stdout.lines.join("\n")}`,
          );
          assertEquals(incoming.length, expected);
          const seen = incoming.map((l) => Number(INCOMING.exec(l)![1]));
          for (const p of clientPorts) assert(seen.includes(p), `no Incoming line for port ${p}`);
        } finally {
          const status = await stop(server, EXAMPLE_STOP_SIGNAL);
          // Stopped by our signal, cleanly (stopSignals), not exited on its own with an error.
          assertEquals([status.code, status.signal], [0, null], await server.stderr);
          assert(
            server.stdout.matching(new RegExp(`stopping \\(${EXAMPLE_STOP_SIGNAL}\\)`)).length ===
              1,
          );
        }
      });
    },
  });
}

Deno.test({
  name:
    "examples/echo.ts --proxy-protocol=any: behind HAProxy (send-proxy, send-proxy-v2) and nc, it prints the client's address from the header",
  ignore: !python || !hasHaproxy || !hasNc,
  async fn() {
    await assertNoFdLeak(async () => {
      const server = await startServer(
        Deno.execPath(),
        (port) => [
          "run",
          "--allow-ffi",
          "examples/echo.ts",
          "127.0.0.1",
          String(port),
          "--proxy-protocol=any",
        ],
        /^echo server listening on /,
      );
      try {
        // 1. HAProxy in front, a python3 client from 127.0.0.2: its own address is printed.
        for (const [i, serverOptions] of ["send-proxy", "send-proxy-v2"].entries()) {
          const front = freePort();
          await using _hp = await startHaproxy({
            bind: `127.0.0.1:${front}`,
            backend: server.port,
            serverOptions,
          });
          const [r] = await proxyClient(python!, "127.0.0.1", front, 100_000, {
            source: "127.0.0.2",
            seed: i,
          });
          assertEquals([r.got, r.gotSha], [r.sent, r.sentSha]);
          const line = `Incoming connection from ${formatAddress(r.local as Address)}`;
          assert(await server.stdout.waitFor(/^Incoming/, i + 1), "no Incoming line");
          assert(server.stdout.lines.includes(line), `${line} in ${server.stdout.lines}`);
        }
        // 2. nc with a hand-made v1 line and data after it in the same write.
        const input = new TextEncoder().encode(
          "PROXY TCP4 203.0.113.9 127.0.0.1 4321 80\r\nhello\n",
        );
        const r = await run("nc", ["-N", "-w", "10", "127.0.0.1", String(server.port)], { input });
        assertEquals([r.code, decoder.decode(r.stdout)], [0, "hello\n"], r.stderr);
        assert(await server.stdout.waitFor(/^Incoming connection from 203\.0\.113\.9:4321$/));
        assertEquals(server.stdout.matching(/^Incoming/).length, 3);
      } finally {
        const status = await stop(server);
        assertEquals([status.code, status.signal], [0, null], await server.stderr);
      }
    });
  },
});

/** Starts `python3 -m http.server` on `hostname` serving `dir`. */
function startHttpServer(dir: string, hostname = "127.0.0.1"): Promise<Spawned & { port: number }> {
  return startServer(
    python!,
    (port) => ["-u", "-m", "http.server", "--bind", hostname, String(port), "--directory", dir],
    /Serving HTTP on /,
    hostname,
  );
}

/** Splits an HTTP response at the blank line after the headers. */
function splitResponse(bytes: Uint8Array): [head: string, body: Uint8Array] {
  for (let i = 0; i + 3 < bytes.length; i++) {
    if (bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 && bytes[i + 3] === 10) {
      return [decoder.decode(bytes.subarray(0, i)), bytes.subarray(i + 4)];
    }
  }
  throw new Error(`no end of headers in ${bytes.length} bytes`);
}

for (
  const [label, hostname, urlHost] of [
    ["IPv4", "127.0.0.1", "127.0.0.1"],
    ["IPv6", "::1", "[::1]"],
  ] as const
) {
  Deno.test({
    name: `examples/http_client.ts: fetches a 200 KB binary file byte for byte (${label})`,
    ignore: !python || (hostname === "::1" && !hasIPv6Loopback()),
    async fn() {
      const dir = Deno.makeTempDirSync({ prefix: "asyncore-http-" });
      try {
        const file = randomBytes(200 * 1024, 3);
        Deno.writeFileSync(`${dir}/blob.bin`, file);
        await assertNoFdLeak(async () => {
          const server = await startHttpServer(dir, hostname);
          try {
            const url = `http://${urlHost}:${server.port}/blob.bin`;
            // Only --allow-ffi: the library and the example need nothing else.
            const r = await run(exampleDeno, [
              "run",
              "--allow-ffi",
              "examples/http_client.ts",
              url,
            ], { cwd: root });
            assertEquals(r.code, 0, r.stderr);
            const [head, body] = splitResponse(r.stdout);
            const lines = head.split("\r\n");
            assertMatch(lines[0], /^HTTP\/1\.0 200 /);
            assert(
              lines.some((l) => l.toLowerCase() === `content-length: ${file.length}`),
              head,
            );
            assertEquals(body.length, file.length);
            assertEquals(await sha256(body), await sha256(file));
            assertEquals(body, file);
          } finally {
            await stop(server);
          }
        });
      } finally {
        Deno.removeSync(dir, { recursive: true });
      }
    },
  });
}

Deno.test({
  name: "examples/http_client.ts: a missing file gives the 404 response; a refused port exits 1",
  ignore: !python,
  async fn() {
    const dir = Deno.makeTempDirSync({ prefix: "asyncore-http-" });
    try {
      const server = await startHttpServer(dir);
      try {
        const r = await run(exampleDeno, [
          "run",
          "--allow-ffi",
          "examples/http_client.ts",
          `http://127.0.0.1:${server.port}/no-such-file`,
        ], { cwd: root });
        assertEquals(r.code, 0, r.stderr);
        assertMatch(splitResponse(r.stdout)[0], /^HTTP\/1\.0 404 /);
      } finally {
        await stop(server);
      }
      const closed = freePort();
      const r = await run(exampleDeno, [
        "run",
        "--allow-ffi",
        "examples/http_client.ts",
        `http://127.0.0.1:${closed}/`,
      ], { cwd: root });
      assertEquals(r.code, 1);
      // stdout holds response bytes only: the error goes to stderr.
      assertEquals(r.stdout.length, 0);
      assertMatch(r.stderr, /Connection refused/);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test("examples/http_client.ts: parseTarget reads URLs and host + path", () => {
  assertEquals(parseTarget(["http://127.0.0.1:8000/file"]), ["127.0.0.1", 8000, "/file"]);
  assertEquals(parseTarget(["http://example.org"]), ["example.org", 80, "/"]);
  assertEquals(parseTarget(["http://[::1]:81/a/b?x=1&y"]), ["::1", 81, "/a/b?x=1&y"]);
  assertEquals(parseTarget(["example.org"]), ["example.org", 80, "/"]);
  assertEquals(parseTarget(["example.org", "/index.html"]), ["example.org", 80, "/index.html"]);
  assertThrows(() => parseTarget([]), TypeError, "usage");
  assertThrows(() => parseTarget(["https://example.org/"]), TypeError, "only http://");
});

Deno.test({
  name: "examples/http_client.ts: HTTPClient in-process, private map, every poller",
  ignore: !python,
  async fn() {
    const dir = Deno.makeTempDirSync({ prefix: "asyncore-http-" });
    try {
      const file = randomBytes(300 * 1024, 5);
      Deno.writeFileSync(`${dir}/f.bin`, file);
      const server = await startHttpServer(dir);
      try {
        await assertNoFdLeak(async () => {
          for (const poller of ["select", "poll", "epoll"] as const) {
            const map: SocketMap = new Map();
            const client = new HTTPClient("127.0.0.1", "/f.bin", server.port, map);
            const chunks: Uint8Array[] = [];
            client.sink = (d) => chunks.push(d.slice());
            // The server is another process: the synchronous loop may block.
            pumpUntil(() => {
              loop({ map, timeout: 0.05, count: 1, poller });
              return map.size === 0;
            }, { ms: 15_000, what: `the response (${poller})` });
            assertEquals(client.error, null);
            const [head, body] = splitResponse(concat(chunks));
            assertMatch(head, /^HTTP\/1\.0 200 /);
            assertEquals(await sha256(body), await sha256(file));
          }
        });
      } finally {
        await stop(server);
      }
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test("without --allow-ffi the user gets one sentence naming the flag", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", "examples/echo.ts", "127.0.0.1", "0"],
    cwd: new URL("..", import.meta.url).pathname,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr).trim();
  // The example reports the library's sentence as its one line, exit status 2.
  assertEquals(out.code, 2);
  assertEquals(
    stderr,
    "echo: asyncore needs access to libc through FFI: run deno with --allow-ffi",
  );
});
