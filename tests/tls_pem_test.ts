// SSLContext.loadCertChain from PEM text (the options form, through OpenSSL's
// memory BIOs) beside Python's file form; getpeercert typed by binaryForm;
// `using` on an SSLSocket. Peers: python3's ssl module and openssl s_client.
import { assert, assertEquals, assertInstanceOf, assertMatch, assertThrows } from "@std/assert";
import { assertType, type IsExact } from "@std/testing/types";
import {
  type PeerCertificate,
  PROTOCOL_TLS_CLIENT,
  PROTOCOL_TLS_SERVER,
  type Socket,
  Socket as PlainSocket,
  type SocketMap,
  SSLContext,
  SSLError,
} from "../mod.ts";
import { assertNoFdLeak, EchoHandler, Listener, python, serveWhile } from "./_util.ts";
import { run, spawn, stop } from "./fixtures/subprocess.ts";
import { tlsCerts } from "./fixtures/tls_certs.ts";

const certs = await tlsCerts();
const text = (path: string) => Deno.readTextFileSync(path);
const decoder = new TextDecoder();

/** A TLS echo listener in `map` whose context is `ctx`. */
class TlsEcho extends Listener {
  ctx!: SSLContext;
  override handleAccepted(sock: Socket): void {
    new EchoHandler(this.ctx.wrapSocket(sock, { serverSide: true }), this.map);
  }
}

function tlsEcho(ctx: SSLContext): [TlsEcho, SocketMap] {
  const map: SocketMap = new Map();
  const server = new TlsEcho({ map });
  server.ctx = ctx;
  return [server, map];
}

const PY_CLIENT = `
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
with ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=15), server_hostname="localhost") as s:
    s.sendall(b"pem text")
    print(s.recv(100).decode(), s.getpeercert()["subject"][-1][0][1])
`;

/** python3 verifies the server against the test CA and is echoed; returns its line. */
async function pythonEcho(ctx: SSLContext): Promise<string> {
  const [server, map] = tlsEcho(ctx);
  try {
    const r = await serveWhile(
      map,
      "epoll",
      run(python!, ["-c", PY_CLIENT, String(server.port), certs.ca]),
    );
    assertEquals(r.code, 0, r.stderr);
    return decoder.decode(r.stdout).trim();
  } finally {
    for (const ch of [...map.values()]) ch.close();
  }
}

Deno.test({
  name: "loadCertChain({ cert, key }): PEM text serves python3, which verifies it",
  ignore: !python,
  async fn() {
    await assertNoFdLeak(async () => {
      const ctx = new SSLContext(PROTOCOL_TLS_SERVER);
      ctx.loadCertChain({ cert: text(certs.cert), key: text(certs.key) });
      assertEquals(await pythonEcho(ctx), "pem text localhost");
      // Bytes work as well as strings; the key may sit in the cert text (key omitted).
      const combined = new SSLContext(PROTOCOL_TLS_SERVER);
      combined.loadCertChain({
        cert: new TextEncoder().encode(text(certs.cert) + text(certs.key)),
      });
      assertEquals(await pythonEcho(combined), "pem text localhost");
      ctx.close();
      combined.close();
    });
  },
});

Deno.test({
  name: "loadCertChain({ ..., password }): an encrypted key opens with a string or a function",
  ignore: !python,
  async fn() {
    for (const password of ["secret", () => "secret"]) {
      const ctx = new SSLContext(PROTOCOL_TLS_SERVER);
      ctx.loadCertChain({ cert: text(certs.cert), key: text(certs.encKey), password });
      assertEquals(await pythonEcho(ctx), "pem text localhost");
      ctx.close();
    }
  },
});

/** How many certificates `openssl s_client -showcerts` receives from `ctx`'s server. */
async function chainLength(ctx: SSLContext): Promise<number> {
  const [server, map] = tlsEcho(ctx);
  try {
    const r = await serveWhile(
      map,
      "epoll",
      run("openssl", [
        "s_client",
        "-connect",
        `127.0.0.1:${server.port}`,
        "-servername",
        "localhost",
        "-CAfile",
        certs.ca,
        "-verify_return_error",
        "-showcerts",
      ], { input: new TextEncoder().encode("x\n"), ms: 15_000 }),
    );
    assertMatch(r.stderr + decoder.decode(r.stdout), /Verify return code: 0 \(ok\)/);
    return decoder.decode(r.stdout).split("-----BEGIN CERTIFICATE-----").length - 1;
  } finally {
    for (const ch of [...map.values()]) ch.close();
  }
}

Deno.test("loadCertChain({ cert }): the intermediates in the text are sent; a later load replaces them", async () => {
  const ctx = new SSLContext(PROTOCOL_TLS_SERVER);
  ctx.loadCertChain({ cert: text(certs.cert) + certs.caPem, key: text(certs.key) });
  assertEquals(await chainLength(ctx), 2, "the server certificate and the CA after it");
  ctx.loadCertChain({ cert: text(certs.cert), key: text(certs.key) });
  assertEquals(await chainLength(ctx), 1, "the earlier chain is gone");
  ctx.loadCertChain({ cert: text(certs.cert) + certs.caPem, key: text(certs.key) });
  ctx.loadCertChain(certs.cert, certs.key); // the file form clears it too
  assertEquals(await chainLength(ctx), 1);
  ctx.close();
});

