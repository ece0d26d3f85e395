// Socket timeouts (settimeout/gettimeout, CPython's poll-before-the-call),
// createConnection/createServer against python3 peers, and getaddrinfoAsync.
//
// A timed call blocks this thread (and Deno's event loop) for at most its
// timeout; peers that must act meanwhile are python3 processes.
import { assert, assertEquals, assertRejects, assertThrows } from "@std/assert";
import {
  AF_INET,
  AF_INET6,
  AF_UNIX,
  createConnection,
  createServer,
  errno,
  GaiError,
  getaddrinfo,
  getaddrinfoAsync,
  IPPROTO_IPV6,
  IPV6_V6ONLY,
  MessageBatch,
  OSError,
  SO_REUSEADDR,
  SO_REUSEPORT,
  SOCK_DGRAM,
  SOCK_NONBLOCK,
  SOCK_STREAM,
  Socket,
  socketpair,
  SOL_SOCKET,
  TimeoutError,
} from "../mod.ts";
import { C } from "../ffi/platform.ts";
import { libc } from "../ffi/symbols.ts";
import { hasIPv6, leakTest, python, PythonPeer } from "./_util.ts";

const dec = new TextDecoder();

function pythonTest(name: string, fn: () => Promise<void>): void {
  leakTest(name, fn, !python);
}

function fdNonblocking(sock: Socket): boolean {
  return (libc().fcntl(sock.fileno(), C.F_GETFL, 0) & C.O_NONBLOCK) !== 0;
}

/** Runs `fn`, which must throw TimeoutError after about `seconds`; returns the time it took. */
function timesOut(fn: () => unknown, seconds: number, what: string): number {
  const start = performance.now();
  const error = assertThrows(fn, TimeoutError, "timed out", what);
  const took = (performance.now() - start) / 1000;
  assert(error instanceof OSError, "a TimeoutError is an OSError");
  assertEquals([error.errno, error.code, error.message], [
    errno.ETIMEDOUT,
    "ETIMEDOUT",
    "timed out",
  ]);
  assert(took >= seconds * 0.95, `${what}: gave up after ${took} s, before ${seconds} s`);
  assert(took < seconds + 1.5, `${what}: took ${took} s for a ${seconds} s timeout`);
  return took;
}

leakTest(
  "timeout: settimeout/gettimeout/getblocking as Python's (testTimeoutDefault & co.)",
  () => {
    const s = new Socket();
    try {
      assertEquals([s.gettimeout(), s.getblocking(), fdNonblocking(s)], [null, true, false]);
      s.settimeout(2.5);
      assertEquals([s.gettimeout(), s.getblocking(), fdNonblocking(s)], [2.5, true, true]);
      s.settimeout(0);
      assertEquals([s.gettimeout(), s.getblocking(), fdNonblocking(s)], [0, false, true]);
      s.settimeout(1);
      s.setblocking(true);
      assertEquals([s.gettimeout(), s.getblocking(), fdNonblocking(s)], [null, true, false]);
      s.settimeout(1);
      s.setblocking(false);
      assertEquals([s.gettimeout(), s.getblocking(), fdNonblocking(s)], [0, false, true]);
      s.settimeout(null);
      assertEquals([s.gettimeout(), s.getblocking(), fdNonblocking(s)], [null, true, false]);
      assertThrows(() => s.settimeout(-1), RangeError, "Timeout value out of range");
      assertThrows(() => s.settimeout(NaN), RangeError, "NaN");
      assertThrows(() => s.settimeout(Infinity), RangeError);
      assertThrows(() => s.settimeout("1" as unknown as number), TypeError);
      const nb = new Socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK);
      assertEquals(nb.gettimeout(), 0);
      nb.close();
    } finally {
      s.close();
    }
  },
);

