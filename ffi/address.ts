/**
 * Typed views of an {@linkcode Address}: `getsockname()`, `getpeername()`,
 * `accept()` and `handleAccepted` return the whole union (an inet pair or
 * quadruple, or a Unix path), as Python does; these helpers narrow it
 * without a cast, and print it in the one short form the library and its
 * examples use in log lines.
 *
 * @module
 */

import type { Address } from "./structs.ts";

/** An IPv4 or IPv6 address as `[host, port]`. */
export type InetAddress = [host: string, port: number];

/**
 * Whether `addr` is an IPv4 `[host, port]` or IPv6
 * `[host, port, flowinfo, scopeId]` address (not a Unix path).
 *
 * @example
 * ```ts
 * import { isInetAddress } from "@asyncore/deno";
 *
 * const addr: string | [string, number] = ["127.0.0.1", 8080];
 * if (isInetAddress(addr)) console.log(addr[1] + 1); // addr[1] is a number here
 * ```
 */
export function isInetAddress(addr: unknown): addr is Exclude<Address, string> {
  return Array.isArray(addr) && (addr.length === 2 || addr.length === 4) &&
    typeof addr[0] === "string" && Number.isInteger(addr[1]);
}

/**
 * `[host, port]` of an IPv4 or IPv6 address (the IPv6 flow info and scope
 * id are dropped); a `TypeError` for a Unix path or anything else, so an
 * inet socket's address needs no cast.
 *
 * @example
 * ```ts
 * import { AF_INET, inetAddress, Socket } from "@asyncore/deno";
 *
 * using sock = new Socket(AF_INET);
 * sock.bind(["127.0.0.1", 0]);
 * const [host, port] = inetAddress(sock.getsockname()); // string, number
 * console.log(`bound to ${host}:${port}`);
 * ```
 *
 * @throws {TypeError} When `addr` is not an inet address.
 */
export function inetAddress(addr: Address | null | undefined): InetAddress {
  if (!isInetAddress(addr)) {
    const what = typeof addr === "string"
      ? `a Unix socket path (${JSON.stringify(addr)})`
      : describe(addr);
    throw new TypeError(`expected an IPv4 or IPv6 address [host, port], not ${what}`);
  }
  return [addr[0], addr[1]];
}

/**
 * The one-line form of an address used in log lines: `127.0.0.1:8080`,
 * `[::1]:8080` (with `%scopeId` when it has one), a Unix path as it is, an
 * abstract Unix name as `@name` (as `ss` prints it), `(unnamed)` for an
 * unbound Unix socket, `-` for no address at all.
 *
 * @example
 * ```ts
 * import { formatAddress } from "@asyncore/deno";
 *
 * console.log(formatAddress(["::1", 8080, 0, 0])); // [::1]:8080
 * console.log(formatAddress("/run/echo.sock")); // /run/echo.sock
 * ```
 */
export function formatAddress(addr: Address | null | undefined): string {
  if (addr === null || addr === undefined) return "-";
  if (typeof addr === "string") {
    if (addr === "") return "(unnamed)";
    return addr.startsWith("\0") ? `@${addr.slice(1)}` : addr;
  }
  const [host, port] = addr;
  if (!host.includes(":")) return `${host}:${port}`;
  const scope = addr.length === 4 && addr[3] !== 0 && !host.includes("%") ? `%${addr[3]}` : "";
  return `[${host}${scope}]:${port}`;
}

function describe(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
