// Python's socket name functions (ffi/netdb.ts) against python3's own
// results on this machine: the same cases run in both, results compared.
import { assertEquals, assertThrows } from "@std/assert";
import * as net from "../mod.ts";
import { assertNoFdLeak, python } from "./_util.ts";

/** One call: [function, ...arguments]; named constants are written as strings and looked up. */
type Case = [string, ...unknown[]];

const CASES: Case[] = [
  ["getaddrinfo", "localhost", 80],
  ["getaddrinfo", "localhost", "http", 0, "SOCK_STREAM"],
  ["getaddrinfo", "127.0.0.1", 8080],
  ["getaddrinfo", "::1", null],
  ["getaddrinfo", null, 80],
  ["getaddrinfo", null, 80, 0, 0, 0, "AI_PASSIVE"],
  ["getaddrinfo", "127.0.0.1", "8080", "AF_INET", "SOCK_STREAM", 0, "AI_CANONNAME"],
  ["getaddrinfo", "localhost", 0, 0, 0, 0, "AI_CANONNAME"],
  ["getaddrinfo", "localhost", "domain", 0, "SOCK_DGRAM"],
  ["getaddrinfo", "localhost", 70000],
  ["getaddrinfo", "no-such-host.invalid", 80],
  ["getaddrinfo", "localhost", "nosuchservice"],
  ["getaddrinfo", "localhost", -1],
  ["getaddrinfo", null, null],
  ["getaddrinfo", "", 80],
  ["getaddrinfo", "localhost", 80, "AF_INET6"],
  ["getaddrinfo", "127.0.0.1", 80, "AF_INET6"],
  ["getaddrinfo", "localhost", 80, 0, 0, 0, "AI_NUMERICHOST"],
  ["getaddrinfo", "localhost", "http", 0, 0, 0, "AI_NUMERICSERV"],
  ["getaddrinfo", "localhost", 80, 12345],
  ["getaddrinfo", "localhost", 80, 0, 12345],
  ["getaddrinfo", "localhost", 80, 0, 0, 0, 0x7fff0000],
  ["gethostname"],
  ["getfqdn"],
  ["getfqdn", "localhost"],
  ["getfqdn", "  localhost "],
  ["getfqdn", "127.0.0.1"],
  ["getfqdn", "0.0.0.0"],
  ["getfqdn", "no-such-host.invalid"],
  ["gethostbyname", "localhost"],
  ["gethostbyname", "127.0.0.1"],
  ["gethostbyname", "127.1"],
  ["gethostbyname", ""],
  ["gethostbyname", "<broadcast>"],
  ["gethostbyname", "::1"],
  ["gethostbyname", "no-such-host.invalid"],
  ["getnameinfo", ["127.0.0.1", 80], 0],
  ["getnameinfo", ["127.0.0.1", 80], "NI_NUMERICHOST|NI_NUMERICSERV"],
  ["getnameinfo", ["127.0.0.1", 80], "NI_NUMERICSERV"],
  ["getnameinfo", ["127.0.0.1", 12345], 0],
  ["getnameinfo", ["127.0.0.1", 70000], 0],
  ["getnameinfo", ["127.0.0.1", 53], "NI_DGRAM"],
  ["getnameinfo", ["::1", 22, 0, 0], 0],
  ["getnameinfo", ["::1", 22], "NI_NUMERICHOST"],
  ["getnameinfo", ["127.0.0.2", 80], "NI_NAMEREQD"],
  ["getnameinfo", ["localhost", 80], 0],
  ["getnameinfo", ["no-such.invalid", 53], 0],
];

const FLAGS = [
  "AF_UNSPEC",
  "AF_INET",
  "AF_INET6",
  "SOCK_STREAM",
  "SOCK_DGRAM",
  "SOCK_RAW",
  "AI_PASSIVE",
  "AI_CANONNAME",
  "AI_NUMERICHOST",
  "AI_V4MAPPED",
  "AI_ALL",
  "AI_ADDRCONFIG",
  "AI_NUMERICSERV",
  "NI_NUMERICHOST",
  "NI_NUMERICSERV",
  "NI_NOFQDN",
  "NI_NAMEREQD",
  "NI_DGRAM",
  "NI_MAXHOST",
  "NI_MAXSERV",
];

