/**
 * The functions of Python's `socket` module that make sockets:
 * `socketpair`, `create_connection`, `create_server` and
 * `has_dualstack_ipv6`, step for step as CPython 3.11 writes them. Both block (name lookup, connect) as in Python: in a
 * dispatcher program that is what Python's does too; a promise-returning
 * path resolves with `getaddrinfoAsync` instead.
 *
 * @module
 */

import { attempt, check } from "./_syscall.ts";
import { OSError, strerror } from "./errno.ts";
import { getaddrinfo } from "./netdb.ts";
import { C } from "./platform.ts";
import { Socket } from "./socket.ts";
import { holdSpareFd } from "./spare_fd.ts";
import { libc } from "./symbols.ts";
import type { Address } from "./structs.ts";

/** Options of {@linkcode createServer} (Python's keyword arguments). */
export interface CreateServerOptions {
  /** `AF_INET` (default) or `AF_INET6` (or `AF_UNIX` with a path). */
  family?: number;
  /** The listen backlog; default that of `Socket.listen()`. */
  backlog?: number;
  /** Set `SO_REUSEPORT`, so several sockets (processes) share the port. */
  reusePort?: boolean;
  /** An `AF_INET6` socket that also accepts IPv4 clients (`IPV6_V6ONLY` off). */
  dualstackIpv6?: boolean;
}

/**
 * Python's `socket.socketpair`: two connected sockets, as `socketpair(2)`
 * makes them (close-on-exec; `type` may carry `SOCK_NONBLOCK`). Linux makes
 * pairs of `AF_UNIX` sockets only (`SOCK_STREAM`, `SOCK_DGRAM`,
 * `SOCK_SEQPACKET`); other families fail with `EOPNOTSUPP`, as in Python.
 *
 * @param family `AF_UNIX` (default).
 * @param type `SOCK_STREAM` (default) or `SOCK_DGRAM`, optionally or-ed with `SOCK_NONBLOCK`.
 * @param proto 0.
 * @returns The two ends.
 * @throws {OSError} From `socketpair(2)` (`EOPNOTSUPP`, `EMFILE`, ...).
 * @example
 * ```ts
 * import { socketpair } from "@asyncore/deno";
 *
 * const [a, b] = socketpair();
 * a.sendall("ping");
 * b.recv(4); // "ping" as bytes
 * a.close();
 * b.close();
 * ```
 */
export function socketpair(
  family: number = C.AF_UNIX,
  type: number = C.SOCK_STREAM,
  proto = 0,
): [Socket, Socket] {
  for (const [name, v] of [["family", family], ["type", type], ["proto", proto]] as const) {
    if (!Number.isInteger(v)) throw new TypeError(`${name} must be an integer, not ${v}`);
  }
  holdSpareFd();
  const fds = new Int32Array(2);
  const lib = libc();
  const flags = type | C.SOCK_CLOEXEC;
  check(attempt(() => lib.socketpair(family, flags, proto, fds)), "socketpair");
  return [new Socket(family, type, proto, fds[0]), new Socket(family, type, proto, fds[1])];
}

/** Python's `repr` of an address, for messages: `('127.0.0.1', 80)`. */
function pyRepr(addr: unknown): string {
  if (typeof addr === "string") return `'${addr}'`;
  if (Array.isArray(addr)) {
    return `(${addr.map((v) => typeof v === "string" ? `'${v}'` : String(v)).join(", ")})`;
  }
  return String(addr);
}

/**
 * Python's `socket.create_connection`: connects a TCP socket to `host` and
 * `port`, trying each address `getaddrinfo(host, port, 0, SOCK_STREAM)`
 * gives in turn (IPv6 and IPv4) until one connects. The name lookup and the
 * connect block, as in Python.
 *
 * @param address `[host, port]`.
 * @param timeout Seconds for the socket (`settimeout`, which then bounds the
 *   connect too); `null` for blocking; left out, the socket stays blocking
 *   (Python's global default).
 * @param sourceAddress An address to bind to before connecting.
 * @returns The connected socket.
 * @throws {OSError} The last address's error when none connects (`ECONNREFUSED`,
 *   `TimeoutError`, ...); {@linkcode GaiError} when the name does not resolve.
 * @example
 * ```ts
 * import { createConnection, createServer, inetAddress } from "@asyncore/deno";
 *
 * using server = createServer(["127.0.0.1", 0]); // a peer to connect to
 * const [, port] = inetAddress(server.getsockname());
 * using sock = createConnection(["localhost", port], 5);
 * sock.sendall("hello\n");
 * ```
 */
