// DatagramDispatcher (dispatcher/datagram.ts) under select, poll and epoll,
// batched (recvmmsg/sendmmsg) and one call per datagram (the path Windows
// takes): python3 UDP clients echoed byte-exact, truncation, zero-length
// datagrams, a send queue that fills (a Unix datagram pair whose reader
// stops) and pauses reading under highWaterMark, refused destinations,
// ICMP errors on a connected socket, and IPv4 multicast on the loopback with
// python3 sending to the group. examples/udp_echo.ts answers python3 and nc -u,
// and the C load generator's UDP mode (bench/loadgen.c --mode=udp).
import { assert, assertEquals, assertGreater, assertMatch } from "@std/assert";
import {
  type Address,
  AF_INET,
  AF_UNIX,
  DatagramDispatcher,
  hasBatchCalls,
  inetAton,
  IP_ADD_MEMBERSHIP,
  IPPROTO_IP,
  Loop,
  type MessageBatch,
  type OSError,
  type PollerName,
  SO_SNDBUF,
  SOCK_DGRAM,
  SOCK_NONBLOCK,
  Socket,
  type SocketMap,
  socketpair,
  SOL_SOCKET,
} from "../mod.ts";
import {
  delay,
  emulated,
  hasCommand,
  leakAndTimerTest,
  onWindows,
  POLLERS,
  python,
  PythonPeer,
  serveWhile,
} from "./_util.ts";
import { run, spawn, stop } from "./fixtures/subprocess.ts";
import { buildLoadgen, hasCompiler, runLoadgen } from "./fixtures/loadgen.ts";

const root = new URL("..", import.meta.url).pathname;
const enc = new TextEncoder();
const dec = new TextDecoder();

/** Echoes each batch back to its senders; records errors. */
class Echo extends DatagramDispatcher {
  readonly errors: [string, Address | null][] = [];
  constructor(map: SocketMap, batchCalls: boolean, options: { size?: number } = {}) {
    super(null, map, { batchCalls, batchSize: 32, datagramSize: options.size ?? 2048 });
    this.createSocket();
    this.bind(["127.0.0.1", 0]);
  }
  get port(): number {
    return (this.sock.getsockname() as [string, number])[1];
  }
  override handleDatagrams(batch: MessageBatch, count: number): void {
    this.sendDatagrams(batch, count);
  }
  override handleDatagramError(error: OSError, address: Address | null): void {
    this.errors.push([error.code, address]);
  }
}

/** python3: sends N datagrams of varied sizes, `window` outstanding, checks every echo. */
const PY_CLIENT = `
import hashlib, json, socket, sys
port, n, window = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(10)
def payload(i):
    size = [0, 1, 64, 1000, 2048][i % 5]
    return bytes((i * 7 + j) % 251 for j in range(size))
sent = got = bad = 0
outstanding = {}
while got < n:
    while sent < n and sent - got < window:
        p = payload(sent)
        outstanding[p] = outstanding.get(p, 0) + 1
        s.sendto(p, ("127.0.0.1", port))
        sent += 1
    data, addr = s.recvfrom(4096)
    if outstanding.get(data, 0) > 0:
        outstanding[data] -= 1
    else:
        bad += 1
    got += 1
big = bytes(range(256)) * 12  # 3072 bytes: longer than the server's room
s.sendto(big, ("127.0.0.1", port))
cut = s.recvfrom(8192)[0]
print(json.dumps({"got": got, "bad": bad, "cut": len(cut), "prefix": cut == big[:len(cut)]}))
`;

const modes: [string, boolean][] = [["batched", true], ["one call per datagram", false]];

