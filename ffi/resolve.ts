/**
 * Turning an {@linkcode Address} into a `sockaddr`: literals are encoded
 * directly, names go through libc `getaddrinfo` as Python's socket module
 * does.
 *
 * @module
 */

import { GaiError } from "./errno.ts";
import { C, platform } from "./platform.ts";
import {
  type Address,
  checkAddressShape,
  encodeSockaddrIn,
  encodeSockaddrIn6,
  encodeSockaddrUn,
  parseIPv4,
  sockaddrFamily,
} from "./structs.ts";
import { libc } from "./symbols.ts";
import { toCString } from "./bytes.ts";

const A = platform.structs.addrinfo;

/**
 * Resolves `host` for `family` with `getaddrinfo` and copies the first
 * result's `sockaddr` into `out`; returns its length. A failed lookup is a
 * {@linkcode GaiError} naming the host.
 */
export function getaddrinfoFirst(
  host: string,
  family: number,
  type: number,
  out: Uint8Array,
  flags = 0,
): number {
  const lib = libc();
  const hints = new Uint8Array(A.size);
  const hv = new DataView(hints.buffer);
  hv.setInt32(A.flags, flags, true);
  hv.setInt32(A.family, family, true);
  hv.setInt32(A.socktype, type, true);
  const result = new BigUint64Array(1);
  const rc = lib.getaddrinfo(toCString(host, "host"), null, hints, result);
  if (rc !== 0) throw new GaiError(rc, host);
  const head = Deno.UnsafePointer.create(result[0])!;
  try {
    const info = new Deno.UnsafePointerView(head);
    const addrlen = info.getUint32(A.addrlen);
    const addr = info.getPointer(A.addr)!;
    new Deno.UnsafePointerView(addr).copyInto(out.subarray(0, addrlen));
    return addrlen;
  } finally {
    lib.freeaddrinfo(head);
  }
}

function ipv6Bytes(host: string, type: number): Uint8Array {
  const tmp = new Uint8Array(platform.structs.sockaddrStorage);
  getaddrinfoFirst(host, C.AF_INET6, type, tmp);
  return tmp;
}

/**
 * Encodes `addr` as a `sockaddr` of `family` into `out` (at least
 * `sockaddr_storage` bytes); returns its length. `""` means any address,
 * `"<broadcast>"` the IPv4 broadcast address, as in Python.
 */
export function encodeAddress(
  family: number,
  type: number,
  addr: Address,
  out: Uint8Array,
): number {
  checkAddressShape(family, addr);
  if (family === C.AF_UNIX) return encodeSockaddrUn(out, addr as string);
  const [host, port, flowinfo = 0, scopeId = 0] = addr as [string, number, number?, number?];
  if (family === C.AF_INET) {
    let ip = host === "" ? new Uint8Array(4) : parseIPv4(host);
    if (host === "<broadcast>") ip = new Uint8Array([255, 255, 255, 255]);
    if (ip === null) {
      const len = getaddrinfoFirst(host, C.AF_INET, type, out);
      if (sockaddrFamily(out) !== C.AF_INET || len < platform.structs.sockaddrIn) {
        throw new GaiError(platform.gaiErrors.EAI_FAMILY, host);
      }
      ip = out.slice(4, 8);
    }
    return encodeSockaddrIn(out, ip, port);
  }
  if (family === C.AF_INET6) {
    if (host === "") return encodeSockaddrIn6(out, new Uint8Array(16), port, flowinfo, scopeId);
    const resolved = ipv6Bytes(host, type);
    const view = new DataView(resolved.buffer);
    // A scope given in the text ("fe80::1%lo") is kept unless one was passed.
    const scope = scopeId || view.getUint32(24, true);
    return encodeSockaddrIn6(out, resolved.slice(8, 24), port, flowinfo, scope);
  }
  throw new TypeError(`unsupported address family ${family}`);
}
