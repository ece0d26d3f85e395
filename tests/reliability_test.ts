// Reliability: peers that misbehave (resets, half-closes, idle and slow peers,
// servers that vanish), signals that interrupt the wait, and handlers that
// throw. Everything runs in a private map per test, over TCP and Unix sockets
// and over select, poll and epoll; every loop is bounded by a pass count and a
// deadline, and every test must leave no fd behind.
//
// The synchronous loop() blocks Deno's event loop, so peers are our own
// Socket objects, stepped from a loop timer between passes, our own
// Dispatchers in the same map, or python3 subprocesses.
import { assert, assertEquals, assertGreater, assertLessOrEqual, assertMatch } from "@std/assert";
import { stub } from "@std/testing/mock";
import {
  type Address,
  AF_INET,
  AF_UNIX,
  callEvery,
  closeAll,
  Dispatcher,
  DispatcherWithSend,
  encodeLinger,
  errno,
  ExitNow,
  loop,
  type PollerName,
  SHUT_WR,
  SO_LINGER,
  SOCK_NONBLOCK,
  SOCK_STREAM,
  Socket,
  type SocketMap,
  SOL_SOCKET,
} from "../mod.ts";
import {
  concat,
  EchoClient,
  leakTest,
  POLLERS,
  python,
  pythonChild,
  randomBytes,
  Recording,
  sha256,
  tempSocketPath,
} from "./_util.ts";

const FAMILIES = ["tcp", "unix"] as const;
type Family = typeof FAMILIES[number];

// ---- driving the loop ----

interface DriveOptions {
  /** Give up after this many milliseconds. */
  ms?: number;
  /** Give up after this many passes. */
  passes?: number;
  /** What is waited for, for the failure message. */
  what?: string;
  /** The longest wait of one pass, in seconds. */
  timeout?: number;
}

/**
 * Runs one `loop()` over `map` until `until()` (checked from a 2 ms loop
 * timer, so peers stepped inside it run between passes) returns true.
 * Bounded by `passes` and `ms`; throws when either runs out first.
 */
function drive(
  map: SocketMap,
  poller: PollerName,
  until: () => boolean,
  { ms = 5000, passes = 1_000_000, what = "condition", timeout = 0.05 }: DriveOptions = {},
): void {
  if (until()) return;
  const deadline = performance.now() + ms;
  let met = false;
  const timer = callEvery(0.002, () => {
    if (until()) {
      met = true;
      throw new ExitNow("condition met");
    }
    if (performance.now() > deadline) throw new ExitNow("deadline");
  });
  try {
    loop({ map, poller, timeout, count: passes });
  } catch (error) {
    if (!(error instanceof ExitNow)) throw error;
  } finally {
    timer.cancel();
  }
  if (!met && !until()) {
    throw new Error(`timed out waiting for ${what} (${poller}, ${ms} ms / ${passes} passes)`);
  }
}

// ---- addresses ----

interface Endpoint {
  family: number;
  addr: Address;
  cleanup(): void;
}

/** A loopback address to listen on for `family`, and what removes it afterwards. */
function endpoint(family: Family): Endpoint {
  if (family === "tcp") return { family: AF_INET, addr: ["127.0.0.1", 0], cleanup() {} };
  const path = tempSocketPath("rel");
  const dir = path.slice(0, path.lastIndexOf("/"));
  return {
    family: AF_UNIX,
    addr: path,
    cleanup: () => Deno.removeSync(dir, { recursive: true }),
  };
}

// ---- channels ----

/** A server-side channel: collects what it reads, echoes it when asked, counts closes. */
class ServerChannel extends DispatcherWithSend {
  readonly chunks: Uint8Array[] = [];
  received = 0;
  closes = 0;
  /** Bytes received when `handleClose` first ran. */
  receivedAtClose = -1;
  echo = false;
  reading = true;
  recvSize = 65536;

  override readable(): boolean {
    return this.reading;
  }

  override handleRead(): void {
    const data = this.recv(this.recvSize);
    if (data.length === 0) return;
    this.chunks.push(data);
    this.received += data.length;
    if (this.echo) this.send(data);
  }

  override handleClose(): void {
    this.closes++;
    if (this.receivedAtClose < 0) this.receivedAtClose = this.received;
    this.close();
  }

  data(): Uint8Array {
    return concat(this.chunks);
  }
}

/** A listener that hands every accepted socket to `make`, and keeps the channels. */
class Listener extends Dispatcher {
  readonly channels: Dispatcher[] = [];

