// TLS over raw fds: our dispatchers as TLS servers and clients against real
// peers (Deno.connectTls/listenTls, python3 ssl, openssl s_client/s_server,
// curl), hostile peers, STARTTLS, ALPN, versions, many handshakes; every
// dispatcher test on every poller, with fd-leak checks and hashed data.
import { assert, assertEquals, assertMatch, assertRejects, assertThrows } from "@std/assert";
import {
  type Address,
  AsyncChat,
  callLater,
  CERT_NONE,
  createDefaultContext,
  Dispatcher,
  DispatcherWithSend,
  loop,
  PROTOCOL_TLS_SERVER,
  type Socket,
  type SocketMap,
  SSLCertVerificationError,
  SSLContext,
  SSLError,
  SSLSocket,
  SSLWantReadError,
} from "../mod.ts";
import { loadOpenSSL } from "../ffi/openssl.ts";
import {
  assertNoFdLeak,
  closeMap,
  delay,
  denoTlsEcho,
  POLLERS,
  python,
  randomBytes,
  serveWhile,
  sha256,
} from "./_util.ts";
import {
  clientContext as makeClientContext,
  serverContext as makeServerContext,
  tlsCerts,
} from "./fixtures/tls_certs.ts";
import { run } from "./fixtures/subprocess.ts";

const certs = await tlsCerts();
// Deno's first UnsafeCallback (the server's ALPN selector, made once per
// process) opens an fd of Deno's own: make it before any fd is counted.
serverContext().setAlpnProtocols(["warm-up"]);
const decoder = new TextDecoder();
const encoder = new TextEncoder();
const MiB = 1024 * 1024;

function serverContext(): SSLContext {
  return makeServerContext(certs);
}

function clientContext(): SSLContext {
  return makeClientContext(certs);
}

/** Echoes; records errors instead of logging them. */
class Echo extends DispatcherWithSend {
  static errors: unknown[] = [];
  events = 0;
  override handleReadEvent(): void {
    this.events++;
    super.handleReadEvent();
  }
  override handleWriteEvent(): void {
    this.events++;
    super.handleWriteEvent();
  }
  override handleRead(): void {
    const data = this.recv(65536);
    if (data.length > 0) this.send(data);
  }
  override handleClose(): void {
    this.close();
  }
  override handleError(error: unknown): void {
    Echo.errors.push(error);
    this.close();
  }
}

class TlsServer extends Dispatcher {
  readonly handlers: Echo[] = [];
  constructor(readonly ctx: SSLContext, map: SocketMap) {
    super(null, map);
    this.createSocket();
    this.setReuseAddr();
    this.bind(["127.0.0.1", 0]);
    this.listen(1024);
  }
  get port(): number {
    return ((this.socket as Socket).getsockname() as [string, number])[1];
  }
  override handleAccepted(sock: Socket): void {
    this.handlers.push(new Echo(this.ctx.wrapSocket(sock, { serverSide: true }), this._map));
  }
}

/** Writes all of `data` (`Conn.write` may take only part of it). */
async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  for (let off = 0; off < data.length;) off += await conn.write(data.subarray(off));
}

// ---- the binding ----

Deno.test("tls: importing mod.ts and running plain channels does not open OpenSSL", async () => {
  const code = `
    import { Dispatcher } from "${new URL("../mod.ts", import.meta.url).href}";
    import { opensslLoaded } from "${new URL("../ffi/openssl.ts", import.meta.url).href}";
    const d = new Dispatcher(); d.createSocket(); d.close();
    const maps = Deno.readTextFileSync("/proc/self/maps");
    console.log(opensslLoaded(), maps.includes("libssl.so"));`;
  const r = await run(Deno.execPath(), ["eval", "--quiet", code]);
  assertEquals(decoder.decode(r.stdout).trim(), "false false", r.stderr);
});

Deno.test("tls: a missing libssl is one clear error naming the library and the fix", () => {
  const e = assertThrows(() => loadOpenSSL("libssl_nonexistent.so.9", "libcrypto.so.3"));
  assertMatch((e as Error).message, /libssl_nonexistent\.so\.9.*apt-get install libssl3/);
});

