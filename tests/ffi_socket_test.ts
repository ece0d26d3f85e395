// Socket over real loopback peers: Deno's own sockets, python3 subprocesses and
// our own sockets, over IPv4, IPv6 and Unix paths (stream and datagram).
//
// A blocking FFI call blocks Deno's event loop, so every socket that waits on
// a Deno-side peer is non-blocking and is pumped with short awaits, each loop
// under a deadline.
import { assert, assertEquals, assertNotEquals, assertThrows } from "@std/assert";
import {
  type Address,
  AF_INET,
  AF_INET6,
  AF_UNIX,
  encodeLinger,
  errno,
  IPPROTO_IPV6,
  IPPROTO_TCP,
  IPV6_V6ONLY,
  MSG_PEEK,
  OSError,
  SHUT_RDWR,
  SHUT_WR,
  SO_ERROR,
  SO_KEEPALIVE,
  SO_LINGER,
  SO_RCVBUF,
  SO_REUSEADDR,
  SO_SNDBUF,
  SO_TYPE,
  SOCK_DGRAM,
  SOCK_NONBLOCK,
  SOCK_STREAM,
  Socket,
  SOL_SOCKET,
  TCP_NODELAY,
} from "../mod.ts";
import { C } from "../ffi/platform.ts";
import * as os from "../ffi/os.ts";
import {
  delay,
  leakTest,
  onWindows,
  python,
  PythonPeer,
  randomBytes,
  sha256,
  tempSocketPath,
  withTimeout,
} from "./_util.ts";

/** Calls `step` (with a 1 ms await between tries) until it returns a value; bounded. */
async function until<T>(
  step: () => T | null | undefined | false,
  what: string,
  ms = 5000,
): Promise<T> {
  const deadline = performance.now() + ms;
  for (;;) {
    const v = step();
    if (v !== null && v !== undefined && v !== false) return v as T;
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(1);
  }
}

/** `accept()` that answers null instead of throwing EAGAIN. */
function acceptOrNull(listener: Socket): [Socket, Address] | null {
  try {
    return listener.accept();
  } catch (error) {
    if (error instanceof OSError && error.errno === errno.EAGAIN) return null;
    throw error;
  }
}

/** `recvfrom()` that answers null instead of throwing EAGAIN. */
function recvfromOrNull(sock: Socket, n: number): [Uint8Array, Address] | null {
  try {
    return sock.recvfrom(n);
  } catch (error) {
    if (error instanceof OSError && error.errno === errno.EAGAIN) return null;
    throw error;
  }
}

/** A non-blocking listener on `addr` (port 0 for IPv4/IPv6). */
function listener(family: number, addr: Address): Socket {
  const s = new Socket(family, SOCK_STREAM);
  s.setblocking(false);
  s.bind(addr);
  s.listen(16);
  return s;
}

/** A connected non-blocking pair `[client, server]` through `lst`. */
async function connectPair(lst: Socket, family: number): Promise<[Socket, Socket]> {
  const client = new Socket(family, SOCK_STREAM);
  client.setblocking(false);
  const err = client.connectEx(lst.getsockname());
  assert(err === 0 || err === errno.EINPROGRESS, `connectEx gave ${err}`);
  const [server] = await until(() => acceptOrNull(lst), "accept");
  await until(
    () => client.getsockopt(SOL_SOCKET, SO_ERROR) === 0 && isConnected(client),
    "connect",
  );
  return [client, server];
}

function isConnected(s: Socket): boolean {
  try {
    s.getpeername();
    return true;
  } catch {
    return false;
  }
}

/**
 * Sends `data` through `sock` while reading back `expect` bytes from it, both
 * non-blocking and interleaved so neither side's buffers can fill up for good.
 */
async function exchange(sock: Socket, data: Uint8Array, expect: number, ms = 10000) {
  const got = new Uint8Array(expect);
  let sent = 0, received = 0;
  const deadline = performance.now() + ms;
  while (received < expect || sent < data.length) {
    let progressed = false;
    if (sent < data.length) {
      const n = sock.trySend(data.subarray(sent, sent + 65536));
      if (n > 0) [sent, progressed] = [sent + n, true];
    }
    if (received < expect) {
      const n = sock.tryRecvInto(got.subarray(received), expect - received);
      if (n === 0) throw new Error(`peer closed after ${received} of ${expect} bytes`);
      if (n > 0) [received, progressed] = [received + n, true];
    }
    if (performance.now() > deadline) {
      throw new Error(`exchange timed out: sent ${sent}/${data.length}, got ${received}/${expect}`);
    }
    if (!progressed) await delay(1);
  }
  return got;
}

/** Waits for end-of-stream on `sock`; throws on data or timeout. */
async function expectEof(sock: Socket, ms = 5000): Promise<void> {
  const buf = new Uint8Array(16);
  await until(
    () => {
      const n = sock.tryRecvInto(buf);
      if (n > 0) throw new Error(`expected EOF, got ${n} bytes`);
      return n === 0;
    },
    "end of stream",
    ms,
  );
}