  constructor(
    readonly map: SocketMap,
    ep: Endpoint,
    readonly make: (sock: Socket, map: SocketMap, index: number) => Dispatcher | null,
  ) {
    super(null, map);
    this.createSocket(ep.family, SOCK_STREAM);
    if (ep.family === AF_INET) this.setReuseAddr();
    this.bind(ep.addr);
    this.listen(64);
  }

  /** The bound address, with the real port. */
  address(): Address {
    return (this.socket as Socket).getsockname();
  }

  override handleAccepted(sock: Socket): void {
    const ch = this.make(sock, this.map, this.channels.length);
    if (ch !== null) this.channels.push(ch);
  }
}

function echoChannel(sock: Socket, map: SocketMap): ServerChannel {
  const ch = new ServerChannel(sock, map);
  ch.echo = true;
  return ch;
}

/** A non-blocking socket of our own, connected (or connecting) to `addr`. */
function peerSocket(family: number, addr: Address): Socket {
  const s = new Socket(family, SOCK_STREAM | SOCK_NONBLOCK);
  const err = s.connectEx(addr);
  if (err !== 0 && err !== errno.EINPROGRESS) {
    s.close();
    throw new Error(`connect failed: errno ${err}`);
  }
  return s;
}

/** Sends as much of `data[offset..]` as the socket takes now; returns the new offset. */
function pushSome(sock: Socket, data: Uint8Array, offset: number, max = 65536): number {
  while (offset < data.length) {
    const n = sock.trySend(data.subarray(offset, Math.min(data.length, offset + max)));
    if (n <= 0) break;
    offset += n;
  }
  return offset;
}

/** Reads what is there into `sink`; returns false at end of stream. */
function pullSome(sock: Socket, sink: Uint8Array[], max = 65536): boolean {
  const buf = new Uint8Array(max);
  for (;;) {
    const n = sock.tryRecvInto(buf);
    if (n === -1) return true;
    if (n === 0) return false;
    sink.push(buf.slice(0, n));
  }
}

/** Closes the socket with SO_LINGER {on, 0}: TCP sends a reset instead of a FIN. */
function resetClose(sock: Socket): void {
  sock.setsockopt(SOL_SOCKET, SO_LINGER, encodeLinger(true, 0));
  sock.close();
}

/** Every channel in `map` is registered under its own fd, and nothing closed lingers. */
function assertMapConsistent(map: SocketMap, closed: Dispatcher[] = []): void {
  for (const [fd, obj] of map) {
    assertEquals(obj.fileno(), fd, `${obj} is in the map under fd ${fd}`);
    assertEquals(obj.socket?.fileno(), fd, `${obj}'s socket`);
  }
  for (const obj of closed) {
    assertEquals(obj.fileno(), null, `${obj} still has an fd`);
    assert(![...map.values()].includes(obj), `${obj} is still in the map`);
  }
}

// ---- a peer resets the connection in the middle of a transfer ----

for (const family of FAMILIES) {
  for (const poller of POLLERS) {
    for (const direction of ["download", "upload"] as const) {
      leakTest(
        `reliability: a peer that resets mid-${direction} closes its channel, others are served (${family}, ${poller})`,
        async () => {
          const ep = endpoint(family);
          const map: SocketMap = new Map();
          const blob = randomBytes(4 << 20, 11);
          const sockets: Socket[] = [];
          try {
            const listener = new Listener(map, ep, (sock, m, i) => {
              if (i > 0) return echoChannel(sock, m);
              const ch = new ServerChannel(sock, m);
              // Download: the server has 4 MiB to send. Upload: it reads in small bites.
              if (direction === "download") ch.send(blob);
              else ch.recvSize = 4096;
              return ch;
            });
            const addr = listener.address();
            const peer = peerSocket(ep.family, addr);
            sockets.push(peer);
            const got: Uint8Array[] = [];
            let sent = 0;
            let moved = 0;
            drive(map, poller, () => {
              if (listener.channels.length === 0) return false;
              if (direction === "download") {
                pullSome(peer, got);
                moved = got.reduce((n, c) => n + c.length, 0);
              } else {
                sent = pushSome(peer, blob, sent);
                moved = (listener.channels[0] as ServerChannel).received;
              }
              return moved >= 256 * 1024;
            }, { what: "the transfer to get going" });
            const victim = listener.channels[0] as ServerChannel;
            assertEquals(victim.closes, 0);
            if (direction === "download") {
              assertGreater(victim.outBuffer.length, 0, "the transfer is still under way");
            }

            // One client served before the reset, one after.
            const before = new EchoClient({
              map,
              family: ep.family,
              addr,
              payload: randomBytes(100_000, 12),
            });
            drive(map, poller, () => before.done || before.closes > 0, { what: "client 1" });
            resetClose(peer);
            drive(map, poller, () => victim.closes > 0, { what: "handleClose after the reset" });
            const after = new EchoClient({
              map,
              family: ep.family,
              addr,
              payload: randomBytes(300_000, 13),
            });
            drive(map, poller, () => after.done || after.closes > 0, { what: "client 2" });
            await before.verify();
            await after.verify();

            assertEquals(victim.closes, 1, "handleClose ran once");
            assertMapConsistent(map, [victim, before, after]);
            // Left: the listener and the two echo channels whose clients closed.
            drive(map, poller, () => map.size === 1, { what: "the echo channels to close" });
            assert(map.get(listener.fileno()!) === listener);
            if (direction === "upload") {
              // What the server read before the reset is a prefix of what was sent.
              const data = victim.data();
              assertEquals(await sha256(data), await sha256(blob.subarray(0, data.length)));
            }
          } finally {
            for (const s of sockets) s.close();
            closeAll(map);
            ep.cleanup();
          }
        },
      );
    }
  }
}

