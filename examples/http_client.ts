/**
 * The classic asyncore HTTP client: sends one `GET` request over HTTP/1.0 and
 * writes the whole response, status line and headers included, to stdout
 * byte for byte.
 *
 *     deno run --allow-ffi examples/http_client.ts http://host[:port]/path
 *     deno run --allow-ffi examples/http_client.ts host [path]        (port 80, path "/")
 *
 * Options: --poller=select|poll|epoll (default select, as asyncore's loop()).
 * Exits 1 when the connection fails, 2 for a bad argument; piped into a
 * reader that stops early (`| head`), it stops quietly; Ctrl-C or SIGTERM
 * closes the connection and exits 0.
 *
 * @module
 */

import { Dispatcher, getaddrinfo, SOCK_STREAM, type SocketMap } from "../mod.ts";
import {
  type Command,
  errorText,
  openOrExit,
  parseCommandLine,
  parsePort,
  pollerFlag,
  runLoop,
  usageError,
} from "./_cli.ts";

/**
 * Writes all of `data` to stdout; `writeSync` may take only part of it.
 * Throws `Deno.errors.BrokenPipe` once the reader has gone.
 */
export function writeAllStdout(data: Uint8Array): void {
  let off = 0;
  while (off < data.length) off += Deno.stdout.writeSync(data.subarray(off));
}

/**
 * Fetches `path` from `host` with one HTTP/1.0 request, as in the asyncore
 * documentation: every received chunk goes to {@linkcode HTTPClient.sink}.
 */
export class HTTPClient extends Dispatcher {
  /** The request bytes not yet sent. */
  buffer: Uint8Array;
  /** Where received bytes go; stdout by default. */
  sink: (data: Uint8Array) => void = writeAllStdout;
  /** The error that closed the channel, if one did (a refused connect, say). */
  error: unknown = null;
  /** The sink's reader went away (stdout was a pipe whose reader closed it): not an error. */
  sinkClosed = false;
  /** The name error lines start with. */
  prog = "http_client";

  /**
   * Connects to `[host, port]` and queues the request. The first address
   * `getaddrinfo` gives decides the family (`"::1"` is IPv6).
   */
  constructor(host: string, path: string, port = 80, map?: SocketMap) {
    super(null, map);
    // Set before connect(): a connect that completes at once calls handleConnect.
    const hostHeader = (host.includes(":") ? `[${host}]` : host) + (port === 80 ? "" : `:${port}`);
    this.buffer = new TextEncoder().encode(
      `GET ${path} HTTP/1.0\r\nHost: ${hostHeader}\r\n\r\n`,
    );
    // As a Python client does: the resolver picks the family and the address.
    const [[family, , , , address]] = getaddrinfo(host, port, 0, SOCK_STREAM);
    this.createSocket(family);
    this.connect(address);
  }

  /** Nothing to do: the request goes out when the socket is writable. */
  override handleConnect(): void {}

  /** The server closed: the response is complete (HTTP/1.0 ends it by closing). */
  override handleClose(): void {
    this.close();
  }

  /** Hands each received chunk to the sink, as it arrives. */
  override handleRead(): void {
    const data = this.recv(8192);
    if (data.length > 0) this.sink(data);
  }

  /** Writable while some of the request is unsent. */
  override writable(): boolean {
    return this.buffer.length > 0;
  }

  /** Sends what the socket takes and keeps the rest. */
  override handleWrite(): void {
    const sent = this.send(this.buffer);
    this.buffer = this.buffer.subarray(sent);
  }

  /**
   * Remembers the error and reports it on stderr in one line, so stdout
   * holds only the response. A reader that closed stdout early (`| head`)
   * wants no more: the channel closes quietly.
   */
  override handleError(error: unknown): void {
    if (error instanceof Deno.errors.BrokenPipe) {
      this.sinkClosed = true;
    } else {
      this.error = error;
      console.error(`${this.prog}: ${errorText(error)}`);
    }
    this.close();
  }
}

/**
 * Reads the command line: a URL `http://host[:port]/path`, or a host and
 * an optional path. Returns `[host, port, path]`.
 */
export function parseTarget(args: string[]): [host: string, port: number, path: string] {
  if (args.length === 0) throw new TypeError("usage: http_client.ts URL | host [path]");
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(args[0])) {
    // A URL carries its own path.
    if (args.length > 1) throw new TypeError(`unexpected argument '${args[1]}' after a URL`);
    const url = new URL(args[0]);
    if (url.protocol !== "http:") throw new TypeError(`only http:// URLs, not ${url.protocol}`);
    const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
    const port = url.port === "" ? 80 : Number(url.port);
    return [host, port, (url.pathname || "/") + url.search];
  }
  return [args[0], 80, args[1] ?? "/"];
}

/** The command line: `--help` is written from this table. */
export const CLI = {
  prog: "http_client",
  file: "examples/http_client.ts",
  summary: `Sends one HTTP/1.0 GET and writes the whole response (status line and headers
included) to stdout, byte for byte.`,
  synopsis: "URL | host [path]",
  arguments: [
    { name: "URL", help: "http://host[:port]/path, or a host (port 80)", required: true },
    { name: "path", help: "with a host: the path to fetch (default: /)" },
  ],
  flags: {
    poller: pollerFlag("select"),
  },
  notes: `Exit status: 0 when a response arrived (or stdout's reader stopped early, or
SIGINT/SIGTERM closed the connection), 1 when the connection failed, 2 for a bad
argument or a host that does not resolve.`,
} as const satisfies Command;

if (import.meta.main) {
  const { prog } = CLI;
  const { args, flags } = parseCommandLine(CLI);
  let target: [string, number, string];
  try {
    target = parseTarget(args.filter((a) => a !== undefined));
  } catch (error) {
    usageError(prog, errorText(error));
  }
  const [host, port, path] = target;
  parsePort(prog, String(port));
  const client = openOrExit(prog, () => new HTTPClient(host, path, port));
  runLoop({ poller: flags.poller });
  if (client.error !== null) Deno.exit(1);
}