for (const poller of POLLERS) {
  for (const [mode, batchCalls] of modes) {
    leakAndTimerTest(
      `datagrams (${poller}, ${mode}): python3's 2,000 datagrams of 0-2,048 bytes echoed exactly; a longer one cut`,
      async () => {
        const loop = new Loop({ poller });
        try {
          const echo = new Echo(loop.map, batchCalls);
          assertEquals(echo.batchCalls, batchCalls && hasBatchCalls());
          await using peer = new PythonPeer(PY_CLIENT, [String(echo.port), "2000", "32"]);
          const result = JSON.parse(await serveWhile(loop.map, poller, peer.line(30_000)));
          assertEquals(result, { got: 2000, bad: 0, cut: 2048, prefix: true });
          assertEquals(echo.datagramsReceived, 2001);
          assertEquals(echo.datagramsSent, 2001);
          assertEquals(echo.datagramsTruncated, 1);
          assertEquals(echo.errors, []);
          await peer.finish();
        } finally {
          loop.close();
        }
      },
      !python,
    );
  }

  leakAndTimerTest(
    `datagrams (${poller}): a full socket queues in order, pauses reading over highWaterMark, and drains`,
    async () => {
      for (const batchCalls of [true, false]) {
        const loop = new Loop({ poller });
        const [mine, peer] = socketpair(AF_UNIX, SOCK_DGRAM);
        try {
          peer.setblocking(false);
          const echo = new (class extends DatagramDispatcher {
            override handleDatagrams(batch: MessageBatch, count: number) {
              this.sendDatagrams(batch, count);
            }
          })(mine, loop.map, { batchCalls, batchSize: 8, datagramSize: 1024 });
          echo.highWaterMark = 4096;
          // A small send buffer here: the kernel refuses our echoes soon (EAGAIN) while the
          // peer's receive queue holds them unread.
          mine.setsockopt(SOL_SOCKET, SO_SNDBUF, 4096);
          const text = (i: number) => `datagram ${i} `.padEnd(200, ".");
          let i = 0;
          // The peer sends and reads nothing, until the echo's queue pauses its reading.
          await serveWhile(
            loop.map,
            poller,
            (async () => {
              while (!echo._readPaused) {
                if (i < 400 && peer.trySend(text(i)) >= 0) i++;
                else await delay(2);
              }
            })(),
            20_000,
          );
          assertGreater(
            echo.queuedDatagrams,
            0,
            "the peer's full queue left datagrams queued here",
          );
          assert(echo.queuedBytes <= 4096 + 8 * 200, `queued ${echo.queuedBytes} bytes`);
          // The peer reads, and sends the rest: everything comes back, in order.
          const got: string[] = [];
          const buf = new Uint8Array(2048);
          await serveWhile(
            loop.map,
            poller,
            (async () => {
              while (got.length < 400) {
                let moved = false;
                if (i < 400 && peer.trySend(text(i)) >= 0) {
                  i++;
                  moved = true;
                }
                const n = peer.tryRecvInto(buf);
                if (n >= 0) {
                  got.push(dec.decode(buf.subarray(0, n)));
                  moved = true;
                }
                if (!moved) await delay(1);
              }
            })(),
          );
          const sentOrder = Array.from({ length: 400 }, (_, k) => text(k));
          assertEquals(got, sentOrder);
          assertEquals([echo.queuedDatagrams, echo.queuedBytes, echo._readPaused], [0, 0, false]);
        } finally {
          peer.close();
          loop.close();
        }
      }
    },
    onWindows,
  );

  leakAndTimerTest(
    `datagrams (${poller}): a refused destination is reported and skipped; an ICMP error on a connected socket too`,
    async () => {
      for (const batchCalls of [true, false]) {
        const loop = new Loop({ poller });
        const receiver = new Socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK);
        try {
          receiver.bind(["127.0.0.1", 0]);
          const to = receiver.getsockname();
          const echo = new Echo(loop.map, batchCalls);
          // In a batch: good, port 0 (EINVAL), good.
          const batch = echo.batch;
          const addrs: Address[] = [to, ["127.0.0.1", 0], to];
          for (const [i, a] of addrs.entries()) {
            batch.buffers[i].set(enc.encode(`m${i}`));
            batch.lengths[i] = 2;
            batch.setAddress(i, a);
          }
          assertEquals(echo.sendDatagrams(batch, 3), 3 - 1);
          assertEquals(echo.sendErrors, 1);
          assertEquals(echo.errors, [["EINVAL", ["127.0.0.1", 0]]]);
          const buf = new Uint8Array(16);
          const got = [receiver.tryRecvInto(buf), receiver.tryRecvInto(buf)];
          assertEquals(got, [2, 2]);
          assertEquals(echo.sendDatagram("alone", ["127.0.0.1", 0]), false);
          assertEquals(echo.queuedDatagrams, 0, "a refused datagram is not queued");
          // Connected to a port nobody listens on: the ICMP error comes back on a later read.
          receiver.close();
          echo.connect(to);
          assert(echo.connected);
          echo.errors.length = 0;
          assert(echo.sendDatagram("anyone?"));
          await serveWhile(
            loop.map,
            poller,
            (async () => {
              while (echo.errors.length === 0) await delay(5);
            })(),
            10_000,
          );
          assertEquals(echo.errors, [["ECONNREFUSED", null]]);
          assert(echo.fileno() !== null, "the channel goes on");
        } finally {
          receiver.close();
          loop.close();
        }
      }
    },
    onWindows,
  );

  leakAndTimerTest(
    `datagrams (${poller}): a member of an IPv4 multicast group on the loopback echoes python3's datagrams`,
    async () => {
      const group = "239.255.77.2";
      const loop = new Loop({ poller });
      try {
        const member = new (class extends DatagramDispatcher {
          override handleDatagram(data: Uint8Array, from: Address | null) {
            this.sendDatagram(enc.encode(`member got ${dec.decode(data)}`), from);
          }
        })(null, loop.map);
        member.createSocket();
        member.bind([group, 0]);
        const port = (member.sock.getsockname() as [string, number])[1];
        const mreq = new Uint8Array([...inetAton(group), ...inetAton("127.0.0.1")]);
        member.sock.setsockopt(IPPROTO_IP, IP_ADD_MEMBERSHIP, mreq);
        const script = `
import socket, sys
group, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 0)
s.bind(("127.0.0.1", 0))
s.settimeout(10)
s.sendto(b"to the group", (group, port))
print(s.recvfrom(100)[0].decode(), flush=True)
`;
        await using peer = new PythonPeer(script, [group, String(port)]);
        assertEquals(await serveWhile(loop.map, poller, peer.line()), "member got to the group");
        await peer.finish();
      } finally {
        loop.close();
      }
    },
    !python || emulated || onWindows,
  );
}

