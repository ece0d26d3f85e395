/**
 * `connect()`: a connection as a {@linkcode Conn}, over TCP (optionally
 * TLS) or a Unix socket. A name is resolved off the loop's thread, and each
 * of its addresses is tried in the resolver's order.
 *
 * @module
 */

import { errno as E, OSError } from "../ffi/errno.ts";
import { getaddrinfoAsync } from "../ffi/netdb.ts";
import { C } from "../ffi/platform.ts";
import { Socket } from "../ffi/socket.ts";
import type { Address } from "../ffi/structs.ts";
import { SSLError } from "../tls/errors.ts";
import type { SSLContext } from "../tls/ssl.ts";
import { StreamChannel } from "./_channel.ts";
import { checkConnectOptions, type ConnectOptions } from "./_options.ts";
import { inetFamily, setStreamOptions } from "./_socket.ts";
import { type Conn, StreamConn } from "./conn.ts";

/** Failures after which the next address of a name is tried. */
const TRY_NEXT = new Set([
  E.ECONNREFUSED,
  E.ENETUNREACH,
  E.EHOSTUNREACH,
  E.EADDRNOTAVAIL,
  E.EAFNOSUPPORT,
  E.ETIMEDOUT,
]);

/**
 * The addresses to try for `hostname`: a literal as it is, a name through
 * `getaddrinfo` on a worker thread (a slow DNS answer leaves the loop's
 * other channels running), duplicates dropped.
 */
async function addressesOf(hostname: string, port: number): Promise<[number, Address][]> {
  const family = inetFamily(hostname);
  if (family === C.AF_INET) return [[family, [hostname, port]]];
  if (family === C.AF_INET6) return [[family, [hostname, port, 0, 0]]];
  const seen = new Set<string>();
  const out: [number, Address][] = [];
  for (const [fam, , , , addr] of await getaddrinfoAsync(hostname, port, 0, C.SOCK_STREAM)) {
    const key = `${fam} ${String(addr)}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push([fam, addr]);
  }
  return out;
}

/** One attempt: a socket of `family` connected to `address` (and its TLS handshake done). */
async function attempt(
  family: number,
  address: Address,
  tls: SSLContext | null,
  serverName: string,
): Promise<Conn> {
  const sock = new Socket(family, C.SOCK_STREAM | C.SOCK_NONBLOCK);
  let ch: StreamChannel;
  try {
    if (family !== C.AF_UNIX) setStreamOptions(sock);
    ch = new StreamChannel(
      tls === null ? sock : tls.wrapSocket(sock, { serverHostname: serverName }),
      address,
    );
  } catch (error) {
    sock.close();
    throw error;
  }
  await ch.connectTo(address);
  return new StreamConn(ch);
}

/**
 * Connects over TCP (with `tls`, over TLS) or to a Unix socket, and
 * resolves with the connection as Web Streams once it is up (with TLS, once
 * the handshake is done and the server's certificate verified as the
 * context asks). A name is resolved off the loop's thread; its addresses
 * are tried in turn. The streams run on the default loop by themselves.
 * TCP connections have `TCP_NODELAY` set.
 *
 * @param options `{ hostname?, port, transport?: "tcp", tls?, serverName? }` or
 * `{ path, transport: "unix" }`.
 * @returns The connection.
 * @throws {OSError} (as a rejection) When the connection fails (`ECONNREFUSED`, ...);
 * a `GaiError` when the name does not resolve.
 * @throws {SSLError} (as a rejection) When the TLS handshake fails
 * (`SSLCertVerificationError` for a certificate that does not verify).
 * @throws {TypeError} (as a rejection) For an option of the wrong type.
 * @throws {RangeError} (as a rejection) For a value out of range (a port of 0 or above 65535).
 *
 * @example An HTTPS request with streams
 * ```ts no-run
 * import { connect, createDefaultContext } from "@asyncore/deno";
 *
 * // needs the internet
 * const conn = await connect({ hostname: "example.org", port: 443, tls: createDefaultContext() });
 * const writer = conn.writable.getWriter();
 * await writer.write(new TextEncoder().encode("GET / HTTP/1.0\r\nHost: example.org\r\n\r\n"));
 * await writer.close();
 * const text = await new Response(conn.readable).text();
 * ```
 */
export async function connect(options: ConnectOptions): Promise<Conn> {
  const o = checkConnectOptions(options);
  if (o.kind === "unix") return await attempt(C.AF_UNIX, o.path, null, "");
  const addresses = await addressesOf(o.hostname, o.port);
  let last: unknown = new OSError(E.EADDRNOTAVAIL, { filename: o.hostname });
  for (const [family, address] of addresses) {
    try {
      return await attempt(family, address, o.tls, o.serverName);
    } catch (error) {
      const next = error instanceof OSError && !(error instanceof SSLError) &&
        TRY_NEXT.has(error.errno);
      if (!next) throw error;
      last = error;
    }
  }
  throw last;
}