async function withPython(
  script: string,
  args: string[],
  fn: (peer: PythonPeer) => Promise<void>,
): Promise<void> {
  await using peer = new PythonPeer(script, args);
  await fn(peer);
}

/** Removes the temp dir of a `tempSocketPath`. */
function removeSocketDir(path: string): void {
  Deno.removeSync(path.slice(0, path.lastIndexOf("/")), { recursive: true });
}

const enc = new TextEncoder();
const dec = new TextDecoder();

// ---------------------------------------------------------------------------
// TCP with Deno's own sockets

leakTest("socket: our client <-> a Deno.listen echo server (1 MiB, IPv4)", async () => {
  const server = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let serverPeerPort = -1;
  const serving = (async () => {
    const conn = await server.accept();
    serverPeerPort = (conn.remoteAddr as Deno.NetAddr).port;
    const buf = new Uint8Array(65536);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      let off = 0;
      while (off < n) off += await conn.write(buf.subarray(off, n));
    }
    conn.close();
  })();
  const client = new Socket(AF_INET, SOCK_STREAM);
  try {
    client.setblocking(false);
    const port = (server.addr as Deno.NetAddr).port;
    const err = client.connectEx(["127.0.0.1", port]);
    assert(err === 0 || err === errno.EINPROGRESS, `connectEx: ${err}`);
    await until(() => isConnected(client), "connect");
    assertEquals(client.getpeername(), ["127.0.0.1", port]);
    const data = randomBytes(1 << 20, 7);
    const back = await exchange(client, data, data.length);
    assertEquals(await sha256(back), await sha256(data));
    assertEquals((client.getsockname() as [string, number])[1], serverPeerPort);
    client.shutdown(SHUT_WR);
    await expectEof(client);
    await withTimeout(serving, 5000, "Deno server");
  } finally {
    client.close();
    server.close();
    await serving.catch(() => {});
  }
});

leakTest("socket: a Deno.connect client <-> our listening Socket (echo, IPv4)", async () => {
  const lst = listener(AF_INET, ["127.0.0.1", 0]);
  const [host, port] = lst.getsockname() as [string, number];
  assertEquals(host, "127.0.0.1");
  assert(port > 0);
  const data = randomBytes(300_000, 11);
  let conn: Deno.TcpConn | undefined;
  const talking = (async () => {
    conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const writing = (async () => {
      let off = 0;
      while (off < data.length) off += await conn!.write(data.subarray(off, off + 32768));
      await conn!.closeWrite();
    })();
    const parts: Uint8Array[] = [];
    const buf = new Uint8Array(65536);
    for (;;) {
      const n = await conn!.read(buf);
      if (n === null) break;
      parts.push(buf.slice(0, n));
    }
    await writing;
    return parts;
  })();
  let accepted: Socket | undefined;
  try {
    const [sock, peer] = await until(() => acceptOrNull(lst), "accept");
    accepted = sock;
    assertEquals(sock.getblocking(), false, "the accepted socket inherits non-blocking mode");
    assertEquals(sock.family, AF_INET);
    assertEquals(sock.type, SOCK_STREAM);
    await until(() => conn, "Deno.connect");
    assertEquals(peer, ["127.0.0.1", (conn!.localAddr as Deno.NetAddr).port]);
    assertEquals(sock.getpeername(), peer);
    assertEquals(sock.getsockname(), ["127.0.0.1", port]);
    // Echo until the client's end of stream, then close.
    const buf = new Uint8Array(65536);
    let pending = new Uint8Array(0);
    let total = 0;
    let eof = false;
    const deadline = performance.now() + 10000;
    while (!eof || pending.length > 0) {
      if (performance.now() > deadline) throw new Error(`echo timed out at ${total} bytes`);
      let progressed = false;
      if (pending.length > 0) {
        const n = sock.trySend(pending);
        if (n > 0) [pending, progressed] = [pending.subarray(n), true];
      } else if (!eof) {
        const n = sock.tryRecvInto(buf);
        if (n === 0) eof = true;
        if (n > 0) [pending, total, progressed] = [buf.slice(0, n), total + n, true];
      }
      if (!progressed) await delay(1);
    }
    assertEquals(total, data.length);
    sock.close();
    const parts = await withTimeout(talking, 5000, "Deno client");
    const joined = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
    let o = 0;
    for (const p of parts) [joined.set(p, o), o += p.length];
    assertEquals(await sha256(joined), await sha256(data));
  } finally {
    accepted?.close();
    lst.close();
    await talking.catch(() => {});
    conn?.close();
  }
});

// ---------------------------------------------------------------------------
// python3 peers

