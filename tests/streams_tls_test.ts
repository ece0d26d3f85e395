// TLS through connect({ tls }) and listen({ tls }), against peers we did not
// write: Deno's own TLS both ways, python's ssl, openssl s_client. A failed
// verification rejects connect(); a failed handshake errors that one
// connection's streams while the listener and its other connections go on;
// closeWrite sends close_notify and reading goes on.
import { assert, assertEquals, assertInstanceOf, assertRejects } from "@std/assert";
import { connect, listen, SSLCertVerificationError, SSLContext, SSLError } from "../mod.ts";
import { PROTOCOL_TLS_SERVER } from "../tls/constants.ts";
import { acceptOne, loopSettled, portOf, readAll, writePieces } from "./_streams.ts";
import {
  hasCommand,
  leakTest,
  python,
  pythonChild,
  randomBytes,
  sha256,
  withTimeout,
} from "./_util.ts";
import { Lines } from "./fixtures/subprocess.ts";
import { clientContext, serverContext, tlsCerts } from "./fixtures/tls_certs.ts";

const certs = await tlsCerts();
const decoder = new TextDecoder();
const SIZE = 2 * 1024 * 1024;

leakTest("streams TLS: connect({ tls }) to Deno.listenTls, hashed echo", async () => {
  const server = Deno.listenTls({
    hostname: "127.0.0.1",
    port: 0,
    cert: await Deno.readTextFile(certs.cert),
    key: await Deno.readTextFile(certs.key),
  });
  const served = (async () => {
    const c = await server.accept();
    await c.readable.pipeTo(c.writable);
  })();
  const conn = await connect({
    hostname: "127.0.0.1",
    port: server.addr.port,
    tls: clientContext(certs),
    serverName: "localhost",
  });
  const data = randomBytes(SIZE, 31);
  const [, back] = await Promise.all([
    writePieces(conn.writable, data, 2),
    readAll(conn.readable),
  ]);
  assertEquals(await sha256(back), await sha256(data));
  await withTimeout(served, 10_000, "Deno's TLS pipe to end");
  server.close();
  await loopSettled();
});

leakTest("streams TLS: Deno.connectTls to listen({ tls }), hashed echo", async () => {
  const listener = listen({ hostname: "127.0.0.1", port: 0, tls: serverContext(certs) });
  const serving = (async () => {
    for await (const conn of listener) await conn.readable.pipeTo(conn.writable);
  })();
  const conn = await Deno.connectTls({
    hostname: "localhost",
    port: portOf(listener),
    caCerts: [certs.caPem],
  });
  const data = randomBytes(SIZE, 32);
  const [, back] = await Promise.all([
    (async () => {
      await writePieces(conn.writable, data, 3, false);
      await conn.closeWrite();
    })(),
    readAll(conn.readable),
  ]);
  assertEquals(await sha256(back), await sha256(data));
  listener.close();
  await withTimeout(serving, 10_000, "the listener's loop to end");
  await loopSettled();
});

leakTest("streams TLS: a certificate that does not verify rejects connect()", async () => {
  const listener = listen({ hostname: "127.0.0.1", port: 0, tls: serverContext(certs) });
  const accepted = acceptOne(listener);
  // Trusts nothing the server shows: the system's store does not hold the test CA.
  const untrusting = new SSLContext();
  const e = await assertRejects(
    () => connect({ hostname: "127.0.0.1", port: portOf(listener), tls: untrusting }),
    SSLCertVerificationError,
  );
  assert(e.verifyCode > 0);
  // A name the certificate does not hold.
  await assertRejects(
    () =>
      connect({
        hostname: "127.0.0.1",
        port: portOf(listener),
        tls: clientContext(certs),
        serverName: "example.org",
      }),
    SSLCertVerificationError,
    "Hostname mismatch",
  );
  // The server side's streams see the handshake fail.
  const server = await accepted;
  await assertRejects(() => readAll(server.readable), SSLError);
  listener.close();
  await loopSettled();
});

