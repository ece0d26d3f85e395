// Bad input and failing calls: each is a clear, typed error (OSError with
// errno/code/syscall, GaiError, TypeError, RangeError), and errno stays
// reliable under a million calls.
import { assert, assertEquals, assertInstanceOf, assertMatch, assertThrows } from "@std/assert";
import {
  AF_INET,
  AF_INET6,
  AF_UNIX,
  errno,
  GaiError,
  OSError,
  SHUT_RDWR,
  SO_REUSEADDR,
  SOCK_DGRAM,
  SOCK_NONBLOCK,
  SOCK_STREAM,
  Socket,
  SOL_SOCKET,
} from "../mod.ts";
import { errorCode, strerror } from "../ffi/errno.ts";
import { C, platform } from "../ffi/platform.ts";
import { getaddrinfoFirst } from "../ffi/resolve.ts";
import { Selector } from "../ffi/select.ts";
import { Poller } from "../ffi/poll.ts";
import { decodeSockaddr } from "../ffi/structs.ts";
import * as os from "../ffi/os.ts";
import { hasCommand, leakTest, onWindows, scaled, tempSocketPath } from "./_util.ts";

/** Runs `fn` and returns the OSError it throws, checking errno, code and syscall. */
function expectOSError(fn: () => unknown, code: string, syscall?: string): OSError {
  const err = assertThrows(fn, OSError);
  assertEquals(err.code, code, err.message);
  assertEquals(err.errno, errno[code]);
  assertEquals(err.name, "OSError");
  assertInstanceOf(err, Error);
  assert(err.message.startsWith(`[Errno ${errno[code]}] `), err.message);
  if (syscall !== undefined) assertEquals(err.syscall, syscall);
  return err;
}

/** A loopback port nobody listens on: bound (so nobody else takes it) but not listening. */
function closedPort(family = AF_INET, host = "127.0.0.1"): [Socket, number] {
  const holder = new Socket(family, SOCK_STREAM);
  holder.bind([host, 0]);
  return [holder, (holder.getsockname() as [string, number])[1]];
}

function removeSocketDir(path: string): void {
  Deno.removeSync(path.slice(0, path.lastIndexOf("/")), { recursive: true });
}

// ---------------------------------------------------------------------------
// OSError from the kernel

leakTest("errors: connect to a closed port is ECONNREFUSED, like Python's message", () => {
  for (const [family, host] of [[AF_INET, "127.0.0.1"], [AF_INET6, "::1"]] as const) {
    const [holder, port] = closedPort(family, host);
    const s = new Socket(family, SOCK_STREAM);
    try {
      const err = expectOSError(() => s.connect([host, port]), "ECONNREFUSED", "connect");
      assertEquals(err.errno, errno.ECONNREFUSED);
      // Windows' text is its own (FormatMessage), as in Python there.
      if (onWindows) assertMatch(err.message, /^\[Errno 10061\] .+: '.+'$/);
      else assertEquals(err.message, `[Errno 111] Connection refused: '${host}:${port}'`);
      assertEquals(err.filename, `${host}:${port}`);
      // connectEx answers with the errno instead of throwing.
      const s2 = new Socket(family, SOCK_STREAM);
      try {
        assertEquals(s2.connectEx([host, port]), errno.ECONNREFUSED);
      } finally {
        s2.close();
      }
    } finally {
      s.close();
      holder.close();
    }
  }
});

leakTest("errors: a non-blocking connect is EINPROGRESS (or refused at once)", () => {
  const [holder, port] = closedPort();
  const s = new Socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK);
  try {
    const err = assertThrows(() => s.connect(["127.0.0.1", port]), OSError);
    assert(["EINPROGRESS", "ECONNREFUSED"].includes(err.code), err.code);
    assertEquals(err.syscall, "connect");
  } finally {
    s.close();
    holder.close();
  }
});