// ---- a peer half-closes after sending N bytes ----

for (const family of FAMILIES) {
  for (const poller of POLLERS) {
    for (const variant of ["keeps reading", "closes before the server reads"] as const) {
      leakTest(
        `reliability: a half-close delivers every byte before handleClose, peer ${variant} (${family}, ${poller})`,
        async () => {
          const ep = endpoint(family);
          const map: SocketMap = new Map();
          // The second variant must fit in the socket buffers: nothing is read until the peer is gone.
          const n = variant === "keeps reading" ? 1_000_003 : 100_003;
          const blob = randomBytes(n, 21);
          const sockets: Socket[] = [];
          try {
            const listener = new Listener(map, ep, (sock, m) => {
              const ch = new ServerChannel(sock, m);
              ch.recvSize = 4093; // many passes, each with data and the hang-up pending
              ch.reading = variant === "keeps reading";
              return ch;
            });
            const peer = peerSocket(ep.family, listener.address());
            sockets.push(peer);
            let sent = 0;
            let eof = false;
            const echoed: Uint8Array[] = [];
            drive(map, poller, () => {
              if (listener.channels.length === 0) return false;
              sent = pushSome(peer, blob, sent);
              return sent === n;
            }, { what: "the peer to send everything" });
            peer.shutdown(SHUT_WR);
            const ch = listener.channels[0] as ServerChannel;
            if (variant === "closes before the server reads") {
              peer.close();
              eof = true;
              ch.reading = true;
            }
            drive(map, poller, () => {
              if (!eof) eof = !pullSome(peer, echoed);
              return ch.closes > 0 && eof;
            }, { what: "handleClose and the peer's end of stream" });
            assertEquals(ch.closes, 1);
            assertEquals(ch.receivedAtClose, n, "bytes delivered before handleClose");
            assertEquals(await sha256(ch.data()), await sha256(blob));
            assertEquals(echoed.length, 0);
            assertEquals(map.size, 1);
            assertMapConsistent(map, [ch]);
          } finally {
            for (const s of sockets) s.close();
            closeAll(map);
            ep.cleanup();
          }
        },
      );
    }
  }
}

/**
 * The start of the python3 peers: the imports they use, and `s` connected to
 * the endpoint `target` of `family` ("tcp": a port; "unix": a path), argv 1-2.
 */
const PY_CONNECTED = `
import hashlib, os, signal, socket, sys, time
family, target = sys.argv[1], sys.argv[2]
if family == "tcp":
    s = socket.create_connection(("127.0.0.1", int(target)), timeout=10)
else:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(target)
`;

// A python3 peer half-closes: another process, another kernel socket owner.
const HALF_CLOSE_PEER = PY_CONNECTED + `
n = int(sys.argv[3])
data = os.urandom(n)
s.sendall(data)
s.shutdown(socket.SHUT_WR)
rest = s.recv(1)  # the server closes without answering
s.close()
print(hashlib.sha256(data).hexdigest(), len(rest))
`;