leakTest("timeout: recv, recvfrom, recvmsg, recvmmsg and accept time out; try* never wait", () => {
  const [a, b] = socketpair();
  const udp = new Socket(AF_INET, SOCK_DGRAM);
  const lst = new Socket();
  try {
    b.settimeout(0.2);
    timesOut(() => b.recv(10), 0.2, "recv");
    timesOut(() => b.recvInto(new Uint8Array(4)), 0.2, "recvInto");
    timesOut(() => b.recvmsg(10), 0.2, "recvmsg");
    assertEquals(b.tryRecvInto(new Uint8Array(4)), -1, "tryRecvInto does not wait");
    a.sendall("late but in time");
    assertEquals(dec.decode(b.recv(64)), "late but in time");
    udp.bind(["127.0.0.1", 0]);
    udp.settimeout(0.15);
    timesOut(() => udp.recvfrom(10), 0.15, "recvfrom");
    timesOut(() => udp.recvfromInto(new Uint8Array(4)), 0.15, "recvfromInto");
    timesOut(() => udp.recvmmsgInto(new MessageBatch(4, 64)), 0.15, "recvmmsgInto");
    lst.bind(["127.0.0.1", 0]);
    lst.listen(1);
    lst.settimeout(0.2);
    timesOut(() => lst.accept(), 0.2, "accept");
  } finally {
    for (const s of [a, b, udp, lst]) s.close();
  }
});

leakTest("timeout: sendall must finish within the timeout as a whole (Python 3.5+)", () => {
  const [a, b] = socketpair();
  try {
    a.setblocking(false);
    // Fill the buffers, then ask for more than fits.
    const chunk = new Uint8Array(65536);
    for (let i = 0; i < 10_000 && a.trySend(chunk) !== -1; i++);
    a.settimeout(0.3);
    timesOut(() => a.sendall(new Uint8Array(1 << 20)), 0.3, "sendall");
    timesOut(() => a.send(chunk), 0.3, "send");
    timesOut(() => a.sendmsg([chunk]), 0.3, "sendmsg");
  } finally {
    a.close();
    b.close();
  }
});

leakTest("timeout: connect to a full backlog times out; connectEx answers EAGAIN", () => {
  // Nobody accepts and the backlog is full: Linux drops further SYNs, so the
  // next connection stays in SYN_SENT (all on the loopback).
  const lst = new Socket();
  const fillers: Socket[] = [];
  const late = new Socket();
  const lateEx = new Socket();
  try {
    lst.bind(["127.0.0.1", 0]);
    lst.listen(0);
    const addr = lst.getsockname();
    for (let i = 0; i < 4; i++) {
      const s = new Socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK);
      fillers.push(s);
      s.connectEx(addr);
    }
    late.settimeout(0.3);
    timesOut(() => late.connect(addr), 0.3, "connect");
    lateEx.settimeout(0.3);
    assertEquals(lateEx.connectEx(addr), errno.EAGAIN);
  } finally {
    for (const s of [lst, ...fillers, late, lateEx]) s.close();
  }
});

const PY_SLOW_PEER = `
import socket, sys, time
srv = socket.create_server(("127.0.0.1", 0))
print(srv.getsockname()[1], flush=True)
conn, _ = srv.accept()
time.sleep(0.3)
conn.sendall(b"after 0.3 s")
c = socket.create_connection(("127.0.0.1", int(sys.stdin.readline())))
c.sendall(b"from python")
c.recv(1)
`;

