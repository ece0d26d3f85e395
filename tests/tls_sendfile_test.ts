// Files sent through TLS: `sendFile` and AsyncChat's
// `pushWithProducer(new FileProducer(...))` on a TLS channel must go through
// OpenSSL, never `sendfile(2)` onto the TLS connection's fd. A 64 MiB file
// reaches a python3 `ssl` client and a `Deno.connectTls` client hash-exact on
// every poller; one plaintext byte on the wire would make either client's TLS
// layer refuse the stream.
import { assert, assertEquals } from "@std/assert";
import {
  AsyncChat,
  Dispatcher,
  DispatcherWithSend,
  FileProducer,
  type PollerName,
  Socket,
  type SocketMap,
  type SSLContext,
} from "../mod.ts";
import { assertNoFdLeak, POLLERS, python, pythonChild, serveWhile, sha256 } from "./_util.ts";
import { clientContext, serverContext, tlsCerts } from "./fixtures/tls_certs.ts";
import { Lines, run } from "./fixtures/subprocess.ts";

const certs = await tlsCerts();
const SIZE = 64 * 1024 * 1024;
const decoder = new TextDecoder();

const file = await Deno.makeTempFile({ prefix: "asyncore_tls_file_" });
const content = new Uint8Array(SIZE);
for (let off = 0; off < SIZE; off += 65536) {
  crypto.getRandomValues(content.subarray(off, off + 65536));
}
await Deno.writeFile(file, content);
const expected = await sha256(content);

/** Sends the file with `DispatcherWithSend.sendFile`, then closes once the peer does. */
class SendFileHandler extends DispatcherWithSend {
  static errors: unknown[] = [];
  constructor(sock: Socket, map: SocketMap) {
    super(sock, map);
    this.sendFile(file);
  }
  override handleRead(): void {
    this.recv(65536);
  }
  override handleClose(): void {
    this.close();
  }
  override handleError(error: unknown): void {
    SendFileHandler.errors.push(error);
    this.close();
  }
}

/** Sends the file with AsyncChat's `pushWithProducer(new FileProducer(...))`, then closes. */
class ChatFileHandler extends AsyncChat {
  constructor(sock: Socket, map: SocketMap) {
    super(sock, map);
    this.setTerminator(null);
    this.pushWithProducer(new FileProducer(file));
    this.closeWhenDone();
  }
  override collectIncomingData(): void {}
  override foundTerminator(): void {}
  override handleError(error: unknown): void {
    SendFileHandler.errors.push(error);
    this.close();
  }
}

type HandlerClass = new (sock: Socket, map: SocketMap) => Dispatcher;

class FileServer extends Dispatcher {
  constructor(readonly ctx: SSLContext, readonly Handler: HandlerClass, map: SocketMap) {
    super(null, map);
    this.createSocket();
    this.setReuseAddr();
    this.bind(["127.0.0.1", 0]);
    this.listen(16);
  }
  get port(): number {
    return (this.sock.getsockname() as [string, number])[1];
  }
  override handleAccepted(sock: Socket): void {
    new this.Handler(this.ctx.wrapSocket(sock, { serverSide: true }), this._map);
  }
}

const PY_CLIENT = `
import hashlib, socket, ssl, sys
port, size = int(sys.argv[1]), int(sys.argv[2])
ctx = ssl.create_default_context(cafile=sys.argv[3])
h, got = hashlib.sha256(), 0
with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost") as s:
    while got < size:
        chunk = s.recv(1 << 20)
        if not chunk: break
        h.update(chunk)
        got += len(chunk)
print(got, h.hexdigest())
`;

async function pythonClient(port: number): Promise<string> {
  const r = await run(python!, ["-c", PY_CLIENT, String(port), String(SIZE), certs.ca], {
    ms: 60_000,
  });
  return decoder.decode(r.stdout).trim() || r.stderr.trim().split("\n").pop()!;
}

async function denoClient(port: number): Promise<string> {
  const conn = await Deno.connectTls({ hostname: "localhost", port, caCerts: [certs.caPem] });
  const all = new Uint8Array(SIZE);
  let got = 0;
  try {
    while (got < SIZE) {
      const n = await conn.read(all.subarray(got));
      if (n === null) break;
      got += n;
    }
  } finally {
    conn.close();
  }
  return `${got} ${await sha256(all.subarray(0, got))}`;
}

async function check(poller: PollerName, Handler: HandlerClass): Promise<void> {
  await assertNoFdLeak(async () => {
    const map: SocketMap = new Map();
    SendFileHandler.errors = [];
    const ctx = serverContext(certs);
    const server = new FileServer(ctx, Handler, map);
    try {
      if (python) {
        assertEquals(
          await serveWhile(map, poller, pythonClient(server.port)),
          `${SIZE} ${expected}`,
        );
      }
      assertEquals(await serveWhile(map, poller, denoClient(server.port)), `${SIZE} ${expected}`);
      assertEquals(SendFileHandler.errors, []);
    } finally {
      for (const d of [...map.values()]) d.close();
      ctx.close();
    }
  });
}

for (const poller of POLLERS) {
  Deno.test(`tls sendfile(${poller}): sendFile of 64 MiB goes through TLS, hash-exact`, () =>
    check(poller, SendFileHandler));

  Deno.test(
    `tls sendfile(${poller}): AsyncChat pushWithProducer(FileProducer) of 64 MiB goes through TLS`,
    () => check(poller, ChatFileHandler),
  );
}

Deno.test({
  name: "tls sendfile: a blocking SSLSocket.sendfile reads and sends through TLS (python server)",
  ignore: !python,
  fn: () =>
    assertNoFdLeak(async () => {
      const py = `
import hashlib, socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
size = int(sys.argv[3])
with socket.create_server(("127.0.0.1", 0)) as ls:
    print(ls.getsockname()[1], flush=True)
    conn, _ = ls.accept()
    with ctx.wrap_socket(conn, server_side=True) as s:
        h, got = hashlib.sha256(), 0
        while got < size:
            chunk = s.recv(1 << 20)
            if not chunk: break
            h.update(chunk)
            got += len(chunk)
        s.sendall(f"{got} {h.hexdigest()}".encode())
`;
      await using peer = pythonChild(["-c", py, certs.cert, certs.key, String(SIZE)]);
      const lines = new Lines(peer.child.stdout);
      const [portLine] = (await lines.waitFor(/^\d+$/)) ?? [];
      assert(portLine, "the python server did not start");
      const ctx = clientContext(certs);
      const raw = new Socket();
      raw.connect(["127.0.0.1", Number(portLine)]);
      const tls = ctx.wrapSocket(raw, { serverHostname: "localhost" });
      assertEquals(tls.sendfile(file), SIZE);
      // The server answers once it has every byte: the blocking recv waits for it.
      assertEquals(decoder.decode(tls.recv(200)), `${SIZE} ${expected}`);
      tls.close();
      ctx.close();
    }),
});

Deno.test("tls sendfile: the temporary file goes", async () => {
  await Deno.remove(file);
});
