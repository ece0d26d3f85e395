/**
 * The PROXY protocol header (HAProxy's `proxy-protocol.txt`, versions 1 and
 * 2) as pure functions over bytes: {@linkcode parseProxyHeader} says whether
 * the bytes at the start of a connection hold a complete header, a valid
 * beginning of one, or something to reject. No I/O here: the listener side
 * (`proxy_accept.ts`) peeks at the socket and consumes exactly the header's
 * length, so the bytes after it stay in the kernel for the channel's first
 * `recv`.
 *
 * @module
 */

import { type Address, formatIPv4, formatIPv6, parseIPv4 } from "../ffi/structs.ts";

/** Which header a listener takes: v1 (text), v2 (binary), or either (the first byte decides). */
export type ProxyProtocolVersion = "v1" | "v2" | "any";

/** The longest v1 line, CRLF included (the specification's worst case). */
export const PROXY_V1_MAX_BYTES = 107;

/**
 * The longest v2 header this library takes: the 16-byte fixed part plus
 * addresses and TLVs. The format allows 16 + 65535; HAProxy's own headers,
 * TLVs included, take a few hundred bytes, and the specification sizes the
 * header to fit one 536-byte segment. A longer one is refused as oversized,
 * which bounds what a connection can make the listener hold.
 */
export const PROXY_V2_MAX_BYTES = 4096;

/** One v2 Type-Length-Value record (`PP2_TYPE_*`), its value copied out of the input. */
export interface ProxyTlv {
  /** The type byte: 0x01 ALPN, 0x02 AUTHORITY, 0x03 CRC32C, 0x04 NOOP, 0x05 UNIQUE_ID, 0x20 SSL, 0x30 NETNS, ... */
  type: number;
  /** The value bytes. */
  value: Uint8Array;
}

/** A complete, valid PROXY protocol header. */
export interface ProxyHeader {
  /** 1 (text) or 2 (binary). */
  version: 1 | 2;
  /**
   * `"PROXY"`: relayed on behalf of a client; `"LOCAL"` (v2 only): the
   * proxy's own connection, such as a health check.
   */
  command: "PROXY" | "LOCAL";
  /**
   * v1: `"TCP4"`, `"TCP6"` or `"UNKNOWN"`; v2: `"TCP4"`, `"UDP4"`, `"TCP6"`,
   * `"UDP6"`, `"UNIX_STREAM"`, `"UNIX_DGRAM"` or `"UNSPEC"`.
   */
  protocol: string;
  /**
   * The client's address (`[ip, port]`, `[ip6, port, 0, 0]` as `accept`
   * gives them, or a Unix path), or null when the header gives none to use
   * (v2 `LOCAL`, an unspecified family or protocol, v1 `UNKNOWN`): the
   * connection's own peer address stands.
   */
  source: Address | null;
  /** The address the client connected to, null when `source` is. */
  destination: Address | null;
  /** The v2 TLVs in the order sent (none for v1, `LOCAL` or unspecified addresses). */
  tlvs: ProxyTlv[];
  /** The header's size in bytes: what to consume before the connection's own data. */
  length: number;
}

/** What {@linkcode parseProxyHeader} found. */
export type ProxyParseResult =
  | { status: "complete"; header: ProxyHeader }
  /** The bytes so far are a valid beginning: wait for more. */
  | { status: "incomplete" }
  /** Not a header this listener takes: drop the connection. */
  | { status: "invalid"; reason: string };

const encoder = new TextEncoder();
/** The 12-byte v2 signature (its NUL keeps it from being read as a C string). */
const V2_SIGNATURE = encoder.encode("\r\n\r\n\0\r\nQUIT\n");
const V1_PREFIX = encoder.encode("PROXY ");
const CR = 0x0d;
const LF = 0x0a;
const PP2_TYPE_CRC32C = 0x03;
const PP2_TYPE_UNIQUE_ID = 0x05;
const PP2_TYPE_SSL = 0x20;
/** The most bytes of `PP2_TYPE_UNIQUE_ID` the specification allows. */
const UNIQUE_ID_MAX = 128;

const INCOMPLETE: ProxyParseResult = { status: "incomplete" };

function invalid(reason: string): ProxyParseResult {
  return { status: "invalid", reason };
}

