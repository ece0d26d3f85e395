/**
 * The options of `connect()` and `listen()`, and the one place that checks
 * them: a wrong type is a `TypeError`, a value out of range a `RangeError`.
 *
 * @module
 */

import { PROTOCOL_TLS_CLIENT, PROTOCOL_TLS_SERVER } from "../tls/constants.ts";
import { SSLContext } from "../tls/ssl.ts";

/** A PROXY protocol version a listener expects (see `Dispatcher.proxyProtocol`). */
export type ProxyProtocolOption = "v1" | "v2" | "any";

/** `connect()` over TCP, optionally with TLS. */
export interface TcpConnectOptions {
  /** A name or an IP address; default `"127.0.0.1"`. Names are resolved off the loop's thread. */
  hostname?: string;
  /** The port, 1-65535. */
  port: number;
  /** `"tcp"` (the default). */
  transport?: "tcp";
  /** A client context: the connection is TLS, and `connect` resolves after the handshake. */
  tls?: SSLContext;
  /** The name sent as SNI and checked against the certificate; default `hostname`. */
  serverName?: string;
}

/** `connect()` to a Unix socket. */
export interface UnixConnectOptions {
  /** The socket's path (a leading `"\0"`: a Linux abstract name). */
  path: string;
  /** `"unix"`. */
  transport: "unix";
}

/** What `connect()` takes. */
export type ConnectOptions = TcpConnectOptions | UnixConnectOptions;

/** `listen()` on TCP, optionally with TLS or behind a proxy. */
export interface TcpListenOptions {
  /** The address to listen on (a name is resolved at once); default `"0.0.0.0"`. */
  hostname?: string;
  /** The port, 0-65535 (0: one the system picks; see `Listener.addr`). */
  port: number;
  /** The length of the kernel's queue of connections not yet accepted; default 1024. */
  backlog?: number;
  /** Sets `SO_REUSEPORT`: several listeners (processes) share the port. */
  reusePort?: boolean;
  /** A server context: each accepted connection is TLS (the handshake runs under its streams). */
  tls?: SSLContext;
  /** Each connection starts with a PROXY protocol header; `remoteAddr` is the client it names. */
  proxyProtocol?: ProxyProtocolOption;
}

/** `listen()` on a Unix socket. */
export interface UnixListenOptions {
  /** The socket's path (created; it must not exist). A leading `"\0"`: a Linux abstract name. */
  path: string;
  /** `"unix"`. */
  transport: "unix";
}

/** What `listen()` takes. */
export type ListenOptions = TcpListenOptions | UnixListenOptions;

/** Checked `connect()` options. */
export type CheckedConnect =
  | { kind: "unix"; path: string }
  | { kind: "tcp"; hostname: string; port: number; tls: SSLContext | null; serverName: string };

/** Checked `listen()` options. */
export type CheckedListen =
  | { kind: "unix"; path: string }
  | {
    kind: "tcp";
    hostname: string;
    port: number;
    backlog: number;
    reusePort: boolean;
    tls: SSLContext | null;
    proxyProtocol: ProxyProtocolOption | null;
  };

/** The default backlog of `listen()`. */
export const DEFAULT_BACKLOG = 1024;

function record(options: unknown, what: string): Record<string, unknown> {
  if (options === null || typeof options !== "object") {
    throw new TypeError(`${what} options must be an object, not ${describe(options)}`);
  }
  return options as Record<string, unknown>;
}

function describe(v: unknown): string {
  return v === null ? "null" : Array.isArray(v) ? "an array" : typeof v;
}

function transportOf(o: Record<string, unknown>, what: string): "tcp" | "unix" {
  const t = o.transport ?? "tcp";
  if (t !== "tcp" && t !== "unix") {
    throw new RangeError(`${what} transport must be "tcp" or "unix", not ${String(t)}`);
  }
  return t;
}

