// The platform table (ffi/platform.ts) against a C compiler's answer for the
// running architecture, and the fallbacks of ffi/symbols.ts for a libc
// without accept4, pipe2 or epoll.
import { assert, assertEquals } from "@std/assert";
import { AF_INET, SOCK_STREAM } from "../mod.ts";
import { C, platform, PLATFORMS } from "../ffi/platform.ts";
import {
  acceptWithFcntl,
  epollSymbols,
  libc,
  pipeWithFcntl,
  withFallbacks,
} from "../ffi/symbols.ts";
import { Socket } from "../ffi/socket.ts";
import * as os from "../ffi/os.ts";
import { assertNoFdLeak } from "./_util.ts";

function leakTest(name: string, fn: () => unknown | Promise<unknown>): void {
  Deno.test(name, () => assertNoFdLeak(fn));
}

/** A C compiler that builds for the architecture Deno runs on, or null. */
function compilerForThisArch(): string | null {
  for (const cc of [`${Deno.build.arch}-linux-gnu-gcc`, "cc"]) {
    try {
      const out = new Deno.Command(cc, { args: ["-dumpmachine"], stderr: "null" }).outputSync();
      if (out.success && new TextDecoder().decode(out.stdout).startsWith(Deno.build.arch)) {
        return cc;
      }
    } catch {
      // not installed
    }
  }
  return null;
}

const cc = Deno.build.os === "linux" ? compilerForThisArch() : null;