for (const family of FAMILIES) {
  for (const poller of POLLERS) {
    leakTest(
      `reliability: a python3 peer's half-close delivers every byte (${family}, ${poller})`,
      async () => {
        const ep = endpoint(family);
        const map: SocketMap = new Map();
        try {
          const listener = new Listener(map, ep, (sock, m) => new ServerChannel(sock, m));
          const addr = listener.address();
          const target = typeof addr === "string" ? addr : String(addr[1]);
          const n = 2_000_017;
          await using peer = pythonChild(["-c", HALF_CLOSE_PEER, family, target, String(n)]);
          drive(
            map,
            poller,
            () =>
              listener.channels.length === 1 && (listener.channels[0] as ServerChannel).closes > 0,
            { ms: 10_000, what: "the python peer's data and close" },
          );
          const out = await peer.output();
          const text = new TextDecoder().decode(out.stdout).trim();
          assert(out.success, new TextDecoder().decode(out.stderr));
          const ch = listener.channels[0] as ServerChannel;
          assertEquals(ch.receivedAtClose, n);
          assertEquals(text, `${await sha256(ch.data())} 0`);
        } finally {
          closeAll(map);
          ep.cleanup();
        }
      },
      python === null,
    );
  }
}

// ---- a peer that connects and never sends ----

for (const family of FAMILIES) {
  for (const poller of POLLERS) {
    leakTest(
      `reliability: an idle peer's channel stays while others are served (${family}, ${poller})`,
      async () => {
        const ep = endpoint(family);
        const map: SocketMap = new Map();
        const sockets: Socket[] = [];
        try {
          const listener = new Listener(map, ep, (sock, m) => echoChannel(sock, m));
          const addr = listener.address();
          const idle = peerSocket(ep.family, addr);
          sockets.push(idle);
          drive(map, poller, () => listener.channels.length === 1, { what: "accept" });
          const idleChannel = listener.channels[0] as ServerChannel;
          const idleFd = idleChannel.fileno()!;
          for (let i = 0; i < 5; i++) {
            const c = new EchoClient({
              map,
              family: ep.family,
              addr,
              payload: randomBytes(10_000 * (i + 1), 30 + i),
            });
            drive(map, poller, () => c.done || c.closes > 0, { what: `client ${i}` });
            await c.verify();
            assert(map.get(idleFd) === idleChannel, "the idle channel is still in the map");
            assertEquals(idleChannel.closes, 0);
          }
          // Quiet passes (each waits its full timeout) leave it alone too.
          loop({ map, poller, timeout: 0.01, count: 10 });
          assert(map.get(idleFd) === idleChannel);
          assertEquals(idleChannel.received, 0);
          idle.close();
          drive(map, poller, () => idleChannel.closes > 0, { what: "the idle channel to close" });
          drive(map, poller, () => map.size === 1, { what: "the echo channels to close" });
          assertEquals(idleChannel.closes, 1);
          assertMapConsistent(map, [idleChannel]);
        } finally {
          for (const s of sockets) s.close();
          closeAll(map);
          ep.cleanup();
        }
      },
    );
  }
}

// ---- a slow reader of a 16 MiB reply ----

/** Reads `chunk` bytes per read event into a preallocated buffer. */
class SlowReader extends Dispatcher {
  readonly buf: Uint8Array;
  received = 0;
  chunk = 1;
  reads = 0;
  closes = 0;

  constructor(map: SocketMap, family: number, addr: Address, size: number) {
    super(null, map);
    this.buf = new Uint8Array(size);
    this.createSocket(family, SOCK_STREAM);
    this.connect(addr);
  }

  override handleConnect(): void {}

  override writable(): boolean {
    return !this.connected;
  }

  override handleRead(): void {
    const data = this.recv(this.chunk);
    this.reads++;
    if (data.length === 0) return;
    this.buf.set(data, this.received);
    this.received += data.length;
  }

  override handleClose(): void {
    this.closes++;
    this.close();
  }
}

/** Sends a large reply in pieces; remembers the most it ever had queued. */
class BulkSender extends DispatcherWithSend {
  pushed = 0;
  maxQueued = 0;
  overQueued = false;

  sendAll(data: Uint8Array, piece: number): void {
    for (let o = 0; o < data.length; o += piece) {
      const part = data.subarray(o, Math.min(data.length, o + piece));
      this.send(part);
      this.pushed += part.length;
      this.#note();
    }
  }

  override handleWrite(): void {
    super.handleWrite();
    this.#note();
  }

  #note(): void {
    const q = this.outBuffer.length;
    if (q > this.maxQueued) this.maxQueued = q;
    if (q > this.pushed) this.overQueued = true;
  }
}

