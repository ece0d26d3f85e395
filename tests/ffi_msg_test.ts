// sendmsg/recvmsg with ancillary data, fd passing (sendFds/recvFds against
// python3's send_fds/recv_fds, and CPython's SCMRightsTest cases ported),
// CMSG_LEN/CMSG_SPACE, socketpair, dup, recvfromInto, abstract Unix names and
// Unix datagram sockets against python3 peers.
//
// Sockets that wait on a python peer are non-blocking and pumped with short
// awaits under a deadline (a blocking FFI call would stop Deno's event loop,
// which runs the child's pipes).
import { assert, assertEquals, assertThrows } from "@std/assert";
import {
  AF_INET,
  AF_UNIX,
  CMSG_LEN,
  CMSG_SPACE,
  errno,
  MSG_CTRUNC,
  MSG_PEEK,
  MSG_TRUNC,
  OSError,
  recvFds,
  SCM_CREDENTIALS,
  SCM_RIGHTS,
  sendFds,
  SO_PASSCRED,
  SOCK_DGRAM,
  SOCK_NONBLOCK,
  SOCK_STREAM,
  Socket,
  socketpair,
  SOL_SOCKET,
} from "../mod.ts";
import { C } from "../ffi/platform.ts";
import { libc } from "../ffi/symbols.ts";
import * as os from "../ffi/os.ts";
import { delay, emulated, leakTest, python, PythonPeer, tempSocketPath } from "./_util.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const MSG = enc.encode("Message!\n"); // CPython's test_socket MSG

/** A leak-checked test that needs python3 (ignored without it). */
function pythonTest(name: string, fn: () => Promise<void>): void {
  leakTest(name, fn, !python);
}

/** Calls `fn` until it stops throwing OSError(EAGAIN); bounded by `ms`. */
async function eventually<T>(fn: () => T, what: string, ms = 10000): Promise<T> {
  const deadline = performance.now() + ms;
  for (;;) {
    try {
      return fn();
    } catch (error) {
      if (!(error instanceof OSError && error.code === "EAGAIN")) throw error;
    }
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(2);
  }
}

/**
 * A connected pair whose blocking calls give up after 10 s (TimeoutError), so
 * a test that waits for a message that never comes fails instead of hanging.
 */
function pair(type = SOCK_STREAM): [Socket, Socket] {
  const [a, b] = socketpair(AF_UNIX, type);
  a.settimeout(10);
  b.settimeout(10);
  return [a, b];
}

/** `n` fds of new temp files, file i holding the text `${i}` (CPython's newFDs). */
function newFDs(n: number): { fds: number[]; cleanup: () => void } {
  const fds: number[] = [];
  const paths: string[] = [];
  for (let i = 0; i < n; i++) {
    const path = Deno.makeTempFileSync({ prefix: "asyncore-fd-" });
    Deno.writeTextFileSync(path, String(i));
    paths.push(path);
    fds.push(os.openReadOnly(path));
  }
  return {
    fds,
    cleanup() {
      for (const fd of fds) os.close(fd);
      for (const p of paths) Deno.removeSync(p);
    },
  };
}

/** CPython's checkFDs: fd i reads `${i}` from the start. */
function checkFDs(fds: number[]): void {
  fds.forEach((fd, i) => {
    const buf = new Uint8Array(16);
    const n = os.tryPread(fd, buf, 0);
    assertEquals(dec.decode(buf.subarray(0, n)), String(i), `fd ${fd} is file ${i}`);
  });
}

function isCloexec(fd: number): boolean {
  return (libc().fcntl(fd, C.F_GETFD, 0) & C.FD_CLOEXEC) !== 0;
}

/** The fds in SCM_RIGHTS items (whole ints only). */
function fdsOf(ancdata: [number, number, Uint8Array][]): number[] {
  const out: number[] = [];
  for (const [level, type, data] of ancdata) {
    assertEquals([level, type], [SOL_SOCKET, SCM_RIGHTS]);
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    for (let i = 0; i + 4 <= data.length; i += 4) out.push(view.getInt32(i, true));
  }
  return out;
}

