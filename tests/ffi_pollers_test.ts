// select/poll/epoll wrappers and the os.ts fd calls, on real loopback pairs
// and pipes: readiness, timeouts, buffer reuse and error codes.
import {
  assert,
  assertEquals,
  assertGreaterOrEqual,
  assertNotStrictEquals,
  assertStrictEquals,
  assertThrows,
} from "@std/assert";
import { AF_INET, errno, OSError, SHUT_WR, SOCK_NONBLOCK, SOCK_STREAM, Socket } from "../mod.ts";
import { C, platform } from "../ffi/platform.ts";
import { Selector } from "../ffi/select.ts";
import { Poller } from "../ffi/poll.ts";
import { Epoll } from "../ffi/epoll.ts";
import { libc } from "../ffi/symbols.ts";
import * as os from "../ffi/os.ts";
import { delay, leakTest, onWindows } from "./_util.ts";

/**
 * A connected non-blocking TCP pair over 127.0.0.1, like `socketpair()`:
 * `fn` gets `[a, b]`; all three sockets are closed afterwards.
 */
async function withPair(fn: (a: Socket, b: Socket) => unknown | Promise<unknown>) {
  const lst = new Socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK);
  const a = new Socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK);
  let b: Socket | undefined;
  try {
    lst.bind(["127.0.0.1", 0]);
    lst.listen(1);
    const err = a.connectEx(lst.getsockname());
    assert(err === 0 || err === errno.EINPROGRESS, `connectEx: ${err}`);
    const deadline = performance.now() + 5000;
    while (b === undefined) {
      const fd = lst.tryAccept();
      if (fd >= 0) b = Socket.fromFd(fd);
      else if (performance.now() > deadline) throw new Error("accept timed out");
      else await delay(1);
    }
    // Wait until a's side of the handshake is done too.
    const p = new Poller();
    p.fds.set(0, a.fileno(), C.POLLOUT);
    assertEquals(p.poll(1, 5000), 1);
    await fn(a, b);
  } finally {
    b?.close();
    a.close();
    lst.close();
  }
}

/**
 * An fd number that is not open but lies inside the process's fd table (the
 * kernel's select ignores bits past the table). Use it at once, before
 * anything can open an fd again.
 */
function unusedFd(): number {
  const s = new Socket();
  const fd = s.fileno();
  s.close();
  return fd;
}

/** Runs `fn`; returns its result and the milliseconds it took. */
function timed<T>(fn: () => T): [T, number] {
  const t0 = performance.now();
  const r = fn();
  return [r, performance.now() - t0];
}

// ---------------------------------------------------------------------------
// select

leakTest("select: readiness of a loopback pair", async () => {
  await withPair((a, b) => {
    const sel = new Selector();
    const nfds = Math.max(a.fileno(), b.fileno()) + 1;
    sel.clear();
    sel.read.add(b.fileno());
    sel.read.add(a.fileno());
    sel.write.add(a.fileno());
    sel.except.add(b.fileno());
    assertEquals(sel.select(nfds, 0), 1, "only a is writable");
    assert(sel.write.has(a.fileno()));
    assert(!sel.read.has(a.fileno()) && !sel.read.has(b.fileno()), "the kernel cleared bits");
    assert(!sel.except.has(b.fileno()));

    a.send("ready?");
    sel.clear();
    sel.read.add(b.fileno());
    assertEquals(sel.select(nfds, 1), 1);
    assert(sel.read.has(b.fileno()));
    assertEquals(new TextDecoder().decode(b.recv(16)), "ready?");

    // With nothing ready and no timeout given... a timeout of 0 polls.
    sel.clear();
    sel.read.add(b.fileno());
    assertEquals(sel.select(nfds, 0), 0);
    assert(!sel.read.has(b.fileno()));
    // A null timeout returns at once when something is ready.
    sel.clear();
    sel.write.add(b.fileno());
    const [r, ms] = timed(() => sel.select(nfds, null));
    assertEquals(r, 1);
    assert(ms < 1000);
  });
});