/** Checks a `ProxyProtocolVersion` argument; returns it. */
export function checkProxyProtocol(value: unknown): ProxyProtocolVersion | null {
  if (value === null || value === "v1" || value === "v2" || value === "any") return value;
  throw new TypeError(
    `proxyProtocol must be "v1", "v2", "any" or null, not ${
      typeof value === "string" ? JSON.stringify(value) : String(value)
    }`,
  );
}

/** The most bytes a header of `version` may take before it is refused as oversized. */
export function proxyHeaderLimit(version: ProxyProtocolVersion): number {
  return version === "v1" ? PROXY_V1_MAX_BYTES : PROXY_V2_MAX_BYTES;
}

/**
 * Reads a PROXY protocol header at the start of `data`, the first bytes a
 * connection received. `version` says which headers are taken; with
 * `"any"` the first byte decides (`P` starts v1, `\r` starts v2's
 * signature). Everything is checked as the specification says: the exact
 * v1 syntax (single spaces, no leading zeros, ports 0-65535, addresses of
 * the announced family, a CRLF within 107 bytes), the v2 signature,
 * version, command, family, protocol, address lengths, and every TLV's
 * bounds (a `PP2_TYPE_CRC32C` checksum is verified). Bytes that cannot
 * begin a valid header are refused as soon as they are seen, without
 * waiting for the rest; a header longer than {@linkcode PROXY_V1_MAX_BYTES}
 * or {@linkcode PROXY_V2_MAX_BYTES} is refused as oversized.
 *
 * @example
 * ```ts
 * import { parseProxyHeader } from "@asyncore/deno";
 *
 * const bytes = new TextEncoder().encode("PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\nGET /");
 * const r = parseProxyHeader(bytes, "v1");
 * if (r.status === "complete") {
 *   console.log(r.header.source, r.header.length); // ["192.0.2.7", 56324] 45
 * }
 * ```
 */
export function parseProxyHeader(
  data: Uint8Array,
  version: ProxyProtocolVersion = "any",
): ProxyParseResult {
  checkProxyProtocol(version);
  if (data.length === 0) return INCOMPLETE;
  if (version === "v1") return parseV1(data);
  if (version === "v2") return parseV2(data);
  if (data[0] === V1_PREFIX[0]) return parseV1(data);
  if (data[0] === V2_SIGNATURE[0]) return parseV2(data);
  return invalid(`not a PROXY protocol header (first byte 0x${hex2(data[0])})`);
}

function hex2(b: number): string {
  return b.toString(16).padStart(2, "0");
}

/** Whether `data` starts with (as much of) `prefix` (as it holds). */
function matchesPrefix(data: Uint8Array, prefix: Uint8Array): boolean {
  const n = Math.min(data.length, prefix.length);
  for (let i = 0; i < n; i++) if (data[i] !== prefix[i]) return false;
  return true;
}

// ---- version 1: one line of US-ASCII text ----

/** The protocol tokens, each with what must follow it. */
const V1_PROTOCOLS = ["TCP4 ", "TCP6 ", "UNKNOWN\r\n", "UNKNOWN "];

