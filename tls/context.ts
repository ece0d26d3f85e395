/**
 * `SSLContext` and `createDefaultContext`, as Python's `ssl` module has
 * them: one OpenSSL `SSL_CTX` holding the settings, certificates and trust
 * store that every `SSLSocket` made from it shares.
 *
 * @module
 */

import { OSError } from "../ffi/errno.ts";
import { openssl, SSLC } from "../ffi/openssl.ts";
import { asBytes, toCString } from "../ffi/bytes.ts";
import type { Socket } from "../ffi/socket.ts";
import { queuedSSLError, SSLError, takeQueuedError } from "./errors.ts";
import { SSLSocket, type WrapSocketOptions } from "./ssl_socket.ts";
import {
  CERT_NONE,
  CERT_OPTIONAL,
  CERT_REQUIRED,
  HANDSHAKE_TIMEOUT,
  PROTOCOL_TLS_CLIENT,
  PROTOCOL_TLS_SERVER,
} from "./constants.ts";

export {
  CERT_NONE,
  CERT_OPTIONAL,
  CERT_REQUIRED,
  HANDSHAKE_TIMEOUT,
  PROTOCOL_TLS_CLIENT,
  PROTOCOL_TLS_SERVER,
};

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

const ALPN_SELECT = {
  parameters: ["pointer", "pointer", "pointer", "pointer", "u32", "pointer"],
  result: "i32",
} as const;
let alpnCallback: Deno.UnsafeCallback<typeof ALPN_SELECT> | undefined;

/**
 * The server's ALPN choice: its own first preference the client offers.
 * `arg` points at a u32 length followed by the server's wire-format list.
 */
function alpnSelector(): Deno.UnsafeCallback<typeof ALPN_SELECT> {
  return alpnCallback ??= new Deno.UnsafeCallback(
    ALPN_SELECT,
    (_ssl, out, outlen, input, inlen, arg) => {
      if (arg === null) return SSLC.SSL_TLSEXT_ERR_NOACK;
      const len = new Deno.UnsafePointerView(arg).getUint32(0);
      const server = Deno.UnsafePointer.offset(arg, 4);
      const r = openssl().ssl.SSL_select_next_proto(out, outlen, server, len, input, inlen);
      return r === SSLC.OPENSSL_NPN_NEGOTIATED ? SSLC.SSL_TLSEXT_ERR_OK : SSLC.SSL_TLSEXT_ERR_NOACK;
    },
  );
}

function check(ok: boolean, what: string, filename?: string): asserts ok {
  if (ok) return;
  const q = takeQueuedError();
  // A system error (bit 31 in OpenSSL 3): the file is missing or unreadable.
  if ((q.code & 0x80000000n) !== 0n) {
    throw new OSError(Number(q.code & 0x7fffffffn), { syscall: what, filename });
  }
  const text = q.reasonText ?? "failed";
  const head = q.library && q.reason ? `[${q.library}: ${q.reason}] ` : "";
  throw new SSLError(SSLC.SSL_ERROR_SSL, `${head}${text}`, {
    library: q.library,
    reason: q.reason,
    syscall: what,
  });
}

/** PEM text for the options form of {@linkcode SSLContext.loadCertChain}. */
export interface CertChainOptions {
  /** The certificate chain as PEM text: this end's certificate first, then intermediates. */
  cert: string | Uint8Array;
  /** The private key as PEM text; default: the key in `cert`. */
  key?: string | Uint8Array | null;
  /** The password of an encrypted key, or a function that returns it. */
  password?: string | (() => string) | null;
}

/** `text` as bytes, checked to look like PEM (a path here is a mistake worth naming). */
function pemText(text: unknown, what: string): Uint8Array {
  const bytes = asBytes(text, what);
  if (!new TextDecoder().decode(bytes.subarray(0, 64 * 1024)).includes("-----BEGIN ")) {
    throw new TypeError(
      `${what} must be PEM text ("-----BEGIN ..."); to load files, call loadCertChain(certfile, keyfile)`,
    );
  }
  return bytes;
}

