/**
 * The documentation's HTTP client over TLS: one `GET` over HTTP/1.0, the
 * whole response written to stdout byte for byte. The server's certificate
 * is verified (the system's CA store, or `--cafile=PEM`) and its name checked.
 *
 *     deno run --allow-ffi examples/https_client.ts https://host[:port]/path [--cafile=ca.pem]
 *
 * Options: --poller=select|poll|epoll (default select). Exits 1 when the
 * connection or the verification fails.
 *
 * @module
 */

import {
  createDefaultContext,
  loop,
  type PollerName,
  type SocketMap,
  type SSLContext,
} from "../mod.ts";
import { HTTPClient } from "./http_client.ts";

/** {@linkcode HTTPClient} over TLS: the loop runs the handshake, then the request goes out. */
export class HTTPSClient extends HTTPClient {
  constructor(context: SSLContext, host: string, path: string, port = 443, map?: SocketMap) {
    super(host, path, port, map);
    // The request was built for port 80 by default; its Host header names 443 the same way.
    if (port === 443) {
      this.buffer = new TextEncoder().encode(`GET ${path} HTTP/1.0\r\nHost: ${host}\r\n\r\n`);
    }
    this.startTls(context, { serverHostname: host });
  }
}

/** Reads `https://host[:port]/path` into `[host, port, path]`. */
export function parseHttpsUrl(arg: string | undefined): [host: string, port: number, path: string] {
  if (arg === undefined) throw new TypeError("usage: https_client.ts https://host[:port]/path");
  const url = new URL(arg);
  if (url.protocol !== "https:") throw new TypeError(`only https:// URLs, not ${url.protocol}`);
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  return [host, url.port === "" ? 443 : Number(url.port), (url.pathname || "/") + url.search];
}

if (import.meta.main) {
  const args = Deno.args.filter((a) => !a.startsWith("--"));
  const poller = (Deno.args.find((a) => a.startsWith("--poller="))?.slice(9) ??
    "select") as PollerName;
  const cafile = Deno.args.find((a) => a.startsWith("--cafile="))?.slice(9);
  let target: [string, number, string];
  try {
    target = parseHttpsUrl(args[0]);
  } catch (error) {
    console.error((error as Error).message);
    Deno.exit(2);
  }
  const [host, port, path] = target;
  let client: HTTPSClient;
  try {
    const context = createDefaultContext("serverAuth", cafile ? { cafile } : {});
    client = new HTTPSClient(context, host, path, port);
  } catch (error) {
    console.error(`https_client: ${(error as Error).message}`);
    Deno.exit(1);
  }
  loop({ poller });
  if (client.error !== null) Deno.exit(1);
}