function parseV1(data: Uint8Array): ProxyParseResult {
  if (!matchesPrefix(data, V1_PREFIX)) return invalid("not a PROXY protocol v1 header");
  // The line so far, up to its CRLF or the limit (latin1: one char per byte).
  const limit = Math.min(data.length, PROXY_V1_MAX_BYTES);
  let end = -1;
  for (let i = 0; i < limit; i++) {
    const b = data[i];
    if (b === CR) {
      if (i + 1 >= PROXY_V1_MAX_BYTES) break; // its LF would be byte 108: oversized below
      if (i + 1 >= data.length) break; // the LF may come next
      if (data[i + 1] !== LF) return invalid("v1 header: a CR not followed by LF");
      end = i;
      break;
    }
    if (b === LF) return invalid("v1 header: a LF without CR");
  }
  // A CR last in the bytes so far waits for its LF: the checks below see the line without it.
  const seen = end < 0 && data[limit - 1] === CR ? limit - 1 : limit;
  // At most 107 bytes: one char per byte, cheaper than a TextDecoder call.
  const text = String.fromCharCode.apply(
    null,
    data.subarray(0, end < 0 ? seen : end + 2) as unknown as number[],
  );
  const rest = text.slice(V1_PREFIX.length);
  // The protocol token is checked as soon as its bytes are in.
  if (!V1_PROTOCOLS.some((p) => p.startsWith(rest.slice(0, p.length)))) {
    return invalid(`v1 header: unknown protocol in ${JSON.stringify(text.slice(0, 20))}`);
  }
  if (rest.startsWith("TCP4 ") || rest.startsWith("TCP6 ")) {
    // Only the characters addresses and ports use, as soon as they are seen.
    const body = end < 0 ? rest.slice(5) : rest.slice(5, end - V1_PREFIX.length);
    const allowed = rest[3] === "4" ? /^[0-9. ]*$/ : /^[0-9A-Fa-f:. ]*$/;
    if (!allowed.test(body)) {
      return invalid(`v1 header: a character no ${rest.slice(0, 4)} line holds`);
    }
  }
  if (end < 0) {
    if (limit >= PROXY_V1_MAX_BYTES) {
      return invalid(`v1 header: no CRLF in the first ${PROXY_V1_MAX_BYTES} bytes (oversized)`);
    }
    return INCOMPLETE;
  }
  const line = text.slice(0, end);
  const length = end + 2;
  if (rest.startsWith("UNKNOWN")) {
    // "the receiver must ignore anything presented before the CRLF is found"
    return complete(1, "PROXY", "UNKNOWN", null, null, [], length);
  }
  const fields = line.split(" ");
  if (fields.length !== 6) {
    return invalid(`v1 header: ${fields.length} fields, not 6 (single spaces only)`);
  }
  const [, proto, src, dst, sport, dport] = fields;
  const family = proto === "TCP4" ? "IPv4" : "IPv6";
  const srcIp = proto === "TCP4" ? parseIPv4(src) : parseIPv6(src);
  const dstIp = proto === "TCP4" ? parseIPv4(dst) : parseIPv6(dst);
  if (srcIp === null) return invalid(`v1 header: bad ${family} source address ${q(src)}`);
  if (dstIp === null) return invalid(`v1 header: bad ${family} destination address ${q(dst)}`);
  const sp = parsePort(sport), dp = parsePort(dport);
  if (sp === null) return invalid(`v1 header: bad source port ${q(sport)}`);
  if (dp === null) return invalid(`v1 header: bad destination port ${q(dport)}`);
  const source: Address = proto === "TCP4"
    ? [formatIPv4(srcIp), sp]
    : [formatIPv6(srcIp), sp, 0, 0];
  const destination: Address = proto === "TCP4"
    ? [formatIPv4(dstIp), dp]
    : [formatIPv6(dstIp), dp, 0, 0];
  return complete(1, "PROXY", proto, source, destination, [], length);
}

function q(s: string): string {
  return JSON.stringify(s.length > 45 ? `${s.slice(0, 45)}...` : s);
}

/** A decimal port 0-65535 without leading zeros (the specification forbids them), or null. */
function parsePort(text: string): number | null {
  if (!/^(0|[1-9][0-9]{0,4})$/.test(text)) return null;
  const n = Number(text);
  return n <= 65535 ? n : null;
}

/**
 * Parses IPv6 text as `inet_pton` does (groups of 1-4 hex digits, one `::`
 * at most, an optional dotted IPv4 tail; no zone): 16 bytes, or null.
 * HAProxy reads these lines with `inet_pton` and writes them with
 * `inet_ntop`, which gives `::ffff:192.0.2.1` for a mapped address.
 */
