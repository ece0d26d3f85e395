// Struct codecs of ffi/structs.ts (and the address encoding of ffi/resolve.ts):
// pure byte work, checked against hand-written layouts and libc's own answers.
import {
  assert,
  assertEquals,
  assertNotStrictEquals,
  assertStrictEquals,
  assertThrows,
} from "@std/assert";
import { AF_INET, AF_INET6, AF_UNIX, encodeLinger, errno, OSError, SOCK_STREAM } from "../mod.ts";
import { C, platform } from "../ffi/platform.ts";
import {
  checkAddressShape,
  checkSelectable,
  decodeSockaddr,
  encodeSockaddrIn,
  encodeSockaddrIn6,
  encodeSockaddrUn,
  encodeTimeval,
  familyName,
  FdSet,
  formatIPv4,
  formatIPv6,
  parseIPv4,
  PollFdArray,
  sockaddrFamily,
} from "../ffi/structs.ts";
import { encodeAddress, getaddrinfoFirst } from "../ffi/resolve.ts";
import { timeoutMs } from "../ffi/poll.ts";
import { leakTest, onWindows } from "./_util.ts";

const S = platform.structs;

/** 16 bytes from eight 16-bit words. */
function v6(...words: number[]): Uint8Array {
  assertEquals(words.length, 8);
  const out = new Uint8Array(16);
  words.forEach((w, i) => {
    out[2 * i] = w >> 8;
    out[2 * i + 1] = w & 0xff;
  });
  return out;
}

function storage(): Uint8Array {
  return new Uint8Array(S.sockaddrStorage);
}

leakTest("structs: formatIPv6 follows RFC 5952 and inet_ntop", () => {
  const cases: [Uint8Array, string][] = [
    [v6(0, 0, 0, 0, 0, 0, 0, 1), "::1"],
    [v6(0, 0, 0, 0, 0, 0, 0, 0), "::"],
    [v6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1), "2001:db8::1"],
    [v6(0, 0, 0, 0, 0, 0xffff, 0x0102, 0x0304), "::ffff:1.2.3.4"],
    // A single zero group is written out, never "::".
    [v6(0x2001, 0xdb8, 0, 1, 1, 1, 1, 1), "2001:db8:0:1:1:1:1:1"],
    // The longest run is compressed; of equal runs, the first.
    [v6(0x2001, 0, 0, 1, 0, 0, 0, 1), "2001:0:0:1::1"],
    [v6(0x2001, 0xdb8, 0, 0, 1, 0, 0, 1), "2001:db8::1:0:0:1"],
    [v6(0xfe80, 0, 0, 0, 0, 0, 0, 1), "fe80::1"],
    [v6(1, 0, 0, 0, 0, 0, 0, 0), "1::"],
    [v6(0, 0, 0, 0, 0, 0, 0, 0x10), "::10"],
    // Hex is lowercase without leading zeros.
    [v6(0xabcd, 0xef, 0x0a, 1, 2, 3, 4, 0xffff), "abcd:ef:a:1:2:3:4:ffff"],
    // IPv4-compatible addresses come out dotted, as glibc's inet_ntop writes them.
    [v6(0, 0, 0, 0, 0, 0, 0x0102, 0x0304), "::1.2.3.4"],
  ];
  for (const [bytes, text] of cases) assertEquals(formatIPv6(bytes), text, text);
});

leakTest("structs: formatIPv6 agrees with the kernel on ::1 and with libc on literals", () => {
  for (
    const text of [
      "::1",
      "::",
      "2001:db8::1",
      "::ffff:1.2.3.4",
      "::1.2.3.4",
      "2001:db8:0:1:1:1:1:1",
      "fe80::1",
    ]
  ) {
    const out = storage();
    const len = getaddrinfoFirst(text, AF_INET6, SOCK_STREAM, out, C.AI_NUMERICHOST);
    assertEquals(len, S.sockaddrIn6);
    assertEquals(formatIPv6(out.subarray(8, 24)), text);
  }
});