leakTest("select: the timeout is respected", async () => {
  await withPair((_a, b) => {
    const sel = new Selector();
    sel.clear();
    sel.read.add(b.fileno());
    const [r, ms] = timed(() => sel.select(b.fileno() + 1, 0.05));
    assertEquals(r, 0);
    assertGreaterOrEqual(ms, 45);
    assert(ms < 2000, `${ms} ms`);
    // No fds at all: a plain sleep.
    sel.clear();
    const [r2, ms2] = timed(() => sel.select(0, 0.03));
    assertEquals(r2, 0);
    assertGreaterOrEqual(ms2, 25);
  });
});

leakTest("select: an fd that is not open is EBADF; fd sets are reused", () => {
  const sel = new Selector();
  const readBytes = sel.read.bytes;
  const fd = unusedFd();
  sel.read.add(fd);
  const err = assertThrows(() => sel.select(fd + 1, 0), OSError);
  // Winsock (and Python on Windows) says "not a socket" of a closed handle.
  assertEquals(err.code, onWindows ? "ENOTSOCK" : "EBADF");
  assertEquals(err.syscall, "select");
  sel.clear();
  assertStrictEquals(sel.read.bytes, readBytes, "the same fd_set bytes every call");
  assert(sel.read.bytes.every((x) => x === 0));
});

// ---------------------------------------------------------------------------
// poll

leakTest("poll: readiness of a loopback pair, and hang-up after close", async () => {
  await withPair((a, b) => {
    const p = new Poller();
    p.fds.reserve(2);
    p.fds.set(0, a.fileno(), C.POLLIN | C.POLLOUT);
    p.fds.set(1, b.fileno(), C.POLLIN);
    assertEquals(p.poll(2, 0), 1);
    assertEquals(p.fds.revents(0), C.POLLOUT);
    assertEquals(p.fds.revents(1), 0);

    a.send("x");
    p.fds.set(0, a.fileno(), C.POLLIN);
    p.fds.set(1, b.fileno(), C.POLLIN);
    assertEquals(p.poll(2, 1000), 1);
    assertEquals(p.fds.revents(1), C.POLLIN);
    b.recv(1);

    // The peer's half-close reads as POLLIN (+ POLLRDHUP when asked).
    a.shutdown(SHUT_WR);
    p.fds.set(0, b.fileno(), C.POLLIN | C.POLLRDHUP);
    assertEquals(p.poll(1, 1000), 1);
    assertEquals(p.fds.revents(0) & (C.POLLIN | C.POLLRDHUP), C.POLLIN | C.POLLRDHUP);
    // Both directions closed: POLLHUP, reported even when not asked for.
    b.shutdown(SHUT_WR);
    p.fds.set(0, b.fileno(), 0);
    assertEquals(p.poll(1, 1000), 1);
    assert((p.fds.revents(0) & C.POLLHUP) !== 0, `revents ${p.fds.revents(0)}`);
  });
  // Linux's poll(2); tests/windows_test.ts checks what WSAPoll reports.
}, onWindows);

leakTest("poll: POLLNVAL for an fd that is not open, negative fds are skipped", () => {
  const p = new Poller();
  const fd = unusedFd();
  p.fds.set(0, fd, C.POLLIN);
  p.fds.set(1, -1, C.POLLIN);
  assertEquals(p.poll(2, 0), 1);
  assertEquals(p.fds.revents(0), C.POLLNVAL);
  assertEquals(p.fds.revents(1), 0);
  // Linux's poll(2); WSAPoll refuses a set with a closed handle.
}, onWindows);

leakTest("poll: the timeout is respected", async () => {
  await withPair((_a, b) => {
    const p = new Poller();
    p.fds.set(0, b.fileno(), C.POLLIN);
    const [r, ms] = timed(() => p.poll(1, 50));
    assertEquals(r, 0);
    assertGreaterOrEqual(ms, 45);
    assert(ms < 2000, `${ms} ms`);
    const [r0, ms0] = timed(() => p.poll(1, 0));
    assertEquals(r0, 0);
    assert(ms0 < 45, `poll(0) returns at once, took ${ms0} ms`);
  });
});