leakTest("errors: binding a port or path in use is EADDRINUSE", () => {
  const a = new Socket();
  const b = new Socket();
  const path = tempSocketPath("inuse");
  const ua = onWindows ? null : new Socket(AF_UNIX);
  const ub = onWindows ? null : new Socket(AF_UNIX);
  try {
    a.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1);
    a.bind(["127.0.0.1", 0]);
    a.listen(1);
    const port = (a.getsockname() as [string, number])[1];
    // SO_REUSEADDR does not let a second socket take a listening port.
    b.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1);
    const err = expectOSError(() => b.bind(["127.0.0.1", port]), "EADDRINUSE", "bind");
    if (onWindows) return;
    assertEquals(err.message, `[Errno 98] Address already in use: '127.0.0.1:${port}'`);
    ua!.bind(path);
    expectOSError(() => ub!.bind(path), "EADDRINUSE", "bind");
  } finally {
    for (const s of [a, b, ua, ub]) s?.close();
    removeSocketDir(path);
  }
});

leakTest("errors: an unresolvable host is a GaiError naming the host", () => {
  const host = "no-such-host.invalid";
  const s = new Socket();
  const u = new Socket(AF_INET, SOCK_DGRAM);
  const v6 = new Socket(AF_INET6);
  try {
    for (
      const fn of [
        () => s.connect([host, 80]),
        () => u.sendto("x", [host, 9]),
        () => v6.bind([host, 0]),
      ]
    ) {
      const err = assertThrows(fn, GaiError);
      assertInstanceOf(err, OSError, "a GaiError is an OSError, as gaierror is in Python");
      assertEquals(err.name, "GaiError");
      assert(
        ["EAI_NONAME", "EAI_AGAIN", "EAI_FAIL", "EAI_NODATA", "EAI_ADDRFAMILY"].includes(err.code),
        err.code,
      );
      assertEquals(err.errno, platform.gaiErrors[err.code]);
      // glibc's EAI_* codes are negative; Windows' are Winsock errors (11001...).
      assert(onWindows ? err.errno > 0 : err.errno < 0);
      assertEquals(err.syscall, "getaddrinfo");
      assert(err.message.includes(`'${host}'`), err.message);
      assertMatch(err.message, onWindows ? /^\[Errno \d+\] / : /^\[Errno -\d+\] /);
    }
    // connectEx does not swallow a lookup failure into an errno.
    assertThrows(() => s.connectEx([host, 80]), GaiError);
  } finally {
    s.close();
    u.close();
    v6.close();
  }
});

leakTest(
  "errors: names resolve: localhost (IPv4) and ip6-localhost where the system knows it",
  () => {
    const s = new Socket();
    try {
      s.bind(["localhost", 0]);
      assertEquals((s.getsockname() as [string, number])[0], "127.0.0.1");
    } finally {
      s.close();
    }
    // /etc/hosts may lack ip6-localhost: only check it when getaddrinfo knows it.
    let known = true;
    try {
      getaddrinfoFirst("ip6-localhost", AF_INET6, SOCK_STREAM, new Uint8Array(128));
    } catch (error) {
      if (!(error instanceof GaiError)) throw error;
      known = false;
    }
    if (known) {
      const s6 = new Socket(AF_INET6);
      try {
        s6.bind(["ip6-localhost", 0]);
        assertEquals((s6.getsockname() as [string, number])[0], "::1");
      } finally {
        s6.close();
      }
    }
  },
);

leakTest("errors: a Unix path longer than sun_path is ENAMETOOLONG", () => {
  const long = "/tmp/" + "x".repeat(200);
  const s = new Socket(AF_UNIX);
  const d = new Socket(AF_UNIX, SOCK_DGRAM);
  try {
    for (const fn of [() => s.bind(long), () => s.connect(long), () => d.sendto("x", long)]) {
      const err = expectOSError(fn, "ENAMETOOLONG");
      assertEquals(err.errno, 36);
      assert(err.message.includes("too long"), err.message);
      assert(err.message.includes(`limit is ${platform.structs.sunPathMax}`), err.message);
      assert(err.message.includes("/tmp/xxx"), "the path is named (shortened)");
      assert(err.message.length < 200, "...but not all of it");
    }
    assertEquals(s.fileno() >= 0, true, "the socket is still usable");
    assertThrows(() => s.bind("/tmp/a\0b"), TypeError, "NUL");
  } finally {
    s.close();
    d.close();
  }
  // Unix-only: tests/windows_test.ts checks Windows' AF_UNIX error.
}, onWindows);

