/**
 * `SSLContext`, `SSLSocket` and `createDefaultContext`, as Python's `ssl`
 * module has them (they live together, as in `ssl.py`: a context makes
 * sockets, and a socket keeps its context). An `SSLContext` is one OpenSSL
 * `SSL_CTX` holding the settings, certificates and trust store every socket
 * made from it shares; an `SSLSocket` is Python's surface over one
 * {@linkcode TlsTransport}, which owns the session.
 *
 * @module
 */

import { errno as E, OSError } from "../ffi/errno.ts";
import { openssl, SSLC } from "../ffi/openssl.ts";
import { toCString } from "../ffi/bytes.ts";
import { C } from "../ffi/platform.ts";
import { type BytesLike, handOver, Socket } from "../ffi/socket.ts";
import { kTransport, type Transport, WRITE } from "../ffi/transport.ts";
import { asBytes, readCString } from "../ffi/bytes.ts";
import { queuedSSLError, SSLError, SSLWantReadError, SSLWantWriteError } from "./errors.ts";
import { decodeCertificate, peerCertificateDer } from "./_x509.ts";
import {
  check,
  pemText,
  setAlpn,
  trustDefaultPaths,
  trustLocations,
  trustPemText,
  useCertChainFiles,
  useCertChainPem,
} from "./_context_setup.ts";
import type { PeerCertificate } from "./peer_certificate.ts";
import { TlsTransport } from "./transport.ts";
import {
  CERT_NONE,
  CERT_OPTIONAL,
  CERT_REQUIRED,
  HANDSHAKE_TIMEOUT,
  PROTOCOL_TLS_CLIENT,
  PROTOCOL_TLS_SERVER,
} from "./constants.ts";

/** A TLS protocol version, as Python's `ssl.TLSVersion` names them. */
export type TLSVersion = "TLSv1.2" | "TLSv1.3";

const VERSIONS: Record<TLSVersion, number> = {
  "TLSv1.2": SSLC.TLS1_2_VERSION,
  "TLSv1.3": SSLC.TLS1_3_VERSION,
};

/** Python 3.11's default cipher list for TLS 1.2 (TLS 1.3 suites are OpenSSL's). */
const DEFAULT_CIPHERS =
  "@SECLEVEL=2:ECDH+AESGCM:ECDH+CHACHA20:ECDH+AES:DHE+AES:!aNULL:!eNULL:!aDSS:!SHA1:!AESCCM";
/**
 * Python 3.11's default options on OpenSSL 3.0 (`ssl.SSLContext().options`):
 * SSL_OP_ALL without DONT_INSERT_EMPTY_FRAGMENTS, NO_COMPRESSION,
 * CIPHER_SERVER_PREFERENCE, ENABLE_MIDDLEBOX_COMPAT, NO_SSLv3.
 */
const DEFAULT_OPTIONS = 0x82520050n;
/**
 * Partial writes and a moving write buffer let a dispatcher retry a write
 * with its queue's current front; released buffers keep an idle connection
 * small.
 */
const MODES = SSLC.SSL_MODE_ENABLE_PARTIAL_WRITE | SSLC.SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
  SSLC.SSL_MODE_RELEASE_BUFFERS;

const freeContext = new FinalizationRegistry<Deno.PointerObject>((ptr) => {
  openssl().ssl.SSL_CTX_free(ptr);
});

/** The `SSL_CTX` of a context (set by `SSLContext`'s static block). */
let contextPointer: (context: SSLContext) => Deno.PointerObject;

/** PEM text for the options form of {@linkcode SSLContext.loadCertChain}. */
export interface CertChainOptions {
  /** The certificate chain as PEM text: this end's certificate first, then intermediates. */
  cert: string | Uint8Array;
  /** The private key as PEM text; default: the key in `cert`. */
  key?: string | Uint8Array | null;
  /** The password of an encrypted key, or a function that returns it. */
  password?: string | (() => string) | null;
}

/** Options of {@linkcode createDefaultContext}: trust these CAs instead of the system's. */
export interface DefaultContextOptions {
  /** A PEM file of CA certificates. */
  cafile?: string;
  /** A directory of hashed CA certificates (`openssl rehash`). */
  capath?: string;
  /** PEM text of CA certificates. */
  cadata?: string;
}

