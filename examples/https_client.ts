/**
 * The documentation's HTTP client over TLS: one `GET` over HTTP/1.0, the
 * whole response written to stdout byte for byte. The server's certificate
 * is verified (the system's CA store, or `--cafile PEM`) and its name checked.
 *
 *     deno run --allow-ffi examples/https_client.ts https://host[:port]/path [--cafile=ca.pem]
 *
 * Options: --poller=select|poll|epoll (default select). Exits 1 when the
 * connection or the verification fails, 2 for a bad argument or a CA file
 * that cannot be loaded; piped into a reader that stops early (`| head`), it
 * stops quietly.
 *
 * @module
 */

import { createDefaultContext, type SocketMap, type SSLContext } from "../mod.ts";
import {
  type Command,
  errorText,
  loadOrExit,
  openOrExit,
  parseCommandLine,
  pollerFlag,
  runLoop,
  usageError,
} from "./_cli.ts";
import { HTTPClient } from "./http_client.ts";

/** {@linkcode HTTPClient} over TLS: the loop runs the handshake, then the request goes out. */
export class HTTPSClient extends HTTPClient {
  override prog = "https_client";

  constructor(context: SSLContext, host: string, path: string, port = 443, map?: SocketMap) {
    super(host, path, port, map);
    // The request was built for port 80 by default; its Host header names 443 the same way.
    if (port === 443) {
      const hostHeader = host.includes(":") ? `[${host}]` : host;
      this.buffer = new TextEncoder().encode(`GET ${path} HTTP/1.0\r\nHost: ${hostHeader}\r\n\r\n`);
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

/** The command line: `--help` is written from this table. */
export const CLI = {
  prog: "https_client",
  file: "examples/https_client.ts",
  summary: `Sends one HTTP/1.0 GET over TLS and writes the whole response to stdout, byte for
byte. The server's certificate is verified and its name checked.`,
  arguments: [
    { name: "URL", help: "https://host[:port]/path", required: true },
  ],
  flags: {
    cafile: {
      type: "string",
      metavar: "PEM",
      help: "trust the CA certificates in this file",
      defaultText: "the system's CA store",
    },
    poller: pollerFlag("select"),
  },
  notes: `Exit status: 0 when a response arrived (or stdout's reader stopped early, or
SIGINT/SIGTERM closed the connection), 1 when the connection or the verification
failed, 2 for a bad argument, a host that does not resolve or a CA file that
cannot be loaded.`,
} as const satisfies Command;

if (import.meta.main) {
  const { prog } = CLI;
  const { args, flags } = parseCommandLine(CLI);
  let target: [string, number, string];
  try {
    target = parseHttpsUrl(args[0]);
  } catch (error) {
    usageError(prog, errorText(error));
  }
  const [host, port, path] = target;
  const { cafile } = flags;
  const context = loadOrExit(
    prog,
    cafile === undefined ? "the system's CA store" : `--cafile ${cafile}`,
    () => createDefaultContext("serverAuth", cafile === undefined ? {} : { cafile }),
  );
  const client = openOrExit(prog, () => new HTTPSClient(context, host, path, port));
  runLoop({ poller: flags.poller });
  if (client.error !== null) Deno.exit(1);
}