leakTest("structs: parseIPv4 takes dotted quads and rejects everything else", () => {
  assertEquals(parseIPv4("127.0.0.1"), new Uint8Array([127, 0, 0, 1]));
  assertEquals(parseIPv4("0.0.0.0"), new Uint8Array(4));
  assertEquals(parseIPv4("255.255.255.255"), new Uint8Array([255, 255, 255, 255]));
  assertEquals(parseIPv4("10.0.20.3"), new Uint8Array([10, 0, 20, 3]));
  const bad = [
    "",
    "1.2.3",
    "1.2.3.4.5",
    "256.1.1.1",
    "1.2.3.999",
    "1.2.3.-1",
    "1..2.3",
    "a.b.c.d",
    " 1.2.3.4",
    "1.2.3.4 ",
    "1.2.3.4\n",
    "1.2.3.4.",
    "0x7f.0.0.1",
    "1e2.0.0.1",
    "1234.0.0.1",
    "localhost",
    "::1",
    // Leading zeros are octal to libc: they are left to getaddrinfo, not read as decimal.
    "010.0.0.1",
    "1.2.3.04",
  ];
  for (const text of bad) assertEquals(parseIPv4(text), null, JSON.stringify(text));
  assertEquals(formatIPv4(new Uint8Array([192, 168, 0, 255])), "192.168.0.255");
});

leakTest("structs: sockaddr_in encodes in network byte order and decodes back", () => {
  const out = storage().fill(0xee);
  const len = encodeSockaddrIn(out, new Uint8Array([127, 0, 0, 1]), 0x1234);
  assertEquals(len, 16);
  assertEquals(
    [...out.subarray(0, 16)],
    [AF_INET, 0, 0x12, 0x34, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0],
  );
  assertEquals(out[16], 0xee, "nothing past the struct is written");
  assertEquals(sockaddrFamily(out), AF_INET);
  assertEquals(decodeSockaddr(out, len), ["127.0.0.1", 0x1234]);
  for (const port of [0, 1, 80, 65535]) {
    encodeSockaddrIn(out, new Uint8Array([10, 1, 2, 3]), port);
    assertEquals(decodeSockaddr(out, 16), ["10.1.2.3", port]);
  }
});

leakTest("structs: sockaddr_in6 keeps flowinfo (big-endian) and scope id (host order)", () => {
  const out = storage().fill(0xee);
  const ip = v6(0xfe80, 0, 0, 0, 0, 0, 0, 1);
  const len = encodeSockaddrIn6(out, ip, 443, 0xabcde, 0x01020304);
  assertEquals(len, 28);
  assertEquals([...out.subarray(0, 8)], [AF_INET6, 0, 0x01, 0xbb, 0x00, 0x0a, 0xbc, 0xde]);
  assertEquals(out.subarray(8, 24), ip);
  assertEquals([...out.subarray(24, 28)], [4, 3, 2, 1]);
  assertEquals(out[28], 0xee);
  assertEquals(decodeSockaddr(out, len), ["fe80::1", 443, 0xabcde, 0x01020304]);
  encodeSockaddrIn6(out, v6(0, 0, 0, 0, 0, 0, 0, 1), 65535);
  assertEquals(decodeSockaddr(out, 28), ["::1", 65535, 0, 0]);
  encodeSockaddrIn6(out, new Uint8Array(16), 7, 0xfffff, 0xffffffff);
  assertEquals(decodeSockaddr(out, 28), ["::", 7, 0xfffff, 0xffffffff]);
  for (const flow of [-1, 0x100000, 1.5]) {
    assertThrows(() => encodeSockaddrIn6(out, ip, 1, flow), RangeError, "flowinfo");
  }
  for (const scope of [-1, 2 ** 32, 0.5]) {
    assertThrows(() => encodeSockaddrIn6(out, ip, 1, 0, scope), RangeError, "scopeId");
  }
});