leakAndTimerTest("DatagramDispatcher: bad arguments are clear errors", () => {
  const loop = new Loop();
  try {
    const d = new DatagramDispatcher(null, loop.map);
    d.createSocket();
    let thrown = 0;
    for (
      const f of [
        () => d.sendDatagrams(d.batch, 65),
        () => d.sendDatagrams(d.batch, 1, -1),
        () => d.sendDatagrams(null as unknown as MessageBatch, 1),
        () => new DatagramDispatcher(null, loop.map, { batchSize: 0 }),
        () => new DatagramDispatcher(null, loop.map, { datagramSize: 0 }),
      ]
    ) {
      try {
        f();
      } catch (error) {
        assert(error instanceof RangeError || error instanceof TypeError, String(error));
        thrown++;
      }
    }
    assertEquals(thrown, 5);
  } finally {
    loop.close();
  }
});

// ---- examples/udp_echo.ts ----

async function startUdpEcho(args: string[], poller: PollerName = "epoll") {
  const s = spawn(Deno.execPath(), [
    "run",
    "--no-prompt",
    "--allow-ffi",
    "examples/udp_echo.ts",
    "127.0.0.1",
    "0",
    `--poller=${poller}`,
    ...args,
  ], root);
  const line = await s.stdout.waitFor(/^udp echo listening on 127\.0\.0\.1:\d+/);
  if (line === null) {
    await stop(s);
    throw new Error(`udp_echo did not start: ${await s.stderr}`);
  }
  return { ...s, port: Number(/:(\d+)/.exec(line[0])![1]), line: line[0] };
}

