/**
 * Socket set-up shared by `connect()` and `listen()`: telling address
 * literals from names, and the options every TCP connection of the streams
 * gets.
 *
 * @module
 */

import { C } from "../ffi/platform.ts";
import type { Socket } from "../ffi/socket.ts";

const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

/** `AF_INET` or `AF_INET6` for an address literal, 0 for a name (to be resolved). */
export function inetFamily(host: string): number {
  if (IPV4.test(host)) return C.AF_INET;
  return host.includes(":") ? C.AF_INET6 : 0;
}

/**
 * `TCP_NODELAY` (as asyncio sets it: the connection's queue already gathers
 * small writes, and Nagle's delay would stall request-response traffic) and
 * `SO_OOBINLINE` (an urgent byte stays in the stream, in order, instead of
 * being lost to it or leaving the socket readable forever).
 */
export function setStreamOptions(sock: Socket): void {
  sock.setsockopt(C.IPPROTO_TCP, C.TCP_NODELAY, 1);
  sock.setsockopt(C.SOL_SOCKET, C.SO_OOBINLINE, 1);
}