leakTest("structs: sockaddr_un for paths, abstract names and the empty path", () => {
  const out = storage().fill(0xee);
  const path = "/tmp/some dir/ü.sock";
  const bytes = new TextEncoder().encode(path);
  const len = encodeSockaddrUn(out, path);
  assertEquals(len, S.sunPathOffset + bytes.length + 1, "a path counts its NUL");
  assertEquals(sockaddrFamily(out), AF_UNIX);
  assertEquals(out.subarray(S.sunPathOffset, S.sunPathOffset + bytes.length), bytes);
  assertEquals(out[S.sunPathOffset + bytes.length], 0);
  assertEquals(decodeSockaddr(out, len), path);
  // The kernel may report a longer length than the name (trailing NULs): cut at the NUL.
  assertEquals(decodeSockaddr(out, S.sunPathOffset + S.sunPathMax), path);

  const abstract = "\0asyncore-abstract";
  const alen = encodeSockaddrUn(out, abstract);
  assertEquals(alen, S.sunPathOffset + abstract.length, "an abstract name is counted exactly");
  assertEquals(decodeSockaddr(out, alen), abstract);
  // Inside an abstract name a NUL is data; decoding keeps every byte.
  assertEquals(decodeSockaddr(out, alen - 3), abstract.slice(0, -3));

  // Exactly sun_path bytes is the longest path; it fits without a NUL.
  const longest = "/" + "x".repeat(S.sunPathMax - 1);
  assertEquals(encodeSockaddrUn(out, longest), S.sunPathOffset + S.sunPathMax);
  assertEquals(decodeSockaddr(out, S.sunPathOffset + S.sunPathMax), longest);
  const err = assertThrows(() => encodeSockaddrUn(out, longest + "y"), OSError);
  assertEquals(err.errno, errno.ENAMETOOLONG);
  assertEquals(err.code, "ENAMETOOLONG");
  assert(err.message.includes(`limit is ${S.sunPathMax}`), err.message);
  assertThrows(() => encodeSockaddrUn(out, "\0" + "a".repeat(S.sunPathMax)), OSError, "too long");
  assertThrows(() => encodeSockaddrUn(out, "/tmp/a\0b"), TypeError, "NUL");

  // "" is the bare family: the kernel autobinds an abstract name, as in Python.
  assertEquals(encodeSockaddrUn(out, ""), S.sunPathOffset);
  assertEquals(sockaddrFamily(out), AF_UNIX);
  assertEquals(decodeSockaddr(out, S.sunPathOffset), "");
});

leakTest("structs: decodeSockaddr never reads a stale address", () => {
  const out = storage();
  encodeSockaddrIn(out, new Uint8Array([1, 2, 3, 4]), 99);
  // recvfrom from an unbound Unix socket reports length 0 and leaves the buffer alone.
  assertEquals(decodeSockaddr(out, 0), "");
  assertEquals(decodeSockaddr(out, 1), "");
  out[0] = 77;
  out[1] = 0;
  assertThrows(() => decodeSockaddr(out, 16), TypeError, "family 77");
});

leakTest("structs: checkAddressShape names the family and the wanted shape", () => {
  checkAddressShape(AF_INET, ["127.0.0.1", 0]);
  checkAddressShape(AF_INET6, ["::1", 65535]);
  checkAddressShape(AF_INET6, ["::1", 1, 0]);
  checkAddressShape(AF_INET6, ["::1", 1, 0, 0]);
  checkAddressShape(AF_UNIX, "/tmp/x");
  const typeCases: [number, unknown, string][] = [
    [AF_INET, "/tmp/x", "AF_INET address must be [host, port]"],
    [AF_INET, ["127.0.0.1"], "[host, port]"],
    [AF_INET, ["127.0.0.1", 1, 0, 0], "[host, port]"],
    [AF_INET, [1, 2], "not [1,2]"],
    [AF_INET, ["h", "80"], "AF_INET"],
    [AF_INET, null, "not null"],
    [AF_INET6, ["::1", 1, 2, 3, 4], "[host, port, flowinfo, scopeId]"],
    [AF_INET6, "::1", "AF_INET6"],
    [AF_UNIX, ["/tmp/x", 0], "AF_UNIX address must be a path string"],
    [AF_UNIX, undefined, "AF_UNIX"],
  ];
  for (const [family, addr, text] of typeCases) {
    assertThrows(() => checkAddressShape(family, addr), TypeError, text);
  }
  for (const port of [-1, 65536, 1.5, NaN, Infinity]) {
    assertThrows(() => checkAddressShape(AF_INET, ["127.0.0.1", port]), RangeError, "0-65535");
    assertThrows(() => checkAddressShape(AF_INET6, ["::1", port]), RangeError, "port");
  }
  assertEquals(familyName(AF_INET), "AF_INET");
  assertEquals(familyName(AF_INET6), "AF_INET6");
  assertEquals(familyName(AF_UNIX), "AF_UNIX");
  assertEquals(familyName(12345), "address family 12345");
});

