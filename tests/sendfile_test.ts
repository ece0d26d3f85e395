// sendfile: Socket.sendfile (blocking, as Python's socket.sendfile) and
// files queued in the loop (DispatcherWithSend.sendFile, AsyncChat with a
// FileProducer), in order with the other output, served to python3 clients
// that hash what they get; on select, poll and epoll, fds counted.
import { assert, assertEquals, assertInstanceOf, assertThrows } from "@std/assert";
import {
  AsyncChat,
  closeAll,
  Dispatcher,
  DispatcherWithSend,
  errno,
  FileProducer,
  loopAsync,
  OSError,
  type PollerName,
  Socket,
  type SocketMap,
} from "../mod.ts";
import * as os from "../ffi/os.ts";
import { platform } from "../ffi/platform.ts";
import { assertNoFdLeak, concat, POLLERS, python, rng, sha256 } from "./_util.ts";

const fixtures = new URL("./fixtures/", import.meta.url).pathname;
const MiB = 1024 * 1024;
const BIG = 64 * MiB;
const encoder = new TextEncoder();

/** Seeded pseudo-random bytes, four at a time (fast enough for 64 MiB). */
function seededBytes(n: number, seed: number): Uint8Array {
  const r = rng(seed);
  const words = new Uint32Array(Math.ceil(n / 4));
  for (let i = 0; i < words.length; i++) words[i] = (r() * 4294967296) >>> 0;
  return new Uint8Array(words.buffer, 0, n);
}

const dir = Deno.makeTempDirSync({ prefix: "asyncore-sendfile-" });
const bigData = seededBytes(BIG, 13);
const bigPath = `${dir}/big.bin`;
Deno.writeFileSync(bigPath, bigData);
const smallData = seededBytes(3 * MiB + 17, 7);
const smallPath = `${dir}/small.bin`;
Deno.writeFileSync(smallPath, smallData);
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