Deno.test("msg: CMSG_LEN and CMSG_SPACE are Python's, with Python's range errors", {
  ignore: !python,
}, async () => {
  const sizes = [0, 1, 3, 4, 7, 8, 9, 12, 16, 17, 100, 4096, 65535, 1 << 20];
  const out = await new Deno.Command(python!, {
    args: [
      "-c",
      "import socket,sys; print(' '.join(f'{socket.CMSG_LEN(int(n))},{socket.CMSG_SPACE(int(n))}' for n in sys.argv[1:]))",
      ...sizes.map(String),
    ],
  }).output();
  const want = dec.decode(out.stdout).trim().split(" ");
  assertEquals(sizes.map((n) => `${CMSG_LEN(n)},${CMSG_SPACE(n)}`), want);
  assertThrows(() => CMSG_LEN(-1), RangeError, "CMSG_LEN() argument out of range");
  assertThrows(() => CMSG_SPACE(-1), RangeError, "CMSG_SPACE() argument out of range");
  assertEquals([CMSG_LEN(2 ** 40), CMSG_SPACE(2 ** 40)], [2 ** 40 + 16, 2 ** 40 + 16]);
  assertThrows(() => CMSG_SPACE(2 ** 60), RangeError, "out of range");
  assertThrows(() => CMSG_LEN(1.5), TypeError);
});

leakTest("msg: socketpair makes connected pairs; AF_INET is EOPNOTSUPP, as in Python", () => {
  for (const type of [SOCK_STREAM, SOCK_DGRAM]) {
    const [a, b] = pair(type);
    try {
      assertEquals([a.family, a.type, b.type], [AF_UNIX, type, type]);
      assert(a.getblocking() && isCloexec(a.fileno()) && isCloexec(b.fileno()));
      a.sendall("ping");
      assertEquals(dec.decode(b.recv(16)), "ping");
      b.send("pong");
      assertEquals(dec.decode(a.recv(16)), "pong");
    } finally {
      a.close();
      b.close();
    }
  }
  const [x, y] = socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK);
  try {
    assertEquals([x.getblocking(), x.gettimeout(), x.type], [false, 0, SOCK_STREAM]);
    assertThrows(() => x.recv(1), OSError, "[Errno 11]");
  } finally {
    x.close();
    y.close();
  }
  const e = assertThrows(() => socketpair(AF_INET), OSError);
  assertEquals(e.errno, errno.EOPNOTSUPP);
  assertThrows(() => socketpair(AF_UNIX, 1.5), TypeError);
});

leakTest("msg: dup shares the connection, is close-on-exec and keeps the timeout", () => {
  const [a, b] = pair();
  const copies: Socket[] = [];
  try {
    a.settimeout(2.5);
    const c = a.dup();
    copies.push(c);
    assert(c.fileno() !== a.fileno());
    assertEquals([c.family, c.type, c.proto, c.gettimeout()], [a.family, a.type, a.proto, 2.5]);
    assert(isCloexec(c.fileno()));
    a.close();
    c.sendall("through the copy");
    assertEquals(dec.decode(b.recv(64)), "through the copy");
    const closed = new Socket();
    closed.close();
    assertEquals(assertThrows(() => closed.dup(), OSError).code, "EBADF");
  } finally {
    for (const s of [a, b, ...copies]) s.close();
  }
});