for (const args of [[], ["--per-datagram"]]) {
  Deno.test({
    name: `examples/udp_echo.ts ${
      args.join(" ")
    }: python3 and nc -u are echoed; SIGTERM prints the counts`,
    ignore: !python,
    async fn() {
      const s = await startUdpEcho(args);
      try {
        assertMatch(
          s.line,
          args.length === 0 && hasBatchCalls()
            ? /\(batches of up to 64\)$/
            : /\(one call per datagram\)$/,
        );
        const r = await run(python!, ["-c", PY_CLIENT, String(s.port), "500", "16"]);
        assertEquals(JSON.parse(new TextDecoder().decode(r.stdout)), {
          got: 500,
          bad: 0,
          cut: 2048,
          prefix: true,
        }, r.stderr);
        if (hasCommand("nc")) {
          // nc -u sends its line and prints what comes back; -q/-w end it.
          const nc = await run("nc", ["-u", "-w", "1", "127.0.0.1", String(s.port)], {
            input: enc.encode("hello over udp\n"),
          });
          assertEquals(dec.decode(nc.stdout), "hello over udp\n", nc.stderr);
        }
        const status = await stop(s);
        assertEquals(status.code, 0);
        const counts = s.stdout.matching(
          /^udp echo stopping \(SIGTERM\): \d+ datagrams in, \d+ out$/,
        );
        assertEquals(counts.length, 1, s.stdout.lines.join("\n"));
      } finally {
        await stop(s);
      }
    },
  });
}

Deno.test({
  name: "examples/udp_echo.ts --join: a multicast group member on the loopback answers python3",
  ignore: !python || emulated || onWindows,
  async fn() {
    const group = "239.255.77.3";
    const s = spawn(Deno.execPath(), [
      "run",
      "--no-prompt",
      "--allow-ffi",
      "examples/udp_echo.ts",
      "127.0.0.1",
      "0",
      `--join=${group}`,
    ], root);
    try {
      const line = await s.stdout.waitFor(/listening on 239\.255\.77\.3:\d+ .*member of/);
      assert(line, s.stdout.lines.join("\n"));
      const port = /:(\d+)/.exec(line[0])![1];
      const r = await run(python!, [
        "-c",
        `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 0)
s.bind(("127.0.0.1", 0))
s.settimeout(10)
s.sendto(b"hello, group", ("${group}", ${port}))
print(s.recvfrom(100)[0].decode())
`,
      ]);
      assertEquals(dec.decode(r.stdout), "hello, group\n", r.stderr);
    } finally {
      await stop(s);
    }
  },
});

Deno.test({
  name:
    "bench/loadgen.c --mode=udp against examples/udp_echo.ts: every echo checked, none wrong, packets per second measured",
  ignore: !hasCompiler || onWindows,
  async fn() {
    const loadgen = (await buildLoadgen())!;
    for (const args of [[], ["--per-datagram"]]) {
      const s = await startUdpEcho(args);
      try {
        const r = await runLoadgen(loadgen, {
          host: "127.0.0.1",
          port: s.port,
          mode: "udp",
          conns: 4,
          outstanding: 8,
          size: 64,
          warmup: 0.2,
          duration: 1,
          "server-pid": s.child.pid,
        }, 30_000);
        assertEquals(r.mode, "udp");
        assertEquals(r.errors, 0, JSON.stringify(r.error_detail));
        assertGreater(r.ops, 1000, JSON.stringify(r));
        assertGreater(r.ops_per_s as number, 1000);
      } finally {
        await stop(s);
      }
    }
  },
});
