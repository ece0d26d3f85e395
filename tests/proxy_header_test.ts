// The PROXY protocol header parser (dispatcher/proxy_header.ts), against
// HAProxy's proxy-protocol.txt: the v1 and v2 examples and limits, every
// rule a receiver must enforce, early refusal, every prefix of a valid
// header waiting for more, a seeded fuzz of mutated headers (never a throw,
// and a verdict that never changes as more bytes come), IPv6 text checked
// against python3's inet_pton/inet_ntop, and CRC-32C's check value.
import { assert, assertEquals, assertThrows } from "@std/assert";
import {
  parseProxyHeader,
  PROXY_V1_MAX_BYTES,
  PROXY_V2_MAX_BYTES,
  type ProxyParseResult,
  type ProxyProtocolVersion,
} from "../mod.ts";
import { crc32c, parseIPv6 } from "../dispatcher/proxy_header.ts";
import { formatIPv6 } from "../ffi/structs.ts";
import { python, rng, scaled } from "./_util.ts";
import { run } from "./fixtures/subprocess.ts";
import { ipv4Block, ipv6Block, v1, v2 } from "./fixtures/proxy.ts";

const encoder = new TextEncoder();
const bytes = (s: string) => encoder.encode(s);

function complete(r: ProxyParseResult) {
  assert(r.status === "complete", JSON.stringify(r));
  return r.header;
}

function assertInvalid(r: ProxyParseResult, what: string): void {
  assertEquals(r.status, "invalid", `${what}: ${JSON.stringify(r)}`);
}

Deno.test("proxy header v1: the specification's examples and worst cases", () => {
  const h = complete(
    parseProxyHeader(bytes("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET /")),
  );
  assertEquals(h, {
    version: 1,
    command: "PROXY",
    protocol: "TCP4",
    source: ["192.168.0.1", 56324],
    destination: ["192.168.0.11", 443],
    tlvs: [],
    length: 47,
  });
  const ffff = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
  const tcp6 = `PROXY TCP6 ${ffff} ${ffff} 65535 65535\r\n`;
  assertEquals(tcp6.length, 104);
  assertEquals(complete(parseProxyHeader(bytes(tcp6), "v1")).source, [ffff, 65535, 0, 0]);
  // 107 bytes: the longest line a receiver must take; one more is refused.
  const worst = `PROXY UNKNOWN ${ffff} ${ffff} 65535 65535\r\n`;
  assertEquals(worst.length, PROXY_V1_MAX_BYTES);
  assertEquals(complete(parseProxyHeader(bytes(worst), "v1")).source, null);
  assertInvalid(parseProxyHeader(bytes(`PROXY UNKNOWN ${ffff} ${ffff} 65535 655350\r\n`)), "108");
  assertInvalid(parseProxyHeader(bytes(`PROXY UNKNOWN ${"x".repeat(93)}`)), "107 without CRLF");
  assertEquals(complete(parseProxyHeader(bytes("PROXY UNKNOWN\r\n"))).length, 15);
  // Canonical text: IPv6 as inet_ntop writes it.
  const h6 = complete(
    parseProxyHeader(bytes("PROXY TCP6 2001:DB8:0:0:0:0:0:1 ::FFFF:10.0.0.1 0 1\r\n")),
  );
  assertEquals([h6.source, h6.destination], [["2001:db8::1", 0, 0, 0], [
    "::ffff:10.0.0.1",
    1,
    0,
    0,
  ]]);
});