leakTest("msg: sendmsg gathers buffers; recvmsg reports MSG_TRUNC, peeks, sees EOF", () => {
  const [a, b] = pair(SOCK_DGRAM);
  const [s1, s2] = pair(SOCK_STREAM);
  try {
    // CPython testSendmsgDataGenerator / testRecvmsgShorter / testRecvmsgPeek.
    assertEquals(a.sendmsg(["Mess", enc.encode("age!"), "", "\n"]), MSG.length);
    const [peek, , peekFlags] = b.recvmsg(MSG.length, 0, MSG_PEEK);
    assertEquals([dec.decode(peek), peekFlags], [dec.decode(MSG), 0]);
    const [cut, anc, flags, addr] = b.recvmsg(4);
    assertEquals([dec.decode(cut), anc, flags & MSG_TRUNC, addr], ["Mess", [], MSG_TRUNC, null]);
    // A datagram is one message whatever the buffers: an empty one is sent and received.
    assertEquals(a.sendmsg([]), 0);
    assertEquals(b.recvmsg(16)[0].length, 0);
    // Stream: no address (null, as Python's None); EOF is empty data.
    s1.sendmsg([MSG]);
    const [data, , sflags, saddr] = s2.recvmsg(1024);
    assertEquals([dec.decode(data), sflags, saddr], [dec.decode(MSG), 0, null]);
    s1.close();
    assertEquals(s2.recvmsg(1024)[0].length, 0);
    // Python's size checks, and a closed socket's EBADF.
    assertThrows(() => s2.recvmsg(-1), RangeError, "negative buffer size in recvmsg()");
    assertThrows(() => s2.recvmsg(1, -1), RangeError, "invalid ancillary data buffer length");
    assertThrows(() => s2.sendmsg("x" as unknown as string[]), TypeError);
    assertThrows(
      () => s2.sendmsg(["x"], [[SOL_SOCKET, SCM_RIGHTS, "3" as unknown as Uint8Array]]),
      TypeError,
    );
    assertEquals(assertThrows(() => s1.sendmsg([MSG]), OSError).code, "EBADF");
    assertEquals(assertThrows(() => s1.recvmsg(1), OSError).code, "EBADF");
  } finally {
    for (const s of [a, b, s1, s2]) s.close();
  }
});

/** One case of CPython's SCMRightsTest: what is sent, the ancbufsize, what must come. */
interface RightsCase {
  name: string;
  /** SCM_RIGHTS items to send, as indexes into the new fds (a number: that many bytes of int). */
  send: (fds: number[]) => [number, number, Uint8Array][];
  nfds: number;
  ancbufsize: number;
  /** Expected: fds that arrive (checked for content), and whether MSG_CTRUNC must be set/unset. */
  want: { fds: number | [min: number, max: number]; ctrunc: boolean | null };
}

const ints = (...v: number[]) => new Uint8Array(new Int32Array(v).buffer);

