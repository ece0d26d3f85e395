// inetAton/inetNtoa/inetPton/inetNtop against python3's socket module on the
// inputs of CPython's testIPv4toString/testIPv6toString/testStringToIPv4/
// testStringToIPv6 and more, and the production constants against Python's
// values on this machine.
import { assert, assertEquals, assertThrows } from "@std/assert";
import * as mod from "../mod.ts";
import { AF_INET, AF_INET6, inetAton, inetNtoa, inetNtop, inetPton, OSError } from "../mod.ts";
import { python } from "./_util.ts";

const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
const unhex = (s: string) => new Uint8Array(s.match(/../g)?.map((h) => parseInt(h, 16)) ?? []);

/** One call and its answer as Python would print it: the result, or the error's class and text. */
type Call = [fn: "aton" | "ntoa" | "pton" | "ntop", family: number, arg: string];

const TEXTS = [
  // CPython testIPv4toString
  "0.0.0.0",
  "255.0.255.0",
  "170.170.170.170",
  "1.2.3.4",
  "255.255.255.255",
  "0.0.0.",
  "300.0.0.0",
  "a.0.0.0",
  "1.2.3.4.5",
  "::1",
  // inet_aton's older forms, which inet_pton refuses
  "1",
  "127.1",
  "0x7f.1",
  "017.0.0.1",
  "2130706433",
  "1.2.3.4 junk",
  "",
  " 1.2.3.4",
  // CPython testIPv6toString
  "::",
  "0::0",
  "1::",
  "45ef:76cb:1a:56ef:afeb:bac:1924:aeae",
  "ad42:abc::127:0:254:2",
  "12:a::",
  "0x20::",
  ":::",
  "::0::",
  "1::abc::",
  "1::abc::def",
  "1:2:3:4:5:6",
  "1:2:3:4:5:6:",
  "1:2:3:4:5:6:7:8:0",
  "1:2:3:4:5:6:7:8:",
  "::254.42.23.64",
  "42::a29b:254.42.23.64",
  "42:a8b9:0:2:ffff:a29b:254.42.23.64",
  "1::260.2.3.0",
  "1::0.be.e.0",
  "1:2:3:4:5:6:7:1.2.3.4",
  "::1.2.3.4:0",
  "0.100.200.0:3:4:5:6:7:8",
  "fe80::1%lo",
  "::ffff:1.2.3.4",
];

const PACKED = [
  // CPython testStringToIPv4 / testStringToIPv6
  "01000100",
  "aa55aa55",
  "ffffffff",
  "01020304",
  "000000",
  "0000000000",
  "00".repeat(16),
  "00".repeat(15) + "01",
  "0aef0b0105061001ffff999700550170",
  "12".repeat(15),
  "12".repeat(17),
  "12".repeat(4),
  "00".repeat(10) + "ffff01020304",
  "00".repeat(12) + "01020304",
  "20010db8" + "00".repeat(11) + "01",
  "",
];

function calls(): Call[] {
  const out: Call[] = [];
  for (const t of TEXTS) {
    out.push(["aton", 0, t], ["pton", AF_INET, t], ["pton", AF_INET6, t]);
  }
  out.push(["pton", 99, "1.2.3.4"]);
  for (const p of PACKED) {
    out.push(["ntoa", 0, p], ["ntop", AF_INET, p], ["ntop", AF_INET6, p]);
  }
  out.push(["ntop", 99, "01020304"]);
  return out;
}

const PY_INET = `
import json, socket, sys
out = []
for fn, family, arg in json.load(sys.stdin):
    try:
        if fn == "aton": r = socket.inet_aton(arg).hex()
        elif fn == "pton": r = socket.inet_pton(family, arg).hex()
        elif fn == "ntoa": r = socket.inet_ntoa(bytes.fromhex(arg))
        else: r = socket.inet_ntop(family, bytes.fromhex(arg))
        out.append(["ok", r])
    except OSError as e:
        out.append(["OSError", str(e)])
    except ValueError as e:
        out.append(["ValueError", str(e)])
print(json.dumps(out))
`;

function ours([fn, family, arg]: Call): [string, string] {
  try {
    if (fn === "aton") return ["ok", hex(inetAton(arg))];
    if (fn === "pton") return ["ok", hex(inetPton(family, arg))];
    if (fn === "ntoa") return ["ok", inetNtoa(unhex(arg))];
    return ["ok", inetNtop(family, unhex(arg))];
  } catch (error) {
    // Python's ValueError is a RangeError here; its OSError is ours, with the same text.
    if (error instanceof OSError) return ["OSError", error.message];
    if (error instanceof RangeError) return ["ValueError", error.message];
    throw error;
  }
}