pythonTest(
  "timeout: timed calls that succeed: connect, recv and accept with a python peer",
  async () => {
    const client = new Socket();
    const lst = new Socket();
    const open: Socket[] = [];
    try {
      const child = new Deno.Command(python!, {
        args: ["-c", PY_SLOW_PEER],
        stdin: "piped",
        stdout: "piped",
        stderr: "inherit",
      }).spawn();
      const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      try {
        const port = Number((await reader.read()).value!.trim());
        client.settimeout(5);
        client.connect(["127.0.0.1", port]);
        const start = performance.now();
        assertEquals(dec.decode(client.recv(64)), "after 0.3 s");
        assert(performance.now() - start >= 250, "recv waited for the data");
        lst.bind(["127.0.0.1", 0]);
        lst.listen(1);
        lst.settimeout(5);
        const writer = child.stdin.getWriter();
        await writer.write(
          new TextEncoder().encode(`${(lst.getsockname() as [string, number])[1]}\n`),
        );
        await writer.close();
        const [conn] = lst.accept();
        open.push(conn);
        // As Python: a socket accepted from a listener with a timeout is blocking, without one.
        assertEquals([conn.getblocking(), conn.gettimeout(), fdNonblocking(conn)], [
          true,
          null,
          false,
        ]);
        assertEquals(dec.decode(conn.recv(64)), "from python");
        conn.send("x");
      } finally {
        await reader.cancel();
        assertEquals((await child.status).code, 0);
      }
    } finally {
      for (const s of [client, lst, ...open]) s.close();
    }
  },
);

const PY_SERVER = `
import socket, sys
srv = socket.create_server(("127.0.0.1", 0))
print(srv.getsockname()[1], flush=True)
conn, addr = srv.accept()
print(addr[0], addr[1], flush=True)
conn.sendall(conn.recv(64).upper())
conn.recv(1)
`;

pythonTest(
  "create: createConnection tries each address in turn, binds, times, as Python's",
  async () => {
    await using peer = new PythonPeer(PY_SERVER, []);
    const port = Number(await peer.line());
    const src = new Socket();
    src.bind(["127.0.0.1", 0]);
    const srcPort = (src.getsockname() as [string, number])[1];
    src.close(); // a free port to bind the client to
    // "localhost" gives ::1 first where IPv6 is on: refused there, then 127.0.0.1 connects.
    const sock = createConnection(["localhost", port], 3, ["127.0.0.1", srcPort]);
    try {
      assertEquals([sock.family, sock.gettimeout()], [AF_INET, 3]);
      assertEquals(await peer.line(), `127.0.0.1 ${srcPort}`);
      sock.sendall("shout");
      assertEquals(dec.decode(sock.recv(64)), "SHOUT");
      sock.send("x");
    } finally {
      sock.close();
    }
    await peer.finish();
    // Without a timeout the socket stays blocking (Python's global default, None).
    const lst = createServer(["127.0.0.1", 0]);
    const blocking = createConnection(lst.getsockname() as [string, number]);
    assertEquals([blocking.gettimeout(), blocking.getblocking()], [null, true]);
    blocking.close();
    lst.close();
  },
);

leakTest("create: createConnection's errors are the last address's, as Python's", () => {
  const closed = new Socket();
  closed.bind(["127.0.0.1", 0]);
  const port = (closed.getsockname() as [string, number])[1];
  closed.close();
  const e = assertThrows(() => createConnection(["127.0.0.1", port]), OSError);
  assertEquals(e.code, "ECONNREFUSED");
  assertThrows(() => createConnection(["no-such-host.invalid", 80]), GaiError);
  assertThrows(() => createConnection("127.0.0.1" as unknown as [string, number]), TypeError);
});

const PY_BIND_ERROR = `
import socket, sys
try:
    socket.create_server(("127.0.0.1", int(sys.argv[1])))
except OSError as e:
    print(e)
`;