leakTest("resolve: encodeAddress handles literals, names and the special hosts", () => {
  const out = storage();
  assertEquals(decodeSockaddr(out, encodeAddress(AF_INET, SOCK_STREAM, ["", 5], out)), [
    "0.0.0.0",
    5,
  ]);
  assertEquals(
    decodeSockaddr(out, encodeAddress(AF_INET, SOCK_STREAM, ["<broadcast>", 6], out)),
    ["255.255.255.255", 6],
  );
  assertEquals(
    decodeSockaddr(out, encodeAddress(AF_INET, SOCK_STREAM, ["localhost", 7], out)),
    ["127.0.0.1", 7],
  );
  // A leading zero goes to libc, which reads it as octal, as Python does.
  if (!onWindows) {
    assertEquals(
      decodeSockaddr(out, encodeAddress(AF_INET, SOCK_STREAM, ["010.0.0.1", 8], out)),
      ["8.0.0.1", 8],
    );
  }
  assertEquals(decodeSockaddr(out, encodeAddress(AF_INET6, SOCK_STREAM, ["", 9], out)), [
    "::",
    9,
    0,
    0,
  ]);
  assertEquals(
    decodeSockaddr(out, encodeAddress(AF_INET6, SOCK_STREAM, ["::1", 10, 5, 2], out)),
    ["::1", 10, 5, 2],
  );
  assertEquals(
    decodeSockaddr(out, encodeAddress(AF_INET6, SOCK_STREAM, ["::ffff:127.0.0.1", 11], out)),
    ["::ffff:127.0.0.1", 11, 0, 0],
  );
  assertEquals(decodeSockaddr(out, encodeAddress(AF_UNIX, SOCK_STREAM, "/tmp/a", out)), "/tmp/a");
  assertThrows(() => encodeAddress(99, SOCK_STREAM, ["x", 1], out), TypeError, "99");
  if (onWindows) return; // no interface named lo
  // A scope written in the text is kept; lo is interface 1 on Linux.
  const scoped = decodeSockaddr(out, encodeAddress(AF_INET6, SOCK_STREAM, ["fe80::1%lo", 12], out));
  assertEquals(scoped.slice(0, 3), ["fe80::1", 12, 0]);
  assert((scoped as number[])[3] > 0, "lo has a scope id");
  // ...unless one is passed.
  assertEquals(
    decodeSockaddr(out, encodeAddress(AF_INET6, SOCK_STREAM, ["fe80::1%lo", 12, 0, 77], out)),
    ["fe80::1", 12, 0, 77],
  );
});

leakTest("structs: encodeTimeval splits seconds and microseconds", () => {
  const out = new Uint8Array(S.timeval);
  const view = new DataView(out.buffer);
  // Two 64-bit fields, or two 32-bit longs on Windows.
  const read = () =>
    S.timeval === 8
      ? [view.getInt32(0, true), view.getInt32(4, true)]
      : [Number(view.getBigInt64(0, true)), Number(view.getBigInt64(8, true))];
  encodeTimeval(out, 1.5);
  assertEquals(read(), [1, 500000]);
  encodeTimeval(out, 0);
  assertEquals(read(), [0, 0]);
  encodeTimeval(out, 0.000001);
  assertEquals(read(), [0, 1]);
  encodeTimeval(out, 0.9999999);
  assertEquals(read(), [0, 999999], "rounding never yields a full second of micros");
  encodeTimeval(out, 86400 * 365);
  assertEquals(read(), [86400 * 365, 0]);
});

leakTest("poll: timeoutMs turns seconds into poll's milliseconds", () => {
  assertEquals(timeoutMs(null), -1);
  assertEquals(timeoutMs(-1), -1);
  assertEquals(timeoutMs(0), 0);
  assertEquals(timeoutMs(0.0001), 1, "rounds up so a short wait is not a busy spin");
  assertEquals(timeoutMs(1.5), 1500);
  assertEquals(timeoutMs(1e12), 0x7fffffff);
});