// Runs every case in python3: ["ok", result] or ["gaierror"/"OSError"/..., errno].
const PY = `
import json, socket, sys
cases, flags = json.loads(sys.stdin.read())
def const(v):
    if isinstance(v, str) and v[:3] in ("AF_", "SOC", "AI_", "NI_"):
        out = 0
        for part in v.split("|"): out |= getattr(socket, part)
        return out
    return tuple(v) if isinstance(v, list) else v
out = []
for name, *args in cases:
    args = [args[0]] + [const(a) for a in args[1:]] if name == "getaddrinfo" and args else [const(a) for a in args]
    try:
        out.append(["ok", getattr(socket, name)(*args)])
    except OSError as e:
        out.append([type(e).__name__, e.errno])
print(json.dumps([out, {f: getattr(socket, f) for f in flags}]))
`;

function constant(v: unknown): unknown {
  if (typeof v === "string" && /^(AF_|SOCK_|AI_|NI_)/.test(v)) {
    return v.split("|").reduce(
      (acc, part) => acc | (net as unknown as Record<string, number>)[part],
      0,
    );
  }
  return v;
}

function runHere(name: string, args: unknown[]): unknown {
  // The port argument of getaddrinfo is never a constant; everything after it may be.
  const call = name === "getaddrinfo"
    ? [args[0], args[1], ...args.slice(2).map(constant)]
    : args.map(constant);
  const fn = (net as unknown as Record<string, (...a: unknown[]) => unknown>)[name];
  try {
    return ["ok", fn(...call)];
  } catch (error) {
    if (error instanceof net.GaiError) return ["gaierror", error.errno];
    if (error instanceof net.OSError) return ["OSError", null];
    throw error;
  }
}

Deno.test({
  name:
    "netdb: getaddrinfo, gethostname, getfqdn, gethostbyname, getnameinfo give python3's results",
  ignore: python === null,
  async fn() {
    const child = new Deno.Command(python!, {
      args: ["-c", PY],
      stdin: "piped",
      stdout: "piped",
    }).spawn();
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(JSON.stringify([CASES, FLAGS])));
    await w.close();
    const { stdout, success } = await child.output();
    assertEquals(success, true);
    const [expected, flags] = JSON.parse(new TextDecoder().decode(stdout));
    await assertNoFdLeak(() => {
      for (let i = 0; i < CASES.length; i++) {
        const [name, ...args] = CASES[i];
        const got = JSON.parse(JSON.stringify(runHere(name, args)));
        // Python's errno-less OSError ("IPv4 sockaddr must be 2 tuple") has errno None.
        const want = expected[i][0] === "OSError" ? ["OSError", null] : expected[i];
        assertEquals(got, want, `${name}(${JSON.stringify(args)})`);
      }
    });
    for (const f of FLAGS) assertEquals((net as unknown as Record<string, number>)[f], flags[f], f);
  },
});

Deno.test("netdb: bad argument types are TypeErrors, not lookups of other names", () => {
  assertThrows(() => net.getaddrinfo("localhost", 1.5), TypeError);
  assertThrows(() => net.getaddrinfo(42 as unknown as string, 80), TypeError);
  assertThrows(() => net.getaddrinfo("local\0host", 80), TypeError, "NUL");
  assertThrows(() => net.getnameinfo("127.0.0.1" as unknown as net.Address), TypeError);
  assertThrows(() => net.getnameinfo(["127.0.0.1", 80.5]), TypeError);
  assertThrows(() => net.gethostbyname(null as unknown as string), TypeError);
});

Deno.test("netdb: a GaiError names its code as Python's socket.EAI_* do", () => {
  const e = assertThrows(() => net.getaddrinfo("no-such-host.invalid", 80), net.GaiError);
  assertEquals([e.errno, e.code], [-2, "EAI_NONAME"]);
  assertEquals(e.message.startsWith("[Errno -2] Name or service not known"), true);
});
