// The PROXY protocol on a listening dispatcher, under select, poll and
// epoll, with real peers: HAProxy itself (send-proxy, send-proxy-v2 with
// CRC32C and unique-id TLVs, an IPv6 frontend), python3 clients sending
// hand-made headers with their first bytes in the same segment or byte by
// byte, TLS begun after the header, and raw sockets for the failures
// (garbage, oversized, truncated, a header that never comes, a flood).
// Every test leaves no fd and no timer behind.
import { assert, assertEquals, assertGreater, assertLess, assertMatch } from "@std/assert";
import { type Address, closeAll, Loop, type Socket, type SocketMap } from "../mod.ts";
import {
  cpuSeconds,
  delay,
  EchoHandler,
  hasIPv6,
  leakAndTimerTest,
  pendingTimers,
  POLLERS,
  python,
  serveWhile,
} from "./_util.ts";
import { freePort, run } from "./fixtures/subprocess.ts";
import {
  closedByServer,
  hasHaproxy,
  ipv4Block,
  ipv6Block,
  proxyClient,
  ProxyEchoServer,
  rawClient,
  readUpTo,
  startHaproxy,
  v1,
  v2,
  withProxyEchoServer,
} from "./fixtures/proxy.ts";
import { serverContext, tlsCerts } from "./fixtures/tls_certs.ts";

const noPython = python === null;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

const TEST_NET_V6 = Uint8Array.of(0x20, 0x01, 0x0d, 0xb8, ...new Array(11).fill(0), 7);