const PY_ECHO_SERVER = `
import socket, sys
fam = socket.AF_INET6 if sys.argv[1] == "6" else socket.AF_INET
srv = socket.socket(fam, socket.SOCK_STREAM)
srv.bind((sys.argv[2], 0))
srv.listen(1)
srv.settimeout(10)
print(srv.getsockname()[1], flush=True)
c, addr = srv.accept()
c.settimeout(10)
print(addr[1], flush=True)
while True:
    d = c.recv(65536)
    if not d:
        break
    c.sendall(d)
c.close()
srv.close()
`;

const PY_CLIENT = `
import socket, sys
fam = socket.AF_INET6 if sys.argv[1] == "6" else socket.AF_INET
c = socket.socket(fam, socket.SOCK_STREAM)
c.settimeout(10)
c.connect((sys.argv[2], int(sys.argv[3])))
print(c.getsockname()[1], flush=True)
c.sendall(b"hello from python\\n")
data = b""
while not data.endswith(b"\\n"):
    chunk = c.recv(100)
    if not chunk:
        break
    data += chunk
print(data.decode().strip(), flush=True)
print("eof" if c.recv(10) == b"" else "data", flush=True)
c.close()
`;

const PY_UDP_ECHO = `
import socket, sys
fam = socket.AF_INET6 if sys.argv[1] == "6" else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.bind((sys.argv[2], 0))
s.settimeout(10)
print(s.getsockname()[1], flush=True)
d, a = s.recvfrom(65536)
s.sendto(d[::-1], a)
print(a[1], flush=True)
s.close()
`;

for (const [v, family, host] of [["4", AF_INET, "127.0.0.1"], ["6", AF_INET6, "::1"]] as const) {
  leakTest(`socket: our client <-> a python3 echo server (IPv${v})`, async () => {
    await withPython(PY_ECHO_SERVER, [v, host], async (peer) => {
      const port = Number(await peer.line());
      const client = new Socket(family, SOCK_STREAM);
      try {
        client.setblocking(false);
        const err = client.connectEx([host, port]);
        assert(err === 0 || err === errno.EINPROGRESS, `connectEx: ${err}`);
        await until(() => isConnected(client), "connect");
        const data = randomBytes(512 * 1024, 3);
        const back = await exchange(client, data, data.length);
        assertEquals(await sha256(back), await sha256(data));
        const myPort = (client.getsockname() as [string, number])[1];
        assertEquals(Number(await peer.line()), myPort, "python saw our port");
        client.shutdown(SHUT_WR);
        await expectEof(client);
        await peer.finish();
      } finally {
        client.close();
      }
    });
  }, python === null);

  leakTest(`socket: a python3 client <-> our listening Socket (IPv${v})`, async () => {
    const lst = listener(family, [host, 0]);
    try {
      const port = (lst.getsockname() as [string, number])[1];
      await withPython(PY_CLIENT, [v, host, String(port)], async (peer) => {
        const [sock, addr] = await until(() => acceptOrNull(lst), "accept", 10000);
        try {
          const pyPort = Number(await peer.line());
          assertEquals(addr[0], host);
          assertEquals(addr[1], pyPort);
          if (family === AF_INET6) assertEquals(addr.length, 4);
          const buf = new Uint8Array(100);
          let got = "";
          await until(() => {
            const n = sock.tryRecvInto(buf);
            if (n > 0) got += dec.decode(buf.subarray(0, n));
            return got.endsWith("\n");
          }, "python's line");
          assertEquals(got, "hello from python\n");
          assertEquals(sock.send("hello from deno\n"), 16);
          assertEquals(await peer.line(), "hello from deno");
          sock.close();
          assertEquals(await peer.line(), "eof");
          await peer.finish();
        } finally {
          sock.close();
        }
      });
    } finally {
      lst.close();
    }
  }, python === null);

  leakTest(`socket: UDP sendto/recvfrom with a python3 peer (IPv${v})`, async () => {
    await withPython(PY_UDP_ECHO, [v, host], async (peer) => {
      const port = Number(await peer.line());
      const s = new Socket(family, SOCK_DGRAM);
      try {
        s.setblocking(false);
        s.bind([host, 0]);
        assertEquals(s.sendto("datagram!", [host, port]), 9);
        const [data, from] = await until(() => recvfromOrNull(s, 100), "the echo", 10000);
        assertEquals(dec.decode(data), "!margatad");
        assertEquals(from, family === AF_INET6 ? [host, port, 0, 0] : [host, port]);
        assertEquals(Number(await peer.line()), (s.getsockname() as [string, number])[1]);
        await peer.finish();
      } finally {
        s.close();
      }
    });
  }, python === null);
}

// ---------------------------------------------------------------------------
// UDP between our own sockets