/** Runs `fn` with a read-only memory BIO over `bytes`, freed after. */
function withMemBio(bytes: Uint8Array, fn: (bio: Deno.PointerObject) => void): void {
  const { crypto } = openssl();
  crypto.ERR_clear_error();
  const bio = crypto.BIO_new_mem_buf(bytes, bytes.length);
  if (bio === null) throw queuedSSLError("BIO_new_mem_buf");
  try {
    fn(bio);
  } finally {
    crypto.BIO_free(bio);
  }
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
 * ```ts ignore
 * const ctx = new SSLContext(PROTOCOL_TLS_CLIENT);
 * ctx.loadVerifyLocations("ca.pem");
 * const tls = ctx.wrapSocket(sock, { serverHostname: "localhost" });
 * ```
 * @example Server
 * ```ts ignore
 * const ctx = new SSLContext(PROTOCOL_TLS_SERVER);
 * ctx.loadCertChain("cert.pem", "key.pem");
 * new EchoHandler(ctx.wrapSocket(sock, { serverSide: true }));
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

  /** The `SSL_CTX` pointer (internal; throws once closed). */
  _pointer(): Deno.PointerObject {
    if (this.#ctx === null) throw new TypeError("the SSLContext is closed");
    return this.#ctx;
  }

  #applyVerify(): void {
    const mode = this.#verifyMode === CERT_NONE
      ? SSLC.SSL_VERIFY_NONE
      : this.#verifyMode === CERT_OPTIONAL
      ? SSLC.SSL_VERIFY_PEER
      : SSLC.SSL_VERIFY_PEER | SSLC.SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    openssl().ssl.SSL_CTX_set_verify(this._pointer(), mode, null);
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
    const r = openssl().ssl.SSL_CTX_ctrl(this._pointer(), cmd, BigInt(VERSIONS[v]), null);
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
   * ```ts ignore
   * const ctx = new SSLContext(PROTOCOL_TLS_SERVER);
   * ctx.loadCertChain("cert.pem", "key.pem");
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
   * ```ts ignore
   * const ctx = new SSLContext(PROTOCOL_TLS_SERVER);
   * ctx.loadCertChain({
   *   cert: Deno.readTextFileSync("cert.pem"),
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
      this.#loadCertChainPem(certfile);
      return;
    }
    if (typeof certfile !== "string") throw new TypeError("certfile must be a path string");
    const ctx = this._pointer();
    const { ssl: lib, crypto } = openssl();
    const pw = typeof password === "function" ? password() : password ?? "";
    if (typeof pw !== "string") throw new TypeError("password must be a string");
    // The default password callback copies the userdata: set, use, forget.
    const pwBuf = toCString(pw);
    lib.SSL_CTX_set_default_passwd_cb_userdata(ctx, pwBuf);
    try {
      crypto.ERR_clear_error();
      check(
        lib.SSL_CTX_use_certificate_chain_file(ctx, toCString(certfile)) === 1,
        "SSL_CTX_use_certificate_chain_file",
        certfile,
      );
      const key = keyfile ?? certfile;
      crypto.ERR_clear_error();
      check(
        lib.SSL_CTX_use_PrivateKey_file(ctx, toCString(key), SSLC.SSL_FILETYPE_PEM) === 1,
        "SSL_CTX_use_PrivateKey_file",
        key,
      );
      crypto.ERR_clear_error();
      check(lib.SSL_CTX_check_private_key(ctx) === 1, "SSL_CTX_check_private_key");
    } finally {
      lib.SSL_CTX_set_default_passwd_cb_userdata(ctx, null);
      pwBuf.fill(0);
    }
  }

  #loadCertChainPem(options: CertChainOptions): void {
    const certPem = pemText(options.cert, "cert");
    const keyPem = options.key == null ? certPem : pemText(options.key, "key");
    const { password } = options;
    const pw = typeof password === "function" ? password() : password ?? "";
    if (typeof pw !== "string") throw new TypeError("password must be a string");
    const ctx = this._pointer();
    const { ssl: lib, crypto } = openssl();
    // With no callback, OpenSSL's default one takes this as the password ("" fails, never prompts).
    const pwBuf = toCString(pw, "password");
    try {
      withMemBio(certPem, (bio) => {
        crypto.ERR_clear_error();
        const leaf = crypto.PEM_read_bio_X509_AUX(bio, null, null, null);
        check(leaf !== null, "PEM_read_bio_X509_AUX");
        try {
          check(lib.SSL_CTX_use_certificate(ctx, leaf) === 1, "SSL_CTX_use_certificate");
        } finally {
          crypto.X509_free(leaf);
        }
        // The intermediates replace any chain loaded before, as the file form does.
        lib.SSL_CTX_ctrl(ctx, SSLC.SSL_CTRL_CHAIN, 0n, null);
        for (;;) {
          const x = crypto.PEM_read_bio_X509(bio, null, null, null);
          if (x === null) break;
          if (lib.SSL_CTX_ctrl(ctx, SSLC.SSL_CTRL_CHAIN_CERT, 0n, x) !== 1n) {
            crypto.X509_free(x);
            check(false, "SSL_CTX_add0_chain_cert");
          }
        }
        // The list ends with "no start line"; any other error is a broken certificate.
        const q = takeQueuedError();
        if (q.code !== 0n && q.reason !== "NO_START_LINE") {
          throw new SSLError(SSLC.SSL_ERROR_SSL, `[${q.library}: ${q.reason}] ${q.reasonText}`, {
            library: q.library,
            reason: q.reason,
            syscall: "PEM_read_bio_X509",
          });
        }
      });
      withMemBio(keyPem, (bio) => {
        crypto.ERR_clear_error();
        const pkey = crypto.PEM_read_bio_PrivateKey(bio, null, null, pwBuf);
        check(pkey !== null, "PEM_read_bio_PrivateKey");
        try {
          check(lib.SSL_CTX_use_PrivateKey(ctx, pkey) === 1, "SSL_CTX_use_PrivateKey");
        } finally {
          crypto.EVP_PKEY_free(pkey);
        }
      });
      crypto.ERR_clear_error();
      check(lib.SSL_CTX_check_private_key(ctx) === 1, "SSL_CTX_check_private_key");
    } finally {
      pwBuf.fill(0);
    }
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
    const ctx = this._pointer();
    const { ssl: lib, crypto } = openssl();
    if (cafile != null || capath != null) {
      crypto.ERR_clear_error();
      const ok = lib.SSL_CTX_load_verify_locations(
        ctx,
        cafile != null ? toCString(cafile) : null,
        capath != null ? toCString(capath) : null,
      );
      check(ok === 1, "SSL_CTX_load_verify_locations", cafile ?? capath ?? undefined);
    }
    if (cadata != null) this.#loadPemText(cadata);
  }

  #loadPemText(cadata: string): void {
    if (typeof cadata !== "string") throw new TypeError("cadata must be PEM text");
    const { ssl: lib, crypto } = openssl();
    const store = lib.SSL_CTX_get_cert_store(this._pointer());
    const text = new TextEncoder().encode(cadata);
    crypto.ERR_clear_error();
    const bio = crypto.BIO_new_mem_buf(text, text.length);
    if (bio === null) throw queuedSSLError("BIO_new_mem_buf");
    let count = 0;
    try {
      for (;;) {
        const x = crypto.PEM_read_bio_X509(bio, null, null, null);
        if (x === null) break;
        // A certificate already in the store is no error (as Python).
        crypto.X509_STORE_add_cert(store, x);
        crypto.X509_free(x);
        count++;
      }
    } finally {
      crypto.BIO_free(bio);
      crypto.ERR_clear_error(); // "no start line" after the last certificate
    }
    if (count === 0) {
      throw new SSLError(
        SSLC.SSL_ERROR_SSL,
        "[X509: NO_CERTIFICATE_OR_CRL_FOUND] no certificate found in cadata",
        {
          library: "X509",
          reason: "NO_CERTIFICATE_OR_CRL_FOUND",
        },
      );
    }
  }

  /** Trusts the system's CA store (OpenSSL's default paths, e.g. `/etc/ssl/certs`). */
  loadDefaultCerts(): void {
    openssl().crypto.ERR_clear_error();
    check(
      openssl().ssl.SSL_CTX_set_default_verify_paths(this._pointer()) === 1,
      "SSL_CTX_set_default_verify_paths",
    );
  }

  /**
   * The ALPN protocols to offer (client) or accept (server), most preferred
   * first, e.g. `["h2", "http/1.1"]`.
   */
  setAlpnProtocols(protocols: string[]): void {
    if (!Array.isArray(protocols)) throw new TypeError("protocols must be an array of strings");
    const parts: Uint8Array[] = [];
    for (const p of protocols) {
      const b = new TextEncoder().encode(String(p));
      if (b.length === 0 || b.length > 255) {
        throw new RangeError(`ALPN protocols must be 1 to 255 bytes long: ${JSON.stringify(p)}`);
      }
      parts.push(Uint8Array.of(b.length), b);
    }
    const wire = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      wire.set(p, at);
      at += p.length;
    }
    const ctx = this._pointer();
    const { ssl: lib } = openssl();
    if (this.protocol === PROTOCOL_TLS_CLIENT) {
      if (lib.SSL_CTX_set_alpn_protos(ctx, wire, wire.length) !== 0) {
        throw queuedSSLError("SSL_CTX_set_alpn_protos");
      }
      return;
    }
    // The callback reads the list through `arg`: keep it alive with the context.
    const arg = new Uint8Array(4 + wire.length);
    new DataView(arg.buffer).setUint32(0, wire.length, true);
    arg.set(wire, 4);
    this.#alpnArg = arg;
    lib.SSL_CTX_set_alpn_select_cb(ctx, alpnSelector().pointer, Deno.UnsafePointer.of(arg));
  }

  /** Sets the TLS 1.2 cipher list (OpenSSL's syntax, e.g. `"ECDHE+AESGCM"`). */
  setCiphers(spec: string): void {
    openssl().crypto.ERR_clear_error();
    const ok = openssl().ssl.SSL_CTX_set_cipher_list(this._pointer(), toCString(String(spec)));
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
 * ```ts ignore
 * const ctx = createDefaultContext();            // trusts the system's CAs
 * const test = createDefaultContext("serverAuth", { cafile: "ca.pem" });
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