const RIGHTS_CASES: RightsCase[] = [
  {
    name: "FDPassSimple",
    send: (f) => [[SOL_SOCKET, SCM_RIGHTS, ints(f[0])]],
    nfds: 1,
    ancbufsize: 10240,
    want: { fds: 1, ctrunc: false },
  },
  {
    name: "MultipleFDPass",
    send: (f) => [[SOL_SOCKET, SCM_RIGHTS, ints(...f)]],
    nfds: 4,
    ancbufsize: 10240,
    want: { fds: 4, ctrunc: false },
  },
  {
    name: "FDPassCMSG_SPACE",
    send: (f) => [[SOL_SOCKET, SCM_RIGHTS, ints(...f)]],
    nfds: 4,
    ancbufsize: CMSG_SPACE(4 * 4),
    want: { fds: 4, ctrunc: false },
  },
  {
    name: "FDPassCMSG_LEN",
    send: (f) => [[SOL_SOCKET, SCM_RIGHTS, ints(...f)]],
    nfds: 1,
    ancbufsize: CMSG_LEN(4 * 4),
    want: { fds: 1, ctrunc: null },
  },
  {
    name: "FDPassSeparate",
    send: (f) => [[SOL_SOCKET, SCM_RIGHTS, ints(f[0])], [SOL_SOCKET, SCM_RIGHTS, ints(f[1])]],
    nfds: 2,
    ancbufsize: 10240,
    want: { fds: 2, ctrunc: false },
  },
  {
    name: "FDPassSeparateMinSpace",
    send: (f) => [[SOL_SOCKET, SCM_RIGHTS, ints(f[0])], [SOL_SOCKET, SCM_RIGHTS, ints(f[1])]],
    nfds: 2,
    ancbufsize: CMSG_SPACE(4) + CMSG_LEN(4 * 2),
    want: { fds: 2, ctrunc: null },
  },
  {
    name: "CmsgTruncNoBufSize",
    send: (f) => [[SOL_SOCKET, SCM_RIGHTS, ints(...f)]],
    nfds: 1,
    ancbufsize: 0,
    want: { fds: 0, ctrunc: null },
  },
  {
    name: "CmsgTrunc1",
    send: (f) => [[SOL_SOCKET, SCM_RIGHTS, ints(...f)]],
    nfds: 1,
    ancbufsize: 1,
    want: { fds: 0, ctrunc: true },
  },
  {
    name: "CmsgTrunc2Int",
    send: (f) => [[SOL_SOCKET, SCM_RIGHTS, ints(...f)]],
    nfds: 1,
    ancbufsize: 8,
    want: { fds: 0, ctrunc: true },
  },
  {
    name: "CmsgTruncLen0Minus1",
    send: (f) => [[SOL_SOCKET, SCM_RIGHTS, ints(...f)]],
    nfds: 1,
    ancbufsize: CMSG_LEN(0) - 1,
    want: { fds: 0, ctrunc: true },
  },
  {
    name: "CmsgTruncLen0",
    send: (f) => [[SOL_SOCKET, SCM_RIGHTS, ints(...f)]],
    nfds: 1,
    ancbufsize: CMSG_LEN(0),
    want: { fds: 0, ctrunc: true },
  },
  {
    name: "CmsgTruncLen0Plus1",
    send: (f) => [[SOL_SOCKET, SCM_RIGHTS, ints(...f)]],
    nfds: 2,
    ancbufsize: CMSG_LEN(0) + 1,
    want: { fds: 0, ctrunc: true },
  },
  {
    name: "CmsgTruncLen1",
    send: (f) => [[SOL_SOCKET, SCM_RIGHTS, ints(...f)]],
    nfds: 2,
    ancbufsize: CMSG_LEN(4),
    want: { fds: [0, 1], ctrunc: true },
  },
  {
    name: "CmsgTruncLen2Minus1",
    send: (f) => [[SOL_SOCKET, SCM_RIGHTS, ints(...f)]],
    nfds: 2,
    ancbufsize: CMSG_LEN(2 * 4) - 1,
    want: { fds: [0, 1], ctrunc: true },
  },
];

leakTest("msg: SCM_RIGHTS cases of CPython's SCMRightsTest (stream and datagram)", () => {
  for (const type of [SOCK_STREAM, SOCK_DGRAM]) {
    // Under qemu-user a control buffer too small for the fds loses them without MSG_CTRUNC
    // (and leaves them open): only the cases where everything fits say anything there.
    for (const c of RIGHTS_CASES.filter((c) => !emulated || c.want.ctrunc === false)) {
      const what = `${c.name} (${type === SOCK_STREAM ? "stream" : "dgram"})`;
      const [cli, serv] = pair(type);
      const made = newFDs(c.nfds);
      let got: number[] = [];
      try {
        assertEquals(cli.sendmsg([MSG], c.send(made.fds)), MSG.length, what);
        const [msg, ancdata, flags, addr] = serv.recvmsg(MSG.length, c.ancbufsize);
        got = fdsOf(ancdata);
        assertEquals(dec.decode(msg), dec.decode(MSG), what);
        assertEquals(addr, null, `${what}: an unnamed peer has no address (Python's None)`);
        if (c.want.ctrunc !== null) {
          assertEquals((flags & MSG_CTRUNC) !== 0, c.want.ctrunc, `${what}: MSG_CTRUNC`);
        }
        const [min, max] = Array.isArray(c.want.fds) ? c.want.fds : [c.want.fds, c.want.fds];
        assert(got.length >= min && got.length <= max, `${what}: ${got.length} fds`);
        checkFDs(got);
        for (const fd of got) assert(isCloexec(fd), `${what}: fd ${fd} is close-on-exec`);
      } finally {
        for (const fd of got) os.close(fd);
        made.cleanup();
        cli.close();
        serv.close();
      }
    }
  }
});