for (const [v, family, host] of [["4", AF_INET, "127.0.0.1"], ["6", AF_INET6, "::1"]] as const) {
  leakTest(`socket: UDP datagrams keep their boundaries and senders (IPv${v})`, async () => {
    const a = new Socket(family, SOCK_DGRAM | SOCK_NONBLOCK);
    const b = new Socket(family, SOCK_DGRAM | SOCK_NONBLOCK);
    try {
      assertEquals(a.type, SOCK_DGRAM, "creation flags are not part of type");
      assertEquals(a.getblocking(), false);
      a.bind([host, 0]);
      b.bind([host, 0]);
      const aAddr = a.getsockname();
      const bAddr = b.getsockname();
      assertEquals(aAddr[0], host);
      if (family === AF_INET6) assertEquals(aAddr.slice(2), [0, 0]);
      assertEquals(recvfromOrNull(b, 10), null, "nothing queued yet");
      // Wine's UDP send buffer is smaller than a 65000-byte datagram.
      const sizes = onWindows ? [1, 0, 1000, 7] : [1, 0, 1000, 65000, 7];
      for (const [i, n] of sizes.entries()) {
        assertEquals(a.sendto(randomBytes(n, i), bAddr), n);
      }
      for (const [i, n] of sizes.entries()) {
        const [data, from] = await until(() => recvfromOrNull(b, 65536), `datagram ${i}`);
        assertEquals(data, randomBytes(n, i));
        assertEquals(from, aAddr);
      }
      // A short buffer truncates the datagram; the rest is dropped.
      a.sendto("0123456789", bAddr);
      const [cut] = await until(() => recvfromOrNull(b, 4), "truncated datagram");
      assertEquals(dec.decode(cut), "0123");
      assertEquals(recvfromOrNull(b, 100), null);
      // connect() fixes the peer: send/recv work without addresses.
      a.connect(bAddr);
      b.connect(aAddr);
      assertEquals(a.getpeername(), bAddr);
      assertEquals(a.send(enc.encode("connected")), 9);
      const got = await until(() => {
        const buf = new Uint8Array(64);
        const n = b.tryRecvInto(buf);
        return n >= 0 ? buf.slice(0, n) : null;
      }, "connected datagram");
      assertEquals(dec.decode(got), "connected");
    } finally {
      a.close();
      b.close();
    }
  });
}

// ---------------------------------------------------------------------------
// IPv6

leakTest("socket: IPv6 ::1 TCP with our sockets and a Deno.connect client", async () => {
  const lst = listener(AF_INET6, ["::1", 0]);
  const clients: Socket[] = [];
  const accepted: Socket[] = [];
  let conn: Deno.TcpConn | undefined;
  try {
    const name = lst.getsockname() as [string, number, number, number];
    assertEquals(name[0], "::1");
    assertEquals(name.slice(2), [0, 0]);
    const [client, server] = await connectPair(lst, AF_INET6);
    clients.push(client);
    accepted.push(server);
    const peer = server.getpeername() as [string, number, number, number];
    assertEquals(peer, client.getsockname());
    assertEquals(peer[0], "::1");
    assertEquals(client.getpeername(), name);
    const back = await (async () => {
      client.send("ping6");
      return await until(() => {
        const buf = new Uint8Array(16);
        const n = server.tryRecvInto(buf);
        return n > 0 ? buf.slice(0, n) : null;
      }, "ping6");
    })();
    assertEquals(dec.decode(back), "ping6");

    const connecting = Deno.connect({ hostname: "::1", port: name[1] });
    const [deno, denoAddr] = await until(() => acceptOrNull(lst), "accept of Deno's client");
    accepted.push(deno);
    conn = await withTimeout(connecting, 5000, "Deno.connect ::1");
    assertEquals(denoAddr, ["::1", (conn.localAddr as Deno.NetAddr).port, 0, 0]);
    await conn.write(enc.encode("from deno"));
    const buf = new Uint8Array(64);
    const n = await until(() => {
      const r = deno.tryRecvInto(buf);
      return r > 0 ? r : null;
    }, "Deno's bytes");
    assertEquals(dec.decode(buf.subarray(0, n)), "from deno");
  } finally {
    conn?.close();
    for (const s of [...clients, ...accepted]) s.close();
    lst.close();
  }
});

leakTest("socket: an IPv6 socket reaches an IPv4 listener as ::ffff:127.0.0.1", async () => {
  const lst = listener(AF_INET, ["127.0.0.1", 0]);
  const client = new Socket(AF_INET6, SOCK_STREAM);
  let server: Socket | undefined;
  try {
    assertEquals(client.getsockopt(IPPROTO_IPV6, IPV6_V6ONLY), 0);
    client.setblocking(false);
    const port = (lst.getsockname() as [string, number])[1];
    const err = client.connectEx(["::ffff:127.0.0.1", port]);
    assert(err === 0 || err === errno.EINPROGRESS, `connectEx: ${err}`);
    const [sock, addr] = await until(() => acceptOrNull(lst), "accept");
    server = sock;
    await until(() => isConnected(client), "connect");
    assertEquals(client.getpeername(), ["::ffff:127.0.0.1", port, 0, 0]);
    assertEquals(addr, ["127.0.0.1", (client.getsockname() as [string, number])[1]]);
  } finally {
    server?.close();
    client.close();
    lst.close();
  }
  // Windows makes IPv6 sockets IPv6-only by default (IPV6_V6ONLY is 1).
}, onWindows);