const SLOW_TOTAL = 16 << 20;

for (const poller of POLLERS) {
  leakTest(
    `reliability: a slow reader gets all 16 MiB, memory bounded by the queue (${poller})`,
    async () => {
      const ep = endpoint("tcp");
      const map: SocketMap = new Map();
      const blob = randomBytes(SLOW_TOTAL, 41);
      try {
        let sender: BulkSender | null = null;
        const listener = new Listener(map, ep, (sock, m) => sender = new BulkSender(sock, m));
        const reader = new SlowReader(map, ep.family, listener.address(), SLOW_TOTAL);
        drive(map, poller, () => sender !== null, { what: "accept" });
        const rssBefore = Deno.memoryUsage().rss;
        const s = sender as unknown as BulkSender;
        s.sendAll(blob, 1 << 20);
        // Slow phase: one byte per read event, for 400 ms.
        const slowUntil = performance.now() + 400;
        let peakRss = Deno.memoryUsage().rss;
        drive(map, poller, () => {
          peakRss = Math.max(peakRss, Deno.memoryUsage().rss);
          return performance.now() > slowUntil;
        }, { ms: 2000, what: "the slow phase" });
        const slowBytes = reader.received;
        const slowReads = reader.reads;
        assertGreater(slowReads, 100, "the reader was given many passes");
        assertEquals(slowBytes, slowReads, "one byte per read while slow");
        assertGreater(s.outBuffer.length, 0, "the sender still has data queued");
        // Then fast, so the test ends.
        reader.chunk = 65536;
        drive(map, poller, () => {
          peakRss = Math.max(peakRss, Deno.memoryUsage().rss);
          return reader.received === SLOW_TOTAL;
        }, { ms: 20_000, what: "the rest of the 16 MiB" });
        assertEquals(s.pushed, SLOW_TOTAL);
        assertLessOrEqual(s.maxQueued, SLOW_TOTAL);
        assert(!s.overQueued, "the queue never held more than was pushed");
        assertEquals(s.outBuffer.length, 0);
        assertEquals(await sha256(reader.buf), await sha256(blob));
        const growth = peakRss - rssBefore;
        assert(
          growth < 3 * SLOW_TOTAL,
          `rss grew by ${(growth / 2 ** 20).toFixed(1)} MiB while 16 MiB were queued`,
        );
        console.log(
          `  ${poller}: ${slowReads} one-byte reads while slow, rss +${
            (growth / 2 ** 20).toFixed(1)
          } MiB, queue peak ${(s.maxQueued / 2 ** 20).toFixed(1)} MiB`,
        );
        assertEquals(reader.closes, 0);
      } finally {
        closeAll(map);
        ep.cleanup();
      }
    },
  );
}

// ---- the server vanishes between connect and the first write ----

/** Connects; writes only once told to; counts closes and errors. */
class EagerClient extends Recording(Dispatcher) {
  go = false;
  attempts = 0;
  sent = 0;

  constructor(map: SocketMap, family: number, addr: Address) {
    super(null, map);
    this.createSocket(family, SOCK_STREAM);
    this.connect(addr);
  }

  override handleConnect(): void {}

  // Not reading: the end of stream must be found by the write.
  override readable(): boolean {
    return false;
  }

  override writable(): boolean {
    return !this.connected || this.go;
  }

  override handleWrite(): void {
    if (!this.go) return;
    this.attempts++;
    this.sent += this.send(new Uint8Array(1000).fill(7));
  }
}

for (const family of FAMILIES) {
  for (const poller of POLLERS) {
    for (const how of ["close", "reset"] as const) {
      leakTest(
        `reliability: a server that accepts then ${how}s: the client's send calls handleClose (${family}, ${poller})`,
        () => {
          const ep = endpoint(family);
          const map: SocketMap = new Map();
          try {
            let accepted: Socket | null = null;
            const listener = new Listener(map, ep, (sock) => {
              accepted = sock;
              return null;
            });
            const client = new EagerClient(map, ep.family, listener.address());
            drive(map, poller, () => accepted !== null && client.connected, {
              what: "accept and connect",
            });
            // Connected, nothing written yet: now the server goes away.
            const sock = accepted as unknown as Socket;
            if (how === "reset") resetClose(sock);
            else sock.close();
            client.go = true;
            drive(map, poller, () => client.closes > 0, { what: "handleClose" });
            assertEquals(client.closes, 1);
            assertEquals(client.errors, [], "no error reached handleError");
            assertGreater(client.attempts, 0);
            assertEquals(client.fileno(), null);
            assertEquals(map.size, 1);
          } finally {
            closeAll(map);
            ep.cleanup();
          }
        },
      );
    }
  }
}