leakTest("errors: every call on a closed socket is EBADF", () => {
  const s = new Socket();
  const u = new Socket(AF_INET, SOCK_DGRAM);
  s.close();
  u.close();
  assertEquals(s.fileno(), -1);
  const buf = new Uint8Array(8);
  const calls: [string, () => unknown][] = [
    ["send", () => s.send("x")],
    ["send", () => s.trySend(buf)],
    ["recv", () => s.recv(10)],
    ["recv", () => s.tryRecvInto(buf)],
    ["recv", () => s.recvInto(buf)],
    ["bind", () => s.bind(["127.0.0.1", 0])],
    ["listen", () => s.listen(1)],
    ["accept", () => s.accept()],
    ["connect", () => s.connect(["127.0.0.1", 9])],
    ["connect", () => s.connectEx(["127.0.0.1", 9])],
    ["getsockname", () => s.getsockname()],
    ["getpeername", () => s.getpeername()],
    ["setsockopt", () => s.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1)],
    ["getsockopt", () => s.getsockopt(SOL_SOCKET, SO_REUSEADDR)],
    ["shutdown", () => s.shutdown(SHUT_RDWR)],
    ["fcntl", () => s.setblocking(false)],
    ["sendto", () => u.sendto("x", ["127.0.0.1", 9])],
    ["recvfrom", () => u.recvfrom(10)],
  ];
  for (const [syscall, fn] of calls) {
    const err = expectOSError(fn, "EBADF", syscall);
    assert(err.message.startsWith("[Errno 9] Bad file descriptor"), err.message);
  }
  s.close(); // still fine
});

leakTest("errors: other kernel refusals name their code", () => {
  const s = new Socket();
  const lst = new Socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK);
  try {
    expectOSError(() => s.getpeername(), "ENOTCONN", "getpeername");
    expectOSError(() => s.shutdown(SHUT_RDWR), "ENOTCONN", "shutdown");
    expectOSError(() => new Socket(12345), "EAFNOSUPPORT", "socket");
    lst.bind(["127.0.0.1", 0]);
    lst.listen(1);
    // Nothing queued on a non-blocking listener: EAGAIN, as Python's BlockingIOError.
    expectOSError(() => lst.accept(), errorCode(errno.EAGAIN), "accept");
    assertEquals(lst.tryAccept(), -1);
    expectOSError(() => lst.recv(1), "ENOTCONN", "recv");
    expectOSError(() => s.setsockopt(SOL_SOCKET, 9999, 1), "ENOPROTOOPT", "setsockopt");
  } finally {
    s.close();
    lst.close();
  }
});

leakTest("errors: fromFd checks its fd", () => {
  assertThrows(() => Socket.fromFd(-1), RangeError, "non-negative");
  assertThrows(() => Socket.fromFd(1.5), RangeError);
  // A number no fd has: EBADF.
  expectOSError(() => Socket.fromFd(999_999), "EBADF");
  // Not a socket: ENOTSOCK, and the fd is left open for its owner.
  const [r, w] = os.pipe();
  try {
    expectOSError(() => Socket.fromFd(r), "ENOTSOCK", "getsockopt");
    assertEquals(os.write(w, new Uint8Array([1])), 1);
    assertEquals(os.read(r, 1), new Uint8Array([1]));
  } finally {
    os.close(r);
    os.close(w);
  }
  // Pipes are Unix-only; tests/windows_test.ts checks fromFd on Windows.
}, onWindows);

// ---------------------------------------------------------------------------
// Errors of our own, before any system call