// ---------------------------------------------------------------------------
// Unix sockets

leakTest("socket: Unix stream on a path: ours <-> ours, Deno.connect and Deno.listen", async () => {
  const path = tempSocketPath("stream");
  const lst = listener(AF_UNIX, path);
  const open: Socket[] = [];
  let conn: Deno.UnixConn | undefined;
  const denoPath = tempSocketPath("deno");
  const denoServer = Deno.listen({ transport: "unix", path: denoPath });
  let serving: Promise<void> | undefined;
  try {
    assertEquals(lst.getsockname(), path);
    assertEquals(lst.family, AF_UNIX);
    const [client, server] = await connectPair(lst, AF_UNIX);
    open.push(client, server);
    assertEquals(client.getpeername(), path);
    assertEquals(client.getsockname(), "", "an unbound client has no name");
    assertEquals(server.getpeername(), "");
    assertEquals(server.getsockname(), path);
    // One direction: the server side drains while the client sends.
    const data = randomBytes(200_000, 5);
    const got = new Uint8Array(data.length);
    let sent = 0;
    let received = 0;
    await until(
      () => {
        if (sent < data.length) {
          const n = client.trySend(data.subarray(sent));
          if (n > 0) sent += n;
        }
        const r = server.tryRecvInto(got.subarray(received));
        if (r > 0) received += r;
        return received === data.length;
      },
      "unix transfer",
      10000,
    );
    assertEquals(await sha256(got), await sha256(data));
    const buf = new Uint8Array(65536);

    // Deno's Unix client to our listener.
    const connecting = Deno.connect({ transport: "unix", path });
    const [fromDeno, addr] = await until(() => acceptOrNull(lst), "accept of Deno's client");
    open.push(fromDeno);
    conn = await withTimeout(connecting, 5000, "Deno.connect unix");
    assertEquals(addr, "");
    await conn.write(enc.encode("unix hello"));
    const n = await until(() => {
      const r = fromDeno.tryRecvInto(buf);
      return r > 0 ? r : null;
    }, "Deno's bytes");
    assertEquals(dec.decode(buf.subarray(0, n)), "unix hello");

    // Our client to Deno's Unix listener.
    serving = (async () => {
      const c = await denoServer.accept();
      const b = new Uint8Array(64);
      const k = await c.read(b);
      await c.write(b.subarray(0, k ?? 0).reverse());
      c.close();
    })();
    const ours = new Socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK);
    open.push(ours);
    const err = ours.connectEx(denoPath);
    assert(err === 0 || err === errno.EINPROGRESS || err === errno.EAGAIN, `connectEx: ${err}`);
    await until(() => isConnected(ours), "connect to Deno");
    assertEquals(ours.getpeername(), denoPath);
    ours.send("abc");
    const echoed = await until(() => {
      const r = ours.tryRecvInto(buf);
      return r > 0 ? dec.decode(buf.subarray(0, r)) : null;
    }, "Deno's reply");
    assertEquals(echoed, "cba");
    await expectEof(ours);
    await withTimeout(serving, 5000, "Deno unix server");
  } finally {
    conn?.close();
    for (const s of open) s.close();
    lst.close();
    denoServer.close();
    await serving?.catch(() => {});
    removeSocketDir(path);
    removeSocketDir(denoPath);
  }
  // Unix-only (AF_UNIX, SO_DOMAIN): tests/windows_test.ts checks the error Windows gives.
}, onWindows);

leakTest("socket: Unix datagrams on paths name their sender", async () => {
  const pa = tempSocketPath("a");
  const pb = tempSocketPath("b");
  const a = new Socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK);
  const b = new Socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK);
  const anon = new Socket(AF_UNIX, SOCK_DGRAM);
  const v4 = new Socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK);
  try {
    a.bind(pa);
    b.bind(pb);
    assertEquals(a.getsockname(), pa);
    assertEquals(a.sendto("one", pb), 3);
    assertEquals(b.sendto(enc.encode("two"), pa), 3);
    const [d1, from1] = await until(() => recvfromOrNull(b, 64), "datagram at b");
    assertEquals([dec.decode(d1), from1], ["one", pa]);
    const [d2, from2] = await until(() => recvfromOrNull(a, 64), "datagram at a");
    assertEquals([dec.decode(d2), from2], ["two", pb]);
    // An unbound sender has no address: "" (never an address left from an earlier call).
    v4.bind(["127.0.0.1", 0]);
    anon.sendto("anon", pb);
    v4.sendto("x", v4.getsockname());
    await until(() => recvfromOrNull(v4, 8), "the IPv4 datagram");
    const [d3, from3] = await until(() => recvfromOrNull(b, 64), "anonymous datagram");
    assertEquals([dec.decode(d3), from3], ["anon", ""]);
  } finally {
    for (const s of [a, b, anon, v4]) s.close();
    removeSocketDir(pa);
    removeSocketDir(pb);
  }
  // Unix-only (AF_UNIX, SO_DOMAIN): tests/windows_test.ts checks the error Windows gives.
}, onWindows);

