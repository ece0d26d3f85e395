/**
 * Python's name-service functions from the `socket` module: `getaddrinfo`,
 * `gethostname`, `getfqdn`, `gethostbyname`, `getnameinfo`, on the C
 * library's resolver, with Python's arguments, results and errors. They block
 * while the resolver works, as in Python.
 *
 * @module
 */

import { errno as E, GaiError, OSError, readErrno } from "./errno.ts";
import { C, platform } from "./platform.ts";
import { osError } from "./socket.ts";
import { type Address, decodeSockaddr } from "./structs.ts";
import { libc } from "./symbols.ts";
import { toCString } from "./bytes.ts";

const A = platform.structs.addrinfo;
const H = platform.structs.hostent;

/** One `getaddrinfo` result: `[family, type, proto, canonname, address]`, as Python's tuple. */
export type AddrInfo = [
  family: number,
  type: number,
  proto: number,
  canonname: string,
  address: Address,
];

function checkInt(value: unknown, what: string): number {
  if (!Number.isInteger(value)) throw new TypeError(`${what} must be an integer, not ${value}`);
  return value as number;
}

function gaiFailure(code: number, host: string): Error {
  // EAI_SYSTEM means "look at errno", which Python raises as a plain OSError.
  if (code === platform.gaiErrors.EAI_SYSTEM) return osError(readErrno(), "getaddrinfo");
  return new GaiError(code, host);
}

/** Reads the `addrinfo` list at `head` into Python's tuples. */
function readAddrInfoList(head: Deno.PointerValue): AddrInfo[] {
  const out: AddrInfo[] = [];
  for (let p = head; p !== null;) {
    const info = new Deno.UnsafePointerView(p);
    const len = info.getUint32(A.addrlen);
    const sa = new Uint8Array(Math.max(len, 2));
    const addr = info.getPointer(A.addr);
    if (addr !== null && len > 0) new Deno.UnsafePointerView(addr).copyInto(sa.subarray(0, len));
    const canon = info.getPointer(A.canonname);
    out.push([
      info.getInt32(A.family),
      info.getInt32(A.socktype),
      info.getInt32(A.protocol),
      canon === null ? "" : Deno.UnsafePointerView.getCString(canon),
      decodeSockaddr(sa, len),
    ]);
    p = info.getPointer(A.next);
  }
  return out;
}

/** The C arguments of one `getaddrinfo` call, and where its result goes. */
interface GaiCall {
  node: Uint8Array | null;
  service: Uint8Array | null;
  hints: Uint8Array;
  result: BigUint64Array;
}

function gaiCall(
  host: string | null,
  service: string | null,
  family: number,
  type: number,
  proto: number,
  flags: number,
): GaiCall {
  const hints = new Uint8Array(A.size);
  const hv = new DataView(hints.buffer);
  hv.setInt32(A.flags, flags, true);
  hv.setInt32(A.family, family, true);
  hv.setInt32(A.socktype, type, true);
  hv.setInt32(A.protocol, proto, true);
  return {
    node: host === null ? null : toCString(host, "host"),
    service: service === null ? null : toCString(service, "port"),
    hints,
    result: new BigUint64Array(1),
  };
}

/** Reads and frees the list a successful call left in `call.result`. */
function takeAddrInfoList(call: GaiCall): AddrInfo[] {
  const head = Deno.UnsafePointer.create(call.result[0]);
  try {
    return readAddrInfoList(head);
  } finally {
    libc().freeaddrinfo(head);
  }
}

function callGetaddrinfo(
  host: string | null,
  service: string | null,
  family: number,
  type: number,
  proto: number,
  flags: number,
): AddrInfo[] {
  const call = gaiCall(host, service, family, type, proto, flags);
  const rc = libc().getaddrinfo(call.node, call.service, call.hints, call.result);
  if (rc !== 0) throw gaiFailure(rc, host ?? "");
  return takeAddrInfoList(call);
}

/** Python's `port` argument as the service text C takes. */
function serviceOf(port: number | string | null): string | null {
  if (port === null || port === undefined) return null;
  if (typeof port === "string") return port;
  if (Number.isInteger(port)) return String(port);
  throw new TypeError(`getaddrinfo() port must be an integer, a string or null, not ${port}`);
}