// ---- SIGUSR1 while the loop waits ----

const SIGNAL_PEER = PY_CONNECTED + `
# pid: the thread that runs the loop (kill() prefers the thread it names,
# so the signal interrupts the loop's own wait, not another thread's).
pid = int(sys.argv[3])
assert s.recv(2) == b"go"      # the parent is about to wait
time.sleep(0.15)
for _ in range(3):
    os.kill(pid, signal.SIGUSR1)
    time.sleep(0.02)
time.sleep(0.15)
msg = b"data after the signals"
s.sendall(msg)
got = b""
while len(got) < len(msg):
    chunk = s.recv(100)
    if not chunk:
        break
    got += chunk
s.close()
print(got.decode())
`;

/**
 * The id of the thread running this code (Deno may run JS on a thread other
 * than the process's first one, which a process-wide signal would pick).
 */
function loopThreadId(): number {
  try {
    return Number(Deno.readLinkSync("/proc/thread-self").split("/").pop());
  } catch {
    return Deno.pid;
  }
}

for (const family of FAMILIES) {
  for (const poller of POLLERS) {
    leakTest(
      `reliability: SIGUSR1 during the wait is retried, no event lost (${family}, ${poller})`,
      async () => {
        const ep = endpoint(family);
        const map: SocketMap = new Map();
        let signals = 0;
        const onSignal = () => signals++;
        Deno.addSignalListener("SIGUSR1", onSignal);
        try {
          const listener = new Listener(map, ep, echoChannel);
          const addr = listener.address();
          const target = typeof addr === "string" ? addr : String(addr[1]);
          await using peer = pythonChild([
            "-c",
            SIGNAL_PEER,
            family,
            target,
            String(loopThreadId()),
          ]);
          drive(map, poller, () => listener.channels.length === 1, {
            ms: 10_000,
            what: "the python peer to connect",
          });
          const ch = listener.channels[0] as ServerChannel;
          ch.echo = false;
          ch.send("go");
          ch.echo = true;
          // One pass, waiting up to 10 s: the signals arrive during the wait, the data after them.
          const start = performance.now();
          loop({ map, poller, timeout: 10, count: 1 });
          const waited = performance.now() - start;
          assertEquals(new TextDecoder().decode(ch.data()), "data after the signals");
          assertGreater(waited, 200, "the pass waited through the signals");
          drive(map, poller, () => ch.closes > 0, { what: "the peer to close" });
          const out = await peer.output();
          assert(out.success, new TextDecoder().decode(out.stderr));
          assertEquals(new TextDecoder().decode(out.stdout).trim(), "data after the signals");
          // Deno's own handler ran too, once its event loop got a turn.
          for (let i = 0; i < 100 && signals === 0; i++) {
            await new Promise((r) => setTimeout(r, 10));
          }
          assertGreater(signals, 0);
        } finally {
          Deno.removeSignalListener("SIGUSR1", onSignal);
          closeAll(map);
          ep.cleanup();
        }
      },
      python === null,
    );
  }
}

// ---- handlers that throw ----

type Fault =
  | "close"
  | "handleRead"
  | "handleWrite"
  | "handleConnect"
  | "handleClose"
  | "handleError"
  | "readable"
  | "writable";

/**
 * An echo client that throws from one handler (or predicate). Its
 * `logInfo` is captured; `keepOpen` makes `handleError` record without
 * closing, to watch a throwing predicate skip the channel pass after pass.
 */
class FaultyClient extends EchoClient {
  readonly errors: unknown[] = [];
  readonly logged: string[] = [];
  /** Throws left for the predicate faults; the others throw every time. */
  armed = 3;
  thrown = 0;
  /** The predicate threw in this pass (set when it throws, cleared when it answers). */
  skipped = false;
  /** Handler calls made in a pass whose predicate threw. */
  eventsWhileArmed = 0;

  constructor(
    map: SocketMap,
    family: number,
    addr: Address,
    payload: Uint8Array,
    readonly fault: Fault,
    readonly keepOpen = false,
  ) {
    super({ map, family, addr, payload });
  }