Deno.test("tls: SSLContext defaults and bad input", () => {
  const c = new SSLContext();
  assertEquals([c.verifyMode, c.checkHostname, c.minimumVersion], [2, true, "TLSv1.2"]);
  const s = new SSLContext(PROTOCOL_TLS_SERVER);
  assertEquals([s.verifyMode, s.checkHostname], [CERT_NONE, false]);
  assertThrows(() => new SSLContext(3), RangeError);
  assertThrows(() => (c.verifyMode = CERT_NONE), TypeError);
  assertThrows(() => (c.minimumVersion = "TLSv1" as "TLSv1.2"), RangeError);
  assertThrows(() => c.setCiphers("NOPE-NOTHING"), SSLError, "No cipher can be selected");
  assertThrows(() => c.setAlpnProtocols([""]), RangeError);
  const missing = assertThrows(() => s.loadCertChain("/nonexistent/cert.pem"));
  assertEquals((missing as { code: string }).code, "ENOENT");
  assertThrows(() => s.loadCertChain(certs.cert, certs.encKey), SSLError);
  assertThrows(() => s.loadCertChain(certs.cert, certs.encKey, "wrong"), SSLError);
  s.loadCertChain(certs.cert, certs.encKey, "secret");
  s.loadCertChain(certs.cert, certs.encKey, () => "secret");
  c.loadVerifyLocations(null, null, certs.caPem);
  assertThrows(() => c.loadVerifyLocations(null, null, "not a certificate"), SSLError);
  assertThrows(() => c.loadVerifyLocations(), TypeError);
  const d = createDefaultContext();
  assertEquals([d.verifyMode, d.checkHostname], [2, true]);
  c.close();
  c.close();
  s.close();
});

// ---- blocking SSLSocket against real servers ----