function checkHost(host: string | null): void {
  if (host !== null && typeof host !== "string") {
    throw new TypeError(`getaddrinfo() host must be a string or null, not ${typeof host}`);
  }
}

/**
 * Python's `socket.getaddrinfo`: every address `host` and `port` resolve to,
 * as `[family, type, proto, canonname, address]`; `canonname` is filled in
 * for the first entry when `flags` has {@linkcode AI_CANONNAME}.
 *
 * @param host A name, an address literal, or `null` (any/loopback address, see `AI_PASSIVE`).
 * @param port A number, a service name such as `"http"`, or `null`.
 * @param family `AF_INET`, `AF_INET6` or 0 for both.
 * @param type `SOCK_STREAM`, `SOCK_DGRAM` or 0 for all.
 * @param proto A protocol number, or 0.
 * @param flags `AI_*` flags, or-ed.
 * @returns The results in the resolver's order.
 * @throws {GaiError} When the lookup fails, with Python's `errno` (e.g. `EAI_NONAME`, -2).
 * @throws {TypeError} When `host` or `port` has the wrong type.
 *
 * @example Picking the family before `createSocket`
 * ```ts
 * import { Dispatcher, getaddrinfo, SOCK_STREAM } from "@asyncore/deno";
 *
 * const [[family, , , , address]] = getaddrinfo("localhost", 8025, 0, SOCK_STREAM);
 * const client = new Dispatcher();
 * client.createSocket(family); // AF_INET or AF_INET6, as the name resolved
 * console.log(address); // ["127.0.0.1", 8025]
 * client.close();
 * ```
 */
export function getaddrinfo(
  host: string | null,
  port: number | string | null,
  family = 0,
  type = 0,
  proto = 0,
  flags = 0,
): AddrInfo[] {
  checkHost(host);
  return callGetaddrinfo(
    host,
    serviceOf(port),
    checkInt(family, "family"),
    checkInt(type, "type"),
    checkInt(proto, "proto"),
    checkInt(flags, "flags"),
  );
}

/**
 * {@linkcode getaddrinfo} without blocking the loop's thread: the C
 * library's resolver runs on a worker thread (a lookup may wait seconds for
 * DNS) and the promise settles with the same results and errors. The thread
 * hop costs 20-50 us per call more than the synchronous form (20 us for a
 * literal here), so the library uses it only on paths that return a promise
 * anyway. A resolver failure that C
 * reports through `errno` (`EAI_SYSTEM`) comes back as a `GaiError` with
 * that code: `errno` belongs to the worker thread.
 *
 * @param host A name, an address literal, or `null`.
 * @param port A number, a service name, or `null`.
 * @param family `AF_INET`, `AF_INET6` or 0 for both.
 * @param type `SOCK_STREAM`, `SOCK_DGRAM` or 0 for all.
 * @param proto A protocol number, or 0.
 * @param flags `AI_*` flags, or-ed.
 * @returns The results in the resolver's order.
 * @throws {GaiError} (as a rejection) When the lookup fails.
 * @throws {TypeError} At once, when an argument has the wrong type.
 *
 * @example
 * ```ts
 * import { getaddrinfoAsync, SOCK_STREAM } from "@asyncore/deno";
 *
 * const [[family, , , , address]] = await getaddrinfoAsync("localhost", 443, 0, SOCK_STREAM);
 * console.log(family, address); // 2 ["127.0.0.1", 443]
 * ```
 */
export function getaddrinfoAsync(
  host: string | null,
  port: number | string | null,
  family = 0,
  type = 0,
  proto = 0,
  flags = 0,
): Promise<AddrInfo[]> {
  checkHost(host);
  const call = gaiCall(
    host,
    serviceOf(port),
    checkInt(family, "family"),
    checkInt(type, "type"),
    checkInt(proto, "proto"),
    checkInt(flags, "flags"),
  );
  // `call` holds every buffer the worker thread writes or reads until the promise settles.
  return libc().getaddrinfoAsync(call.node, call.service, call.hints, call.result).then((rc) => {
    if (rc !== 0) throw new GaiError(rc, host ?? "");
    return takeAddrInfoList(call);
  });
}

