/**
 * The OpenSSL symbol tables (`libssl` and `libcrypto`, names from the
 * platform table) and their one guarded, lazy load: nothing here opens a
 * library until the first TLS object is made, so a program that uses no TLS
 * never touches OpenSSL. Each entry carries the C declaration it binds.
 * Macros (`SSL_set_mode`, `SSL_set_tlsext_host_name`, ...) are their
 * `*_ctrl` calls with the numbers in {@linkcode SSLC}.
 *
 * @module
 */

import { platform } from "./platform.ts";

const sslSymbols = {
  /** const SSL_METHOD *TLS_method(void); */
  TLS_method: { parameters: [], result: "pointer" },
  /** SSL_CTX *SSL_CTX_new(const SSL_METHOD *method); */
  SSL_CTX_new: { parameters: ["pointer"], result: "pointer" },
  /** void SSL_CTX_free(SSL_CTX *ctx); */
  SSL_CTX_free: { parameters: ["pointer"], result: "void" },
  /** long SSL_CTX_ctrl(SSL_CTX *ctx, int cmd, long larg, void *parg); */
  SSL_CTX_ctrl: { parameters: ["pointer", "i32", "i64", "pointer"], result: "i64" },
  /** uint64_t SSL_CTX_set_options(SSL_CTX *ctx, uint64_t op); */
  SSL_CTX_set_options: { parameters: ["pointer", "u64"], result: "u64" },
  /** uint64_t SSL_CTX_clear_options(SSL_CTX *ctx, uint64_t op); */
  SSL_CTX_clear_options: { parameters: ["pointer", "u64"], result: "u64" },
  /** uint64_t SSL_CTX_get_options(const SSL_CTX *ctx); */
  SSL_CTX_get_options: { parameters: ["pointer"], result: "u64" },
  /** void SSL_CTX_set_verify(SSL_CTX *ctx, int mode, SSL_verify_cb cb); */
  SSL_CTX_set_verify: { parameters: ["pointer", "i32", "pointer"], result: "void" },
  /** int SSL_CTX_set_default_verify_paths(SSL_CTX *ctx); */
  SSL_CTX_set_default_verify_paths: { parameters: ["pointer"], result: "i32" },
  /** int SSL_CTX_load_verify_locations(SSL_CTX *ctx, const char *CAfile, const char *CApath); */
  SSL_CTX_load_verify_locations: { parameters: ["pointer", "buffer", "buffer"], result: "i32" },
  /** X509_STORE *SSL_CTX_get_cert_store(const SSL_CTX *ctx); */
  SSL_CTX_get_cert_store: { parameters: ["pointer"], result: "pointer" },
  /** int SSL_CTX_use_certificate_chain_file(SSL_CTX *ctx, const char *file); */
  SSL_CTX_use_certificate_chain_file: { parameters: ["pointer", "buffer"], result: "i32" },
  /** int SSL_CTX_use_PrivateKey_file(SSL_CTX *ctx, const char *file, int type); */
  SSL_CTX_use_PrivateKey_file: { parameters: ["pointer", "buffer", "i32"], result: "i32" },
  /** int SSL_CTX_use_certificate(SSL_CTX *ctx, X509 *x); (takes its own reference) */
  SSL_CTX_use_certificate: { parameters: ["pointer", "pointer"], result: "i32" },
  /** int SSL_CTX_use_PrivateKey(SSL_CTX *ctx, EVP_PKEY *pkey); (takes its own reference) */
  SSL_CTX_use_PrivateKey: { parameters: ["pointer", "pointer"], result: "i32" },
  /** int SSL_CTX_check_private_key(const SSL_CTX *ctx); */
  SSL_CTX_check_private_key: { parameters: ["pointer"], result: "i32" },
  /** void SSL_CTX_set_default_passwd_cb_userdata(SSL_CTX *ctx, void *u); */
  SSL_CTX_set_default_passwd_cb_userdata: { parameters: ["pointer", "buffer"], result: "void" },
  /** int SSL_CTX_set_cipher_list(SSL_CTX *ctx, const char *str); */
  SSL_CTX_set_cipher_list: { parameters: ["pointer", "buffer"], result: "i32" },
  /** int SSL_CTX_set_session_id_context(SSL_CTX *ctx, const unsigned char *sid_ctx, unsigned int len); */
  SSL_CTX_set_session_id_context: { parameters: ["pointer", "buffer", "u32"], result: "i32" },
  /** int SSL_CTX_set_alpn_protos(SSL_CTX *ctx, const unsigned char *protos, unsigned int len); 0 is success */
  SSL_CTX_set_alpn_protos: { parameters: ["pointer", "buffer", "u32"], result: "i32" },
  /** void SSL_CTX_set_alpn_select_cb(SSL_CTX *ctx, SSL_CTX_alpn_select_cb_func cb, void *arg); */
  SSL_CTX_set_alpn_select_cb: { parameters: ["pointer", "function", "pointer"], result: "void" },
  /**
   * int SSL_select_next_proto(unsigned char **out, unsigned char *outlen,
   *     const unsigned char *server, unsigned int server_len,
   *     const unsigned char *client, unsigned int client_len);
   */
  SSL_select_next_proto: {
    parameters: ["pointer", "pointer", "pointer", "u32", "pointer", "u32"],
    result: "i32",
  },
  /** SSL *SSL_new(SSL_CTX *ctx); */
  SSL_new: { parameters: ["pointer"], result: "pointer" },
  /** void SSL_free(SSL *ssl); */
  SSL_free: { parameters: ["pointer"], result: "void" },
  /** int SSL_set_fd(SSL *ssl, int fd); (a socket BIO that does not close the fd) */
  SSL_set_fd: { parameters: ["pointer", "i32"], result: "i32" },
  /** void SSL_set_connect_state(SSL *ssl); */
  SSL_set_connect_state: { parameters: ["pointer"], result: "void" },
  /** void SSL_set_accept_state(SSL *ssl); */
  SSL_set_accept_state: { parameters: ["pointer"], result: "void" },
  /** int SSL_do_handshake(SSL *ssl); */
  SSL_do_handshake: { parameters: ["pointer"], result: "i32" },
  /** int SSL_is_init_finished(const SSL *ssl); */
  SSL_is_init_finished: { parameters: ["pointer"], result: "i32" },
  /** int SSL_read(SSL *ssl, void *buf, int num); */
  SSL_read: { parameters: ["pointer", "buffer", "i32"], result: "i32" },
  /** int SSL_peek(SSL *ssl, void *buf, int num); */
  SSL_peek: { parameters: ["pointer", "buffer", "i32"], result: "i32" },
  /** int SSL_write(SSL *ssl, const void *buf, int num); */
  SSL_write: { parameters: ["pointer", "buffer", "i32"], result: "i32" },
  /** int SSL_pending(const SSL *ssl); */
  SSL_pending: { parameters: ["pointer"], result: "i32" },
  /** int SSL_has_pending(const SSL *s); (decrypted or still encrypted bytes held) */
  SSL_has_pending: { parameters: ["pointer"], result: "i32" },
  /** void SSL_set_read_ahead(SSL *s, int yes); */
  SSL_set_read_ahead: { parameters: ["pointer", "i32"], result: "void" },
  /** void SSL_set_default_read_buffer_len(SSL *s, size_t len); (pass a bigint: fast call) */
  SSL_set_default_read_buffer_len: { parameters: ["pointer", "usize"], result: "void" },
  /** void SSL_set0_wbio(SSL *s, BIO *wbio); (takes one reference) */
  SSL_set0_wbio: { parameters: ["pointer", "pointer"], result: "void" },
  /** int SSL_want(const SSL *s); (SSL_NOTHING 1, SSL_WRITING 2, SSL_READING 3, ...) */
  SSL_want: { parameters: ["pointer"], result: "i32" },
  /** int SSL_get_error(const SSL *ssl, int ret); */
  SSL_get_error: { parameters: ["pointer", "i32"], result: "i32" },
  /** int SSL_shutdown(SSL *ssl); */
  SSL_shutdown: { parameters: ["pointer"], result: "i32" },
  /** int SSL_get_shutdown(const SSL *ssl); */
  SSL_get_shutdown: { parameters: ["pointer"], result: "i32" },
  /**
   * long SSL_ctrl(SSL *ssl, int cmd, long larg, void *parg); (parg: a C string or NULL).
   * Pass `larg` as a bigint: a number argument for a 64-bit parameter takes
   * Deno's slow call path (about 100 ns more).
   */
  SSL_ctrl: { parameters: ["pointer", "i32", "i64", "buffer"], result: "i64" },
  /** int SSL_set1_host(SSL *s, const char *hostname); */
  SSL_set1_host: { parameters: ["pointer", "buffer"], result: "i32" },
  /** void SSL_set_hostflags(SSL *s, unsigned int flags); */
  SSL_set_hostflags: { parameters: ["pointer", "u32"], result: "void" },
  /** X509_VERIFY_PARAM *SSL_get0_param(SSL *ssl); */
  SSL_get0_param: { parameters: ["pointer"], result: "pointer" },
  /** long SSL_get_verify_result(const SSL *ssl); */
  SSL_get_verify_result: { parameters: ["pointer"], result: "i64" },
  /** const char *SSL_get_version(const SSL *ssl); */
  SSL_get_version: { parameters: ["pointer"], result: "pointer" },
  /** const SSL_CIPHER *SSL_get_current_cipher(const SSL *ssl); */
  SSL_get_current_cipher: { parameters: ["pointer"], result: "pointer" },
  /** const char *SSL_CIPHER_get_name(const SSL_CIPHER *c); */
  SSL_CIPHER_get_name: { parameters: ["pointer"], result: "pointer" },
  /** const char *SSL_CIPHER_get_version(const SSL_CIPHER *c); */
  SSL_CIPHER_get_version: { parameters: ["pointer"], result: "pointer" },
  /** int SSL_CIPHER_get_bits(const SSL_CIPHER *c, int *alg_bits); */
  SSL_CIPHER_get_bits: { parameters: ["pointer", "buffer"], result: "i32" },
  /** void SSL_get0_alpn_selected(const SSL *ssl, const unsigned char **data, unsigned int *len); */
  SSL_get0_alpn_selected: { parameters: ["pointer", "buffer", "buffer"], result: "void" },
  /** X509 *SSL_get1_peer_certificate(const SSL *ssl); */
  SSL_get1_peer_certificate: { parameters: ["pointer"], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

const cryptoSymbols = {
  /** void ERR_clear_error(void); */
  ERR_clear_error: { parameters: [], result: "void" },
  /**
   * unsigned long ERR_peek_error(void); the oldest queued error, left in the
   * queue (about 3x cheaper than ERR_clear_error, which walks all 16 slots).
   * Read as `u32`: OpenSSL 3's codes (library << 23 | reason, and the system
   * flag at bit 31) fit in 32 bits, and a number result spares a bigint.
   */
  ERR_peek_error: { parameters: [], result: "u32" },
  /** unsigned long ERR_get_error(void); */
  ERR_get_error: { parameters: [], result: "u64" },
  /** const char *ERR_lib_error_string(unsigned long e); */
  ERR_lib_error_string: { parameters: ["u64"], result: "pointer" },
  /** const char *ERR_reason_error_string(unsigned long e); */
  ERR_reason_error_string: { parameters: ["u64"], result: "pointer" },
  /** const char *X509_verify_cert_error_string(long n); */
  X509_verify_cert_error_string: { parameters: ["i64"], result: "pointer" },
  /** int X509_VERIFY_PARAM_set1_ip_asc(X509_VERIFY_PARAM *param, const char *ipasc); */
  X509_VERIFY_PARAM_set1_ip_asc: { parameters: ["pointer", "buffer"], result: "i32" },
  /** void X509_free(X509 *a); */
  X509_free: { parameters: ["pointer"], result: "void" },
  /** int i2d_X509(const X509 *a, unsigned char **out); */
  i2d_X509: { parameters: ["pointer", "buffer"], result: "i32" },
  /** int X509_STORE_add_cert(X509_STORE *xs, X509 *x); */
  X509_STORE_add_cert: { parameters: ["pointer", "pointer"], result: "i32" },
  /** BIO *BIO_new_mem_buf(const void *buf, int len); */
  BIO_new_mem_buf: { parameters: ["buffer", "i32"], result: "pointer" },
  /** int BIO_free(BIO *a); */
  BIO_free: { parameters: ["pointer"], result: "i32" },
  /** const BIO_METHOD *BIO_s_mem(void); */
  BIO_s_mem: { parameters: [], result: "pointer" },
  /** BIO *BIO_new(const BIO_METHOD *type); */
  BIO_new: { parameters: ["pointer"], result: "pointer" },
  /** int BIO_read(BIO *b, void *data, int dlen); */
  BIO_read: { parameters: ["pointer", "buffer", "i32"], result: "i32" },
  /** int BIO_up_ref(BIO *a); */
  BIO_up_ref: { parameters: ["pointer"], result: "i32" },
  /**
   * long BIO_ctrl(BIO *bp, int cmd, long larg, void *parg); the result read
   * as `int` (the memory BIO's lengths and offsets stay far below 2 GiB, and
   * an `i32` result keeps the call free of bigint); `larg` as a bigint (see
   * SSL_ctrl).
   */
  BIO_ctrl: { parameters: ["pointer", "i32", "i64", "buffer"], result: "i32" },
  /** X509 *PEM_read_bio_X509(BIO *bp, X509 **x, pem_password_cb *cb, void *u); */
  PEM_read_bio_X509: {
    parameters: ["pointer", "pointer", "pointer", "pointer"],
    result: "pointer",
  },
  /** X509 *PEM_read_bio_X509_AUX(BIO *bp, X509 **x, pem_password_cb *cb, void *u); */
  PEM_read_bio_X509_AUX: {
    parameters: ["pointer", "pointer", "pointer", "pointer"],
    result: "pointer",
  },
  /**
   * EVP_PKEY *PEM_read_bio_PrivateKey(BIO *bp, EVP_PKEY **x, pem_password_cb *cb, void *u);
   * (with cb NULL, OpenSSL's default callback takes `u` as the password: it never prompts)
   */
  PEM_read_bio_PrivateKey: {
    parameters: ["pointer", "pointer", "pointer", "buffer"],
    result: "pointer",
  },
  /** void EVP_PKEY_free(EVP_PKEY *pkey); */
  EVP_PKEY_free: { parameters: ["pointer"], result: "void" },
  /** int OBJ_txt2nid(const char *s); */
  OBJ_txt2nid: { parameters: ["buffer"], result: "i32" },
  /** const char *OBJ_nid2ln(int n); */
  OBJ_nid2ln: { parameters: ["i32"], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

/** OpenSSL 3.0's ABI numbers used by this library (from ssl.h, tls1.h, x509v3.h). */
export const SSLC = {
  SSL_ERROR_NONE: 0,
  SSL_ERROR_SSL: 1,
  SSL_ERROR_WANT_READ: 2,
  SSL_ERROR_WANT_WRITE: 3,
  SSL_ERROR_WANT_X509_LOOKUP: 4,
  SSL_ERROR_SYSCALL: 5,
  SSL_ERROR_ZERO_RETURN: 6,
  SSL_VERIFY_NONE: 0,
  SSL_VERIFY_PEER: 1,
  SSL_VERIFY_FAIL_IF_NO_PEER_CERT: 2,
  SSL_FILETYPE_PEM: 1,
  SSL_CTRL_MODE: 33,
  /** SSL_CTX_clear_chain_certs(ctx) is SSL_CTX_ctrl(ctx, SSL_CTRL_CHAIN, 0, NULL). */
  SSL_CTRL_CHAIN: 88,
  /** SSL_CTX_add0_chain_cert(ctx, x509) is SSL_CTX_ctrl(ctx, SSL_CTRL_CHAIN_CERT, 0, x509). */
  SSL_CTRL_CHAIN_CERT: 89,
  SSL_CTRL_CLEAR_MODE: 78,
  SSL_CTRL_SET_TLSEXT_HOSTNAME: 55,
  SSL_CTRL_SET_MIN_PROTO_VERSION: 123,
  SSL_CTRL_SET_MAX_PROTO_VERSION: 124,
  TLSEXT_NAMETYPE_host_name: 0,
  SSL_MODE_ENABLE_PARTIAL_WRITE: 0x1,
  SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER: 0x2,
  SSL_MODE_RELEASE_BUFFERS: 0x10,
  SSL_READING: 3,
  SSL_SENT_SHUTDOWN: 1,
  SSL_RECEIVED_SHUTDOWN: 2,
  TLS1_2_VERSION: 0x0303,
  TLS1_3_VERSION: 0x0304,
  SSL_TLSEXT_ERR_OK: 0,
  SSL_TLSEXT_ERR_NOACK: 3,
  OPENSSL_NPN_NEGOTIATED: 1,
  X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS: 0x4,
  /** BIO_ctrl: BIO_get_mem_data (length; the data's address into parg). */
  BIO_CTRL_INFO: 3,
  /** BIO_ctrl: BIO_seek (a memory BIO moves its read position, without copying). */
  BIO_C_FILE_SEEK: 128,
  /** BIO_ctrl: BIO_get_mem_ptr (a memory BIO first moves its unread bytes to the front). */
  BIO_C_GET_BUF_MEM_PTR: 115,
  /** ERR_GET_REASON(e) is `e & 0x7fffff` in OpenSSL 3. */
  ERR_REASON_MASK: 0x7fffff,
  /** SSL_R_CERTIFICATE_VERIFY_FAILED */
  SSL_R_CERTIFICATE_VERIFY_FAILED: 134,
  /** SSL_R_UNEXPECTED_EOF_WHILE_READING */
  SSL_R_UNEXPECTED_EOF_WHILE_READING: 294,
} as const;

/** The bound libssl functions. */
export type LibSSL = Deno.DynamicLibrary<typeof sslSymbols>["symbols"];
/** The bound libcrypto functions. */
export type LibCrypto = Deno.DynamicLibrary<typeof cryptoSymbols>["symbols"];

/** Both OpenSSL libraries, opened together. */
export interface OpenSSL {
  /** libssl's symbols. */
  ssl: LibSSL;
  /** libcrypto's symbols. */
  crypto: LibCrypto;
}

let loaded: OpenSSL | undefined;

function openOne<S extends Deno.ForeignLibraryInterface>(
  name: string,
  symbols: S,
): Deno.DynamicLibrary<S>["symbols"] {
  try {
    return Deno.dlopen(name, symbols).symbols;
  } catch (error) {
    const text = error instanceof Error ? error.message : String(error);
    if (/permission|--allow-ffi|NotCapable/i.test(text)) {
      throw new Error("asyncore TLS needs FFI access to OpenSSL: run deno with --allow-ffi");
    }
    // One sentence: which library, why, and how to get it.
    throw new Error(
      `asyncore TLS needs OpenSSL 3 (${name}), which could not be opened (${
        text.split("\n")[0]
      }); install it: ${platform.libsslInstallHint}`,
    );
  }
}

/**
 * Opens the given OpenSSL libraries (the platform's by default). Exposed for
 * tests of the missing-library error; everything else calls
 * {@linkcode openssl}.
 */
export function loadOpenSSL(
  libssl: string = platform.libssl,
  libcrypto: string = platform.libcrypto,
): OpenSSL {
  // libcrypto first: libssl depends on it, so its name is the likelier culprit.
  const crypto = openOne(libcrypto, cryptoSymbols);
  const ssl = openOne(libssl, sslSymbols);
  return { ssl, crypto };
}

/** Opens OpenSSL on first use and returns its bound symbols. */
export function openssl(): OpenSSL {
  return loaded ??= loadOpenSSL();
}

/** Whether OpenSSL has been opened in this process (for tests of laziness). */
export function opensslLoaded(): boolean {
  return loaded !== undefined;
}