leakTest("structs: PollFdArray sets entries, grows by doubling, keeps its bytes otherwise", () => {
  const a = new PollFdArray();
  const first = a.bytes;
  assertEquals(first.length, 64 * S.pollfd.size);
  a.set(0, 7, C.POLLIN | C.POLLOUT);
  a.set(63, 1023, C.POLLRDHUP);
  const view = new DataView(a.bytes.buffer);
  const P = S.pollfd;
  assertEquals(view.getInt32(P.fd, true), 7);
  if (P.fdSize === 8) assertEquals(view.getInt32(P.fd + 4, true), 0, "a 64-bit SOCKET");
  assertEquals(view.getInt16(P.events, true), C.POLLIN | C.POLLOUT);
  assertEquals(view.getInt16(P.revents, true), 0);
  assertEquals(a.fd(63), 1023);
  // The kernel's revents lands in its own bytes of each entry.
  view.setUint16(P.revents, C.POLLIN | C.POLLHUP, true);
  assertEquals(a.revents(0), C.POLLIN | C.POLLHUP);
  a.set(0, 7, C.POLLIN);
  assertEquals(a.revents(0), 0, "set clears revents");
  a.set(1, -1, 0);
  assertEquals(a.fd(1), -1);

  a.reserve(10);
  a.reserve(64);
  assertStrictEquals(a.bytes, first, "no growth: the same buffer");
  a.reserve(65);
  assertNotStrictEquals(a.bytes, first);
  assertEquals(a.bytes.length, 128 * S.pollfd.size);
  assertEquals(a.fd(0), 7, "growing keeps the entries");
  assertEquals(a.fd(63), 1023);
  a.set(127, 5, C.POLLOUT);
  assertEquals(a.fd(127), 5);
  a.reserve(1000);
  assertEquals(a.bytes.length, 1024 * S.pollfd.size);
  assertEquals(a.fd(127), 5);
});

// Windows' fd_set is a handle list: see tests/windows_test.ts.
leakTest("structs: FdSet sets, tests and clears bits", () => {
  const set = new FdSet();
  assertEquals(set.bytes.length, S.fdSetSize / 8);
  for (const fd of [0, 7, 8, 63, 64, 1023]) set.add(fd);
  for (const fd of [0, 7, 8, 63, 64, 1023]) assert(set.has(fd), `fd ${fd}`);
  for (const fd of [1, 9, 62, 65, 1022]) assert(!set.has(fd), `fd ${fd}`);
  assertEquals(set.bytes[0], 0b1000_0001);
  assertEquals(set.bytes[127], 0b1000_0000);
  set.clear();
  assert(set.bytes.every((b) => b === 0));
  set.add(3);
  set.clear();
  assertEquals(set.bytes[0], 0);
}, onWindows);

leakTest("structs: fds select cannot hold are a RangeError suggesting poll", () => {
  const set = new FdSet();
  for (const fd of [1024, 5000, -1, 1.5, NaN]) {
    const err = assertThrows(() => set.add(fd), RangeError, `fd ${fd}`);
    assert(err.message.includes("poll"), err.message);
    assert(err.message.includes("0-1023"), err.message);
  }
  assert(set.bytes.every((b) => b === 0), "nothing was written");
  checkSelectable(0);
  checkSelectable(1023);
  assertThrows(() => checkSelectable(1024), RangeError, "select() cannot watch fd 1024");
}, onWindows);

leakTest("constants: encodeLinger is a struct linger of two ints", () => {
  assertEquals([...encodeLinger(true, 5)], [1, 0, 0, 0, 5, 0, 0, 0]);
  assertEquals([...encodeLinger(false, 0)], [0, 0, 0, 0, 0, 0, 0, 0]);
  assertEquals(encodeLinger(true, 300).length, 8);
  assertEquals(new Int32Array(encodeLinger(true, 300).buffer)[1], 300);
}, onWindows);

leakTest("platform: this platform's Linux table is self-consistent", () => {
  assertEquals(S.sockaddrIn, 16);
  assertEquals(S.sockaddrIn6, 28);
  assertEquals(S.sunPathOffset + S.sunPathMax, 110);
  assertEquals(S.pollfd, { size: 8, fd: 0, events: 4, revents: 6 });
  // glibc packs struct epoll_event on x86_64 only.
  assertEquals(
    S.epollEvent,
    Deno.build.arch === "x86_64"
      ? { size: 12, events: 0, data: 4 }
      : { size: 16, events: 0, data: 8 },
  );
  assert(S.sockaddrStorage >= S.sunPathOffset + S.sunPathMax);
  assertEquals(errno.EAGAIN, errno.EWOULDBLOCK);
  assert(Object.isFrozen(errno), "errno is read-only");
  assertEquals(errno.ECONNREFUSED, 111);
  assertEquals(platform.gaiErrors.EAI_NONAME, -2);
}, onWindows);