leakTest("poll: the pollfd buffer is reused until it has to grow", async () => {
  await withPair((a, b) => {
    const p = new Poller();
    const first = p.fds.bytes;
    for (let round = 0; round < 100; round++) {
      p.fds.reserve(2);
      p.fds.set(0, a.fileno(), C.POLLOUT);
      p.fds.set(1, b.fileno(), C.POLLOUT);
      assertEquals(p.poll(2, 0), 2);
    }
    assertStrictEquals(p.fds.bytes, first, "no new buffer while it is big enough");
    // More entries than it holds: it grows once, keeping what was set.
    const entries = first.length / platform.structs.pollfd.size + 1;
    p.fds.reserve(entries);
    const grown = p.fds.bytes;
    assertNotStrictEquals(grown, first);
    assertEquals(p.fds.fd(1), b.fileno());
    for (let i = 0; i < entries; i++) p.fds.set(i, i % 2 ? a.fileno() : b.fileno(), C.POLLOUT);
    assertEquals(p.poll(entries, 0), entries);
    p.fds.reserve(entries);
    assertStrictEquals(p.fds.bytes, grown);
    // A count past the buffer would let the kernel write past it: refused.
    const cap = grown.length / platform.structs.pollfd.size;
    assertThrows(() => p.poll(cap + 1, 0), RangeError, "reserve");
    assertThrows(() => p.poll(-1, 0), RangeError);
  });
});

leakTest("poll: pollAsync waits on a worker thread while timers run", async () => {
  await withPair(async (a, b) => {
    const p = new Poller();
    p.fds.set(0, b.fileno(), C.POLLIN);
    let ticked = false;
    const timer = setTimeout(() => {
      ticked = true;
      a.send("wake");
    }, 20);
    try {
      const t0 = performance.now();
      const r = await p.pollAsync(1, 5000);
      assertEquals(r, 1);
      assert(ticked, "the event loop ran during the wait");
      assertEquals(p.fds.revents(0), C.POLLIN);
      assert(performance.now() - t0 < 4000);
    } finally {
      clearTimeout(timer);
    }
    b.recv(16);
    assertEquals(await p.pollAsync(1, 50), 0, "an async timeout resolves to 0");
  });
});

// ---------------------------------------------------------------------------
// epoll

leakTest("epoll: ctl ADD/MOD/DEL return 0 or the errno", async () => {
  await withPair((a, _b) => {
    const ep = new Epoll(8);
    try {
      const fd = a.fileno();
      assertEquals(ep.ctl(C.EPOLL_CTL_ADD, fd, C.EPOLLIN), 0);
      assertEquals(ep.ctl(C.EPOLL_CTL_ADD, fd, C.EPOLLIN), errno.EEXIST);
      assertEquals(ep.ctl(C.EPOLL_CTL_MOD, fd, C.EPOLLOUT), 0);
      assertEquals(ep.ctl(C.EPOLL_CTL_DEL, fd, 0), 0);
      assertEquals(ep.ctl(C.EPOLL_CTL_DEL, fd, 0), errno.ENOENT);
      assertEquals(ep.ctl(C.EPOLL_CTL_MOD, fd, C.EPOLLIN), errno.ENOENT);
      assertEquals(ep.ctl(C.EPOLL_CTL_ADD, unusedFd(), C.EPOLLIN), errno.EBADF);
      assertEquals(ep.ctl(C.EPOLL_CTL_ADD, ep.fileno(), C.EPOLLIN), errno.EINVAL, "not itself");
      // A regular file cannot be watched: EPERM.
      const path = Deno.makeTempFileSync();
      const file = libc().open(new TextEncoder().encode(path + "\0"), C.O_RDONLY | C.O_CLOEXEC);
      try {
        assert(file >= 0);
        assertEquals(ep.ctl(C.EPOLL_CTL_ADD, file, C.EPOLLIN), errno.EPERM);
      } finally {
        os.close(file);
        Deno.removeSync(path);
      }
    } finally {
      ep.close();
    }
  });
  // No epoll on Windows.
}, onWindows);