  #boom(where: Fault): never {
    this.thrown++;
    throw new Error(`boom in ${where}`);
  }

  #predicate(which: "readable" | "writable"): void {
    if (this.fault !== which) return;
    this.skipped = this.armed > 0 && this.connected;
    if (this.skipped) {
      this.armed--;
      this.#boom(which);
    }
  }

  override readable(): boolean {
    this.#predicate("readable");
    return super.readable();
  }

  override writable(): boolean {
    this.#predicate("writable");
    return super.writable();
  }

  override handleConnect(): void {
    if (this.fault === "handleConnect") this.#boom("handleConnect");
    super.handleConnect();
  }

  override handleWrite(): void {
    if (this.skipped) this.eventsWhileArmed++;
    if (this.fault === "handleWrite") this.#boom("handleWrite");
    super.handleWrite();
  }

  override handleRead(): void {
    if (this.skipped) this.eventsWhileArmed++;
    if (this.fault === "handleRead" || this.fault === "handleError" || this.fault === "close") {
      this.#boom("handleRead");
    }
    if (this.fault === "handleClose") {
      // Read everything, then half-close so the server's close reaches handleClose.
      const data = this.recv(65536);
      this.received += data.length;
      if (this.received === this.payload.length) (this.socket as Socket).shutdown(SHUT_WR);
      return;
    }
    super.handleRead();
  }

  override handleClose(): void {
    if (this.fault === "handleClose") {
      this.closes++;
      this.#boom("handleClose");
    }
    super.handleClose();
  }

  override handleError(error: unknown): void {
    this.errors.push(error);
    if (this.fault === "handleError" || this.fault === "close") {
      throw new Error("boom in handleError");
    }
    if (this.keepOpen) return;
    super.handleError(error);
  }

  override logInfo(message: unknown, type = "info"): void {
    this.logged.push(`${type}: ${message}`);
  }

  // "close": handleRead, handleError and close() all throw; the loop must take it out by hand.
  override close(): void {
    if (this.fault === "close") throw new Error("boom in close");
    super.close();
  }
}

const FAULTS: Fault[] = [
  "close",
  "handleRead",
  "handleWrite",
  "handleConnect",
  "handleClose",
  "handleError",
  "readable",
  "writable",
];

for (const poller of POLLERS) {
  for (const fault of FAULTS) {
    for (const keepOpen of fault === "readable" || fault === "writable" ? [false, true] : [false]) {
      const how = keepOpen ? ", handleError keeps it open" : "";
      leakTest(
        `reliability: a throwing ${fault}${how} is handled as documented, others unharmed (${poller})`,
        async () => {
          const ep = endpoint("tcp");
          const map: SocketMap = new Map();
          const stderr: string[] = [];
          const errorStub = stub(console, "error", (...args: unknown[]) => {
            stderr.push(args.join(" "));
          });
          try {
            const listener = new Listener(map, ep, echoChannel);
            const addr = listener.address();
            // A good client in flight while the fault happens, and one after it.
            const good = new EchoClient({
              map,
              family: ep.family,
              addr,
              payload: randomBytes(2_000_000, 51),
            });
            const bad = new FaultyClient(
              map,
              ep.family,
              addr,
              randomBytes(50_000, 52),
              fault,
              keepOpen,
            );
            const badFd = bad.fileno()!;
            // One loop() throughout: the later client, started as soon as the faulty one is
            // gone, likely reuses its fd under the same poller state.
            let after: EchoClient | null = null;
            drive(map, poller, () => {
              const dealtWith = bad.socket?.fileno() === -1 || (keepOpen && bad.done);
              if (dealtWith && after === null) {
                after = new EchoClient({
                  map,
                  family: ep.family,
                  addr,
                  payload: randomBytes(100_000, 53),
                });
              }
              return dealtWith && good.done && after !== null && (after.done || after.closes > 0);
            }, { what: `the faulty client to be dealt with (${fault}), and a later client` });
            await good.verify();
            await after!.verify();
            assertEquals(good.closes, 0);

            const messages = bad.errors.map((e) => (e as Error).message);
            if (keepOpen) {
              // The predicate threw three times: three handleError calls, no events meanwhile.
              assertEquals(messages, Array(3).fill(`boom in ${fault}`));
              assertEquals(bad.eventsWhileArmed, 0, "the channel was skipped while it threw");
              await bad.verify();
              assertEquals(stderr, []);
            } else if (fault === "close") {
              // Even close() threw: the loop closed the socket and took it out of the map.
              assertEquals(messages, ["boom in handleRead"]);
              assertEquals(stderr.length, 1, stderr.join("\n"));
              assertMatch(
                stderr[0],
                /handleError of <FaultyClient.*threw.*boom in handleError.*closing it/,
              );
              assertEquals(bad.socket?.fileno(), -1);
              assertEquals(bad.fileno(), null, "fileno() says closed");
              assert(![...map.values()].includes(bad));
            } else if (fault === "handleError") {
              // handleError threw too: one line on stderr, the channel closed by force.
              assertEquals(messages, ["boom in handleRead"]);
              assertEquals(stderr.length, 1, stderr.join("\n"));
              assertMatch(
                stderr[0],
                /handleError of <FaultyClient.*threw.*boom in handleError.*closing it/,
              );
            } else if (fault === "handleClose") {
              // handleError's own handleClose threw again: closed by force, reported on stderr.
              assertEquals(messages, ["boom in handleClose"]);
              assertEquals(bad.closes, 2);
              assertEquals(stderr.length, 1, stderr.join("\n"));
              assertMatch(stderr[0], /boom in handleClose.*closing it/);
            } else {
              // handleError got the error, logged it and closed the channel.
              assertEquals(messages, [`boom in ${fault}`]);
              assertEquals(bad.logged.length, 1, bad.logged.join("\n"));
              assertMatch(
                bad.logged[0],
                new RegExp(`^error: uncaptured exception.*boom in ${fault}`),
              );
              assertEquals(stderr, []);
            }
            if (!keepOpen && fault !== "close") {
              assertEquals(bad.fileno(), null);
              assertEquals(bad.socket?.fileno(), -1, "the socket is closed");
              assert(map.get(badFd) !== bad);
            }
            // The server side sees the close too; only the listener stays.
            drive(map, poller, () => map.size === 1, { what: "the server channels to close" });
            assert(map.get(listener.fileno()!) === listener);
            assertMapConsistent(map, [good, after!]);
          } finally {
            errorStub.restore();
            closeAll(map);
            ep.cleanup();
          }
        },
      );
    }
  }
}

