/**
 * Python's address converters `inet_aton`, `inet_ntoa`, `inet_pton` and
 * `inet_ntop`, on the C library's own functions (so every form libc accepts,
 * such as `inet_aton("127.1")`, is accepted here), with Python's errors.
 *
 * @module
 */

import { attempt } from "./_syscall.ts";
import { asBytes, readCString, toCString } from "./bytes.ts";
import { errno as E, OSError } from "./errno.ts";
import { C } from "./platform.ts";
import { formatIPv4 } from "./structs.ts";
import { libc } from "./symbols.ts";

/** `INET6_ADDRSTRLEN`: the longest text `inet_ntop` writes, with its NUL. */
const INET6_ADDRSTRLEN = 46;

/** An `OSError` whose message is Python's text alone (Python gives these no errno). */
function illegal(text: string, syscall: string): OSError {
  const error = new OSError(E.EINVAL, { message: text, syscall });
  error.message = text;
  return error;
}

function packedBytes(packed: unknown, what: string): Uint8Array {
  if (typeof packed === "string") {
    throw new TypeError(`${what}() argument must be bytes or a typed array, not a string`);
  }
  return asBytes(packed, `${what}() argument`, true);
}

/**
 * Python's `socket.inet_aton`: an IPv4 address in any form the C library's
 * `inet_aton` takes (`"127.0.0.1"`, `"127.1"`, `"0x7f.1"`, `"2130706433"`)
 * as 4 bytes in network order.
 *
 * @throws {OSError} `"illegal IP address string passed to inet_aton"` for anything else.
 * @example Joining a multicast group (an `ip_mreq` is the group, then the interface)
 * ```ts
 * import { AF_INET, inetAton, IP_ADD_MEMBERSHIP, IPPROTO_IP, SOCK_DGRAM, Socket } from "@asyncore/deno";
 *
 * using sock = new Socket(AF_INET, SOCK_DGRAM);
 * sock.bind(["0.0.0.0", 0]);
 * const mreq = new Uint8Array([...inetAton("239.1.2.3"), ...inetAton("127.0.0.1")]);
 * sock.setsockopt(IPPROTO_IP, IP_ADD_MEMBERSHIP, mreq);
 * ```
 */
export function inetAton(ip: string): Uint8Array {
  const text = toCString(ip, "inet_aton() argument");
  const out = new Uint8Array(4);
  if (libc().inet_aton(text, out) === 0) {
    throw illegal("illegal IP address string passed to inet_aton", "inet_aton");
  }
  return out;
}

/**
 * Python's `socket.inet_ntoa`: 4 bytes in network order as a dotted quad.
 *
 * @throws {OSError} `"packed IP wrong length for inet_ntoa"` unless `packed` has 4 bytes.
 * @example
 * ```ts
 * import { inetNtoa } from "@asyncore/deno";
 *
 * inetNtoa(new Uint8Array([127, 0, 0, 1])); // "127.0.0.1"
 * ```
 */
export function inetNtoa(packed: Uint8Array): string {
  const bytes = packedBytes(packed, "inet_ntoa");
  if (bytes.length !== 4) throw illegal("packed IP wrong length for inet_ntoa", "inet_ntoa");
  return formatIPv4(bytes);
}

/**
 * Python's `socket.inet_pton`: the text of an `AF_INET` (dotted quad only)
 * or `AF_INET6` address as 4 or 16 bytes in network order.
 *
 * @throws {OSError} `"illegal IP address string passed to inet_pton"` for bad text;
 *   `EAFNOSUPPORT` for another family.
 * @example
 * ```ts
 * import { AF_INET6, inetPton } from "@asyncore/deno";
 *
 * inetPton(AF_INET6, "::1"); // 15 zero bytes, then 1
 * ```
 */
export function inetPton(family: number, ip: string): Uint8Array {
  if (!Number.isInteger(family)) throw new TypeError(`family must be an integer, not ${family}`);
  const text = toCString(ip, "inet_pton() argument");
  const out = new Uint8Array(16);
  const lib = libc();
  const r = attempt(() => lib.inet_pton(family, text, out));
  if (r < 0) throw new OSError(-r, { syscall: "inet_pton" });
  if (r === 0) throw illegal("illegal IP address string passed to inet_pton", "inet_pton");
  return out.slice(0, family === C.AF_INET ? 4 : 16);
}

/**
 * Python's `socket.inet_ntop`: 4 (`AF_INET`) or 16 (`AF_INET6`) bytes in
 * network order as text, as the C library writes it (`"::ffff:1.2.3.4"`).
 *
 * @throws {RangeError} For a length that does not fit the family, or an unknown family
 *   (Python's `ValueError`).
 * @example
 * ```ts
 * import { AF_INET6, inetNtop, inetPton } from "@asyncore/deno";
 *
 * inetNtop(AF_INET6, inetPton(AF_INET6, "2001:db8:0:0:0:0:0:1")); // "2001:db8::1"
 * ```
 */
export function inetNtop(family: number, packed: Uint8Array): string {
  const bytes = packedBytes(packed, "inet_ntop");
  const want = family === C.AF_INET ? 4 : family === C.AF_INET6 ? 16 : 0;
  if (want === 0) throw new RangeError(`unknown address family ${family}`);
  if (bytes.length !== want) throw new RangeError("invalid length of packed IP address string");
  const out = new Uint8Array(INET6_ADDRSTRLEN);
  const text = libc().inet_ntop(family, bytes, out, out.length);
  // Cannot fail: the family is known and the buffer holds the longest text.
  return readCString(text) ?? "";
}