leakTest("msg: an empty or cut SCM_RIGHTS item delivers no fd (FDPassEmpty, PartialInt)", () => {
  for (const data of [new Uint8Array(0), ints(-0x5555).subarray(0, 3)]) {
    const [cli, serv] = pair(SOCK_DGRAM);
    let fds: number[] = [];
    try {
      try {
        cli.sendmsg([MSG], [[SOL_SOCKET, SCM_RIGHTS, data]]);
      } catch (error) {
        // As CPython's sendAncillaryIfPossible: the kernel may refuse the item.
        assert(error instanceof OSError, String(error));
        cli.sendmsg([MSG]);
      }
      const [msg, ancdata] = serv.recvmsg(MSG.length, 10240);
      fds = fdsOf(ancdata);
      assertEquals([dec.decode(msg), fds.length], [dec.decode(MSG), 0]);
    } finally {
      for (const fd of fds) os.close(fd);
      cli.close();
      serv.close();
    }
  }
});

leakTest("msg: recvFds closes a set the kernel cut (MSG_CTRUNC): no fd is left open", () => {
  if (emulated) return; // qemu-user drops the fds that do not fit without MSG_CTRUNC
  const [cli, serv] = pair();
  const made = newFDs(3);
  try {
    const before = [...Deno.readDirSync("/proc/self/fd")].length;
    assertEquals(sendFds(cli, [MSG], made.fds), MSG.length);
    const [msg, fds, flags, addr] = recvFds(serv, 1024, 2);
    assertEquals([dec.decode(msg), fds, (flags & MSG_CTRUNC) !== 0, addr], [
      dec.decode(MSG),
      [],
      true,
      null,
    ]);
    assertEquals([...Deno.readDirSync("/proc/self/fd")].length, before, "no received fd open");
    // A set that fits arrives whole, close-on-exec, in order.
    sendFds(cli, ["x"], made.fds);
    const [, whole, wholeFlags] = recvFds(serv, 16, 3);
    try {
      assertEquals([whole.length, wholeFlags], [3, 0]);
      checkFDs(whole);
      assert(whole.every(isCloexec));
    } finally {
      for (const fd of whole) os.close(fd);
    }
    // maxfds 0 takes none.
    sendFds(cli, ["y"], [made.fds[0]]);
    const [, none, noneFlags] = recvFds(serv, 16, 0);
    assertEquals([none, (noneFlags & MSG_CTRUNC) !== 0], [[], true]);
  } finally {
    made.cleanup();
    cli.close();
    serv.close();
  }
});

leakTest("msg: bad fd-passing input is a clear error, never a silent loss", () => {
  const [cli, serv] = pair();
  const made = newFDs(1);
  try {
    // Linux sends nothing for an empty stream write: the fds would vanish while "0 sent".
    assertThrows(() => sendFds(cli, [], made.fds), RangeError, "at least one byte");
    assertThrows(() => sendFds(cli, [""], made.fds), RangeError, "at least one byte");
    assertEquals(assertThrows(() => sendFds(cli, ["x"], [987654]), OSError).code, "EBADF");
    assertThrows(() => sendFds(cli, ["x"], [2 ** 40]), RangeError, "out of range");
    assertThrows(() => sendFds(cli, ["x"], [1.5]), TypeError);
    assertThrows(() => sendFds(cli, ["x"], 3 as unknown as number[]), TypeError);
    assertThrows(() => recvFds(serv, 16, -1), RangeError);
    // Nothing was sent by the refused calls.
    serv.setblocking(false);
    assertEquals(assertThrows(() => recvFds(serv, 16, 1), OSError).code, "EAGAIN");
  } finally {
    made.cleanup();
    cli.close();
    serv.close();
  }
});