leakTest("socket: abstract Unix names (stream and datagram) and autobind", async () => {
  const tag = `asyncore-test-${Deno.pid}-${Math.random().toString(36).slice(2)}`;
  const streamName = `\0${tag}-s`;
  const lst = listener(AF_UNIX, streamName);
  const open: Socket[] = [];
  const d1 = new Socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK);
  const d2 = new Socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK);
  const auto1 = new Socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK);
  const auto2 = new Socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK);
  try {
    assertEquals(lst.getsockname(), streamName);
    const [client, server] = await connectPair(lst, AF_UNIX);
    open.push(client, server);
    assertEquals(client.getpeername(), streamName);
    client.send("abstract");
    const got = await until(() => {
      const buf = new Uint8Array(32);
      const n = server.tryRecvInto(buf);
      return n > 0 ? dec.decode(buf.subarray(0, n)) : null;
    }, "abstract stream data");
    assertEquals(got, "abstract");

    d1.bind(`\0${tag}-d1`);
    d2.bind(`\0${tag}-d2`);
    d1.sendto("dg", `\0${tag}-d2`);
    const [data, from] = await until(() => recvfromOrNull(d2, 16), "abstract datagram");
    assertEquals([dec.decode(data), from], ["dg", `\0${tag}-d1`]);

    // bind("") autobinds a fresh abstract name each time, as in Python.
    auto1.bind("");
    auto2.bind("");
    const n1 = auto1.getsockname() as string;
    const n2 = auto2.getsockname() as string;
    assert(n1.startsWith("\0") && n1.length > 1, JSON.stringify(n1));
    assertNotEquals(n1, n2);
    auto1.sendto("auto", n2);
    const [, autoFrom] = await until(() => recvfromOrNull(auto2, 16), "autobound datagram");
    assertEquals(autoFrom, n1);
  } finally {
    for (const s of [...open, lst, d1, d2, auto1, auto2]) s.close();
  }
  // Unix-only (AF_UNIX, SO_DOMAIN): tests/windows_test.ts checks the error Windows gives.
}, onWindows);

leakTest("socket: getsockname/getpeername round trips in all three families", async () => {
  const path = tempSocketPath("names");
  const cases: [number, Address][] = [
    [AF_INET, ["127.0.0.1", 0]],
    [AF_INET6, ["::1", 0]],
    // Python on Windows has no AF_UNIX.
    ...(onWindows ? [] : [[AF_UNIX, path] as [number, Address]]),
  ];
  try {
    for (const [family, addr] of cases) {
      const lst = listener(family, addr);
      try {
        const name = lst.getsockname();
        // The name a socket reports can be handed straight back to connect.
        const [client, server] = await connectPair(lst, family);
        try {
          assertEquals(client.getpeername(), name);
          assertEquals(server.getsockname(), name);
          assertEquals(server.getpeername(), client.getsockname());
          if (family !== AF_UNIX) {
            const [host, port] = client.getsockname() as [string, number];
            assertEquals(host, family === AF_INET ? "127.0.0.1" : "::1");
            assert(port > 0 && port < 65536);
          }
        } finally {
          client.close();
          server.close();
        }
        // An unbound, unconnected socket has the family's empty name.
        const fresh = new Socket(family);
        try {
          // Winsock (and so Python on Windows) refuses the name of an unbound socket.
          if (onWindows) {
            assertEquals(assertThrows(() => fresh.getsockname(), OSError).code, "EINVAL");
            continue;
          }
          assertEquals(
            fresh.getsockname(),
            family === AF_INET ? ["0.0.0.0", 0] : family === AF_INET6 ? ["::", 0, 0, 0] : "",
          );
        } finally {
          fresh.close();
        }
      } finally {
        lst.close();
      }
    }
  } finally {
    removeSocketDir(path);
  }
});

// ---------------------------------------------------------------------------
// Options

