/**
 * The TLS error classes, as Python's `ssl` module has them, and the one
 * place that turns OpenSSL's error queue into one of them.
 *
 * @module
 */

import { OSError } from "../ffi/errno.ts";
import { openssl, SSLC } from "../ffi/openssl.ts";
import { readCString } from "../ffi/bytes.ts";

const CODE_NAMES: Record<number, string> = {
  1: "SSL_ERROR_SSL",
  2: "SSL_ERROR_WANT_READ",
  3: "SSL_ERROR_WANT_WRITE",
  4: "SSL_ERROR_WANT_X509_LOOKUP",
  5: "SSL_ERROR_SYSCALL",
  6: "SSL_ERROR_ZERO_RETURN",
  8: "SSL_ERROR_EOF",
};

/** Options of {@linkcode SSLError}. */
export interface SSLErrorOptions {
  /** OpenSSL's library name, e.g. `"SSL"`. */
  library?: string;
  /** OpenSSL's reason mnemonic, e.g. `"CERTIFICATE_VERIFY_FAILED"`. */
  reason?: string;
  /** The OpenSSL call that failed. */
  syscall?: string;
}

/**
 * A TLS failure, as Python's `ssl.SSLError`: `errno` is the `SSL_ERROR_*`
 * code (1 for a protocol error), `library` and `reason` name what OpenSSL
 * reported, and the message reads
 * `[SSL: WRONG_VERSION_NUMBER] wrong version number`.
 *
 * @example
 * ```ts
 * import { createDefaultContext, socketpair, SSLError } from "@asyncore/deno";
 *
 * const [sock, peer] = socketpair();
 * peer.sendall("HTTP/1.0 400 Bad Request\r\n\r\n"); // a peer that does not speak TLS
 * const tls = createDefaultContext().wrapSocket(sock, {
 *   serverHostname: "localhost",
 *   doHandshakeOnConnect: false,
 * });
 * try {
 *   tls.doHandshake();
 * } catch (e) {
 *   if (e instanceof SSLError) console.log(e.reason); // WRONG_VERSION_NUMBER
 * }
 * tls.close();
 * peer.close();
 * ```
 */
export class SSLError extends OSError {
  /** OpenSSL's library, e.g. `"SSL"`, when it named one. */
  readonly library?: string;
  /** OpenSSL's reason, e.g. `"WRONG_VERSION_NUMBER"`, when it named one. */
  readonly reason?: string;

  /** Builds the error for `SSL_ERROR_*` code `code` with the text `message`. */
  constructor(code: number, message: string, options: SSLErrorOptions = {}) {
    super(code, { message, syscall: options.syscall });
    this.name = "SSLError";
    // OSError fills the message as "[Errno n] text"; Python's SSLError shows the text alone.
    this.message = message;
    (this as { code: string }).code = CODE_NAMES[code] ?? `SSL_ERROR_${code}`;
    if (options.library !== undefined) this.library = options.library;
    if (options.reason !== undefined) this.reason = options.reason;
  }
}

/** A non-blocking TLS operation must wait until the socket is readable. */
export class SSLWantReadError extends SSLError {
  /** Builds the error. */
  constructor(message = "The operation did not complete (read)") {
    super(SSLC.SSL_ERROR_WANT_READ, message);
    this.name = "SSLWantReadError";
  }
}

/** A non-blocking TLS operation must wait until the socket is writable. */
export class SSLWantWriteError extends SSLError {
  /** Builds the error. */
  constructor(message = "The operation did not complete (write)") {
    super(SSLC.SSL_ERROR_WANT_WRITE, message);
    this.name = "SSLWantWriteError";
  }
}

/** The peer closed the TLS session cleanly (close_notify). */
export class SSLZeroReturnError extends SSLError {
  /** Builds the error. */
  constructor(message = "TLS/SSL connection has been closed (EOF)") {
    super(SSLC.SSL_ERROR_ZERO_RETURN, message);
    this.name = "SSLZeroReturnError";
  }
}

/** The connection ended without close_notify, in violation of the protocol. */
export class SSLEOFError extends SSLError {
  /** Builds the error. */
  constructor(message = "EOF occurred in violation of protocol", options?: SSLErrorOptions) {
    super(8, message, options);
    this.name = "SSLEOFError";
  }
}

/**
 * The peer's certificate failed verification: `verifyCode` is OpenSSL's
 * `X509_V_ERR_*` number and `verifyMessage` its text (e.g. `"certificate
 * has expired"`, `"Hostname mismatch, certificate is not valid for
 * 'example.org'."`).
 */
export class SSLCertVerificationError extends SSLError {
  /** The `X509_V_ERR_*` code. */
  readonly verifyCode: number;
  /** The verification failure in words. */
  readonly verifyMessage: string;

  /** Builds the error. */
  constructor(verifyCode: number, verifyMessage: string, options: SSLErrorOptions = {}) {
    super(
      SSLC.SSL_ERROR_SSL,
      `[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: ${verifyMessage}`,
      { library: "SSL", reason: "CERTIFICATE_VERIFY_FAILED", ...options },
    );
    this.name = "SSLCertVerificationError";
    this.verifyCode = verifyCode;
    this.verifyMessage = verifyMessage;
  }
}

/** `"SSL routines"` → `"SSL"`, as Python names OpenSSL's libraries. */
function libraryName(text: string | null): string | undefined {
  if (text === null) return undefined;
  if (/^x509/i.test(text)) return "X509";
  return text.replace(/ routines$/, "").replace(/ library$/, "").toUpperCase()
    .replace(/[^A-Z0-9]+/g, "_");
}

/** `"certificate verify failed"` → `"CERTIFICATE_VERIFY_FAILED"`. */
function reasonName(text: string | null): string | undefined {
  if (text === null) return undefined;
  return text.toUpperCase().replace(/[^A-Z0-9]+/g, "_").replace(/^_|_$/g, "");
}

/** The first entry of OpenSSL's error queue (the queue is then emptied). */
export interface QueuedError {
  /** The packed error code, or 0n when the queue was empty. */
  code: bigint;
  /** `ERR_GET_REASON(code)`. */
  reasonCode: number;
  /** Library mnemonic. */
  library?: string;
  /** Reason mnemonic. */
  reason?: string;
  /** Reason text. */
  reasonText?: string;
}

/** Takes the first error of the queue and clears the rest. */
export function takeQueuedError(): QueuedError {
  const { crypto } = openssl();
  const code = crypto.ERR_get_error();
  crypto.ERR_clear_error();
  if (code === 0n) return { code, reasonCode: 0 };
  const reasonText = readCString(crypto.ERR_reason_error_string(code)) ?? undefined;
  return {
    code,
    reasonCode: Number(code & BigInt(SSLC.ERR_REASON_MASK)),
    library: libraryName(readCString(crypto.ERR_lib_error_string(code))),
    reason: reasonName(reasonText ?? null),
    reasonText,
  };
}

/** An `SSLError` for an OpenSSL call (not an `SSL_*` I/O call) that failed, from the queue. */
export function queuedSSLError(what: string, fallback = "unknown error"): SSLError {
  const q = takeQueuedError();
  const text = q.reasonText ?? fallback;
  const head = q.library && q.reason ? `[${q.library}: ${q.reason}] ` : "";
  return new SSLError(SSLC.SSL_ERROR_SSL, `${head}${text} (${what})`, {
    library: q.library,
    reason: q.reason,
    syscall: what,
  });
}