export function parseIPv6(text: string): Uint8Array | null {
  if (text.length < 2 || text.length > 45) return null;
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const groups = (s: string): string[] => s === "" ? [] : s.split(":");
  const head = groups(halves[0]);
  const tail = halves.length === 2 ? groups(halves[1]) : [];
  const all = [...head, ...tail];
  let ipv4: Uint8Array | null = null;
  for (let i = 0; i < all.length; i++) {
    const g = all[i];
    // A dotted IPv4 part may only end the address (after "::" if there is one).
    if (i === all.length - 1 && g.includes(".") && (halves.length === 1 || tail.length > 0)) {
      ipv4 = parseIPv4(g);
      if (ipv4 === null) return null;
      continue;
    }
    if (!/^[0-9A-Fa-f]{1,4}$/.test(g)) return null;
  }
  const words: number[] = [];
  const wordsNeeded = ipv4 === null ? 8 : 6;
  const given = all.length - (ipv4 === null ? 0 : 1);
  if (halves.length === 1 ? given !== wordsNeeded : given >= wordsNeeded) return null;
  const hexOf = (list: string[]) =>
    list.filter((g) => !g.includes(".")).map((g) => parseInt(g, 16));
  const headWords = hexOf(head);
  const tailWords = hexOf(tail);
  words.push(...headWords);
  for (let i = headWords.length + tailWords.length; i < wordsNeeded; i++) words.push(0);
  words.push(...tailWords);
  const out = new Uint8Array(16);
  for (let i = 0; i < wordsNeeded; i++) {
    out[2 * i] = words[i] >> 8;
    out[2 * i + 1] = words[i] & 0xff;
  }
  if (ipv4 !== null) out.set(ipv4, 12);
  return out;
}

// ---- version 2: a 16-byte binary header, addresses, TLVs ----

const V2_FAMILIES: Record<number, string> = { 0: "UNSPEC", 1: "INET", 2: "INET6", 3: "UNIX" };
const V2_PROTOCOL_NAMES: Record<number, string> = {
  0x11: "TCP4",
  0x12: "UDP4",
  0x21: "TCP6",
  0x22: "UDP6",
  0x31: "UNIX_STREAM",
  0x32: "UNIX_DGRAM",
};
/** The address block of each family: 2 addresses (and 2 ports for IP). */
const V2_ADDRESS_BYTES: Record<number, number> = { 1: 12, 2: 36, 3: 216 };

function parseV2(data: Uint8Array): ProxyParseResult {
  if (!matchesPrefix(data, V2_SIGNATURE)) return invalid("not a PROXY protocol v2 signature");
  if (data.length < 13) return INCOMPLETE;
  const verCmd = data[12];
  if (verCmd >> 4 !== 2) return invalid(`v2 header: version ${verCmd >> 4}, not 2`);
  const command = verCmd & 0x0f;
  if (command > 1) return invalid(`v2 header: unknown command 0x${command.toString(16)}`);
  if (data.length < 14) return INCOMPLETE;
  const fam = data[13];
  if (!((fam >> 4) in V2_FAMILIES)) return invalid(`v2 header: unknown family ${fam >> 4}`);
  if ((fam & 0x0f) > 2) return invalid(`v2 header: unknown transport protocol ${fam & 0x0f}`);
  if (data.length < 16) return INCOMPLETE;
  const declared = (data[14] << 8) | data[15];
  const length = 16 + declared;
  if (length > PROXY_V2_MAX_BYTES) {
    return invalid(`v2 header: ${length} bytes, over the ${PROXY_V2_MAX_BYTES}-byte limit`);
  }
  if (data.length < length) return INCOMPLETE;
  // LOCAL: "discard the protocol block including the family"; an
  // unspecified family or protocol: "the receiver should ignore address
  // information" (its size is unknown, so no TLV can be found after it).
  const name = V2_PROTOCOL_NAMES[fam];
  if (command === 0) return complete(2, "LOCAL", name ?? "UNSPEC", null, null, [], length);
  if (name === undefined) return complete(2, "PROXY", "UNSPEC", null, null, [], length);
  const block = V2_ADDRESS_BYTES[fam >> 4];
  if (declared < block) {
    return invalid(`v2 header: ${declared} address bytes, ${name} needs ${block}`);
  }
  const a = data.subarray(16, 16 + block);
  let source: Address, destination: Address;
  if (fam >> 4 === 1) {
    source = [formatIPv4(a.subarray(0, 4)), (a[8] << 8) | a[9]];
    destination = [formatIPv4(a.subarray(4, 8)), (a[10] << 8) | a[11]];
  } else if (fam >> 4 === 2) {
    source = [formatIPv6(a.subarray(0, 16)), (a[32] << 8) | a[33], 0, 0];
    destination = [formatIPv6(a.subarray(16, 32)), (a[34] << 8) | a[35], 0, 0];
  } else {
    source = unixPath(a.subarray(0, 108));
    destination = unixPath(a.subarray(108, 216));
  }
  const tlvs = parseTlvs(data.subarray(16 + block, length));
  if (typeof tlvs === "string") return invalid(`v2 header: ${tlvs}`);
  for (const t of tlvs) {
    if (t.type === PP2_TYPE_CRC32C) {
      const problem = checkCrc32c(data.subarray(0, length), t, 16 + block, tlvs);
      if (problem !== null) return invalid(`v2 header: ${problem}`);
    } else if (t.type === PP2_TYPE_UNIQUE_ID && t.value.length > UNIQUE_ID_MAX) {
      return invalid(`v2 header: a ${t.value.length}-byte unique ID (${UNIQUE_ID_MAX} at most)`);
    } else if (t.type === PP2_TYPE_SSL) {
      // struct pp2_tlv_ssl { u8 client; u32 verify; struct pp2_tlv sub_tlv[]; }
      if (t.value.length < 5) return invalid("v2 header: an SSL TLV shorter than 5 bytes");
      const sub = parseTlvs(t.value.subarray(5));
      if (typeof sub === "string") return invalid(`v2 header: SSL sub-TLVs: ${sub}`);
    }
  }
  return complete(2, "PROXY", name, source, destination, tlvs, length);
}