for (const poller of POLLERS) {
  leakAndTimerTest(
    `PROXY v1 (${poller}): the header's client reaches handleAccepted; bytes in the same segment are echoed hash-exact`,
    () =>
      withProxyEchoServer(poller, { proxyProtocol: "v1" }, async (server) => {
        const header = v1("TCP4 203.0.113.7 127.0.0.1 40001 80");
        const [r] = await proxyClient(python!, "127.0.0.1", server.port, 300_000, { header });
        assertEquals(r.error, undefined);
        assertEquals([r.got, r.gotSha], [r.sent, r.sentSha]);
        assertEquals(server.admitted.length, 1);
        assertEquals(server.admitted[0].addr, ["203.0.113.7", 40001]);
        assertEquals((server.admitted[0].peer as [string, number])[0], "127.0.0.1");
        assertEquals(server.admitted[0].header?.destination, ["127.0.0.1", 80]);
        assertEquals(server.warnings, []);
      }),
    noPython,
  );

  leakAndTimerTest(
    `PROXY v2 (${poller}): TCP4, TCP6 with TLVs, LOCAL, UNSPEC, AF_UNIX; proxyHeaderOf gives the TLVs`,
    () =>
      withProxyEchoServer(poller, { proxyProtocol: "v2" }, async (server) => {
        const cases: [Uint8Array, (peer: Address) => Address][] = [
          [v2({ addresses: ipv4Block([198, 51, 100, 9], [127, 0, 0, 1], 65535, 443) }), () => [
            "198.51.100.9",
            65535,
          ]],
          [
            v2({
              fam: 0x21,
              addresses: ipv6Block(TEST_NET_V6, TEST_NET_V6, 0, 8443),
              tlvs: [[0x02, encoder.encode("example.com")], [0x04, new Uint8Array(5)], [
                0xe0,
                new Uint8Array(300),
              ]],
              crc: true,
            }),
            () => ["2001:db8::7", 0, 0, 0],
          ],
          [v2({ command: 0, fam: 0x00, addresses: new Uint8Array(0) }), (peer) => peer],
          // LOCAL with an address block anyway: its length is honoured, the block ignored.
          [v2({ command: 0 }), (peer) => peer],
          [v2({ fam: 0x00, addresses: Uint8Array.of(1, 2, 3) }), (peer) => peer],
          [
            v2({
              fam: 0x31,
              addresses: Uint8Array.of(
                ...encoder.encode("/run/client.sock"),
                ...new Uint8Array(92),
                ...new Uint8Array(108),
              ),
            }),
            () => "/run/client.sock",
          ],
        ];
        for (const [i, [header, want]] of cases.entries()) {
          const [r] = await proxyClient(python!, "127.0.0.1", server.port, 5000, {
            header,
            seed: i,
          });
          assertEquals([r.got, r.gotSha], [r.sent, r.sentSha], `case ${i}`);
          const seen = server.admitted[i];
          assertEquals(seen.addr, want(seen.peer), `case ${i}`);
        }
        const tlvs = server.admitted[1].header!.tlvs.map((t) => [t.type, t.value.length]);
        assertEquals(tlvs, [[0x02, 11], [0x04, 5], [0xe0, 300], [0x03, 4]]);
        assertEquals(server.admitted[2].header?.command, "LOCAL");
        assertEquals(server.warnings, []);
      }),
    noPython,
  );

  leakAndTimerTest(
    `PROXY any (${poller}): v1 and v2 on one listener, v1 UNKNOWN gives the socket's peer`,
    () =>
      withProxyEchoServer(poller, { proxyProtocol: "any" }, async (server) => {
        const headers = [v1("TCP6 2001:db8::7 ::1 5 6"), v2(), v1("UNKNOWN"), v1("UNKNOWN x y")];
        for (const [i, header] of headers.entries()) {
          const [r] = await proxyClient(python!, "127.0.0.1", server.port, 1000, { header });
          assertEquals([r.got, r.gotSha], [r.sent, r.sentSha]);
          assertEquals(server.admitted[i].header?.version, i === 1 ? 2 : 1);
        }
        const addrs = server.admitted.map((a) => a.addr);
        assertEquals(addrs[0], ["2001:db8::7", 5, 0, 0]);
        assertEquals(addrs[1], ["127.0.0.9", 40001]);
        assertEquals(addrs[2], server.admitted[2].peer);
        assertEquals(addrs[3], server.admitted[3].peer);
      }),
    noPython,
  );

  leakAndTimerTest(
    `PROXY (${poller}): the channel's first recv gets exactly the bytes that followed the header`,
    async () => {
      const map: SocketMap = new Map();
      const firstReads: string[] = [];
      class FirstRead extends EchoHandler {
        #first = true;
        override handleRead(): void {
          const data = this.recv(65536);
          if (this.#first) firstReads.push(new TextDecoder().decode(data));
          this.#first = false;
          if (data.length > 0) this.send(data);
        }
      }
      class Server extends ProxyEchoServer {
        override handleAccepted(sock: Socket): void {
          new FirstRead(sock, this.map);
        }
      }
      const server = new Server({ map, proxyProtocol: "any" });
      try {
        await serveWhile(
          map,
          poller,
          (async () => {
            for (const header of [v1("TCP4 192.0.2.1 192.0.2.2 1 2"), v2()]) {
              const body = encoder.encode("\r\nQUIT\nPROXY after the header");
              const conn = await rawClient(server.port, new Uint8Array([...header, ...body]));
              assertEquals(await readUpTo(conn, body.length), body);
              conn.close();
            }
          })(),
        );
        assertEquals(firstReads, [
          "\r\nQUIT\nPROXY after the header",
          "\r\nQUIT\nPROXY after the header",
        ]);
      } finally {
        closeAll(map);
      }
    },
  );

  leakAndTimerTest(
    `PROXY (${poller}): a header dribbled byte by byte is waited for without spinning, then admitted`,
    () =>
      withProxyEchoServer(poller, { proxyProtocol: "any" }, async (server) => {
        const header = v2({ tlvs: [[0x05, encoder.encode("id-1")]] });
        const cpu0 = cpuSeconds();
        const t0 = performance.now();
        const [r] = await proxyClient(python!, "127.0.0.1", server.port, 2000, {
          header,
          dribbleMs: 15,
        });
        const wall = (performance.now() - t0) / 1000;
        const cpu = cpuSeconds() - cpu0;
        assertEquals([r.got, r.gotSha], [r.sent, r.sentSha]);
        assertEquals(server.admitted[0].addr, ["127.0.0.9", 40001]);
        // A peeked-but-kept header would leave the fd readable: a level-triggered
        // poller would then run flat out for the whole dribble.
        assertLess(cpu, wall * 0.5, `${cpu.toFixed(2)} s of CPU over ${wall.toFixed(2)} s`);
      }),
    noPython,
  );

  leakAndTimerTest(
    `PROXY (${poller}): garbage, the wrong version, oversized and truncated headers close that connection only, at once`,
    () =>
      withProxyEchoServer(poller, { proxyProtocol: "v1" }, async (server) => {
        const bad: [string, Uint8Array, boolean][] = [
          ["garbage", encoder.encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), false],
          ["v2 on a v1 listener", v2(), false],
          ["no CRLF in 107 bytes", encoder.encode(`PROXY UNKNOWN ${"x".repeat(200)}`), false],
          ["a bad port", v1("TCP4 1.2.3.4 5.6.7.8 1 70000"), false],
          ["a lone LF", encoder.encode("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"), false],
          ["truncated, then EOF", encoder.encode("PROXY TCP4 1.2.3.4 5.6"), true],
        ];
        for (const [what, bytes, halfClose] of bad) {
          const t0 = performance.now();
          const conn = await rawClient(server.port, bytes);
          if (halfClose) await conn.closeWrite();
          assert(await closedByServer(conn), `${what}: not closed`);
          conn.close();
          // Refused on sight, not after proxyProtocolTimeout (5 s).
          assertLess(performance.now() - t0, 2000, what);
        }
        assertEquals(server.admitted, []);
        assertEquals(server.warnings.length, bad.length);
        assertMatch(server.warnings[0], /dropped a connection from 127\.0\.0\.1:\d+: /);
        assertMatch(server.warnings[5], /closed after 22 bytes of a PROXY header/);
        // And the listener goes on serving.
        const [r] = await proxyClient(python!, "127.0.0.1", server.port, 100, {
          header: v1("TCP4 192.0.2.1 192.0.2.2 1 2"),
        });
        assertEquals([r.got, r.gotSha], [r.sent, r.sentSha]);
      }),
    noPython,
  );

  leakAndTimerTest(
    `PROXY v2 (${poller}): a bad signature, version, command, family, length, TLV or CRC32C is refused`,
    () =>
      withProxyEchoServer(poller, { proxyProtocol: "v2" }, async (server) => {
        const sigOff = v2();
        sigOff[11] = 0x0b;
        const bad = [
          sigOff,
          v2({ version: 1 }),
          v2({ command: 2 }),
          v2({ fam: 0x41 }),
          v2({ fam: 0x13 }),
          v2({ addresses: new Uint8Array(8) }), // TCP4 needs 12
          v2({ length: 5000 }), // over the limit: refused before 5000 bytes come
          v2({ tlvs: [[0x01, new Uint8Array(4)]], length: 12 + 5 }), // a TLV cut short
          v2({ crc: "bad" }),
          v2({ tlvs: [[0x05, new Uint8Array(129)]] }), // unique ID over 128
        ];
        for (const bytes of bad) {
          const conn = await rawClient(server.port, bytes);
          assert(await closedByServer(conn), `${bytes.length} bytes: not closed`);
          conn.close();
        }
        assertEquals(server.admitted, []);
        assertEquals(server.warnings.length, bad.length);
      }),
  );

  leakAndTimerTest(
    `PROXY (${poller}): a header that never comes is dropped after proxyProtocolTimeout`,
    () =>
      withProxyEchoServer(poller, { proxyProtocol: "any", timeout: 0.3 }, async (server, map) => {
        const t0 = performance.now();
        const silent = await rawClient(server.port, new Uint8Array(0));
        const partial = await rawClient(server.port, encoder.encode("PROXY TCP4 "));
        await delay(100);
        assertEquals(map.size, 3, "two connections waiting beside the listener");
        assert(await closedByServer(silent, 5000));
        assert(await closedByServer(partial, 5000));
        const waited = performance.now() - t0;
        silent.close();
        partial.close();
        assertGreater(waited, 250);
        assertLess(waited, 3000);
        assertEquals(map.size, 1);
        assertEquals(server.warnings.length, 2);
        assertMatch(server.warnings[0], /no complete PROXY header within 0\.3s/);
      }),
  );

  leakAndTimerTest(
    `PROXY (${poller}): maxConnectionsPerHost and maxConnections count the header's client`,
    () =>
      withProxyEchoServer(poller, { proxyProtocol: "v1" }, async (server) => {
        server.maxConnectionsPerHost = 1;
        server.maxConnections = 2;
        // One at a time: which one a limit refuses depends on the order of admission.
        const from = async (ip: string, port: number) => {
          const decided = server.admitted.length + server.refused.length;
          const conn = await rawClient(server.port, v1(`TCP4 ${ip} 127.0.0.1 ${port} 80`));
          for (let i = 0; i < 500; i++) {
            if (server.admitted.length + server.refused.length > decided) break;
            await delay(10);
          }
          return conn;
        };
        const a = await from("198.51.100.1", 1000);
        const b = await from("198.51.100.1", 1001); // same client host: refused
        const c = await from("198.51.100.2", 1002);
        const d = await from("198.51.100.3", 1003); // a third live connection: refused
        assert(await closedByServer(b));
        assert(await closedByServer(d));
        assertEquals(server.admitted.map((x) => x.addr), [
          ["198.51.100.1", 1000],
          ["198.51.100.2", 1002],
        ]);
        assertEquals(server.refused, [["198.51.100.1", 1001], ["198.51.100.3", 1003]]);
        assertEquals(server.connectionCount, 2);
        for (const conn of [a, b, c, d]) conn.close();
      }),
  );

  leakAndTimerTest(
    `PROXY (${poller}): a flood of bad and stalled headers costs bounded memory; good clients are served meanwhile`,
    () =>
      withProxyEchoServer(poller, { proxyProtocol: "any", timeout: 1 }, async (server, map) => {
        const garbage = proxyClient(python!, "127.0.0.1", server.port, 64, {
          header: encoder.encode("\x16\x03\x01 not a proxy header"),
          clients: 150,
        });
        const stalled: Deno.TcpConn[] = [];
        for (let i = 0; i < 40; i++) {
          stalled.push(await rawClient(server.port, encoder.encode(`PROXY TCP4 10.0.0.${i}`)));
        }
        const good = await proxyClient(python!, "127.0.0.1", server.port, 50_000, {
          header: v2(),
          clients: 20,
        });
        for (const r of good) assertEquals([r.got, r.gotSha], [r.sent, r.sentSha]);
        const bad = await garbage;
        for (const r of bad) assertEquals(r.got, 0, JSON.stringify(r));
        // Waiting connections hold their header's bytes only (under 107 each).
        assertLess(map.size, 1 + 40 + 20 + 1);
        for (const conn of stalled) assert(await closedByServer(conn, 5000));
        for (const conn of stalled) conn.close();
        assertEquals(server.admitted.length, 20);
        assertEquals(server.warnings.length, 150 + 40);
        for (let i = 0; i < 100 && map.size > 1; i++) await delay(20);
        assertEquals(map.size, 1, "only the listener is left");
      }),
    noPython,
  );

  leakAndTimerTest(
    `PROXY (${poller}): TLS begun after the header: the ClientHello reaches the TLS channel`,
    async () => {
      const certs = await tlsCerts();
      const ctx = serverContext(certs);
      class TlsServer extends ProxyEchoServer {
        override handleAccepted(sock: Socket, addr: Address): void {
          this.admitted.push({ addr, peer: sock.getpeername(), header: null });
          new EchoHandler(ctx.wrapSocket(sock, { serverSide: true }), this.map);
        }
      }
      const map: SocketMap = new Map();
      const server = new TlsServer({ map, proxyProtocol: "any" });
      try {
        await serveWhile(
          map,
          poller,
          (async () => {
            for (const header of [v1("TCP4 192.0.2.77 127.0.0.1 5555 443"), v2()]) {
              const [r] = await proxyClient(python!, "127.0.0.1", server.port, 100_000, {
                header,
                tlsCa: certs.ca,
              });
              assertEquals(r.error, undefined);
              assertEquals([r.got, r.gotSha], [r.sent, r.sentSha]);
            }
          })(),
        );
        assertEquals(server.admitted.map((a) => a.addr), [
          ["192.0.2.77", 5555],
          ["127.0.0.9", 40001],
        ]);
      } finally {
        closeAll(map);
      }
    },
    noPython,
  );

  for (
    const [label, serverOptions, defaults] of [
      ["send-proxy", "send-proxy", []],
      ["send-proxy-v2", "send-proxy-v2", []],
      [
        "send-proxy-v2 with CRC32C and unique-id TLVs",
        "send-proxy-v2 proxy-v2-options crc32c,unique-id",
        ["unique-id-format %{+X}o%ci:%cp_%fi:%fp_%Ts_%rt:%pid"],
      ],
    ] as const
  ) {
    leakAndTimerTest(
      `PROXY with HAProxy ${label} (${poller}): the client's own address, bytes hash-exact`,
      async () => {
        const map: SocketMap = new Map();
        const version = label === "send-proxy" ? "v1" : "v2";
        const server = new ProxyEchoServer({ map, proxyProtocol: version });
        const front = freePort();
        await using _hp = await startHaproxy({
          bind: `127.0.0.1:${front}`,
          backend: server.port,
          serverOptions,
          defaults: [...defaults],
        });
        try {
          const results = await serveWhile(
            map,
            poller,
            proxyClient(python!, "127.0.0.1", front, 1 << 20, { source: "127.0.0.2", clients: 4 }),
          );
          for (const r of results) {
            assertEquals(r.error, undefined);
            assertEquals([r.got, r.gotSha], [r.sent, r.sentSha]);
          }
          const want = results.map((r) => JSON.stringify(r.local)).sort();
          const seen = server.admitted.map((a) => JSON.stringify(a.addr)).sort();
          assertEquals(seen, want);
          for (const a of server.admitted) {
            assertEquals(a.header?.version, version === "v1" ? 1 : 2);
            assertEquals(a.header?.destination, ["127.0.0.1", front]);
          }
          if (label.includes("TLVs")) {
            const types = server.admitted[0].header!.tlvs.map((t) => t.type).sort();
            assertEquals(types, [0x03, 0x05]);
          }
          assertEquals(server.warnings, []);
        } finally {
          closeAll(map);
        }
      },
      noPython || !hasHaproxy,
    );
  }

  leakAndTimerTest(
    `PROXY with HAProxy on IPv6 (${poller}): a TCP6 client address`,
    async () => {
      const map: SocketMap = new Map();
      const server = new ProxyEchoServer({ map, proxyProtocol: "any" });
      const front = freePort("::1");
      try {
        for (const serverOptions of ["send-proxy", "send-proxy-v2"]) {
          await using _hp = await startHaproxy({
            bind: `[::1]:${front}`,
            backend: server.port,
            serverOptions,
          });
          const [r] = await serveWhile(
            map,
            poller,
            proxyClient(python!, "::1", front, 10_000),
          );
          assertEquals([r.got, r.gotSha], [r.sent, r.sentSha]);
          assertEquals(server.admitted.at(-1)!.addr, ["::1", r.local[1], 0, 0]);
        }
      } finally {
        closeAll(map);
      }
    },
    noPython || !hasHaproxy || !hasIPv6,
  );
}