Deno.test("loadCertChain({ ... }): bad text is a clear error, as the file form's", () => {
  const ctx = new SSLContext(PROTOCOL_TLS_SERVER);
  const cert = text(certs.cert);
  const reason = (fn: () => void) => {
    const e = assertThrows(fn, SSLError);
    return `${e.library}: ${e.reason}`;
  };
  // A path where PEM text belongs: said so, with the call that takes paths.
  assertThrows(
    () => ctx.loadCertChain({ cert: certs.cert }),
    TypeError,
    "cert must be PEM text",
  );
  assertThrows(
    () => ctx.loadCertChain({ cert, key: "key.pem" }),
    TypeError,
    "key must be PEM text",
  );
  assertThrows(
    () => ctx.loadCertChain({ cert: 42 as unknown as string }),
    TypeError,
    "cert must be a Uint8Array or a string",
  );
  // Swapped, not a pair, a wrong or missing password, a broken intermediate.
  assertEquals(
    reason(() => ctx.loadCertChain({ cert: text(certs.key), key: cert })),
    "PEM: NO_START_LINE",
  );
  assertEquals(
    reason(() => ctx.loadCertChain({ cert, key: text(certs.clientKey) })),
    "X509: KEY_VALUES_MISMATCH",
  );
  for (const password of [undefined, "wrong"]) {
    assertEquals(
      reason(() => ctx.loadCertChain({ cert, key: text(certs.encKey), password })),
      "PROVIDER: BAD_DECRYPT",
    );
  }
  const broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
  assertInstanceOf(
    assertThrows(() => ctx.loadCertChain({ cert: cert + broken, key: text(certs.key) })),
    SSLError,
  );
  assertThrows(
    () => ctx.loadCertChain({ cert, key: text(certs.key), password: 7 as unknown as string }),
    TypeError,
    "password must be a string",
  );
  // The context still loads a good pair afterwards.
  ctx.loadCertChain({ cert, key: text(certs.key) });
  ctx.close();
});

const PY_SERVER = `
import socket, ssl, sys
cert, key, ca = sys.argv[1:4]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ctx.load_verify_locations(ca)
ctx.verify_mode = ssl.CERT_REQUIRED
srv = socket.create_server(("127.0.0.1", 0))
srv.settimeout(15)
print(srv.getsockname()[1], flush=True)
c, _ = srv.accept()
c.settimeout(15)
t = ctx.wrap_socket(c, server_side=True, suppress_ragged_eofs=False)
print("client", dict(x[0] for x in t.getpeercert()["subject"])["commonName"], flush=True)
t.sendall(b"hello")
try:
    print("got", t.recv(100), flush=True)
    print("end", t.recv(100), flush=True)
except ssl.SSLEOFError:
    print("ragged EOF", flush=True)
`;

Deno.test({
  name:
    "a client certificate from PEM text; getpeercert typed by binaryForm; using sends close_notify",
  ignore: !python,
  async fn() {
    await assertNoFdLeak(async () => {
      const peer = spawn(python!, ["-u", "-c", PY_SERVER, certs.cert, certs.key, certs.ca]);
      try {
        const portLine = await peer.stdout.waitFor(/^\d+$/);
        if (!portLine) throw new Error("python3 did not start");
        const ctx = new SSLContext(PROTOCOL_TLS_CLIENT);
        ctx.loadVerifyLocations(null, null, certs.caPem);
        ctx.loadCertChain({ cert: text(certs.clientCert), key: text(certs.clientKey) });
        // Blocking calls, bounded by the peer's 15 s timeouts (it closes on expiry).
        let fd = -1;
        {
          const raw = new PlainSocket();
          raw.connect(["127.0.0.1", Number(portLine[0])]);
          using tls = ctx.wrapSocket(raw, { serverHostname: "localhost" }); // handshakes now
          fd = tls.fileno();
          const dict = tls.getpeercert();
          assertType<IsExact<typeof dict, PeerCertificate | null>>(true);
          const der = tls.getpeercert(true);
          assertType<IsExact<typeof der, Uint8Array | null>>(true);
          const either = tls.getpeercert(Math.random() < 2);
          assertType<IsExact<typeof either, PeerCertificate | Uint8Array | null>>(true);
          assertEquals(dict?.subject?.at(-1), [["commonName", "localhost"]]);
          assertEquals(dict?.subjectAltName, [["DNS", "localhost"], ["IP Address", "127.0.0.1"]]);
          assert(der !== null && der[0] === 0x30, "DER starts with a SEQUENCE");
          assertEquals(decoder.decode(tls.recv(100)), "hello");
          tls.sendall("bye");
        }
        assert(fd >= 0);
        assert(await peer.stdout.waitFor(/^end b''$/), peer.stdout.lines.join("\n"));
        assertEquals(peer.stdout.lines.slice(1), [
          "client asyncore client",
          "got b'bye'",
          "end b''", // close_notify, not a ragged EOF
        ]);
        ctx.close();
      } finally {
        await stop(peer);
      }
    });
  },
});
