/**
 * What an `SSLContext` loads into its `SSL_CTX`: this end's certificate
 * chain and key, the CA certificates it trusts, and ALPN (with the server's
 * selection callback). Functions over the context's pointer; `SSLContext`
 * checks its arguments' types and keeps what must stay alive. Internal.
 *
 * @module
 */

import { OSError } from "../ffi/errno.ts";
import { openssl, SSLC } from "../ffi/openssl.ts";
import { asBytes, toCString } from "../ffi/bytes.ts";
import { queuedSSLError, SSLError, takeQueuedError } from "./errors.ts";

/** Throws what OpenSSL queued when `ok` is false: `OSError` for a file error, else `SSLError`. */
export function check(ok: boolean, what: string, filename?: string): asserts ok {
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

/**
 * Loads the certificate chain in `certfile` and the private key in `keyfile`
 * (PEM files), decrypting the key with `password` (empty: none), and checks
 * that they match.
 */
export function useCertChainFiles(
  ctx: Deno.PointerObject,
  certfile: string,
  keyfile: string,
  password: string,
): void {
  const { ssl: lib, crypto } = openssl();
  // The default password callback copies the userdata: set, use, forget.
  const pwBuf = toCString(password);
  lib.SSL_CTX_set_default_passwd_cb_userdata(ctx, pwBuf);
  try {
    crypto.ERR_clear_error();
    check(
      lib.SSL_CTX_use_certificate_chain_file(ctx, toCString(certfile)) === 1,
      "SSL_CTX_use_certificate_chain_file",
      certfile,
    );
    crypto.ERR_clear_error();
    check(
      lib.SSL_CTX_use_PrivateKey_file(ctx, toCString(keyfile), SSLC.SSL_FILETYPE_PEM) === 1,
      "SSL_CTX_use_PrivateKey_file",
      keyfile,
    );
    crypto.ERR_clear_error();
    check(lib.SSL_CTX_check_private_key(ctx) === 1, "SSL_CTX_check_private_key");
  } finally {
    lib.SSL_CTX_set_default_passwd_cb_userdata(ctx, null);
    pwBuf.fill(0);
  }
}

/** `text` as bytes, checked to look like PEM (a path here is a mistake worth naming). */
export function pemText(text: unknown, what: string): Uint8Array {
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

/**
 * Loads the certificate chain in `certPem` (this end's certificate first,
 * then intermediates, which replace any chain loaded before, as the file
 * form does) and the private key in `keyPem` (PEM text), decrypting the key
 * with `password`, and checks that they match.
 */
export function useCertChainPem(
  ctx: Deno.PointerObject,
  certPem: Uint8Array,
  keyPem: Uint8Array,
  password: string,
): void {
  const { ssl: lib, crypto } = openssl();
  // With no callback, OpenSSL's default one takes this as the password ("" fails, never prompts).
  const pwBuf = toCString(password, "password");
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

/** Trusts the CA certificates in a PEM file and/or a hashed directory. */
export function trustLocations(
  ctx: Deno.PointerObject,
  cafile: string | null,
  capath: string | null,
): void {
  const { ssl: lib, crypto } = openssl();
  crypto.ERR_clear_error();
  const ok = lib.SSL_CTX_load_verify_locations(
    ctx,
    cafile !== null ? toCString(cafile) : null,
    capath !== null ? toCString(capath) : null,
  );
  check(ok === 1, "SSL_CTX_load_verify_locations", cafile ?? capath ?? undefined);
}

/** Trusts the CA certificates in PEM text (several may follow each other). */
export function trustPemText(ctx: Deno.PointerObject, cadata: string): void {
  const { ssl: lib, crypto } = openssl();
  const store = lib.SSL_CTX_get_cert_store(ctx);
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
      { library: "X509", reason: "NO_CERTIFICATE_OR_CRL_FOUND" },
    );
  }
}

/** Trusts the system's CA store (OpenSSL's default paths). */
export function trustDefaultPaths(ctx: Deno.PointerObject): void {
  openssl().crypto.ERR_clear_error();
  check(
    openssl().ssl.SSL_CTX_set_default_verify_paths(ctx) === 1,
    "SSL_CTX_set_default_verify_paths",
  );
}

const ALPN_SELECT = {
  parameters: ["pointer", "pointer", "pointer", "pointer", "u32", "pointer"],
  result: "i32",
} as const;
/** One callback for every server context in the process (made on first use). */
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

/**
 * Sets the ALPN protocols: offered by a client, accepted by a server. For a
 * server, returns the buffer its callback reads, which the caller must keep
 * alive as long as the context; null for a client.
 */
export function setAlpn(
  ctx: Deno.PointerObject,
  protocols: string[],
  server: boolean,
): Uint8Array | null {
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
  const { ssl: lib } = openssl();
  if (!server) {
    if (lib.SSL_CTX_set_alpn_protos(ctx, wire, wire.length) !== 0) {
      throw queuedSSLError("SSL_CTX_set_alpn_protos");
    }
    return null;
  }
  const arg = new Uint8Array(4 + wire.length);
  new DataView(arg.buffer).setUint32(0, wire.length, true);
  arg.set(wire, 4);
  lib.SSL_CTX_set_alpn_select_cb(ctx, alpnSelector().pointer, Deno.UnsafePointer.of(arg));
  return arg;
}
