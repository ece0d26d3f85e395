// Dispatcher additions beyond asyncore: recvInto, the big-read path of recv,
// the read-only default of ignoreLogTypes, and urgent data that nobody reads.
import { assert, assertEquals, assertThrows } from "@std/assert";
import {
  type Address,
  AF_UNIX,
  callLater,
  Dispatcher,
  DispatcherWithSend,
  loop,
  Socket,
  type SocketMap,
} from "../mod.ts";
import {
  assertNoFdLeak,
  concat,
  cpuSeconds,
  EchoServer,
  leakTest,
  POLLERS,
  python,
  randomBytes,
  serveWhile,
  sha256,
  tempSocketPath,
} from "./_util.ts";
import { run } from "./fixtures/subprocess.ts";

const decoder = new TextDecoder();

const shared = new Uint8Array(65536);

/** Echoes with recvInto into one shared buffer. */
class RecvIntoEcho extends DispatcherWithSend {
  closes = 0;
  override handleRead(): void {
    const n = this.recvInto(shared);
    if (n > 0) this.send(shared.subarray(0, n));
  }
  override handleClose(): void {
    this.closes++;
    this.close();
  }
}

class Server extends Dispatcher {
  handlers: RecvIntoEcho[] = [];
  constructor(addr: Address, map: SocketMap) {
    super(null, map);
    this.createSocket(AF_UNIX);
    this.bind(addr);
    this.listen(8);
  }
  override handleAccepted(sock: Socket): void {
    this.handlers.push(new RecvIntoEcho(sock, this._map));
  }
}

/** Sends `data`, keeps every echoed chunk with recv (big reads keep their buffer). */
class Client extends DispatcherWithSend {
  got: Uint8Array[] = [];
  received = 0;
  constructor(addr: Address, map: SocketMap, readonly data: Uint8Array) {
    super(null, map);
    this.createSocket(AF_UNIX);
    this.connect(addr);
  }
  override handleConnect(): void {
    this.send(this.data);
  }
  override handleRead(): void {
    const chunk = this.recv(65536);
    this.got.push(chunk);
    this.received += chunk.length;
    if (this.received === this.data.length) this.close();
  }
  override handleClose(): void {
    this.close();
  }
}

for (const poller of POLLERS) {
  leakTest(`recvInto echoes 4 MiB exactly, and recv's chunks stay intact (${poller})`, async () => {
    const map: SocketMap = new Map();
    const path = tempSocketPath("recv-into");
    const server = new Server(path, map);
    const data = randomBytes(4 * 1024 * 1024, 7);
    const client = new Client(path, map, data);
    const deadline = performance.now() + 20_000;
    while (client.fileno() !== null && performance.now() < deadline) {
      loop({ timeout: 0.05, map, count: 10, poller });
    }
    // Each chunk recv returned is its own memory: later reads did not overwrite it.
    assertEquals(client.received, data.length);
    assertEquals(await sha256(concat(client.got)), await sha256(data));
    // The client's close reaches the server's handler as end of stream.
    while (server.handlers.some((h) => h.fileno() !== null) && performance.now() < deadline) {
      loop({ timeout: 0.05, map, count: 1, poller });
    }
    assertEquals(server.handlers.map((h) => h.closes), [1]);
    server.close();
    Deno.removeSync(path);
  });
}

leakTest("recvInto checks its arguments", () => {
  const map: SocketMap = new Map();
  const d = new Dispatcher(null, map);
  d.createSocket();
  assertThrows(() => d.recvInto(new Uint8Array(4), 5), RangeError);
  assertThrows(() => d.recvInto(new Uint8Array(4), -1), RangeError);
  assertThrows(() => d.recvInto([1, 2] as unknown as Uint8Array), TypeError);
  d.close();
  assert(map.size === 0);
});

Deno.test("the default ignoreLogTypes is shared and read-only; an assigned Set is free", () => {
  const a = new Dispatcher();
  const b = new Dispatcher();
  assert(a.ignoreLogTypes === b.ignoreLogTypes);
  assert(a.ignoreLogTypes.has("warning"));
  assertThrows(() => a.ignoreLogTypes.add("info"), TypeError, "assign a new Set");
  assertThrows(() => a.ignoreLogTypes.delete("warning"), TypeError);
  a.ignoreLogTypes = new Set(["info"]);
  a.ignoreLogTypes.add("error");
  assertEquals([...b.ignoreLogTypes], ["warning"]);
});

