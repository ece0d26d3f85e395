/**
 * The numbers of Python's `ssl` module this library uses: protocol sides,
 * verification modes, the `SSL_ERROR_*` codes (an `SSLError`'s `errno`),
 * and the default handshake timeout.
 *
 * @module
 */

/** A context for the client end of connections (`ssl.PROTOCOL_TLS_CLIENT`). */
export const PROTOCOL_TLS_CLIENT = 16;
/** A context for the server end of connections (`ssl.PROTOCOL_TLS_SERVER`). */
export const PROTOCOL_TLS_SERVER = 17;
/** Do not ask for or check the peer's certificate. */
export const CERT_NONE = 0;
/** Check the peer's certificate if it sends one (servers: ask clients for one). */
export const CERT_OPTIONAL = 1;
/** The peer must send a certificate that verifies. */
export const CERT_REQUIRED = 2;
/** How long, in seconds, a dispatcher waits for a handshake by default. */
export const HANDSHAKE_TIMEOUT = 30;

/** `SSLError.errno` of a protocol error (`ssl.SSL_ERROR_SSL`). */
export const SSL_ERROR_SSL = 1;
/** `SSLWantReadError.errno`: the operation waits for the socket to be readable. */
export const SSL_ERROR_WANT_READ = 2;
/** `SSLWantWriteError.errno`: the operation waits for the socket to be writable. */
export const SSL_ERROR_WANT_WRITE = 3;
/** `ssl.SSL_ERROR_WANT_X509_LOOKUP` (a certificate callback is pending; unused here). */
export const SSL_ERROR_WANT_X509_LOOKUP = 4;
/** `ssl.SSL_ERROR_SYSCALL`: a system call failed under OpenSSL. */
export const SSL_ERROR_SYSCALL = 5;
/** `SSLZeroReturnError.errno`: the peer closed the session with close_notify. */
export const SSL_ERROR_ZERO_RETURN = 6;
/** `ssl.SSL_ERROR_WANT_CONNECT` (unused here). */
export const SSL_ERROR_WANT_CONNECT = 7;
/** `SSLEOFError.errno`: the connection ended without close_notify. */
export const SSL_ERROR_EOF = 8;
/** `ssl.SSL_ERROR_INVALID_ERROR_CODE`. */
export const SSL_ERROR_INVALID_ERROR_CODE = 10;