leakTest("epoll: wait reports fds and events, and respects its timeout", async () => {
  await withPair((a, b) => {
    const ep = new Epoll(4);
    try {
      assertEquals(ep.capacity, 4);
      ep.ctl(C.EPOLL_CTL_ADD, a.fileno(), C.EPOLLOUT);
      ep.ctl(C.EPOLL_CTL_ADD, b.fileno(), C.EPOLLIN | C.EPOLLRDHUP);
      assertEquals(ep.wait(0), 1);
      assertEquals([ep.fd(0), ep.events(0)], [a.fileno(), C.EPOLLOUT]);

      ep.ctl(C.EPOLL_CTL_DEL, a.fileno(), 0);
      const [r, ms] = timed(() => ep.wait(50));
      assertEquals(r, 0);
      assertGreaterOrEqual(ms, 45);
      assert(ms < 2000, `${ms} ms`);

      a.send("e");
      assertEquals(ep.wait(1000), 1);
      assertEquals([ep.fd(0), ep.events(0)], [b.fileno(), C.EPOLLIN]);
      b.recv(1);
      a.shutdown(SHUT_WR);
      assertEquals(ep.wait(1000), 1);
      assertEquals(ep.events(0), C.EPOLLIN | C.EPOLLRDHUP);

      // Both sockets writable at once: two events in one wait.
      ep.ctl(C.EPOLL_CTL_MOD, b.fileno(), C.EPOLLOUT);
      ep.ctl(C.EPOLL_CTL_ADD, a.fileno(), C.EPOLLOUT);
      assertEquals(ep.wait(0), 2);
      assertEquals(new Set([ep.fd(0), ep.fd(1)]), new Set([a.fileno(), b.fileno()]));
      // reserve grows the event buffer, never shrinks it.
      ep.reserve(2);
      assertEquals(ep.capacity, 4);
      ep.reserve(100);
      assertEquals(ep.capacity, 100);
      assertEquals(ep.wait(0), 2);
    } finally {
      ep.close();
    }
  });
  // No epoll on Windows.
}, onWindows);

leakTest("epoll: waitAsync, and close is idempotent", async () => {
  await withPair(async (a, b) => {
    const ep = new Epoll();
    try {
      ep.ctl(C.EPOLL_CTL_ADD, b.fileno(), C.EPOLLIN);
      const events = new Uint8Array(platform.structs.epollEvent.size * 4);
      const timer = setTimeout(() => a.send("async"), 20);
      try {
        assertEquals(await ep.waitAsync(5000, events), 1);
      } finally {
        clearTimeout(timer);
      }
      const view = new DataView(events.buffer);
      const layout = platform.structs.epollEvent;
      assertEquals(view.getUint32(layout.events, true), C.EPOLLIN);
      assertEquals(view.getInt32(layout.data, true), b.fileno());
      b.recv(16);
      assertEquals(await ep.waitAsync(30, events), 0);
    } finally {
      ep.close();
    }
    assertEquals(ep.fileno(), -1);
    ep.close();
    assertEquals(ep.ctl(C.EPOLL_CTL_ADD, a.fileno(), C.EPOLLIN), errno.EBADF);
    const err = assertThrows(() => ep.wait(0), OSError);
    assertEquals(err.code, "EBADF");
    assertEquals(err.syscall, "epoll_wait");
  });
  // No epoll on Windows.
}, onWindows);

// ---------------------------------------------------------------------------
// os.ts

function isNonBlocking(fd: number): boolean {
  return (libc().fcntl(fd, C.F_GETFL, 0) & C.O_NONBLOCK) !== 0;
}