leakTest("streams TLS: a failed handshake errors that Conn only; others go on", async () => {
  const listener = listen({ hostname: "127.0.0.1", port: 0, tls: serverContext(certs) });
  const port = portOf(listener);
  const outcomes: Promise<string>[] = [];
  const serving = (async () => {
    for await (const conn of listener) {
      outcomes.push(
        conn.readable.pipeTo(conn.writable).then(
          () => "ok",
          (e) => e instanceof SSLError ? "SSLError" : `other: ${e}`,
        ),
      );
    }
  })();
  // A plaintext client: its handshake fails on the server.
  const plain = await Deno.connect({ hostname: "127.0.0.1", port });
  await plain.write(new TextEncoder().encode("GET / HTTP/1.0\r\n\r\n"));
  // Good clients beside it, before and after.
  const data = randomBytes(256 * 1024, 33);
  const good = async (seed: number) => {
    const c = await Deno.connectTls({ hostname: "localhost", port, caCerts: [certs.caPem] });
    const [, back] = await Promise.all([
      (async () => {
        await writePieces(c.writable, data, seed, false);
        await c.closeWrite();
      })(),
      readAll(c.readable),
    ]);
    return await sha256(back);
  };
  const hashes = await Promise.all([good(1), good(2)]);
  // The server closes the plaintext one (a reset, when its request was left unread).
  const junk = await readAll(plain.readable).catch((e) => {
    if (!(e instanceof Deno.errors.ConnectionReset)) throw e;
    return new Uint8Array(0);
  });
  assert(junk.length < 100, "the server answered plaintext with more than a TLS alert");
  assertEquals(hashes, [await sha256(data), await sha256(data)]);
  assertEquals(await good(3), await sha256(data));
  listener.close();
  await withTimeout(serving, 5000, "the listener's loop to end");
  const results = await withTimeout(Promise.all(outcomes), 10_000, "every pipe to end");
  assertEquals(results.filter((r) => r === "SSLError").length, 1, results.join(", "));
  assertEquals(results.filter((r) => r === "ok").length, 3, results.join(", "));
  await loopSettled();
});

leakTest(
  "streams TLS: closeWrite sends close_notify; python reads to the end and answers",
  async () => {
    const py = `
import hashlib, socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
srv = socket.create_server(("127.0.0.1", 0))
print(srv.getsockname()[1], flush=True)
raw, _ = srv.accept()
c = ctx.wrap_socket(raw, server_side=True, suppress_ragged_eofs=False)
h = hashlib.sha256()
n = 0
while True:
    b = c.recv(65536)
    if not b:
        break  # close_notify: a ragged EOF would have raised SSLEOFError
    h.update(b)
    n += len(b)
c.sendall(f"{n} {h.hexdigest()}\\n".encode())
c.unwrap()
c.close()
`;
    await using peer = pythonChild(["-c", py, certs.cert, certs.key]);
    const lines = new Lines(peer.child.stdout);
    const found = await lines.waitFor(/^\d+$/, 1, 30_000);
    assert(found, `python did not start: ${lines.lines.join(" | ")}`);
    const conn = await connect({
      hostname: "127.0.0.1",
      port: Number(found[0]),
      tls: clientContext(certs),
    });
    const data = randomBytes(SIZE + 5, 34);
    await writePieces(conn.writable, data, 6, false);
    await withTimeout(conn.closeWrite(), 10_000, "closeWrite");
    const answer = decoder.decode(await readAll(conn.readable));
    assertEquals(answer, `${data.length} ${await sha256(data)}\n`);
    conn.close();
    await loopSettled();
  },
  python === null,
);

leakTest(
  "streams TLS: openssl s_client against listen({ tls }); await using flushes before closing",
  async () => {
    const listener = listen({ hostname: "127.0.0.1", port: 0, tls: serverContext(certs) });
    const serving = (async () => {
      await using conn = await acceptOne(listener);
      const reader = conn.readable.getReader();
      const { value } = await withTimeout(reader.read(), 20_000, "s_client's line");
      const writer = conn.writable.getWriter();
      await writer.write(new TextEncoder().encode(decoder.decode(value).toUpperCase()));
      await writer.write(new Uint8Array(300_000).fill(0x2e)); // more than the queue's mark
      writer.releaseLock();
      reader.releaseLock();
    })();
    const out = await withTimeout(
      new Deno.Command("sh", {
        args: [
          "-c",
          `echo hello tls | openssl s_client -quiet -CAfile ${certs.ca} -verify_return_error ` +
          `-servername localhost -connect 127.0.0.1:${portOf(listener)}`,
        ],
        stdout: "piped",
        stderr: "piped",
      }).output(),
      30_000,
      "openssl s_client",
    );
    await serving;
    const text = decoder.decode(out.stdout);
    assert(text.startsWith("HELLO TLS\n"), text.slice(0, 80) + decoder.decode(out.stderr));
    assertEquals(text.length, "HELLO TLS\n".length + 300_000);
    listener.close();
    await loopSettled();
  },
  !hasCommand("openssl"),
);

leakTest("streams TLS: a client context given to listen() is a TypeError", async () => {
  let thrown: unknown;
  try {
    listen({ port: 0, tls: clientContext(certs) }).close();
  } catch (error) {
    thrown = error;
  }
  assertInstanceOf(thrown, TypeError);
  await assertRejects(
    () => connect({ port: 1, tls: new SSLContext(PROTOCOL_TLS_SERVER) }),
    TypeError,
  );
  await loopSettled();
});