leakTest("socket: setsockopt/getsockopt for common options", () => {
  const s = new Socket(AF_INET, SOCK_STREAM);
  const u = new Socket(AF_INET, SOCK_DGRAM);
  try {
    assertEquals(s.getsockopt(SOL_SOCKET, SO_REUSEADDR), 0);
    s.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1);
    assertEquals(s.getsockopt(SOL_SOCKET, SO_REUSEADDR), 1);
    s.setsockopt(SOL_SOCKET, SO_REUSEADDR, false);
    assertEquals(s.getsockopt(SOL_SOCKET, SO_REUSEADDR), 0);
    assertEquals(s.getsockopt(IPPROTO_TCP, TCP_NODELAY), 0);
    s.setsockopt(IPPROTO_TCP, TCP_NODELAY, true);
    assertEquals(s.getsockopt(IPPROTO_TCP, TCP_NODELAY), 1);
    s.setsockopt(SOL_SOCKET, SO_KEEPALIVE, 1);
    assertEquals(s.getsockopt(SOL_SOCKET, SO_KEEPALIVE), 1);
    assertEquals(s.getsockopt(SOL_SOCKET, SO_ERROR), 0);
    assertEquals(s.getsockopt(SOL_SOCKET, SO_TYPE), SOCK_STREAM);
    assertEquals(u.getsockopt(SOL_SOCKET, SO_TYPE), SOCK_DGRAM);
    if (!onWindows) assertEquals(s.getsockopt(SOL_SOCKET, C.SO_DOMAIN), AF_INET);
    // Linux doubles the size asked for (bookkeeping room); never less than asked.
    s.setsockopt(SOL_SOCKET, SO_RCVBUF, 65536);
    const rcv = s.getsockopt(SOL_SOCKET, SO_RCVBUF);
    assert(rcv >= 65536 && rcv <= 4 * 65536, `SO_RCVBUF ${rcv}`);
    s.setsockopt(SOL_SOCKET, SO_SNDBUF, 32768);
    assert(s.getsockopt(SOL_SOCKET, SO_SNDBUF) >= 32768);
    // Raw bytes: a struct linger; getsockopt reads its first int, l_onoff (Windows'
    // struct is two u_shorts, so its int holds both).
    s.setsockopt(SOL_SOCKET, SO_LINGER, encodeLinger(true, 3));
    assertEquals(s.getsockopt(SOL_SOCKET, SO_LINGER), onWindows ? 1 + (3 << 16) : 1);
    s.setsockopt(SOL_SOCKET, SO_LINGER, encodeLinger(false, 0));
    assertEquals(s.getsockopt(SOL_SOCKET, SO_LINGER) & (onWindows ? 0xffff : ~0), 0);
    // A short option value is the kernel's EINVAL (Winsock's WSAEFAULT: EFAULT in Python).
    const err = assertThrows(
      () => s.setsockopt(SOL_SOCKET, SO_LINGER, new Uint8Array(onWindows ? 1 : 2)),
      OSError,
    );
    assertEquals(err.code, onWindows ? "EFAULT" : "EINVAL");
    assertEquals(err.syscall, "setsockopt");
  } finally {
    s.close();
    u.close();
  }
});

leakTest("socket: SO_ERROR reports a refused non-blocking connect once", async () => {
  const probe = new Socket();
  probe.bind(["127.0.0.1", 0]);
  const port = (probe.getsockname() as [string, number])[1];
  // Bound but not listening: connecting there is refused.
  const s = new Socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK);
  try {
    const err = s.connectEx(["127.0.0.1", port]);
    if (err === errno.EINPROGRESS) {
      const soError = await until(() => s.getsockopt(SOL_SOCKET, SO_ERROR), "SO_ERROR");
      assertEquals(soError, errno.ECONNREFUSED);
      // Microsoft documents that reading SO_ERROR clears it too; Wine does not clear it.
      if (!onWindows) {
        assertEquals(s.getsockopt(SOL_SOCKET, SO_ERROR), 0, "reading SO_ERROR clears it");
      }
    } else {
      assertEquals(err, errno.ECONNREFUSED);
    }
  } finally {
    s.close();
    probe.close();
  }
});

leakTest("socket: SO_LINGER of 0 resets the connection on close", async () => {
  const lst = listener(AF_INET, ["127.0.0.1", 0]);
  const [client, server] = await connectPair(lst, AF_INET);
  try {
    client.setsockopt(SOL_SOCKET, SO_LINGER, encodeLinger(true, 0));
    client.close();
    const err = await until(() => {
      try {
        const n = server.tryRecvInto(new Uint8Array(8));
        if (n === 0) throw new Error("got a clean EOF, expected a reset");
        return null;
      } catch (e) {
        if (e instanceof OSError) return e;
        throw e;
      }
    }, "the reset");
    assertEquals(err.code, "ECONNRESET");
    assertEquals(err.syscall, "recv");
  } finally {
    client.close();
    server.close();
    lst.close();
  }
});

// ---------------------------------------------------------------------------
// Stream behaviour