function pathOf(o: Record<string, unknown>, what: string): string {
  if (typeof o.path !== "string") {
    throw new TypeError(
      `${what} with transport "unix" needs a path string, not ${describe(o.path)}`,
    );
  }
  if (o.path.length === 0) throw new RangeError(`${what} path must not be empty`);
  return o.path;
}

function optionalString(o: Record<string, unknown>, key: string, what: string): string | null {
  const v = o[key];
  if (v === undefined) return null;
  if (typeof v !== "string") {
    throw new TypeError(`${what} ${key} must be a string, not ${describe(v)}`);
  }
  return v;
}

function portOf(o: Record<string, unknown>, min: number, what: string): number {
  const p = o.port;
  if (typeof p !== "number") {
    throw new TypeError(`${what} port must be a number, not ${describe(p)}`);
  }
  if (!Number.isInteger(p) || p < min || p > 65535) {
    throw new RangeError(`${what} port must be an integer ${min}-65535, not ${p}`);
  }
  return p;
}

function contextOf(o: Record<string, unknown>, protocol: number, what: string): SSLContext | null {
  const tls = o.tls;
  if (tls === undefined) return null;
  if (!(tls instanceof SSLContext)) {
    throw new TypeError(`${what} tls must be an SSLContext, not ${describe(tls)}`);
  }
  if (tls.protocol !== protocol) {
    const side = protocol === PROTOCOL_TLS_CLIENT ? "a client" : "a server";
    const name = protocol === PROTOCOL_TLS_CLIENT ? "PROTOCOL_TLS_CLIENT" : "PROTOCOL_TLS_SERVER";
    throw new TypeError(`${what} tls must be ${side} context (new SSLContext(${name}))`);
  }
  return tls;
}

/** Checks `connect()`'s options. */
export function checkConnectOptions(options: unknown): CheckedConnect {
  const o = record(options, "connect()");
  if (transportOf(o, "connect()") === "unix") return { kind: "unix", path: pathOf(o, "connect()") };
  const hostname = optionalString(o, "hostname", "connect()") ?? "127.0.0.1";
  if (hostname === "") throw new RangeError("connect() hostname must not be empty");
  const port = portOf(o, 1, "connect()");
  const tls = contextOf(o, PROTOCOL_TLS_CLIENT, "connect()");
  const serverName = optionalString(o, "serverName", "connect()") ?? hostname;
  return { kind: "tcp", hostname, port, tls, serverName };
}

/** Checks `listen()`'s options. */
export function checkListenOptions(options: unknown): CheckedListen {
  const o = record(options, "listen()");
  if (transportOf(o, "listen()") === "unix") return { kind: "unix", path: pathOf(o, "listen()") };
  const hostname = optionalString(o, "hostname", "listen()") ?? "0.0.0.0";
  const port = portOf(o, 0, "listen()");
  const backlog = o.backlog ?? DEFAULT_BACKLOG;
  if (typeof backlog !== "number") {
    throw new TypeError(`listen() backlog must be a number, not ${describe(backlog)}`);
  }
  if (!Number.isInteger(backlog) || backlog < 0 || backlog > 0x7fffffff) {
    throw new RangeError(`listen() backlog must be a non-negative integer, not ${backlog}`);
  }
  const reusePort = o.reusePort ?? false;
  if (typeof reusePort !== "boolean") {
    throw new TypeError(`listen() reusePort must be a boolean, not ${describe(reusePort)}`);
  }
  const tls = contextOf(o, PROTOCOL_TLS_SERVER, "listen()");
  const proxy = o.proxyProtocol ?? null;
  if (proxy !== null && proxy !== "v1" && proxy !== "v2" && proxy !== "any") {
    throw new RangeError(
      `listen() proxyProtocol must be "v1", "v2" or "any", not ${String(proxy)}`,
    );
  }
  return { kind: "tcp", hostname, port, backlog, reusePort, tls, proxyProtocol: proxy };
}