Deno.test("proxy header v1: what the specification forbids is refused", () => {
  const cases = [
    "PROXY TCP4 192.168.0.01 192.168.0.11 56324 443", // heading zero in an address
    "PROXY TCP4 192.168.0.1 192.168.0.11 056324 443", // heading zero in a port
    "PROXY TCP4 192.168.0.1 192.168.0.11 65536 443",
    "PROXY TCP4 192.168.0.1 192.168.0.11 -1 443",
    "PROXY TCP4 192.168.0.256 192.168.0.11 1 443",
    "PROXY TCP4 192.168.0 192.168.0.11 1 443",
    "PROXY TCP4 192.168.0.1  192.168.0.11 1 443", // two spaces
    "PROXY TCP4 192.168.0.1 192.168.0.11 1 443 ", // a trailing space
    "PROXY TCP4 192.168.0.1 192.168.0.11 1", // a field missing
    "PROXY TCP4 ::1 ::1 1 2", // the family's format only
    "PROXY TCP6 1.2.3.4 1.2.3.4 1 2",
    "PROXY TCP6 fe80::1%eth0 ::1 1 2",
    "PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2",
    "PROXY TCP6 12345::1 ::1 1 2",
    "PROXY TCP6 1::2::3 ::1 1 2",
    "PROXY tcp4 1.2.3.4 1.2.3.4 1 2",
    "PROXY TCP5 1.2.3.4 1.2.3.4 1 2",
    "PROXY UNKNOWNX",
    "PROXY  TCP4 1.2.3.4 1.2.3.4 1 2",
    "PROXY",
    "PROXY ",
    "proxy TCP4 1.2.3.4 1.2.3.4 1 2",
  ];
  for (const c of cases) assertInvalid(parseProxyHeader(bytes(`${c}\r\n`), "v1"), c);
  // "must not tolerate a single CR or LF character to end the line"
  assertInvalid(parseProxyHeader(bytes("PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n")), "LF");
  assertInvalid(parseProxyHeader(bytes("PROXY TCP4 1.2.3.4 1.2.3.4 1 2\rX")), "CR");
  assertInvalid(parseProxyHeader(bytes("PROXY UNKNOWN a\nb\r\n")), "LF in UNKNOWN");
});

Deno.test("proxy header v2: addresses, LOCAL, UNSPEC, AF_UNIX and TLVs", () => {
  const tcp4 = complete(parseProxyHeader(v2(), "v2"));
  assertEquals([tcp4.protocol, tcp4.source, tcp4.destination, tcp4.length], [
    "TCP4",
    ["127.0.0.9", 40001],
    ["127.0.0.1", 80],
    28,
  ]);
  const udp4 = complete(parseProxyHeader(v2({ fam: 0x12 })));
  assertEquals(udp4.protocol, "UDP4");
  const a6 = new Uint8Array(16);
  a6[15] = 1;
  const tcp6 = complete(parseProxyHeader(v2({ fam: 0x21, addresses: ipv6Block(a6, a6, 1, 2) })));
  assertEquals([tcp6.source, tcp6.destination], [["::1", 1, 0, 0], ["::1", 2, 0, 0]]);
  // LOCAL: "discard the protocol block including the family", of whatever length.
  const local = complete(
    parseProxyHeader(v2({ command: 0, fam: 0x21, addresses: new Uint8Array(7) })),
  );
  assertEquals([local.command, local.source, local.length], ["LOCAL", null, 23]);
  const unspec = complete(parseProxyHeader(v2({ fam: 0x00, addresses: new Uint8Array(0) })));
  assertEquals([unspec.command, unspec.protocol, unspec.source], ["PROXY", "UNSPEC", null]);
  const path = (s: string) => Uint8Array.of(...bytes(s), ...new Uint8Array(108 - s.length));
  const unix = complete(
    parseProxyHeader(
      v2({ fam: 0x31, addresses: Uint8Array.of(...path("/a"), ...path("\0abstract")) }),
    ),
  );
  assertEquals([unix.protocol, unix.source, unix.destination], ["UNIX_STREAM", "/a", "\0abstract"]);
  const tlvs = complete(parseProxyHeader(v2({
    tlvs: [[0x01, bytes("h2")], [0x04, new Uint8Array(0)], [
      0x20,
      Uint8Array.of(1, 0, 0, 0, 0, 0x21, 0, 3, ...bytes("1.3")),
    ]],
    crc: true,
  })));
  assertEquals(tlvs.tlvs.map((t) => [t.type, t.value.length]), [[1, 2], [4, 0], [0x20, 11], [
    3,
    4,
  ]]);
  // A header up to the limit is taken; one byte more is refused as oversized, on sight of its length.
  const limit = v2({ tlvs: [[0xe0, new Uint8Array(PROXY_V2_MAX_BYTES - 16 - 12 - 3)]] });
  assertEquals(complete(parseProxyHeader(limit)).length, PROXY_V2_MAX_BYTES);
  const over = v2({ tlvs: [[0xe0, new Uint8Array(PROXY_V2_MAX_BYTES - 16 - 12 - 2)]] });
  assertInvalid(parseProxyHeader(over.subarray(0, 16)), "oversized");
});