for (const poller of POLLERS) {
  leakAndTimerTest(
    `PROXY (${poller}): urgent (out-of-band) data before the header closes the connection at once`,
    () =>
      withProxyEchoServer(poller, { proxyProtocol: "any" }, async (server) => {
        const script = [
          "import socket, sys",
          "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=10)",
          "s.send(b'!', socket.MSG_OOB)",
          "try: print('closed' if s.recv(16) == b'' else 'data')",
          "except ConnectionResetError: print('closed')",
        ].join("\n");
        const t0 = performance.now();
        const r = await run(python!, ["-c", script, String(server.port)]);
        assertEquals(decoder.decode(r.stdout).trim(), "closed", r.stderr);
        assertLess(performance.now() - t0, 4000);
        assertMatch(
          server.warnings[0] ?? "",
          /urgent \(out-of-band\) data before the PROXY header/,
        );
        assertEquals(server.admitted, []);
      }),
    noPython,
  );
}

leakAndTimerTest(
  "PROXY: on a Loop of its own, the header's deadline runs on that loop; a closed listener still hands over what it accepted",
  async () => {
    const loop = new Loop();
    const server = new ProxyEchoServer({ map: loop.map, proxyProtocol: "v1", timeout: 0.3 });
    const stop = new AbortController();
    const running = loop.runAsync({ timeout: 0.05, signal: stop.signal });
    try {
      const silent = await rawClient(server.port, new Uint8Array(0));
      const header = v1("TCP4 192.0.2.5 192.0.2.6 7 8");
      const late = await rawClient(server.port, header.subarray(0, 10));
      for (let i = 0; i < 200 && loop.map.size < 3; i++) await delay(10);
      assertEquals(loop.map.size, 3);
      assertEquals(pendingTimers(), 0, "nothing on the default loop");
      // The listener closes; the connection it accepted is still served once its header is in.
      server.close();
      await late.write(Uint8Array.of(...header.subarray(10), ...encoder.encode("ping")));
      assertEquals(decoder.decode(await readUpTo(late, 4)), "ping");
      assertEquals(server.admitted.map((a) => a.addr), [["192.0.2.5", 7]]);
      assert(await closedByServer(silent, 5000), "the silent one timed out");
      assertMatch(server.warnings[0], /within 0\.3s/);
      silent.close();
      late.close();
    } finally {
      stop.abort();
      await running;
      loop.close();
    }
  },
);