/**
 * Python's `socket.gethostname`: this machine's host name.
 *
 * @returns The name `gethostname(2)` reports, e.g. `"vm"`.
 */
export function gethostname(): string {
  // Linux names are at most HOST_NAME_MAX (64) bytes; room to spare, and a NUL is kept.
  const buf = new Uint8Array(256);
  const lib = libc();
  while (lib.gethostname(buf, BigInt(buf.length - 1)) !== 0) {
    const err = readErrno();
    if (err !== E.EINTR) throw osError(err, "gethostname");
  }
  return new TextDecoder().decode(buf.subarray(0, buf.indexOf(0)));
}

/**
 * Python's `socket.gethostbyname`: the first IPv4 address of `host`, as text.
 * `""` is `"0.0.0.0"` and `"<broadcast>"` is `"255.255.255.255"`, as in Python.
 *
 * @param host A name or an IPv4 literal.
 * @returns The dotted-quad address.
 * @throws {GaiError} When `host` has no IPv4 address (`EAI_NONAME`; `EAI_ADDRFAMILY` for `"::1"`).
 */
export function gethostbyname(host: string): string {
  if (typeof host !== "string") throw new TypeError("gethostbyname() host must be a string");
  if (host === "") return "0.0.0.0";
  if (host === "<broadcast>") return "255.255.255.255";
  const [[, , , , addr]] = callGetaddrinfo(host, null, C.AF_INET, 0, 0, 0);
  return (addr as [string, number])[0];
}

/**
 * The first `sockaddr` `host` (and `port`) resolve to, copied into `out`;
 * returns its length. With `single`, more than one result is an error, as
 * in Python's `getnameinfo`.
 */
function firstSockaddr(
  host: string,
  port: string | null,
  flags: number,
  out: Uint8Array,
  single: boolean,
): number {
  const hints = new Uint8Array(A.size);
  const hv = new DataView(hints.buffer);
  hv.setInt32(A.flags, flags, true);
  hv.setInt32(A.family, C.AF_UNSPEC, true);
  hv.setInt32(A.socktype, C.SOCK_DGRAM, true);
  const result = new BigUint64Array(1);
  const lib = libc();
  const rc = lib.getaddrinfo(
    toCString(host, "host"),
    port === null ? null : toCString(port, "port"),
    hints,
    result,
  );
  if (rc !== 0) throw gaiFailure(rc, host);
  const head = Deno.UnsafePointer.create(result[0])!;
  try {
    const info = new Deno.UnsafePointerView(head);
    if (single && info.getPointer(A.next) !== null) {
      throw new OSError(E.EINVAL, { message: "sockaddr resolved to multiple addresses" });
    }
    const len = Math.min(info.getUint32(A.addrlen), out.length);
    new Deno.UnsafePointerView(info.getPointer(A.addr)!).copyInto(out.subarray(0, len));
    return len;
  } finally {
    lib.freeaddrinfo(head);
  }
}

/**
 * The name part of Python's `socket.gethostbyaddr`: the resolver's name and
 * aliases for the first address of `host`. Throws an `OSError` when it has
 * none (Python's `herror`).
 */
function hostnameAndAliases(host: string): string[] {
  const sa = new Uint8Array(platform.structs.sockaddrStorage);
  firstSockaddr(host, null, 0, sa, false);
  const family = sa[0] | (sa[1] << 8);
  const ip = family === C.AF_INET ? sa.slice(4, 8) : sa.slice(8, 24);
  const lib = libc();
  const hostent = new Uint8Array(H.size);
  const result = new BigUint64Array(1);
  const herr = new Int32Array(1);
  for (let size = 8192;; size *= 2) {
    const buf = new Uint8Array(size);
    const rc = lib.gethostbyaddr_r(ip, ip.length, family, hostent, buf, BigInt(size), result, herr);
    if (rc === E.ERANGE && size < 1 << 20) continue;
    if (rc !== 0 || result[0] === 0n) {
      throw new OSError(rc || E.ENOENT, { message: "host not found", syscall: "gethostbyaddr" });
    }
    const view = new DataView(hostent.buffer);
    const pointerAt = (v: DataView, offset: number) =>
      Deno.UnsafePointer.create(v.getBigUint64(offset, true));
    const names = [Deno.UnsafePointerView.getCString(pointerAt(view, H.name)!)];
    const aliases = pointerAt(view, H.aliases);
    if (aliases !== null) {
      const list = new Deno.UnsafePointerView(aliases);
      for (let i = 0;; i += 8) {
        const alias = list.getPointer(i);
        if (alias === null) break;
        names.push(Deno.UnsafePointerView.getCString(alias));
      }
    }
    return names;
  }
}

