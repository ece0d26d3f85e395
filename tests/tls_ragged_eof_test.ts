// WrapSocketOptions.suppressRaggedEofs against a python3 ssl server that
// closes with and without close_notify, and what an SSLSocket refuses of the
// new socket calls (sendmsg, recvmsg, dup, batches, a timeout).
import { assert, assertEquals, assertThrows } from "@std/assert";
import {
  MessageBatch,
  SO_RCVTIMEO,
  SO_SNDTIMEO,
  Socket,
  socketpair,
  SOL_SOCKET,
  SSL_ERROR_EOF,
  SSLEOFError,
  type SSLSocket,
} from "../mod.ts";
import { encodeTimeval } from "../ffi/structs.ts";
import { clientContext, serverContext, tlsCerts } from "./fixtures/tls_certs.ts";
import { leakTest, python, PythonPeer } from "./_util.ts";

const dec = new TextDecoder();
const certs = await tlsCerts();

// Accepts two connections; says "hi" on each, then ends the first without
// close_notify (the fd closed under the TLS session) and the second cleanly.
const PY_TLS_SERVER = `
import os, socket, ssl, sys
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
srv = socket.create_server(("127.0.0.1", 0))
print(srv.getsockname()[1], flush=True)
for clean in (False, True):
    raw, _ = srv.accept()
    conn = ctx.wrap_socket(raw, server_side=True)
    conn.sendall(b"hi")
    conn.recv(1)  # the client says when to end
    if clean:
        conn.unwrap().close()
    else:
        os.close(conn.detach())
`;

/** A blocking TLS client of the python server. */
function connect(port: number, suppressRaggedEofs?: boolean): SSLSocket {
  const raw = new Socket();
  raw.connect(["127.0.0.1", port]);
  // The kernel's own timeouts bound every blocking TLS call (an SSLSocket takes no settimeout):
  // a peer that never answers fails the test with SSLWantReadError instead of hanging it.
  const tenSeconds = new Uint8Array(16);
  encodeTimeval(tenSeconds, 10);
  raw.setsockopt(SOL_SOCKET, SO_RCVTIMEO, tenSeconds);
  raw.setsockopt(SOL_SOCKET, SO_SNDTIMEO, tenSeconds);
  return clientContext(certs).wrapSocket(raw, {
    serverHostname: "localhost",
    suppressRaggedEofs,
  });
}

for (const suppress of [undefined, false] as const) {
  leakTest(
    `tls: suppressRaggedEofs ${suppress ?? "(default true)"}: an EOF without close_notify ${
      suppress === false ? "raises SSLEOFError" : "reads as the end"
    }; close_notify reads as the end`,
    async () => {
      await using peer = new PythonPeer(PY_TLS_SERVER, [certs.cert, certs.key]);
      const port = Number(await peer.line());
      const ragged = connect(port, suppress);
      try {
        assertEquals(ragged.suppressRaggedEofs, suppress ?? true);
        assertEquals(dec.decode(ragged.recv(16)), "hi");
        ragged.send("x");
        if (suppress === false) {
          const e = assertThrows(() => ragged.recv(16), SSLEOFError);
          assertEquals([e.errno, e.code], [SSL_ERROR_EOF, "SSL_ERROR_EOF"]);
          assert(e.message.startsWith("EOF occurred in violation of protocol"), e.message);
        } else {
          assertEquals(ragged.recv(16).length, 0);
        }
      } finally {
        ragged.close();
      }
      const clean = connect(port, suppress);
      try {
        assertEquals(dec.decode(clean.recv(16)), "hi");
        clean.send("x");
        assertEquals(clean.recv(16).length, 0, "close_notify is the end either way");
      } finally {
        clean.close();
      }
      await peer.finish();
    },
    !python,
  );
}

leakTest(
  "tls: an SSLSocket refuses sendmsg, recvmsg, recvfromInto, batches, dup and a timeout",
  () => {
    const [a, b] = socketpair();
    const tls = serverContext(certs).wrapSocket(a, {
      serverSide: true,
      doHandshakeOnConnect: false,
    });
    try {
      assertThrows(() => tls.sendmsg(["x"]), TypeError, "not allowed on an SSLSocket");
      assertThrows(() => tls.recvmsg(1), TypeError, "not allowed on an SSLSocket");
      assertThrows(() => tls.recvfromInto(new Uint8Array(1)), TypeError);
      assertThrows(() => tls.recvmmsgInto(new MessageBatch(1, 1)), TypeError);
      assertThrows(() => tls.sendmmsg(new MessageBatch(1, 1), 1), TypeError);
      assertThrows(() => tls.dup(), TypeError, "Can't dup() SSLSocket instances");
      assertThrows(() => tls.settimeout(1), TypeError);
      tls.settimeout(0);
      assertEquals(tls.gettimeout(), 0);
      tls.settimeout(null);
      assertEquals(tls.gettimeout(), null);
      const timed = new Socket();
      timed.settimeout(1);
      assertThrows(() => serverContext(certs).wrapSocket(timed, { serverSide: true }), TypeError);
      timed.close();
    } finally {
      tls.close();
      b.close();
    }
  },
);