leakTest("errors: select cannot take fd >= 1024: a RangeError that suggests poll", () => {
  const sel = new Selector();
  for (const set of [sel.read, sel.write, sel.except]) {
    const err = assertThrows(() => set.add(1024), RangeError);
    assert(err.message.includes("fd 1024"), err.message);
    assert(err.message.includes("poll"), err.message);
  }
  // Nor a count that would make the kernel read past the sets.
  assertThrows(() => sel.select(1025, 0), RangeError, "fd 1024");
  assertThrows(() => sel.select(5000, 0), RangeError, "poll");
  assertThrows(() => sel.select(-1, 0), RangeError);
  assertEquals(sel.select(0, 0), 0);
  // Windows counts handles instead: tests/windows_test.ts.
}, onWindows);

leakTest("errors: a real fd >= 1024 is refused by select and served by poll", () => {
  const s = new Socket();
  const dups: number[] = [];
  try {
    // Fill the table up to 1024 with dups of one socket (when the limit allows).
    try {
      while (dups.length < 1100 && (dups.at(-1) ?? 0) < 1024) dups.push(os.dup(s.fileno()));
    } catch (error) {
      if (error instanceof OSError && error.code === "EMFILE") return; // too low a limit here
      throw error;
    }
    const big = dups.at(-1)!;
    assert(big >= 1024, `got fd ${big}`);
    const sel = new Selector();
    const err = assertThrows(() => sel.write.add(big), RangeError);
    assert(err.message.includes(`fd ${big}`), err.message);
    assert(err.message.includes('poller: "poll"'), err.message);
    const p = new Poller();
    p.fds.set(0, big, C.POLLOUT);
    assertEquals(p.poll(1, 0), 1);
    assertEquals(p.fds.fd(0), big);
    // A fresh TCP socket reports POLLOUT | POLLHUP (not connected).
    assert((p.fds.revents(0) & C.POLLOUT) !== 0);
  } finally {
    for (const fd of dups) os.close(fd);
    s.close();
  }
  // dup() is Unix-only.
}, onWindows);

leakTest("errors: the wrong address shape for the family is a TypeError", () => {
  const v4 = new Socket(AF_INET);
  const v6 = new Socket(AF_INET6);
  const un = onWindows ? null : new Socket(AF_UNIX);
  const dg = new Socket(AF_INET, SOCK_DGRAM);
  try {
    const cases: [() => unknown, string][] = [
      [() => v4.bind("/tmp/x"), "AF_INET address must be [host, port]"],
      [() => v4.connect(["127.0.0.1"] as unknown as [string, number]), "AF_INET"],
      [() => v4.connect(["127.0.0.1", 80, 0, 0]), "[host, port], not"],
      [() => v4.bind([80, "127.0.0.1"] as unknown as [string, number]), "AF_INET"],
      [() => v4.bind(["127.0.0.1", "80"] as unknown as [string, number]), "AF_INET"],
      [() => v6.bind(["::1", 0, 0, 0, 0] as unknown as [string, number]), "AF_INET6"],
      [() => v6.connect("::1"), "AF_INET6 address must be"],
      [() => dg.sendto("x", "/tmp/x"), "AF_INET"],
    ];
    if (un !== null) {
      cases.push(
        [() => un.bind(["127.0.0.1", 0]), "AF_UNIX address must be a path string"],
        [() => un.connect(null as unknown as string), "not null"],
      );
    }
    for (const [fn, text] of cases) assertThrows(fn, TypeError, text);
  } finally {
    for (const s of [v4, v6, un, dg]) s?.close();
  }
});

leakTest("errors: a port out of range is a RangeError", () => {
  const s = new Socket();
  const u = new Socket(AF_INET6, SOCK_DGRAM);
  try {
    for (const port of [65536, -1, 1.5, 1e9, NaN]) {
      const err = assertThrows(() => s.bind(["127.0.0.1", port]), RangeError);
      assert(err.message.includes("0-65535"), err.message);
      assertThrows(() => s.connect(["127.0.0.1", port]), RangeError, "port");
      assertThrows(() => u.sendto("x", ["::1", port]), RangeError, "port");
    }
    assertThrows(() => u.sendto("x", ["::1", 9, -1, 0]), RangeError, "flowinfo");
    assertThrows(() => u.sendto("x", ["::1", 9, 0, 2 ** 32]), RangeError, "scopeId");
    assertEquals(s.fileno() >= 0, true);
  } finally {
    s.close();
    u.close();
  }
});