const PY_SEND_FDS = `
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
r, w = os.pipe()
os.write(w, b"written by python")
os.close(w)
n = socket.send_fds(s, [b"fds follow"], [r, 0])
print("sent", n, flush=True)
s.recv(1)  # wait until told to go
`;

pythonTest("msg: fds from python's send_fds arrive through recvFds, close-on-exec", async () => {
  const path = tempSocketPath("fds");
  const lst = new Socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK);
  const open: Socket[] = [];
  let fds: number[] = [];
  try {
    lst.bind(path);
    lst.listen(4);
    await using peer = new PythonPeer(PY_SEND_FDS, [path]);
    const [conn] = await eventually(() => lst.accept(), "python's connect");
    open.push(conn);
    assertEquals(await peer.line(), "sent 10");
    const [data, got, flags, addr] = await eventually(() => recvFds(conn, 64, 4), "the fds");
    fds = got;
    assertEquals([dec.decode(data), fds.length, flags, addr], ["fds follow", 2, 0, null]);
    assert(fds.every(isCloexec), "received fds are close-on-exec");
    const buf = new Uint8Array(64);
    assertEquals(dec.decode(buf.subarray(0, os.read(fds[0], 64).length)).length, 17);
    assertEquals(os.tryRead(fds[0], buf), 0, "the pipe's writer is closed");
    conn.send("g");
    await peer.finish();
  } finally {
    for (const fd of fds) os.close(fd);
    for (const s of [...open, lst]) s.close();
    Deno.removeSync(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  }
});

const PY_RECV_FDS = `
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("ready", flush=True)
msg, fds, flags, addr = socket.recv_fds(s, 64, 8)
print(msg.decode(), len(fds), flags, flush=True)
for fd in fds:
    os.lseek(fd, 0, os.SEEK_SET)
    print(os.read(fd, 64).decode(), flush=True)
`;

pythonTest("msg: sendFds on an unconnected datagram socket reaches python's recv_fds", async () => {
  const path = tempSocketPath("pyrecv");
  const sock = new Socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK);
  const made = newFDs(3);
  try {
    await using peer = new PythonPeer(PY_RECV_FDS, [path]);
    assertEquals(await peer.line(), "ready");
    assertEquals(sendFds(sock, ["three files"], made.fds, 0, path), 11);
    assertEquals(await peer.line(), "three files 3 0");
    assertEquals([await peer.line(), await peer.line(), await peer.line()], ["0", "1", "2"]);
    await peer.finish();
  } finally {
    made.cleanup();
    sock.close();
    Deno.removeSync(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  }
});

const PY_SEND_PLAIN = `
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"who am i", sys.argv[1])
print(os.getpid(), os.getuid(), os.getgid(), flush=True)
`;

pythonTest("msg: SCM_CREDENTIALS with SO_PASSCRED name python's pid, uid and gid", async () => {
  const path = tempSocketPath("creds");
  const sock = new Socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK);
  try {
    sock.bind(path);
    sock.setsockopt(SOL_SOCKET, SO_PASSCRED, 1);
    await using peer = new PythonPeer(PY_SEND_PLAIN, [path]);
    const ids = (await peer.line()).split(" ").map(Number);
    const [data, ancdata, flags, addr] = await eventually(
      () => sock.recvmsg(64, CMSG_SPACE(12)),
      "python's datagram",
    );
    assertEquals([dec.decode(data), flags], ["who am i", 0]);
    assertEquals(addr, null, "python's socket is unbound");
    assertEquals(ancdata.length, 1);
    const [level, type, cred] = ancdata[0];
    assertEquals([level, type, cred.length], [SOL_SOCKET, SCM_CREDENTIALS, 12]);
    const v = new DataView(cred.buffer, cred.byteOffset, 12);
    assertEquals([v.getInt32(0, true), v.getUint32(4, true), v.getUint32(8, true)], ids);
    await peer.finish();
  } finally {
    sock.close();
    Deno.removeSync(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  }
});