/** A listener whose handleAccepted throws, after adopting the socket or before. */
class FaultyListener extends Listener {
  readonly errors: unknown[] = [];
  readonly logged: string[] = [];

  constructor(map: SocketMap, ep: Endpoint, readonly adopt: boolean) {
    super(map, ep, echoChannel);
  }

  override handleAccepted(sock: Socket): void {
    if (this.adopt) super.handleAccepted(sock);
    throw new Error("boom in handleAccepted");
  }

  override handleError(error: unknown): void {
    this.errors.push(error);
    super.handleError(error);
  }

  override logInfo(message: unknown, type = "info"): void {
    this.logged.push(`${type}: ${message}`);
  }
}

for (const poller of POLLERS) {
  for (const adopt of [false, true]) {
    leakTest(
      `reliability: a throwing handleAccepted (${
        adopt ? "after adopting the socket" : "before adopting it"
      }) closes that listener only (${poller})`,
      async () => {
        const good = endpoint("tcp");
        const bad = endpoint("tcp");
        const map: SocketMap = new Map();
        try {
          const listener = new Listener(map, good, echoChannel);
          const faulty = new FaultyListener(map, bad, adopt);
          const victim = new EchoClient({
            map,
            family: AF_INET,
            addr: faulty.address(),
            payload: randomBytes(1000, 61),
          });
          const client = new EchoClient({
            map,
            family: AF_INET,
            addr: listener.address(),
            payload: randomBytes(500_000, 62),
          });
          drive(map, poller, () => faulty.fileno() === null && client.done, {
            what: "the faulty listener to close",
          });
          await client.verify();
          assertEquals(faulty.errors.map((e) => (e as Error).message), ["boom in handleAccepted"]);
          assertMatch(faulty.logged[0], /^error: uncaptured exception.*boom in handleAccepted/);
          if (adopt) {
            // The adopted channel lives on: the victim is echoed after all.
            drive(map, poller, () => victim.done || victim.closes > 0, { what: "the victim" });
            await victim.verify();
          } else {
            // Nobody took the accepted socket: it is closed, so the victim sees the end.
            drive(map, poller, () => victim.closes > 0, { what: "the victim's close" });
            assertEquals(victim.done, false);
          }
          drive(map, poller, () => map.size === 1, { what: "the rest to close" });
          assert(map.get(listener.fileno()!) === listener);
        } finally {
          closeAll(map);
          good.cleanup();
          bad.cleanup();
        }
      },
    );
  }
}