leakTest("errors: data that is not a Uint8Array or string is a TypeError", () => {
  const s = new Socket();
  const u = new Socket(AF_INET, SOCK_DGRAM);
  try {
    const bad: unknown[] = [
      123,
      null,
      undefined,
      {},
      [1, 2, 3],
      new ArrayBuffer(3),
      new Int16Array(2),
      true,
    ];
    for (const value of bad) {
      const data = value as Uint8Array;
      assertThrows(() => s.send(data), TypeError, "data must be a Uint8Array or a string");
      assertThrows(() => s.trySend(data), TypeError, "Uint8Array");
      assertThrows(() => s.sendall(data), TypeError, "Uint8Array");
      assertThrows(() => u.sendto(data, ["127.0.0.1", 9]), TypeError, "Uint8Array");
    }
    assertThrows(() => s.send(null as unknown as string), TypeError, "not null");
    assertThrows(() => s.send(5 as unknown as string), TypeError, "not number");
  } finally {
    s.close();
    u.close();
  }
});

leakTest("errors: sizes, counts and constructor arguments are checked", () => {
  const s = new Socket(AF_INET, SOCK_DGRAM);
  try {
    for (const n of [-1, 1.5, NaN]) {
      assertThrows(() => s.recv(n), RangeError, "recv size");
      assertThrows(() => s.recvfrom(n), RangeError, "recvfrom size");
    }
    assertThrows(() => s.tryRecvInto(new Uint8Array(4), 5), RangeError, "exceeds the buffer");
    assertThrows(() => s.recvInto(new Uint8Array(4), 5), RangeError, "exceeds");
    assertThrows(() => s.listen(1.5), TypeError, "backlog");
  } finally {
    s.close();
  }
  assertThrows(() => new Socket(1.5), TypeError, "family must be an integer");
  assertThrows(() => new Socket(AF_INET, "x" as unknown as number), TypeError, "type");
  assertThrows(() => new Socket(AF_INET, SOCK_STREAM, NaN), TypeError, "proto");
  assertThrows(() => new Socket(AF_INET, SOCK_STREAM, 0, -3), RangeError, "fileno");
  assertThrows(() => os.read(1.5, 1), TypeError, "fd must be an integer");
  assertThrows(() => os.read(0, -1), RangeError, "read size");
});

leakTest("errors: OSError, errorCode and strerror read like Python", () => {
  const e = new OSError(errno.ENOENT, { syscall: "open", filename: "/nope" });
  assertEquals(e.message, "[Errno 2] No such file or directory: '/nope'");
  assertEquals([e.errno, e.code, e.syscall, e.filename], [2, "ENOENT", "open", "/nope"]);
  const bare = new OSError(errno.EPIPE);
  assertEquals(bare.message, "[Errno 32] Broken pipe");
  assertEquals(bare.syscall, undefined);
  assertEquals(new OSError(5, { message: "custom" }).message, "[Errno 5] custom");
  if (onWindows) {
    // Python's names for Winsock codes; the texts are Windows' own.
    assertEquals(errorCode(errno.EAGAIN), "EWOULDBLOCK", "one would-block code on Windows");
    assertEquals(errorCode(10061), "ECONNREFUSED");
    assertEquals(errorCode(10093), "WSANOTINITIALISED");
    assertEquals(new GaiError(platform.gaiErrors.EAI_NONAME, "example.invalid").code, "EAI_NONAME");
    return;
  }
  assertEquals(errorCode(errno.EAGAIN), "EAGAIN", "EAGAIN wins over EWOULDBLOCK");
  assertEquals(errorCode(errno.ECONNRESET), "ECONNRESET");
  assertEquals(errorCode(4321), "E4321");
  assertEquals(strerror(errno.ECONNREFUSED), "Connection refused");
  assertEquals(strerror(4321), "Unknown error 4321");
  const gai = new GaiError(platform.gaiErrors.EAI_NONAME, "example.invalid");
  assertEquals(gai.code, "EAI_NONAME");
  assertEquals(gai.message, "[Errno -2] Name or service not known (resolving 'example.invalid')");
  assertEquals(new GaiError(-999, "h").code, "EAI_999");
  assertEquals(decodeSockaddr(new Uint8Array(128), 0), "");
});