Deno.test("inet: inetAton/inetNtoa/inetPton/inetNtop answer as python3's socket does", {
  ignore: !python,
}, async () => {
  const all = calls();
  const child = new Deno.Command(python!, {
    args: ["-c", PY_INET],
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode(JSON.stringify(all)));
  await w.close();
  const out = await child.output();
  const want = JSON.parse(new TextDecoder().decode(out.stdout)) as [string, string][];
  assertEquals(want.length, all.length);
  assert(want.some(([kind]) => kind === "ValueError") && want.some(([k]) => k === "OSError"));
  const mismatches = all.map((c, i) => [c, ours(c), want[i]] as const)
    .filter(([, got, exp]) => got[0] !== exp[0] || got[1] !== exp[1]);
  assertEquals(mismatches, []);
});

Deno.test("inet: bad argument types are TypeErrors; a NUL is refused", () => {
  assertThrows(() => inetAton(5 as unknown as string), TypeError);
  assertThrows(() => inetAton("1.2.3.4\0"), TypeError, "NUL");
  assertThrows(() => inetNtoa("1234" as unknown as Uint8Array), TypeError);
  assertThrows(() => inetPton(1.5, "1.2.3.4"), TypeError);
  assertEquals(inetNtoa(new Uint8Array([127, 0, 0, 1])), "127.0.0.1");
  // Any byte view works, as Python takes any bytes-like object.
  assertEquals(inetNtop(AF_INET, new Uint8Array([10, 0, 0, 1]).subarray(0)), "10.0.0.1");
});

const NAMES = [
  "SCM_RIGHTS",
  "SCM_CREDENTIALS",
  "SO_REUSEPORT",
  "SO_PASSCRED",
  "SO_KEEPALIVE",
  "TCP_KEEPIDLE",
  "TCP_KEEPINTVL",
  "TCP_KEEPCNT",
  "TCP_USER_TIMEOUT",
  "IPPROTO_IP",
  "IPPROTO_IPV6",
  "IPPROTO_UDP",
  "IP_ADD_MEMBERSHIP",
  "IP_DROP_MEMBERSHIP",
  "IP_MULTICAST_TTL",
  "IP_MULTICAST_LOOP",
  "IP_MULTICAST_IF",
  "IPV6_JOIN_GROUP",
  "IPV6_LEAVE_GROUP",
  "IPV6_MULTICAST_LOOP",
  "INADDR_ANY",
  "MSG_PEEK",
  "MSG_TRUNC",
  "MSG_CTRUNC",
  "MSG_DONTWAIT",
  "MSG_WAITALL",
  "MSG_CMSG_CLOEXEC",
  "SO_RCVTIMEO",
  "SO_SNDTIMEO",
  "SO_OOBINLINE",
  "SO_BROADCAST",
];

const SSL_NAMES = [
  "SSL_ERROR_SSL",
  "SSL_ERROR_WANT_READ",
  "SSL_ERROR_WANT_WRITE",
  "SSL_ERROR_WANT_X509_LOOKUP",
  "SSL_ERROR_SYSCALL",
  "SSL_ERROR_ZERO_RETURN",
  "SSL_ERROR_WANT_CONNECT",
  "SSL_ERROR_EOF",
  "SSL_ERROR_INVALID_ERROR_CODE",
];

Deno.test("constants: the production constants and SSL_ERROR_* have python3's values", {
  ignore: !python,
}, async () => {
  const py = `import socket, ssl, sys
print(" ".join(str(int(getattr(socket, n))) for n in sys.argv[1].split(",")))
print(" ".join(str(int(getattr(ssl, n))) for n in sys.argv[2].split(",")))`;
  const out = await new Deno.Command(python!, {
    args: ["-c", py, NAMES.join(","), SSL_NAMES.join(",")],
  }).output();
  assert(out.success, new TextDecoder().decode(out.stderr));
  const [sock, ssl] = new TextDecoder().decode(out.stdout).trim().split("\n");
  const table = mod as unknown as Record<string, number>;
  assertEquals(
    NAMES.map((n) => `${n}=${table[n]}`),
    sock.split(" ").map((v, i) => `${NAMES[i]}=${v}`),
  );
  assertEquals(
    SSL_NAMES.map((n) => `${n}=${table[n]}`),
    ssl.split(" ").map((v, i) => `${SSL_NAMES[i]}=${v}`),
  );
});