/**
 * Python's `socket.getfqdn`: a fully qualified name for `name` (default: this
 * host). The first of the resolver's name and aliases that contains a dot,
 * else its name; `name` itself when the resolver knows nothing of it.
 *
 * @param name A host name or address; `""`, `"0.0.0.0"` and `"::"` mean this host.
 * @returns The name found.
 */
export function getfqdn(name = ""): string {
  name = name.trim();
  if (name === "" || name === "0.0.0.0" || name === "::") name = gethostname();
  let names: string[];
  try {
    names = hostnameAndAliases(name);
  } catch {
    return name;
  }
  return names.find((n) => n.includes(".")) ?? names[0];
}

/**
 * Python's `socket.getnameinfo`: the host and service names of a numeric
 * address. The port comes back as a string, as in Python (`"http"`, or
 * `"80"` with {@linkcode NI_NUMERICSERV}).
 *
 * @param addr `[host, port]` for IPv4, `[host, port, flowinfo?, scopeId?]` for IPv6; `host` must be numeric.
 * @param flags `NI_*` flags, or-ed.
 * @returns `[host, service]`.
 * @throws {GaiError} When the host is not numeric or the lookup fails (`NI_NAMEREQD` without a name: `EAI_NONAME`).
 * @throws {OSError} When an IPv4 address is given with more than two items.
 *
 * @example
 * ```ts
 * import { getnameinfo, NI_NUMERICSERV } from "@asyncore/deno";
 *
 * getnameinfo(["127.0.0.1", 80]); // ["localhost", "http"]
 * getnameinfo(["127.0.0.1", 80], NI_NUMERICSERV); // ["localhost", "80"]
 * ```
 */
export function getnameinfo(addr: Address, flags = 0): [host: string, port: string] {
  if (!Array.isArray(addr) || addr.length < 2 || addr.length > 4) {
    throw new TypeError("getnameinfo() addr must be [host, port, flowinfo?, scopeId?]");
  }
  const [host, port, flowinfo = 0, scopeId = 0] = addr as [string, number, number?, number?];
  checkInt(port, "port");
  checkInt(flags, "flags");
  if (!Number.isInteger(flowinfo) || flowinfo < 0 || flowinfo > 0xfffff) {
    throw new RangeError("getnameinfo(): flowinfo must be 0-1048575.");
  }
  if (!Number.isInteger(scopeId) || scopeId < 0 || scopeId > 0xffffffff) {
    throw new RangeError("getnameinfo(): scopeId must be 0-4294967295.");
  }
  const sa = new Uint8Array(platform.structs.sockaddrStorage);
  // As Python: the port goes through the resolver as text, so it is read as C reads it.
  const len = firstSockaddr(host, String(port), C.AI_NUMERICHOST, sa, true);
  const family = sa[0] | (sa[1] << 8);
  if (family === C.AF_INET && addr.length !== 2) {
    throw new OSError(E.EINVAL, { message: "IPv4 sockaddr must be 2 tuple" });
  }
  if (family === C.AF_INET6) {
    const view = new DataView(sa.buffer);
    view.setUint32(4, flowinfo, false);
    view.setUint32(24, scopeId, true);
  }
  const hostBuf = new Uint8Array(C.NI_MAXHOST);
  const servBuf = new Uint8Array(C.NI_MAXSERV);
  const rc = libc().getnameinfo(sa, len, hostBuf, hostBuf.length, servBuf, servBuf.length, flags);
  if (rc !== 0) throw gaiFailure(rc, host);
  const text = (b: Uint8Array) => new TextDecoder().decode(b.subarray(0, b.indexOf(0)));
  return [text(hostBuf), text(servBuf)];
}