Deno.test("proxy header v2: what the specification forbids is refused", () => {
  const cases: [string, Uint8Array][] = [
    ["version 1", v2({ version: 1 })],
    ["version 3", v2({ version: 3 })],
    ["command 2", v2({ command: 2 })],
    ["command 15", v2({ command: 15 })],
    ["family 4", v2({ fam: 0x41 })],
    ["protocol 3", v2({ fam: 0x13 })],
    ["short IPv4 block", v2({ addresses: new Uint8Array(11) })],
    ["short IPv6 block", v2({ fam: 0x21, addresses: new Uint8Array(35) })],
    ["short Unix block", v2({ fam: 0x31, addresses: new Uint8Array(215) })],
    [
      "1 stray byte",
      v2({ addresses: Uint8Array.of(...ipv4Block([1, 2, 3, 4], [1, 2, 3, 4], 1, 2), 0) }),
    ],
    ["TLV past the end", v2({ tlvs: [[1, new Uint8Array(4)]], length: 12 + 6 })],
    ["CRC32C mismatch", v2({ crc: "bad" })],
    ["CRC32C of 3 bytes", v2({ tlvs: [[3, new Uint8Array(3)]] })],
    ["unique ID of 129", v2({ tlvs: [[5, new Uint8Array(129)]] })],
    ["SSL TLV of 4", v2({ tlvs: [[0x20, new Uint8Array(4)]] })],
    [
      "SSL sub-TLV past its end",
      v2({ tlvs: [[0x20, Uint8Array.of(1, 0, 0, 0, 0, 0x21, 0, 9, 1)]] }),
    ],
  ];
  for (const [what, b] of cases) assertInvalid(parseProxyHeader(b, "v2"), what);
  assertEquals(
    complete(parseProxyHeader(v2({ tlvs: [[5, new Uint8Array(128)]] }))).tlvs[0].value.length,
    128,
  );
  for (let i = 0; i < 12; i++) {
    const b = v2();
    b[i] ^= 0x40;
    // Refused as soon as the wrong byte is in.
    assertInvalid(parseProxyHeader(b.subarray(0, i + 1), "v2"), `signature byte ${i}`);
  }
});

Deno.test("proxy header: the listener's version decides; garbage is refused on its first byte", () => {
  assertInvalid(parseProxyHeader(v2().subarray(0, 1), "v1"), "v2 on v1");
  assertInvalid(parseProxyHeader(bytes("P"), "v2"), "v1 on v2");
  for (const version of ["any", "v1", "v2"] as const) {
    for (const first of ["G", "\x16", "\0", " ", "p"]) {
      assertInvalid(parseProxyHeader(bytes(first), version), `${JSON.stringify(first)} ${version}`);
    }
  }
  assertInvalid(parseProxyHeader(bytes("PROXX")), "PROXX");
  assertInvalid(parseProxyHeader(bytes("PROXY TCP7")), "TCP7");
  assertInvalid(parseProxyHeader(bytes("PROXY TCP4 1.2.3.x")), "a letter in a TCP4 line");
  assertEquals(parseProxyHeader(new Uint8Array(0)).status, "incomplete");
  assertThrows(() => parseProxyHeader(v2(), "v3" as ProxyProtocolVersion), TypeError, '"v3"');
});

Deno.test("proxy header: every prefix of a valid header waits for more; the whole one is complete", () => {
  const valid: [Uint8Array, ProxyProtocolVersion[]][] = [
    [v1("TCP4 192.168.0.1 192.168.0.11 56324 443"), ["v1", "any"]],
    [v1("TCP6 2001:db8::1 ::ffff:1.2.3.4 0 65535"), ["v1", "any"]],
    [v1("UNKNOWN"), ["v1", "any"]],
    [v1("UNKNOWN anything at all"), ["v1", "any"]],
    [v2({ tlvs: [[1, bytes("http/1.1")]], crc: true }), ["v2", "any"]],
    [v2({ command: 0, fam: 0 }), ["v2", "any"]],
  ];
  for (const [b, versions] of valid) {
    for (const version of versions) {
      for (let n = 0; n < b.length; n++) {
        const r = parseProxyHeader(b.subarray(0, n), version);
        assertEquals(
          r.status,
          "incomplete",
          `${n} of ${b.length} bytes (${version}): ${JSON.stringify(r)}`,
        );
      }
      const withData = Uint8Array.of(...b, ...bytes("\r\n\r\nafter"));
      assertEquals(complete(parseProxyHeader(withData, version)).length, b.length);
    }
  }
});

