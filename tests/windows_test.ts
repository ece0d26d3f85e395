// Windows (x86_64) as the third platform: the Winsock facts the rest of the
// suite cannot see. The table and codec checks run everywhere; the rest runs
// on Windows only (under Wine in CI, .ci/windows.sh), against real sockets.
import { assert, assertEquals, assertGreaterOrEqual, assertThrows } from "@std/assert";
import {
  AF_INET,
  AF_UNIX,
  DatagramDispatcher,
  Dispatcher,
  FileDispatcher,
  hasBatchCalls,
  listenFds,
  loop,
  type MessageBatch,
  OSError,
  serveHandoff,
  SOCK_DGRAM,
  SOCK_NONBLOCK,
  SOCK_STREAM,
  Socket,
  type SocketMap,
  SSLContext,
  takeOverListeners,
} from "../mod.ts";
import { C, type Constants, type ErrnoName, platform } from "../ffi/platform.ts";
import { windowsX86_64 } from "../ffi/platform_windows.ts";
import { HandleSet } from "../ffi/structs.ts";
import { Poller } from "../ffi/poll.ts";
import { Selector } from "../ffi/select.ts";
import { winerrorToErrno } from "../ffi/winsock.ts";
import * as os from "../ffi/os.ts";
import { leakTest, onWindows } from "./_util.ts";

const WIN = windowsX86_64;

Deno.test("windows: the table holds Winsock's values and Python's errno names", () => {
  const c: Constants = WIN.constants;
  assertEquals([c.AF_INET, c.AF_INET6, c.SOL_SOCKET, c.SO_REUSEADDR, c.SO_ERROR], [
    2,
    23,
    0xffff,
    4,
    0x1007,
  ]);
  assertEquals([c.POLLIN, c.POLLOUT, c.POLLERR, c.POLLHUP, c.POLLNVAL], [0x300, 0x10, 1, 2, 4]);
  // What Windows lacks: 0 for a flag (or-ing it changes nothing), -1 for a name.
  assertEquals([c.MSG_NOSIGNAL, c.POLLRDHUP], [0, 0]);
  assertEquals([c.SO_REUSEPORT, c.SIGHUP, c.SIGQUIT], [-1, -1, -1]);
  const e = WIN.errno;
  const socketErrors: [ErrnoName, number][] = [
    ["EWOULDBLOCK", 10035],
    ["EINPROGRESS", 10036],
    ["EALREADY", 10037],
    ["ECONNABORTED", 10053],
    ["ECONNRESET", 10054],
    ["EISCONN", 10056],
    ["ENOTCONN", 10057],
    ["ESHUTDOWN", 10058],
    ["ECONNREFUSED", 10061],
  ];
  for (const [name, value] of socketErrors) assertEquals(e[name], value, name);
  // The C runtime's values for the others, as Python's errno on Windows.
  assertEquals([e.EINTR, e.EBADF, e.EINVAL, e.EMFILE, e.ENAMETOOLONG], [4, 9, 22, 24, 38]);
  assertEquals(e.EAGAIN, e.EWOULDBLOCK, "one would-block value");
  assertEquals(WIN.gaiErrors.EAI_NONAME, 11001);
  const S = WIN.structs;
  assertEquals(S.pollfd, { size: 16, fd: 0, events: 8, revents: 10, fdSize: 8 });
  assertEquals([S.timeval, S.fdSetSize, S.fdSetIsArray], [8, 512, true]);
  assertEquals([S.addrinfo.canonname, S.addrinfo.addr], [24, 32]);
});

Deno.test("windows: Winsock errors map as CPython's winerror_to_errno", () => {
  // The six Winsock codes that duplicate a C runtime errno become it.
  assertEquals([10004, 10009, 10013, 10014, 10022, 10024].map(winerrorToErrno), [
    4,
    9,
    13,
    14,
    22,
    24,
  ]);
  // The rest keep their Winsock value, which Python's errno names.
  assertEquals([10035, 10061, 10093, 11001].map(winerrorToErrno), [10035, 10061, 10093, 11001]);
  assertEquals(winerrorToErrno(8), WIN.errno.ENOMEM);
});

Deno.test("windows: an fd_set is a count, padding and 64-bit handles", () => {
  const set = new HandleSet();
  const words = new Uint32Array(set.bytes.buffer);
  set.add(0x104);
  set.add(0x1_0000_0008); // a handle past 32 bits keeps its high word
  set.add(0x104); // listed once
  assertEquals(words[0], 2);
  assertEquals([words[2], words[3], words[4], words[5]], [0x104, 0, 8, 1]);
  assert(set.has(0x104) && set.has(0x1_0000_0008) && !set.has(8));
  assertEquals(set.usedBytes(0), 8 + 16);
  // select() rewrites the list to the ready handles.
  words[0] = 1;
  words[2] = 8;
  words[3] = 1;
  set.rewritten();
  assert(set.has(0x1_0000_0008) && !set.has(0x104));
  set.delete(0x1_0000_0008);
  assertEquals(words[0], 0);
  set.add(5);
  set.clear();
  assert(set.bytes.every((b) => b === 0));
  assert(!set.has(5));
});