/**
 * TLS settings shared by sockets: protocol side, verification, trust store,
 * own certificate, ALPN, versions and ciphers. The defaults are Python's:
 * a client context verifies the server (`CERT_REQUIRED`, `checkHostname`),
 * TLS 1.2 at least, Python's cipher list.
 *
 * @example Client
 * ```ts no-run
 * import { PROTOCOL_TLS_CLIENT, Socket, SSLContext } from "@asyncore/deno";
 *
 * const ctx = new SSLContext(PROTOCOL_TLS_CLIENT);
 * ctx.loadVerifyLocations("ca.pem"); // needs ca.pem, and a TLS server on localhost:8443
 * const sock = new Socket();
 * sock.connect(["localhost", 8443]);
 * using tls = ctx.wrapSocket(sock, { serverHostname: "localhost" });
 * ```
 * @example Server
 * ```ts no-run
 * import { DispatcherWithSend, PROTOCOL_TLS_SERVER, type Socket, SSLContext } from "@asyncore/deno";
 *
 * const ctx = new SSLContext(PROTOCOL_TLS_SERVER);
 * ctx.loadCertChain("cert.pem", "key.pem"); // needs cert.pem and key.pem
 *
 * class EchoHandler extends DispatcherWithSend {
 *   override handleRead() {
 *     const data = this.recv(8192);
 *     if (data.length > 0) this.send(data);
 *   }
 * }
 * // in a listening Dispatcher's handleAccepted(sock):
 * const accepted = (sock: Socket) => new EchoHandler(ctx.wrapSocket(sock, { serverSide: true }));
 * ```
 */
export class SSLContext {
  #ctx: Deno.PointerObject | null;
  #verifyMode: number;
  #checkHostname: boolean;
  #min: TLSVersion = "TLSv1.2";
  #max: TLSVersion = "TLSv1.3";
  #alpnArg: Uint8Array | null = null;
  /** `PROTOCOL_TLS_CLIENT` or `PROTOCOL_TLS_SERVER`. */
  readonly protocol: number;
  /** Seconds a dispatcher gives a handshake before closing; null for no limit. */
  handshakeTimeout: number | null = HANDSHAKE_TIMEOUT;

  /** Makes a context; opens OpenSSL on first use. */
  constructor(protocol: number = PROTOCOL_TLS_CLIENT) {
    if (protocol !== PROTOCOL_TLS_CLIENT && protocol !== PROTOCOL_TLS_SERVER) {
      throw new RangeError(
        `protocol must be PROTOCOL_TLS_CLIENT (16) or PROTOCOL_TLS_SERVER (17), not ${protocol}`,
      );
    }
    const { ssl: lib, crypto } = openssl();
    crypto.ERR_clear_error();
    const ctx = lib.SSL_CTX_new(lib.TLS_method());
    if (ctx === null) throw queuedSSLError("SSL_CTX_new");
    this.#ctx = ctx;
    freeContext.register(this, ctx, this);
    this.protocol = protocol;
    const client = protocol === PROTOCOL_TLS_CLIENT;
    this.#verifyMode = client ? CERT_REQUIRED : CERT_NONE;
    this.#checkHostname = client;
    this.#applyVerify();
    lib.SSL_CTX_set_options(ctx, DEFAULT_OPTIONS);
    lib.SSL_CTX_ctrl(ctx, SSLC.SSL_CTRL_MODE, BigInt(MODES), null);
    this.minimumVersion = "TLSv1.2";
    this.setCiphers(DEFAULT_CIPHERS);
    const sid = toCString("asyncore");
    lib.SSL_CTX_set_session_id_context(ctx, sid, sid.length - 1);
  }

  // The SSL_CTX, for this module's SSLSocket only (not part of the surface).
  static {
    contextPointer = (c) => c.#pointer();
  }

  #pointer(): Deno.PointerObject {
    if (this.#ctx === null) throw new TypeError("the SSLContext is closed");
    return this.#ctx;
  }

  #applyVerify(): void {
    const mode = this.#verifyMode === CERT_NONE
      ? SSLC.SSL_VERIFY_NONE
      : this.#verifyMode === CERT_OPTIONAL
      ? SSLC.SSL_VERIFY_PEER
      : SSLC.SSL_VERIFY_PEER | SSLC.SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    openssl().ssl.SSL_CTX_set_verify(this.#pointer(), mode, null);
  }