async function withSServer<T>(
  extra: string[],
  fn: (port: number) => Promise<T>,
): Promise<T> {
  const { freePort } = await import("./fixtures/subprocess.ts");
  // s_server does not set SO_REUSEADDR: a port that a busy machine still has
  // in TIME_WAIT makes it exit at once, so a start that fails takes a new port.
  for (let attempt = 1;; attempt++) {
    const port = freePort();
    const child = new Deno.Command("openssl", {
      args: [
        "s_server",
        "-accept",
        `127.0.0.1:${port}`,
        "-cert",
        certs.cert,
        "-key",
        certs.key,
        "-www",
        "-quiet",
        ...extra,
      ],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    let exited = false;
    const status = child.status.then((st) => {
      exited = true;
      return st;
    });
    let up = false;
    for (let i = 0; i < 200 && !up && !exited; i++) {
      try {
        (await Deno.connect({ hostname: "127.0.0.1", port })).close();
        up = true;
      } catch {
        await delay(20);
      }
    }
    if (!up) {
      if (!exited) child.kill("SIGKILL");
      await status;
      if (attempt < 5) continue;
      throw new Error("openssl s_server did not start (5 ports tried)");
    }
    try {
      return await fn(port);
    } finally {
      if (!exited) child.kill("SIGTERM");
      await status;
    }
  }
}

Deno.test("tls: blocking client against openssl s_server: verification, hostname, cert dict", async () => {
  await withSServer(["-alpn", "h2,http/1.1"], async (port) => {
    const { Socket } = await import("../ffi/socket.ts");
    const ctx = clientContext();
    ctx.setAlpnProtocols(["http/1.1"]);
    const raw = new Socket();
    raw.connect(["127.0.0.1", port]);
    const t = ctx.wrapSocket(raw, { serverHostname: "localhost" });
    assertEquals(raw.fileno(), -1, "the wrapped socket gave up its fd");
    assertEquals(t.version(), "TLSv1.3");
    assertEquals(t.selectedAlpnProtocol(), "http/1.1");
    const cert = t.getpeercert() as Record<string, unknown>;
    assertEquals(cert.subject, [[["countryName", "XX"]], [["organizationName", "asyncore tests"]], [
      ["commonName", "localhost"],
    ]]);
    assertEquals(cert.subjectAltName, [["DNS", "localhost"], ["IP Address", "127.0.0.1"]]);
    assertEquals(cert.version, 3);
    assertMatch(String(cert.notAfter), /^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4} GMT$/);
    const der = t.getpeercert(true) as Uint8Array;
    assertEquals(der[0], 0x30);
    t.sendall("GET / HTTP/1.0\r\n\r\n");
    let text = "";
    for (;;) {
      const d = t.recv(65536);
      if (d.length === 0) break;
      text += decoder.decode(d);
    }
    assertMatch(text, /^HTTP\/1\.0 200 ok/);
    t.close();
    ctx.close();

    const cases: [string, SSLContext, RegExp][] = [
      ["wrong.example", clientContext(), /Hostname mismatch/],
      ["127.0.0.2", clientContext(), /IP address mismatch/],
      ["localhost", new SSLContext(), /unable to get local issuer/],
    ];
    for (const [host, c, re] of cases) {
      const s = new Socket();
      s.connect(["127.0.0.1", port]);
      const e = assertThrows(
        () => c.wrapSocket(s, { serverHostname: host }),
        SSLCertVerificationError,
      );
      assertMatch(e.verifyMessage, re);
      assert(e.verifyCode > 0);
      assertEquals(s.fileno(), -1);
    }
  });
});

// ---- our TLS echo server against real clients, on every poller ----

for (const poller of POLLERS) {
  Deno.test(`tls(${poller}): Deno.connectTls clients, 100 x 1 MiB hashed through our TLS echo server`, async () => {
    await assertNoFdLeak(async () => {
      const map: SocketMap = new Map();
      Echo.errors = [];
      const ctx = serverContext();
      const server = new TlsServer(ctx, map);
      const clients = 100;
      const work = Promise.all(Array.from({ length: clients }, async (_, i) => {
        const data = randomBytes(MiB, i + 1);
        return (await denoTlsEcho(certs.caPem, server.port, data)) === (await sha256(data));
      }));
      const ok = await serveWhile(map, poller, work);
      assertEquals(ok.filter(Boolean).length, clients);
      await serveWhile(map, poller, delay(50));
      assertEquals(Echo.errors, []);
      closeMap(map);
      ctx.close();
    });
  });

  Deno.test(
    `tls(${poller}): python ssl, openssl s_client and curl against our server; TLS 1.2 and 1.3; ALPN`,
    {
      ignore: !python,
    },
    async () => {
      await assertNoFdLeak(async () => {
        const map: SocketMap = new Map();
        Echo.errors = [];
        const ctx = serverContext();
        ctx.setAlpnProtocols(["h2", "echo/1"]);
        const server = new TlsServer(ctx, map);
        const py = `
import socket, ssl, sys, hashlib
port, ver = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=sys.argv[3])
ctx.maximum_version = getattr(ssl.TLSVersion, ver)
ctx.set_alpn_protocols(["echo/1", "x"])
data = bytes(range(256)) * 4096
with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost") as s:
    s.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = s.recv(65536)
        if not chunk: break
        got += chunk
    print(s.version(), s.selected_alpn_protocol(), got == data)
`;
        for (const ver of ["TLSv1_2", "TLSv1_3"]) {
          const r = await serveWhile(
            map,
            poller,
            run(python!, ["-c", py, String(server.port), ver, certs.ca]),
          );
          assertEquals(
            decoder.decode(r.stdout).trim(),
            `${ver.replace("_", ".")} echo/1 True`,
            r.stderr,
          );
        }
        const sc = await serveWhile(
          map,
          poller,
          run("openssl", [
            "s_client",
            "-connect",
            `127.0.0.1:${server.port}`,
            "-CAfile",
            certs.ca,
            "-verify_return_error",
            "-servername",
            "localhost",
            "-alpn",
            "h2",
            "-tls1_2",
          ], { input: encoder.encode("ping\n") }),
        );
        const out = decoder.decode(sc.stdout);
        assertMatch(out, /Protocol *: TLSv1\.2/);
        assertMatch(out, /Verify return code: 0 \(ok\)/);
        assertMatch(out, /ALPN protocol: h2/);
        assertEquals(Echo.errors, []);
        closeMap(map);
        ctx.close();
      });
    },
  );
}

/** Answers one HTTP request with `body`, then closes (close_notify). */
class HttpsResponder extends DispatcherWithSend {
  #seen = "";
  #replied = false;
  constructor(sock: SSLSocket, map: SocketMap, readonly body: Uint8Array) {
    super(sock, map);
  }
  override handleRead(): void {
    const d = this.recv(65536);
    this.#seen += decoder.decode(d);
    if (!this.#replied && this.#seen.includes("\r\n\r\n")) {
      this.#replied = true;
      this.send(`HTTP/1.0 200 OK\r\nContent-Length: ${this.body.length}\r\n\r\n`);
      this.send(this.body);
    }
  }
  override handleWrite(): void {
    super.handleWrite();
    if (this.#replied && this.outBuffer.length === 0) this.close();
  }
  override writable(): boolean {
    return super.writable() || this.#replied;
  }
  override handleClose(): void {
    this.close();
  }
}

for (const poller of POLLERS) {
  Deno.test(`tls(${poller}): curl --cacert fetches 2 MiB byte for byte from our HTTPS responder`, async () => {
    await assertNoFdLeak(async () => {
      const map: SocketMap = new Map();
      const ctx = serverContext();
      const body = randomBytes(2 * MiB, 7);
      class Server extends TlsServer {
        override handleAccepted(sock: Socket): void {
          new HttpsResponder(ctx.wrapSocket(sock, { serverSide: true }), map, body);
        }
      }
      const server = new Server(ctx, map);
      const r = await serveWhile(
        map,
        poller,
        run("curl", ["-sS", "--cacert", certs.ca, `https://localhost:${server.port}/`]),
      );
      assertEquals(r.code, 0, r.stderr);
      assertEquals(await sha256(r.stdout), await sha256(body));
      closeMap(map);
      ctx.close();
    });
  });
}

// ---- our TLS clients against real servers ----

for (const poller of POLLERS) {
  Deno.test(`tls(${poller}): our HTTPS client against python's HTTPS http.server, byte for byte`, {
    ignore: !python,
  }, async () => {
    const { HTTPSClient } = await import("../examples/https_client.ts");
    const dir = await Deno.makeTempDir();
    const body = randomBytes(300_000, 3);
    await Deno.writeFile(`${dir}/file.bin`, body);
    const py = `
import http.server, ssl, sys, functools
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[3])
h.log_message = lambda *a: None
srv = http.server.HTTPServer(("127.0.0.1", 0), h)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(srv.server_address[1], flush=True)
srv.serve_forever()
`;
    const child = new Deno.Command(python!, {
      args: ["-c", py, certs.cert, certs.key, dir],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    try {
      const reader = child.stdout.getReader();
      const { value } = await reader.read();
      reader.releaseLock();
      const port = Number(decoder.decode(value).trim());
      await assertNoFdLeak(() => {
        const map: SocketMap = new Map();
        const c = new HTTPSClient(clientContext(), "localhost", "/file.bin", port, map);
        const parts: Uint8Array[] = [];
        c.sink = (d) => parts.push(d.slice());
        loop({ map, poller, timeout: 0.05, count: 20000 });
        assertEquals(c.error, null);
        const all = decoder.decode(new Uint8Array(parts.flatMap((p) => [...p])).slice(0, 200));
        assertMatch(all, /^HTTP\/1\.0 200 OK/);
        const total = parts.reduce((n, p) => n + p.length, 0);
        assert(total > body.length, `got ${total} bytes`);
      });
    } finally {
      child.kill("SIGTERM");
      await child.status;
      await child.stdout.cancel().catch(() => {});
      await child.stderr.cancel().catch(() => {});
      await Deno.remove(dir, { recursive: true });
    }
  });

  Deno.test(`tls(${poller}): our client against Deno.listenTls: wrong host and expired cert fail, good one echoes`, async () => {
    const { HTTPClient } = await import("../examples/http_client.ts");
    void HTTPClient;
    const listeners = [certs.cert, certs.expired].map((cert) =>
      Deno.listenTls({
        hostname: "127.0.0.1",
        port: 0,
        cert: Deno.readTextFileSync(cert),
        key: Deno.readTextFileSync(certs.key),
      })
    );
    const serving = listeners.map(async (l) => {
      for await (const conn of l) {
        (async () => {
          try {
            const buf = new Uint8Array(65536);
            for (;;) {
              const n = await conn.read(buf);
              if (n === null) break;
              await writeAll(conn, buf.subarray(0, n));
            }
          } catch { /* a failed handshake */ }
          try {
            conn.close();
          } catch { /* closed */ }
        })();
      }
    });
    class Client extends DispatcherWithSend {
      got = new Uint8Array(0);
      error: unknown = null;
      connectedAt = -1;
      constructor(map: SocketMap, port: number, host: string, readonly data: Uint8Array) {
        super(null, map);
        this.createSocket();
        this.connect(["127.0.0.1", port]);
        this.startTls(clientContext(), { serverHostname: host });
      }
      override handleConnect(): void {
        this.connectedAt = this.got.length;
        this.send(this.data);
      }
      override handleRead(): void {
        const d = this.recv(65536);
        const n = new Uint8Array(this.got.length + d.length);
        n.set(this.got);
        n.set(d, this.got.length);
        this.got = n;
        if (this.got.length >= this.data.length) this.close();
      }
      override handleClose(): void {
        this.close();
      }
      override handleError(e: unknown): void {
        this.error = e;
        this.close();
      }
    }
    try {
      await assertNoFdLeak(async () => {
        const map: SocketMap = new Map();
        const port = (l: Deno.TlsListener) => (l.addr as Deno.NetAddr).port;
        const data = randomBytes(256 * 1024, 9);
        const good = new Client(map, port(listeners[0]), "localhost", data);
        const wrongHost = new Client(map, port(listeners[0]), "example.org", data);
        const expired = new Client(map, port(listeners[1]), "localhost", data);
        await serveWhile(
          map,
          poller,
          (async () => {
            while (map.size > 0) await delay(5);
          })(),
        );
        assertEquals(good.error, null);
        assertEquals(good.connectedAt, 0);
        assertEquals(await sha256(good.got), await sha256(data));
        assert(wrongHost.error instanceof SSLCertVerificationError, String(wrongHost.error));
        assertEquals(wrongHost.connectedAt, -1, "no handleConnect without a handshake");
        assert(expired.error instanceof SSLCertVerificationError, String(expired.error));
        assertMatch((expired.error as SSLCertVerificationError).verifyMessage, /expired/);
      });
    } finally {
      for (const l of listeners) l.close();
      await Promise.allSettled(serving);
    }
  });
}

// ---- hostile peers ----

for (const poller of POLLERS) {
  Deno.test(`tls(${poller}): plaintext, garbage, truncated and vanishing peers fail alone, no spin, no leak`, async () => {
    await assertNoFdLeak(async () => {
      const map: SocketMap = new Map();
      Echo.errors = [];
      const ctx = serverContext();
      ctx.handshakeTimeout = 0.5;
      const server = new TlsServer(ctx, map);
      const port = server.port;
      const work = (async () => {
        const plain = await Deno.connect({ hostname: "127.0.0.1", port });
        await plain.write(encoder.encode("GET / HTTP/1.0\r\n\r\n"));
        const garbage = await Deno.connect({ hostname: "127.0.0.1", port });
        await garbage.write(randomBytes(4096, 5));
        // A record header announcing 512 bytes, then 20 of them, then silence.
        const truncated = await Deno.connect({ hostname: "127.0.0.1", port });
        await truncated.write(
          new Uint8Array([0x16, 0x03, 0x01, 0x02, 0x00, ...randomBytes(20, 6)]),
        );
        const silent = await Deno.connect({ hostname: "127.0.0.1", port });
        const vanishing = await Deno.connect({ hostname: "127.0.0.1", port });
        await vanishing.write(new Uint8Array([0x16, 0x03, 0x01, 0x02, 0x00, 1, 2, 3]));
        vanishing.close();
        // A good client meanwhile.
        const data = randomBytes(200_000, 8);
        const ok = (await denoTlsEcho(certs.caPem, port, data)) === (await sha256(data));
        // The server answers plaintext and garbage with an alert and closes.
        const buf = new Uint8Array(4096);
        const answers = [];
        for (const c of [plain, garbage]) answers.push(await c.read(buf).catch(() => null));
        // Wait out the handshake timeout: the truncated and silent peers are closed.
        const closed = [];
        for (const c of [truncated, silent]) {
          const n = await Promise.race([
            c.read(buf).catch(() => null),
            delay(5000).then(() => "hung"),
          ]);
          closed.push(n);
        }
        for (const c of [plain, garbage, truncated, silent]) c.close();
        return { ok, answers, closed };
      })();
      const r = await serveWhile(map, poller, work);
      assert(r.ok, "the good client was served");
      assertEquals(r.closed, [null, null], "stalled handshakes were closed without a reply");
      await serveWhile(map, poller, delay(100));
      for (const h of server.handlers) {
        assertEquals(h.fileno(), null, `${h} closed`);
        assert(h.events < 50, `${h} had ${h.events} events: a busy loop`);
      }
      assert(Echo.errors.length >= 4, `errors: ${Echo.errors.map(String).join("; ")}`);
      const timedOut = Echo.errors.filter((e) => String(e).includes("timed out"));
      assertEquals(timedOut.length, 2, Echo.errors.map(String).join("; "));
      closeMap(map);
      ctx.close();
    });
  });
}

// ---- STARTTLS, doHandshakeOnConnect: false ----

/** A line protocol: "STARTTLS" upgrades, anything else is echoed. */
class StartTlsHandler extends DispatcherWithSend {
  buf = "";
  constructor(sock: Socket, map: SocketMap, readonly ctx: SSLContext) {
    super(sock, map);
  }
  override handleRead(): void {
    const d = this.recv(65536);
    if (this.socket instanceof SSLSocket) {
      if (d.length) this.send(d);
      return;
    }
    this.buf += decoder.decode(d);
    if (this.buf.includes("STARTTLS\r\n")) {
      this.send("220 go ahead\r\n");
      this.startTls(this.ctx, { serverSide: true });
    }
  }
  override handleClose(): void {
    this.close();
  }
}

for (const poller of POLLERS) {
  Deno.test(`tls(${poller}): STARTTLS with a python client and with our own client`, {
    ignore: !python,
  }, async () => {
    await assertNoFdLeak(async () => {
      const map: SocketMap = new Map();
      const ctx = serverContext();
      class Server extends TlsServer {
        override handleAccepted(sock: Socket): void {
          new StartTlsHandler(sock, map, ctx);
        }
      }
      const server = new Server(ctx, map);
      const py = `
import socket, ssl, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"STARTTLS\\r\\n")
line = b""
while not line.endswith(b"\\r\\n"): line += s.recv(1)
ctx = ssl.create_default_context(cafile=sys.argv[2])
t = ctx.wrap_socket(s, server_hostname="localhost")
t.sendall(b"secret words")
got = b""
while len(got) < 12: got += t.recv(100)
print(line.decode().strip(), got.decode(), t.version())
t.close()
`;
      const r = await serveWhile(
        map,
        poller,
        run(python!, ["-c", py, String(server.port), certs.ca]),
      );
      assertEquals(decoder.decode(r.stdout).trim(), "220 go ahead secret words TLSv1.3", r.stderr);

      // Our own client: plaintext, then startTls from handleRead.
      class Client extends DispatcherWithSend {
        got = "";
        upgraded = false;
        constructor() {
          super(null, map);
          this.createSocket();
          this.connect(["127.0.0.1", server.port]);
        }
        override handleConnect(): void {
          this.send("STARTTLS\r\n");
        }
        override handleRead(): void {
          const d = decoder.decode(this.recv(65536));
          if (!this.upgraded) {
            if (d.includes("220")) {
              this.upgraded = true;
              this.startTls(clientContext(), { serverHostname: "localhost" });
              this.send("hello over tls");
            }
            return;
          }
          this.got += d;
          if (this.got.length >= 14) this.close();
        }
        override handleClose(): void {
          this.close();
        }
      }
      const c = new Client();
      await serveWhile(
        map,
        poller,
        (async () => {
          while (c.fileno() !== null) await delay(2);
        })(),
      );
      assertEquals(c.got, "hello over tls");
      closeMap(map);
      ctx.close();
    });
  });

  Deno.test(`tls(${poller}): doHandshakeOnConnect false: the program drives doHandshake (CPython style)`, async () => {
    await assertNoFdLeak(async () => {
      const map: SocketMap = new Map();
      const ctx = serverContext();
      class Manual extends DispatcherWithSend {
        handshaking = true;
        wants: "read" | "write" = "read";
        override readable(): boolean {
          return !this.handshaking || this.wants === "read";
        }
        override writable(): boolean {
          return this.handshaking ? this.wants === "write" : this.outBuffer.length > 0;
        }
        step(): void {
          try {
            (this.socket as SSLSocket).doHandshake();
            this.handshaking = false;
          } catch (e) {
            if (e instanceof SSLWantReadError) this.wants = "read";
            else if (e instanceof SSLError && e.errno === 3) this.wants = "write";
            else throw e;
          }
        }
        override handleRead(): void {
          if (this.handshaking) return this.step();
          const d = this.recv(65536);
          if (d.length) this.send(d);
        }
        override handleWrite(): void {
          if (this.handshaking) return this.step();
          super.handleWrite();
        }
        override handleClose(): void {
          this.close();
        }
      }
      class Server extends TlsServer {
        override handleAccepted(sock: Socket): void {
          new Manual(ctx.wrapSocket(sock, { serverSide: true, doHandshakeOnConnect: false }), map);
        }
      }
      const server = new Server(ctx, map);
      const data = randomBytes(100_000, 4);
      const ok = await serveWhile(map, poller, denoTlsEcho(certs.caPem, server.port, data));
      assertEquals(ok, await sha256(data));
      closeMap(map);
      ctx.close();
    });
  });
}

// ---- many handshakes ----

// TLS_HANDSHAKES=10000 deno task test tests/tls_test.ts runs the long version.
const HANDSHAKES = Math.max(250, Number(Deno.env.get("TLS_HANDSHAKES") ?? 1000));

Deno.test(`tls(epoll): ${HANDSHAKES} handshakes between our own client and server: fds back, RSS flat`, async () => {
  await assertNoFdLeak(() => {
    const map: SocketMap = new Map();
    const sctx = serverContext();
    const cctx = clientContext();
    const server = new TlsServer(sctx, map);
    let finished = 0;
    class Once extends Dispatcher {
      constructor() {
        super(null, map);
        this.createSocket();
        this.connect(["127.0.0.1", server.port]);
        this.startTls(cctx, { serverHostname: "localhost" });
      }
      override handleConnect(): void {
        this.send("x");
      }
      override writable(): boolean {
        return false;
      }
      override handleRead(): void {
        if (this.recv(10).length > 0) {
          finished++;
          this.close();
        }
      }
      override handleClose(): void {
        this.close();
      }
    }
    const batch = (n: number) => {
      const start = finished;
      for (let i = 0; i < 50; i++) new Once();
      for (let passes = 0; finished < start + 50 && passes < 100_000; passes++) {
        loop({ map, poller: "epoll", timeout: 0.05, count: 1 });
      }
      // Let the server side see the closes.
      loop({ map, poller: "epoll", timeout: 0.01, count: 5 });
      void n;
    };
    const batches = Math.round(HANDSHAKES / 50);
    const warm = Math.max(2, Math.round(batches / 5));
    for (let i = 0; i < warm; i++) batch(i); // warm up
    const rssBefore = Deno.memoryUsage().rss;
    const t0 = performance.now();
    for (let i = warm; i < batches; i++) batch(i);
    const grown = Deno.memoryUsage().rss - rssBefore;
    const ms = performance.now() - t0;
    console.log(
      `  ${(batches - warm) * 50} handshakes measured: ${
        (ms / ((batches - warm) * 50) * 1000).toFixed(0)
      } µs each (client+server), RSS ${(grown / MiB).toFixed(1)} MiB`,
    );
    assertEquals(finished, batches * 50);
    for (let i = 0; i < 20 && map.size > 1; i++) {
      loop({ map, poller: "epoll", timeout: 0.01, count: 1 });
    }
    assertEquals(map.size, 1, "only the listener is left");
    assert(grown < 24 * MiB, `RSS grew ${(grown / MiB).toFixed(1)} MiB`);
    closeMap(map);
    sctx.close();
    cctx.close();
  });
});

for (const poller of POLLERS) {
  Deno.test(`tls(${poller}): AsyncChat lines over TLS; bytes OpenSSL holds reach a flow-controlled handler`, async () => {
    await assertNoFdLeak(async () => {
      const map: SocketMap = new Map();
      const ctx = serverContext();
      const lines: string[] = [];
      class Lines extends AsyncChat {
        constructor(sock: Socket) {
          super(sock, map);
          this.setTerminator("\n");
        }
        override collectIncomingData(data: Uint8Array): void {
          this._collectIncomingData(data);
        }
        override foundTerminator(): void {
          const line = decoder.decode(this._getData());
          lines.push(line);
          this.push(`${line.length}\n`);
        }
      }
      // Reads 10 bytes per handleRead and pauses between reads: a 16 KiB
      // record stays mostly inside OpenSSL, where no poller can see it.
      let slowGot = 0;
      let paused = false;
      class Slow extends Dispatcher {
        override readable(): boolean {
          return !paused;
        }
        override writable(): boolean {
          return false;
        }
        override handleRead(): void {
          slowGot += this.recv(10).length;
          paused = true;
          // Resume from outside any event of this channel, as flow control does.
          callLater(0.001, () => {
            paused = false;
            this.interestChanged();
          });
        }
        override handleClose(): void {
          this.close();
        }
      }
      let kind = "chat";
      class Server extends TlsServer {
        override handleAccepted(sock: Socket): void {
          const t = ctx.wrapSocket(sock, { serverSide: true });
          if (kind === "chat") new Lines(t);
          else new Slow(t, map);
        }
      }
      const server = new Server(ctx, map);
      const conn = await serveWhile(
        map,
        poller,
        Deno.connectTls({ hostname: "localhost", port: server.port, caCerts: [certs.caPem] }),
      );
      const want = Array.from({ length: 2000 }, (_, i) => "x".repeat(i % 97));
      const answers = serveWhile(
        map,
        poller,
        (async () => {
          let text = "";
          const buf = new Uint8Array(65536);
          while (text.split("\n").length <= want.length) {
            const n = await conn.read(buf);
            if (n === null) break;
            text += decoder.decode(buf.subarray(0, n));
          }
          return text;
        })(),
      );
      await writeAll(conn, encoder.encode(want.join("\n") + "\n")); // answers' loop serves meanwhile
      const text = await answers;
      assertEquals(lines, want);
      assertEquals(text, want.map((l) => `${l.length}\n`).join(""));
      conn.close();

      kind = "slow";
      const c2 = await serveWhile(
        map,
        poller,
        Deno.connectTls({ hostname: "localhost", port: server.port, caCerts: [certs.caPem] }),
      );
      // Written while the loop serves: Deno's TLS finishes its handshake lazily.
      await serveWhile(
        map,
        poller,
        (async () => {
          await writeAll(c2, randomBytes(16000, 2));
          for (let i = 0; i < 20_000 && slowGot < 16000; i++) await delay(1);
        })(),
      );
      assertEquals(slowGot, 16000);
      c2.close();
      await serveWhile(map, poller, delay(30));
      closeMap(map);
      ctx.close();
    });
  });
}

Deno.test("tls: getpeercert matches Python's dictionary; unwrap returns the plain socket", {
  ignore: !python,
}, async () => {
  const py = `
import ssl, json, sys
print(json.dumps(ssl._ssl._test_decode_cert(sys.argv[1])))
`;
  const r = await run(python!, ["-c", py, certs.cert]);
  const expected = JSON.parse(decoder.decode(r.stdout));
  const map: SocketMap = new Map();
  const ctx = serverContext();
  const server = new TlsServer(ctx, map);
  const { Socket } = await import("../ffi/socket.ts");
  const raw = new Socket();
  raw.connect(["127.0.0.1", server.port]);
  raw.setblocking(false);
  const t = clientContext().wrapSocket(raw, { serverHostname: "localhost" });
  for (let i = 0; i < 1000 && !t.handshakeDone; i++) {
    try {
      t.doHandshake();
    } catch (e) {
      if (!(e instanceof SSLError)) throw e;
    }
    loop({ map, timeout: 0.01, count: 1 });
  }
  const cert = t.getpeercert() as Record<string, unknown>;
  for (
    const key of [
      "subject",
      "issuer",
      "version",
      "serialNumber",
      "notBefore",
      "notAfter",
      "subjectAltName",
    ]
  ) {
    assertEquals(cert[key], expected[key], key);
  }
  t.send("ping");
  let echoed = "";
  for (let i = 0; i < 1000 && echoed.length < 4; i++) {
    loop({ map, timeout: 0.01, count: 1 });
    const n = t.tryRecvInto(new Uint8Array(16));
    if (n > 0) echoed += "ping".slice(0, n);
  }
  assertEquals(echoed, "ping");
  let plain: Socket | null = null;
  for (let i = 0; i < 1000 && plain === null; i++) {
    loop({ map, timeout: 0.01, count: 1 });
    try {
      plain = t.unwrap();
    } catch (e) {
      if (!(e instanceof SSLError)) throw e;
    }
  }
  assert(plain !== null && plain.fileno() >= 0);
  assertEquals(t.fileno(), -1);
  plain.close();
  closeMap(map);
  ctx.close();
});

Deno.test("tls: SSLSocket refuses misuse with clear errors", async () => {
  const { Socket } = await import("../ffi/socket.ts");
  const c = clientContext();
  const s = new Socket();
  assertThrows(() => c.wrapSocket(s), TypeError, "serverHostname");
  assertThrows(() => c.wrapSocket(s, { serverSide: true }), TypeError);
  assertThrows(() => c.wrapSocket(s, { serverHostname: "" }), TypeError);
  s.setblocking(false);
  const t = c.wrapSocket(s, { serverHostname: "localhost" });
  assertThrows(() => t.send("x", 1), RangeError);
  assertThrows(() => t.getpeercert(), Error, "handshake not done");
  assertEquals(t.version(), null);
  assertEquals(t.cipher(), null);
  t.close();
  t.close();
  assertRejects;
  c.close();
});

void ({} as Address);

// ---- the examples, run as a user runs them ----

Deno.test(
  "tls: examples/tls_echo.ts serves openssl s_client and python; https_client.ts fetches and verifies",
  {
    ignore: !python,
  },
  async () => {
    const root = new URL("..", import.meta.url).pathname;
    const { freePort, spawn, stop } = await import("./fixtures/subprocess.ts");
    const port = freePort();
    const server = spawn(Deno.execPath(), [
      "run",
      "--allow-ffi",
      "examples/tls_echo.ts",
      certs.cert,
      certs.key,
      "127.0.0.1",
      String(port),
    ], root);
    try {
      if (!await server.stdout.waitFor(/^TLS echo server listening/, 1, 30_000)) {
        server.child.kill("SIGKILL");
        throw new Error(`tls_echo.ts did not start: ${await server.stderr}`);
      }
      const py = `
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
with ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))), server_hostname="localhost") as s:
    s.sendall(b"hello, echo")
    print(s.recv(100).decode(), s.version())
`;
      const r = await run(python!, ["-c", py, String(port), certs.ca]);
      assertEquals(decoder.decode(r.stdout).trim(), "hello, echo TLSv1.3", r.stderr);
      const sc = await run("openssl", [
        "s_client",
        "-connect",
        `127.0.0.1:${port}`,
        "-CAfile",
        certs.ca,
        "-verify_return_error",
        "-brief",
      ], { input: encoder.encode("x\n") });
      assertMatch(sc.stderr, /Verification: OK/);
    } finally {
      await stop(server);
    }

    await withSServer([], async (sport) => {
      for (const poller of POLLERS) {
        const ok = await run(Deno.execPath(), [
          "run",
          "--allow-ffi",
          "examples/https_client.ts",
          `https://localhost:${sport}/`,
          `--cafile=${certs.ca}`,
          `--poller=${poller}`,
        ], { cwd: root });
        assertEquals(ok.code, 0, ok.stderr);
        assertMatch(decoder.decode(ok.stdout), /^HTTP\/1\.0 200 ok\r\n/);
      }
      // The system's CA store does not trust the test CA: verification fails, exit 1, stdout empty.
      const bad = await run(Deno.execPath(), [
        "run",
        "--allow-ffi",
        "examples/https_client.ts",
        `https://localhost:${sport}/`,
      ], { cwd: root });
      assertEquals(bad.code, 1);
      assertEquals(bad.stdout.length, 0);
      assertMatch(bad.stderr, /CERTIFICATE_VERIFY_FAILED/);
    });
  },
);

Deno.test(
  "tls(epoll): a server requiring client certificates accepts python's signed one, refuses none",
  {
    ignore: !python,
  },
  async () => {
    await assertNoFdLeak(async () => {
      const map: SocketMap = new Map();
      Echo.errors = [];
      const ctx = serverContext();
      ctx.verifyMode = 2; // CERT_REQUIRED
      ctx.loadVerifyLocations(certs.ca);
      const server = new TlsServer(ctx, map);
      const py = `
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
if len(sys.argv) > 3: ctx.load_cert_chain(sys.argv[3], sys.argv[4])
try:
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))), server_hostname="localhost") as s:
        s.sendall(b"who am i")
        print(s.recv(100).decode())
except (ssl.SSLError, OSError) as e:
    print("refused", type(e).__name__)
`;
      const withCert = await serveWhile(
        map,
        "epoll",
        run(python!, ["-c", py, String(server.port), certs.ca, certs.clientCert, certs.clientKey]),
      );
      assertEquals(decoder.decode(withCert.stdout).trim(), "who am i", withCert.stderr);
      const without = await serveWhile(
        map,
        "epoll",
        run(python!, ["-c", py, String(server.port), certs.ca]),
      );
      assertMatch(decoder.decode(without.stdout), /refused|^$/);
      await serveWhile(map, "epoll", delay(50));
      assert(
        Echo.errors.some((e) => e instanceof SSLError && /CERTIFICATE/.test(String(e.reason))),
        Echo.errors.map(String).join("; "),
      );
      closeMap(map);
      ctx.close();
    });
  },
);