Deno.test("windows: a select set past FD_SETSIZE handles is a RangeError naming the count", () => {
  // FD_SETSIZE of this platform's table: 512 on Windows, as in Python's Windows build.
  const limit = platform.structs.fdSetSize;
  const set = new HandleSet();
  for (let i = 0; i < limit; i++) set.add(4 * (i + 1));
  const err = assertThrows(() => set.add(4 * (limit + 1)), RangeError);
  assert(err.message.includes(`more than ${limit} sockets`), err.message);
  assert(err.message.includes(`${limit + 1} asked`), err.message);
  assert(err.message.includes('"poll"'), err.message);
  assertEquals(new Uint32Array(set.bytes.buffer)[0], limit, "nothing written past the limit");
});

// ---- on Windows ----

function loopbackListener(): [Socket, number] {
  const lst = new Socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK);
  lst.bind(["127.0.0.1", 0]);
  lst.listen(8);
  return [lst, (lst.getsockname() as [string, number])[1]];
}

function pumpUntil(step: () => boolean, what: string, ms = 5000): void {
  const deadline = performance.now() + ms;
  while (!step()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
  }
}

leakTest("windows: fileno() is the SOCKET handle as a number", () => {
  const s = new Socket();
  try {
    const fd = s.fileno();
    assertEquals(typeof fd, "number");
    assert(Number.isSafeInteger(fd) && fd > 0, String(fd));
    // Adopting it by number reads its family, type and protocol back (SO_PROTOCOL_INFOW).
    const again = Socket.fromFd(fd);
    assertEquals([again.family, again.type, again.fileno()], [AF_INET, SOCK_STREAM, fd]);
    again.detach();
  } finally {
    s.close();
  }
}, !onWindows);

leakTest("windows: what is Unix-only says so", () => {
  const unix = assertThrows(() => new Socket(AF_UNIX), OSError);
  assertEquals(unix.code, "EAFNOSUPPORT");
  assert(unix.message.includes("AF_UNIX sockets are Unix-only"), unix.message);
  for (const fn of [() => os.pipe(), () => os.dup(3), () => new FileDispatcher(3)]) {
    const err = assertThrows(fn, OSError);
    assertEquals(err.code, "ENOSYS");
    assert(err.message.includes("Unix-only"), err.message);
  }
  const s = new Socket();
  try {
    const err = assertThrows(() => s.sendfile("C:\\windows\\win.ini"), OSError);
    assert(err.message.includes("Unix-only"), err.message);
  } finally {
    s.close();
  }
  const map: SocketMap = new Map();
  const d = new Dispatcher(null, map);
  d.createSocket();
  try {
    assertThrows(() => loop({ map, count: 1, poller: "epoll" }), RangeError, "epoll is not");
    assertThrows(
      () => loop({ map, count: 1, stopSignals: ["SIGHUP"] }),
      RangeError,
      "SIGHUP does not exist on windows-x86_64",
    );
  } finally {
    d.close();
  }
}, !onWindows);

leakTest("windows: the handoff and socket activation are Unix-only, in one sentence", () => {
  for (const fn of [() => takeOverListeners("C:\\x.sock"), () => serveHandoff("x", [])]) {
    const err = assertThrows(fn, OSError);
    assertEquals(err.code, "ENOSYS");
    assert(err.message.includes("SCM_RIGHTS"), err.message);
  }
  assertEquals(listenFds(), [], "no LISTEN_PID on Windows: no sockets");
}, !onWindows);

leakTest("windows: a DatagramDispatcher makes one call per datagram and echoes a batch", () => {
  assertEquals(hasBatchCalls(), false);
  const map: SocketMap = new Map();
  const echo = new (class extends DatagramDispatcher {
    override handleDatagrams(batch: MessageBatch, count: number) {
      this.sendDatagrams(batch, count);
    }
  })(null, map);
  const client = new Socket(AF_INET, SOCK_DGRAM);
  try {
    assertEquals(echo.batchCalls, false);
    echo.createSocket();
    echo.bind(["127.0.0.1", 0]);
    const to = echo.sock.getsockname();
    client.bind(["127.0.0.1", 0]);
    client.settimeout(5);
    for (let i = 0; i < 10; i++) client.sendto(`datagram ${i}`, to);
    const got: string[] = [];
    for (let pass = 0; pass < 50 && echo.datagramsSent < 10; pass++) {
      loop({ map, count: 1, timeout: 0.05, poller: "poll" });
    }
    for (let i = 0; i < 10; i++) got.push(new TextDecoder().decode(client.recvfrom(64)[0]));
    assertEquals(got, Array.from({ length: 10 }, (_, i) => `datagram ${i}`));
    assertEquals([echo.datagramsReceived, echo.datagramsSent], [10, 10]);
  } finally {
    client.close();
    echo.close();
  }
}, !onWindows);