/** Runs hash_client.py: `clients` connections reading `limit` bytes (-1: to the end). */
function hashClients(port: number, clients: number, limit: number): Promise<string[]> {
  const child = new Deno.Command(python!, {
    args: [`${fixtures}hash_client.py`, "127.0.0.1", String(port), String(clients), String(limit)],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  return child.output().then((out) => {
    const text = new TextDecoder().decode(out.stdout).trim();
    return text === "" ? [] : text.split("\n");
  });
}

/** A listener on an ephemeral loopback port whose connections get `serve(handlerSocket)`. */
class Server extends Dispatcher {
  readonly handlers: Dispatcher[] = [];
  constructor(map: SocketMap, readonly make: (sock: Socket) => Dispatcher) {
    super(null, map);
    this.createSocket();
    this.bind(["127.0.0.1", 0]);
    this.listen(64);
  }
  get port(): number {
    return ((this.socket as Socket).getsockname() as [string, number])[1];
  }
  override handleAccepted(sock: Socket): void {
    this.handlers.push(this.make(sock));
  }
}

/** Serves with `loopAsync` on `poller` until `clients` resolves; then closes everything. */
async function serve<T>(
  poller: PollerName,
  map: SocketMap,
  clients: Promise<T>,
): Promise<T> {
  const stop = new AbortController();
  const looping = loopAsync({ map, poller, timeout: 0.05, signal: stop.signal });
  try {
    return await clients;
  } finally {
    stop.abort();
    await looping;
    closeAll(map);
  }
}

/** A handler that sends HEAD, the file, TAIL, and closes when the peer does. */
class FileSender extends DispatcherWithSend {
  errors: unknown[] = [];
  closed = false;
  constructor(sock: Socket, map: SocketMap, path: string) {
    super(sock, map);
    this.send("HEAD\n");
    this.sendFile(path);
    this.send("TAIL\n");
  }
  override handleRead(): void {
    this.recv(4096);
  }
  override handleClose(): void {
    this.closed = true;
    this.close();
  }
  override handleError(error: unknown): void {
    this.errors.push(error);
    super.handleError(error);
  }
}

const framed = concat([encoder.encode("HEAD\n"), bigData, encoder.encode("TAIL\n")]);
const framedHash = await sha256(framed);

for (const poller of POLLERS) {
  for (const clients of [1, 10]) {
    Deno.test({
      name: `sendFile: 64 MiB between HEAD and TAIL to ${clients} client(s) at once, ${poller}`,
      ignore: !python,
      async fn() {
        await assertNoFdLeak(async () => {
          const map: SocketMap = new Map();
          const server = new Server(map, (s) => new FileSender(s, map, bigPath));
          const lines = await serve(poller, map, hashClients(server.port, clients, framed.length));
          assertEquals(lines, Array(clients).fill(`${framed.length} ${framedHash}`));
          for (const h of server.handlers as FileSender[]) assertEquals(h.errors, []);
        });
      },
    });
  }
}

Deno.test({
  name: "sendFile: a peer that goes away mid-file closes the channel and its file, no error",
  ignore: !python,
  async fn() {
    for (const poller of POLLERS) {
      await assertNoFdLeak(async () => {
        const map: SocketMap = new Map();
        const server = new Server(map, (s) => new FileSender(s, map, bigPath));
        const lines = await serve(
          poller,
          map,
          (async () => {
            const lines = await hashClients(server.port, 3, MiB);
            // Wait (bounded) until the server saw every reset.
            for (
              let i = 0;
              i < 500 && server.handlers.some((h) => !(h as FileSender).closed);
              i++
            ) {
              await new Promise((r) => setTimeout(r, 10));
            }
            return lines;
          })(),
        );
        assertEquals(lines.length, 3);
        for (const l of lines) assert(l.startsWith(`${MiB} `), l);
        for (const h of server.handlers as FileSender[]) {
          assert(h.closed, `${poller}: handler not closed`);
          assertEquals(h.errors, []);
          assertEquals(h._files, null);
        }
      });
    }
  },
});

Deno.test({
  name: "sendFile: offset and count, fd (left open) and path, bytes before and after in order",
  ignore: !python,
  async fn() {
    await assertNoFdLeak(async () => {
      const opener = new FileProducer(smallPath); // opens the path; its fd is lent below
      const fd = opener.fd;
      const map: SocketMap = new Map();
      class Mixed extends FileSender {
        constructor(sock: Socket) {
          super(sock, map, smallPath);
          this.sendFile(fd, { offset: 1000, count: 5000 });
          this.send("END");
        }
      }
      const server = new Server(map, (s) => new Mixed(s));
      const expected = concat([
        encoder.encode("HEAD\n"),
        smallData,
        encoder.encode("TAIL\n"),
        smallData.subarray(1000, 6000),
        encoder.encode("END"),
      ]);
      const lines = await serve("epoll", map, hashClients(server.port, 2, expected.length));
      assertEquals(lines, Array(2).fill(`${expected.length} ${await sha256(expected)}`));
      // Given as a number, the fd was borrowed: still open after the channels closed.
      assertEquals(os.tryPread(fd, new Uint8Array(4), 0), 4);
      opener.close();
    });
  },
});

Deno.test({
  name: "AsyncChat: a FileProducer goes by sendfile between pushes, then closeWhenDone",
  ignore: !python,
  async fn() {
    for (const poller of POLLERS) {
      await assertNoFdLeak(async () => {
        const map: SocketMap = new Map();
        class Chat extends AsyncChat {
          constructor(sock: Socket) {
            super(sock, map);
            this.push("HEAD\n");
            this.pushWithProducer(new FileProducer(bigPath, { count: 16 * MiB }));
            this.push("TAIL\n");
            this.closeWhenDone();
          }
        }
        const server = new Server(map, (s) => new Chat(s));
        const expected = concat([
          encoder.encode("HEAD\n"),
          bigData.subarray(0, 16 * MiB),
          encoder.encode("TAIL\n"),
        ]);
        const lines = await serve(poller, map, hashClients(server.port, 2, -1));
        assertEquals(lines, Array(2).fill(`${expected.length} ${await sha256(expected)}`));
      });
    }
  },
});

Deno.test({
  name: "Socket.sendfile: blocking, as Python's: path, fd, Deno.FsFile, pipe (read-and-send)",
  ignore: !python,
  async fn() {
    await assertNoFdLeak(async () => {
      const listener = new Socket();
      listener.bind(["127.0.0.1", 0]);
      listener.listen(8);
      const port = (listener.getsockname() as [string, number])[1];
      const expectedParts: Uint8Array[] = [];
      const clients = hashClients(port, 1, -1);
      const [conn] = listener.accept();
      // a path, whole
      assertEquals(conn.sendfile(smallPath), smallData.length);
      expectedParts.push(smallData);
      // an fd with offset and count (its position is left alone)
      const file = Deno.openSync(smallPath);
      const fdProducer = new FileProducer(smallPath);
      assertEquals(conn.sendfile(fdProducer.fd, 10, 100_000), 100_000);
      expectedParts.push(smallData.subarray(10, 100_010));
      // a count past the end stops at the end
      assertEquals(conn.sendfile(smallPath, smallData.length - 5, 1000), 5);
      expectedParts.push(smallData.subarray(smallData.length - 5));
      fdProducer.close();
      // a Deno.FsFile: read and sent; its position ends after what was sent
      assertEquals(conn.sendfile(file, 3, 70_000), 70_000);
      assertEquals(file.seekSync(0, Deno.SeekMode.Current), 70_003);
      expectedParts.push(smallData.subarray(3, 70_003));
      file.close();
      // a pipe: sendfile(2) refuses it (EINVAL), the fallback reads it
      const pipeData = seededBytes(300_000, 3);
      const [r, w] = pipeFds();
      // Write the pipe's bytes from this thread in pieces small enough not to block.
      let sentFromPipe = 0;
      for (let i = 0; i < pipeData.length; i += 60_000) {
        writeAll(w, pipeData.subarray(i, i + 60_000));
        sentFromPipe += conn.sendfile(r, 0, Math.min(60_000, pipeData.length - i));
      }
      assertEquals(sentFromPipe, pipeData.length);
      expectedParts.push(pipeData);
      closeFd(r);
      closeFd(w);
      conn.close();
      listener.close();
      const expected = concat(expectedParts);
      assertEquals(await clients, [`${expected.length} ${await sha256(expected)}`]);
    });
  },
});

Deno.test("sendfile: bad input is a clear error", async () => {
  await assertNoFdLeak(() => {
    const sock = new Socket();
    // a non-blocking socket: Python raises ValueError too
    const nb = new Socket(2, 1 | 0o4000);
    assertThrows(() => nb.sendfile(smallPath), TypeError, "blocking");
    nb.close();
    assertThrows(() => sock.sendfile(smallPath, -1), RangeError, "offset");
    assertThrows(() => sock.sendfile(smallPath, 0, 0), RangeError, "count");
    assertThrows(() => sock.sendfile(null as unknown as number), TypeError, "file must be");
    const missing = assertThrows(() => sock.sendfile(`${dir}/nope`), OSError);
    assertEquals(missing.errno, errno.ENOENT);
    assertEquals(missing.filename, `${dir}/nope`);
    // an fd that is not open
    const bad = assertThrows(() => new FileProducer(999_999), OSError);
    assertEquals(bad.errno, errno.EBADF);
    const bad2 = assertThrows(() => sock.trySendfile(999_999, 0, 10), OSError);
    assertEquals(bad2.errno, errno.EBADF);
    assertThrows(() => sock.trySendfile(0, -5, 10), RangeError);
    // a socket that is not connected
    const notConn = assertThrows(() => sock.sendfile(smallPath), OSError);
    assertInstanceOf(notConn, OSError);
    assert(notConn.errno === errno.ENOTCONN || notConn.errno === errno.EPIPE, notConn.message);
    assertThrows(() => new FileProducer(smallPath, { count: -1 }), RangeError);
    const file = Deno.openSync(smallPath);
    assertThrows(() => new FileProducer(file), TypeError, "Deno.FsFile");
    file.close();
    sock.close();
  });
});

// ---- raw pipe helpers (through the library's own os layer) ----
function pipeFds(): [number, number] {
  return os.pipe(false);
}
function writeAll(fd: number, data: Uint8Array): void {
  while (data.length > 0) data = data.subarray(os.write(fd, data));
}
function closeFd(fd: number): void {
  os.close(fd);
}

Deno.test({
  name: "sendfile: without sendfile(2) (platform.hasSendfile false) files are read and sent",
  ignore: !python,
  async fn() {
    const saved = platform.hasSendfile;
    platform.hasSendfile = false;
    try {
      await assertNoFdLeak(async () => {
        const map: SocketMap = new Map();
        const server = new Server(map, (s) => new FileSender(s, map, smallPath));
        const expected = concat([encoder.encode("HEAD\n"), smallData, encoder.encode("TAIL\n")]);
        const lines = await serve("poll", map, hashClients(server.port, 3, expected.length));
        assertEquals(lines, Array(3).fill(`${expected.length} ${await sha256(expected)}`));
        for (const h of server.handlers as FileSender[]) assertEquals(h.errors, []);
      });
    } finally {
      platform.hasSendfile = saved;
    }
  },
});