  /** `CERT_NONE`, `CERT_OPTIONAL` or `CERT_REQUIRED`. */
  get verifyMode(): number {
    return this.#verifyMode;
  }
  set verifyMode(mode: number) {
    if (mode !== CERT_NONE && mode !== CERT_OPTIONAL && mode !== CERT_REQUIRED) {
      throw new RangeError(
        `verifyMode must be CERT_NONE, CERT_OPTIONAL or CERT_REQUIRED, not ${mode}`,
      );
    }
    if (mode === CERT_NONE && this.#checkHostname) {
      throw new TypeError("Cannot set verifyMode to CERT_NONE when checkHostname is enabled.");
    }
    this.#verifyMode = mode;
    this.#applyVerify();
  }

  /** Whether a client checks the server's name (`serverHostname`) against its certificate. */
  get checkHostname(): boolean {
    return this.#checkHostname;
  }
  set checkHostname(on: boolean) {
    on = Boolean(on);
    // As Python: turning it on with verification off turns verification on.
    if (on && this.#verifyMode === CERT_NONE) this.verifyMode = CERT_REQUIRED;
    this.#checkHostname = on;
  }

  #setVersion(cmd: number, v: TLSVersion): void {
    if (!(v in VERSIONS)) {
      throw new RangeError(`TLS version must be "TLSv1.2" or "TLSv1.3", not ${JSON.stringify(v)}`);
    }
    openssl().crypto.ERR_clear_error();
    const r = openssl().ssl.SSL_CTX_ctrl(this.#pointer(), cmd, BigInt(VERSIONS[v]), null);
    check(r === 1n, "SSL_CTX_set_proto_version");
  }

  /** The lowest protocol version allowed (default `"TLSv1.2"`). */
  get minimumVersion(): TLSVersion {
    return this.#min;
  }
  set minimumVersion(v: TLSVersion) {
    this.#setVersion(SSLC.SSL_CTRL_SET_MIN_PROTO_VERSION, v);
    this.#min = v;
  }

  /** The highest protocol version allowed (default `"TLSv1.3"`). */
  get maximumVersion(): TLSVersion {
    return this.#max;
  }
  set maximumVersion(v: TLSVersion) {
    this.#setVersion(SSLC.SSL_CTRL_SET_MAX_PROTO_VERSION, v);
    this.#max = v;
  }

  /**
   * Loads this end's certificate chain (PEM: the certificate first, then
   * intermediates) and private key (`keyfile`, default: in `certfile`). An
   * encrypted key needs `password` (a string or a function returning one);
   * without one it fails instead of prompting.
   *
   * @example From files, as Python's `load_cert_chain`
   * ```ts no-run
   * import { PROTOCOL_TLS_SERVER, SSLContext } from "@asyncore/deno";
   *
   * const ctx = new SSLContext(PROTOCOL_TLS_SERVER);
   * ctx.loadCertChain("cert.pem", "key.pem"); // needs cert.pem and key.pem
   * ```
   *
   * @throws {OSError} When a file is missing or unreadable (`ENOENT`, `EACCES`, `EISDIR`).
   * @throws {SSLError} When a file holds no PEM certificate or key, the key
   *   does not match the certificate (`KEY_VALUES_MISMATCH`), or the
   *   password is wrong.
   */
  loadCertChain(
    certfile: string,
    keyfile?: string | null,
    password?: string | (() => string) | null,
  ): void;
  /**
   * Loads this end's certificate chain and private key from PEM text (as
   * `Deno.listenTls` takes them), e.g. from an environment variable or a
   * secret store: `cert` holds the certificate first, then intermediates;
   * `key` the private key (default: the key in `cert`).
   *
   * @example From PEM text
   * ```ts no-run
   * import { PROTOCOL_TLS_SERVER, SSLContext } from "@asyncore/deno";
   *
   * const ctx = new SSLContext(PROTOCOL_TLS_SERVER);
   * ctx.loadCertChain({
   *   cert: Deno.readTextFileSync("cert.pem"), // needs cert.pem, and the key in TLS_KEY
   *   key: Deno.env.get("TLS_KEY")!,
   * });
   * ```
   *
   * @throws {TypeError} When `cert` or `key` is not PEM text (a path given here, say).
   * @throws {SSLError} As the file form does.
   */
  loadCertChain(options: CertChainOptions): void;
  loadCertChain(
    certfile: string | CertChainOptions,
    keyfile?: string | null,
    password?: string | (() => string) | null,
  ): void {
    if (typeof certfile === "object" && certfile !== null) {
      const certPem = pemText(certfile.cert, "cert");
      const keyPem = certfile.key == null ? certPem : pemText(certfile.key, "key");
      const pass = certfile.password;
      const pw = typeof pass === "function" ? pass() : pass ?? "";
      if (typeof pw !== "string") throw new TypeError("password must be a string");
      useCertChainPem(this.#pointer(), certPem, keyPem, pw);
      return;
    }
    if (typeof certfile !== "string") throw new TypeError("certfile must be a path string");
    const pw = typeof password === "function" ? password() : password ?? "";
    if (typeof pw !== "string") throw new TypeError("password must be a string");
    useCertChainFiles(this.#pointer(), certfile, keyfile ?? certfile, pw);
  }

  /**
   * Adds CA certificates to trust: a PEM file, a hashed directory, and/or
   * PEM text (several certificates may follow each other).
   */
  loadVerifyLocations(
    cafile?: string | null,
    capath?: string | null,
    cadata?: string | null,
  ): void {
    if (cafile == null && capath == null && cadata == null) {
      throw new TypeError("cafile, capath and cadata cannot be all omitted");
    }
    const ctx = this.#pointer();
    if (cafile != null || capath != null) trustLocations(ctx, cafile ?? null, capath ?? null);
    if (cadata != null) {
      if (typeof cadata !== "string") throw new TypeError("cadata must be PEM text");
      trustPemText(ctx, cadata);
    }
  }

  /** Trusts the system's CA store (OpenSSL's default paths, e.g. `/etc/ssl/certs`). */
  loadDefaultCerts(): void {
    trustDefaultPaths(this.#pointer());
  }

  /**
   * The ALPN protocols to offer (client) or accept (server), most preferred
   * first, e.g. `["h2", "http/1.1"]`.
   */
  setAlpnProtocols(protocols: string[]): void {
    if (!Array.isArray(protocols)) throw new TypeError("protocols must be an array of strings");
    // A server's callback reads the list through this buffer: keep it alive with the context.
    const arg = setAlpn(this.#pointer(), protocols, this.protocol === PROTOCOL_TLS_SERVER);
    if (arg !== null) this.#alpnArg = arg;
  }

  /** Sets the TLS 1.2 cipher list (OpenSSL's syntax, e.g. `"ECDHE+AESGCM"`). */
  setCiphers(spec: string): void {
    openssl().crypto.ERR_clear_error();
    const ok = openssl().ssl.SSL_CTX_set_cipher_list(this.#pointer(), toCString(String(spec)));
    if (ok !== 1) {
      openssl().crypto.ERR_clear_error();
      throw new SSLError(SSLC.SSL_ERROR_SSL, "No cipher can be selected.", {
        library: "SSL",
        reason: "NO_CIPHER_MATCH",
        syscall: "SSL_CTX_set_cipher_list",
      });
    }
  }

  /**
   * Wraps `sock` in TLS. `sock` gives up its fd to the new `SSLSocket` (use
   * that one from now on). A client names the server in `serverHostname`.
   */
  wrapSocket(sock: Socket, options: WrapSocketOptions = {}): SSLSocket {
    return new SSLSocket(sock, this, options);
  }

  /**
   * Frees the context's `SSL_CTX` now instead of at garbage collection.
   * Sockets made from it keep working (each holds its own reference).
   */
  close(): void {
    const ctx = this.#ctx;
    if (ctx === null) return;
    this.#ctx = null;
    freeContext.unregister(this);
    openssl().ssl.SSL_CTX_free(ctx);
  }
}

/**
 * A context with Python's `ssl.create_default_context` settings: for
 * `"serverAuth"` (the default) a client context that verifies servers
 * against `cafile`/`capath`/`cadata` or else the system's CA store; for
 * `"clientAuth"` a server context.
 *
 * @example
 * ```ts no-run
 * import { createDefaultContext } from "@asyncore/deno";
 *
 * const ctx = createDefaultContext(); // trusts the system's CAs
 * const test = createDefaultContext("serverAuth", { cafile: "ca.pem" }); // needs ca.pem
 * ```
 */
export function createDefaultContext(
  purpose: "serverAuth" | "clientAuth" = "serverAuth",
  options: DefaultContextOptions = {},
): SSLContext {
  if (purpose !== "serverAuth" && purpose !== "clientAuth") {
    throw new RangeError(`purpose must be "serverAuth" or "clientAuth", not ${purpose}`);
  }
  const ctx = new SSLContext(purpose === "serverAuth" ? PROTOCOL_TLS_CLIENT : PROTOCOL_TLS_SERVER);
  const { cafile, capath, cadata } = options;
  if (cafile != null || capath != null || cadata != null) {
    ctx.loadVerifyLocations(cafile, capath, cadata);
  } else if (ctx.verifyMode !== CERT_NONE) {
    ctx.loadDefaultCerts();
  }
  return ctx;
}

/** `SSL_read`/`SSL_write` take an `int` length. */
const MAX_IO = 0x3fff_0000;
const ptrOut = new BigUint64Array(1);
const ptrOutBytes = new Uint8Array(ptrOut.buffer);
const u32Out = new Uint32Array(1);
const i32Out = new Int32Array(1);

function noFlags(flags: number, call: string): void {
  if (flags !== 0) {
    throw new RangeError(`non-zero flags not allowed in calls to ${call}() on SSLSocket`);
  }
}

/** Python's would-block error for what a TLS call waits for. */
function wantError(want: number): SSLWantReadError | SSLWantWriteError {
  return want === WRITE ? new SSLWantWriteError() : new SSLWantReadError();
}

/** Options of `SSLContext.wrapSocket`. */
export interface WrapSocketOptions {
  /** Act as the server of the handshake. Default false. */
  serverSide?: boolean;
  /** The server's name: sent as SNI and, with `checkHostname`, checked against its certificate. */
  serverHostname?: string | null;
  /**
   * Who runs the handshake. true (default): a blocking connected socket
   * handshakes at once, and a dispatcher on a non-blocking one runs it in
   * the loop; false: the program calls `doHandshake()` itself.
   */
  doHandshakeOnConnect?: boolean;
  /** Seconds a dispatcher-run handshake may take (default: the context's `handshakeTimeout`). */
  handshakeTimeout?: number | null;
  /**
   * What a read sees when the peer closes the connection without
   * close_notify (a "ragged EOF"): true (default, as Python's
   * `suppress_ragged_eofs`), the end of the stream (an empty read); false,
   * an {@linkcode SSLEOFError}, so a truncation attack is not mistaken for
   * the end.
   */
  suppressRaggedEofs?: boolean;
}

/**
 * A socket whose bytes travel inside TLS. Made by
 * {@linkcode SSLContext.wrapSocket} (which takes over the fd of the socket
 * it wraps), not by `new`.
 *
 * @example
 * ```ts no-run
 * import { createDefaultContext, Socket } from "@asyncore/deno";
 *
 * const ctx = createDefaultContext();
 * const raw = new Socket();
 * raw.connect(["example.org", 443]); // needs the internet
 * const tls = ctx.wrapSocket(raw, { serverHostname: "example.org" });
 * tls.sendall("GET / HTTP/1.0\r\nHost: example.org\r\n\r\n");
 * console.log(new TextDecoder().decode(tls.recv(4096)));
 * tls.close();
 * ```
 */
export class SSLSocket extends Socket {
  readonly #tls: TlsTransport;
  /** The context this socket was made from. */
  readonly context: SSLContext;
  /** Whether this end is the server of the handshake. */
  readonly serverSide: boolean;
  /** The name given as `serverHostname`, or null. */
  readonly serverHostname: string | null;
  /** Whether the handshake is run for the program (see `WrapSocketOptions`). */
  readonly doHandshakeOnConnect: boolean;
  /** Seconds a dispatcher-run handshake may take, null for no limit. */
  readonly handshakeTimeout: number | null;
  /** Whether a read takes an EOF without close_notify as the end (see `WrapSocketOptions`). */
  readonly suppressRaggedEofs: boolean;

  /** @ignore Use `SSLContext.wrapSocket`. */
  constructor(sock: Socket, context: SSLContext, options: WrapSocketOptions = {}) {
    if (!(sock instanceof Socket)) throw new TypeError("wrapSocket needs a Socket");
    if (sock instanceof SSLSocket) throw new TypeError("the socket is already an SSLSocket");
    const sockTimeout = sock.gettimeout();
    if (sockTimeout !== null && sockTimeout !== 0) {
      throw new TypeError(
        "wrapSocket takes a blocking or non-blocking socket, not one with a timeout (for now)",
      );
    }
    const serverSide = options.serverSide ?? false;
    const hostname = options.serverHostname ?? null;
    if (serverSide && hostname !== null) {
      throw new TypeError("serverHostname can only be specified in client mode");
    }
    if (hostname !== null && (typeof hostname !== "string" || hostname === "")) {
      throw new TypeError("serverHostname must be a non-empty string");
    }
    if (serverSide && context.protocol !== PROTOCOL_TLS_SERVER) {
      throw new TypeError("Cannot create a server socket with a PROTOCOL_TLS_CLIENT context");
    }
    if (!serverSide && context.protocol !== PROTOCOL_TLS_CLIENT) {
      throw new TypeError("Cannot create a client socket with a PROTOCOL_TLS_SERVER context");
    }
    if (!serverSide && context.checkHostname && hostname === null) {
      throw new TypeError("checkHostname requires serverHostname");
    }
    const ctx = contextPointer(context);
    const blocking = sock.getblocking();
    super(sock.family, sock.type, sock.proto, handOver(sock));
    this.context = context;
    this.serverSide = serverSide;
    this.serverHostname = hostname;
    this.doHandshakeOnConnect = options.doHandshakeOnConnect ?? true;
    this.suppressRaggedEofs = options.suppressRaggedEofs ?? true;
    this.handshakeTimeout = options.handshakeTimeout !== undefined
      ? options.handshakeTimeout
      : context.handshakeTimeout;
    try {
      this.#noDelay();
      this.#tls = new TlsTransport(this, () => super.close(), {
        ctx,
        serverSide,
        serverHostname: hostname,
        checkHostname: context.checkHostname,
        doHandshakeOnConnect: this.doHandshakeOnConnect,
        handshakeTimeout: this.handshakeTimeout,
        suppressRaggedEofs: this.suppressRaggedEofs,
      });
    } catch (error) {
      super.close();
      throw error;
    }
    // Python: a connected blocking socket with do_handshake_on_connect shakes hands at once.
    if (this.doHandshakeOnConnect && blocking && this.#isConnected()) {
      try {
        this.doHandshake();
      } catch (error) {
        this.close();
        throw error;
      }
    }
  }

  /**
   * TLS writes in records and expects answers: with Nagle's algorithm on, a
   * TLS 1.3 server's data after its session tickets waits for the peer's
   * delayed ACK (about 40 ms per handshake).
   */
  #noDelay(): void {
    if (this.type !== C.SOCK_STREAM || (this.family !== C.AF_INET && this.family !== C.AF_INET6)) {
      return;
    }
    try {
      this.setsockopt(C.IPPROTO_TCP, C.TCP_NODELAY, 1);
    } catch (error) {
      if (!(error instanceof OSError)) throw error;
    }
  }

  #isConnected(): boolean {
    try {
      this.getpeername();
      return true;
    } catch (error) {
      if (error instanceof OSError) return false;
      throw error;
    }
  }

  /**
   * The TLS session: what a channel reads, writes and waits through.
   * @ignore
   */
  override [kTransport](): Transport {
    return this.#tls;
  }

  /** Whether the TLS handshake has completed. */
  get handshakeDone(): boolean {
    return this.#tls.handshakeDone;
  }

  /**
   * Runs the handshake. On a non-blocking socket it throws
   * {@linkcode SSLWantReadError} or {@linkcode SSLWantWriteError} until it
   * completes: call it again when the socket is ready that way.
   */
  doHandshake(): void {
    const want = this.#tls.handshakeStep();
    if (want !== 0) throw wantError(want);
  }

  /** Like `send`, but returns -1 instead of throwing when it would block. */
  override trySend(data: BytesLike, flags = 0): number {
    noFlags(flags, "send");
    return this.#tls.trySend(asBytes(data));
  }

  /** Sends `data` over TLS; a non-blocking socket that cannot throws `SSLWantWriteError`/`SSLWantReadError`. */
  override send(data: BytesLike, flags = 0): number {
    const n = this.trySend(data, flags);
    if (n === -1) throw wantError(this.#tls.blockedOn("write"));
    return n;
  }

  /** Sends all of `data` (blocking sockets). */
  override sendall(data: BytesLike, flags = 0): void {
    let bytes = asBytes(data);
    while (bytes.length > 0) bytes = bytes.subarray(this.send(bytes, flags));
  }

  /** Like `recvInto`, but returns -1 instead of throwing when it would block; 0 at the end. */
  override tryRecvInto(buffer: Uint8Array, n: number = buffer.length, flags = 0): number {
    noFlags(flags, "recv");
    if (n > buffer.length) {
      throw new RangeError(`recv size ${n} exceeds the buffer (${buffer.length} bytes)`);
    }
    return this.#tls.tryRecvInto(buffer, n);
  }

  /** Receives up to `n` bytes of application data; empty means the session ended. */
  override recv(n: number, flags = 0): Uint8Array {
    if (!Number.isInteger(n) || n < 0) {
      throw new RangeError(`recv size must be a non-negative integer, not ${n}`);
    }
    const buf = new Uint8Array(Math.min(n, MAX_IO));
    const got = this.tryRecvInto(buf, buf.length, flags);
    if (got === -1) throw wantError(this.#tls.blockedOn("read"));
    return got === buf.length ? buf : buf.slice(0, got);
  }

  /** Receives into `buffer`; returns the count (0: the session ended). */
  override recvInto(buffer: Uint8Array, n: number = buffer.length, flags = 0): number {
    const got = this.tryRecvInto(buffer, n, flags);
    if (got === -1) throw wantError(this.#tls.blockedOn("read"));
    return got;
  }

  /** False: a file's bytes must pass through OpenSSL, never straight from the kernel. */
  override canSendfile(): boolean {
    return false;
  }

  /**
   * Refused: `sendfile(2)` would put the file's bytes on the wire unencrypted.
   * (`sendfile` reads the file and sends it through TLS instead, as Python's
   * `SSLSocket.sendfile` does.)
   */
  override trySendfile(inFd: number, offset: number, count: number): number {
    return this.#tls.trySendfile(inFd, offset, count);
  }

  /** Datagrams have no TLS here. */
  override sendto(): number {
    throw new TypeError("sendto is not allowed on an SSLSocket");
  }

  /** Datagrams have no TLS here. */
  override recvfrom(): [Uint8Array, never] {
    throw new TypeError("recvfrom is not allowed on an SSLSocket");
  }

  /**
   * `null` (blocking) and 0 (non-blocking) as on a `Socket`; a timeout in
   * seconds is refused for now: the TLS calls do not wait under one yet.
   */
  override settimeout(seconds: number | null): void {
    if (seconds !== null && seconds !== 0 && typeof seconds === "number" && seconds > 0) {
      throw new TypeError("an SSLSocket takes settimeout(null) or settimeout(0) only, for now");
    }
    super.settimeout(seconds);
  }

  /** Refused, as in Python: two objects cannot share one TLS session. */
  override dup(): never {
    throw new TypeError("Can't dup() SSLSocket instances");
  }

  /** Decrypted bytes OpenSSL already holds, readable without touching the socket. */
  pending(): number {
    return this.#tls.pending();
  }

  /**
   * Ends the TLS session (close_notify both ways) and returns the plain
   * socket on the same fd; this object is then closed. A non-blocking socket
   * may throw `SSLWantReadError` (the peer's close_notify has not come yet):
   * call it again when readable.
   */
  unwrap(): Socket {
    const want = this.#tls.shutdownStep();
    if (want !== 0) throw wantError(want);
    this.#tls.release();
    return new Socket(this.family, this.type, this.proto, this.detach());
  }

  /**
   * Closes the session and the fd. After a completed handshake it sends
   * close_notify first, once and without blocking (the fd is made
   * non-blocking; a full socket buffer just drops it); before, or after a
   * handshake that timed out, it writes nothing. Frees the `SSL` object.
   */
  override close(): void {
    this.#tls.close();
  }

  /** The `SSL` object once the handshake is done, else null. */
  #established(): Deno.PointerObject | null {
    return this.#tls.handshakeDone ? this.#tls.session() : null;
  }

  /**
   * The peer's certificate: Python's dictionary (`subject`, `issuer`,
   * `version`, `serialNumber`, `notBefore`, `notAfter`, `subjectAltName`),
   * `{}` when it was not verified (`CERT_NONE`), its DER bytes with
   * `binaryForm`, or null when the peer sent none. Throws before the
   * handshake is done.
   */
  getpeercert(binaryForm?: false): PeerCertificate | null;
  /** The peer's certificate as DER bytes, or null when the peer sent none. */
  getpeercert(binaryForm: true): Uint8Array | null;
  /** The dictionary, or the DER bytes with `binaryForm`, or null. */
  getpeercert(binaryForm?: boolean): PeerCertificate | Uint8Array | null;
  getpeercert(binaryForm = false): PeerCertificate | Uint8Array | null {
    const ssl = this.#tls.session();
    if (ssl === null) {
      throw new OSError(E.EBADF, { message: "Bad file descriptor (SSLSocket is closed)" });
    }
    if (!this.#tls.handshakeDone) throw new Error("handshake not done yet");
    const der = peerCertificateDer(ssl);
    if (der === null || binaryForm) return der;
    if (this.context.verifyMode === CERT_NONE) return {};
    return decodeCertificate(der);
  }

  /** The negotiated protocol, e.g. `"TLSv1.3"`, or null before the handshake. */
  version(): string | null {
    const ssl = this.#established();
    return ssl === null ? null : readCString(openssl().ssl.SSL_get_version(ssl));
  }

  /** `[name, protocol, secretBits]` of the negotiated cipher, or null. */
  cipher(): [name: string, protocol: string, bits: number] | null {
    const ssl = this.#established();
    if (ssl === null) return null;
    const lib = openssl().ssl;
    const c = lib.SSL_get_current_cipher(ssl);
    if (c === null) return null;
    const bits = lib.SSL_CIPHER_get_bits(c, new Uint8Array(i32Out.buffer));
    return [
      readCString(lib.SSL_CIPHER_get_name(c)) ?? "",
      readCString(lib.SSL_CIPHER_get_version(c)) ?? "",
      bits,
    ];
  }

  /** The ALPN protocol the server chose, or null. */
  selectedAlpnProtocol(): string | null {
    const ssl = this.#established();
    if (ssl === null) return null;
    ptrOut[0] = 0n;
    u32Out[0] = 0;
    openssl().ssl.SSL_get0_alpn_selected(ssl, ptrOutBytes, new Uint8Array(u32Out.buffer));
    const len = u32Out[0];
    const ptr = Deno.UnsafePointer.create(ptrOut[0]);
    if (len === 0 || ptr === null) return null;
    return new TextDecoder().decode(
      new Uint8Array(new Deno.UnsafePointerView(ptr).getArrayBuffer(len)).slice(),
    );
  }

  /** Like Python's repr. */
  override toString(): string {
    return `<SSLSocket fd=${this.fileno()}, family=${this.family}, type=${this.type}, proto=${this.proto}, serverSide=${this.serverSide}>`;
  }
}

// What would bypass TLS (ancillary data, datagrams) is refused, as Python's SSLSocket does.
for (
  const name of [
    "recvfromInto",
    "sendmsg",
    "recvmsg",
    "recvmmsgInto",
    "tryRecvmmsgInto",
    "sendmmsg",
    "trySendmmsg",
  ] as const
) {
  const shown = name.replace(/^try(.)/, (_, c: string) => c.toLowerCase());
  Object.defineProperty(SSLSocket.prototype, name, {
    value(): never {
      throw new TypeError(`${shown} is not allowed on an SSLSocket`);
    },
    writable: true,
    configurable: true,
  });
}