leakTest("windows: TLS without OpenSSL's DLLs is one error naming them", () => {
  const err = assertThrows(() => new SSLContext(), Error);
  assert(err.message.includes("libcrypto-3-x64.dll"), err.message);
  assert(err.message.includes("libssl-3-x64.dll"), err.message);
  assert(!err.message.includes("\n"), "one sentence");
}, !onWindows);

leakTest("windows: stopSignals SIGINT and SIGTERM are accepted by a synchronous loop", () => {
  const map: SocketMap = new Map();
  const [lst] = loopbackListener();
  const d = new Dispatcher(lst, map);
  try {
    const t0 = performance.now();
    loop({ map, count: 2, timeout: 0.05, stopSignals: ["SIGINT", "SIGTERM"] });
    assertGreaterOrEqual(performance.now() - t0, 90, "two passes waited");
    loop({ map, count: 1, timeout: 0, stopSignals: ["SIGTERM"] });
    loop({ map, count: 1, timeout: 0, poller: "poll", stopSignals: ["SIGINT"] });
  } finally {
    d.close();
  }
}, !onWindows);

leakTest("windows: WSAPoll reports a close as readable and a refused connect as writable", () => {
  const [lst, port] = loopbackListener();
  const client = new Socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK);
  const accepted: Socket[] = [];
  try {
    client.connectEx(["127.0.0.1", port]);
    pumpUntil(() => {
      const fd = lst.tryAccept();
      if (fd >= 0) accepted.push(new Socket(AF_INET, SOCK_STREAM, 0, fd));
      return fd >= 0;
    }, "accept");
    const server = accepted[0];
    const p = new Poller();
    client.send("bye");
    client.close();
    // Winsock says POLLHUP alone; the interest it ends is reported too, so recv finds the rest.
    p.fds.set(0, server.fileno(), C.POLLIN | C.POLLPRI); // POLLPRI: refused by Winsock, masked
    pumpUntil(() => p.poll(1, 100) === 1, "the close");
    assert((p.fds.revents(0) & C.POLLIN) !== 0, `revents ${p.fds.revents(0)}`);
    assertEquals(new TextDecoder().decode(server.recv(16)), "bye");
    assertEquals(server.recv(16).length, 0);
  } finally {
    for (const s of accepted) s.close();
  }
  // Bound but not listening: refused; WSAPoll says POLLERR alone.
  const refused = new Socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK);
  const holder = new Socket();
  try {
    holder.bind(["127.0.0.1", 0]);
    const closedPort = (holder.getsockname() as [string, number])[1];
    refused.connectEx(["127.0.0.1", closedPort]);
    const p = new Poller();
    p.fds.set(0, refused.fileno(), C.POLLOUT);
    pumpUntil(() => p.poll(1, 100) === 1, "the refusal");
    assert((p.fds.revents(0) & C.POLLOUT) !== 0, `revents ${p.fds.revents(0)}`);
    assertEquals(refused.getsockopt(C.SOL_SOCKET, C.SO_ERROR), WIN.errno.ECONNREFUSED);
  } finally {
    refused.close();
    holder.close();
    lst.close();
  }
}, !onWindows);

leakTest("windows: select reports a refused connect as writable (Winsock: in exceptfds)", () => {
  const refused = new Socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK);
  const holder = new Socket();
  try {
    holder.bind(["127.0.0.1", 0]);
    refused.connectEx(["127.0.0.1", (holder.getsockname() as [string, number])[1]]);
    const sel = new Selector();
    const fd = refused.fileno();
    pumpUntil(() => {
      sel.clear();
      sel.write.add(fd);
      sel.except.add(fd);
      return sel.select(0, 0.1) > 0;
    }, "the refusal");
    assert(sel.except.has(fd), "Winsock's own report");
    assert(sel.write.has(fd), "reported writable too, as on Unix");
    assertEquals(refused.getsockopt(C.SOL_SOCKET, C.SO_ERROR), WIN.errno.ECONNREFUSED);
  } finally {
    refused.close();
    holder.close();
  }
}, !onWindows);

leakTest("windows: an empty wait sleeps (WSAPoll and select refuse empty sets)", () => {
  for (const wait of [() => new Poller().poll(0, 30), () => new Selector().select(0, 0.03)]) {
    const t0 = performance.now();
    assertEquals(wait(), 0);
    assertGreaterOrEqual(performance.now() - t0, 25);
  }
}, !onWindows);

leakTest("windows: select watches more than 64 sockets (300 here)", () => {
  const socks: Socket[] = [];
  try {
    for (let i = 0; i < 300; i++) {
      const s = new Socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK);
      socks.push(s);
      s.bind(["127.0.0.1", 0]);
    }
    const last = socks[299];
    socks[0].sendto("ping", last.getsockname());
    const sel = new Selector();
    pumpUntil(() => {
      sel.clear();
      for (const s of socks) sel.read.add(s.fileno());
      return sel.select(0, 0.1) === 1;
    }, "the datagram");
    assert(sel.read.has(last.fileno()));
    assert(!sel.read.has(socks[1].fileno()));
  } finally {
    for (const s of socks) s.close();
  }
}, !onWindows);