leakTest("os: pipe, write, read, EOF and EAGAIN", () => {
  const [r, w] = os.pipe();
  let writerOpen = true;
  try {
    assert(r >= 0 && w >= 0 && r !== w);
    assert(isNonBlocking(r) && isNonBlocking(w), "non-blocking by default");
    assertEquals(os.write(w, new TextEncoder().encode("hello pipe")), 10);
    assertEquals(new TextDecoder().decode(os.read(r, 5)), "hello");
    assertEquals(new TextDecoder().decode(os.read(r, 100)), " pipe");
    const err = assertThrows(() => os.read(r, 10), OSError);
    assertEquals([err.code, err.syscall], ["EAGAIN", "read"]);
    assertEquals(os.read(r, 0).length, 0);
    // Fill the pipe: the write that does not fit is EAGAIN.
    const chunk = new Uint8Array(65536);
    let total = 0;
    const werr = assertThrows(() => {
      for (let i = 0; i < 1000; i++) total += os.write(w, chunk);
    }, OSError);
    assertEquals(werr.code, "EAGAIN");
    assert(total > 0);
    let drained = 0;
    for (let i = 0; i < 1000 && drained < total; i++) drained += os.read(r, 65536).length;
    assertEquals(drained, total);
    os.close(w);
    writerOpen = false;
    assertEquals(os.read(r, 10).length, 0, "EOF once the writer is closed");
  } finally {
    os.close(r);
    // Never close a number twice: it may belong to someone else by now.
    if (writerOpen) os.close(w);
  }
  // Pipes and file fds are Unix-only (tests/windows_test.ts checks the error).
}, onWindows);

leakTest("os: a pipe without readers is EPIPE, not a signal", () => {
  const [r, w] = os.pipe();
  os.close(r);
  try {
    const err = assertThrows(() => os.write(w, new Uint8Array(1)), OSError);
    assertEquals([err.code, err.syscall], ["EPIPE", "write"]);
  } finally {
    os.close(w);
  }
  // Pipes and file fds are Unix-only (tests/windows_test.ts checks the error).
}, onWindows);

leakTest("os: dup shares the pipe; setBlocking flips O_NONBLOCK", () => {
  const [r, w] = os.pipe(false);
  let writerOpen = true;
  let copy = -1;
  try {
    assert(!isNonBlocking(r) && !isNonBlocking(w), "pipe(false) is blocking");
    copy = os.dup(w);
    assert(copy !== w && copy >= 0);
    os.write(copy, new Uint8Array([42]));
    os.setBlocking(r, false);
    assert(isNonBlocking(r));
    assertEquals(os.read(r, 4), new Uint8Array([42]));
    os.setBlocking(r, false);
    assert(isNonBlocking(r), "setting the same mode again changes nothing");
    os.setBlocking(r, true);
    assert(!isNonBlocking(r));
    // The dup outlives the original: the pipe stays open for writing.
    os.close(w);
    writerOpen = false;
    os.setBlocking(r, false);
    assertThrows(() => os.read(r, 4), OSError, "temporarily unavailable");
    os.close(copy);
    copy = -1;
    assertEquals(os.read(r, 4).length, 0);
  } finally {
    os.close(r);
    if (copy >= 0) os.close(copy);
    if (writerOpen) os.close(w);
  }
  // Pipes and file fds are Unix-only (tests/windows_test.ts checks the error).
}, onWindows);

leakTest("os: calls on an fd that is not open are EBADF", () => {
  const fd = unusedFd();
  for (
    const [syscall, fn] of [
      ["dup", () => os.dup(fd)],
      ["read", () => os.read(fd, 1)],
      ["write", () => os.write(fd, new Uint8Array(1))],
      ["close", () => os.close(fd)],
      ["fcntl", () => os.setBlocking(fd, false)],
    ] as const
  ) {
    const err = assertThrows(fn, OSError);
    assertEquals([err.code, err.syscall], ["EBADF", syscall]);
  }
  // Pipes and file fds are Unix-only (tests/windows_test.ts checks the error).
}, onWindows);