Deno.test("proxy header: seeded fuzz of mutated headers never throws, and the verdict never changes as bytes come", () => {
  const r = rng(20);
  const seeds = [
    v1("TCP4 192.168.0.1 192.168.0.11 56324 443"),
    v1("TCP6 2001:db8::1 ::1 1 2"),
    v1("UNKNOWN"),
    v2({
      tlvs: [[0x20, Uint8Array.of(1, 0, 0, 0, 0, 0x21, 0, 1, 0x33)], [5, bytes("id")]],
      crc: true,
    }),
    v2({ fam: 0x21, addresses: new Uint8Array(36) }),
    v2({ fam: 0x31, addresses: new Uint8Array(216) }),
  ];
  const rounds = scaled(3000);
  for (let i = 0; i < rounds; i++) {
    const b = Array.from(seeds[i % seeds.length]);
    const edits = 1 + Math.floor(r() * 3);
    for (let e = 0; e < edits; e++) {
      const at = Math.floor(r() * (b.length + 1));
      const kind = r();
      if (kind < 0.4) b[Math.min(at, b.length - 1)] = Math.floor(r() * 256);
      else if (kind < 0.6) b.splice(at, 1);
      else if (kind < 0.8) b.splice(at, 0, Math.floor(r() * 256));
      else {b.splice(
          at,
          0,
          ...[" ", "\r", "\n", ":", ".", "0"].map((c) => c.charCodeAt(0)).slice(
            0,
            1 + Math.floor(r() * 5),
          ),
        );}
    }
    const data = Uint8Array.from(b);
    for (const version of ["v1", "v2", "any"] as const) {
      // Byte by byte, as a dribbling peer delivers it: once decided, decided.
      let decided: string | null = null;
      for (let n = 1; n <= data.length; n++) {
        const res = parseProxyHeader(data.subarray(0, n), version);
        if (res.status === "complete") {
          assert(res.header.length <= n && res.header.length <= PROXY_V2_MAX_BYTES);
        }
        const verdict = res.status === "complete" ? `complete ${res.header.length}` : res.status;
        if (decided !== null) {
          assertEquals(verdict, decided, `${version} ${JSON.stringify(b)} at ${n}`);
        } else if (verdict !== "incomplete") decided = verdict;
      }
    }
  }
});

Deno.test({
  name:
    "proxy header: IPv6 text is read as python3's inet_pton reads it and written as inet_ntop writes it",
  ignore: python === null,
  fn: async () => {
    const r = rng(6);
    const pick = <T>(xs: T[]) => xs[Math.floor(r() * xs.length)];
    const group = () => Math.floor(r() * 0x10000).toString(16).slice(0, 1 + Math.floor(r() * 4));
    const candidates = new Set<string>([
      "::",
      "::1",
      "1::",
      "::ffff:1.2.3.4",
      "::1.2.3.4",
      "1:2:3:4:5:6:1.2.3.4",
      "1:2:3:4:5:6:7::",
      "::2:3:4:5:6:7:8",
      "1:2:3:4:5:6:7:8",
      ":::",
      "1::2::3",
      "1:2:3:4:5:6:7:8:9",
      "12345::",
      "::ffff:1.2.3",
      "::ffff:01.2.3.4",
      "::ffff:1.2.3.4.5",
      "1.2.3.4::",
      "fe80::1%1",
      ":1::",
      "1::2:",
      "0000:0000:0000:0000:0000:0000:0000:0001",
      "::0:0:1",
      "1:0:0:2:0:0:0:3",
      "ABCD::EF",
    ]);
    for (let i = 0; i < scaled(400); i++) {
      const n = Math.floor(r() * 10);
      const parts = Array.from({ length: n }, group);
      if (r() < 0.5 && n > 0) parts.splice(Math.floor(r() * n), 0, "");
      if (r() < 0.2) parts.push(pick(["1.2.3.4", "255.255.255.255", "1.2.3", "300.1.1.1"]));
      candidates.add(parts.join(":"));
    }
    const list = [...candidates];
    const script = [
      "import json, socket, sys",
      "out = []",
      "for s in json.load(sys.stdin):",
      "    try: out.append(socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, s)))",
      "    except OSError: out.append(None)",
      "print(json.dumps(out))",
    ].join("\n");
    const res = await run(python!, ["-c", script], { input: bytes(JSON.stringify(list)) });
    assertEquals(res.code, 0, res.stderr);
    const want: (string | null)[] = JSON.parse(new TextDecoder().decode(res.stdout));
    let valid = 0;
    for (const [i, s] of list.entries()) {
      const got = parseIPv6(s);
      assertEquals(got === null ? null : formatIPv6(got), want[i], s);
      if (got !== null) valid++;
    }
    assert(
      valid > 50 && valid < list.length - 50,
      `${valid} of ${list.length} valid: both kinds tried`,
    );
  },
});

Deno.test("proxy header: CRC-32C's check value", () => {
  assertEquals(crc32c(bytes("123456789")), 0xe3069283);
  assertEquals(crc32c(new Uint8Array(0)), 0);
});