leakAndTimerTest(
  "PROXY: a bad setting goes to the listener's handleError before any accept",
  async () => {
    const map: SocketMap = new Map();
    const server = new ProxyEchoServer({ map, proxyProtocol: "v1" });
    const errors: unknown[] = [];
    server.handleError = (e) => {
      errors.push(e);
      server.close();
    };
    // deno-lint-ignore no-explicit-any
    (server as any).proxyProtocol = "v3";
    const conn = await rawClient(server.port, v1("UNKNOWN"));
    try {
      await serveWhile(
        map,
        "poll",
        (async () => {
          for (let i = 0; i < 200 && errors.length === 0; i++) await delay(10);
        })(),
      );
      assertEquals(errors.length, 1);
      assertMatch(String(errors[0]), /proxyProtocol must be "v1", "v2", "any" or null, not "v3"/);
    } finally {
      conn.close();
      closeAll(map);
    }
    // deno-lint-ignore no-explicit-any
    (server as any).proxyProtocol = "v1";
    server.proxyProtocolTimeout = -1;
    assertMatch(
      String((() => {
        try {
          server.handleAccept();
        } catch (e) {
          return e;
        }
      })()),
      /proxyProtocolTimeout must be a finite number of seconds > 0, not -1/,
    );
  },
);

leakAndTimerTest(
  "PROXY: handleAccepted throwing goes to the listener's handleError; the socket is closed",
  async () => {
    const map: SocketMap = new Map();
    const errors: unknown[] = [];
    class Throwing extends ProxyEchoServer {
      override handleAccepted(): void {
        throw new Error("boom");
      }
      override handleError(e: unknown): void {
        errors.push(e); // the listener stays open
      }
    }
    const server = new Throwing({ map, proxyProtocol: "v1" });
    try {
      await serveWhile(
        map,
        "epoll",
        (async () => {
          const conn = await rawClient(server.port, v1("UNKNOWN"));
          assert(await closedByServer(conn));
          conn.close();
        })(),
      );
      assertEquals(errors.map(String), ["Error: boom"]);
      assertEquals(map.size, 1);
    } finally {
      closeAll(map);
    }
  },
);

leakAndTimerTest(
  "PROXY: closing the map closes connections still waiting for their header",
  async () => {
    const map: SocketMap = new Map();
    const server = new ProxyEchoServer({ map, proxyProtocol: "v2" });
    const conns: Deno.TcpConn[] = [];
    try {
      await serveWhile(
        map,
        "select",
        (async () => {
          for (let i = 0; i < 3; i++) conns.push(await rawClient(server.port, v2().subarray(0, 5)));
          for (let i = 0; i < 200 && map.size < 4; i++) await delay(10);
          assertEquals(map.size, 4);
        })(),
      );
    } finally {
      closeAll(map);
    }
    for (const conn of conns) {
      assert(await closedByServer(conn));
      conn.close();
    }
    assertEquals(server.warnings, []);
  },
);
