// The typed faces of the API for Deno programs: address helpers that narrow
// `Address` without a cast, `using` on sockets, times in seconds beside the
// deprecated millisecond names, and the Deno version checked at load.
import { assert, assertEquals, assertMatch, assertThrows } from "@std/assert";
import { assertType, type IsExact } from "@std/testing/types";
import {
  type Address,
  AF_INET,
  AF_INET6,
  AF_UNIX,
  formatAddress,
  type InetAddress,
  inetAddress,
  isInetAddress,
  MIN_DENO_VERSION,
  Socket,
  SPIN_MS,
  SPIN_SECONDS,
  YIELD_EVERY_MS,
  YIELD_EVERY_SECONDS,
} from "../mod.ts";
import { checkDenoVersion, denoVersionProblem } from "../ffi/deno_version.ts";
import { assertNoFdLeak, hasIPv6, python, tempSocketPath } from "./_util.ts";
import { run, spawn, stop } from "./fixtures/subprocess.ts";

Deno.test("inetAddress: getsockname of IPv4 and IPv6 sockets as [host, port], no cast", async () => {
  await assertNoFdLeak(() => {
    using v4 = new Socket(AF_INET);
    v4.bind(["127.0.0.1", 0]);
    const [host, port] = inetAddress(v4.getsockname());
    assertType<IsExact<typeof host, string>>(true);
    assertType<IsExact<typeof port, number>>(true);
    assertEquals(host, "127.0.0.1");
    assert(port > 0 && port < 65536);
    if (hasIPv6) {
      using v6 = new Socket(AF_INET6);
      v6.bind(["::1", 0]);
      const full = v6.getsockname();
      assertEquals(full.length, 4, "the IPv6 quadruple");
      assertEquals(inetAddress(full), ["::1", (full as [string, number])[1]]);
    }
  });
});

Deno.test("inetAddress: a Unix path or anything else is a TypeError that says what it got", async () => {
  const path = tempSocketPath("addr");
  await assertNoFdLeak(() => {
    using unix = new Socket(AF_UNIX);
    unix.bind(path);
    const addr: Address = unix.getsockname();
    assertThrows(
      () => inetAddress(addr),
      TypeError,
      `expected an IPv4 or IPv6 address [host, port], not a Unix socket path (${
        JSON.stringify(path)
      })`,
    );
  });
  Deno.removeSync(path);
  assertThrows(() => inetAddress(null), TypeError, "not null");
  assertThrows(() => inetAddress(["h"] as unknown as Address), TypeError, `not ["h"]`);
  assertThrows(() => inetAddress(["h", "80"] as unknown as Address), TypeError);
});

Deno.test("isInetAddress narrows the union; formatAddress prints the one log form", () => {
  const addrs: Address[] = [["127.0.0.1", 80], ["::1", 8080, 0, 0], "/run/x.sock"];
  const ports: number[] = [];
  for (const a of addrs) {
    if (isInetAddress(a)) ports.push(a[1]); // a[1] is a number here, without a cast
  }
  assertEquals(ports, [80, 8080]);
  const inet: InetAddress = ["10.0.0.1", 1];
  assertEquals(formatAddress(inet), "10.0.0.1:1");
  assertEquals(formatAddress(["127.0.0.1", 8080]), "127.0.0.1:8080");
  assertEquals(formatAddress(["::1", 8080, 0, 0]), "[::1]:8080");
  assertEquals(formatAddress(["fe80::1", 22, 0, 2]), "[fe80::1%2]:22");
  assertEquals(formatAddress(["::ffff:127.0.0.1", 5, 0, 0]), "[::ffff:127.0.0.1]:5");
  assertEquals(formatAddress("/run/echo.sock"), "/run/echo.sock");
  assertEquals(formatAddress("\0abstract"), "@abstract");
  assertEquals(formatAddress(""), "(unnamed)");
  assertEquals(formatAddress(null), "-");
});

Deno.test({
  name: "using: a Socket closes when its block ends; the python3 peer reads the end of stream",
  ignore: !python,
  async fn() {
    const py = `
import socket
srv = socket.create_server(("127.0.0.1", 0))
print(srv.getsockname()[1], flush=True)
c, _ = srv.accept()
c.settimeout(10)
print(repr(c.recv(10)), repr(c.recv(10)), flush=True)
`;
    await assertNoFdLeak(async () => {
      const peer = spawn(python!, ["-u", "-c", py]);
      try {
        const portLine = await peer.stdout.waitFor(/^\d+$/);
        if (!portLine) throw new Error("python3 did not start");
        let fd = -1;
        {
          using s = new Socket();
          s.connect(["127.0.0.1", Number(portLine[0])]);
          fd = s.fileno();
          s.sendall("hi");
        }
        assert(fd >= 0);
        // The data, then b'' (the end of stream): the block's end closed the socket.
        assertEquals(await peer.stdout.waitFor(/^b'hi' b''$/), ["b'hi' b''"]);
      } finally {
        await stop(peer);
      }
    });
  },
});

Deno.test("times in seconds: SPIN_SECONDS and YIELD_EVERY_SECONDS are the deprecated ms names / 1000", () => {
  assertEquals(SPIN_SECONDS * 1000, SPIN_MS);
  assertEquals(YIELD_EVERY_SECONDS * 1000, YIELD_EVERY_MS);
});

Deno.test("deno version: the minimum is checked by numbers, and this Deno passes", () => {
  assertEquals(denoVersionProblem(Deno.version.deno), null);
  assertEquals(denoVersionProblem(MIN_DENO_VERSION), null);
  assertEquals(denoVersionProblem("2.0.0", "2.0.0"), null);
  assertEquals(denoVersionProblem("2.10.0", "2.9.6"), null, "10 > 9 as numbers");
  assertEquals(denoVersionProblem("3.0.0-rc.1", "2.9.6"), null);
  assertEquals(denoVersionProblem("a custom build", "2.0.0"), null);
  assertEquals(
    denoVersionProblem("1.46.3", "2.0.0"),
    "asyncore for Deno needs Deno 2.0.0 or later, and this is Deno 1.46.3: run `deno upgrade`",
  );
  assertMatch(denoVersionProblem("2.9.5", "2.9.6")!, /needs Deno 2\.9\.6 or later/);
  assertEquals(
    denoVersionProblem(undefined),
    "asyncore for Deno runs on Deno only (it binds libc with Deno.dlopen)",
  );
  checkDenoVersion(); // this Deno: no throw
});

Deno.test("deno version: an older Deno stops at load with the one sentence, before anything else runs", async () => {
  // The only way to be an older Deno here: hide the real one behind an older version string.
  const root = new URL("..", import.meta.url).pathname;
  const script = `
Object.defineProperty(globalThis, "Deno", { value: { ...Deno, version: { ...Deno.version, deno: "1.46.3" } } });
try {
  await import("./mod.ts");
  console.log("loaded");
} catch (error) {
  console.log(error.message);
}`;
  const r = await run(Deno.execPath(), ["eval", "--allow-ffi", script], { cwd: root });
  assertEquals(
    new TextDecoder().decode(r.stdout).trim(),
    "asyncore for Deno needs Deno 2.0.0 or later, and this is Deno 1.46.3: run `deno upgrade`",
    r.stderr,
  );
});