const PY_UDP_SEND = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
for payload in (b"short", b"x" * 3000):
    s.sendto(payload, ("127.0.0.1", int(sys.argv[1])))
print(s.recv(64).decode(), flush=True)
`;

pythonTest("msg: recvfromInto with a python UDP peer, with Python's size rules", async () => {
  const sock = new Socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK);
  try {
    sock.bind(["127.0.0.1", 0]);
    const port = (sock.getsockname() as [string, number])[1];
    await using peer = new PythonPeer(PY_UDP_SEND, [String(port)]);
    const pyPort = Number(await peer.line());
    const buf = new Uint8Array(16);
    const [n, from] = await eventually(() => sock.recvfromInto(buf), "short datagram");
    assertEquals([n, dec.decode(buf.subarray(0, n)), from], [5, "short", ["127.0.0.1", pyPort]]);
    // nbytes 0 is the whole buffer (as Python); a longer datagram is cut to it.
    const [m] = await eventually(() => sock.recvfromInto(buf, 0), "long datagram");
    assertEquals([m, dec.decode(buf)], [16, "x".repeat(16)]);
    assertThrows(() => sock.recvfromInto(buf, 17), RangeError, "greater than the length");
    assertThrows(() => sock.recvfromInto(buf, -1), RangeError, "negative buffersize");
    assertEquals(assertThrows(() => sock.recvfromInto(buf), OSError).code, "EAGAIN");
    sock.sendto("thanks", from);
    assertEquals(await peer.line(), "thanks");
    await peer.finish();
  } finally {
    sock.close();
  }
});

const PY_ABSTRACT = `
import socket, sys
name = b"\\0" + sys.argv[1].encode()
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(name + b"-s")
srv.listen()
dg = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
dg.bind(name + b"-d")
print("ready", flush=True)
conn, _ = srv.accept()
conn.sendall(b"stream:" + conn.recv(64))
data, addr = dg.recvfrom(64)
dg.sendto(b"dgram:" + data, addr)
print(repr(addr), flush=True)
`;

pythonTest("msg: abstract Unix names and Unix datagram connect with a python peer", async () => {
  const tag = `asyncore-msg-${Deno.pid}-${Math.random().toString(36).slice(2)}`;
  const client = new Socket(AF_UNIX, SOCK_STREAM);
  const dg = new Socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK);
  try {
    await using peer = new PythonPeer(PY_ABSTRACT, [tag]);
    assertEquals(await peer.line(), "ready");
    client.connect(`\0${tag}-s`); // queued in the backlog: no wait
    client.setblocking(false);
    client.send("hi");
    const buf = new Uint8Array(64);
    const n = await eventually(() => client.recvInto(buf), "the stream echo");
    assertEquals(dec.decode(buf.subarray(0, n)), "stream:hi");
    // A connected Unix datagram socket (which Deno.listenDatagram cannot make).
    dg.bind(`\0${tag}-me`);
    dg.connect(`\0${tag}-d`);
    assertEquals(dg.getpeername(), `\0${tag}-d`);
    dg.send("hello");
    const [reply, , , from] = await eventually(() => dg.recvmsg(64), "the datagram echo");
    assertEquals([dec.decode(reply), from], ["dgram:hello", `\0${tag}-d`]);
    assertEquals(await peer.line(), `b'\\x00${tag}-me'`);
    await peer.finish();
  } finally {
    client.close();
    dg.close();
  }
});
