/**
 * The classic asyncore echo server over TLS: the echo handler is unchanged,
 * each accepted socket is wrapped with a server `SSLContext` and the loop runs
 * the handshakes.
 *
 *     deno run --allow-ffi examples/tls_echo.ts CERT.pem KEY.pem [host] [port]
 *
 * (default 127.0.0.1 8443; --poller=select|poll|epoll, default epoll on Linux,
 * poll elsewhere). Make a
 * test certificate and try it:
 *
 *     openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
 *       -keyout key.pem -out cert.pem -days 30 -subj /CN=localhost \
 *       -addext subjectAltName=DNS:localhost,IP:127.0.0.1
 *     openssl s_client -connect 127.0.0.1:8443 -CAfile cert.pem
 *
 * A certificate or key that cannot be used (missing, unreadable, not PEM,
 * not a pair) is one line and exit status 2; a port in use, one line and 1.
 * A failed handshake is one log line with the peer and OpenSSL's reason.
 * Ctrl-C or SIGTERM closes every connection and exits 0.
 *
 * @module
 */

import {
  type Address,
  AI_PASSIVE,
  Dispatcher,
  DispatcherWithSend,
  formatAddress,
  getaddrinfo,
  PROTOCOL_TLS_SERVER,
  SOCK_STREAM,
  type Socket,
  SSLContext,
  SSLError,
} from "../mod.ts";
import {
  type Command,
  DEFAULT_POLLER,
  errorText,
  loadOrExit,
  openOrExit,
  parseCommandLine,
  parsePort,
  pollerFlag,
  runLoop,
  SERVER_NOTES,
} from "./_cli.ts";

/** Sends back whatever arrives (the same handler as examples/echo.ts). */
export class EchoHandler extends DispatcherWithSend {
  /** Keeps the peer's address for the log line of a failure. */
  constructor(sock: Socket, readonly peer: Address) {
    super(sock);
  }

  override handleRead(): void {
    const data = this.recv(8192);
    if (data.length > 0) this.send(data);
  }

  override handleClose(): void {
    this.close();
  }

  /**
   * One log line per failure, naming the peer and OpenSSL's reason (a
   * plaintext client: `[SSL: WRONG_VERSION_NUMBER] wrong version number`),
   * instead of the default handler's traceback; then the connection closes.
   */
  override handleError(error: unknown): void {
    const tls = this.tlsSocket;
    const inHandshake = tls !== null && !tls.handshakeDone;
    const what = inHandshake ? "TLS handshake failed" : "closed on error";
    console.log(`${formatAddress(this.peer)}: ${what}: ${errorText(error)}`);
    this.close();
  }
}

/** Listens and gives each connection, wrapped in TLS, an {@linkcode EchoHandler}. */
export class TlsEchoServer extends Dispatcher {
  readonly context: SSLContext;

  constructor(context: SSLContext, host: string, port: number) {
    super();
    this.context = context;
    // As a Python server does: the resolver picks the family ("localhost", "::1", a name).
    const [[family, , , , address]] = getaddrinfo(host, port, 0, SOCK_STREAM, 0, AI_PASSIVE);
    this.createSocket(family);
    this.setReuseAddr();
    this.bind(address);
    this.listen(128);
  }

  override handleAccepted(sock: Socket, addr: Address): void {
    console.log(`Incoming connection from ${formatAddress(addr)}`);
    new EchoHandler(this.context.wrapSocket(sock, { serverSide: true }), addr);
  }
}

/**
 * A server context with the pair loaded. A file that holds no PEM block of
 * its kind is named, with the likeliest cause: CERT and KEY given the wrong
 * way round.
 */
export function serverContext(cert: string, key: string): SSLContext {
  const ctx = new SSLContext(PROTOCOL_TLS_SERVER);
  try {
    ctx.loadCertChain(cert, key);
  } catch (error) {
    ctx.close();
    // No PEM block of the kind: OpenSSL 3 says NO_START_LINE for a certificate, and
    // UNSUPPORTED when its key decoders find none.
    const isKey = error instanceof SSLError && error.syscall?.includes("PrivateKey") === true;
    if (
      error instanceof SSLError &&
      (error.reason === "NO_START_LINE" || (isKey && error.reason === "UNSUPPORTED"))
    ) {
      const [file, kind, other] = isKey
        ? [key, "private key", "the certificate"]
        : [cert, "certificate", "the key"];
      throw new Error(
        `${file} holds no PEM ${kind} (is it ${other}? CERT comes first): ${error.message}`,
      );
    }
    throw error;
  }
  return ctx;
}

/** The command line: `--help` is written from this table. */
export const CLI = {
  prog: "tls_echo",
  file: "examples/tls_echo.ts",
  summary: "The classic asyncore echo server over TLS: every connection gets back what it sends.",
  arguments: [
    { name: "CERT", help: "PEM file: the certificate, then any intermediates", required: true },
    { name: "KEY", help: "PEM file: its private key", required: true },
    { name: "host", help: "address or name to listen on", default: "127.0.0.1" },
    { name: "port", help: "0-65535; 0 picks a free port", default: "8443" },
  ],
  flags: {
    poller: pollerFlag(DEFAULT_POLLER),
  },
  notes: `${SERVER_NOTES.trim()}
A certificate or key that cannot be used (missing, unreadable, not PEM, not a
pair) exits 2 as well.`,
} as const satisfies Command;

if (import.meta.main) {
  const { prog } = CLI;
  const { args: [cert, key, host, portText], flags } = parseCommandLine(CLI);
  const port = parsePort(prog, portText!);
  const context = loadOrExit(prog, "the certificate and key", () => serverContext(cert!, key!));
  const server = openOrExit(prog, () => new TlsEchoServer(context, host!, port));
  console.log(`TLS echo server listening on ${formatAddress(server.sock.getsockname())}`);
  runLoop({
    poller: flags.poller,
    onStop: (signal, n) =>
      console.log(`TLS echo server stopping (${signal}): closing ${n} channel(s)`),
  });
}