/** The facts tests/fixtures/platform_facts.c prints, compiled by `cc`. */
function factsFromC(compiler: string): Map<string, number> {
  const dir = Deno.makeTempDirSync({ prefix: "asyncore-facts-" });
  try {
    const bin = `${dir}/facts`;
    const src = new URL("./fixtures/platform_facts.c", import.meta.url).pathname;
    const built = new Deno.Command(compiler, { args: ["-o", bin, src] }).outputSync();
    if (!built.success) throw new Error(new TextDecoder().decode(built.stderr));
    const run = new Deno.Command(bin).outputSync();
    assert(run.success, "the facts program ran");
    const facts = new Map<string, number>();
    for (const line of new TextDecoder().decode(run.stdout).trim().split("\n")) {
      const [key, value] = line.split(" ");
      facts.set(key, Number(value));
    }
    return facts;
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

Deno.test({
  name: `platform: the ${platform.name} table matches the C headers (${cc ?? "no compiler"})`,
  ignore: cc === null,
  fn() {
    const facts = factsFromC(cc!);
    const mismatches: string[] = [];
    const expect = (key: string, value: number) => {
      if (facts.get(key) !== value) mismatches.push(`${key}: table ${value}, C ${facts.get(key)}`);
    };
    for (const [name, value] of Object.entries(platform.constants)) expect(name, value);
    for (const name of Object.keys(platform.constants)) assert(facts.has(name), name);
    for (const name of ["EAGAIN", "EINTR", "EINPROGRESS", "ECONNRESET", "EMFILE", "EPIPE"]) {
      expect(name, platform.errno[name]);
    }
    const S = platform.structs;
    for (const key of ["sockaddrStorage", "sockaddrIn", "sockaddrIn6", "sunPathMax"] as const) {
      expect(key, S[key]);
    }
    expect("sunPathOffset", S.sunPathOffset);
    expect("sockaddrFamilyOffset", S.sockaddrFamily === "u16" ? 0 : 1);
    expect("sockaddrFamilySize", S.sockaddrFamily === "u16" ? 2 : 1);
    for (const [k, v] of Object.entries(S.pollfd)) expect(`pollfd.${k}`, v);
    for (const [k, v] of Object.entries(S.epollEvent)) expect(`epollEvent.${k}`, v);
    expect("timeval", S.timeval);
    expect("fdSetSize", S.fdSetSize);
    for (const [k, v] of Object.entries(S.addrinfo)) expect(`addrinfo.${k}`, v);
    for (const [k, v] of Object.entries(S.hostent)) expect(`hostent.${k}`, v);
    for (const [k, v] of Object.entries(S.sigaction)) expect(`sigaction.${k}`, v);
    for (const [k, v] of Object.entries(S.msghdr)) expect(`msghdr.${k}`, v);
    expect("msghdr.controllenSize", S.msghdr.lengthSize);
    for (const [k, v] of Object.entries(S.iovec)) expect(`iovec.${k}`, v);
    for (const [k, v] of Object.entries(S.cmsghdr)) expect(`cmsghdr.${k}`, v);
    for (const [k, v] of Object.entries(S.mmsghdr)) expect(`mmsghdr.${k}`, v);
    expect("ipMreq", S.ipMreq);
    expect("ipv6Mreq", S.ipv6Mreq);
    assertEquals(mismatches, []);
  },
});

Deno.test("platform: every table is complete and its layouts fit", () => {
  const names = Object.keys(platform.constants).sort();
  for (const [key, table] of Object.entries(PLATFORMS)) {
    assertEquals(Object.keys(table.constants).sort(), names, `${key}: the same constant names`);
    for (const [name, value] of Object.entries(table.constants)) {
      assert(Number.isInteger(value), `${key}: ${name} is an integer`);
    }
    const { epollEvent, pollfd } = table.structs;
    assert(epollEvent.data + 8 <= epollEvent.size, `${key}: epoll data fits`);
    assert(pollfd.revents + 2 <= pollfd.size, `${key}: pollfd fits`);
    assert(table.variadicArgsAsFixed, `${key}: fcntl's fixed binding is valid there`);
  }
  assertEquals(PLATFORMS[`${Deno.build.os}-${Deno.build.arch}`], platform);
});

leakTest("symbols: accept4 falls back to accept + fcntl with the same flags", () => {
  const server = new Socket(AF_INET, SOCK_STREAM);
  const fds: number[] = [];
  try {
    server.bind(["127.0.0.1", 0]);
    server.listen(4);
    const addr = server.getsockname();
    const addrBuf = new Uint8Array(platform.structs.sockaddrStorage);
    const lenBuf = new Uint32Array(1);
    for (const flags of [C.SOCK_CLOEXEC | C.SOCK_NONBLOCK, C.SOCK_CLOEXEC, 0]) {
      const client = new Socket(AF_INET, SOCK_STREAM);
      try {
        client.connect(addr);
        lenBuf[0] = addrBuf.length;
        const fd = acceptWithFcntl(libc(), server.fileno(), addrBuf, lenBuf, flags);
        assert(fd >= 0, "accepted");
        fds.push(fd);
        const fl = libc().fcntl(fd, C.F_GETFL, 0);
        const fdFlags = libc().fcntl(fd, C.F_GETFD, 0);
        assertEquals((fl & C.O_NONBLOCK) !== 0, (flags & C.SOCK_NONBLOCK) !== 0);
        assertEquals((fdFlags & C.FD_CLOEXEC) !== 0, (flags & C.SOCK_CLOEXEC) !== 0);
        assertEquals(lenBuf[0], platform.structs.sockaddrIn, "the peer address came back");
      } finally {
        client.close();
      }
    }
    // Nothing queued on a non-blocking listener: -1 and EAGAIN, as accept4 says.
    server.setblocking(false);
    lenBuf[0] = addrBuf.length;
    assertEquals(acceptWithFcntl(libc(), server.fileno(), addrBuf, lenBuf, 0), -1);
  } finally {
    for (const fd of fds) os.close(fd);
    server.close();
  }
});

leakTest("symbols: pipe2 falls back to pipe + fcntl on both ends", () => {
  const fds = new Int32Array(2);
  assertEquals(pipeWithFcntl(libc(), fds, C.O_CLOEXEC | C.O_NONBLOCK), 0);
  try {
    for (const fd of fds) {
      assert((libc().fcntl(fd, C.F_GETFL, 0) & C.O_NONBLOCK) !== 0, "non-blocking");
      assert((libc().fcntl(fd, C.F_GETFD, 0) & C.FD_CLOEXEC) !== 0, "close-on-exec");
    }
    assertEquals(os.tryRead(fds[0], new Uint8Array(4)), -1, "an empty non-blocking pipe");
  } finally {
    os.close(fds[0]);
    os.close(fds[1]);
  }
});

leakTest("symbols: a libc without accept4, pipe2 or epoll still loads", () => {
  const lib = libc();
  const bare = withFallbacks({
    ...lib,
    accept4: null,
    pipe2: null,
    epoll_create1: null,
    epoll_ctl: null,
    epoll_wait: null,
    epollWaitAsync: null,
  });
  assert(bare.accept4 !== lib.accept4 && typeof bare.accept4 === "function");
  assertEquals(epollSymbols(bare), null, "epoll reported missing");
  assert(epollSymbols(lib) !== null, "this libc has epoll");
  const fds = new Int32Array(2);
  assertEquals(bare.pipe2(fds, C.O_CLOEXEC), 0);
  os.close(fds[0]);
  os.close(fds[1]);
});