pythonTest(
  "create: createServer binds, reuses, listens; its bind error reads as Python's",
  async () => {
    const a = createServer(["127.0.0.1", 0]);
    const open: Socket[] = [a];
    try {
      const port = (a.getsockname() as [string, number])[1];
      assertEquals([a.family, a.getsockopt(SOL_SOCKET, SO_REUSEADDR) !== 0], [AF_INET, true]);
      assertEquals(a.getsockopt(SOL_SOCKET, C.SO_ACCEPTCONN), 1, "listening");
      const e = assertThrows(() => createServer(["127.0.0.1", port]), OSError);
      const py = await new Deno.Command(python!, { args: ["-c", PY_BIND_ERROR, String(port)] })
        .output();
      assertEquals(e.message, dec.decode(py.stdout).trim());
      assertEquals(e.code, "EADDRINUSE");
      // reusePort: two listeners on one port.
      const r1 = createServer(["127.0.0.1", 0], { reusePort: true, backlog: 5 });
      open.push(r1);
      const rport = (r1.getsockname() as [string, number])[1];
      const r2 = createServer(["127.0.0.1", rport], { reusePort: true });
      open.push(r2);
      assertEquals(r2.getsockopt(SOL_SOCKET, SO_REUSEPORT), 1);
      assertThrows(
        () => createServer(["", 0], { dualstackIpv6: true }),
        RangeError,
        "dualstackIpv6 requires AF_INET6 family",
      );
      const path = `\0asyncore-create-${Deno.pid}`;
      const unix = createServer(path, { family: AF_UNIX });
      open.push(unix);
      assertEquals(unix.getsockname(), path);
    } finally {
      for (const s of open) s.close();
    }
  },
);

const PY_V4_CLIENT = `
import socket, sys
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
c.sendall(b"v4")
print(c.recv(64).decode(), flush=True)
`;

leakTest(
  "create: an AF_INET6 server is IPv6-only unless dualstackIpv6; then python's IPv4 client gets in",
  async () => {
    if (!hasIPv6 || !python) return;
    const only6 = createServer(["::", 0], { family: AF_INET6 });
    const dual = createServer(["::", 0], { family: AF_INET6, dualstackIpv6: true });
    const open: Socket[] = [];
    try {
      assertEquals(only6.getsockopt(IPPROTO_IPV6, IPV6_V6ONLY), 1);
      assertEquals(dual.getsockopt(IPPROTO_IPV6, IPV6_V6ONLY), 0);
      dual.setblocking(false);
      const port = (dual.getsockname() as [string, number])[1];
      await using peer = new PythonPeer(PY_V4_CLIENT, [String(port)]);
      let accepted: [Socket, unknown] | null = null;
      for (let i = 0; i < 5000 && accepted === null; i++) {
        try {
          accepted = dual.accept();
        } catch (error) {
          if (!(error instanceof OSError && error.code === "EAGAIN")) throw error;
          await new Promise((r) => setTimeout(r, 2));
        }
      }
      assert(accepted !== null, "python's IPv4 client was accepted");
      const [conn, addr] = accepted;
      open.push(conn);
      assertEquals((addr as string[])[0], "::ffff:127.0.0.1");
      conn.setblocking(true);
      conn.settimeout(5);
      assertEquals(dec.decode(conn.recv(8)), "v4");
      conn.sendall("dual");
      assertEquals(await peer.line(), "dual");
      await peer.finish();
    } finally {
      for (const s of [only6, dual, ...open]) s.close();
    }
  },
);

Deno.test("netdb: getaddrinfoAsync gives getaddrinfo's results and errors, same as getaddrinfo", async () => {
  type GaiArgs = Parameters<typeof getaddrinfo>;
  const cases: GaiArgs[] = [
    ["localhost", 80, 0, SOCK_STREAM],
    ["127.0.0.1", "http"],
    [null, 0, AF_INET, 0, 0, C.AI_PASSIVE],
  ];
  for (const args of cases) {
    assertEquals(await getaddrinfoAsync(...args), getaddrinfo(...args));
  }
  const many = await Promise.all(
    Array.from({ length: 16 }, () => getaddrinfoAsync("localhost", 443, AF_INET, SOCK_STREAM)),
  );
  for (const r of many) assertEquals(r[0][4], ["127.0.0.1", 443]);
  const e = await assertRejects(() => getaddrinfoAsync("no-such-host.invalid", 80), GaiError);
  assertEquals([e.errno, e.code], [-2, "EAI_NONAME"]);
  assertThrows(() => getaddrinfoAsync(5 as unknown as string, 80), TypeError);
  assertThrows(() => getaddrinfoAsync("localhost", 1.5), TypeError);
});