leakTest("socket: MSG_PEEK, shutdown and end of stream", async () => {
  const lst = listener(AF_INET, ["127.0.0.1", 0]);
  const [client, server] = await connectPair(lst, AF_INET);
  try {
    client.send("peekaboo");
    await until(() => {
      try {
        return server.recv(4, MSG_PEEK).length === 4;
      } catch {
        return false;
      }
    }, "data");
    assertEquals(dec.decode(server.recv(4, MSG_PEEK)), "peek");
    assertEquals(dec.decode(server.recv(4)), "peek");
    const into = new Uint8Array(10);
    assertEquals(server.recvInto(into, 4), 4);
    assertEquals(dec.decode(into.subarray(0, 4)), "aboo");
    assertEquals(assertThrows(() => server.recv(1), OSError).errno, errno.EWOULDBLOCK);
    client.shutdown(SHUT_WR);
    await expectEof(server);
    assertEquals(server.recv(10).length, 0, "EOF stays EOF");
    // The other direction still works after SHUT_WR.
    server.send("still open");
    const back = await until(() => {
      const b = new Uint8Array(32);
      const n = client.tryRecvInto(b);
      return n > 0 ? dec.decode(b.subarray(0, n)) : null;
    }, "reply");
    assertEquals(back, "still open");
    server.shutdown(SHUT_RDWR);
    await expectEof(client);
  } finally {
    client.close();
    server.close();
    lst.close();
  }
});

leakTest("socket: blocking mode: connect, accept and sendall", () => {
  const lst = new Socket(AF_INET, SOCK_STREAM);
  const client = new Socket(AF_INET, SOCK_STREAM);
  let server: Socket | undefined;
  try {
    assertEquals(lst.getblocking(), true);
    lst.bind(["127.0.0.1", 0]);
    lst.listen(1);
    // Loopback completes the handshake from the backlog: no accept needed first.
    client.connect(lst.getsockname());
    [server] = lst.accept();
    assertEquals(server.getblocking(), true);
    const data = randomBytes(20000, 9);
    client.sendall(data);
    const got: number[] = [];
    const deadline = performance.now() + 5000;
    server.setblocking(false);
    while (got.length < data.length && performance.now() < deadline) {
      try {
        got.push(...server.recv(65536));
      } catch (e) {
        if (!(e instanceof OSError && e.errno === errno.EAGAIN)) throw e;
      }
    }
    assertEquals(new Uint8Array(got), data);
    server.setblocking(true);
    assertEquals(server.getblocking(), true);
  } finally {
    server?.close();
    client.close();
    lst.close();
  }
});

// ---------------------------------------------------------------------------
// fd ownership

leakTest("socket: fromFd adopts an fd with its family, type, protocol and blocking mode", () => {
  const path = tempSocketPath("fromfd");
  const kinds: [number, number][] = [
    [AF_INET, SOCK_STREAM],
    [AF_INET6, SOCK_DGRAM],
    [AF_UNIX, SOCK_STREAM],
    [AF_UNIX, SOCK_DGRAM],
  ];
  try {
    for (const [family, type] of kinds) {
      const original = new Socket(family, type | SOCK_NONBLOCK);
      const fd = original.detach();
      assertEquals(original.fileno(), -1, "detach forgets the fd");
      original.close(); // a no-op now: the fd is not ours any more
      const adopted = Socket.fromFd(fd);
      try {
        assertEquals(adopted.fileno(), fd);
        assertEquals(adopted.family, family);
        assertEquals(adopted.type, type);
        // The kernel names the protocol it picked: TCP 6 and UDP 17 for IP, 0 for Unix.
        assertEquals(adopted.proto, family === AF_UNIX ? 0 : type === SOCK_STREAM ? 6 : 17);
        assertEquals(adopted.getblocking(), false);
        adopted.setblocking(true);
        assertEquals(adopted.getblocking(), true);
        if (family === AF_UNIX && type === SOCK_STREAM) {
          adopted.bind(path);
          assertEquals(adopted.getsockname(), path);
        }
      } finally {
        adopted.close();
      }
      assertEquals(adopted.fileno(), -1);
    }
    // fromFd of a socket Deno does not know about still works with a dup of ours.
    const s = new Socket();
    const copy = os.dup(s.fileno());
    const adopted = Socket.fromFd(copy);
    s.close();
    assertEquals(
      adopted.getsockopt(SOL_SOCKET, SO_TYPE),
      SOCK_STREAM,
      "the dup outlives the original",
    );
    adopted.close();
  } finally {
    removeSocketDir(path);
  }
  // Unix-only (AF_UNIX, SO_DOMAIN): tests/windows_test.ts checks the error Windows gives.
}, onWindows);

leakTest("socket: close is idempotent and never closes a reused fd number", async () => {
  const old = new Socket();
  const fd = old.fileno();
  assert(fd >= 0);
  old.close();
  assertEquals(old.fileno(), -1);
  old.close();
  // The kernel hands out the lowest free number: the new socket gets the same one.
  const reuse = listener(AF_INET, ["127.0.0.1", 0]);
  try {
    assertEquals(reuse.fileno(), fd, "the fd number was reused");
    old.close();
    old.close();
    // The new socket is untouched: it still accepts.
    const [client, server] = await connectPair(reuse, AF_INET);
    client.close();
    server.close();
    assertEquals(reuse.getsockopt(SOL_SOCKET, SO_TYPE), SOCK_STREAM);
  } finally {
    reuse.close();
  }
  assertEquals(String(old), "<Socket fd=-1, family=2, type=1, proto=0>");
});