// ---------------------------------------------------------------------------
// errno reliability under load

leakTest("errors: 1,000,000 recv calls on an empty non-blocking socket all say would-block", () => {
  const s = new Socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK);
  const t = new Socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK);
  try {
    s.bind(["127.0.0.1", 0]);
    const buf = new Uint8Array(64);
    let failures = 0;
    const others = new Map<string, number>();
    const deadline = performance.now() + 20_000;
    const calls = scaled(1_000_000);
    let i = 0;
    for (; i < calls && performance.now() < deadline; i++) {
      let r: number;
      try {
        r = s.tryRecvInto(buf);
      } catch (error) {
        const key = error instanceof OSError ? error.code : String(error);
        others.set(key, (others.get(key) ?? 0) + 1);
        failures++;
        continue;
      }
      if (r !== -1) {
        others.set(`result ${r}`, (others.get(`result ${r}`) ?? 0) + 1);
        failures++;
      }
    }
    assertEquals(i, calls, "all calls ran within the time bound");
    assertEquals(failures, 0, `not would-block: ${JSON.stringify([...others])}`);
    // The throwing form says EAGAIN every time, too.
    for (let k = 0; k < scaled(10_000); k++) {
      expectOSError(() => s.recv(8), errorCode(errno.EAGAIN), "recv");
    }
    // An unconnected stream socket is a real error (ENOTCONN), never would-block.
    for (let k = 0; k < scaled(10_000); k++) {
      expectOSError(() => t.tryRecvInto(buf), "ENOTCONN", "recv");
    }
  } finally {
    s.close();
    t.close();
  }
});

leakTest("errors: 100,000 sends on a closed Socket all throw EBADF", () => {
  for (const type of [SOCK_STREAM, SOCK_STREAM | SOCK_NONBLOCK]) {
    const s = new Socket(AF_INET, type);
    s.close();
    const data = new Uint8Array(16);
    const codes = new Map<string, number>();
    const deadline = performance.now() + 20_000;
    const calls = scaled(100_000);
    let i = 0;
    for (; i < calls && performance.now() < deadline; i++) {
      let code = "returned";
      try {
        s.send(data);
      } catch (error) {
        code = error instanceof OSError ? error.code : String(error);
      }
      if (code !== "EBADF") codes.set(code, (codes.get(code) ?? 0) + 1);
    }
    assertEquals(i, calls, "all calls ran within the time bound");
    assertEquals([...codes], [], "every send threw EBADF");
    for (let k = 0; k < scaled(20_000); k++) expectOSError(() => s.recv(8), "EBADF", "recv");
  }
});

Deno.test({
  name: "errors: tryAccept makes one accept4 call per would-block (strace)",
  ignore: !hasCommand("strace"),
  async fn() {
    const script = new URL("./fixtures/accept_would_block.ts", import.meta.url).pathname;
    const out = await new Deno.Command("strace", {
      args: ["-f", "-c", "-e", "trace=accept4", Deno.execPath(), "run", "--allow-ffi", script],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(out.stdout);
    const summary = new TextDecoder().decode(out.stderr);
    assertEquals(stdout.trim(), "would-block 1000");
    const calls = Number(summary.match(/^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+\d*\s*accept4$/m)?.[1]);
    assertEquals(calls, 1000, summary);
  },
});