export function createConnection(
  address: [host: string, port: number],
  timeout?: number | null,
  sourceAddress?: Address,
): Socket {
  if (!Array.isArray(address) || address.length !== 2) {
    throw new TypeError("createConnection() address must be [host, port]");
  }
  const [host, port] = address;
  let last: unknown = null;
  for (const [family, type, proto, , sa] of getaddrinfo(host, port, 0, C.SOCK_STREAM)) {
    let sock: Socket | null = null;
    try {
      sock = new Socket(family, type, proto);
      if (timeout !== undefined) sock.settimeout(timeout);
      if (sourceAddress !== undefined && sourceAddress !== null) sock.bind(sourceAddress);
      sock.connect(sa);
      return sock;
    } catch (error) {
      sock?.close();
      if (!(error instanceof OSError)) throw error;
      last = error; // Python raises only the last error
    }
  }
  if (last !== null) throw last;
  throw new OSError(0, { message: "getaddrinfo returns an empty list" });
}

/**
 * Python's `socket.has_dualstack_ipv6`: whether an `AF_INET6` stream socket
 * can take IPv4 connections too (`IPV6_V6ONLY` can be turned off).
 *
 * @example
 * ```ts
 * import { AF_INET, AF_INET6, createServer, hasDualstackIpv6 } from "@asyncore/deno";
 *
 * const port = 0; // 0: the kernel picks a free port
 * using listener = hasDualstackIpv6()
 *   ? createServer(["", port], { family: AF_INET6, dualstackIpv6: true })
 *   : createServer(["", port], { family: AF_INET });
 * ```
 */
export function hasDualstackIpv6(): boolean {
  let sock: Socket | null = null;
  try {
    sock = new Socket(C.AF_INET6, C.SOCK_STREAM);
    sock.setsockopt(C.IPPROTO_IPV6, C.IPV6_V6ONLY, 0);
    return true;
  } catch (error) {
    if (error instanceof OSError) return false;
    throw error;
  } finally {
    sock?.close();
  }
}

/**
 * Python's `socket.create_server`: a TCP socket bound to `address` and
 * listening. `SO_REUSEADDR` is set (a restarted server can bind at once);
 * `reusePort` sets `SO_REUSEPORT`; an `AF_INET6` socket is IPv6-only unless
 * `dualstackIpv6`, which makes it take IPv4 clients too (as
 * `::ffff:a.b.c.d`).
 *
 * @param address What to bind: `[host, port]` (`["", 0]`: any address, a free port).
 * @param options Python's keyword arguments.
 * @returns The listening socket (blocking, as Python's).
 * @throws {RangeError} `dualstackIpv6` without `AF_INET6`, or where the platform
 *   cannot (Python's `ValueError`).
 * @throws {OSError} When binding fails, with Python's message
 *   (`"Address already in use (while attempting to bind on address ('', 8080))"`).
 * @example A dual-stack server on port 8080
 * ```ts
 * import { AF_INET6, createServer, hasDualstackIpv6 } from "@asyncore/deno";
 *
 * if (hasDualstackIpv6()) {
 *   using listener = createServer(["", 0], { family: AF_INET6, dualstackIpv6: true }); // 0: any port
 *   console.log(listener.getsockname()); // ["::", 39541, 0, 0]: IPv4 clients come as ::ffff:a.b.c.d
 * }
 * ```
 */
export function createServer(address: Address, options: CreateServerOptions = {}): Socket {
  const { family = C.AF_INET, backlog, reusePort = false, dualstackIpv6 = false } = options;
  if (dualstackIpv6) {
    if (!hasDualstackIpv6()) throw new RangeError("dualstackIpv6 not supported on this platform");
    if (family !== C.AF_INET6) throw new RangeError("dualstackIpv6 requires AF_INET6 family");
  }
  const sock = new Socket(family, C.SOCK_STREAM);
  try {
    try {
      sock.setsockopt(C.SOL_SOCKET, C.SO_REUSEADDR, 1);
    } catch (error) {
      // As Python: a platform without it fails later, in bind().
      if (!(error instanceof OSError)) throw error;
    }
    if (reusePort) sock.setsockopt(C.SOL_SOCKET, C.SO_REUSEPORT, 1);
    if (family === C.AF_INET6) {
      sock.setsockopt(C.IPPROTO_IPV6, C.IPV6_V6ONLY, dualstackIpv6 ? 0 : 1);
    }
    try {
      sock.bind(address);
    } catch (error) {
      if (!(error instanceof OSError)) throw error;
      throw new OSError(error.errno, {
        message: `${strerror(error.errno)} (while attempting to bind on address ${
          pyRepr(address)
        })`,
        syscall: "bind",
      });
    }
    if (backlog === undefined) sock.listen();
    else sock.listen(backlog);
    return sock;
  } catch (error) {
    sock.close();
    throw error;
  }
}