/** A `sun_path` of 108 bytes: up to its NUL, or (an abstract name) all of it, trailing NULs cut. */
function unixPath(b: Uint8Array): string {
  let end = b.length;
  if (b[0] !== 0) {
    const nul = b.indexOf(0);
    if (nul >= 0) end = nul;
  } else {
    while (end > 1 && b[end - 1] === 0) end--;
    if (end === 1) end = 0; // all NULs: an unnamed socket
  }
  return new TextDecoder().decode(b.subarray(0, end));
}

/** The TLVs filling `b` exactly, values copied; a string says what is wrong. */
function parseTlvs(b: Uint8Array): ProxyTlv[] | string {
  const out: ProxyTlv[] = [];
  let i = 0;
  while (i < b.length) {
    if (i + 3 > b.length) return `${b.length - i} stray bytes where a TLV starts`;
    const len = (b[i + 1] << 8) | b[i + 2];
    if (i + 3 + len > b.length) {
      return `TLV 0x${hex2(b[i])} of ${len} bytes runs past the header`;
    }
    out.push({ type: b[i], value: b.slice(i + 3, i + 3 + len) });
    i += 3 + len;
  }
  return out;
}

/** Verifies a `PP2_TYPE_CRC32C` TLV over the whole header; null when it matches. */
function checkCrc32c(
  header: Uint8Array,
  tlv: ProxyTlv,
  tlvStart: number,
  tlvs: ProxyTlv[],
): string | null {
  if (tlv.value.length !== 4) return `a CRC32C TLV of ${tlv.value.length} bytes, not 4`;
  // Where this TLV's value sits in the header: after the TLVs before it.
  let at = tlvStart;
  for (const t of tlvs) {
    if (t === tlv) break;
    at += 3 + t.value.length;
  }
  at += 3;
  const copy = header.slice();
  copy.fill(0, at, at + 4); // computed with the field zeroed
  const want =
    ((tlv.value[0] << 24) | (tlv.value[1] << 16) | (tlv.value[2] << 8) | tlv.value[3]) >>>
    0;
  return crc32c(copy) === want ? null : "CRC32C checksum mismatch";
}

let crcTable: Uint32Array | null = null;

/** CRC-32C (Castagnoli, RFC 4960 appendix B), as the checksum TLV uses. */
export function crc32c(bytes: Uint8Array): number {
  const table = crcTable ??= (() => {
    const t = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
      t[n] = c >>> 0;
    }
    return t;
  })();
  let crc = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) crc = table[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

function complete(
  version: 1 | 2,
  command: "PROXY" | "LOCAL",
  protocol: string,
  source: Address | null,
  destination: Address | null,
  tlvs: ProxyTlv[],
  length: number,
): ProxyParseResult {
  return {
    status: "complete",
    header: { version, command, protocol, source, destination, tlvs, length },
  };
}