/**
 * A connected pair of Unix stream sockets (made through a listener at a temp
 * path): the accepted end, the connecting end, and what closes the
 * connecting end and the listener and removes the path.
 */
function unixPair(tag: string): [Socket, Socket, () => void] {
  const path = tempSocketPath(tag);
  const listener = new Socket(AF_UNIX);
  listener.bind(path);
  listener.listen(1);
  const peer = new Socket(AF_UNIX);
  peer.connect(path);
  const [accepted] = listener.accept();
  return [accepted, peer, () => {
    peer.close();
    listener.close();
    Deno.removeSync(path);
  }];
}

leakTest("small recv results are views of a shared slab that never overlap", async () => {
  const map: SocketMap = new Map();
  const [accepted, writer, removePair] = unixPair("pool");
  const reader = new Dispatcher(accepted, map);
  const data = randomBytes(4_000_000, 11);
  const kept: Uint8Array[] = [];
  const sizes = [1, 7, 64, 300, 1000, 4096, 3, 2048];
  let off = 0;
  for (let i = 0; off < data.length; i++) {
    const n = Math.min(sizes[i % sizes.length], data.length - off);
    writer.sendall(data.subarray(off, off + n));
    off += n;
    // Each send is read at once, so each recv returns exactly that piece.
    const got = reader.recv(65536);
    assertEquals(got.length, n);
    kept.push(got);
  }
  // Later reads did not overwrite earlier ones.
  assertEquals(await sha256(concat(kept)), await sha256(data));
  reader.close();
  removePair();
});

leakTest("epoll notices output queued straight into outBuffer between passes", () => {
  const map: SocketMap = new Map();
  const [accepted, peer, removePair] = unixPair("outbuf");
  const sender = new DispatcherWithSend(accepted, map);
  // The first pass registers the idle channel (nothing to write) and waits;
  // a timer then queues data by hand, without send(); the second pass of the
  // same loop() must want POLLOUT at once instead of waiting its 5 s.
  const timer = callLater(0.05, () => {
    sender.outBuffer.push(new TextEncoder().encode("queued by hand"));
  });
  const t0 = performance.now();
  try {
    loop({ timeout: 5, map, count: 2, poller: "epoll" });
  } finally {
    timer.cancel();
  }
  assert(performance.now() - t0 < 1000, "the write waited for the pass timeout");
  assertEquals(sender.outBuffer.length, 0);
  peer.setblocking(false);
  assertEquals(new TextDecoder().decode(peer.recv(100)), "queued by hand");
  sender.close();
  removePair();
});

// A peer's urgent byte, unread, keeps the fd exceptional: the default
// handleExpt drops it, so the loop goes back to sleep instead of spinning,
// and the stream around it arrives whole.
for (const poller of POLLERS) {
  Deno.test({
    name: `urgent data from a peer does not make the default handlers spin (${poller})`,
    ignore: !python,
    fn: () =>
      assertNoFdLeak(async () => {
        const map: SocketMap = new Map();
        const server = new EchoServer({ map });
        const py = `
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"before ")
s.send(b"!", socket.MSG_OOB)
time.sleep(0.5)
s.sendall(b"after")
s.shutdown(socket.SHUT_WR)
got = b""
while True:
    chunk = s.recv(100)
    if not chunk: break
    got += chunk
print(got.decode())
`;
        const cpu0 = cpuSeconds();
        const t0 = performance.now();
        const r = await serveWhile(map, poller, run(python!, ["-c", py, String(server.port)]));
        const cpu = cpuSeconds() - cpu0, wall = (performance.now() - t0) / 1000;
        assertEquals(decoder.decode(r.stdout).trim(), "before after", r.stderr);
        // Spinning would keep this process busy for the whole half second.
        assert(
          cpu < wall * 0.5,
          `the loop used ${cpu.toFixed(2)} s of CPU in ${wall.toFixed(2)} s`,
        );
        for (const d of [...map.values()]) d.close();
      }),
  });
}
